//! `rdb-server`: one node of an rdb cluster.

use anyhow::Context;
use clap::Parser;
use rdb_server::config::{parse_peer_list, PartialConfig};
use rdb_server::logging::{self, LogFormat};
use rdb_server::node::{Node, NodeFailure, StartOptions};
use std::path::PathBuf;

/// One node of an rdb cluster: the model-checked Raft Peer over gRPC, with durable storage,
/// serving a replicated key-value map.
///
/// Settings come from flags, from a TOML config file (`--config`), or both; a flag overrides
/// the file. Example, node 1 of 3:
///
///   rdb-server --id 1 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir /tmp/rdb/1
///
/// Exit status: 0 after SIGTERM or Ctrl-C; 1 when the node cannot start; 74 when storage
/// fails while running (a write or fsync error, a full disk); 70 when the driver thread
/// panics or the gRPC server fails. A supervisor restarts the node on a non-zero status.
#[derive(Debug, Parser)]
#[command(name = "rdb-server", version, verbatim_doc_comment)]
struct Args {
    /// TOML file with any of the settings below (keys spelled with underscores, e.g.
    /// `data_dir`, and a `[peers]` table of `"1" = "127.0.0.1:7001"`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id: a positive integer listed in --peers.
    #[arg(long)]
    id: Option<u64>,
    /// Every member of the cluster, this node included, as ID=HOST:PORT pairs separated by
    /// commas.
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    peers: Option<String>,
    /// Address to listen on for peers and clients [default: this node's address in --peers].
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<String>,
    /// Directory for the log segments and the term/vote file; created if missing.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Cluster id carried by every message; messages from another cluster are refused
    /// [default: rdb].
    #[arg(long)]
    cluster_id: Option<String>,
    /// Lower bound of the randomized election timeout, in milliseconds [default: 300].
    #[arg(long, value_name = "MS")]
    election_timeout_ms_min: Option<u64>,
    /// Upper bound (exclusive) of the randomized election timeout, in milliseconds
    /// [default: 600].
    #[arg(long, value_name = "MS")]
    election_timeout_ms_max: Option<u64>,
    /// Interval between a leader's heartbeats, in milliseconds; must be below the election
    /// timeout minimum [default: 50].
    #[arg(long, value_name = "MS")]
    heartbeat_interval_ms: Option<u64>,
    /// Do not fsync. When the machine crashes, acknowledged writes can then be lost, and the
    /// node may refuse to start on a log that ends before its recorded synced index; for
    /// measurements only.
    #[arg(long)]
    no_fsync: bool,
    /// Store this --peers list's ids as the data directory's member list, replacing the one
    /// stored there. Without it, a node refuses to start when they differ. Changing members
    /// is an offline step: stop every node, then restart each with the same new --peers and
    /// this flag once.
    #[arg(long)]
    replace_members: bool,
    /// This node's TLS certificate (PEM), signed by --tls-ca and naming the node as the DNS
    /// name node-<ID>.rdb (and server.rdb, which clients check). With --tls-key and --tls-ca
    /// it turns on mutual TLS for peers and clients; all three or none.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The CA certificate (PEM): peers and clients must present a certificate it signed.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Flow control: at most this many entries in one AppendEntries to a follower
    /// [default: 4096].
    #[arg(long, value_name = "N")]
    max_append_entries: Option<u64>,
    /// Flow control: at most this many bytes of commands in one AppendEntries, but always at
    /// least one entry; at most 64 MiB [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    max_append_bytes: Option<u64>,
    /// Flow control: at most this many AppendEntries in flight to a follower whose position
    /// is known [default: 64].
    #[arg(long, value_name = "N")]
    max_inflight: Option<u64>,
    /// Flow control: no AppendEntries leaves for a follower while this many bytes are in
    /// flight to it [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    max_inflight_bytes: Option<u64>,
    /// Pre-vote and leader stickiness (Raft dissertation §9.6), on by default: an election
    /// starts only after a majority says it would vote, and a node that follows a live leader
    /// ignores requests for votes of a newer term. Every node of a cluster must agree on it.
    #[arg(long, conflicts_with = "no_pre_vote")]
    pre_vote: bool,
    /// Turn pre-vote and leader stickiness off: a node whose election timer fires starts an
    /// election at once, in a new term.
    #[arg(long)]
    no_pre_vote: bool,
    /// Stop, as on SIGTERM, when standard input reaches its end. A parent process that keeps
    /// the write end of a pipe on the server's stdin ties the server's life to its own: the
    /// kernel closes the pipe when the parent dies, however it dies (the tests use this).
    #[arg(long)]
    stop_at_stdin_end: bool,
    /// Record every Peer input and output, and what storage made durable, to FILE (JSON
    /// Lines, appended), for checking a run against the model. Off by default.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Lowest level logged: critical, error, warning, info, debug or trace.
    #[arg(long, default_value = "info", value_parser = parse_level)]
    log_level: slog::Level,
}

