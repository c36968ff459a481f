//! The Peer's vocabulary: identifiers, log entries, durable state, messages and timers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A server's identifier, unique within one cluster.
pub type NodeId = u64;
/// A Raft term (§5.1). Term 0 is the state before any election.
pub type Term = u64;
/// A 1-based log index. Index 0 is the empty prefix, whose term is 0.
pub type Index = u64;

/// What flow control counts of a command: its size in bytes as it travels in an
/// AppendEntries (see [`crate::FlowControl`]).
pub trait Payload {
    /// The command's size in bytes.
    fn size(&self) -> u64;
}

impl Payload for u8 {
    fn size(&self) -> u64 {
        1
    }
}

impl Payload for String {
    fn size(&self) -> u64 {
        self.len() as u64
    }
}

impl Payload for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
}

impl Payload for bytes::Bytes {
    fn size(&self) -> u64 {
        self.len() as u64
    }
}

/// One log entry.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry<C> {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The client command, or `None` for the blank entry a new leader appends (§8), which
    /// lets it commit the entries of earlier terms without waiting for a client write.
    pub command: Option<C>,
}

impl<C: fmt::Debug> fmt::Debug for Entry<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.command {
            None => write!(f, "{}:noop", self.term),
            Some(command) => write!(f, "{}:{command:?}", self.term),
        }
    }
}

/// The state that survives a crash. It must be on stable storage before any message that
/// depends on it leaves the node (see [`crate::Output`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Durable<C> {
    /// The latest term this server has seen. Invariant: never decreases.
    pub term: Term,
    /// The candidate that received this server's vote in `term`, if any.
    pub voted_for: Option<NodeId>,
    /// The log; `log[i - 1]` is the entry at index `i`.
    /// Invariant: entry terms never decrease along the log and never exceed `term`.
    pub log: Vec<Entry<C>>,
}

impl<C> Default for Durable<C> {
    fn default() -> Self {
        Durable {
            term: 0,
            voted_for: None,
            log: Vec::new(),
        }
    }
}

/// A message between two servers. The sender and receiver travel beside it (in the envelope).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Message<C> {
    /// A candidate asks for a vote (§5.2).
    RequestVoteRequest {
        /// The candidate's term.
        term: Term,
        /// Index of the candidate's last log entry (§5.4.1).
        last_log_index: Index,
        /// Term of the candidate's last log entry (§5.4.1).
        last_log_term: Term,
        /// The candidate campaigns because the leader handed leadership over to it
        /// ([`Message::TimeoutNow`], §3.10): a server that follows a leader answers anyway,
        /// instead of ignoring the request by leader stickiness.
        #[serde(default, skip_serializing_if = "is_false")]
        transfer: bool,
    },
    /// The answer to a vote request.
    RequestVoteResponse {
        /// The voter's current term.
        term: Term,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// A leader replicates entries, or sends a heartbeat when `entries` is empty (§5.3).
    AppendEntriesRequest {
        /// The leader's term.
        term: Term,
        /// Index of the entry just before `entries`.
        prev_log_index: Index,
        /// Term of the entry at `prev_log_index`.
        prev_log_term: Term,
        /// Entries to store, starting at `prev_log_index + 1`.
        entries: Vec<Entry<C>>,
        /// The leader's commit index.
        leader_commit: Index,
    },
    /// A server whose election timer fired asks whether it could win an election before it
    /// starts one (pre-vote, dissertation §9.6). Nobody's term or vote changes: the sender
    /// stays in its term until a majority says yes.
    PreVoteRequest {
        /// The term the sender would campaign in: its own term plus one.
        term: Term,
        /// Index of the sender's last log entry.
        last_log_index: Index,
        /// Term of the sender's last log entry.
        last_log_term: Term,
    },
    /// The answer to a pre-vote request.
    PreVoteResponse {
        /// When granted, the term of the request; when refused, the voter's current term (the
        /// sender adopts it when it is newer than its own).
        term: Term,
        /// Whether the voter would grant its vote in that term.
        granted: bool,
    },
    /// A leader handing leadership over (dissertation §3.10) tells the target, whose log
    /// matches its own, to start an election now, without waiting for its election timer and
    /// without a pre-vote round.
    TimeoutNow {
        /// The leader's term.
        term: Term,
    },
    /// The answer to an append.
    AppendEntriesResponse {
        /// The follower's current term.
        term: Term,
        /// Whether the consistency check passed and the entries are stored.
        success: bool,
        /// On success the index of the last entry known to match the leader's log. On failure a
        /// back-off hint: the leader retries from just after it. The follower skips its whole
        /// run of the conflicting term, so the hint may lie below the last matching index.
        index: Index,
    },
}

impl<C: Payload> Entry<C> {
    /// The bytes flow control counts for the entry: its command's (none for a blank entry).
    pub fn size(&self) -> u64 {
        self.command.as_ref().map_or(0, Payload::size)
    }
}

