//! Planted bugs: classic Raft mistakes, each taken from a published bug report, that a user can
//! switch on to watch the checker find them.
//!
//! A bug can be planted only in a `Peer<C, Planted>` (see [`crate::Planted`]). Servers build
//! `Peer<C, Faithful>`, in which every planted branch (the `planted!` macro and the methods of
//! `peer/planted.rs`) is the constant `false` and compiles to nothing.

use std::fmt;
use std::str::FromStr;

/// One planted bug. Each is caught by the default check as a violation of a named Always
/// property; the source is the published report the mistake is taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bug {
    /// vote granted without the log up-to-date check (§5.4.1) (https://github.com/jgroups-extras/jgroups-raft/issues/14).
    VoteWithoutLogCheck,
    /// the up-to-date check compares last log indexes only, not last log terms (§5.4.1) (https://github.com/sile/noraft/pull/22).
    UpToDateByIndexOnly,
    /// the up-to-date tie-break compares the candidate's last log term with the voter's current term instead of its last log term (https://github.com/influxdata/influxdb/pull/1663).
    UpToDateAgainstCurrentTerm,
    /// storage drops the vote, so after a crash a server votes again in the same term (§5.2) (https://github.com/tikv/tikv/issues/8381).
    VoteNotPersisted,
    /// a server votes for a second candidate in a term in which it already voted (§5.2) (https://github.com/microsoft/CCF/pull/8094).
    DoubleVote,
    /// hearing from the leader of its own term resets a server's vote, so it can vote again in that term (https://github.com/etcd-io/etcd/pull/2461).
    ClearVoteOnSameTermLeader,
    /// a candidate counts a vote granted in an earlier term (https://github.com/ktoso/akka-raft/issues/46).
    CountStaleVotes,
    /// a candidate's new term and self-vote are not written to stable storage (https://github.com/wenweihu86/raft-java/issues/57).
    TermNotDurableOnCampaign,
    /// a higher term learned from a message is kept in memory only (https://github.com/cockroachdb/cockroach/issues/1131).
    TermNotDurableOnStepDown,
    /// a candidate takes the lower term of a refused vote (https://github.com/dev-urandom/graft/issues/7).
    AdoptLowerTerm,
    /// a leader commits once half the cluster (not a majority) stores an entry (https://github.com/amino-os/Amino.Run/pull/143).
    CommitOnHalf,
    /// a candidate needs a majority of the other servers only: right for an odd number of servers, two votes of four for an even one (https://github.com/btmorr/leifdb/pull/73).
    ElectionMajorityOfOthers,
    /// a leader commits the match index in the middle of the ascending sorted list: a majority's for an odd number of servers, two of four for an even one (https://github.com/andrewjstone/rafter/issues/16).
    CommitAtMiddleIndex,
    /// a leader's storage skips writing the leader's own new entries, which the leader counts toward a majority (https://github.com/databendlabs/openraft/pull/1125).
    LeaderLogNotPersisted,
    /// a leader commits an entry of an earlier term by counting replicas (Figure 8, §5.4.2) (https://github.com/logcabin/logcabin/issues/44).
    CommitPreviousTermByCount,
    /// a follower accepts AppendEntries from a leader of an older term (§5.1) (https://github.com/jasonrogena/lightraft/pull/11).
    AcceptStaleLeader,
    /// a follower keeps a conflicting entry instead of deleting it and what follows (§5.3) (https://github.com/tikv/raft-rs/issues/428).
    AppendWithoutTruncate,
    /// a follower acknowledges its whole log, not only the entries the request checked (https://github.com/microsoft/CCF/pull/6016).
    AckWholeLog,
    /// a leader sets a follower's match index from its optimistic next index, not from the acknowledgement (https://github.com/adjoint-io/raft/pull/130).
    MatchFromNextGuess,
    /// a follower cuts its log back to a request's start before comparing terms, so a stale request deletes entries (https://github.com/hashicorp/raft/pull/113).
    StaleAppendTruncates,
    /// a follower sets its commit index from every request, so a stale request lowers it (https://github.com/etcd-io/etcd/pull/1203).
    FollowerCommitWithoutMax,
    /// a follower advances its commit index before the consistency check, even for a rejected request (https://github.com/atomix/copycat/pull/110).
    CommitBeforeConsistencyCheck,
    /// a follower appends without comparing the term at the previous index (§5.3) (https://github.com/ktoso/akka-raft/issues/32).
    NoConsistencyCheck,
    /// a follower appends a request's entries after its last entry instead of at their own indexes (https://github.com/andrewjstone/rafter/pull/34).
    AppendAtLogEnd,
    /// a leader asserts that no rejection arrives below a follower's match index; a reordered stale rejection does (https://github.com/etcd-io/raft/pull/36).
    PanicOnStaleRejection,
    /// a follower commits up to the leader's commit index within its whole log, not only up to the last entry the request checked, so a stale entry past a short batch is committed (https://github.com/atomix/copycat/issues/265).
    CommitPastNewEntries,
    /// a leader probes a follower again right after a rejection's hint even when the hint lies below what the follower is known to store (https://github.com/etcd-io/raft/issues/148).
    ProbeBelowMatch,
    /// while pipelining, a leader takes a follower's rejection whose hint lies below the match index for a stale one and ignores it, so a follower holding stale entries is never repaired (https://github.com/scylladb/scylladb/issues/9552).
    RejectionBelowMatchTakenAsStray,
    /// a leader frees acknowledged messages from a follower's window without subtracting their bytes, so the bytes counted in flight only grow (https://github.com/etcd-io/raft/pull/54).
    InflightBytesLeak,
    /// a new leader in a cluster of several servers commits its whole log before any follower has acknowledged anything, as if it were alone (https://github.com/deventlab/d-engine/issues/186).
    CommitOnElection,
    /// a new leader sets its commit index back to zero (https://github.com/cloud-software-foundation/c5/issues/60).
    CommitResetOnElection,
    /// a server that becomes a pre-candidate clears the vote it cast in its current term, so it can vote twice in one term (https://github.com/canonical/raft/issues/196).
    PreVoteClearsVote,
    /// a candidate counts a granted pre-vote answer for its term as a vote, though the voter may have voted for another candidate in that term (https://github.com/canonical/raft/pull/248).
    PreVoteCountedAsVote,
    /// a candidate that comes out of a pre-vote round counts itself but does not record its vote for itself, so it can also vote for another candidate of its term (https://github.com/vesoft-inc/nebula/pull/3415).
    CandidateForgetsOwnVote,
    /// a server that becomes a pre-candidate increments and persists its term, so a server cut off from the cluster still raises its term (https://github.com/hashicorp/raft/pull/474).
    PreVoteBumpsTerm,
    /// a server asked for a pre-vote moves to the asker's own term (the proposed term minus one), as a newer term in a real request would make it (https://github.com/canonical/raft/pull/280).
    PreVoteAdoptsTerm,
    /// a server grants a pre-vote without comparing the asker's log with its own (§5.4.1) (https://github.com/ClickHouse/NuRaft/pull/134).
    PreVoteWithoutLogCheck,
    /// a server that grants a pre-vote records it as its vote in its current term, so a real candidate of that term is refused or the vote is cast twice (https://github.com/rabbitmq/ra/pull/608).
    PreVoteRecordedAsVote,
    /// with pre-vote on, a server that follows a live leader still answers and adopts the term of vote requests of a newer term, so a server back from a partition deposes the leader (https://github.com/hashicorp/raft/issues/12).
    NoLeaderStickiness,
    /// a leader asked to transfer leadership sends TimeoutNow at once, before the target's log matches its own, so the target campaigns with a log that voters may refuse (https://github.com/redpanda-data/redpanda/issues/2606).
    TimeoutNowBeforeCaughtUp,
    /// a leader that is transferring leadership keeps appending proposals, so the target's log falls behind again and its election can fail (https://github.com/hashicorp/raft/issues/487).
    ProposeWhileTransferring,
    /// a leader never gives up a leadership transfer that did not complete, and refuses proposals from then on (https://github.com/databendlabs/openraft/issues/1747).
    TransferNeverGivenUp,
    /// with pre-vote on, the target of a leadership transfer runs a pre-vote round on TimeoutNow instead of an election, and the servers that follow the leader ignore it (https://github.com/canonical/raft/issues/203).
    TransfereeRunsPreVote,
    /// a server that follows a live leader ignores a vote request sent on behalf of a leadership transfer, as leader stickiness ignores any other, so the transfer cannot complete (https://github.com/etcd-io/etcd/pull/5809).
    TransferFlagIgnored,
}

