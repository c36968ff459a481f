//! Log replication and commitment (§5.3, §5.4.2).
//!
//! The leader sends each follower the entries from the follower's next index on, as much at
//! a time as flow control allows (AppendEntries; a heartbeat when there are none). A follower takes them only when its log
//! holds the entry just before them, with the same term, and deletes a conflicting suffix
//! first; otherwise it answers with a hint of where the logs may still match. The leader
//! tracks what each follower stores (`progress.rs`) and commits the highest index stored on a
//! majority once that entry is of its own term.

use super::log::RaftLog;
use super::progress::Flow;
use super::{
    quorum, Deviation, Entry, Index, Message, NodeId, Output, Payload, Peer, Role, Term, Timer,
    TimerCommand,
};
use std::fmt;

impl<C: Clone + fmt::Debug + Payload, D: Deviation> Peer<C, D> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_append_entries_request(
        &mut self,
        from: NodeId,
        term: Term,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry<C>>,
        leader_commit: Index,
        output: &mut Output<C>,
    ) {
        if term < self.durable.term && !planted!(self, AcceptStaleLeader) {
            let response = Message::AppendEntriesResponse {
                term: self.durable.term,
                success: false,
                index: 0,
            };
            output.send_after_persist.push((from, response));
            return;
        }
        if term == self.durable.term {
            // A candidate that hears from the leader of its term gives up (§5.2).
            if matches!(self.role, Role::Leader { .. }) {
                output.timers.push(TimerCommand::Cancel(Timer::Heartbeat));
            }
            if !matches!(self.role, Role::Follower { leader: Some(id) } if id == from) {
                self.role = Role::Follower { leader: Some(from) };
            }
            self.planted_clear_vote(output);
            output.timers.push(TimerCommand::Set(Timer::Election));
        }
        self.planted_commit_before_check(leader_commit, output);
        let consistent = if planted!(self, NoConsistencyCheck) {
            prev_log_index <= self.last_index()
        } else {
            self.raft_log().matches(prev_log_index, prev_log_term)
        };
        if !consistent {
            let response = Message::AppendEntriesResponse {
                term: self.durable.term,
                success: false,
                index: self.rejection_hint(prev_log_index),
            };
            output.send_after_persist.push((from, response));
            return;
        }
        let last_new = prev_log_index + entries.len() as Index;
        self.append_entries(prev_log_index, entries, output);
        let commit = leader_commit.min(self.planted_commit_bound(last_new));
        let advance = match self.planted_commit_without_max(commit) {
            Some(planted) => planted,
            None => commit > self.commit_index,
        };
        if advance {
            self.commit_index = commit;
            output.commit = Some(commit);
        }
        let acknowledged = if planted!(self, AckWholeLog) {
            self.last_index()
        } else {
            last_new
        };
        let response = Message::AppendEntriesResponse {
            term: self.durable.term,
            success: true,
            index: acknowledged,
        };
        output.send_after_persist.push((from, response));
    }

    /// The highest index at which this log may still match the leader's, given that the entry
    /// at `prev_log_index` did not: the whole run of the conflicting term is skipped at once.
    pub(super) fn rejection_hint(&self, prev_log_index: Index) -> Index {
        if prev_log_index > self.last_index() {
            return self.last_index();
        }
        let conflict_term = self.term_at(prev_log_index);
        let mut index = prev_log_index.saturating_sub(1);
        while index > self.commit_index && self.term_at(index) == conflict_term {
            index -= 1;
        }
        index
    }

    /// Stores `entries` after `prev_log_index`, deleting a conflicting suffix first (§5.3).
    /// Entries already present with the same term are kept: a stale or reordered request never
    /// truncates what a later one appended.
    pub(super) fn append_entries(
        &mut self,
        prev_log_index: Index,
        entries: Vec<Entry<C>>,
        output: &mut Output<C>,
    ) {
        self.planted_truncate_first(prev_log_index, entries.len());
        for (offset, entry) in entries.into_iter().enumerate() {
            let index = match self.planted_append_index() {
                Some(planted) => planted,
                None => prev_log_index + 1 + offset as Index,
            };
            if index <= self.last_index() {
                if self.term_at(index) == entry.term {
                    continue;
                }
                if planted!(self, AppendWithoutTruncate) {
                    continue;
                }
                // Never a committed index: `refusal` turned such a request away.
                self.raft_log_mut().truncate_from(index);
            }
            self.raft_log_mut().append(entry);
            let from = output
                .persist
                .log_from
                .map_or(index, |from| from.min(index));
            output.persist.log_from = Some(from);
        }
    }

    pub(super) fn handle_append_entries_response(
        &mut self,
        from: NodeId,
        term: Term,
        success: bool,
        index: Index,
        output: &mut Output<C>,
    ) {
        if term != self.durable.term {
            return;
        }
        let last_index = self.last_index();
        let Role::Leader {
            progress,
            heard_from,
            ..
        } = &mut self.role
        else {
            return;
        };
        heard_from.insert(from);
        let follower = progress.follower_mut(from);
        if success {
            // A correct follower never acknowledges past our log (`refusal` turns that away);
            // clamp anyway, for a planted bug's acknowledgements.
            let index = if planted!(self, MatchFromNextGuess) {
                follower.next - 1
            } else {
                index.min(last_index)
            };
            let leaked = planted!(self, InflightBytesLeak).then(|| follower.inflight_bytes());
            follower.acknowledge(index);
            if let Some(bytes) = leaked {
                follower.planted_keep_bytes(bytes);
            }
            self.maybe_commit(output);
            // The window may have room again, or a probe was just answered.
            self.send_append(from, false, output);
            // A transferee whose log now matches is told to take over.
            self.maybe_send_timeout_now(from, output);
        } else if index < follower.next - 1 {
            assert!(
                !planted!(self, PanicOnStaleRejection) || index >= follower.matched,
                "rejection below the matched index {} of {from}",
                follower.matched
            );
            if planted!(self, ProbeBelowMatch) {
                follower.planted_probe_after(index);
            } else if planted!(self, RejectionBelowMatchTakenAsStray)
                && follower.planted_looks_stray(index)
            {
            } else {
                follower.back_off(index);
            }
            self.send_append(from, false, output);
        }
    }

    /// Advances the commit index to the highest index stored on a majority, if that entry is
    /// of the current term (§5.4.2).
    pub(super) fn maybe_commit(&mut self, output: &mut Output<C>) {
        let Role::Leader { progress, .. } = &self.role else {
            return;
        };
        let cluster = self.config.members.len();
        let quorum = match self.planted_quorum(cluster) {
            Some(planted) => planted,
            None => quorum::majority(cluster),
        };
        let candidate = match self
            .planted_commit_unacknowledged()
            .or_else(|| self.planted_commit_middle())
        {
            Some(planted) => planted,
            None => progress.quorum_index(self.last_index(), quorum),
        };
        let own_term =
            self.planted_commit_any_term() || self.term_at(candidate) == self.durable.term;
        if candidate > self.commit_index && own_term {
            self.commit_index = candidate;
            output.commit = Some(candidate);
        }
    }

    /// Sends `to` what its progress allows (see [`Self::send_append`]).
    pub(super) fn send_append_to(&mut self, to: NodeId, output: &mut Output<C>) {
        self.send_append(to, false, output);
    }

    /// Sends every follower what its progress allows (after a proposal or an election).
    pub(super) fn broadcast_append(&mut self, output: &mut Output<C>) {
        let others: Vec<NodeId> = self.others().collect();
        for to in others {
            self.send_append(to, false, output);
        }
    }

    /// The heartbeat: every follower hears from the leader, paused or not (see
    /// [`Self::send_append`]).
    pub(super) fn broadcast_heartbeat(&mut self, output: &mut Output<C>) {
        let others: Vec<NodeId> = self.others().collect();
        for to in others {
            self.send_append(to, true, output);
        }
    }

    /// Sends `to` what its progress allows (`progress.rs`): one probe from its next index, or
    /// pipelined AppendEntries of at most the configured entries and bytes each while the
    /// window has room. On a `heartbeat` a paused probe goes again and a full window forgets
    /// its oldest message, and at least one message leaves: an empty one after `next - 1` when
    /// there is nothing else to send.
    fn send_append(&mut self, to: NodeId, heartbeat: bool, output: &mut Output<C>) {
        let flow = self.config.flow;
        let Role::Leader { progress, .. } = &mut self.role else {
            return;
        };
        let follower = progress.follower_mut(to);
        if heartbeat {
            follower.resume(&flow);
        }
        let log = RaftLog::new(&self.durable.log);
        let mut sent_one = false;
        while !follower.is_paused(&flow) {
            let prev_log_index = follower.next - 1;
            let (entries, bytes) =
                log.batch_from(prev_log_index + 1, flow.max_entries, flow.max_bytes);
            let probing = matches!(follower.flow, Flow::Probe { .. });
            if entries.is_empty() && !probing && (sent_one || !heartbeat) {
                break;
            }
            let message = Message::AppendEntriesRequest {
                term: self.durable.term,
                prev_log_index,
                prev_log_term: log.term_at(prev_log_index),
                entries: entries.to_vec(),
                leader_commit: self.commit_index,
            };
            output.send_now.push((to, message));
            follower.sent(entries.len() as Index, bytes);
            sent_one = true;
            if probing || entries.is_empty() {
                break;
            }
        }
    }
}
