//! Terms, roles and elections (§5.1, §5.2, §5.4.1).
//!
//! A server that hears of a newer term follows it. A server whose election timer fires becomes
//! a candidate of the next term and asks every other server for its vote; a server grants at
//! most one vote per term, and only to a candidate whose log is at least as up-to-date as its
//! own. A candidate that a majority voted for leads the term and appends a blank entry of it
//! (§8). A leader that stops hearing from a majority steps down (check-quorum).

use super::progress::ProgressTracker;
use super::Payload;
use super::{
    quorum, Deviation, Entry, Index, Message, NodeId, Output, Peer, Role, Term, Timer, TimerCommand,
};
use std::collections::BTreeSet;
use std::fmt;

impl<C: Clone + fmt::Debug + Payload, D: Deviation> Peer<C, D> {
    // ----- Term and role changes -----

    /// Any message of a newer term makes this server a follower of that term (§5.1).
    pub(super) fn observe_term(&mut self, term: Term, output: &mut Output<C>) {
        if term > self.durable.term {
            let was_leader = matches!(self.role, Role::Leader { .. });
            self.durable.term = term;
            self.durable.voted_for = None;
            output.persist.hard_state = !planted!(self, TermNotDurableOnStepDown);
            self.role = Role::Follower { leader: None };
            if was_leader {
                output.timers.push(TimerCommand::Cancel(Timer::Heartbeat));
                output.timers.push(TimerCommand::Set(Timer::Election));
            }
        }
    }

    pub(super) fn start_election(&mut self, output: &mut Output<C>) {
        self.durable.term += 1;
        self.durable.voted_for = Some(self.config.id);
        output.persist.hard_state = !planted!(self, TermNotDurableOnCampaign);
        self.role = Role::Candidate {
            votes: BTreeSet::from([self.config.id]),
        };
        output.timers.push(TimerCommand::Set(Timer::Election));
        let request = Message::RequestVoteRequest {
            term: self.durable.term,
            last_log_index: self.last_index(),
            last_log_term: self.last_term(),
        };
        for to in self.others() {
            output.send_after_persist.push((to, request.clone()));
        }
        self.maybe_become_leader(output);
    }

    fn maybe_become_leader(&mut self, output: &mut Output<C>) {
        let Role::Candidate { votes } = &self.role else {
            return;
        };
        if votes.len() < quorum::majority(self.config.members.len()) {
            return;
        }
        let progress = ProgressTracker::new(self.others(), self.last_index());
        self.role = Role::Leader {
            progress,
            heard_from: BTreeSet::new(),
        };
        output.timers.push(TimerCommand::Set(Timer::Heartbeat));
        output.timers.push(TimerCommand::Set(Timer::Election));
        self.planted_reset_commit();
        self.append_blank_entry(output);
        self.broadcast_append(output);
        // A cluster of one commits its blank entry at once.
        self.maybe_commit(output);
    }

    /// A new leader's first entry carries no command (§8): once a majority stores it, it
    /// commits, and with it every entry of earlier terms before it, with no client write.
    fn append_blank_entry(&mut self, output: &mut Output<C>) {
        let index = self.last_index() + 1;
        let term = self.durable.term;
        self.raft_log_mut().extend([Entry {
            term,
            command: None,
        }]);
        output.persist.log_from = Some(
            output
                .persist
                .log_from
                .map_or(index, |from| from.min(index)),
        );
    }

    /// Check-quorum: a leader that has not heard from a majority since the last check steps
    /// down, so that a leader cut off from the cluster stops acting as one. Only
    /// AppendEntries responses of the current term count, so a node's election timeout must be
    /// several heartbeat round trips long.
    pub(super) fn check_quorum(&mut self, output: &mut Output<C>) {
        let Role::Leader { heard_from, .. } = &mut self.role else {
            return;
        };
        let heard = heard_from.len() + 1;
        if heard >= quorum::majority(self.config.members.len()) {
            heard_from.clear();
        } else {
            self.role = Role::Follower { leader: None };
            output.timers.push(TimerCommand::Cancel(Timer::Heartbeat));
        }
        output.timers.push(TimerCommand::Set(Timer::Election));
    }

    // ----- Elections (§5.2, §5.4.1) -----

    pub(super) fn handle_request_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        last_log_index: Index,
        last_log_term: Term,
        output: &mut Output<C>,
    ) {
        let log_ok = match self.planted_log_ok(last_log_index, last_log_term) {
            Some(planted) => planted,
            None => self.raft_log().is_up_to_date(last_log_index, last_log_term),
        };
        let vote_free = match self.durable.voted_for {
            None => true,
            Some(id) => id == from || planted!(self, DoubleVote),
        };
        let granted = term == self.durable.term
            && matches!(self.role, Role::Follower { .. })
            && vote_free
            && log_ok;
        if granted {
            if self.durable.voted_for != Some(from) {
                self.durable.voted_for = Some(from);
                output.persist.hard_state = true;
            }
            output.timers.push(TimerCommand::Set(Timer::Election));
        }
        let response = Message::RequestVoteResponse {
            term: self.durable.term,
            granted,
        };
        output.send_after_persist.push((from, response));
    }

    pub(super) fn handle_request_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        granted: bool,
        output: &mut Output<C>,
    ) {
        self.planted_adopt_lower_term(term, granted);
        if (term != self.durable.term && !planted!(self, CountStaleVotes)) || !granted {
            return;
        }
        if let Role::Candidate { votes } = &mut self.role {
            votes.insert(from);
            self.maybe_become_leader(output);
        }
    }
}
