//! Durable file storage for one node: the Peer's [`Durable`] state on disk.
//!
//! # Data directory
//!
//! ```text
//! <dir>/lock                           held (flock) by the process using the directory
//! <dir>/cluster                        cluster id, node id, member ids (written once)
//! <dir>/state                          node id, term, vote (replaced atomically)
//! <dir>/synced                         the highest log index known to be fsync'd
//! <dir>/log-00000000000000000001.seg   log segments, named by their first index,
//! <dir>/log-00000000000000000734.seg   20 digits zero padded
//! ```
//!
//! **`lock`**: [`FileStorage::open`] takes an exclusive `flock` on it before it reads anything
//! and holds it while the storage lives; a second process is refused with
//! [`StorageError::Locked`], naming the holder's process id.
//!
//! **`cluster`** pins the directory to one cluster, one node and one member list (see
//! [`Identity`]); open refuses a directory of another cluster or node, or a member list that
//! differs from the stored one, unless [`StorageOptions::replace_members`] says to replace it.
//!
//! **`state`** is 37 bytes: magic `RDBH`, format version `u32` (1), node id `u64`, term `u64`,
//! vote flag `u8` (0 = none, 1 = voted), vote `u64` (0 when none), then the crc32 of the 33
//! bytes before it. All integers are little-endian. It is replaced whole: written to
//! `state.tmp`, fsync'd, renamed over `state`, then the directory is fsync'd, so a crash
//! leaves the old or the new version. Any damage to it is refused.
//!
//! **`synced`** holds the highest log index whose fsync returned (two checksummed slots written
//! in turn; see the `synced` module). It is what lets recovery tell a torn write from damage.
//!
//! **Segments** hold the log, append-only. A segment is an 8-byte header (magic `RDBS`, format
//! version `u32` LE, 2) followed by records:
//!
//! ```text
//! [payload length u32 LE][crc32 of the length's 4 bytes and the payload u32 LE][payload]
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
//! or removed some. After the segment's fsync it records the new last index in `synced` (no
//! fsync needed: see the `synced` module). The term is made durable before the log, because
//! open refuses entries whose term exceeds the stored term. A truncation first lowers `synced`
//! (with an fsync) when it cuts below it, then removes the later segments (and fsyncs the
//! directory) before it cuts the segment that keeps the prefix, so a crash never leaves a gap.
//!
//! **A failed write or fsync is fatal.** After one, the file contents are unknown (and after a
//! failed fsync the kernel may have dropped the dirty pages), so `save` refuses all further
//! writes with [`StorageError::Failed`]. The caller is expected to exit; on restart, `open`
//! recovers whatever reached the disk.
//!
//! # Recovery: torn tail or damage
//!
//! [`FileStorage::open`] reads every segment in index order. A crash can tear only the batch
//! being written when it struck, which lies past the index in `synced`. So damage at the end of
//! the *last* segment, past that index, is a torn tail and is cut away (reported in
//! [`Recovery::truncated_tail_bytes`]): a record header cut short, a record that runs past the
//! end of the file, a checksum mismatch in a record that ends exactly at the end of the file, a
//! tail of zero bytes (a file system may extend a file before it writes the data), or a segment
//! header cut short. Everything else is [`StorageError::Corrupt`], naming the file and the byte
//! offset of the damaged record, and the node does not start: the same damage at or below the
//! synced index (an acknowledged entry would be lost), a log that ends before the synced index,
//! a checksum mismatch or bad length before the tail, an undecodable entry, an index out of
//! place, a term that decreases or exceeds the stored term, any damage in an earlier segment, a
//! missing segment, a damaged `state`, `cluster` or `synced` file.
//!
//! Nothing is repaired behind an error: the files are left as they were for an operator to
//! inspect (or to replace the directory and let the leader send the log again).

mod hard_state;
mod identity;
mod lock;
mod segment;
mod synced;

#[cfg(test)]
mod damage;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use crate::command::Command;
use hard_state::HardState;
pub use identity::{Identity, MAX_CLUSTER_ID_BYTES};
use lock::DirLock;
use model::{Durable, Entry, Index, NodeId, Persist};
use segment::{Context, End, Segment};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use synced::Synced;
use thiserror::Error;

