//! The edge between protobuf and the Peer's types. Every inbound message is validated here;
//! what fails never reaches the Peer and is answered with `INVALID_ARGUMENT`.
//!
//! Here is checked what a message shows to be impossible on its own: a zero or exhausted
//! term, a previous entry or entries of a later term than the message's, entries whose terms
//! go backwards. What takes the receiver's state to see (an overwrite of a committed entry, an
//! acknowledgement past the leader's log) the Peer refuses itself (`model::Refusal`).

use crate::command::Command;
use model::{Entry, Message, NodeId};
use rdb_proto as pb;
use thiserror::Error;

/// Why a protobuf message is not a valid Peer message.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ConvertError {
    /// A required field or oneof is unset.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has a value the protocol cannot produce.
    #[error("invalid field `{field}`: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// The highest term a message may carry: 2^63 - 1. No cluster holds that many elections, and
/// the room above it means a server that adopts it still has terms for its own elections.
pub const MAX_TERM: u64 = i64::MAX as u64;

/// The longest key a client may write, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;
/// The largest value a client may write, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// The bytes a peer message may spend on one entry besides its command (term, index and
/// field framing), with room to spare.
const ENTRY_FRAMING_BYTES: u64 = 32;
/// The bytes a peer message may spend besides its entries (cluster id, ids, terms, framing).
const ENVELOPE_BYTES: u64 = 64 * 1024;

/// The largest encoded peer message a node sends or accepts under `flow`: a batch of entries
/// (at most `max_bytes` of commands, or a single entry of the largest command a client may
/// write), each entry's framing, and the envelope.
pub fn peer_message_limit(flow: &model::FlowControl) -> usize {
    let largest_command = 1 + 8 + (MAX_KEY_BYTES + MAX_VALUE_BYTES) as u64;
    let batch = flow.max_bytes.max(largest_command);
    // A batch of many tiny entries is framing above all: count it for every entry the byte
    // cap lets through (an empty command still costs its framing).
    let entries = flow.max_entries.min(batch.max(1));
    let limit = batch
        .saturating_add(entries.saturating_mul(ENTRY_FRAMING_BYTES))
        .saturating_add(ENVELOPE_BYTES);
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// Checks a client key.
pub fn validate_key(key: &str) -> Result<(), ConvertError> {
    if key.is_empty() {
        return Err(ConvertError::Invalid {
            field: "key",
            why: "must not be empty".into(),
        });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ConvertError::Invalid {
            field: "key",
            why: format!("{} bytes, above the limit of {MAX_KEY_BYTES}", key.len()),
        });
    }
    Ok(())
}

/// Checks a client value.
pub fn validate_value(value: &[u8]) -> Result<(), ConvertError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(ConvertError::Invalid {
            field: "value",
            why: format!(
                "{} bytes, above the limit of {MAX_VALUE_BYTES}",
                value.len()
            ),
        });
    }
    Ok(())
}

impl TryFrom<pb::Command> for Command {
    type Error = ConvertError;

    fn try_from(command: pb::Command) -> Result<Self, Self::Error> {
        let command = match command.kind.ok_or(ConvertError::Missing("command.kind"))? {
            pb::command::Kind::Put(pb::Put { key, value }) => {
                validate_value(&value)?;
                Command::Put { key, value }
            }
            pb::command::Kind::Delete(pb::Delete { key }) => Command::Delete { key },
            pb::command::Kind::Get(pb::Get { key }) => Command::Get { key },
        };
        validate_key(command.key())?;
        Ok(command)
    }
}

impl From<Command> for pb::Command {
    fn from(command: Command) -> Self {
        let kind = match command {
            Command::Put { key, value } => pb::command::Kind::Put(pb::Put { key, value }),
            Command::Delete { key } => pb::command::Kind::Delete(pb::Delete { key }),
            Command::Get { key } => pb::command::Kind::Get(pb::Get { key }),
        };
        pb::Command { kind: Some(kind) }
    }
}

/// Validates and converts a log entry.
pub fn entry_from_pb(entry: pb::Entry) -> Result<Entry<Command>, ConvertError> {
    if entry.term == 0 {
        return Err(ConvertError::Invalid {
            field: "entry.term",
            why: "entries are created in term 1 or later".into(),
        });
    }
    Ok(Entry {
        term: entry.term,
        command: entry.command.map(Command::try_from).transpose()?,
    })
}