impl Bug {
    /// Every bug, in catalogue order.
    pub const ALL: [Bug; 44] = [
        Bug::VoteWithoutLogCheck,
        Bug::UpToDateByIndexOnly,
        Bug::UpToDateAgainstCurrentTerm,
        Bug::VoteNotPersisted,
        Bug::DoubleVote,
        Bug::ClearVoteOnSameTermLeader,
        Bug::CountStaleVotes,
        Bug::TermNotDurableOnCampaign,
        Bug::TermNotDurableOnStepDown,
        Bug::AdoptLowerTerm,
        Bug::CommitOnHalf,
        Bug::ElectionMajorityOfOthers,
        Bug::CommitAtMiddleIndex,
        Bug::LeaderLogNotPersisted,
        Bug::CommitPreviousTermByCount,
        Bug::AcceptStaleLeader,
        Bug::AppendWithoutTruncate,
        Bug::AckWholeLog,
        Bug::MatchFromNextGuess,
        Bug::StaleAppendTruncates,
        Bug::FollowerCommitWithoutMax,
        Bug::CommitBeforeConsistencyCheck,
        Bug::NoConsistencyCheck,
        Bug::AppendAtLogEnd,
        Bug::PanicOnStaleRejection,
        Bug::CommitPastNewEntries,
        Bug::ProbeBelowMatch,
        Bug::RejectionBelowMatchTakenAsStray,
        Bug::InflightBytesLeak,
        Bug::CommitOnElection,
        Bug::CommitResetOnElection,
        Bug::PreVoteClearsVote,
        Bug::PreVoteCountedAsVote,
        Bug::CandidateForgetsOwnVote,
        Bug::PreVoteBumpsTerm,
        Bug::PreVoteAdoptsTerm,
        Bug::PreVoteWithoutLogCheck,
        Bug::PreVoteRecordedAsVote,
        Bug::NoLeaderStickiness,
        Bug::TimeoutNowBeforeCaughtUp,
        Bug::ProposeWhileTransferring,
        Bug::TransferNeverGivenUp,
        Bug::TransfereeRunsPreVote,
        Bug::TransferFlagIgnored,
    ];