/// Storage tuning.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// A segment file is closed and a new one started once it reaches this many bytes.
    pub segment_bytes: u64,
    /// Whether to fsync. Only tests and benchmarks that say so turn this off.
    pub fsync: bool,
    /// Replace the member list stored in the directory by the one `open` is given, instead of
    /// refusing a difference: an explicit, offline change of membership.
    pub replace_members: bool,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            segment_bytes: 64 * 1024 * 1024,
            fsync: true,
            replace_members: false,
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
    /// Another process holds the data directory.
    #[error("{path}: the data directory is in use by {holder}; one process per data directory")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as the holder wrote it (`process <pid>`).
        holder: String,
    },
    /// The data directory belongs to another cluster.
    #[error(
        "{path}: the data directory belongs to cluster `{found}`, not to cluster `{expected}`"
    )]
    ForeignCluster {
        /// The file that names the cluster.
        path: PathBuf,
        /// The cluster id `open` was given.
        expected: String,
        /// The cluster id stored in the directory.
        found: String,
    },
    /// The configured members differ from those stored in the data directory.
    #[error(
        "{path}: the configured members {given:?} differ from the members {stored:?} stored in \
         the data directory; a change of members is an offline step: stop every node and \
         restart each with the new list and --replace-members"
    )]
    MembersChanged {
        /// The file that lists the members.
        path: PathBuf,
        /// The member ids stored.
        stored: Vec<NodeId>,
        /// The member ids `open` was given.
        given: Vec<NodeId>,
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
    /// The highest index known to be fsync'd, on disk.
    synced: Synced,
    /// Held while the storage lives (always, but for a test's second look).
    _lock: Option<DirLock>,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes dropped from the end of the last segment (a torn record).
    pub truncated_tail_bytes: u64,
    /// Number of log entries read.
    pub entries: u64,
    /// The member list replaced by [`StorageOptions::replace_members`], if it was.
    pub replaced_members: Option<Vec<NodeId>>,
}

impl FileStorage {
    /// Opens (creating if needed) the data directory of `identity.node`, holding its lock
    /// until the storage is dropped.
    ///
    /// Returns the durable state read back, after cutting a torn tail off the last segment
    /// (see the module docs for what is torn and what is corrupt).
    pub fn open(
        dir: &Path,
        identity: &Identity,
        options: StorageOptions,
    ) -> Result<(FileStorage, Durable<Command>, Recovery), StorageError> {
        create_dir(dir, options.fsync)?;
        let lock = lock::take(dir)?;
        Self::open_locked(dir, identity, options, Some(lock))
    }

    /// Opens a directory another instance of this process holds open: a second look at the
    /// files in tests.
    #[cfg(test)]
    pub(crate) fn peek(
        dir: &Path,
        identity: &Identity,
        options: StorageOptions,
    ) -> Result<(FileStorage, Durable<Command>, Recovery), StorageError> {
        Self::open_locked(dir, identity, options, None)
    }

