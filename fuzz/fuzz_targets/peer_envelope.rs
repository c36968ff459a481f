//! Coverage-guided fuzzing of a node's inbound path: bytes → protobuf decode of a
//! `PeerEnvelope` → wire validation → `Peer::handle_message`, with the checks of
//! `impl/tests/peer_input` after every delivery (no panic, the Peer's invariants hold, a
//! refused message changes nothing).
//!
//! One input is a run: its first byte picks the base state (a fresh follower, a follower with
//! committed entries, a candidate, a leader with progress); the rest is a sequence of
//! envelopes, each preceded by its length in one byte, delivered in order to the same Peer.
//!
//!     cargo +nightly fuzz run peer_envelope

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../impl/tests/peer_input/mod.rs"]
mod peer_input;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let mut states = peer_input::base_states();
    let (_, mut peer) = states.swap_remove(pick as usize % states.len());
    while let Some((&length, tail)) = rest.split_first() {
        let (bytes, next) = tail.split_at((length as usize).min(tail.len()));
        peer_input::deliver(&mut peer, bytes);
        rest = next;
    }
});