/// Converts a log entry for the wire.
pub fn entry_to_pb(entry: Entry<Command>) -> pb::Entry {
    pb::Entry {
        term: entry.term,
        command: entry.command.map(pb::Command::from),
    }
}

/// One Peer message with its routing, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The sender's cluster.
    pub cluster_id: String,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The message.
    pub message: Message<Command>,
}

impl TryFrom<pb::PeerEnvelope> for Envelope {
    type Error = ConvertError;

    fn try_from(envelope: pb::PeerEnvelope) -> Result<Self, Self::Error> {
        if envelope.from == 0 {
            return Err(ConvertError::Missing("from"));
        }
        if envelope.to == 0 {
            return Err(ConvertError::Missing("to"));
        }
        let message = envelope.message.ok_or(ConvertError::Missing("message"))?;
        Ok(Envelope {
            cluster_id: envelope.cluster_id,
            from: envelope.from,
            to: envelope.to,
            message: message_from_pb(message)?,
        })
    }
}

impl From<Envelope> for pb::PeerEnvelope {
    fn from(envelope: Envelope) -> Self {
        pb::PeerEnvelope {
            cluster_id: envelope.cluster_id,
            from: envelope.from,
            to: envelope.to,
            message: Some(message_to_pb(envelope.message)),
        }
    }
}

/// A message's term must be positive (term 0 precedes every election, and no server sends in
/// it) and at most [`MAX_TERM`].
fn require_term(term: u64) -> Result<u64, ConvertError> {
    if term == 0 {
        return Err(ConvertError::Invalid {
            field: "term",
            why: "must be at least 1".into(),
        });
    }
    if term > MAX_TERM {
        return Err(ConvertError::Invalid {
            field: "term",
            why: format!("{term} is above the highest term {MAX_TERM}"),
        });
    }
    Ok(term)
}

/// A log position: its term (field `term_field`) is 0 exactly at index 0 (field
/// `index_field`), the empty prefix.
fn require_position(
    index_field: &str,
    index: u64,
    term_field: &'static str,
    term: u64,
) -> Result<(), ConvertError> {
    if (index == 0) != (term == 0) {
        return Err(ConvertError::Invalid {
            field: term_field,
            why: format!("must be 0 exactly when {index_field} is 0"),
        });
    }
    Ok(())
}

/// Validates and converts a Peer message.
pub fn message_from_pb(
    message: pb::peer_envelope::Message,
) -> Result<Message<Command>, ConvertError> {
    use pb::peer_envelope::Message as M;
    Ok(match message {
        M::RequestVoteRequest(m) => {
            require_position(
                "last_log_index",
                m.last_log_index,
                "last_log_term",
                m.last_log_term,
            )?;
            if m.last_log_term > m.term {
                return Err(ConvertError::Invalid {
                    field: "last_log_term",
                    why: format!("{} exceeds the message term {}", m.last_log_term, m.term),
                });
            }
            Message::RequestVoteRequest {
                term: require_term(m.term)?,
                last_log_index: m.last_log_index,
                last_log_term: m.last_log_term,
                transfer: m.transfer,
            }
        }
        M::TimeoutNow(m) => Message::TimeoutNow {
            term: require_term(m.term)?,
        },
        M::RequestVoteResponse(m) => Message::RequestVoteResponse {
            term: require_term(m.term)?,
            granted: m.granted,
        },
        M::PreVoteRequest(m) => {
            let term = require_term(m.term)?;
            require_position(
                "last_log_index",
                m.last_log_index,
                "last_log_term",
                m.last_log_term,
            )?;
            // The proposed term is the sender's own plus one; its log ends in its own term
            // at the latest.
            if m.last_log_term >= term {
                return Err(ConvertError::Invalid {
                    field: "last_log_term",
                    why: format!("{} is not below the proposed term {term}", m.last_log_term),
                });
            }
            Message::PreVoteRequest {
                term,
                last_log_index: m.last_log_index,
                last_log_term: m.last_log_term,
            }
        }
        M::PreVoteResponse(m) => Message::PreVoteResponse {
            term: require_term(m.term)?,
            granted: m.granted,
        },
        M::AppendEntriesRequest(m) => {
            let term = require_term(m.term)?;
            require_position(
                "prev_log_index",
                m.prev_log_index,
                "prev_log_term",
                m.prev_log_term,
            )?;
            if m.prev_log_term > term {
                return Err(ConvertError::Invalid {
                    field: "prev_log_term",
                    why: format!("{} exceeds the message term {term}", m.prev_log_term),
                });
            }
            let entries = m
                .entries
                .into_iter()
                .map(entry_from_pb)
                .collect::<Result<Vec<_>, _>>()?;
            let mut previous = m.prev_log_term;
            for entry in &entries {
                if entry.term < previous || entry.term > term {
                    return Err(ConvertError::Invalid {
                        field: "entries",
                        why: format!(
                            "entry term {} breaks the order {previous}..={term}",
                            entry.term
                        ),
                    });
                }
                previous = entry.term;
            }
            Message::AppendEntriesRequest {
                term,
                prev_log_index: m.prev_log_index,
                prev_log_term: m.prev_log_term,
                entries,
                leader_commit: m.leader_commit,
            }
        }
        M::AppendEntriesResponse(m) => Message::AppendEntriesResponse {
            term: require_term(m.term)?,
            success: m.success,
            index: m.index,
        },
    })
}

