//! Unit tests: layout, truncation, hard state, recovery and fsync counts.

use super::*;
use model::Entry;
use std::fs;

/// Options for a test: no fsync (speed), segments of `segment_bytes`.
fn options(segment_bytes: u64) -> StorageOptions {
    StorageOptions {
        segment_bytes,
        fsync: false,
        replace_members: false,
    }
}

/// The identity of node `node` in the tests' cluster of four.
fn ident(node: NodeId) -> Identity {
    Identity::new("test", node, [1, 2, 3, 4])
}

fn get(key: &str) -> Command {
    Command::Get { key: key.into() }
}

/// `n` entries of `term`, each a Get of a one-byte key: 31-byte records.
fn gets(term: u64, n: usize) -> Vec<Entry<Command>> {
    (0..n)
        .map(|k| Entry {
            term,
            command: Some(get(&((b'a' + (k % 26) as u8) as char).to_string())),
        })
        .collect()
}

/// The bytes of a record of `gets`: header 8, term 8, index 8, flag 1, command 1 + 4 + 1.
const GET_RECORD: u64 = 31;

fn segment_path(dir: &Path, first: Index) -> PathBuf {
    dir.join(segment::file_name(first))
}

/// Appends `entries` to `durable` and saves them in one call.
fn append(storage: &mut FileStorage, durable: &mut Durable<Command>, entries: Vec<Entry<Command>>) {
    let from = durable.log.len() as u64 + 1;
    durable.log.extend(entries);
    let persist = Persist {
        hard_state: false,
        log_from: Some(from),
    };
    storage.save(durable, persist).expect("save");
}

/// Replaces the log from `from` on with `entries`.
fn replace(
    storage: &mut FileStorage,
    durable: &mut Durable<Command>,
    from: Index,
    entries: Vec<Entry<Command>>,
) {
    durable.log.truncate(from as usize - 1);
    durable.log.extend(entries);
    let persist = Persist {
        hard_state: false,
        log_from: Some(from),
    };
    storage.save(durable, persist).expect("save");
}

fn set_term(
    storage: &mut FileStorage,
    durable: &mut Durable<Command>,
    term: u64,
    vote: Option<u64>,
) {
    durable.term = term;
    durable.voted_for = vote;
    let persist = Persist {
        hard_state: true,
        log_from: None,
    };
    storage.save(durable, persist).expect("save");
}

/// A node-1 storage in `dir` whose log holds `n` Get entries of term 1.
fn with_gets(dir: &Path, segment_bytes: u64, n: usize) -> (FileStorage, Durable<Command>) {
    let (mut storage, mut durable, _) =
        FileStorage::open(dir, &ident(1), options(segment_bytes)).expect("open");
    set_term(&mut storage, &mut durable, 1, None);
    append(&mut storage, &mut durable, gets(1, n));
    (storage, durable)
}

/// A second look at node 1's files (the first instance may still be open).
fn reopen(dir: &Path, segment_bytes: u64) -> (FileStorage, Durable<Command>, Recovery) {
    FileStorage::peek(dir, &ident(1), options(segment_bytes)).expect("reopen")
}

/// Leaves the files as a crash during the save of the last `entries` entries could: those
/// entries written, but not yet recorded as synced, so that recovery may take damage to them
/// for a torn write.
fn crash_before_sync(storage: FileStorage, entries: u64) {
    let mut storage = storage;
    let index = storage.last_index() - entries;
    storage.synced.set(index, false).expect("set synced");
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

fn cut(path: &Path, bytes: u64) {
    let len = fs::metadata(path).expect("stat").len();
    let file = OpenOptions::new().write(true).open(path).expect("open");
    file.set_len(len - bytes).expect("set_len");
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).expect("read");
    bytes[at as usize] ^= 0x40;
    fs::write(path, bytes).expect("write");
}

#[test]
fn fresh_dir_is_created_empty() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a").join("node");
    let (storage, durable, recovery) =
        FileStorage::open(&dir, &ident(1), options(256)).expect("open");
    assert_eq!(durable, Durable::default());
    assert_eq!(recovery, Recovery::default());
    assert_eq!(storage.last_index(), 0);
    assert_eq!(storage.fsyncs(), 0);
    assert!(dir.join("state").is_file());
    assert_eq!(segment_files(&dir), [segment::file_name(1)]);
    drop(storage);
    let (storage, durable, recovery) = reopen(&dir, 256);
    assert_eq!(durable, Durable::default());
    assert_eq!(recovery, Recovery::default());
    assert_eq!(storage.segment_count(), 1);
    // With fsync, the new directories' entries are fsync'd in their parents.
    let durable_dir = tmp.path().join("b").join("node");
    let fsync = StorageOptions {
        fsync: true,
        ..options(256)
    };
    let (_, durable, _) = FileStorage::open(&durable_dir, &ident(1), fsync).expect("open");
    assert_eq!(durable, Durable::default());
}

