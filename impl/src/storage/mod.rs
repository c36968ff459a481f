//! Durable file storage for one node: the Peer's [`Durable`] state on disk.
//!
//! # Data directory
//!
//! ```text
//! <dir>/state                          node id, term, vote (replaced atomically)
//! <dir>/log-00000000000000000001.seg   log segments, named by their first index,
//! <dir>/log-00000000000000000734.seg   20 digits zero padded
//! ```
//!
//! **`state`** is 37 bytes: magic `RDBH`, format version `u32` (1), node id `u64`, term `u64`,
//! vote flag `u8` (0 = none, 1 = voted), vote `u64` (0 when none), then the crc32 of the 33
//! bytes before it. All integers are little-endian. It is replaced whole: written to
//! `state.tmp`, fsync'd, renamed over `state`, then the directory is fsync'd, so a crash
//! leaves the old or the new version. The node id pins the directory to one node.
//!
//! **Segments** hold the log, append-only. A segment is an 8-byte header (magic `RDBS`, format
//! version `u32` LE, 1) followed by records:
//!
//! ```text
//! [payload length u32 LE][crc32 of the payload u32 LE][payload]
//! payload = [term u64 LE][index u64 LE][flag u8: 0 no command, 1 command][command bytes]
//! ```
//!
//! The command bytes are [`Command::encode_into`]'s. Each record carries its index, so open
//! checks that the log is contiguous from index 1 across all segments. A segment is closed
//! once it reaches [`StorageOptions::segment_bytes`]; the check is made before each batch, so a
//! segment may overshoot by one batch (a batch is never split: it costs one fsync). Only the
//! last segment is ever written to, and it may hold no record (just created, or truncated back
//! to its first index).
//!
//! # Writing
//!
//! [`FileStorage::save`] writes what a [`Persist`] says changed, with at most one fsync of the
//! log segment however many entries it writes (group commit), plus two fsyncs (`state.tmp`,
//! directory) when the hard state changed, and one of the directory when it started a segment
//! or removed some. The term is made durable before the log, because open refuses entries
//! whose term exceeds the stored term. A truncation removes the later segments (and fsyncs the
//! directory) before it cuts the segment that keeps the prefix, so a crash never leaves a gap.
//!
//! **A failed write or fsync is fatal.** After one, the file contents are unknown (and after a
//! failed fsync the kernel may have dropped the dirty pages), so `save` refuses all further
//! writes with [`StorageError::Failed`]. The caller is expected to exit; on restart, `open`
//! recovers whatever reached the disk.
//!
//! # Recovery
//!
//! [`FileStorage::open`] reads every segment in index order. Damage that a crash during an
//! append explains, at the end of the *last* segment only, is a torn tail and is cut away
//! (reported in [`Recovery::truncated_tail_bytes`]): a record header cut short, a payload that
//! runs past the end of the file, a checksum mismatch in a record that ends exactly at the end
//! of the file, a tail of zero bytes (a file system may extend a file before it writes the
//! data), or a segment header cut short. Anything else — a checksum mismatch or bad length
//! before the tail, an undecodable entry, an index out of place, a term that decreases or
//! exceeds the stored term, any damage in an earlier segment, a missing segment — is
//! [`StorageError::Corrupt`], naming the file and the byte offset of the damaged record.

mod hard_state;
mod segment;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use crate::command::Command;
use hard_state::HardState;
use model::{Durable, Entry, Index, NodeId, Persist};
use segment::{Context, End, Segment};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Storage tuning.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// A segment file is closed and a new one started once it reaches this many bytes.
    pub segment_bytes: u64,
    /// Whether to fsync. Only tests and benchmarks that say so turn this off.
    pub fsync: bool,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            segment_bytes: 64 * 1024 * 1024,
            fsync: true,
        }
    }
}

