//! Messages that no correct server can send: the Peer refuses them whole instead of acting on
//! them (or asserting on them).
//!
//! What a message can be judged impossible from on its own (a zero term, entries out of term
//! order) is the wire validation's business, before the Peer (`rdb-server`'s `convert.rs`).
//! What is left here needs the Peer's state to be seen as impossible.

use super::types::{Entry, Index, Message, NodeId, Term};
use super::Payload;
use super::{Deviation, Peer, Role};
use std::fmt;

/// Why the Peer refused a message. A refused message changes nothing in the Peer and sends
/// nothing; the driver counts and logs it. A correct cluster never produces one (the model
/// checker reports any refusal by a correct Peer as a broken `PeerInvariant`), so each one is
/// evidence of a faulty or hostile member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// An AppendEntries request would replace the entry at `index`, which this server knows is
    /// committed: a leader holds every committed entry (Leader Completeness, §5.4).
    OverwritesCommitted {
        /// The committed index the request would replace.
        index: Index,
        /// The term of the committed entry there.
        committed_term: Term,
        /// The term of the request's entry for that index.
        entry_term: Term,
    },
    /// An AppendEntries request or a TimeoutNow of the current term from a server other than
    /// the term's leader, which is known: a term has at most one leader (Election Safety,
    /// §5.2), and only a leader sends either.
    SecondLeader {
        /// The term.
        term: Term,
        /// The leader this server knows for it (itself when it leads).
        leader: NodeId,
    },
    /// A successful AppendEntries response of the leader's term acknowledges an index past the
    /// leader's log: the leader never sent an entry there.
    AcknowledgesBeyondLog {
        /// The acknowledged index.
        index: Index,
        /// The leader's last index.
        last_index: Index,
    },
    /// A failed AppendEntries response of the leader's term carries a back-off hint past the
    /// leader's log: a hint is always below a prev index the leader sent.
    HintBeyondLog {
        /// The hint.
        index: Index,
        /// The leader's last index.
        last_index: Index,
    },
}

impl Refusal {
    /// A short stable name, for counters and log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::OverwritesCommitted { .. } => "overwrites-committed",
            Refusal::SecondLeader { .. } => "second-leader",
            Refusal::AcknowledgesBeyondLog { .. } => "acknowledges-beyond-log",
            Refusal::HintBeyondLog { .. } => "hint-beyond-log",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::OverwritesCommitted {
                index,
                committed_term,
                entry_term,
            } => write!(
                f,
                "AppendEntries would replace committed index {index} (term {committed_term}) \
                 with an entry of term {entry_term}"
            ),
            Refusal::SecondLeader { term, leader } => write!(
                f,
                "a leader's message of term {term} from a second leader; {leader} leads that term"
            ),
            Refusal::AcknowledgesBeyondLog { index, last_index } => write!(
                f,
                "acknowledgement of index {index}, past the leader's last index {last_index}"
            ),
            Refusal::HintBeyondLog { index, last_index } => write!(
                f,
                "rejection hint {index}, past the leader's last index {last_index}"
            ),
        }
    }
}

impl<C: Clone + fmt::Debug + Payload, D: Deviation> Peer<C, D> {
    /// Why `message` from `from` is impossible in this state, if it is. Checked before the
    /// message changes anything, so that a refused message leaves the Peer as it was. With a
    /// planted bug nothing is refused: the model's properties report what the bug does.
    pub(super) fn refusal(&self, from: NodeId, message: &Message<C>) -> Option<Refusal> {
        if self.bug_planted() {
            return None;
        }
        match message {
            Message::AppendEntriesRequest {
                term,
                prev_log_index,
                prev_log_term,
                entries,
                ..
            } if *term >= self.durable.term => self
                .second_leader(from, *term)
                .or_else(|| self.overwritten_commit(*prev_log_index, *prev_log_term, entries)),
            // Only the leader of a term hands it over.
            Message::TimeoutNow { term } => self.second_leader(from, *term),
            Message::AppendEntriesResponse {
                term,
                success,
                index,
            } if *term == self.durable.term
                && matches!(self.role, Role::Leader { .. })
                && *index > self.last_index() =>
            {
                let last_index = self.last_index();
                Some(if *success {
                    Refusal::AcknowledgesBeyondLog {
                        index: *index,
                        last_index,
                    }
                } else {
                    Refusal::HintBeyondLog {
                        index: *index,
                        last_index,
                    }
                })
            }
            _ => None,
        }
    }

    /// An AppendEntries or TimeoutNow of the current term from `from` while another server is
    /// known to lead it (a candidate knows no leader yet and gives up to `from`).
    fn second_leader(&self, from: NodeId, term: Term) -> Option<Refusal> {
        if term != self.durable.term {
            return None;
        }
        let leader = match self.role {
            Role::Leader { .. } => self.config.id,
            Role::Follower {
                leader: Some(leader),
            } if leader != from => leader,
            _ => return None,
        };
        Some(Refusal::SecondLeader { term, leader })
    }

    /// The first committed index that an AppendEntries passing the consistency check would
    /// replace with an entry of another term.
    fn overwritten_commit(
        &self,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: &[Entry<C>],
    ) -> Option<Refusal> {
        if !self.raft_log().matches(prev_log_index, prev_log_term) {
            // Rejected by the consistency check: nothing is appended.
            return None;
        }
        let overlap = self.commit_index.saturating_sub(prev_log_index);
        let overlap = usize::try_from(overlap).unwrap_or(usize::MAX);
        (prev_log_index + 1..)
            .zip(entries.iter().take(overlap))
            .find(|(index, entry)| self.term_at(*index) != entry.term)
            .map(|(index, entry)| Refusal::OverwritesCommitted {
                index,
                committed_term: self.term_at(index),
                entry_term: entry.term,
            })
    }
}