#[test]
fn append_and_reopen_across_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut storage, mut durable, _) =
        FileStorage::open(tmp.path(), &ident(1), options(100)).expect("open");
    set_term(&mut storage, &mut durable, 3, Some(2));
    for batch in 0..10u8 {
        let entries = vec![
            Entry {
                term: 2,
                command: Some(Command::Put {
                    key: format!("key{batch}"),
                    value: vec![batch; batch as usize],
                }),
            },
            Entry {
                term: 3,
                command: None,
            },
            Entry {
                term: 3,
                command: Some(Command::Delete { key: "é".into() }),
            },
        ];
        if batch > 0 {
            // Keep terms non-decreasing along the log.
            append(&mut storage, &mut durable, entries[1..].to_vec());
        } else {
            append(&mut storage, &mut durable, entries);
        }
    }
    assert_eq!(storage.last_index(), durable.log.len() as u64);
    assert!(
        storage.segment_count() > 3,
        "{} segments",
        storage.segment_count()
    );
    drop(storage);
    let (storage, read, recovery) = reopen(tmp.path(), 100);
    assert_eq!(read, durable);
    assert_eq!(recovery.entries, durable.log.len() as u64);
    assert_eq!(recovery.truncated_tail_bytes, 0);
    assert_eq!(storage.last_index(), durable.log.len() as u64);
}

#[test]
fn truncate_in_the_middle_of_a_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut storage, mut durable) = with_gets(tmp.path(), 1 << 20, 10);
    set_term(&mut storage, &mut durable, 2, Some(1));
    replace(&mut storage, &mut durable, 5, gets(2, 3));
    assert_eq!(storage.last_index(), 7);
    let len = fs::metadata(segment_path(tmp.path(), 1))
        .expect("stat")
        .len();
    assert_eq!(len, segment::HEADER_LEN + 7 * GET_RECORD);
    drop(storage);
    let (mut storage, read, _) = reopen(tmp.path(), 1 << 20);
    assert_eq!(read, durable);
    // Truncation without new entries, then everything.
    replace(&mut storage, &mut durable, 4, Vec::new());
    assert_eq!(reopen(tmp.path(), 1 << 20).1, durable);
    replace(&mut storage, &mut durable, 1, gets(2, 2));
    assert_eq!(reopen(tmp.path(), 1 << 20).1, durable);
    assert_eq!(storage.last_index(), 2);
}

#[test]
fn truncate_across_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut storage, mut durable, _) =
        FileStorage::open(tmp.path(), &ident(1), options(70)).expect("open");
    set_term(&mut storage, &mut durable, 1, None);
    // 2 records (62 bytes) + header reach 70: each segment holds 2 or 3 entries here.
    for _ in 0..12 {
        append(&mut storage, &mut durable, gets(1, 1));
    }
    let before = segment_files(tmp.path());
    assert!(before.len() >= 4, "{before:?}");
    assert_eq!(before.len(), storage.segment_count());
    set_term(&mut storage, &mut durable, 2, None);
    replace(&mut storage, &mut durable, 5, gets(2, 2));
    let after = segment_files(tmp.path());
    assert!(after.len() < before.len(), "{before:?} -> {after:?}");
    assert_eq!(after[..], before[..after.len()]);
    assert_eq!(after.len(), storage.segment_count());
    drop(storage);
    let (mut storage, read, _) = reopen(tmp.path(), 70);
    assert_eq!(read, durable);
    // Appends after the truncation keep rolling segments.
    for _ in 0..6 {
        append(&mut storage, &mut durable, gets(2, 1));
    }
    // Truncation at the first entry of a later segment keeps that segment, empty.
    let first_of_last = storage.segments.last().expect("segments").first;
    replace(&mut storage, &mut durable, first_of_last, Vec::new());
    assert!(storage
        .segments
        .last()
        .expect("segments")
        .offsets
        .is_empty());
    drop(storage);
    let (mut storage, read, _) = reopen(tmp.path(), 70);
    assert_eq!(read, durable);
    append(&mut storage, &mut durable, gets(2, 3));
    assert_eq!(reopen(tmp.path(), 70).1, durable);
}

