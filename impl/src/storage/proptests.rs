//! Property tests: random histories against an in-memory reference `Durable`.

use super::*;
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};
use tempfile::TempDir;

/// Tiny segments, so that histories cross many of them; no fsync, for speed.
const OPTIONS: StorageOptions = StorageOptions {
    segment_bytes: 200,
    fsync: false,
    replace_members: false,
};

fn ident() -> Identity {
    Identity::new("test", 1, [1, 2, 3])
}

/// Cases per property: a few seconds in a debug build.
const TESTS: u64 = 200;

/// Ops per history, at most.
const HISTORY: usize = 40;

/// One step of a history. Indices and terms are relative, so that every op is valid after any
/// history (and shrinking keeps the rest valid).
#[derive(Clone, Debug)]
enum Op {
    /// Append entries, optionally in a new term saved in the same call.
    Append {
        entries: Vec<Option<Command>>,
        /// How far below the current term the entries' term may lag.
        lag: u64,
        new_term: bool,
    },
    /// Replace the log from an index in `1..=last + 1` picked by `at`: mostly among the last
    /// few entries (so logs grow over many segments), sometimes anywhere.
    Truncate {
        at: u64,
        entries: Vec<Option<Command>>,
        lag: u64,
        new_term: bool,
    },
    /// Raise the term by `bump` (maybe 0) and vote.
    SetTermVote { bump: u64, vote: Option<u64> },
    /// Close and open the storage.
    Reopen,
}

fn arbitrary_command(g: &mut Gen) -> Option<Command> {
    let keys = ["", "a", "key", "é", "a longer key"];
    let key = g.choose(&keys).expect("keys").to_string();
    match u8::arbitrary(g) % 5 {
        0 => None,
        1 => Some(Command::Delete { key }),
        2 => Some(Command::Get { key }),
        _ => {
            let len = usize::arbitrary(g) % 40;
            let value = (0..len).map(|_| u8::arbitrary(g)).collect();
            Some(Command::Put { key, value })
        }
    }
}

fn arbitrary_entries(g: &mut Gen) -> Vec<Option<Command>> {
    let n = usize::arbitrary(g) % 7;
    (0..n).map(|_| arbitrary_command(g)).collect()
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        match u8::arbitrary(g) % 8 {
            0..=3 => Op::Append {
                entries: arbitrary_entries(g),
                lag: u64::arbitrary(g) % 3,
                new_term: u8::arbitrary(g) % 4 == 0,
            },
            4 | 5 => Op::Truncate {
                at: u64::arbitrary(g),
                entries: arbitrary_entries(g),
                lag: u64::arbitrary(g) % 3,
                new_term: u8::arbitrary(g) % 4 == 0,
            },
            6 => Op::SetTermVote {
                bump: u64::arbitrary(g) % 3,
                vote: Option::<u64>::arbitrary(g).map(|vote| vote % 5),
            },
            _ => Op::Reopen,
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Op>> {
        // Fewer entries per op; the Vec<Op> shrinker removes whole ops.
        let fewer = |entries: &Vec<Option<Command>>| {
            (!entries.is_empty()).then(|| entries[..entries.len() / 2].to_vec())
        };
        match self {
            Op::Append {
                entries,
                lag,
                new_term,
            } => Box::new(
                fewer(entries)
                    .map(|entries| Op::Append {
                        entries,
                        lag: *lag,
                        new_term: *new_term,
                    })
                    .into_iter(),
            ),
            Op::Truncate {
                at,
                entries,
                lag,
                new_term,
            } => Box::new(
                fewer(entries)
                    .map(|entries| Op::Truncate {
                        at: *at,
                        entries,
                        lag: *lag,
                        new_term: *new_term,
                    })
                    .into_iter(),
            ),
            Op::SetTermVote { .. } | Op::Reopen => Box::new(std::iter::empty()),
        }
    }
}

/// A storage and the reference it must match.
struct Harness {
    dir: TempDir,
    storage: FileStorage,
    reference: Durable<Command>,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let (storage, reference, _) =
            FileStorage::open(dir.path(), &ident(), OPTIONS).expect("open");
        Harness {
            dir,
            storage,
            reference,
        }
    }

    /// Optionally starts a new term, then writes `entries` from index `from` on, with terms
    /// non-decreasing along the log and at most the current term (as the Peer keeps them).
    fn write(&mut self, from: Index, entries: &[Option<Command>], lag: u64, new_term: bool) {
        let mut persist = Persist::default();
        if new_term {
            self.reference.term += 1;
            self.reference.voted_for = Some(1);
            persist.hard_state = true;
        }
        let log = &mut self.reference.log;
        if from <= log.len() as u64 || !entries.is_empty() {
            log.truncate(from as usize - 1);
            let floor = log.last().map_or(0, |entry| entry.term);
            let term = self.reference.term.saturating_sub(lag).max(floor);
            log.extend(entries.iter().map(|command| Entry {
                term,
                command: command.clone(),
            }));
            persist.log_from = Some(from);
        }
        self.storage.save(&self.reference, persist).expect("save");
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Append {
                entries,
                lag,
                new_term,
            } => {
                let from = self.reference.log.len() as u64 + 1;
                self.write(from, entries, *lag, *new_term);
            }
            Op::Truncate {
                at,
                entries,
                lag,
                new_term,
            } => {
                let last = self.reference.log.len() as u64;
                let from = if at % 4 == 0 {
                    at / 4 % (last + 1) + 1
                } else {
                    last + 1 - at / 4 % (last + 1).min(8)
                };
                self.write(from, entries, *lag, *new_term);
            }
            Op::SetTermVote { bump, vote } => {
                self.reference.term += bump;
                self.reference.voted_for = *vote;
                let persist = Persist {
                    hard_state: true,
                    log_from: None,
                };
                self.storage.save(&self.reference, persist).expect("save");
            }
            Op::Reopen => {
                let recovery = self.reopen()?;
                if recovery.truncated_tail_bytes != 0 {
                    return Err(format!("clean reopen cut a tail: {recovery:?}"));
                }
            }
        }
        self.check()
    }

    /// Replaces the storage with a freshly opened one, which must read back the reference.
    fn reopen(&mut self) -> Result<Recovery, String> {
        // A second instance while the first is still open (it holds the directory's lock).
        let (storage, read, recovery) = FileStorage::peek(self.dir.path(), &ident(), OPTIONS)
            .map_err(|error| error.to_string())?;
        self.storage = storage;
        if read != self.reference {
            return Err(format!(
                "reopen read {read:?}\nexpected {:?}",
                self.reference
            ));
        }
        if recovery.entries != read.log.len() as u64 {
            return Err(format!("{recovery:?} for {} entries", read.log.len()));
        }
        Ok(recovery)
    }

    /// The storage's index and, read by a second instance, its files match the reference.
    fn check(&self) -> Result<(), String> {
        if self.storage.last_index() != self.reference.log.len() as u64 {
            return Err(format!(
                "last_index {} for {} entries",
                self.storage.last_index(),
                self.reference.log.len()
            ));
        }
        let (_, read, _) = FileStorage::peek(self.dir.path(), &ident(), OPTIONS)
            .map_err(|error| error.to_string())?;
        if read != self.reference {
            return Err(format!(
                "files hold {read:?}\nexpected {:?}",
                self.reference
            ));
        }
        Ok(())
    }
}