/// What went wrong opening or writing storage.
#[derive(Debug, Error)]
pub enum StorageError {
    /// An I/O call failed.
    #[error("{path}: {operation}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A record before the tail of the log is damaged, or the state file is, or a file is
    /// missing.
    #[error("{path}: damaged record at byte offset {offset}: {reason}")]
    Corrupt {
        /// The segment file (or the state file).
        path: PathBuf,
        /// The record's first byte.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory belongs to another node.
    #[error("{path}: the data directory belongs to node {found}, not to node {expected}")]
    WrongNode {
        /// The state file that names the owner.
        path: PathBuf,
        /// The node id `open` was given.
        expected: NodeId,
        /// The node id stored in the directory.
        found: NodeId,
    },
    /// An earlier `save` failed, so the files are in an unknown state and storage refuses to
    /// write more. The process must exit and recover with `open`.
    #[error("{dir}: an earlier write or fsync failed; storage refuses further writes")]
    Failed {
        /// The data directory.
        dir: PathBuf,
    },
}

impl StorageError {
    /// Whether the file system had no room left (`ENOSPC`, or `EDQUOT` over a quota).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                ErrorKind::StorageFull | ErrorKind::QuotaExceeded
            ),
            _ => false,
        }
    }
}

/// The node's durable state in a data directory.
#[derive(Debug)]
pub struct FileStorage {
    /// The data directory.
    dir: PathBuf,
    /// The node the directory belongs to.
    node: NodeId,
    options: StorageOptions,
    /// Every segment in index order; never empty once open.
    segments: Vec<Segment>,
    /// The last segment, open for appending.
    file: File,
    last_index: Index,
    /// fsyncs made by `save`.
    fsyncs: u64,
    /// A save failed: refuse to write more.
    failed: bool,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes dropped from the end of the last segment (a torn record).
    pub truncated_tail_bytes: u64,
    /// Number of log entries read.
    pub entries: u64,
}

impl FileStorage {
    /// Opens (creating if needed) the data directory of node `id`.
    ///
    /// Returns the durable state read back, after cutting a torn tail off the last segment
    /// (see the module docs for what is torn and what is corrupt).
    pub fn open(
        dir: &Path,
        id: NodeId,
        options: StorageOptions,
    ) -> Result<(FileStorage, Durable<Command>, Recovery), StorageError> {
        create_dir(dir, options.fsync)?;
        remove_if_present(&dir.join(hard_state::TMP_FILE_NAME))?;
        let mut firsts = list_segments(dir)?;
        let state = match hard_state::read(dir)? {
            Some(state) => state,
            None => {
                let state = HardState {
                    node: id,
                    term: 0,
                    voted_for: None,
                };
                initialise(dir, &state, &firsts, options.fsync)?;
                firsts = list_segments(dir)?;
                state
            }
        };
        if state.node != id {
            return Err(StorageError::WrongNode {
                path: hard_state::path(dir),
                expected: id,
                found: state.node,
            });
        }
        if firsts.is_empty() {
            return Err(StorageError::Corrupt {
                path: dir.join(segment::file_name(1)),
                offset: 0,
                reason: "missing: the state file exists but no log segment does".into(),
            });
        }

        let mut log: Vec<Entry<Command>> = Vec::new();
        let mut segments = Vec::with_capacity(firsts.len());
        let mut torn_at = None;
        let count = firsts.len();
        for (k, first) in firsts.into_iter().enumerate() {
            let mut segment = Segment::new(dir, first);
            let expected = log.len() as u64 + 1;
            if first != expected {
                let reason = if k == 0 {
                    format!("the log must start at index 1, its first segment starts at {first}")
                } else {
                    format!(
                        "segment starts at index {first}, the previous one ends at index {}",
                        expected - 1
                    )
                };
                return Err(corrupt(&segment.path, 0, reason));
            }
            let bytes = fs::read(&segment.path).map_err(io_error(&segment.path, "read"))?;
            let scan = segment::scan(
                &bytes,
                Context {
                    first,
                    previous_term: log.last().map_or(0, |entry| entry.term),
                    stored_term: state.term,
                },
            );
            segment.offsets = scan.offsets;
            segment.len = bytes.len() as u64;
            log.extend(scan.entries);
            let is_last = k + 1 == count;
            match scan.end {
                End::Clean => {}
                End::Torn { offset, .. } if is_last => torn_at = Some(offset),
                End::Torn { offset, reason } => {
                    let reason = format!("{reason}, in a segment that is not the last");
                    return Err(corrupt(&segment.path, offset, reason));
                }
                End::Damaged { offset, reason } => {
                    return Err(corrupt(&segment.path, offset, reason));
                }
            }
            segments.push(segment);
        }

        let last = segments.last_mut().expect("checked non-empty above");
        let mut file = open_for_append(&last.path)?;
        let mut recovery = Recovery {
            truncated_tail_bytes: 0,
            entries: log.len() as u64,
        };
        if let Some(offset) = torn_at {
            recovery.truncated_tail_bytes = last.len - offset;
            file.set_len(offset)
                .map_err(io_error(&last.path, "truncate torn tail"))?;
            last.len = offset;
            if offset == 0 {
                // The header itself was torn: the segment was being created.
                file.write_all(&segment::header())
                    .map_err(io_error(&last.path, "write segment header"))?;
                last.len = segment::HEADER_LEN;
            }
            if options.fsync {
                file.sync_data().map_err(io_error(&last.path, "fsync"))?;
            }
        }

        let storage = FileStorage {
            dir: dir.to_path_buf(),
            node: id,
            options,
            segments,
            file,
            last_index: log.len() as u64,
            fsyncs: 0,
            failed: false,
        };
        let durable = Durable {
            term: state.term,
            voted_for: state.voted_for,
            log,
        };
        Ok((storage, durable, recovery))
    }