#[test]
fn hard_state_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut storage, mut durable, _) =
        FileStorage::open(tmp.path(), &ident(4), options(256)).expect("open");
    set_term(&mut storage, &mut durable, 5, Some(3));
    let (_, read, _) = FileStorage::peek(tmp.path(), &ident(4), options(256)).expect("reopen");
    assert_eq!((read.term, read.voted_for), (5, Some(3)));
    set_term(&mut storage, &mut durable, 6, None);
    let (_, read, _) = FileStorage::peek(tmp.path(), &ident(4), options(256)).expect("reopen");
    assert_eq!(read, durable);
    assert!(!tmp.path().join("state.tmp").exists());
}

#[test]
fn another_nodes_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    drop(FileStorage::open(tmp.path(), &ident(1), options(256)).expect("open"));
    let error = FileStorage::open(tmp.path(), &ident(2), options(256)).expect_err("wrong node");
    match &error {
        StorageError::WrongNode {
            path,
            expected,
            found,
        } => {
            assert_eq!((*expected, *found), (2, 1));
            assert_eq!(path, &tmp.path().join("state"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains("belongs to node 1, not to node 2"),
        "{error}"
    );
}

#[test]
fn torn_tail_is_dropped_and_appending_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (storage, mut durable) = with_gets(tmp.path(), 1 << 20, 5);
    crash_before_sync(storage, 1);
    cut(&segment_path(tmp.path(), 1), 3);
    let (mut storage, read, recovery) = reopen(tmp.path(), 1 << 20);
    durable.log.pop();
    assert_eq!(read, durable);
    assert_eq!(
        recovery,
        Recovery {
            truncated_tail_bytes: GET_RECORD - 3,
            entries: 4,
            replaced_members: None,
        }
    );
    assert_eq!(storage.last_index(), 4);
    append(&mut storage, &mut durable, gets(1, 2));
    drop(storage);
    let (_, read, recovery) = reopen(tmp.path(), 1 << 20);
    assert_eq!(read, durable);
    assert_eq!(recovery.truncated_tail_bytes, 0);
}

#[test]
fn torn_tails_of_every_kind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (storage, durable) = with_gets(tmp.path(), 1 << 20, 3);
    crash_before_sync(storage, 3);
    let path = segment_path(tmp.path(), 1);
    // A checksum mismatch in the record that ends the file.
    flip(&path, segment::HEADER_LEN + 2 * GET_RECORD + 20);
    let (_, read, recovery) = reopen(tmp.path(), 1 << 20);
    assert_eq!(read.log, durable.log[..2]);
    assert_eq!(recovery.truncated_tail_bytes, GET_RECORD);
    // Only a record header's first bytes.
    let mut bytes = fs::read(&path).expect("read");
    bytes.extend_from_slice(&[31, 0, 0]);
    fs::write(&path, &bytes).expect("write");
    let (_, read, recovery) = reopen(tmp.path(), 1 << 20);
    assert_eq!((read.log.len(), recovery.truncated_tail_bytes), (2, 3));
    // Zero bytes where a record should be.
    let mut bytes = fs::read(&path).expect("read");
    bytes.extend_from_slice(&[0; 40]);
    fs::write(&path, &bytes).expect("write");
    let (_, read, recovery) = reopen(tmp.path(), 1 << 20);
    assert_eq!((read.log.len(), recovery.truncated_tail_bytes), (2, 40));
    // A segment header cut short.
    fs::write(&path, &segment::header()[..5]).expect("write");
    let (mut storage, mut read, recovery) = reopen(tmp.path(), 1 << 20);
    assert_eq!((read.log.len(), recovery.truncated_tail_bytes), (0, 5));
    append(&mut storage, &mut read, gets(1, 1));
    assert_eq!(reopen(tmp.path(), 1 << 20).1, read);
}

#[test]
fn checksum_flip_before_the_tail_is_corruption_at_that_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (storage, _) = with_gets(tmp.path(), 1 << 20, 5);
    drop(storage);
    let path = segment_path(tmp.path(), 1);
    // Record of index 3: after the 8-byte header and two 31-byte records.
    let record = 70;
    flip(&path, record + 8 + 3);
    let error = FileStorage::open(tmp.path(), &ident(1), options(1 << 20)).expect_err("corrupt");
    match &error {
        StorageError::Corrupt {
            path: named,
            offset,
            reason,
        } => {
            assert_eq!(named, &path);
            assert_eq!(*offset, record);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("log-00000000000000000001.seg"),
        "{message}"
    );
    assert!(message.contains("byte offset 70"), "{message}");
    // The file is left as it was: nothing is repaired behind a corruption.
    assert_eq!(
        fs::metadata(&path).expect("stat").len(),
        segment::HEADER_LEN + 5 * GET_RECORD
    );
}

