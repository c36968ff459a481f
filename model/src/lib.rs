//! # rdb's Raft, written once
//!
//! This crate holds the only Raft protocol logic of rdb: the sans-IO [`Peer`]. The gRPC node
//! (`rdb-server`) drives it over the network with fsync'd files; the stateright model in
//! [`checker`] (feature `checker`, on by default) drives it through every reachable state of a
//! bounded cluster and checks the safety properties of the Raft paper. The [`peer`] module's
//! documentation lists its files, one concern each (elections, replication, the log's index
//! arithmetic, the leader's progress tracker).
//!
//! A three-server cluster, driven by hand:
//!
//! ```
//! use model::{Config, Durable, Message, Peer, RoleKind, Timer};
//!
//! let members = vec![1, 2, 3];
//! let boot = |id| Peer::<String>::restore(Config::new(id, members.clone()), Durable::default());
//! let (mut a, _) = boot(1).unwrap();
//! let (mut b, _) = boot(2).unwrap();
//!
//! // Server 1's election timer fires: it becomes a candidate of term 1 and asks for votes.
//! // The vote requests may leave only after its new term and vote are on stable storage.
//! let out = a.handle_timeout(Timer::Election);
//! assert!(out.persist.hard_state);
//! let (to, request) = out.send_after_persist[0].clone();
//! assert_eq!(to, 2);
//!
//! // Server 2 grants its vote; one vote plus its own is a majority of three.
//! let out = b.handle_message(1, request).unwrap();
//! let (_, response) = out.send_after_persist[0].clone();
//! assert!(matches!(response, Message::RequestVoteResponse { granted: true, .. }));
//! let out = a.handle_message(2, response).unwrap();
//! assert_eq!(a.role_kind(), RoleKind::Leader);
//!
//! // The new leader appends a blank entry of its term (§8) and probes each follower with it,
//! // just after its earlier last entry (flow control). Server 2 stores it; its answer tells
//! // the leader where their logs agree, and commits the blank entry on a majority.
//! assert_eq!(a.log().len(), 1);
//! assert!(a.log()[0].command.is_none());
//! let (_, probe) = out.send_now[0].clone();
//! let out = b.handle_message(1, probe).unwrap();
//! let (_, answer) = out.send_after_persist[0].clone();
//! let out = a.handle_message(2, answer).unwrap();
//! assert_eq!(out.commit, Some(1));
//!
//! // The leader appends a command; it is committed once server 2 stores it.
//! let (index, out) = a.propose(vec!["x=1".to_string()]).unwrap();
//! let (_, append) = out.send_now[0].clone();
//! let out = b.handle_message(1, append).unwrap();
//! let (_, ack) = out.send_after_persist[0].clone();
//! let out = a.handle_message(2, ack).unwrap();
//! assert_eq!(out.commit, Some(index));
//! ```
#![deny(missing_docs)]

pub mod bugs;
#[cfg(feature = "checker")]
pub mod checker;
pub mod peer;

pub use peer::{
    Config, Deviation, Durable, Entry, Faithful, Flow, FlowControl, Index, Message, NodeId, Output,
    Payload, Peer, PeerError, Persist, Planted, Progress, Refusal, Role, RoleKind, Term, Timer,
    TimerCommand, PLANTED_MARKER,
};

/// Whether the Peer checks its invariants after every step in this build: debug builds, and
/// any build with the `checker` feature (benchmarks report it).
pub const INVARIANTS_CHECKED: bool = cfg!(any(debug_assertions, feature = "checker"));
