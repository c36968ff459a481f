//! Fuzzing the network edge in `cargo test`: a million inputs (by default) go through
//! bytes → protobuf decode → wire validation → `Peer::handle_message`, on Peers in several
//! states (a fresh follower, a follower with committed entries, a candidate, a leader with
//! progress and a commit). No input may panic, every step must leave the Peer's invariants
//! holding, and a refused message must leave the Peer unchanged (`peer_input::deliver`).
//!
//! Inputs are of three sorts: random bytes (a sixth); encodings of valid or hostile messages
//! with a few byte-level mutations (bit flips, truncations, insertions, splices; a third);
//! and structurally valid but hostile messages (half), built from values chosen around the
//! receiver's state (its term, commit and last index, each ±1, 0, `u64::MAX`, the highest
//! term the wire allows). Each run starts from a base state and feeds it up to 24 inputs,
//! with an occasional timer or proposal, so that states drift as a live node's do.
//!
//! The run is seeded and reproducible (quickcheck 1 cannot be seeded, so inputs come from
//! `fastrand`): `RDB_FUZZ_SEED` and `RDB_FUZZ_INPUTS` change the seed and the count. It
//! prints the seed, the count of inputs and each outcome's count. For longer, coverage-guided
//! runs, see the cargo-fuzz targets in `fuzz/`.

mod peer_input;

use model::{Peer, RoleKind, Timer};
use peer_input::{base_states, deliver, Outcome, ME, MEMBERS};
use prost::Message as _;
use rdb_proto as pb;
use rdb_server::command::Command;
use rdb_server::convert::MAX_TERM;
use std::collections::BTreeMap;
use std::time::Instant;

const DEFAULT_SEED: u64 = 0x5eed_0013;
const DEFAULT_INPUTS: u64 = 1_000_000;
const MAX_RUN_LENGTH: usize = 24;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text} is not a number")),
        Err(_) => default,
    }
}

/// Draws inputs around one receiver's state.
struct Inputs<'a> {
    rng: &'a mut fastrand::Rng,
    peer: &'a Peer<Command>,
}