#[test]
fn damage_that_is_not_a_torn_tail_is_corruption() {
    let corrupt_offset = |error: StorageError| match error {
        StorageError::Corrupt { path, offset, .. } => (path, offset),
        other => panic!("unexpected {other:?}"),
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (mut storage, mut durable) = with_gets(dir, 70, 2);
    append(&mut storage, &mut durable, gets(1, 2));
    append(&mut storage, &mut durable, gets(1, 2));
    assert_eq!(storage.segment_count(), 3);
    drop(storage);
    let first = segment_path(dir, 1);
    let second = segment_path(dir, 3);
    let pristine = fs::read(&first).expect("read");

    // A torn record in a segment that is not the last.
    cut(&first, 2);
    let error = FileStorage::open(dir, &ident(1), options(70)).expect_err("corrupt");
    assert_eq!(corrupt_offset(error), (first.clone(), 8 + GET_RECORD));
    fs::write(&first, &pristine).expect("restore");

    // A bad length before the tail.
    let mut bytes = pristine.clone();
    bytes[8] = 3;
    fs::write(&first, &bytes).expect("write");
    let error = FileStorage::open(dir, &ident(1), options(70)).expect_err("corrupt");
    assert_eq!(corrupt_offset(error), (first.clone(), 8));
    fs::write(&first, &pristine).expect("restore");

    // A missing segment.
    let second_bytes = fs::read(&second).expect("read");
    fs::remove_file(&second).expect("remove");
    let error = FileStorage::open(dir, &ident(1), options(70)).expect_err("corrupt");
    assert_eq!(corrupt_offset(error), (segment_path(dir, 5), 0));
    fs::write(&second, &second_bytes).expect("restore");

    // An entry whose term exceeds the stored term.
    hard_state::write(
        dir,
        &HardState {
            node: 1,
            term: 0,
            voted_for: None,
        },
        false,
    )
    .expect("write state");
    let error = FileStorage::open(dir, &ident(1), options(70)).expect_err("corrupt");
    assert_eq!(corrupt_offset(error), (first.clone(), 8));

    // The data is intact again once the state is.
    set_state(dir, 1);
    assert_eq!(reopen(dir, 70).1, durable);
}

fn set_state(dir: &Path, term: u64) {
    let state = HardState {
        node: 1,
        term,
        voted_for: None,
    };
    hard_state::write(dir, &state, false).expect("write state");
}

#[test]
fn a_record_out_of_place_is_corruption() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (storage, _) = with_gets(dir, 1 << 20, 3);
    drop(storage);
    let path = segment_path(dir, 1);
    let mut bytes = fs::read(&path).expect("read");
    // Record 2 is rewritten, checksum and all, to claim index 7.
    let mut record = Vec::new();
    segment::encode_record(
        &mut record,
        7,
        &Entry {
            term: 1,
            command: Some(get("b")),
        },
    );
    let at = (8 + GET_RECORD) as usize;
    bytes[at..at + record.len()].copy_from_slice(&record);
    fs::write(&path, &bytes).expect("write");
    let error = FileStorage::open(dir, &ident(1), options(1 << 20)).expect_err("corrupt");
    assert!(
        matches!(&error, StorageError::Corrupt { offset: 39, reason, .. } if reason.contains("index 7")),
        "{error}"
    );
}

#[test]
fn a_damaged_state_file_is_corruption() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    drop(with_gets(dir, 1 << 20, 1));
    let state = dir.join("state");
    let pristine = fs::read(&state).expect("read");
    for damage in [&flip as &dyn Fn(&Path, u64), &|path, _| cut(path, 1)] {
        damage(&state, 17);
        let error = FileStorage::open(dir, &ident(1), options(1 << 20)).expect_err("corrupt");
        assert!(
            matches!(&error, StorageError::Corrupt { path, offset: 0, .. } if path == &state),
            "{error}"
        );
        assert!(error.to_string().contains("state"), "{error}");
        fs::write(&state, &pristine).expect("restore");
    }
    // A lost state file beside a non-empty log is corruption too, not a fresh start.
    fs::remove_file(&state).expect("remove");
    let error = FileStorage::open(dir, &ident(1), options(1 << 20)).expect_err("corrupt");
    assert!(
        matches!(&error, StorageError::Corrupt { path, .. } if path == &state),
        "{error}"
    );
}