    /// The bugs whose counterexamples are in the conformance corpus and are replayed against
    /// real nodes and the TLA+ spec (`tests/`): every bug but those of [`Bug::UNTRACED`], in
    /// catalogue order.
    pub fn traced() -> impl Iterator<Item = Bug> {
        Bug::ALL
            .into_iter()
            .filter(|bug| !Bug::UNTRACED.iter().any(|(untraced, _)| untraced == bug))
    }

    /// The bugs whose counterexample cannot be a trace, each with the reason. The model check
    /// catches them; a trace shows what a running server holds in memory and sends, and each
    /// step's outcome.
    pub const UNTRACED: [(Bug, &'static str); 5] = [
        (
            Bug::TermNotDurableOnCampaign,
            "the mistake is only in what a running candidate has written, which a trace does not show",
        ),
        (
            Bug::TermNotDurableOnStepDown,
            "the mistake is only in what a running server has written, which a trace does not show",
        ),
        (
            Bug::LeaderLogNotPersisted,
            "the mistake is only in what a running leader has written, which a trace does not show",
        ),
        (
            Bug::PanicOnStaleRejection,
            "the buggy Peer panics at the step that parts; a trace records a step's outcome",
        ),
        (
            Bug::InflightBytesLeak,
            "the mistake stays in the leader's window record, which a trace does not show",
        ),
    ];

    /// Whether the bug is planted in the model's storage adapter (what storage keeps of a
    /// step's write) rather than in the Peer: a node runs the Peer over its own storage, so it
    /// cannot run such a bug.
    pub fn in_storage(self) -> bool {
        matches!(self, Bug::VoteNotPersisted | Bug::LeaderLogNotPersisted)
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "vote-without-log-check",
            Bug::UpToDateByIndexOnly => "up-to-date-by-index-only",
            Bug::UpToDateAgainstCurrentTerm => "up-to-date-against-current-term",
            Bug::VoteNotPersisted => "vote-not-persisted",
            Bug::DoubleVote => "double-vote",
            Bug::ClearVoteOnSameTermLeader => "clear-vote-on-same-term-leader",
            Bug::CountStaleVotes => "count-stale-votes",
            Bug::TermNotDurableOnCampaign => "term-not-durable-on-campaign",
            Bug::TermNotDurableOnStepDown => "term-not-durable-on-step-down",
            Bug::AdoptLowerTerm => "adopt-lower-term",
            Bug::CommitOnHalf => "commit-on-half",
            Bug::ElectionMajorityOfOthers => "election-majority-of-others",
            Bug::CommitAtMiddleIndex => "commit-at-middle-index",
            Bug::LeaderLogNotPersisted => "leader-log-not-persisted",
            Bug::CommitPreviousTermByCount => "commit-previous-term-by-count",
            Bug::AcceptStaleLeader => "accept-stale-leader",
            Bug::AppendWithoutTruncate => "append-without-truncate",
            Bug::AckWholeLog => "ack-whole-log",
            Bug::MatchFromNextGuess => "match-from-next-guess",
            Bug::StaleAppendTruncates => "stale-append-truncates",
            Bug::FollowerCommitWithoutMax => "follower-commit-without-max",
            Bug::CommitBeforeConsistencyCheck => "commit-before-consistency-check",
            Bug::NoConsistencyCheck => "no-consistency-check",
            Bug::AppendAtLogEnd => "append-at-log-end",
            Bug::PanicOnStaleRejection => "panic-on-stale-rejection",
            Bug::CommitPastNewEntries => "commit-past-new-entries",
            Bug::ProbeBelowMatch => "probe-below-match",
            Bug::RejectionBelowMatchTakenAsStray => "rejection-below-match-taken-as-stray",
            Bug::InflightBytesLeak => "inflight-bytes-leak",
            Bug::CommitOnElection => "commit-on-election",
            Bug::CommitResetOnElection => "commit-reset-on-election",
            Bug::PreVoteClearsVote => "pre-vote-clears-vote",
            Bug::PreVoteCountedAsVote => "pre-vote-counted-as-vote",
            Bug::CandidateForgetsOwnVote => "candidate-forgets-own-vote",
            Bug::PreVoteBumpsTerm => "pre-vote-bumps-term",
            Bug::PreVoteAdoptsTerm => "pre-vote-adopts-term",
            Bug::PreVoteWithoutLogCheck => "pre-vote-without-log-check",
            Bug::PreVoteRecordedAsVote => "pre-vote-recorded-as-vote",
            Bug::NoLeaderStickiness => "no-leader-stickiness",
            Bug::TimeoutNowBeforeCaughtUp => "timeout-now-before-caught-up",
            Bug::ProposeWhileTransferring => "propose-while-transferring",
            Bug::TransferNeverGivenUp => "transfer-never-given-up",
            Bug::TransfereeRunsPreVote => "transferee-runs-pre-vote",
            Bug::TransferFlagIgnored => "transfer-flag-ignored",
        }
    }

