//! Durable file storage for one node: the Peer's [`Durable`] state on disk.
//!
//! (Being written: see the module's public API below.)

use crate::command::Command;
use model::{Durable, Index, NodeId, Persist};
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
    /// A record before the tail of the log is damaged.
    #[error("{path}: damaged record at byte offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// The record's first byte.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// The node's durable state in a data directory.
pub struct FileStorage {
    _dir: PathBuf,
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
    pub fn open(
        _dir: &Path,
        _id: NodeId,
        _options: StorageOptions,
    ) -> Result<(FileStorage, Durable<Command>, Recovery), StorageError> {
        unimplemented!()
    }

    /// Makes `durable` durable as far as `persist` says it changed.
    pub fn save(
        &mut self,
        _durable: &Durable<Command>,
        _persist: Persist,
    ) -> Result<(), StorageError> {
        unimplemented!()
    }

    /// Number of fsync calls so far (for group-commit figures).
    pub fn fsyncs(&self) -> u64 {
        0
    }

    /// The last index stored.
    pub fn last_index(&self) -> Index {
        0
    }
}
