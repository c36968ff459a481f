//! Terms, roles and elections (§5.1, §5.2, §5.4.1).
//!
//! A server that hears of a newer term follows it. A server whose election timer fires becomes
//! a candidate of the next term and asks every other server for its vote; a server grants at
//! most one vote per term, and only to a candidate whose log is at least as up-to-date as its
//! own. A candidate that a majority voted for leads the term and appends a blank entry of it
//! (§8). A leader that stops hearing from a majority steps down (check-quorum).
//!
//! With pre-vote (dissertation §9.6) a server whose election timer fires first becomes a
//! pre-candidate: in its own term, with its vote unchanged, it asks the others whether they
//! would vote for it in the next term, and starts the election only once a majority says yes.
//! A server answers yes when the proposed term is newer than its own and the asker's log is at
//! least as up-to-date as its own; answering changes nothing in it. With pre-vote comes leader
//! stickiness: a server that follows a leader of its term (or leads) ignores requests for
//! votes of a newer term, so a server coming back from a partition cannot depose a leader
//! that a majority still hears from. A follower stays sticky until its own election timer
//! fires, which the driver arms for at least the minimum election timeout. Leadership transfer
//! (`transfer.rs`) starts an election here too, one whose requests stickiness does not ignore.

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

    /// Pre-vote (§9.6): become a pre-candidate in the current term and ask every other server
    /// whether it would vote for this server in the next term.
    pub(super) fn start_pre_vote(&mut self, output: &mut Output<C>) {
        self.role = Role::PreCandidate {
            votes: BTreeSet::from([self.config.id]),
        };
        self.planted_pre_candidate_deviation(output);
        output.timers.push(TimerCommand::Set(Timer::Election));
        let request = Message::PreVoteRequest {
            term: self.durable.term + 1,
            last_log_index: self.last_index(),
            last_log_term: self.last_term(),
        };
        for to in self.others() {
            output.send_after_persist.push((to, request.clone()));
        }
        // A cluster of one needs nobody's answer.
        self.maybe_end_pre_vote(output);
    }

    /// A pre-candidate that a majority would vote for starts the election.
    fn maybe_end_pre_vote(&mut self, output: &mut Output<C>) {
        let Role::PreCandidate { votes } = &self.role else {
            return;
        };
        if votes.len() >= quorum::majority(self.config.members.len()) {
            self.start_election(false, output);
        }
    }

    /// Leader stickiness (§9.6): with pre-vote on, a server that follows a leader of its term,
    /// or leads it, ignores a request for a vote (or a pre-vote) of a newer term: the leader
    /// is alive as far as it knows, so the asker was cut off or is out of date. Such a request
    /// changes nothing and gets no answer.
    pub(super) fn ignores(&self, message: &Message<C>) -> bool {
        let asks = matches!(
            message,
            Message::RequestVoteRequest { .. } | Message::PreVoteRequest { .. }
        );
        let has_leader = match self.role {
            Role::Follower { leader } => leader.is_some(),
            Role::Leader { .. } => true,
            Role::PreCandidate { .. } | Role::Candidate { .. } => false,
        };
        self.config.pre_vote
            && asks
            && message.term() > self.durable.term
            && has_leader
            && !self.is_transfer_request(message)
            && !planted!(self, NoLeaderStickiness)
    }

    /// Becomes a candidate of the next term and asks every other server for its vote;
    /// `transfer` says the leader handed leadership over (§3.10).
    pub(super) fn start_election(&mut self, transfer: bool, output: &mut Output<C>) {
        self.durable.term += 1;
        self.durable.voted_for = Some(self.config.id);
        self.planted_forget_own_vote();
        output.persist.hard_state = !planted!(self, TermNotDurableOnCampaign);
        self.role = Role::Candidate {
            votes: BTreeSet::from([self.config.id]),
        };
        output.timers.push(TimerCommand::Set(Timer::Election));
        let request = Message::RequestVoteRequest {
            term: self.durable.term,
            last_log_index: self.last_index(),
            last_log_term: self.last_term(),
            transfer,
        };
        for to in self.others() {
            output.send_after_persist.push((to, request.clone()));
        }
        self.maybe_become_leader(output);
    }

    pub(super) fn maybe_become_leader(&mut self, output: &mut Output<C>) {
        let Role::Candidate { votes } = &self.role else {
            return;
        };
        let cluster = self.config.members.len();
        let quorum = self
            .planted_vote_quorum(cluster)
            .unwrap_or_else(|| quorum::majority(cluster));
        if votes.len() < quorum {
            return;
        }
        let progress = ProgressTracker::new(self.others(), self.last_index());
        self.role = Role::Leader {
            progress,
            heard_from: BTreeSet::new(),
            transferee: None,
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
        self.give_up_transfer();
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
            && matches!(self.role, Role::Follower { .. } | Role::PreCandidate { .. })
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

    // ----- Pre-vote (§9.6) -----

    /// Would this server vote for the asker in `term`? Only if that term is newer than its
    /// own and the asker's log is at least as up-to-date (§5.4.1). Its own vote does not
    /// matter (it was cast in an older term), and nothing in this server changes.
    pub(super) fn handle_pre_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        last_log_index: Index,
        last_log_term: Term,
        output: &mut Output<C>,
    ) {
        let log_ok = planted!(self, PreVoteWithoutLogCheck)
            || self.raft_log().is_up_to_date(last_log_index, last_log_term);
        let granted = term > self.durable.term && log_ok;
        self.planted_pre_vote_deviation(from, term, granted, output);
        let response = Message::PreVoteResponse {
            term: if granted { term } else { self.durable.term },
            granted,
        };
        output.send_after_persist.push((from, response));
    }

    /// A granted answer for the next term counts towards this pre-candidate's majority. (A
    /// refused answer's newer term, if any, was followed already; a granted answer for another
    /// term belongs to an earlier round.)
    pub(super) fn handle_pre_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        granted: bool,
        output: &mut Output<C>,
    ) {
        if !granted {
            return;
        }
        if self.planted_count_pre_vote_as_vote(from, term, output) {
            return;
        }
        if term != self.durable.term + 1 {
            return;
        }
        if let Role::PreCandidate { votes } = &mut self.role {
            votes.insert(from);
            self.maybe_end_pre_vote(output);
        }
    }
}