    fn open_locked(
        dir: &Path,
        identity: &Identity,
        options: StorageOptions,
        lock: Option<DirLock>,
    ) -> Result<(FileStorage, Durable<Command>, Recovery), StorageError> {
        let id = identity.node;
        remove_if_present(&dir.join(hard_state::TMP_FILE_NAME))?;
        remove_if_present(&dir.join(identity::TMP_FILE_NAME))?;
        let mut firsts = list_segments(dir)?;
        let mut replaced_members = None;
        let state = match hard_state::read(dir)? {
            Some(state) => {
                if state.node != id {
                    return Err(StorageError::WrongNode {
                        path: hard_state::path(dir),
                        expected: id,
                        found: state.node,
                    });
                }
                replaced_members = check_identity(dir, identity, &options)?;
                state
            }
            None => {
                let state = HardState {
                    node: id,
                    term: 0,
                    voted_for: None,
                };
                initialise(dir, identity, &state, &firsts, options.fsync)?;
                firsts = list_segments(dir)?;
                state
            }
        };
        let synced = Synced::open(dir)?;
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
                    let previous = segments
                        .last()
                        .map_or(PathBuf::new(), |s: &Segment| s.path.clone());
                    format!(
                        "segment starts at index {first}, but the previous one, {}, ends at \
                         index {}: a segment is missing or was cut short",
                        previous.display(),
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
                End::Torn { offset, reason } if is_last => torn_at = Some((offset, reason)),
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

        // A crash tears only what lies past the synced index; anything missing at or below it
        // was acknowledged, and its loss is damage.
        let last = segments.last_mut().expect("checked non-empty above");
        let kept = log.len() as u64;
        if kept < synced.index() {
            let (offset, what) = match &torn_at {
                Some((offset, reason)) => (*offset, format!("{reason}, at index {}", kept + 1)),
                None => (last.len, format!("the log ends at index {kept}")),
            };
            return Err(corrupt(
                &last.path,
                offset,
                format!(
                    "{what}, but entries up to index {} were made durable ({}): this is damage, \
                     not a torn write",
                    synced.index(),
                    synced.path().display()
                ),
            ));
        }
        let torn_at = torn_at.map(|(offset, _)| offset);
        let last = segments.last_mut().expect("checked non-empty above");
        let mut file = open_for_append(&last.path)?;
        let mut recovery = Recovery {
            truncated_tail_bytes: 0,
            entries: log.len() as u64,
            replaced_members,
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
            synced,
            _lock: lock,
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
        if self.last_index > self.synced.index() {
            // After the fsync, never before: see the `synced` module.
            self.synced.set(self.last_index, false)?;
        }
        Ok(())
    }

    /// Drops the stored entries from `from` (at most `last_index`) on, without an fsync of
    /// the segment it cuts.
    fn truncate(&mut self, from: Index) -> Result<(), StorageError> {
        if from - 1 < self.synced.index() {
            // Durably first: a synced index above the cut would make the cut log look damaged.
            self.synced.set(from - 1, self.options.fsync)?;
            if self.options.fsync {
                self.fsyncs += 1;
            }
        }
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

/// Lays out a data directory with no state file: segment 1, `synced`, `cluster`, then the
/// state file, whose presence marks the directory as initialised. A crash during a first open
/// leaves at most a segment 1 holding no record (and perhaps the other files); anything more
/// without a state file means the state file was lost, and is corruption.
fn initialise(
    dir: &Path,
    identity: &Identity,
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
    synced::create(dir, fsync)?;
    identity::write(dir, identity, fsync)?;
    // Its directory fsync also makes the other files' names durable.
    hard_state::write(dir, state, fsync)?;
    Ok(())
}

/// Compares the directory's stored identity with `identity` (the node id was checked against
/// the state file already), replacing the member list when the options say so. Returns the
/// replaced list, if it was.
fn check_identity(
    dir: &Path,
    identity: &Identity,
    options: &StorageOptions,
) -> Result<Option<Vec<NodeId>>, StorageError> {
    let path = identity::path(dir);
    let Some(stored) = identity::read(dir)? else {
        return Err(corrupt(
            &path,
            0,
            "missing, but the directory holds a state file".into(),
        ));
    };
    if stored.cluster_id != identity.cluster_id {
        return Err(StorageError::ForeignCluster {
            path,
            expected: identity.cluster_id.clone(),
            found: stored.cluster_id,
        });
    }
    if stored.node != identity.node {
        return Err(StorageError::WrongNode {
            path,
            expected: identity.node,
            found: stored.node,
        });
    }
    if stored.members == identity.members {
        return Ok(None);
    }
    if !options.replace_members {
        return Err(StorageError::MembersChanged {
            path,
            stored: stored.members,
            given: identity.members.clone(),
        });
    }
    identity::write(dir, identity, options.fsync)?;
    Ok(Some(stored.members))
}

/// Reads the small file at `path` whole and decodes it; `None` if there is none. A file that
/// does not decode is [`StorageError::Corrupt`] at offset 0, with the decoder's reason.
fn read_small_file<T>(
    path: PathBuf,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<Option<T>, StorageError> {
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(&path, "read")(error)),
    };
    decode(&bytes)
        .map(Some)
        .map_err(|reason| corrupt(&path, 0, reason))
}

/// Replaces `dir/name` whole with `bytes`: written to `dir/tmp_name`, fsync'd, renamed over,
/// and the directory fsync'd, so that a crash leaves the old or the new version. Returns the
/// number of fsyncs done.
fn replace_file(
    dir: &Path,
    name: &str,
    tmp_name: &str,
    bytes: &[u8],
    fsync: bool,
) -> Result<u64, StorageError> {
    let tmp = dir.join(tmp_name);
    let mut file = File::create(&tmp).map_err(io_error(&tmp, "create"))?;
    file.write_all(bytes).map_err(io_error(&tmp, "write"))?;
    if fsync {
        // The data must be on disk before the rename can expose it under the real name.
        file.sync_all().map_err(io_error(&tmp, "fsync"))?;
    }
    drop(file);
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(io_error(&path, "rename the new version over"))?;
    if fsync {
        // The rename itself is durable only once the directory is.
        fsync_dir(dir)?;
        Ok(2)
    } else {
        Ok(0)
    }
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
