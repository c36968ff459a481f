//! No server binary can run a planted bug. The Peer's planted bugs live behind its type
//! parameter: only a `Peer<C, Planted>` can deviate, and the binaries build only
//! `Peer<C, Faithful>`. Any binary that could run a `Planted` Peer links
//! `model::PLANTED_MARKER`; these binaries, built as `cargo test --workspace` builds them (with
//! every feature any package of the workspace turns on), must not contain it. The conformance
//! test (`tests/tests/conformance.rs`), which does plant bugs, checks that its own binary does.

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn no_binary_of_the_server_package_links_planted_bug_code() {
    for binary in [
        env!("CARGO_BIN_EXE_rdb-server"),
        env!("CARGO_BIN_EXE_rdb"),
        env!("CARGO_BIN_EXE_rdb-bench"),
    ] {
        let bytes = std::fs::read(binary).unwrap_or_else(|error| panic!("{binary}: {error}"));
        assert!(bytes.len() > 1 << 20, "{binary} is not a built binary");
        assert!(
            !contains(&bytes, model::PLANTED_MARKER.as_bytes()),
            "{binary} links code that runs a Peer with a planted bug"
        );
    }
}
