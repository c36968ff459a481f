//! The planted bugs' deviations from the correct Peer, kept out of the way of a reader of the
//! protocol (model checking only; see `crate::bugs`). Each method returns what the Peer would
//! do with its bug planted, or `None` when no bug of its kind is planted, in which case the
//! caller does the correct thing. Without the `checker` feature every method returns `None`.
//!
//! This file is excluded from mutation testing (`.cargo/mutants.toml`): a mutation here
//! changes a planted bug, not the Peer.

use super::{Index, Output, Peer, Term};
#[cfg(feature = "checker")]
use crate::bugs::Bug;
use std::fmt;

impl<C: Clone + fmt::Debug> Peer<C> {
    #[cfg(feature = "checker")]
    fn planted(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    /// The §5.4.1 up-to-date check as a planted bug makes it.
    pub(super) fn planted_log_ok(
        &self,
        last_log_index: Index,
        last_log_term: Term,
    ) -> Option<bool> {
        #[cfg(feature = "checker")]
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
        let _ = (last_log_index, last_log_term);
        None
    }

    /// `adopt-lower-term`: a refused vote of a lower term lowers the candidate's term.
    pub(super) fn planted_adopt_lower_term(&mut self, term: Term, granted: bool) {
        #[cfg(feature = "checker")]
        if self.planted(Bug::AdoptLowerTerm) && !granted && term < self.durable.term {
            self.durable.term = term;
        }
        let _ = (term, granted);
    }

    /// `clear-vote-on-same-term-leader`: hearing from the leader of its term resets the vote.
    pub(super) fn planted_clear_vote(&mut self, output: &mut Output<C>) {
        #[cfg(feature = "checker")]
        if self.planted(Bug::ClearVoteOnSameTermLeader) && self.durable.voted_for.is_some() {
            self.durable.voted_for = None;
            output.persist.hard_state = true;
        }
        let _ = output;
    }

    /// `commit-before-consistency-check`: the commit index moves before the check.
    pub(super) fn planted_commit_before_check(
        &mut self,
        leader_commit: Index,
        output: &mut Output<C>,
    ) {
        #[cfg(feature = "checker")]
        if self.planted(Bug::CommitBeforeConsistencyCheck) {
            let commit = leader_commit.min(self.last_index());
            if commit > self.commit_index {
                self.commit_index = commit;
                output.commit = Some(commit);
            }
        }
        let _ = (leader_commit, output);
    }

    /// `follower-commit-without-max`: a follower takes the request's commit index even when it
    /// is lower than its own.
    pub(super) fn planted_commit_without_max(&self, commit: Index) -> Option<bool> {
        #[cfg(feature = "checker")]
        if self.planted(Bug::FollowerCommitWithoutMax) {
            return Some(commit != self.commit_index);
        }
        let _ = commit;
        None
    }

    /// `stale-append-truncates`: the log is cut back to the request's start before the terms
    /// are compared.
    pub(super) fn planted_truncate_first(&mut self, prev_log_index: Index, entries: usize) {
        #[cfg(feature = "checker")]
        if self.planted(Bug::StaleAppendTruncates) && entries > 0 {
            self.durable.log.truncate(prev_log_index as usize);
        }
        let _ = (prev_log_index, entries);
    }

    /// `append-at-log-end`: where an entry of a request goes.
    pub(super) fn planted_append_index(&self) -> Option<Index> {
        #[cfg(feature = "checker")]
        if self.planted(Bug::AppendAtLogEnd) {
            return Some(self.last_index() + 1);
        }
        None
    }

    /// `commit-on-half`: the number of servers that counts as a majority.
    pub(super) fn planted_quorum(&self, cluster: usize) -> Option<usize> {
        #[cfg(feature = "checker")]
        if self.planted(Bug::CommitOnHalf) {
            return Some((cluster / 2).max(1));
        }
        let _ = cluster;
        None
    }

    /// `commit-previous-term-by-count`: whether an entry of an earlier term may be committed by
    /// counting replicas.
    pub(super) fn planted_commit_any_term(&self) -> bool {
        #[cfg(feature = "checker")]
        if self.planted(Bug::CommitPreviousTermByCount) {
            return true;
        }
        false
    }
}