fn parse_level(text: &str) -> Result<slog::Level, String> {
    text.parse().map_err(|_| {
        format!("unknown log level `{text}`; use critical, error, warning, info, debug or trace")
    })
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rdb-server: starting the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(args));
    // Calls still in flight on a failed node must not hold the process up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(None) => std::process::ExitCode::SUCCESS,
        Ok(Some(failure)) => {
            eprintln!("rdb-server: node failed: {failure}");
            std::process::ExitCode::from(failure.exit_code())
        }
        Err(error) => {
            eprintln!("rdb-server: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the node until a signal (`Ok(None)`) or until it fails (`Ok(Some(cause))`).
async fn run(args: Args) -> anyhow::Result<Option<NodeFailure>> {
    let file = match &args.config {
        Some(path) => PartialConfig::from_file(path)?,
        None => PartialConfig::default(),
    };
    let flags = PartialConfig {
        id: args.id,
        cluster_id: args.cluster_id,
        listen: args.listen,
        peers: args.peers.as_deref().map(parse_peer_list).transpose()?,
        data_dir: args.data_dir,
        election_timeout_ms_min: args.election_timeout_ms_min,
        election_timeout_ms_max: args.election_timeout_ms_max,
        heartbeat_interval_ms: args.heartbeat_interval_ms,
        fsync: args.no_fsync.then_some(false),
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_ca: args.tls_ca,
        max_append_entries: args.max_append_entries,
        max_append_bytes: args.max_append_bytes,
        max_inflight: args.max_inflight,
        max_inflight_bytes: args.max_inflight_bytes,
        pre_vote: if args.no_pre_vote {
            Some(false)
        } else {
            args.pre_vote.then_some(true)
        },
    };
    let config = flags.or(file).build()?;
    let logger = logging::build(args.log_format, args.log_level);
    let options = StartOptions {
        record: args.record,
        replace_members: args.replace_members,
        ..StartOptions::default()
    };
    let node = Node::start(config.clone(), logger.clone(), options)
        .await
        .with_context(|| format!("starting node {}", config.id))?;
    // Supervision: a node whose driver thread or gRPC server ended serves no more; exiting
    // lets a supervisor restart it, and a restart recovers everything acknowledged.
    let stdin_end = stdin_end(args.stop_at_stdin_end);
    let failure = tokio::select! {
        signal = wait_for_signal() => {
            signal?;
            slog::info!(logger, "signal received; stopping");
            None
        }
        () = stdin_end => {
            slog::info!(logger, "standard input ended (--stop-at-stdin-end); stopping");
            None
        }
        failure = node.failed() => {
            slog::crit!(logger, "node failed; exiting"; "cause" => %failure, "exit_code" => failure.exit_code());
            Some(failure)
        }
    };
    node.stop().await;
    // Give the async log drain a moment to write the last lines.
    drop(logger);
    std::thread::sleep(std::time::Duration::from_millis(50));
    Ok(failure)
}

/// Resolves when standard input reaches its end, if `watch`; never otherwise.
async fn stdin_end(watch: bool) {
    if !watch {
        return std::future::pending().await;
    }
    let (ended, end) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("rdb-stdin-watch".into())
        .spawn(move || {
            // Read and discard until the end (or an error, which ends it as well).
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = ended.send(());
        });
    match spawned {
        Ok(_) => {
            let _ = end.await;
        }
        Err(error) => {
            eprintln!("rdb-server: cannot watch standard input: {error}");
            std::future::pending::<()>().await
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
    }
    Ok(())
}
