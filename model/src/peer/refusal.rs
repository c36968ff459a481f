//! Messages that no correct server can send: the Peer refuses them whole instead of acting on
//! them (or asserting on them).
//!
//! What a message can be judged impossible from on its own (a zero term, entries out of term
//! order) is the wire validation's business, before the Peer (`rdb-server`'s `convert.rs`).
//! What is left here needs the Peer's state to be seen as impossible.

use super::types::{Index, NodeId, Term};
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
    /// An AppendEntries request of the current term from a server other than the term's
    /// leader, which is known: a term has at most one leader (Election Safety, §5.2).
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
                "AppendEntries of term {term} from a second leader; {leader} leads that term"
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
