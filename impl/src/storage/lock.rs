//! The `lock` file: one process per data directory.
//!
//! [`FileStorage::open`](super::FileStorage::open) takes an exclusive lock (`flock`) on it before
//! it reads anything, and holds it until the storage is dropped; the kernel releases it when the
//! process dies, however it dies. The holder writes its process id into the file, so that a
//! second process can name it in its error.

use super::{io_error, StorageError};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The file's name in the data directory.
pub(super) const FILE_NAME: &str = "lock";

/// The held lock; released when dropped.
#[derive(Debug)]
pub(super) struct DirLock {
    _file: File,
}

/// Takes the lock of `dir`, or says who holds it.
pub(super) fn take(dir: &Path) -> Result<DirLock, StorageError> {
    let path: PathBuf = dir.join(FILE_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error(&path, "open"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(StorageError::Locked {
                path,
                holder: if holder.is_empty() {
                    "another process".into()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(TryLockError::Error(error)) => return Err(io_error(&path, "lock")(error)),
    }
    let holder = format!("process {}", std::process::id());
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(holder.as_bytes()))
        .map_err(io_error(&path, "write"))?;
    Ok(DirLock { _file: file })
}
