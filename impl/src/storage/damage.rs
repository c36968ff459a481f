//! Every single-bit flip and every cut of every file of a small data directory: open either
//! refuses, naming the damaged file and the record where the damage is, or reads back every
//! acknowledged entry. Never a silent loss.

use super::*;
use model::Entry;
use std::collections::BTreeMap;

fn ident() -> Identity {
    Identity::new("damage", 2, [1, 2, 3])
}

fn options() -> StorageOptions {
    StorageOptions {
        // Small segments: the log spans two of them.
        segment_bytes: 50,
        fsync: false,
        replace_members: false,
    }
}

/// A directory whose every save returned: all of it is acknowledged. Returns what it holds.
fn acknowledged(dir: &Path) -> Durable<Command> {
    let (mut storage, mut durable, _) = FileStorage::open(dir, &ident(), options()).expect("open");
    let mut save = |durable: &mut Durable<Command>, term, vote, entries: Vec<Option<Command>>| {
        let from = durable.log.len() as u64 + 1;
        let hard_state = durable.term != term || durable.voted_for != vote;
        durable.term = term;
        durable.voted_for = vote;
        durable
            .log
            .extend(entries.into_iter().map(|command| Entry { term, command }));
        let persist = Persist {
            hard_state,
            log_from: Some(from),
        };
        storage.save(durable, persist).expect("save");
    };
    let put = |key: &str, value: &[u8]| {
        Some(Command::Put {
            key: key.into(),
            value: value.to_vec(),
        })
    };
    save(&mut durable, 1, Some(2), vec![None, put("a", b"1")]);
    save(&mut durable, 1, Some(2), vec![put("bb", b"22")]);
    save(&mut durable, 2, Some(3), vec![None, put("c", b"")]);
    assert_eq!(
        storage.segment_count(),
        2,
        "the log should span two segments"
    );
    durable
}

/// The files of `dir` (but the lock) and their bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.file_name() != Some(std::ffi::OsStr::new(lock::FILE_NAME)))
        .map(|path| {
            let bytes = fs::read(&path).expect("read");
            (path, bytes)
        })
        .collect()
}

fn restore(pristine: &BTreeMap<PathBuf, Vec<u8>>) {
    for (path, bytes) in pristine {
        fs::write(path, bytes).expect("restore");
    }
}

/// Where the record holding byte `at` of a segment starts (0 for the segment header).
fn record_start(bytes: &[u8], at: usize) -> u64 {
    let mut start = segment::HEADER_LEN as usize;
    if at < start {
        return 0;
    }
    loop {
        let length = u32::from_le_bytes(bytes[start..start + 4].try_into().expect("4 bytes"));
        let end = start + segment::RECORD_HEADER_LEN + length as usize;
        if at < end {
            return start as u64;
        }
        start = end;
    }
}

/// What open made of one damaged copy: `None` if it read back everything acknowledged, or the
/// error's file and offset. Panics on a silent loss or on any other error.
fn verdict(dir: &Path, expected: &Durable<Command>, case: &str) -> Option<(PathBuf, u64, String)> {
    match FileStorage::open(dir, &ident(), options()) {
        Ok((_, read, _)) => {
            assert_eq!(
                &read, expected,
                "{case}: opened, but lost or changed something"
            );
            None
        }
        Err(error @ StorageError::Corrupt { .. }) => {
            let message = error.to_string();
            let StorageError::Corrupt { path, offset, .. } = error else {
                unreachable!()
            };
            Some((path, offset, message))
        }
        Err(other) => panic!("{case}: unexpected error {other}"),
    }
}

#[test]
fn every_bit_flip_is_refused_at_its_record_or_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let expected = acknowledged(dir);
    let pristine = files(dir);
    let (mut refused, mut harmless) = (0, 0);
    for (path, bytes) in &pristine {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for bit in 0..bytes.len() * 8 {
            let at = bit / 8;
            let mut damaged = bytes.clone();
            damaged[at] ^= 1 << (bit % 8);
            fs::write(path, &damaged).expect("write");
            let case = format!("{name}: bit {bit} flipped");
            match verdict(dir, &expected, &case) {
                None => {
                    // Only the `synced` file has a spare copy: its other slot, with a lower
                    // index, which is a safe bound.
                    assert_eq!(name, synced::FILE_NAME, "{case}: accepted");
                    harmless += 1;
                }
                Some((named, offset, _)) => {
                    assert_eq!(&named, path, "{case}: the error names another file");
                    if segment::parse_file_name(&name).is_some() {
                        assert_eq!(offset, record_start(bytes, at), "{case}: wrong record");
                    } else {
                        assert_eq!(offset, 0, "{case}");
                    }
                    refused += 1;
                }
            }
            restore(&pristine);
        }
    }
    // Whichever slot of `synced` a flip spoils, the other is whole and at most as high.
    assert_eq!(
        harmless,
        8 * synced::LEN,
        "flips absorbed by the spare slot"
    );
    assert!(refused > 2000, "{refused} flips refused");
    assert_eq!(verdict(dir, &expected, "pristine"), None);
}

#[test]
fn every_cut_is_refused_in_its_file_or_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let expected = acknowledged(dir);
    let pristine = files(dir);
    let mut refused = 0;
    for (path, bytes) in &pristine {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for len in 0..bytes.len() {
            fs::write(path, &bytes[..len]).expect("write");
            let case = format!("{name}: cut at {len} of {} bytes", bytes.len());
            let (named, offset, message) = verdict(dir, &expected, &case)
                .unwrap_or_else(|| panic!("{case}: accepted, but every entry was acknowledged"));
            if &named == path {
                assert!(offset <= len as u64, "{case}: offset {offset}");
            } else {
                // A segment cut at a record boundary leaves a gap, reported at the next one,
                // naming this one.
                assert!(message.contains(&name), "{case}: {message}");
            }
            refused += 1;
            restore(&pristine);
        }
    }
    assert!(refused > 300, "{refused} cuts refused");
}

#[test]
fn a_torn_last_batch_past_the_synced_index_is_cut_at_every_byte() {
    // The same directory, but the process crashed in its last save: the two entries of that
    // batch are not recorded as synced, and were never acknowledged.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut expected = acknowledged(dir);
    {
        let (mut storage, _, _) = FileStorage::open(dir, &ident(), options()).expect("open");
        storage.synced.set(3, false).expect("set synced");
    }
    let pristine = files(dir);
    let last = dir.join(segment::file_name(3));
    let bytes = &pristine[&last];
    let torn_from = record_start(bytes, bytes.len() - 1);
    let second_last = record_start(bytes, torn_from as usize - 1);
    assert!(
        second_last >= segment::HEADER_LEN,
        "entry 4 is in the last segment"
    );
    for len in second_last..bytes.len() as u64 {
        fs::write(&last, &bytes[..len as usize]).expect("write");
        let (_, read, recovery) = FileStorage::open(dir, &ident(), options())
            .unwrap_or_else(|error| panic!("cut at {len}: {error}"));
        let kept = if len == bytes.len() as u64 {
            5
        } else if len >= torn_from {
            4
        } else {
            3
        };
        assert_eq!(read.log[..], expected.log[..kept], "cut at {len}");
        assert_eq!(recovery.entries, kept as u64);
        restore(&pristine);
    }
    // A cut into entry 3, which is synced, is refused.
    fs::write(&last, &bytes[..second_last as usize - 1]).expect("write");
    expected.log.truncate(3);
    assert!(verdict(dir, &expected, "cut into entry 3").is_some());
}
