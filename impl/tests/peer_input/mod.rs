//! The network edge of a node as one function, for fuzzing: bytes off the wire → protobuf
//! decode of a `PeerEnvelope` → wire validation (`convert.rs`) → `Peer::handle_message`.
//!
//! Shared by the `cargo test` harness (`impl/tests/test_fuzz_peer.rs`) and the cargo-fuzz
//! targets (`fuzz/`). Every delivery checks what must hold whatever the bytes were: no panic,
//! the Peer's own invariants hold afterwards, and a refused message left the Peer unchanged.

#![allow(dead_code)]

use model::{Config, Durable, Entry, Message, NodeId, Peer, PeerError, Term, Timer};
use prost::Message as _;
use rdb_proto as pb;
use rdb_server::command::Command;
use rdb_server::convert::{ConvertError, Envelope};

/// The receiving server.
pub const ME: NodeId = 1;
/// The cluster: the receiver and two others.
pub const MEMBERS: [NodeId; 3] = [1, 2, 3];

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The bytes are not a `PeerEnvelope`.
    Undecodable,
    /// Wire validation refused the envelope (the `ConvertError`, without its values).
    Invalid(String),
    /// The sender is not another member of the cluster.
    UnknownSender,
    /// The Peer refused the message as impossible (the `Refusal`'s kind).
    Refused(&'static str),
    /// The Peer handled the message (its kind).
    Handled(&'static str),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Undecodable => write!(f, "undecodable"),
            Outcome::Invalid(what) => write!(f, "invalid {what}"),
            Outcome::UnknownSender => write!(f, "unknown sender"),
            Outcome::Refused(kind) => write!(f, "refused {kind}"),
            Outcome::Handled(kind) => write!(f, "handled {kind}"),
        }
    }
}

/// Delivers `bytes` to `peer` as the node's inbound path does, and checks that the Peer stays
/// consistent. Panics (with the reason) when it does not.
pub fn deliver(peer: &mut Peer<Command>, bytes: &[u8]) -> Outcome {
    let Ok(wire) = pb::PeerEnvelope::decode(bytes) else {
        return Outcome::Undecodable;
    };
    let envelope = match Envelope::try_from(wire) {
        Ok(envelope) => envelope,
        Err(ConvertError::Missing(field)) => return Outcome::Invalid(format!("missing {field}")),
        Err(ConvertError::Invalid { field, .. }) => return Outcome::Invalid(field.to_string()),
    };
    let kind = envelope.message.kind();
    let before = peer.clone();
    let outcome = match peer.handle_message(envelope.from, envelope.message) {
        Ok(output) => {
            for (to, message) in output.messages() {
                assert!(
                    *to != ME && MEMBERS.contains(to),
                    "the Peer sent {} to {to}",
                    message.kind()
                );
            }
            Outcome::Handled(kind)
        }
        Err(PeerError::Refused(refusal)) => {
            assert!(*peer == before, "the refusal ({refusal}) changed the Peer");
            Outcome::Refused(refusal.kind())
        }
        Err(PeerError::UnknownPeer(_)) => {
            assert!(
                *peer == before,
                "a message from a stranger changed the Peer"
            );
            Outcome::UnknownSender
        }
        Err(other) => panic!("handle_message failed with {other}"),
    };
    if let Err(why) = peer.invariant_violation() {
        panic!("after {outcome}: the Peer broke an invariant: {why}\n{peer:?}");
    }
    outcome
}

/// A client command for a log entry.
pub fn put(key: &str) -> Command {
    Command::Put {
        key: key.into(),
        value: key.as_bytes().to_vec(),
    }
}

fn restored(terms: &[Term], term: Term) -> Peer<Command> {
    let config = Config::new(ME, MEMBERS.to_vec());
    let durable = Durable {
        term,
        voted_for: None,
        log: terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry {
                term,
                command: Some(put(&format!("k{i}"))),
            })
            .collect(),
    };
    Peer::restore(config, durable)
        .expect("a valid durable state")
        .0
}

fn handled(peer: &mut Peer<Command>, from: NodeId, message: Message<Command>) {
    peer.handle_message(from, message)
        .expect("a base state is built from valid messages");
}

/// The states deliveries start from: a fresh follower, a follower with committed entries, a
/// candidate, and a leader with progress and a commit. Each is named.
pub fn base_states() -> Vec<(&'static str, Peer<Command>)> {
    let fresh = restored(&[], 0);

    let mut follower = restored(&[1, 1, 2, 3, 3], 3);
    let heartbeat = Message::AppendEntriesRequest {
        term: 3,
        prev_log_index: 5,
        prev_log_term: 3,
        entries: Vec::new(),
        leader_commit: 3,
    };
    handled(&mut follower, 2, heartbeat);

    let mut candidate = restored(&[1, 2, 2], 2);
    candidate.handle_timeout(Timer::Election);

    let mut leader = restored(&[1, 1, 2], 2);
    leader.handle_timeout(Timer::Election);
    let vote = Message::RequestVoteResponse {
        term: 3,
        granted: true,
    };
    handled(&mut leader, 2, vote);
    leader
        .propose(vec![put("a"), put("b")])
        .expect("the leader takes proposals");
    let ack = Message::AppendEntriesResponse {
        term: 3,
        success: true,
        index: 5,
    };
    handled(&mut leader, 2, ack);
    assert_eq!(leader.commit_index(), 5, "the leader base state commits");

    vec![
        ("fresh follower", fresh),
        ("follower", follower),
        ("candidate", candidate),
        ("leader", leader),
    ]
}