#[test]
fn one_save_is_one_fsync() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fsync = StorageOptions {
        segment_bytes: 3000,
        fsync: true,
        replace_members: false,
    };
    let (mut storage, mut durable, _) =
        FileStorage::open(tmp.path(), &ident(1), fsync.clone()).expect("open");
    durable.term = 1;
    append(&mut storage, &mut durable, gets(1, 100));
    assert_eq!(storage.fsyncs(), 1);
    // Nothing to persist: nothing done.
    storage.save(&durable, Persist::default()).expect("save");
    assert_eq!(storage.fsyncs(), 1);
    // Hard state: state.tmp and the directory.
    set_term(&mut storage, &mut durable, 2, Some(1));
    assert_eq!(storage.fsyncs(), 3);
    // Both at once, with a truncation inside the segment: state.tmp, the directory, the
    // `synced` file lowered below the cut, the segment.
    durable.term = 3;
    durable.log.truncate(50);
    durable.log.extend(gets(3, 10));
    let both = Persist {
        hard_state: true,
        log_from: Some(51),
    };
    storage.save(&durable, both).expect("save");
    assert_eq!(storage.fsyncs(), 7);
    // Filling the segment past its 3000 bytes, then a segment start: directory fsync too.
    append(&mut storage, &mut durable, gets(3, 40));
    assert_eq!((storage.segment_count(), storage.fsyncs()), (1, 8));
    append(&mut storage, &mut durable, gets(3, 1));
    assert_eq!((storage.segment_count(), storage.fsyncs()), (2, 10));
    drop(storage);
    let (storage, read, _) = FileStorage::open(tmp.path(), &ident(1), fsync).expect("reopen");
    assert_eq!(read, durable);
    assert_eq!(storage.fsyncs(), 0);

    // Without fsync nothing is counted.
    let (mut storage, mut durable, _) = reopen(tmp.path(), 3000);
    append(&mut storage, &mut durable, gets(3, 10));
    set_term(&mut storage, &mut durable, 4, None);
    assert_eq!(storage.fsyncs(), 0);
}

#[test]
fn a_failed_save_refuses_later_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut storage, mut durable) = with_gets(tmp.path(), 10, 1);
    // The next segment's name is taken, so starting it fails.
    fs::write(segment_path(tmp.path(), 2), b"").expect("write");
    durable.log.extend(gets(1, 1));
    let persist = Persist {
        hard_state: false,
        log_from: Some(2),
    };
    let error = storage.save(&durable, persist).expect_err("create fails");
    assert!(
        matches!(
            error,
            StorageError::Io {
                operation: "create",
                ..
            }
        ),
        "{error}"
    );
    let error = storage.save(&durable, persist).expect_err("refused");
    assert!(matches!(error, StorageError::Failed { .. }), "{error}");
}

#[test]
fn a_directory_knows_its_process_cluster_and_members() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (held, _, _) = FileStorage::open(dir, &ident(1), options(256)).expect("open");
    // A second open while the first holds the directory.
    match FileStorage::open(dir, &ident(1), options(256)).expect_err("locked") {
        StorageError::Locked { path, holder } => {
            assert_eq!(path, dir.join("lock"));
            assert_eq!(holder, format!("process {}", std::process::id()));
        }
        other => panic!("unexpected {other:?}"),
    }
    drop(held);
    let foreign = Identity::new("other", 1, [1, 2, 3, 4]);
    match FileStorage::open(dir, &foreign, options(256)).expect_err("foreign") {
        StorageError::ForeignCluster {
            path,
            expected,
            found,
        } => {
            assert_eq!(path, dir.join("cluster"));
            assert_eq!((expected.as_str(), found.as_str()), ("other", "test"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let shrunk = Identity::new("test", 1, [1, 2, 3]);
    match FileStorage::open(dir, &shrunk, options(256)).expect_err("members") {
        StorageError::MembersChanged { stored, given, .. } => {
            assert_eq!((stored, given), (vec![1, 2, 3, 4], vec![1, 2, 3]));
        }
        other => panic!("unexpected {other:?}"),
    }
    let replace = StorageOptions {
        replace_members: true,
        ..options(256)
    };
    let (_, _, recovery) = FileStorage::open(dir, &shrunk, replace).expect("replaced");
    assert_eq!(recovery.replaced_members, Some(vec![1, 2, 3, 4]));
    let (_, _, recovery) = FileStorage::open(dir, &shrunk, options(256)).expect("new list");
    assert_eq!(recovery.replaced_members, None);
}
