//! The planted bugs' deviations from the correct Peer, kept out of the way of a reader of the
//! protocol (model checking and conformance tests only; see `crate::bugs`). Each method returns
//! what the Peer would do with its bug planted, or `None` when no bug of its kind is planted,
//! in which case the caller does the correct thing. In a [`Faithful`] Peer no bug is ever
//! planted, every method is the constant `None`, and the compiler removes the planted code.
//!
//! This file is excluded from mutation testing (`.cargo/mutants.toml`): a mutation here
//! changes a planted bug, not the Peer.

use super::Payload;
use super::{Index, NodeId, Output, Peer, Role, Term};
use crate::bugs::Bug;
use std::fmt;
use std::hash::Hash;

/// Whether, and how, a Peer may deviate from the protocol: the type parameter `D` of
/// [`Peer`].
pub trait Deviation: Clone + fmt::Debug + Default + PartialEq + Eq + Hash {
    /// The bug planted, if any.
    fn bug(&self) -> Option<Bug>;
}

/// The correct Peer: no bug can be planted. What every server runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Faithful;

impl Deviation for Faithful {
    #[inline(always)]
    fn bug(&self) -> Option<Bug> {
        None
    }
}

/// A Peer that may carry one planted bug of the catalogue (`Planted(None)`: none), for the
/// model checker and the conformance tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Planted(pub Option<Bug>);

/// Linked into any binary that runs a [`Planted`] Peer, and only into those: the test
/// `impl/tests/test_no_planted_bugs.rs` looks for it in the server binaries.
pub const PLANTED_MARKER: &str = "rdb: this binary can run a Peer with a planted bug";

impl Deviation for Planted {
    fn bug(&self) -> Option<Bug> {
        std::hint::black_box(PLANTED_MARKER);
        self.0
    }
}

impl<C: Clone + fmt::Debug + Payload> Peer<C, Planted> {
    /// Plants a bug of the catalogue, or none.
    pub fn plant_bug(&mut self, bug: Option<Bug>) {
        self.set_deviation(Planted(bug));
    }
}

impl<C: Clone + fmt::Debug + Payload, D: Deviation> Peer<C, D> {
    fn planted(&self, bug: Bug) -> bool {
        self.deviation.bug() == Some(bug)
    }

    /// The §5.4.1 up-to-date check as a planted bug makes it.
    pub(super) fn planted_log_ok(
        &self,
        last_log_index: Index,
        last_log_term: Term,
    ) -> Option<bool> {
        {
            if self.planted(Bug::UpToDateByIndexOnly) {
                return Some(last_log_index >= self.last_index());
            }
            if self.planted(Bug::UpToDateAgainstCurrentTerm) {
                let older = last_log_term < self.last_term();
                let shorter =
                    last_log_term == self.durable.term && last_log_index < self.last_index();
                return Some(!(older || shorter));
            }
            if self.planted(Bug::VoteWithoutLogCheck) {
                return Some(true);
            }
        }
        None
    }

    /// `adopt-lower-term`: a refused vote of a lower term lowers the candidate's term.
    pub(super) fn planted_adopt_lower_term(&mut self, term: Term, granted: bool) {
        if self.planted(Bug::AdoptLowerTerm) && !granted && term < self.durable.term {
            self.durable.term = term;
        }
    }

    /// `clear-vote-on-same-term-leader`: hearing from the leader of its term resets the vote.
    pub(super) fn planted_clear_vote(&mut self, output: &mut Output<C>) {
        if self.planted(Bug::ClearVoteOnSameTermLeader) && self.durable.voted_for.is_some() {
            self.durable.voted_for = None;
            output.persist.hard_state = true;
        }
    }

    /// `commit-before-consistency-check`: the commit index moves before the check.
    pub(super) fn planted_commit_before_check(
        &mut self,
        leader_commit: Index,
        output: &mut Output<C>,
    ) {
        if self.planted(Bug::CommitBeforeConsistencyCheck) {
            let commit = leader_commit.min(self.last_index());
            if commit > self.commit_index {
                self.commit_index = commit;
                output.commit = Some(commit);
            }
        }
    }

    /// `follower-commit-without-max`: a follower takes the request's commit index even when it
    /// is lower than its own.
    pub(super) fn planted_commit_without_max(&self, commit: Index) -> Option<bool> {
        if self.planted(Bug::FollowerCommitWithoutMax) {
            return Some(commit != self.commit_index);
        }
        None
    }

    /// `stale-append-truncates`: the log is cut back to the request's start before the terms
    /// are compared.
    pub(super) fn planted_truncate_first(&mut self, prev_log_index: Index, entries: usize) {
        if self.planted(Bug::StaleAppendTruncates) && entries > 0 {
            self.raft_log_mut()
                .truncate_from(prev_log_index.saturating_add(1));
        }
    }

    /// `append-at-log-end`: where an entry of a request goes.
    pub(super) fn planted_append_index(&self) -> Option<Index> {
        if self.planted(Bug::AppendAtLogEnd) {
            return Some(self.last_index() + 1);
        }
        None
    }