    /// One line on what goes wrong.
    pub fn description(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "vote granted without the log up-to-date check (§5.4.1)",
            Bug::UpToDateByIndexOnly => "the up-to-date check compares last log indexes only, not last log terms (§5.4.1)",
            Bug::UpToDateAgainstCurrentTerm => "the up-to-date tie-break compares the candidate's last log term with the voter's current term instead of its last log term",
            Bug::VoteNotPersisted => "storage drops the vote, so after a crash a server votes again in the same term (§5.2)",
            Bug::DoubleVote => "a server votes for a second candidate in a term in which it already voted (§5.2)",
            Bug::ClearVoteOnSameTermLeader => "hearing from the leader of its own term resets a server's vote, so it can vote again in that term",
            Bug::CountStaleVotes => "a candidate counts a vote granted in an earlier term",
            Bug::TermNotDurableOnCampaign => "a candidate's new term and self-vote are not written to stable storage",
            Bug::TermNotDurableOnStepDown => "a higher term learned from a message is kept in memory only",
            Bug::AdoptLowerTerm => "a candidate takes the lower term of a refused vote",
            Bug::CommitOnHalf => "a leader commits once half the cluster (not a majority) stores an entry",
            Bug::ElectionMajorityOfOthers => "a candidate needs a majority of the other servers only: right for an odd number of servers, two votes of four for an even one",
            Bug::CommitAtMiddleIndex => "a leader commits the match index in the middle of the ascending sorted list: a majority's for an odd number of servers, two of four for an even one",
            Bug::LeaderLogNotPersisted => "a leader's storage skips writing the leader's own new entries, which the leader counts toward a majority",
            Bug::CommitPreviousTermByCount => "a leader commits an entry of an earlier term by counting replicas (Figure 8, §5.4.2)",
            Bug::AcceptStaleLeader => "a follower accepts AppendEntries from a leader of an older term (§5.1)",
            Bug::AppendWithoutTruncate => "a follower keeps a conflicting entry instead of deleting it and what follows (§5.3)",
            Bug::AckWholeLog => "a follower acknowledges its whole log, not only the entries the request checked",
            Bug::MatchFromNextGuess => "a leader sets a follower's match index from its optimistic next index, not from the acknowledgement",
            Bug::StaleAppendTruncates => "a follower cuts its log back to a request's start before comparing terms, so a stale request deletes entries",
            Bug::FollowerCommitWithoutMax => "a follower sets its commit index from every request, so a stale request lowers it",
            Bug::CommitBeforeConsistencyCheck => "a follower advances its commit index before the consistency check, even for a rejected request",
            Bug::NoConsistencyCheck => "a follower appends without comparing the term at the previous index (§5.3)",
            Bug::AppendAtLogEnd => "a follower appends a request's entries after its last entry instead of at their own indexes",
            Bug::PanicOnStaleRejection => "a leader asserts that no rejection arrives below a follower's match index; a reordered stale rejection does",
            Bug::CommitPastNewEntries => "a follower commits up to the leader's commit index within its whole log, not only up to the last entry the request checked, so a stale entry past a short batch is committed",
            Bug::ProbeBelowMatch => "a leader probes a follower again right after a rejection's hint even when the hint lies below what the follower is known to store",
            Bug::RejectionBelowMatchTakenAsStray => "while pipelining, a leader takes a follower's rejection whose hint lies below the match index for a stale one and ignores it, so a follower holding stale entries is never repaired",
            Bug::InflightBytesLeak => "a leader frees acknowledged messages from a follower's window without subtracting their bytes, so the bytes counted in flight only grow",
            Bug::CommitOnElection => "a new leader in a cluster of several servers commits its whole log before any follower has acknowledged anything, as if it were alone",
            Bug::CommitResetOnElection => "a new leader sets its commit index back to zero",
            Bug::PreVoteClearsVote => "a server that becomes a pre-candidate clears the vote it cast in its current term, so it can vote twice in one term",
            Bug::PreVoteCountedAsVote => "a candidate counts a granted pre-vote answer for its term as a vote, though the voter may have voted for another candidate in that term",
            Bug::CandidateForgetsOwnVote => "a candidate that comes out of a pre-vote round counts itself but does not record its vote for itself, so it can also vote for another candidate of its term",
            Bug::PreVoteBumpsTerm => "a server that becomes a pre-candidate increments and persists its term, so a server cut off from the cluster still raises its term",
            Bug::PreVoteAdoptsTerm => "a server asked for a pre-vote moves to the asker's own term (the proposed term minus one), as a newer term in a real request would make it",
            Bug::PreVoteWithoutLogCheck => "a server grants a pre-vote without comparing the asker's log with its own (§5.4.1)",
            Bug::PreVoteRecordedAsVote => "a server that grants a pre-vote records it as its vote in its current term, so a real candidate of that term is refused or the vote is cast twice",
            Bug::NoLeaderStickiness => "with pre-vote on, a server that follows a live leader still answers and adopts the term of vote requests of a newer term, so a server back from a partition deposes the leader",
            Bug::TimeoutNowBeforeCaughtUp => "a leader asked to transfer leadership sends TimeoutNow at once, before the target's log matches its own, so the target campaigns with a log that voters may refuse",
            Bug::ProposeWhileTransferring => "a leader that is transferring leadership keeps appending proposals, so the target's log falls behind again and its election can fail",
            Bug::TransferNeverGivenUp => "a leader never gives up a leadership transfer that did not complete, and refuses proposals from then on",
            Bug::TransfereeRunsPreVote => "with pre-vote on, the target of a leadership transfer runs a pre-vote round on TimeoutNow instead of an election, and the servers that follow the leader ignore it",
            Bug::TransferFlagIgnored => "a server that follows a live leader ignores a vote request sent on behalf of a leadership transfer, as leader stickiness ignores any other, so the transfer cannot complete",
        }
    }

    /// The Always property the default check reports first when this bug is planted.
    pub fn expected_violation(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "LeaderCompleteness",
            Bug::UpToDateByIndexOnly => "LeaderCompleteness",
            Bug::UpToDateAgainstCurrentTerm => "LeaderCompleteness",
            Bug::VoteNotPersisted => "ElectionSafety",
            Bug::DoubleVote => "ElectionSafety",
            Bug::ClearVoteOnSameTermLeader => "ElectionSafety",
            Bug::CountStaleVotes => "OutputContract",
            Bug::TermNotDurableOnCampaign => "MonotonicTerm",
            Bug::TermNotDurableOnStepDown => "OutputContract",
            Bug::AdoptLowerTerm => "MonotonicTerm",
            Bug::CommitOnHalf => "NoCommitOnMinority",
            Bug::ElectionMajorityOfOthers => "ElectionSafety",
            Bug::CommitAtMiddleIndex => "NoCommitOnMinority",
            Bug::LeaderLogNotPersisted => "CommittedSurvivesCrash",
            Bug::CommitPreviousTermByCount => "ElectableHoldsCommitted",
            Bug::AcceptStaleLeader => "OutputContract",
            Bug::AppendWithoutTruncate => "OutputContract",
            Bug::AckWholeLog => "OutputContract",
            Bug::MatchFromNextGuess => "OutputContract",
            Bug::StaleAppendTruncates => "OutputContract",
            Bug::FollowerCommitWithoutMax => "MonotonicCommit",
            Bug::CommitBeforeConsistencyCheck => "OutputContract",
            Bug::NoConsistencyCheck => "LogMatching",
            Bug::AppendAtLogEnd => "LogMatching",
            Bug::PanicOnStaleRejection => "PeerInvariant",
            Bug::CommitPastNewEntries => "OutputContract",
            Bug::ProbeBelowMatch => "FlowControlWindow",
            Bug::RejectionBelowMatchTakenAsStray => "OutputContract",
            Bug::InflightBytesLeak => "FlowControlWindow",
            Bug::CommitOnElection => "NoCommitOnMinority",
            Bug::CommitResetOnElection => "MonotonicCommit",
            Bug::PreVoteClearsVote => "PreVoteChangesNothing",
            Bug::PreVoteCountedAsVote => "OutputContract",
            Bug::CandidateForgetsOwnVote => "OutputContract",
            Bug::PreVoteBumpsTerm => "PreVoteChangesNothing",
            Bug::PreVoteAdoptsTerm => "PreVoteChangesNothing",
            Bug::PreVoteWithoutLogCheck => "OutputContract",
            Bug::PreVoteRecordedAsVote => "PreVoteChangesNothing",
            Bug::NoLeaderStickiness => "OutputContract",
            Bug::TimeoutNowBeforeCaughtUp => "OutputContract",
            Bug::ProposeWhileTransferring => "OutputContract",
            Bug::TransferNeverGivenUp => "OutputContract",
            Bug::TransfereeRunsPreVote => "OutputContract",
            Bug::TransferFlagIgnored => "OutputContract",
        }
    }

    /// The published report this bug is taken from.
    pub fn source(self) -> &'static str {
        match self {
            Bug::VoteWithoutLogCheck => "https://github.com/jgroups-extras/jgroups-raft/issues/14",
            Bug::UpToDateByIndexOnly => "https://github.com/sile/noraft/pull/22",
            Bug::UpToDateAgainstCurrentTerm => "https://github.com/influxdata/influxdb/pull/1663",
            Bug::VoteNotPersisted => "https://github.com/tikv/tikv/issues/8381",
            Bug::DoubleVote => "https://github.com/microsoft/CCF/pull/8094",
            Bug::ClearVoteOnSameTermLeader => "https://github.com/etcd-io/etcd/pull/2461",
            Bug::CountStaleVotes => "https://github.com/ktoso/akka-raft/issues/46",
            Bug::TermNotDurableOnCampaign => "https://github.com/wenweihu86/raft-java/issues/57",
            Bug::TermNotDurableOnStepDown => "https://github.com/cockroachdb/cockroach/issues/1131",
            Bug::AdoptLowerTerm => "https://github.com/dev-urandom/graft/issues/7",
            Bug::CommitOnHalf => "https://github.com/amino-os/Amino.Run/pull/143",
            Bug::ElectionMajorityOfOthers => "https://github.com/btmorr/leifdb/pull/73",
            Bug::CommitAtMiddleIndex => "https://github.com/andrewjstone/rafter/issues/16",
            Bug::LeaderLogNotPersisted => "https://github.com/databendlabs/openraft/pull/1125",
            Bug::CommitPreviousTermByCount => "https://github.com/logcabin/logcabin/issues/44",
            Bug::AcceptStaleLeader => "https://github.com/jasonrogena/lightraft/pull/11",
            Bug::AppendWithoutTruncate => "https://github.com/tikv/raft-rs/issues/428",
            Bug::AckWholeLog => "https://github.com/microsoft/CCF/pull/6016",
            Bug::MatchFromNextGuess => "https://github.com/adjoint-io/raft/pull/130",
            Bug::StaleAppendTruncates => "https://github.com/hashicorp/raft/pull/113",
            Bug::FollowerCommitWithoutMax => "https://github.com/etcd-io/etcd/pull/1203",
            Bug::CommitBeforeConsistencyCheck => "https://github.com/atomix/copycat/pull/110",
            Bug::NoConsistencyCheck => "https://github.com/ktoso/akka-raft/issues/32",
            Bug::AppendAtLogEnd => "https://github.com/andrewjstone/rafter/pull/34",
            Bug::PanicOnStaleRejection => "https://github.com/etcd-io/raft/pull/36",
            Bug::CommitPastNewEntries => "https://github.com/atomix/copycat/issues/265",
            Bug::ProbeBelowMatch => "https://github.com/etcd-io/raft/issues/148",
            Bug::RejectionBelowMatchTakenAsStray => {
                "https://github.com/scylladb/scylladb/issues/9552"
            }
            Bug::InflightBytesLeak => "https://github.com/etcd-io/raft/pull/54",
            Bug::CommitOnElection => "https://github.com/deventlab/d-engine/issues/186",
            Bug::CommitResetOnElection => {
                "https://github.com/cloud-software-foundation/c5/issues/60"
            }
            Bug::PreVoteClearsVote => "https://github.com/canonical/raft/issues/196",
            Bug::PreVoteCountedAsVote => "https://github.com/canonical/raft/pull/248",
            Bug::CandidateForgetsOwnVote => "https://github.com/vesoft-inc/nebula/pull/3415",
            Bug::PreVoteBumpsTerm => "https://github.com/hashicorp/raft/pull/474",
            Bug::PreVoteAdoptsTerm => "https://github.com/canonical/raft/pull/280",
            Bug::PreVoteWithoutLogCheck => "https://github.com/ClickHouse/NuRaft/pull/134",
            Bug::PreVoteRecordedAsVote => "https://github.com/rabbitmq/ra/pull/608",
            Bug::NoLeaderStickiness => "https://github.com/hashicorp/raft/issues/12",
            Bug::TimeoutNowBeforeCaughtUp => {
                "https://github.com/redpanda-data/redpanda/issues/2606"
            }
            Bug::ProposeWhileTransferring => "https://github.com/hashicorp/raft/issues/487",
            Bug::TransferNeverGivenUp => "https://github.com/databendlabs/openraft/issues/1747",
            Bug::TransfereeRunsPreVote => "https://github.com/canonical/raft/issues/203",
            Bug::TransferFlagIgnored => "https://github.com/etcd-io/etcd/pull/5809",
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

#[cfg(test)]
mod tests {
    use super::Bug;

    /// Each untraced bug is named once, with a reason, and every other bug is traced.
    #[test]
    fn every_bug_is_traced_or_says_why_not() {
        for (k, (bug, why)) in Bug::UNTRACED.iter().enumerate() {
            assert!(!why.is_empty(), "{bug} gives no reason");
            assert!(
                !Bug::UNTRACED[k + 1..].iter().any(|(b, _)| b == bug),
                "{bug} is listed twice"
            );
            assert!(!Bug::traced().any(|b| b == *bug), "{bug} is traced");
        }
        assert_eq!(Bug::traced().count() + Bug::UNTRACED.len(), Bug::ALL.len());
    }
}
