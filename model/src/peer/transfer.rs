//! Leadership transfer (dissertation §3.10).
//!
//! A leader asked to hand leadership to another server stops taking proposals, so that its log
//! stops growing, and replicates to the target as usual. Once the target's match index reaches
//! the leader's last index, the leader sends it [`Message::TimeoutNow`]: the target starts an
//! election at once, skipping pre-vote, and its vote requests say they come from a transfer,
//! so that servers that follow the leader answer them instead of ignoring them by leader
//! stickiness. The target's log is as up-to-date as the leader's, so it can win; when it does,
//! the old leader follows the newer term. The leader gives the transfer up at its next
//! election timeout (re-armed when the transfer starts) and takes proposals again.

use super::Payload;
use super::{Deviation, Message, NodeId, Output, Peer, Role, Term, Timer, TimerCommand};
use std::fmt;

impl<C: Clone + fmt::Debug + Payload, D: Deviation> Peer<C, D> {
    /// Starts handing leadership to `to`, a follower (checked by the caller).
    pub(super) fn start_transfer(&mut self, to: NodeId, output: &mut Output<C>) {
        let Role::Leader { transferee, .. } = &mut self.role else {
            return;
        };
        *transferee = Some(to);
        // The transfer has one election timeout to complete.
        output.timers.push(TimerCommand::Set(Timer::Election));
        if planted!(self, TimeoutNowBeforeCaughtUp) {
            self.send_timeout_now(to, output);
            return;
        }
        if !self.maybe_send_timeout_now(to, output) {
            self.send_append_to(to, output);
        }
    }

    /// Tells the transferee to campaign when `from` is the transferee and its log matches the
    /// leader's. Returns whether it did.
    pub(super) fn maybe_send_timeout_now(&mut self, from: NodeId, output: &mut Output<C>) -> bool {
        let last_index = self.last_index();
        let Role::Leader {
            progress,
            transferee: Some(to),
            ..
        } = &self.role
        else {
            return false;
        };
        if *to != from || progress.get(to).is_none_or(|p| p.matched != last_index) {
            return false;
        }
        self.send_timeout_now(from, output);
        true
    }

    fn send_timeout_now(&mut self, to: NodeId, output: &mut Output<C>) {
        let message = Message::TimeoutNow {
            term: self.durable.term,
        };
        output.send_after_persist.push((to, message));
    }

    /// The leader gives up a transfer that has not completed (at its election timeout).
    pub(super) fn give_up_transfer(&mut self) {
        if planted!(self, TransferNeverGivenUp) {
            return;
        }
        if let Role::Leader { transferee, .. } = &mut self.role {
            *transferee = None;
        }
    }

    /// A follower told by the leader of its term to take over starts an election at once,
    /// whatever its election timer says, and without a pre-vote round: the leader itself
    /// asked, so the cluster has no healthy leader to protect from it. A stale TimeoutNow (of
    /// an older term), or one reaching a server that campaigns already, changes nothing.
    pub(super) fn handle_timeout_now(&mut self, term: Term, output: &mut Output<C>) {
        if term < self.durable.term || !matches!(self.role, Role::Follower { .. }) {
            return;
        }
        if self.config.pre_vote && planted!(self, TransfereeRunsPreVote) {
            self.start_pre_vote(output);
            return;
        }
        self.start_election(true, output);
    }

    /// Whether `message` asks for a vote on behalf of a leadership transfer, which leader
    /// stickiness does not ignore.
    pub(super) fn is_transfer_request(&self, message: &Message<C>) -> bool {
        matches!(message, Message::RequestVoteRequest { transfer: true, .. })
            && !planted!(self, TransferFlagIgnored)
    }
}
