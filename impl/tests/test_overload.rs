//! Overload: a node driven with ten times more concurrent writes than its input queue holds
//! answers the excess `RESOURCE_EXHAUSTED`, keeps every write it acknowledged, and its memory
//! stays bounded. Run with `cargo test -p rdb-server --test test_overload`.

mod common;

use common::{single_node_config, PATIENCE};
use model::RoleKind;
use rdb_proto as pb;
use rdb_server::logging;
use rdb_server::node::{Node, StartOptions};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// The node's input queue in this test.
const QUEUE: usize = 64;
/// Inputs the driver takes per batch (one fsync each): far fewer than the clients send.
const BATCH: usize = 8;
/// Concurrent clients: ten times what the queue holds.
const CLIENTS: usize = 10 * QUEUE;
/// Writes each client makes.
const WRITES_PER_CLIENT: usize = 10;
/// Connections the clients share (HTTP/2 streams multiplex over them).
const CONNECTIONS: usize = 32;
/// The bound on the test process's peak resident memory, node and clients together.
const MAX_RSS_KIB: u64 = 128 * 1024;
/// The driver's sleep after each batch's persist: a slow disk, so that the clients outpace the
/// node on any machine (on a fast disk the node may keep up and the queue never fills).
const SLOW_DISK: Duration = Duration::from_millis(5);

async fn start_node(dir: &Path, listener: TcpListener) -> Node {
    let addr = listener.local_addr().expect("addr");
    let config = single_node_config(addr, dir);
    let options = StartOptions {
        listener: Some(listener),
        max_batch: BATCH,
        input_queue: QUEUE,
        batch_pause: Some(SLOW_DISK),
        ..StartOptions::default()
    };
    let node = Node::start(config, logging::for_tests(), options)
        .await
        .expect("node starts");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let state = node.inspect(false).await.expect("node is running");
        if state.role == RoleKind::Leader {
            return node;
        }
        assert!(Instant::now() < deadline, "no leader: {state:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Peak resident memory of this process, from /proc/self/status.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("a VmHWM line");
    line.split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("VmHWM in kB")
}

/// What the clients saw.
#[derive(Default)]
struct Outcomes {
    acknowledged: Vec<(String, Vec<u8>)>,
    exhausted: usize,
    /// Any other error: none is expected.
    other: Vec<String>,
}

async fn overload(addr: SocketAddr) -> Outcomes {
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(connect(addr).await);
    }
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let mut kv = pb::kv_client::KvClient::new(channels[client % CONNECTIONS].clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Outcomes::default();
            for write in 0..WRITES_PER_CLIENT {
                let key = format!("client-{client}-write-{write}");
                let value = format!("value of {key}").into_bytes();
                let request = pb::PutRequest {
                    key: key.clone(),
                    value: value.clone(),
                };
                match kv.put(request).await {
                    Ok(_) => outcomes.acknowledged.push((key, value)),
                    Err(status) if status.code() == Code::ResourceExhausted => {
                        assert!(
                            status.message().starts_with("node overloaded: "),
                            "{status:?}"
                        );
                        outcomes.exhausted += 1;
                    }
                    Err(status) => outcomes.other.push(format!("{key}: {status:?}")),
                }
            }
            outcomes
        }));
    }
    let mut all = Outcomes::default();
    for task in tasks {
        let outcomes = task.await.expect("client task");
        all.acknowledged.extend(outcomes.acknowledged);
        all.exhausted += outcomes.exhausted;
        all.other.extend(outcomes.other);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_the_queue_gets_resource_exhausted_and_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let node = start_node(dir.path(), listener).await;

    let outcomes = overload(addr).await;
    let peak_kib = peak_rss_kib();
    println!(
        "overload: {CLIENTS} clients x {WRITES_PER_CLIENT} writes, queue {QUEUE}: \
         {} acknowledged, {} RESOURCE_EXHAUSTED, {} other errors; peak RSS {} KiB",
        outcomes.acknowledged.len(),
        outcomes.exhausted,
        outcomes.other.len(),
        peak_kib
    );
    assert!(outcomes.other.is_empty(), "{:#?}", outcomes.other);
    assert!(outcomes.exhausted > 0, "the node was never overloaded");
    assert!(!outcomes.acknowledged.is_empty(), "the node took no write");
    assert_eq!(
        outcomes.acknowledged.len() + outcomes.exhausted,
        CLIENTS * WRITES_PER_CLIENT
    );
    assert!(
        peak_kib < MAX_RSS_KIB,
        "peak RSS {peak_kib} KiB, above the bound of {MAX_RSS_KIB} KiB"
    );

    // Every acknowledged write is on disk: read them back after a restart.
    node.stop().await;
    let listener = TcpListener::bind(addr).await.expect("bind again");
    let node = start_node(dir.path(), listener).await;
    let mut kv = pb::kv_client::KvClient::new(connect(addr).await);
    for (key, value) in &outcomes.acknowledged {
        let read = kv
            .get(pb::GetRequest { key: key.clone() })
            .await
            .expect("get")
            .into_inner();
        assert!(read.found, "acknowledged key {key} is missing");
        assert_eq!(&read.value, value, "key {key}");
    }
    node.stop().await;
}