fn quickcheck() -> QuickCheck {
    QuickCheck::new().tests(TESTS).rng(Gen::new(HISTORY))
}

#[test]
fn storage_matches_the_reference() {
    fn property(ops: Vec<Op>) -> TestResult {
        let mut harness = Harness::new();
        for (k, op) in ops.iter().enumerate() {
            if let Err(error) = harness.apply(op) {
                return TestResult::error(format!("after op {k} ({op:?}): {error}"));
            }
        }
        TestResult::passed()
    }
    quickcheck().quickcheck(property as fn(Vec<Op>) -> TestResult);
}

#[test]
fn a_cut_in_the_last_record_loses_exactly_that_record() {
    fn property(ops: Vec<Op>, cut: u16) -> TestResult {
        let mut harness = Harness::new();
        for op in &ops {
            if let Err(error) = harness.apply(op) {
                return TestResult::error(error);
            }
        }
        // The last record was being written when the process crashed: its index is not yet
        // recorded as synced (recovery refuses a cut at or below the synced index).
        let last_index = harness.storage.last_index();
        harness
            .storage
            .synced
            .set(last_index.saturating_sub(1), false)
            .expect("set synced");
        let last = harness.storage.segments.last().expect("segments");
        let path = last.path.clone();
        // With no record in the last segment, cut its header instead.
        let start = last.offsets.last().copied().unwrap_or(0);
        let end = last.len;
        let at = start + u64::from(cut) % (end - start + 1);
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.set_len(at).expect("set_len");
        drop(file);

        let record_lost = !last.offsets.is_empty() && at < end;
        let torn = if last.offsets.is_empty() {
            if at == end {
                0
            } else {
                at
            }
        } else if at == end {
            0
        } else {
            at - start
        };
        if record_lost {
            harness.reference.log.pop();
        }
        let recovery = match harness.reopen() {
            Ok(recovery) => recovery,
            Err(error) => return TestResult::error(format!("cut {path:?} at {at}: {error}")),
        };
        if recovery.truncated_tail_bytes != torn {
            return TestResult::error(format!(
                "cut {path:?} at {at} of {start}..{end}: {recovery:?}, expected {torn} torn bytes"
            ));
        }
        // Appending resumes where the log now ends.
        let op = Op::Append {
            entries: vec![None, Some(Command::Get { key: "k".into() })],
            lag: 0,
            new_term: false,
        };
        match harness.apply(&op).and_then(|()| harness.reopen()) {
            Ok(_) => TestResult::passed(),
            Err(error) => TestResult::error(format!("append after the cut: {error}")),
        }
    }
    quickcheck().quickcheck(property as fn(Vec<Op>, u16) -> TestResult);
}