    /// Makes `durable` durable as far as `persist` says it changed.
    ///
    /// Does nothing if `persist` asks for nothing. Otherwise returns once everything is on
    /// stable storage (when `options.fsync`). An error is fatal: the caller must exit (see the
    /// module docs), and every later call fails with [`StorageError::Failed`].
    ///
    /// # Panics
    ///
    /// If `persist.log_from` is 0, above `last_index() + 1`, or beyond the end of
    /// `durable.log` plus one: the Peer never asks for that.
    pub fn save(
        &mut self,
        durable: &Durable<Command>,
        persist: Persist,
    ) -> Result<(), StorageError> {
        if !persist.is_needed() {
            return Ok(());
        }
        if self.failed {
            return Err(StorageError::Failed {
                dir: self.dir.clone(),
            });
        }
        let result = self.write(durable, persist);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Number of fsync calls `save` made so far, on files and on the directory (for
    /// group-commit figures). `open`'s own fsyncs are not counted.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// The last index stored.
    pub fn last_index(&self) -> Index {
        self.last_index
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn write(&mut self, durable: &Durable<Command>, persist: Persist) -> Result<(), StorageError> {
        if persist.hard_state {
            // First: open refuses log entries whose term exceeds the stored term.
            let state = HardState {
                node: self.node,
                term: durable.term,
                voted_for: durable.voted_for,
            };
            self.fsyncs += hard_state::write(&self.dir, &state, self.options.fsync)?;
        }
        if let Some(from) = persist.log_from {
            self.write_log(&durable.log, from)?;
        }
        Ok(())
    }

    /// Drops the stored entries from `from` on and writes `log[from - 1..]`, with one fsync.
    fn write_log(&mut self, log: &[Entry<Command>], from: Index) -> Result<(), StorageError> {
        assert!(
            from >= 1 && from <= self.last_index + 1,
            "log_from {from} outside 1..={}",
            self.last_index + 1
        );
        let keep = usize::try_from(from - 1).expect("an index in memory fits usize");
        assert!(
            keep <= log.len(),
            "log_from {from} is past the end of a log of {} entries",
            log.len()
        );
        let truncated = from <= self.last_index;
        if truncated {
            self.truncate(from)?;
        }
        let entries = &log[keep..];
        if !truncated && entries.is_empty() {
            return Ok(());
        }
        let mut new_segment = false;
        if !entries.is_empty() {
            let current = self.segments.last().expect("never empty once open");
            // Roll only on a pure append: after a truncation this save's one fsync must
            // cover the cut segment, so the batch goes there.
            if !truncated
                && !current.offsets.is_empty()
                && current.len >= self.options.segment_bytes
            {
                self.start_segment(from)?;
                new_segment = true;
            }
            let segment = self.segments.last_mut().expect("never empty once open");
            let mut bytes = Vec::new();
            if new_segment {
                bytes.extend_from_slice(&segment::header());
            }
            for (index, entry) in (from..).zip(entries) {
                segment.offsets.push(segment.len + bytes.len() as u64);
                segment::encode_record(&mut bytes, index, entry);
            }
            self.file
                .write_all(&bytes)
                .map_err(io_error(&segment.path, "write"))?;
            segment.len += bytes.len() as u64;
            self.last_index = from - 1 + entries.len() as u64;
        }
        if self.options.fsync {
            let path = &self.segments.last().expect("never empty once open").path;
            self.file.sync_data().map_err(io_error(path, "fsync"))?;
            self.fsyncs += 1;
            if new_segment {
                // The new file's name is durable only once the directory is.
                self.sync_dir()?;
            }
        }
        Ok(())
    }

    /// Drops the stored entries from `from` (at most `last_index`) on, without an fsync of
    /// the segment it cuts.
    fn truncate(&mut self, from: Index) -> Result<(), StorageError> {
        let position = self
            .segments
            .partition_point(|segment| segment.first <= from)
            - 1;
        let removed = self.segments.split_off(position + 1);
        for segment in removed.iter().rev() {
            fs::remove_file(&segment.path).map_err(io_error(&segment.path, "remove"))?;
        }
        let segment = &mut self.segments[position];
        if !removed.is_empty() {
            self.file = open_for_append(&segment.path)?;
            // Cutting the kept segment before the removals are durable could leave a gap.
            if self.options.fsync {
                fsync_dir(&self.dir)?;
                self.fsyncs += 1;
            }
        }
        let keep = usize::try_from(from - segment.first).expect("an index in memory fits usize");
        let offset = segment.offsets[keep];
        self.file
            .set_len(offset)
            .map_err(io_error(&segment.path, "truncate"))?;
        segment.offsets.truncate(keep);
        segment.len = offset;
        self.last_index = from - 1;
        Ok(())
    }

    /// Creates the segment starting at `first` and makes it the one appended to. The caller
    /// writes its header.
    fn start_segment(&mut self, first: Index) -> Result<(), StorageError> {
        let segment = Segment::new(&self.dir, first);
        self.file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&segment.path)
            .map_err(io_error(&segment.path, "create"))?;
        self.segments.push(segment);
        Ok(())
    }

    fn sync_dir(&mut self) -> Result<(), StorageError> {
        fsync_dir(&self.dir)?;
        self.fsyncs += 1;
        Ok(())
    }
}

/// Lays out a data directory with no state file: segment 1, then the state file. A crash
/// during a first open leaves at most a segment 1 holding no record; anything more without a
/// state file means the state file was lost, and is corruption.
fn initialise(
    dir: &Path,
    state: &HardState,
    firsts: &[Index],
    fsync: bool,
) -> Result<(), StorageError> {
    let first_path = dir.join(segment::file_name(1));
    match firsts {
        [] => {
            let mut file = OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(&first_path)
                .map_err(io_error(&first_path, "create"))?;
            file.write_all(&segment::header())
                .map_err(io_error(&first_path, "write segment header"))?;
            if fsync {
                file.sync_data().map_err(io_error(&first_path, "fsync"))?;
            }
        }
        [1] => {
            let len = fs::metadata(&first_path)
                .map_err(io_error(&first_path, "stat"))?
                .len();
            if len > segment::HEADER_LEN {
                return Err(missing_state(dir));
            }
            // A first open crashed here; the scan repairs a torn header.
        }
        _ => return Err(missing_state(dir)),
    }
    // Its directory fsync also makes segment 1's name durable.
    hard_state::write(dir, state, fsync)?;
    Ok(())
}

fn missing_state(dir: &Path) -> StorageError {
    corrupt(
        &hard_state::path(dir),
        0,
        "missing, but the directory holds log segments".into(),
    )
}

/// Creates `dir` and any missing ancestors, durably: a data directory that vanished in a crash
/// would come back empty, forgetting the vote.
fn create_dir(dir: &Path, fsync: bool) -> Result<(), StorageError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|path| !path.as_os_str().is_empty() && !path.exists())
        .collect();
    fs::create_dir_all(dir).map_err(io_error(dir, "create directory"))?;
    if fsync {
        for created in missing {
            let parent = match created.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// The first indices of the segment files in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<Index>, StorageError> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir, "list directory"))? {
        let entry = entry.map_err(io_error(dir, "list directory"))?;
        if let Some(first) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_file_name)
        {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

fn open_for_append(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_error(path, "open"))
}

fn remove_if_present(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != ErrorKind::NotFound => Err(io_error(path, "remove")(error)),
        _ => Ok(()),
    }
}

/// fsyncs a directory, making the creations, renames and removals in it durable.
fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(io_error(dir, "fsync directory"))
}

/// Wraps an I/O error with the path and the operation.
fn io_error<'a>(
    path: &'a Path,
    operation: &'static str,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        operation,
        source,
    }
}

fn corrupt(path: &Path, offset: u64, reason: String) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    }
}
