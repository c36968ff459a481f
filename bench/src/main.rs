//! `core-bench`: rdb's consensus core against raft-rs's, in one process, with no I/O.
//!
//! For each batch size it runs the same workload on a 3-node cluster of rdb's `Peer` and on
//! one of raft-rs's `RawNode` over `MemStorage`: node 1 is elected first (not timed), then
//! the commands are proposed on it, a batch per proposal, and every message is delivered in
//! memory until all three nodes applied the batch. It reports committed entries per second
//! and the mean time per batch, the median of `--runs` runs.
//!
//!   cargo run --release -p rdb-bench-core --bin core-bench -- --json

use clap::Parser;
use rdb_bench_core::{
    commands, raftrs::RaftRsCluster, rdb::RdbCluster, run, BenchError, Cluster, RunResult,
    MIN_VALUE_BYTES, NODES,
};
use serde_json::json;
use std::process::ExitCode;

// Both cores allocate through mimalloc: it keeps run-to-run differences of the system
// allocator's state (heap growth, mmap thresholds) out of the figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Compares the consensus cores of rdb (Peer) and raft-rs (RawNode): 3 nodes in memory.
#[derive(Debug, Parser)]
#[command(name = "core-bench", verbatim_doc_comment)]
struct Args {
    /// Commands per proposal, one measurement each, separated by commas.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256", value_parser = positive)]
    batches: Vec<usize>,
    /// Commands committed per run.
    #[arg(long, default_value_t = 200_000, value_parser = positive)]
    entries: usize,
    /// Bytes per command (at least 8: each starts with its sequence number).
    #[arg(long, default_value_t = 100, value_parser = value_bytes)]
    value_bytes: usize,
    /// Runs per core and batch size; the median run is reported.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    runs: usize,
    /// Print the results as one JSON document on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a positive integer: {e}")),
    }
}

fn value_bytes(text: &str) -> Result<usize, String> {
    let n = positive(text)?;
    if n < MIN_VALUE_BYTES {
        return Err(format!("must be at least {MIN_VALUE_BYTES}"));
    }
    Ok(n)
}

/// The median of `runs` runs of core `C` (every run must pass its checks).
fn measure<C: Cluster>(args: &Args, batch: usize) -> Result<(RunResult, Vec<f64>), BenchError> {
    let commands = commands(args.entries, args.value_bytes);
    let mut results = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        results.push(run::<C>(&commands, batch)?);
    }
    let seconds = results.iter().map(|r| r.elapsed.as_secs_f64()).collect();
    results.sort_by_key(|r| r.elapsed);
    let median = results.swap_remove(results.len() / 2);
    eprintln!(
        "core-bench: {:<8} batch={:<5} entries/s={:>12.0} us/batch={:>10.2} messages/batch={:.1}",
        median.core,
        batch,
        median.entries_per_sec(),
        median.us_per_batch(),
        median.messages_per_batch()
    );
    Ok((median, seconds))
}

fn result_json(result: &RunResult, seconds: &[f64]) -> serde_json::Value {
    json!({
        "core": result.core,
        "batch": result.batch,
        "entries": result.entries,
        "proposals": result.proposals,
        "seconds": result.elapsed.as_secs_f64(),
        "entries_per_sec": result.entries_per_sec(),
        "us_per_batch": result.us_per_batch(),
        "messages_per_batch": result.messages_per_batch(),
        "run_seconds": seconds,
    })
}

fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() -> ExitCode {
    let args = Args::parse();
    let release = !cfg!(debug_assertions);
    if !release {
        eprintln!("core-bench: warning: a debug build; measure with --release");
    }
    // With the model's `checker` feature (a workspace-wide build), the Peer checks its
    // invariants after every step.
    let peer_invariant_checks = !release || model::INVARIANTS_CHECKED;
    if peer_invariant_checks {
        eprintln!(
            "core-bench: warning: the Peer checks its invariants after every step in this build"
        );
    }
    let mut pairs = Vec::new();
    for &batch in &args.batches {
        let measured = measure::<RdbCluster>(&args, batch)
            .and_then(|rdb| Ok((rdb, measure::<RaftRsCluster>(&args, batch)?)));
        match measured {
            Ok(pair) => pairs.push(pair),
            Err(error) => {
                eprintln!("core-bench: batch {batch}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    if args.json {
        let results: Vec<_> = pairs
            .iter()
            .flat_map(|((a, a_runs), (b, b_runs))| [result_json(a, a_runs), result_json(b, b_runs)])
            .collect();
        let document = json!({
            "workload": {
                "nodes": NODES,
                "leader": rdb_bench_core::LEADER,
                "entries": args.entries,
                "value_bytes": args.value_bytes,
                "batches": args.batches,
                "runs": args.runs,
                "reported_run": "median",
                "delivery": "synchronous, in memory, in rounds; a batch ends when all nodes applied it",
                "storage": "in memory (rdb-peer: a Durable copy; raft-rs: MemStorage)",
                "allocator": "mimalloc",
                "release_build": release,
                "peer_invariant_checks": peer_invariant_checks,
            },
            "results": results,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&document).expect("JSON of plain values")
        );
    } else {
        println!(
            "{} nodes, {} entries of {} bytes per run, median of {} runs",
            NODES, args.entries, args.value_bytes, args.runs
        );
        println!(
            "| Batch | rdb-peer entries/s | raft-rs entries/s | rdb-peer µs/batch | raft-rs µs/batch | rdb-peer ÷ raft-rs | messages/batch |"
        );
        println!("|---|---|---|---|---|---|---|");
        for ((a, _), (b, _)) in &pairs {
            println!(
                "| {} | {} | {} | {:.2} | {:.2} | {:.2}× | {:.1} / {:.1} |",
                a.batch,
                thousands(a.entries_per_sec()),
                thousands(b.entries_per_sec()),
                a.us_per_batch(),
                b.us_per_batch(),
                a.entries_per_sec() / b.entries_per_sec(),
                a.messages_per_batch(),
                b.messages_per_batch()
            );
        }
    }
    ExitCode::SUCCESS
}