impl Inputs<'_> {
    fn term(&mut self) -> u64 {
        let term = self.peer.term();
        match self.rng.u8(..16) {
            0 => 0,
            1 => 1,
            2 => term.saturating_sub(1),
            3..=6 => term,
            7 | 8 => term + 1,
            9 => term + 2,
            10 => MAX_TERM,
            11 => MAX_TERM + 1,
            12 => u64::MAX,
            13 => self.rng.u64(..),
            _ => self.rng.u64(..8),
        }
    }

    fn index(&mut self) -> u64 {
        let (commit, last) = (self.peer.commit_index(), self.peer.last_index());
        match self.rng.u8(..16) {
            0 => 0,
            1 => 1,
            2 => commit.saturating_sub(1),
            3 => commit,
            4 => commit + 1,
            5 => last.saturating_sub(1),
            6 | 7 => last,
            8 => last + 1,
            9 => last + 2,
            10 => u64::MAX,
            11 => u64::MAX - 1,
            12 => self.rng.u64(..),
            _ => self.rng.u64(..12),
        }
    }

    fn command(&mut self) -> Option<pb::Command> {
        let key = match self.rng.u8(..8) {
            0 => String::new(),
            1 => "k".repeat(self.rng.usize(..64)),
            _ => format!("k{}", self.rng.u8(..8)),
        };
        let kind = match self.rng.u8(..8) {
            0 => return None,
            1 => return Some(pb::Command { kind: None }),
            2 => pb::command::Kind::Delete(pb::Delete { key }),
            3 => pb::command::Kind::Get(pb::Get { key }),
            _ => pb::command::Kind::Put(pb::Put {
                key,
                value: vec![self.rng.u8(..); self.rng.usize(..16)],
            }),
        };
        Some(pb::Command { kind: Some(kind) })
    }

    /// Entries after a previous entry of `prev_term`, mostly in order and within `term`.
    fn entries(&mut self, prev_term: u64, term: u64) -> Vec<pb::Entry> {
        let mut previous = prev_term.max(1);
        (0..self.rng.usize(..5))
            .map(|_| {
                let entry_term = match self.rng.u8(..8) {
                    0 => self.term(),
                    1 if previous < term => previous + 1,
                    2 => term,
                    _ => previous,
                };
                previous = entry_term;
                pb::Entry {
                    term: entry_term,
                    command: self.command(),
                }
            })
            .collect()
    }

    fn message(&mut self) -> pb::peer_envelope::Message {
        use pb::peer_envelope::Message as M;
        let term = self.term();
        match self.rng.u8(..5) {
            0 => {
                let last_log_index = self.index();
                let last_log_term = if self.rng.bool() {
                    self.peer.term_at(last_log_index)
                } else {
                    self.term()
                };
                M::RequestVoteRequest(pb::RequestVoteRequest {
                    term,
                    last_log_index,
                    last_log_term,
                    transfer: self.rng.bool(),
                })
            }
            1 => M::RequestVoteResponse(pb::RequestVoteResponse {
                term,
                granted: self.rng.bool(),
            }),
            2 => {
                // Half the requests pass the consistency check, so that their entries are
                // compared with the log.
                let (prev_log_index, prev_log_term) = if self.rng.bool() {
                    let prev = self.rng.u64(..=self.peer.last_index());
                    (prev, self.peer.term_at(prev))
                } else {
                    (self.index(), self.term())
                };
                M::AppendEntriesRequest(pb::AppendEntriesRequest {
                    term,
                    prev_log_index,
                    prev_log_term,
                    entries: self.entries(prev_log_term, term),
                    leader_commit: self.index(),
                })
            }
            4 => M::TimeoutNow(pb::TimeoutNow { term }),
            _ => M::AppendEntriesResponse(pb::AppendEntriesResponse {
                term,
                success: self.rng.bool(),
                index: self.index(),
            }),
        }
    }

    fn envelope(&mut self) -> pb::PeerEnvelope {
        let others = &MEMBERS[1..];
        let from = match self.rng.u8(..16) {
            0 => 0,
            1 => ME,
            2 => 4,
            3 => self.rng.u64(..),
            _ => others[self.rng.usize(..others.len())],
        };
        let to = if self.rng.u8(..16) == 0 {
            self.rng.u64(..4)
        } else {
            ME
        };
        let message = (self.rng.u8(..32) != 0).then(|| self.message());
        pb::PeerEnvelope {
            cluster_id: "fuzz".into(),
            from,
            to,
            message,
        }
    }

    fn random_bytes(&mut self) -> Vec<u8> {
        let length = self.rng.usize(..96);
        std::iter::repeat_with(|| self.rng.u8(..))
            .take(length)
            .collect()
    }

    /// An encoded envelope with one to four byte-level mutations.
    fn mutated(&mut self) -> Vec<u8> {
        let mut bytes = self.envelope().encode_to_vec();
        for _ in 0..self.rng.usize(1..=4) {
            let at = self.rng.usize(..=bytes.len());
            match self.rng.u8(..7) {
                0 if !bytes.is_empty() => {
                    let at = at.min(bytes.len() - 1);
                    bytes[at] ^= 1 << self.rng.u8(..8);
                }
                1 if !bytes.is_empty() => {
                    let at = at.min(bytes.len() - 1);
                    bytes[at] = [0x00, 0x01, 0x7f, 0x80, 0xff][self.rng.usize(..5)];
                }
                2 => bytes.truncate(at),
                3 => {
                    let insert = self.random_bytes();
                    let cut = insert.len().min(8);
                    bytes.splice(at..at, insert[..cut].iter().copied());
                }
                4 => {
                    let end = self.rng.usize(at..=bytes.len());
                    bytes.drain(at..end);
                }
                5 => {
                    let other = self.envelope().encode_to_vec();
                    let from = self.rng.usize(..=other.len());
                    bytes.truncate(at);
                    bytes.extend_from_slice(&other[from..]);
                }
                _ => {
                    let end = self.rng.usize(at..=bytes.len());
                    let copy = bytes[at..end].to_vec();
                    bytes.splice(at..at, copy);
                }
            }
        }
        bytes
    }

    fn next(&mut self) -> Vec<u8> {
        match self.rng.u8(..6) {
            0 => self.random_bytes(),
            1 | 2 => self.mutated(),
            _ => self.envelope().encode_to_vec(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn no_input_from_the_network_panics_or_breaks_the_peer() {
    let seed = env_u64("RDB_FUZZ_SEED", DEFAULT_SEED);
    let total = env_u64("RDB_FUZZ_INPUTS", DEFAULT_INPUTS);
    println!(
        "fuzzing the peer input path: seed {seed}, {total} inputs (RDB_FUZZ_SEED, RDB_FUZZ_INPUTS)"
    );
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let states = base_states();
    let mut outcomes: BTreeMap<Outcome, u64> = BTreeMap::new();
    let mut delivered = 0;
    while delivered < total {
        let (state, base) = &states[rng.usize(..states.len())];
        let mut peer = base.clone();
        for _ in 0..rng.usize(1..=MAX_RUN_LENGTH) {
            // An occasional timer or proposal, as on a live node.
            match rng.u8(..64) {
                0 => {
                    peer.handle_timeout(Timer::Election);
                    continue;
                }
                1 if peer.role_kind() == RoleKind::Leader => {
                    peer.propose(vec![peer_input::put("p")])
                        .expect("a leader takes proposals");
                    continue;
                }
                _ => {}
            }
            let bytes = Inputs {
                rng: &mut rng,
                peer: &peer,
            }
            .next();
            let before = peer.clone();
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                deliver(&mut peer, &bytes)
            }));
            let outcome = step.unwrap_or_else(|_| {
                panic!(
                    "input {delivered} (seed {seed}, from the {state} base state) failed: bytes \
                     {}\nPeer before it: {before:?}",
                    hex(&bytes)
                )
            });
            *outcomes.entry(outcome).or_default() += 1;
            delivered += 1;
            if delivered == total {
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{delivered} inputs in {:.1}s, no panic, every Peer consistent after every step",
        elapsed.as_secs_f64()
    );
    for (outcome, count) in &outcomes {
        println!("  {count:>9}  {outcome}");
    }
    if total >= DEFAULT_INPUTS {
        // The harness reaches every path it is meant to test: each refusal of the Peer, and
        // each message kind handled.
        for expected in [
            Outcome::Refused("overwrites-committed"),
            Outcome::Refused("second-leader"),
            Outcome::Refused("acknowledges-beyond-log"),
            Outcome::Refused("hint-beyond-log"),
            Outcome::Handled("RequestVoteRequest"),
            Outcome::Handled("RequestVoteResponse"),
            Outcome::Handled("AppendEntriesRequest"),
            Outcome::Handled("AppendEntriesResponse"),
            Outcome::Undecodable,
            Outcome::UnknownSender,
        ] {
            assert!(
                outcomes.contains_key(&expected),
                "no input reached the outcome `{expected}`"
            );
        }
    }
}