    /// `commit-on-half`: the number of servers that counts as a majority.
    pub(super) fn planted_quorum(&self, cluster: usize) -> Option<usize> {
        if self.planted(Bug::CommitOnHalf) {
            return Some((cluster / 2).max(1));
        }
        None
    }

    /// `election-majority-of-others`: the number of votes a candidate needs, worked out from
    /// the other servers only.
    pub(super) fn planted_vote_quorum(&self, cluster: usize) -> Option<usize> {
        if self.planted(Bug::ElectionMajorityOfOthers) {
            return Some((cluster - 1) / 2 + 1);
        }
        None
    }

    /// `commit-at-middle-index`: the commit candidate taken from the middle of the ascending
    /// sorted match indexes (the leader's last index among them), whatever the cluster's size.
    pub(super) fn planted_commit_middle(&self) -> Option<Index> {
        if !self.planted(Bug::CommitAtMiddleIndex) {
            return None;
        }
        let super::Role::Leader { progress, .. } = &self.role else {
            return None;
        };
        let mut matched: Vec<Index> = progress.iter().map(|(_, f)| f.matched).collect();
        matched.push(self.last_index());
        matched.sort_unstable();
        Some(matched[matched.len() / 2])
    }

    /// `commit-previous-term-by-count`: whether an entry of an earlier term may be committed by
    /// counting replicas.
    pub(super) fn planted_commit_any_term(&self) -> bool {
        if self.planted(Bug::CommitPreviousTermByCount) {
            return true;
        }
        false
    }

    /// `commit-past-new-entries`: the index up to which a follower's commit index may move:
    /// its last index instead of the last entry the request checked.
    pub(super) fn planted_commit_bound(&self, last_new: Index) -> Index {
        if self.planted(Bug::CommitPastNewEntries) {
            return self.last_index();
        }
        last_new
    }

    /// `commit-on-election`: the index a leader commits when no follower has acknowledged
    /// anything yet: its last index, as a cluster of one would.
    pub(super) fn planted_commit_unacknowledged(&self) -> Option<Index> {
        if !self.planted(Bug::CommitOnElection) {
            return None;
        }
        let super::Role::Leader { progress, .. } = &self.role else {
            return None;
        };
        progress
            .iter()
            .all(|(_, follower)| follower.matched == 0)
            .then(|| self.last_index())
    }

    /// `commit-reset-on-election`: a new leader forgets its commit index.
    pub(super) fn planted_reset_commit(&mut self) {
        if self.planted(Bug::CommitResetOnElection) {
            self.commit_index = 0;
        }
    }

    /// `pre-vote-clears-vote` and `pre-vote-bumps-term`: what a planted bug changes in a server
    /// that becomes a pre-candidate (the correct one changes neither its vote nor its term).
    pub(super) fn planted_pre_candidate_deviation(&mut self, output: &mut Output<C>) {
        if self.planted(Bug::PreVoteClearsVote) && self.durable.voted_for.is_some() {
            self.durable.voted_for = None;
            output.persist.hard_state = true;
        }
        if self.planted(Bug::PreVoteBumpsTerm) {
            self.durable.term += 1;
            self.durable.voted_for = None;
            output.persist.hard_state = true;
        }
    }

    /// `pre-vote-adopts-term`: a server asked for a pre-vote moves to the asker's own term;
    /// `pre-vote-recorded-as-vote`: a server that grants a pre-vote records it as its vote.
    pub(super) fn planted_pre_vote_deviation(
        &mut self,
        from: NodeId,
        term: Term,
        granted: bool,
        output: &mut Output<C>,
    ) {
        if self.planted(Bug::PreVoteAdoptsTerm) && term - 1 > self.durable.term {
            self.observe_term(term - 1, output);
        }
        if self.planted(Bug::PreVoteRecordedAsVote) && granted {
            self.durable.voted_for = Some(from);
            output.persist.hard_state = true;
        }
    }

    /// `candidate-forgets-own-vote`: a candidate that came out of a pre-vote round does not
    /// record its vote for itself in the new term (it still counts itself).
    pub(super) fn planted_forget_own_vote(&mut self) {
        if self.planted(Bug::CandidateForgetsOwnVote) && self.config.pre_vote {
            self.durable.voted_for = None;
        }
    }

    /// `pre-vote-counted-as-vote`: a candidate counts a granted pre-vote answer for its term
    /// as a vote. Returns whether the answer was taken that way.
    pub(super) fn planted_count_pre_vote_as_vote(
        &mut self,
        from: NodeId,
        term: Term,
        output: &mut Output<C>,
    ) -> bool {
        if !self.planted(Bug::PreVoteCountedAsVote) || term != self.durable.term {
            return false;
        }
        let Role::Candidate { votes } = &mut self.role else {
            return false;
        };
        votes.insert(from);
        self.maybe_become_leader(output);
        true
    }
}
