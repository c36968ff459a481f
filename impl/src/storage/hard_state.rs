//! The `state` file: node id, term and vote, replaced atomically as a whole.

use super::{read_small_file, replace_file, StorageError};
use model::{NodeId, Term};
use std::path::{Path, PathBuf};

/// The file's name in the data directory.
pub(super) const FILE_NAME: &str = "state";
/// Where a new version is written before it is renamed over [`FILE_NAME`].
pub(super) const TMP_FILE_NAME: &str = "state.tmp";
/// The file's first bytes.
const MAGIC: [u8; 4] = *b"RDBH";
/// The format version after the magic.
const VERSION: u32 = 1;
/// The file's exact length: magic, version, node id, term, vote flag, vote, crc32.
const LEN: usize = 4 + 4 + 8 + 8 + 1 + 8 + 4;

/// Everything the `state` file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HardState {
    /// The node the data directory belongs to.
    pub(super) node: NodeId,
    /// The current term.
    pub(super) term: Term,
    /// The vote in `term`.
    pub(super) voted_for: Option<NodeId>,
}

/// The path of the `state` file in `dir`.
pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn encode(state: &HardState) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(LEN);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&state.node.to_le_bytes());
    bytes.extend_from_slice(&state.term.to_le_bytes());
    bytes.push(u8::from(state.voted_for.is_some()));
    bytes.extend_from_slice(&state.voted_for.unwrap_or(0).to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Result<HardState, String> {
    if bytes.len() != LEN {
        return Err(format!(
            "state file is {} bytes, expected {LEN}",
            bytes.len()
        ));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("slice of 8"));
    let (body, crc) = bytes.split_at(LEN - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("slice of 4")) {
        return Err("state file checksum mismatch".into());
    }
    if bytes[..4] != MAGIC {
        return Err("bad state file magic".into());
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("slice of 4"));
    if version != VERSION {
        return Err(format!("unsupported state file version {version}"));
    }
    let voted_for = match bytes[24] {
        0 => None,
        1 => Some(u64_at(25)),
        flag => return Err(format!("bad vote flag {flag}")),
    };
    Ok(HardState {
        node: u64_at(8),
        term: u64_at(16),
        voted_for,
    })
}

/// Reads the `state` file in `dir`; `None` if there is none.
pub(super) fn read(dir: &Path) -> Result<Option<HardState>, StorageError> {
    read_small_file(path(dir), decode)
}

/// Replaces the `state` file in `dir` atomically: a crash leaves either the old or the new
/// version. Returns the number of fsyncs done.
pub(super) fn write(dir: &Path, state: &HardState, fsync: bool) -> Result<u64, StorageError> {
    replace_file(dir, FILE_NAME, TMP_FILE_NAME, &encode(state), fsync)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_every_flipped_byte() {
        for voted_for in [None, Some(7)] {
            let state = HardState {
                node: 3,
                term: 9,
                voted_for,
            };
            let bytes = encode(&state);
            assert_eq!(decode(&bytes), Ok(state));
            for at in 0..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[at] ^= 0x10;
                assert!(decode(&damaged).is_err(), "flip at {at} accepted");
            }
            assert!(decode(&bytes[..LEN - 1]).is_err());
        }
    }
}
