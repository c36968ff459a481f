//! The key-value commands the log carries, and their byte encoding in the storage log.

use thiserror::Error;

/// One state machine command. Reads are commands too: a `Get` goes through the log so that it
/// observes every write committed before it (linearizable reads).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Command {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Read `key` at this point of the log.
    Get {
        /// The key.
        key: String,
    },
}

/// A command's bytes could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the command does.
    #[error("command truncated: needed {needed} more bytes")]
    Truncated {
        /// How many bytes were missing.
        needed: usize,
    },
    /// The first byte names no command.
    #[error("unknown command tag {0}")]
    UnknownTag(u8),
    /// A key is not UTF-8.
    #[error("command key is not UTF-8")]
    KeyNotUtf8,
    /// Bytes remain after the command.
    #[error("{0} trailing bytes after the command")]
    Trailing(usize),
}

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_GET: u8 = 3;

impl Command {
    /// The key the command reads or writes.
    pub fn key(&self) -> &str {
        match self {
            Command::Put { key, .. } | Command::Delete { key } | Command::Get { key } => key,
        }
    }

    /// Appends the command's encoding to `out`: a tag byte, then each field as a u32
    /// little-endian length and its bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Command::Put { key, value } => {
                out.push(TAG_PUT);
                put_bytes(out, key.as_bytes());
                put_bytes(out, value);
            }
            Command::Delete { key } => {
                out.push(TAG_DELETE);
                put_bytes(out, key.as_bytes());
            }
            Command::Get { key } => {
                out.push(TAG_GET);
                put_bytes(out, key.as_bytes());
            }
        }
    }

    /// Decodes exactly one command from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let (&tag, mut rest) = bytes
            .split_first()
            .ok_or(DecodeError::Truncated { needed: 1 })?;
        let key = take_bytes(&mut rest)?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| DecodeError::KeyNotUtf8)?;
        let command = match tag {
            TAG_PUT => {
                let value = take_bytes(&mut rest)?.to_vec();
                Command::Put { key, value }
            }
            TAG_DELETE => Command::Delete { key },
            TAG_GET => Command::Get { key },
            other => return Err(DecodeError::UnknownTag(other)),
        };
        if !rest.is_empty() {
            return Err(DecodeError::Trailing(rest.len()));
        }
        Ok(command)
    }
}

/// Flow control counts a command by the length of its encoding, which is also about its size
/// in a peer message.
impl model::Payload for Command {
    fn size(&self) -> u64 {
        let fields = match self {
            Command::Put { key, value } => 8 + key.len() + value.len(),
            Command::Delete { key } | Command::Get { key } => 4 + key.len(),
        };
        1 + fields as u64
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).expect("keys and values are limited far below 4 GiB");
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take_bytes<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    if rest.len() < 4 {
        return Err(DecodeError::Truncated {
            needed: 4 - rest.len(),
        });
    }
    let (length, tail) = rest.split_at(4);
    let length = u32::from_le_bytes(length.try_into().expect("split at 4")) as usize;
    if tail.len() < length {
        return Err(DecodeError::Truncated {
            needed: length - tail.len(),
        });
    }
    let (bytes, tail) = tail.split_at(length);
    *rest = tail;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips() {
        let commands = [
            Command::Put {
                key: "k".into(),
                value: vec![0, 1, 2],
            },
            Command::Put {
                key: String::new(),
                value: Vec::new(),
            },
            Command::Delete { key: "é".into() },
            Command::Get { key: "k".into() },
        ];
        for command in commands {
            let mut bytes = Vec::new();
            command.encode_into(&mut bytes);
            assert_eq!(
                model::Payload::size(&command),
                bytes.len() as u64,
                "flow control counts the encoding"
            );
            assert_eq!(Command::decode(&bytes), Ok(command));
        }
    }

    #[test]
    fn damaged_bytes_are_named() {
        let mut bytes = Vec::new();
        Command::Put {
            key: "key".into(),
            value: b"value".to_vec(),
        }
        .encode_into(&mut bytes);
        assert_eq!(
            Command::decode(&bytes[..bytes.len() - 2]),
            Err(DecodeError::Truncated { needed: 2 })
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(Command::decode(&trailing), Err(DecodeError::Trailing(1)));
        bytes[0] = 9;
        assert_eq!(Command::decode(&bytes), Err(DecodeError::UnknownTag(9)));
        assert_eq!(
            Command::decode(&[]),
            Err(DecodeError::Truncated { needed: 1 })
        );
    }
}