/// Converts a Peer message for the wire.
pub fn message_to_pb(message: Message<Command>) -> pb::peer_envelope::Message {
    use pb::peer_envelope::Message as M;
    match message {
        Message::RequestVoteRequest {
            term,
            last_log_index,
            last_log_term,
            transfer,
        } => M::RequestVoteRequest(pb::RequestVoteRequest {
            term,
            last_log_index,
            last_log_term,
            transfer,
        }),
        Message::TimeoutNow { term } => M::TimeoutNow(pb::TimeoutNow { term }),
        Message::RequestVoteResponse { term, granted } => {
            M::RequestVoteResponse(pb::RequestVoteResponse { term, granted })
        }
        Message::PreVoteRequest {
            term,
            last_log_index,
            last_log_term,
        } => M::PreVoteRequest(pb::PreVoteRequest {
            term,
            last_log_index,
            last_log_term,
        }),
        Message::PreVoteResponse { term, granted } => {
            M::PreVoteResponse(pb::PreVoteResponse { term, granted })
        }
        Message::AppendEntriesRequest {
            term,
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } => M::AppendEntriesRequest(pb::AppendEntriesRequest {
            term,
            prev_log_index,
            prev_log_term,
            entries: entries.into_iter().map(entry_to_pb).collect(),
            leader_commit,
        }),
        Message::AppendEntriesResponse {
            term,
            success,
            index,
        } => M::AppendEntriesResponse(pb::AppendEntriesResponse {
            term,
            success,
            index,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoded size of an AppendEntries of `entries` in an envelope with the longest
    /// cluster id and the largest numbers.
    fn encoded_append(entries: Vec<Entry<Command>>) -> usize {
        use prost::Message as _;
        pb::PeerEnvelope {
            cluster_id: "c".repeat(crate::storage::MAX_CLUSTER_ID_BYTES),
            from: u64::MAX,
            to: u64::MAX,
            message: Some(message_to_pb(Message::AppendEntriesRequest {
                term: MAX_TERM,
                prev_log_index: u64::MAX,
                prev_log_term: MAX_TERM,
                entries,
                leader_commit: u64::MAX,
            })),
        }
        .encoded_len()
    }

    #[test]
    fn the_largest_batches_fit_the_peer_message_limit() {
        let flow = model::FlowControl::default();
        let limit = peer_message_limit(&flow);
        let largest = Entry {
            term: MAX_TERM,
            command: Some(Command::Put {
                key: "k".repeat(MAX_KEY_BYTES),
                value: vec![7; MAX_VALUE_BYTES],
            }),
        };
        assert!(
            encoded_append(vec![largest]) <= limit,
            "one largest command"
        );
        // As many of the smallest entries as a message may carry.
        let blank = Entry {
            term: MAX_TERM,
            command: None,
        };
        let many = vec![blank; flow.max_entries as usize];
        assert!(encoded_append(many) <= limit, "max_entries blank entries");
        // Commands filling max_bytes.
        let small = Entry {
            term: MAX_TERM,
            command: Some(Command::Put {
                key: "k".into(),
                value: vec![1; 1000],
            }),
        };
        let size = model::Payload::size(small.command.as_ref().unwrap());
        let full = vec![small; (flow.max_bytes / size) as usize];
        assert!(encoded_append(full) <= limit, "max_bytes of commands");
    }

    fn put(term: u64, key: &str) -> Entry<Command> {
        Entry {
            term,
            command: Some(Command::Put {
                key: key.into(),
                value: b"v".to_vec(),
            }),
        }
    }

    #[test]
    fn every_message_round_trips() {
        let messages = vec![
            Message::RequestVoteRequest {
                term: 3,
                last_log_index: 2,
                last_log_term: 1,
                transfer: false,
            },
            Message::RequestVoteRequest {
                term: 4,
                last_log_index: 2,
                last_log_term: 1,
                transfer: true,
            },
            Message::RequestVoteResponse {
                term: 3,
                granted: true,
            },
            Message::TimeoutNow { term: 3 },
            Message::PreVoteRequest {
                term: 4,
                last_log_index: 2,
                last_log_term: 3,
            },
            Message::PreVoteResponse {
                term: 4,
                granted: false,
            },
            Message::AppendEntriesRequest {
                term: 3,
                prev_log_index: 1,
                prev_log_term: 1,
                entries: vec![
                    put(2, "a"),
                    Entry {
                        term: 3,
                        command: None,
                    },
                    put(3, "b"),
                ],
                leader_commit: 1,
            },
            Message::AppendEntriesResponse {
                term: 3,
                success: false,
                index: 4,
            },
        ];
        for message in messages {
            let envelope = Envelope {
                cluster_id: "c".into(),
                from: 1,
                to: 2,
                message,
            };
            let wire = pb::PeerEnvelope::from(envelope.clone());
            assert_eq!(Envelope::try_from(wire), Ok(envelope));
        }
    }

    #[test]
    fn malformed_messages_are_named() {
        use pb::peer_envelope::Message as M;
        let zero_term = M::RequestVoteResponse(pb::RequestVoteResponse {
            term: 0,
            granted: true,
        });
        assert!(matches!(
            message_from_pb(zero_term),
            Err(ConvertError::Invalid { field: "term", .. })
        ));
        let unordered = M::AppendEntriesRequest(pb::AppendEntriesRequest {
            term: 3,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![entry_to_pb(put(2, "a")), entry_to_pb(put(1, "b"))],
            leader_commit: 0,
        });
        assert!(matches!(
            message_from_pb(unordered),
            Err(ConvertError::Invalid {
                field: "entries",
                ..
            })
        ));
        let empty_command = M::AppendEntriesRequest(pb::AppendEntriesRequest {
            term: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![pb::Entry {
                term: 1,
                command: Some(pb::Command { kind: None }),
            }],
            leader_commit: 0,
        });
        assert_eq!(
            message_from_pb(empty_command),
            Err(ConvertError::Missing("command.kind"))
        );
        let exhausted_term = M::RequestVoteRequest(pb::RequestVoteRequest {
            term: MAX_TERM + 1,
            last_log_index: 0,
            last_log_term: 0,
            transfer: false,
        });
        assert!(matches!(
            message_from_pb(exhausted_term),
            Err(ConvertError::Invalid { field: "term", .. })
        ));
        let zero_term_timeout_now = M::TimeoutNow(pb::TimeoutNow { term: 0 });
        assert!(matches!(
            message_from_pb(zero_term_timeout_now),
            Err(ConvertError::Invalid { field: "term", .. })
        ));
        let future_prev = M::AppendEntriesRequest(pb::AppendEntriesRequest {
            term: 2,
            prev_log_index: 4,
            prev_log_term: 3,
            entries: Vec::new(),
            leader_commit: 0,
        });
        assert!(matches!(
            message_from_pb(future_prev),
            Err(ConvertError::Invalid {
                field: "prev_log_term",
                ..
            })
        ));
        let no_message = pb::PeerEnvelope {
            cluster_id: "c".into(),
            from: 1,
            to: 2,
            message: None,
        };
        assert_eq!(
            Envelope::try_from(no_message),
            Err(ConvertError::Missing("message"))
        );
        let empty_key = pb::Command::from(Command::Get { key: String::new() });
        assert!(matches!(
            Command::try_from(empty_key),
            Err(ConvertError::Invalid { field: "key", .. })
        ));
    }
}
