//! The `cluster` file: which cluster, node and member list a data directory belongs to.
//!
//! Written once, when the directory is first used, and compared with the node's configuration
//! on every open, so that a directory is never served under another cluster's id, by another
//! node, or with another majority. Only an explicit offline step
//! ([`StorageOptions::replace_members`](super::StorageOptions::replace_members)) rewrites the
//! member list.
//!
//! Layout (little-endian): magic `RDBC`, format version `u32` (1), node id `u64`, cluster id
//! length `u32` and its UTF-8 bytes, member count `u32` and each member id `u64` in ascending
//! order, then the crc32 of everything before it. Replaced whole, like `state`.

use super::{read_small_file, replace_file, StorageError};
use model::NodeId;
use std::path::{Path, PathBuf};

/// The file's name in the data directory.
pub(super) const FILE_NAME: &str = "cluster";
/// Where a new version is written before it is renamed over [`FILE_NAME`].
pub(super) const TMP_FILE_NAME: &str = "cluster.tmp";
const MAGIC: [u8; 4] = *b"RDBC";
const VERSION: u32 = 1;
/// Cluster ids longer than this are refused by the configuration, so that the file stays small.
pub const MAX_CLUSTER_ID_BYTES: usize = 1024;
/// A member list longer than this is refused.
const MAX_MEMBERS: usize = 1024;

/// The cluster, node and members a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster id carried by every message.
    pub cluster_id: String,
    /// This node.
    pub node: NodeId,
    /// Every member's id, this node's included, ascending and without repeats.
    pub members: Vec<NodeId>,
}

impl Identity {
    /// The identity of node `node` of cluster `cluster_id` with these members (in any order).
    pub fn new(
        cluster_id: impl Into<String>,
        node: NodeId,
        members: impl IntoIterator<Item = NodeId>,
    ) -> Identity {
        let mut members: Vec<NodeId> = members.into_iter().collect();
        members.sort_unstable();
        members.dedup();
        Identity {
            cluster_id: cluster_id.into(),
            node,
            members,
        }
    }
}

/// The path of the `cluster` file in `dir`.
pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn encode(identity: &Identity) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&identity.node.to_le_bytes());
    let id = identity.cluster_id.as_bytes();
    bytes.extend_from_slice(&(id.len() as u32).to_le_bytes());
    bytes.extend_from_slice(id);
    bytes.extend_from_slice(&(identity.members.len() as u32).to_le_bytes());
    for member in &identity.members {
        bytes.extend_from_slice(&member.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Result<Identity, String> {
    let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
        return Err(format!("the file is {} bytes, too short", bytes.len()));
    };
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err("checksum mismatch".into());
    }
    let mut rest = body;
    let mut take = |n: usize, what: &str| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err(format!("cut short in the {what}"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    if take(4, "magic")? != MAGIC {
        return Err("bad magic: not an rdb cluster file".into());
    }
    let version = u32::from_le_bytes(take(4, "version")?.try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!("unsupported cluster file version {version}"));
    }
    let node = u64::from_le_bytes(take(8, "node id")?.try_into().expect("8 bytes"));
    let id_len = u32::from_le_bytes(take(4, "cluster id")?.try_into().expect("4 bytes")) as usize;
    if id_len > MAX_CLUSTER_ID_BYTES {
        return Err(format!("cluster id of {id_len} bytes"));
    }
    let cluster_id = String::from_utf8(take(id_len, "cluster id")?.to_vec())
        .map_err(|_| "the cluster id is not UTF-8".to_string())?;
    let count = u32::from_le_bytes(take(4, "member list")?.try_into().expect("4 bytes")) as usize;
    if count > MAX_MEMBERS {
        return Err(format!("{count} members"));
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(u64::from_le_bytes(
            take(8, "member list")?.try_into().expect("8 bytes"),
        ));
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes after the member list", rest.len()));
    }
    if !members.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err("the member list is not in ascending order".into());
    }
    Ok(Identity {
        cluster_id,
        node,
        members,
    })
}

/// Reads the `cluster` file in `dir`; `None` if there is none.
pub(super) fn read(dir: &Path) -> Result<Option<Identity>, StorageError> {
    read_small_file(path(dir), decode)
}

/// Replaces the `cluster` file in `dir` atomically.
pub(super) fn write(dir: &Path, identity: &Identity, fsync: bool) -> Result<(), StorageError> {
    replace_file(dir, FILE_NAME, TMP_FILE_NAME, &encode(identity), fsync).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_every_flipped_bit_and_every_cut() {
        let identity = Identity::new("prod-eu", 2, [3, 1, 2]);
        assert_eq!(identity.members, vec![1, 2, 3]);
        let bytes = encode(&identity);
        assert_eq!(decode(&bytes), Ok(identity));
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "flip of bit {bit} accepted");
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "cut at {len} accepted");
        }
    }
}
