//! Planted bugs: classic Raft mistakes that a user can switch on to watch the checker find them.
//!
//! This module exists only with the `checker` feature. A server builds `model` without it, so
//! no bug can be enabled there: every planted branch in the Peer is guarded by the `planted!`
//! macro, which is the constant `false` without the feature.

use std::fmt;
use std::str::FromStr;

/// One planted bug. Each is caught by the checker as a violation of a named Always property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bug {
    /// A server grants its vote without checking that the candidate's log is at least as
    /// up-to-date as its own (§5.4.1).
    VoteWithoutLogCheck,
    /// The server's storage writes the term and the log but drops the vote, so after a crash it
    /// can vote again in the same term (§5.2, Figure 2 "persistent state"). This one lives in
    /// the model's storage, where such a bug would live in a node.
    VoteNotPersisted,
    /// A leader treats half of the cluster as a majority when it commits.
    CommitOnHalf,
    /// A follower keeps a conflicting entry instead of deleting it and what follows (§5.3).
    AppendWithoutTruncate,
    /// A follower accepts AppendEntries from a leader of an older term (§5.1).
    AcceptStaleLeader,
    /// A server grants a second vote in a term in which it already voted for another (§5.2).
    DoubleVote,
}

impl Bug {
    /// Every bug, in catalogue order.
    pub const ALL: [Bug; 6] = [
        Bug::VoteWithoutLogCheck,
        Bug::VoteNotPersisted,
        Bug::CommitOnHalf,
        Bug::AppendWithoutTruncate,
        Bug::AcceptStaleLeader,
        Bug::DoubleVote,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "vote-without-log-check",
            Bug::VoteNotPersisted => "vote-not-persisted",
            Bug::CommitOnHalf => "commit-on-half",
            Bug::AppendWithoutTruncate => "append-without-truncate",
            Bug::AcceptStaleLeader => "accept-stale-leader",
            Bug::DoubleVote => "double-vote",
        }
    }

    /// One line on what goes wrong.
    pub fn description(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "vote granted without the log up-to-date check (§5.4.1)",
            Bug::VoteNotPersisted => "vote not written to stable storage before answering (§5.2)",
            Bug::CommitOnHalf => "leader commits once half the cluster (not a majority) stores it",
            Bug::AppendWithoutTruncate => {
                "follower keeps a conflicting entry and acknowledges (§5.3)"
            }
            Bug::AcceptStaleLeader => "follower accepts AppendEntries of an older term (§5.1)",
            Bug::DoubleVote => "server votes twice in one term (§5.2)",
        }
    }

    /// The Always property the checker reports as violated when this bug is planted.
    pub fn expected_violation(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "LeaderCompleteness",
            Bug::VoteNotPersisted => "ElectionSafety",
            Bug::CommitOnHalf => "NoCommitOnMinority",
            Bug::AppendWithoutTruncate => "NoCommitOnMinority",
            Bug::AcceptStaleLeader => "NoCommitOnMinority",
            Bug::DoubleVote => "ElectionSafety",
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Bug {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Bug::ALL
            .into_iter()
            .find(|bug| bug.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Bug::ALL.iter().map(|bug| bug.name()).collect();
                format!("unknown bug `{name}`; known bugs: {}", known.join(", "))
            })
    }
}
