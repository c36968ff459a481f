//! `rdb-bench`: write throughput and latency of a 3-node cluster on loopback, and how fast a
//! follower far behind catches up.
//!
//! It starts three real nodes in this process (tonic on 127.0.0.1, file storage with fsync in
//! temporary directories), then for each client count runs that many concurrent clients, each
//! writing 100-byte values in a loop through the leader, and reports writes per second, p50 and
//! p99 latency, and how many log entries the leader wrote per fsync (group commit). Then it
//! stops a follower, writes `--catch-up-mib` MiB in 1 MiB values, restarts the follower and
//! reports how long it took to apply them (MiB/s).
//!
//!   cargo run --release -p rdb-server --bin rdb-bench -- --json > bench.json

use clap::Parser;
use rdb_server::client::Client;
use rdb_server::config::{NodeConfig, Timing};
use rdb_server::logging;
use rdb_server::node::{Node, StartOptions};
use rdb_server::tls::{TlsCredentials, TlsFiles};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Measures rdb's write path: 3 nodes on loopback, N concurrent clients.
#[derive(Debug, Parser)]
#[command(name = "rdb-bench", verbatim_doc_comment)]
struct Args {
    /// Client counts to measure, one run each, separated by commas.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    clients: Vec<usize>,
    /// Seconds each run measures (after a one-second warm-up).
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Distinct keys the clients write to.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// MiB written (in 1 MiB values) while a follower is stopped, for the catch-up figure;
    /// 0 skips it.
    #[arg(long, default_value_t = 64)]
    catch_up_mib: usize,
    /// Turn fsync off (measures everything but the disk).
    #[arg(long)]
    no_fsync: bool,
    /// Print the results as one JSON document on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// The clients' TLS certificate (PEM). With --tls-key and --tls-ca it runs everything
    /// over mutual TLS; all three or none. The nodes' certificates are read from the
    /// directory of --tls-ca as node-<ID>.pem and node-<ID>-key.pem, as
    /// scripts/make-test-ca.sh writes them.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) that signed every certificate.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
}

