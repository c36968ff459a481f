//! The `synced` file: the highest log index known to be on stable storage.
//!
//! Recovery uses it to tell a torn write from damage. A crash can tear only what was being
//! written when it struck, which is never an entry at or below this index: those were fsync'd
//! before the index was written here. So a log that ends early, or holds a damaged record, at or
//! below this index has lost acknowledged entries, and open refuses it instead of cutting it.
//!
//! The file is 48 bytes: two 24-byte slots, each `magic "RDBY", sequence u64, index u64, crc32`
//! (little-endian; the crc covers the 20 bytes before it). Updates go to the older slot, in
//! place, so a write torn by a crash spoils at most that slot and the other still holds an
//! earlier value. The valid slot with the higher sequence number is the current one.
//!
//! Raising the index needs no fsync of this file: it is written only after the log's fsync
//! returned, so whatever version survives a crash is at most what was really synced (a lower
//! bound is safe: it only lets recovery accept more of the tail as torn). Lowering it, before
//! the log is cut back, is fsync'd: a stale higher index would make a correctly cut log look
//! damaged.

use super::{corrupt, io_error, StorageError};
use model::Index;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The file's name in the data directory.
pub(super) const FILE_NAME: &str = "synced";
const MAGIC: [u8; 4] = *b"RDBY";
const SLOT_LEN: usize = 4 + 8 + 8 + 4;
/// The file's exact length: two slots.
pub(super) const LEN: usize = 2 * SLOT_LEN;

/// The open `synced` file and the slot last written.
#[derive(Debug)]
pub(super) struct Synced {
    path: PathBuf,
    file: File,
    sequence: u64,
    index: Index,
}

fn encode(sequence: u64, index: Index) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[..4].copy_from_slice(&MAGIC);
    slot[4..12].copy_from_slice(&sequence.to_le_bytes());
    slot[12..20].copy_from_slice(&index.to_le_bytes());
    let crc = crc32fast::hash(&slot[..20]);
    slot[20..].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// `(sequence, index)` of a slot, if it is whole.
fn decode(slot: &[u8]) -> Option<(u64, Index)> {
    let u64_at = |at: usize| u64::from_le_bytes(slot[at..at + 8].try_into().expect("slice of 8"));
    let crc = u32::from_le_bytes(slot[20..24].try_into().expect("slice of 4"));
    (slot[..4] == MAGIC && crc32fast::hash(&slot[..20]) == crc).then(|| (u64_at(4), u64_at(12)))
}

/// The path of the `synced` file in `dir`.
pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Writes a new `synced` file holding index 0 in both slots (a directory's first use).
pub(super) fn create(dir: &Path, fsync: bool) -> Result<(), StorageError> {
    let path = path(dir);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_error(&path, "create"))?;
    let mut bytes = Vec::with_capacity(LEN);
    bytes.extend_from_slice(&encode(0, 0));
    bytes.extend_from_slice(&encode(1, 0));
    file.write_all_at(&bytes, 0)
        .map_err(io_error(&path, "write"))?;
    if fsync {
        file.sync_data().map_err(io_error(&path, "fsync"))?;
    }
    Ok(())
}

impl Synced {
    /// Opens the `synced` file of `dir` and reads its current index.
    pub(super) fn open(dir: &Path) -> Result<Synced, StorageError> {
        let path = path(dir);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(corrupt(
                    &path,
                    0,
                    "missing, but the directory holds a state file".into(),
                ))
            }
            Err(error) => return Err(io_error(&path, "open")(error)),
        };
        let mut bytes = Vec::new();
        let length = file.metadata().map_err(io_error(&path, "stat"))?.len();
        if length != LEN as u64 {
            return Err(corrupt(
                &path,
                0,
                format!("the file is {length} bytes, expected {LEN}"),
            ));
        }
        bytes.resize(LEN, 0);
        file.read_exact_at(&mut bytes, 0)
            .map_err(io_error(&path, "read"))?;
        let current = [decode(&bytes[..SLOT_LEN]), decode(&bytes[SLOT_LEN..])]
            .into_iter()
            .flatten()
            .max_by_key(|&(sequence, _)| sequence);
        let Some((sequence, index)) = current else {
            return Err(corrupt(
                &path,
                0,
                "both slots are damaged (a crash spoils at most one)".into(),
            ));
        };
        Ok(Synced {
            path,
            file,
            sequence,
            index,
        })
    }

    /// The index recorded as synced.
    pub(super) fn index(&self) -> Index {
        self.index
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Records `index` as synced, in the older slot; fsync'd when `fsync`.
    pub(super) fn set(&mut self, index: Index, fsync: bool) -> Result<(), StorageError> {
        let sequence = self.sequence + 1;
        let at = (sequence % 2) * SLOT_LEN as u64;
        self.file
            .write_all_at(&encode(sequence, index), at)
            .map_err(io_error(&self.path, "write"))?;
        if fsync {
            self.file
                .sync_data()
                .map_err(io_error(&self.path, "fsync"))?;
        }
        self.sequence = sequence;
        self.index = index;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newer_whole_slot_wins_and_a_torn_slot_falls_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        create(tmp.path(), false).expect("create");
        let mut synced = Synced::open(tmp.path()).expect("open");
        assert_eq!(synced.index(), 0);
        synced.set(5, false).expect("set");
        synced.set(9, false).expect("set");
        drop(synced);
        assert_eq!(Synced::open(tmp.path()).expect("open").index(), 9);
        // Spoil the slot holding 9 (sequence 3, slot 1): the other slot's 5 is current.
        let file_path = path(tmp.path());
        let mut bytes = std::fs::read(&file_path).expect("read");
        bytes[SLOT_LEN + 13] ^= 1;
        std::fs::write(&file_path, &bytes).expect("write");
        assert_eq!(Synced::open(tmp.path()).expect("open").index(), 5);
        // Both spoiled: refused, naming the file.
        bytes[13] ^= 1;
        std::fs::write(&file_path, &bytes).expect("write");
        let error = Synced::open(tmp.path()).expect_err("both damaged");
        assert!(
            error.to_string().contains("synced") && error.to_string().contains("both slots"),
            "{error}"
        );
    }
}
