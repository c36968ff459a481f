//! The checked-in trace corpus (`tests/testdata/traces/`, written by
//! `scripts/regenerate-traces.sh`), shared by the conformance and spec tests.

use model::checker::trace::Trace;
use std::path::{Path, PathBuf};

/// The corpus directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/traces")
}

/// Every trace of the corpus, in file-name order. A missing directory or an unreadable trace
/// is a test failure, never an empty corpus.
pub fn load() -> Vec<Trace> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("the corpus directory exists (scripts/regenerate-traces.sh)")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "the corpus {} is empty", dir().display());
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("read trace");
            Trace::parse(&text).unwrap_or_else(|why| panic!("{}: {why}", path.display()))
        })
        .collect()
}

/// Whether a trace is a planted bug's counterexample (not a behaviour of a correct Peer).
pub fn is_counterexample(trace: &Trace) -> bool {
    trace.header.origin == "counterexample"
}