impl<C> Entry<C> {
    /// The same entry with its command passed through `f` (a driver's own command type).
    pub fn try_map_command<D, E>(&self, f: impl FnOnce(&C) -> Result<D, E>) -> Result<Entry<D>, E> {
        Ok(Entry {
            term: self.term,
            command: self.command.as_ref().map(f).transpose()?,
        })
    }
}

impl<C> Message<C> {
    /// The same message with every entry's command passed through `f`; the first error stops
    /// the mapping.
    pub fn try_map_commands<D, E>(
        &self,
        mut f: impl FnMut(&C) -> Result<D, E>,
    ) -> Result<Message<D>, E> {
        Ok(match self {
            Message::RequestVoteRequest {
                term,
                last_log_index,
                last_log_term,
                transfer,
            } => Message::RequestVoteRequest {
                term: *term,
                last_log_index: *last_log_index,
                last_log_term: *last_log_term,
                transfer: *transfer,
            },
            Message::TimeoutNow { term } => Message::TimeoutNow { term: *term },
            Message::RequestVoteResponse { term, granted } => Message::RequestVoteResponse {
                term: *term,
                granted: *granted,
            },
            Message::PreVoteRequest {
                term,
                last_log_index,
                last_log_term,
            } => Message::PreVoteRequest {
                term: *term,
                last_log_index: *last_log_index,
                last_log_term: *last_log_term,
            },
            Message::PreVoteResponse { term, granted } => Message::PreVoteResponse {
                term: *term,
                granted: *granted,
            },
            Message::AppendEntriesRequest {
                term,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => Message::AppendEntriesRequest {
                term: *term,
                prev_log_index: *prev_log_index,
                prev_log_term: *prev_log_term,
                entries: entries
                    .iter()
                    .map(|entry| entry.try_map_command(&mut f))
                    .collect::<Result<_, _>>()?,
                leader_commit: *leader_commit,
            },
            Message::AppendEntriesResponse {
                term,
                success,
                index,
            } => Message::AppendEntriesResponse {
                term: *term,
                success: *success,
                index: *index,
            },
        })
    }

    /// The term every message carries: the sender's, except that a pre-vote request carries
    /// the term its sender would campaign in, and a granted pre-vote answer the term of the
    /// request (see [`Message::sender_term`]).
    pub fn term(&self) -> Term {
        match self {
            Message::RequestVoteRequest { term, .. }
            | Message::RequestVoteResponse { term, .. }
            | Message::PreVoteRequest { term, .. }
            | Message::PreVoteResponse { term, .. }
            | Message::AppendEntriesRequest { term, .. }
            | Message::TimeoutNow { term }
            | Message::AppendEntriesResponse { term, .. } => *term,
        }
    }

    /// The sender's own term, when the message says it: the term a receiver of a newer term
    /// must follow (§5.1). A pre-vote request and a granted pre-vote answer carry a term that
    /// nobody is in yet, so they say nothing about the sender's term and change nobody's.
    pub fn sender_term(&self) -> Option<Term> {
        match self {
            Message::PreVoteRequest { .. } | Message::PreVoteResponse { granted: true, .. } => None,
            _ => Some(self.term()),
        }
    }

    /// The message's kind, as named in traces and in the TLA+ spec.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::RequestVoteRequest { .. } => "RequestVoteRequest",
            Message::RequestVoteResponse { .. } => "RequestVoteResponse",
            Message::PreVoteRequest { .. } => "PreVoteRequest",
            Message::PreVoteResponse { .. } => "PreVoteResponse",
            Message::AppendEntriesRequest { .. } => "AppendEntriesRequest",
            Message::TimeoutNow { .. } => "TimeoutNow",
            Message::AppendEntriesResponse { .. } => "AppendEntriesResponse",
        }
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The Peer's timers. The Peer asks for them to be set or cancelled; the driver decides when
/// they fire (randomized durations in a node, any order in the model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timer {
    /// Followers and candidates: start an election (with pre-vote, a pre-vote round first).
    /// Leaders: check that a majority was heard from since the last check (check-quorum), or
    /// step down; and give up a leadership transfer that has not completed.
    Election,
    /// Leaders: send AppendEntries to every follower.
    Heartbeat,
}

/// A server's role (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RoleKind {
    /// Follows a leader, answers candidates.
    Follower,
    /// Asks whether it could win an election, before it starts one (pre-vote).
    PreCandidate,
    /// Asks for votes in its term.
    Candidate,
    /// Replicates its log to the others.
    Leader,
}

impl fmt::Display for RoleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            RoleKind::Follower => "follower",
            RoleKind::PreCandidate => "precandidate",
            RoleKind::Candidate => "candidate",
            RoleKind::Leader => "leader",
        };
        f.write_str(name)
    }
}