struct RunResult {
    clients: usize,
    writes: u64,
    errors: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    entries_per_fsync: f64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.clients.is_empty() || args.clients.contains(&0) {
        anyhow::bail!("--clients needs positive counts");
    }
    let names = ["--tls-cert", "--tls-key", "--tls-ca"];
    let client_files = TlsFiles::from_parts(
        args.tls_cert.clone(),
        args.tls_key.clone(),
        args.tls_ca.clone(),
        names,
    )?;
    let client_tls = client_files.as_ref().map(TlsFiles::load).transpose()?;
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut listeners = Vec::new();
    let mut peers = BTreeMap::new();
    for id in 1..=3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        peers.insert(id, listener.local_addr()?.to_string());
        listeners.push(listener);
    }
    let mut nodes = Vec::new();
    let mut configs = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let id = index as u64 + 1;
        let config = NodeConfig {
            id,
            cluster_id: "bench".into(),
            listen: peers[&id].parse()?,
            peers: peers.clone(),
            data_dir: dirs[index].path().to_owned(),
            timing: Timing {
                heartbeat_interval_ms: 20,
                ..Timing::default()
            },
            fsync: !args.no_fsync,
            tls: match &client_files {
                Some(files) => Some(node_tls(id, &files.ca)?),
                None => None,
            },
            flow: model::FlowControl::default(),
            // As a node runs by default.
            pre_vote: true,
        };
        let options = StartOptions {
            listener: Some(listener),
            ..StartOptions::default()
        };
        configs.push(config.clone());
        nodes.push(Some(
            Node::start(config, logging::for_tests(), options).await?,
        ));
    }
    let leader = wait_for_leader(&nodes).await?;
    let leader_id = leader as u64 + 1;
    eprintln!("rdb-bench: leader is node {leader_id}");
    let leader_addr = peers[&leader_id].clone();

    let mut results = Vec::new();
    for &clients in &args.clients {
        let leader_node = nodes[leader].as_ref().expect("the leader runs");
        let result = run(&args, clients, &leader_addr, leader_node, &client_tls).await?;
        eprintln!(
            "rdb-bench: clients={:<4} writes/s={:>9.0} p50={:.2} ms p99={:.2} ms entries/fsync={:.1} errors={}",
            result.clients,
            result.writes as f64 / result.seconds,
            result.p50_ms,
            result.p99_ms,
            result.entries_per_fsync,
            result.errors
        );
        results.push(result);
    }
    let catch_up = if args.catch_up_mib > 0 {
        let follower = (leader + 1) % nodes.len();
        let result = catch_up(
            &args,
            &mut nodes,
            &configs,
            leader,
            follower,
            &leader_addr,
            &client_tls,
        )
        .await?;
        eprintln!(
            "rdb-bench: catch-up of {} MiB (to index {}) in {:.2} s: {:.1} MiB/s",
            args.catch_up_mib,
            result.entries,
            result.seconds,
            args.catch_up_mib as f64 / result.seconds
        );
        Some(result)
    } else {
        None
    };
    if args.json {
        let runs: Vec<_> = results
            .iter()
            .map(|r| {
                json!({
                    "clients": r.clients,
                    "writes": r.writes,
                    "errors": r.errors,
                    "seconds": r.seconds,
                    "writes_per_second": r.writes as f64 / r.seconds,
                    "p50_ms": r.p50_ms,
                    "p99_ms": r.p99_ms,
                    "mean_entries_per_fsync": r.entries_per_fsync,
                })
            })
            .collect();
        let document = json!({
            "benchmark": "rdb-server write path",
            "nodes": 3,
            "transport": "tonic gRPC on 127.0.0.1",
            "tls": client_tls.is_some(),
            "fsync": !args.no_fsync,
            "value_bytes": args.value_bytes,
            "duration_secs": args.duration_secs,
            "runs": runs,
            "catch_up": catch_up.map(|c| json!({
                "mib_behind": args.catch_up_mib,
                "leader_last_index": c.entries,
                "seconds": c.seconds,
                "mib_per_second": args.catch_up_mib as f64 / c.seconds,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    }
    for node in nodes.into_iter().flatten() {
        node.stop().await;
    }
    Ok(())
}

/// Node `id`'s certificate and key from the directory of `ca`, checked to be that node's.
fn node_tls(id: u64, ca: &Path) -> anyhow::Result<TlsCredentials> {
    let directory = ca.parent().unwrap_or(Path::new("."));
    let files = TlsFiles {
        cert: directory.join(format!("node-{id}.pem")),
        key: directory.join(format!("node-{id}-key.pem")),
        ca: ca.to_owned(),
    };
    let credentials = files.load()?;
    credentials
        .check_node(id)
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", files.cert.display()))?;
    Ok(credentials)
}

/// How long the restarted follower took to apply what it missed.
struct CatchUp {
    /// The leader's last index, which the follower applied.
    entries: u64,
    seconds: f64,
}

/// Stops `follower`, writes `--catch-up-mib` MiB through the leader in 1 MiB values from 4
/// clients, restarts the follower from its files and times it until it has applied the
/// leader's last entry.
async fn catch_up(
    args: &Args,
    nodes: &mut [Option<Node>],
    configs: &[NodeConfig],
    leader: usize,
    follower: usize,
    leader_addr: &str,
    tls: &Option<TlsCredentials>,
) -> anyhow::Result<CatchUp> {
    const WRITERS: usize = 4;
    const VALUE_BYTES: usize = 1 << 20;
    if let Some(stopped) = nodes[follower].take() {
        stopped.stop().await;
    }
    let values = args.catch_up_mib;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let mut client = Client::with_tls(vec![leader_addr.to_owned()], tls.clone());
            tokio::spawn(async move {
                let client = client.as_mut().map_err(|e| anyhow::anyhow!("{e}"))?;
                for value in (writer..values).step_by(WRITERS) {
                    client
                        .put(&format!("behind-{value}"), vec![value as u8; VALUE_BYTES])
                        .await
                        .map_err(|e| anyhow::anyhow!("put behind-{value}: {e}"))?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    let target = nodes[leader]
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("leader stopped"))?
        .inspect(false)
        .await
        .ok_or_else(|| anyhow::anyhow!("leader stopped"))?
        .last_log_index;
    let started = Instant::now();
    let restarted = Node::start(
        configs[follower].clone(),
        logging::for_tests(),
        StartOptions::default(),
    )
    .await?;
    let restarted = nodes[follower].insert(restarted);
    loop {
        let applied = restarted
            .inspect(false)
            .await
            .map_or(0, |state| state.applied_index);
        if applied >= target {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("the follower applied {applied} of {target} entries in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(CatchUp {
        entries: target,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn wait_for_leader(nodes: &[Option<Node>]) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for (index, node) in nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            if let Some(state) = node.inspect(false).await {
                if state.role == model::RoleKind::Leader {
                    return Ok(index);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("no leader elected within 20 s")
}

async fn run(
    args: &Args,
    clients: usize,
    leader: &str,
    node: &Node,
    tls: &Option<TlsCredentials>,
) -> anyhow::Result<RunResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    // Clients share a few HTTP/2 connections, as an application's client pool would.
    let pool: Vec<Client> = (0..clients.div_ceil(16))
        .map(|_| Client::with_tls(vec![leader.to_owned()], tls.clone()))
        .collect::<Result<_, _>>()?;
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let mut client = pool[worker % pool.len()].clone();
        let stop = stop.clone();
        let measuring = measuring.clone();
        let keys = args.keys;
        let value = vec![b'v'; args.value_bytes];
        tasks.push(tokio::spawn(async move {
            let mut latencies_us = Vec::new();
            let mut errors = 0u64;
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("key-{}", n % keys);
                n += clients;
                let started = Instant::now();
                let ok = client.put(&key, value.clone()).await.is_ok();
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies_us.push(started.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies_us, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = node
        .inspect(false)
        .await
        .ok_or_else(|| anyhow::anyhow!("leader stopped"))?;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration_secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let after = node
        .inspect(false)
        .await
        .ok_or_else(|| anyhow::anyhow!("leader stopped"))?;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut l, e) = task.await?;
        latencies.append(&mut l);
        errors += e;
    }
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[rank] as f64 / 1000.0
    };
    let fsyncs = after.fsyncs.saturating_sub(before.fsyncs);
    let entries = after.entries_written.saturating_sub(before.entries_written);
    Ok(RunResult {
        clients,
        writes: latencies.len() as u64,
        errors,
        seconds,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        entries_per_fsync: if fsyncs == 0 {
            0.0
        } else {
            entries as f64 / fsyncs as f64
        },
    })
}
