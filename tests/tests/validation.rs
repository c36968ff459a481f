//! Impl → model: a real 3-node cluster (real timers, real gRPC, real files) runs a client
//! workload with a node killed and restarted; its recordings are then checked against the
//! model (see `tests/src/validation.rs`).

use model::{Message, NodeId};
use rdb_server::client::Client;
use rdb_server::config::{NodeConfig, Timing};
use rdb_server::logging;
use rdb_server::node::{Node, StartOptions};
use rdb_server::record::{Recorded, RecordedEvent, RecordedInput};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tests::validation::{read_recording, validate};
use tokio::net::TcpListener;

const RUN: Duration = Duration::from_secs(11);

struct Recorded3 {
    _dirs: Vec<tempfile::TempDir>,
    files: BTreeMap<NodeId, PathBuf>,
    restarts: usize,
}

fn config(id: NodeId, peers: &BTreeMap<NodeId, String>, dir: &std::path::Path) -> NodeConfig {
    NodeConfig {
        id,
        cluster_id: "validation".into(),
        listen: peers[&id].parse().expect("socket address"),
        peers: peers.clone(),
        data_dir: dir.join("data"),
        timing: Timing {
            election_timeout_ms_min: 300,
            election_timeout_ms_max: 600,
            heartbeat_interval_ms: 50,
        },
        fsync: true,
        tls: None,
        // Small batches and a small window, so that the recordings show flow control at work:
        // probes, pipelining, a full window.
        flow: model::FlowControl {
            max_entries: 2,
            max_inflight: 2,
            ..model::FlowControl::default()
        },
        // Pre-vote on, so that the recordings show pre-vote rounds and stickiness as well.
        pre_vote: true,
    }
}

async fn start(config: NodeConfig, record: PathBuf, listener: TcpListener) -> Node {
    let options = StartOptions {
        listener: Some(listener),
        record: Some(record),
        ..StartOptions::default()
    };
    Node::start(config, logging::for_tests(), options)
        .await
        .expect("node starts")
}

async fn leader_of(nodes: &BTreeMap<NodeId, Node>) -> Option<NodeId> {
    for (id, node) in nodes {
        if node.inspect(false).await?.role == model::RoleKind::Leader {
            return Some(*id);
        }
    }
    None
}

/// Runs the cluster for [`RUN`] with clients writing and reading, kills the leader after 3 s
/// and restarts it 3 s later.
async fn run_cluster() -> Recorded3 {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut peers = BTreeMap::new();
    let mut listeners = BTreeMap::new();
    for id in 1..=3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        peers.insert(id, listener.local_addr().expect("addr").to_string());
        listeners.insert(id, listener);
    }
    let files: BTreeMap<NodeId, PathBuf> = (1..=3)
        .map(|id| (id, dirs[id as usize - 1].path().join("recording.jsonl")))
        .collect();
    let mut nodes = BTreeMap::new();
    for (id, listener) in listeners {
        let config = config(id, &peers, dirs[id as usize - 1].path());
        nodes.insert(id, start(config, files[&id].clone(), listener).await);
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..4u8 {
        let mut client = Client::new(peers.values().cloned().collect()).expect("client");
        client.max_attempts = 5;
        workers.push(tokio::spawn(async move {
            let mut i = 0u32;
            while started.elapsed() < RUN {
                let key = format!("k{}", i % 5);
                let _ = if i % 3 == 2 {
                    client.get(&key).await.map(|_| ())
                } else {
                    client.put(&key, vec![worker; 8]).await.map(|_| ())
                };
                i += 1;
            }
        }));
    }
    // Leadership moves once under load (§3.10), so that transfers and TimeoutNow are in the
    // recordings too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if let Some(leader) = leader_of(&nodes).await {
        let target = leader % 3 + 1;
        let mut admin = Client::new(vec![peers[&leader].clone()]).expect("client");
        admin.max_attempts = 1;
        let outcome = admin.transfer_leader(target).await;
        let line = format!("validation: transfer {leader} -> {target}: {outcome:?}\n");
        std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes()).expect("stdout");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let victim = leader_of(&nodes).await.unwrap_or(1);
    nodes.remove(&victim).expect("running").stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let listener = loop {
        match TcpListener::bind(&peers[&victim]).await {
            Ok(listener) => break listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let config = config(victim, &peers, dirs[victim as usize - 1].path());
    nodes.insert(
        victim,
        start(config, files[&victim].clone(), listener).await,
    );
    for worker in workers {
        worker.await.expect("worker");
    }
    for (_, node) in nodes {
        node.stop().await;
    }
    Recorded3 {
        _dirs: dirs,
        files,
        restarts: 1,
    }
}

fn load(run: &Recorded3) -> BTreeMap<NodeId, Vec<Recorded>> {
    run.files
        .iter()
        .map(|(id, path)| (*id, read_recording(path).expect("recording reads")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_cluster_run_is_a_run_of_the_model() {
    let run = run_cluster().await;
    let recordings = load(&run);
    let validated = validate(&recordings).unwrap_or_else(|why| panic!("{why}"));
    // Written to stdout itself: the harness captures println!, and this line should show
    // even when the test passes.
    // The Peer steps by what they handled: every message kind (pre-vote's and leadership
    // transfer's included), timers, proposals, the transfer itself.
    let mut steps: BTreeMap<String, usize> = BTreeMap::new();
    for recording in recordings.values() {
        for recorded in recording {
            if let RecordedEvent::Step { input, .. } = &recorded.event {
                let kind = match input {
                    RecordedInput::Message { message, .. } => message.kind().to_string(),
                    RecordedInput::Timeout(timer) => format!("{timer:?}Timeout"),
                    RecordedInput::Propose(_) => "Propose".to_string(),
                    RecordedInput::Transfer(_) => "Transfer".to_string(),
                };
                *steps.entry(kind).or_default() += 1;
            }
        }
    }
    for kind in [
        "RequestVoteRequest",
        "RequestVoteResponse",
        "PreVoteRequest",
        "PreVoteResponse",
        "AppendEntriesRequest",
        "AppendEntriesResponse",
        "ElectionTimeout",
        "Propose",
        "Transfer",
        "TimeoutNow",
    ] {
        assert!(
            steps.contains_key(kind),
            "no recorded step handled a {kind}: {steps:?}"
        );
    }
    let line = format!(
        "validation: events={} nodes={} restarts={} steps by input: {steps:?}\n",
        validated.events, validated.nodes, validated.restarts
    );
    std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes()).expect("stdout");
    assert_eq!(validated.nodes, 3);
    assert_eq!(validated.restarts, run.restarts);
    // A graceful stop saves everything: its restart restores exactly the last recorded save.
    assert_eq!(validated.inflight_restores, 0);
    assert!(validated.events > 0);

    // The checks can fail: each tampered recording is refused, naming what is wrong.
    let node_with_sends = |recordings: &BTreeMap<NodeId, Vec<Recorded>>| {
        recordings
            .iter()
            .find_map(|(id, events)| {
                events
                    .iter()
                    .position(|e| {
                        matches!(&e.event,
                    RecordedEvent::Step { output, .. } if !output.send_after_persist.is_empty())
                    })
                    .map(|at| (*id, at))
            })
            .expect("some step sent a message")
    };

    // 1. An output the model's Peer would not produce.
    let mut tampered = recordings.clone();
    let (id, at) = node_with_sends(&tampered);
    if let RecordedEvent::Step { output, .. } = &mut tampered.get_mut(&id).unwrap()[at].event {
        output.send_after_persist.pop();
    }
    let why = validate(&tampered).expect_err("an altered output is refused");
    assert!(why.contains("the model's Peer outputs"), "{why}");

    // 2. A received message nobody sent: its last entry or term altered on the way.
    let mut tampered = recordings.clone();
    let (id, at) = tampered
        .iter()
        .find_map(|(id, events)| {
            events
                .iter()
                .position(|e| {
                    matches!(&e.event, RecordedEvent::Step {
                        input: RecordedInput::Message { message: Message::AppendEntriesRequest { entries, .. }, .. },
                        ..
                    } if !entries.is_empty())
                })
                .map(|at| (*id, at))
        })
        .expect("some node received entries");
    if let RecordedEvent::Step {
        input:
            RecordedInput::Message {
                message: Message::AppendEntriesRequest { entries, .. },
                ..
            },
        ..
    } = &mut tampered.get_mut(&id).unwrap()[at].event
    {
        // A blank entry gains a command; a command is dropped, as if the entry were blank.
        let entry = entries.last_mut().expect("an entry");
        entry.command = match entry.command {
            None => Some(rdb_server::command::Command::Delete {
                key: "altered".into(),
            }),
            Some(_) => None,
        };
    }
    let why = validate(&tampered).expect_err("a message altered on the way is refused");
    // Refused either where the altered entry was stored, or where it was received.
    assert!(
        why.contains("was sent 0 time(s)") || why.contains("storage made durable"),
        "{why}"
    );

    // 3. A restart that restored something else than what was made durable.
    let mut tampered = recordings.clone();
    let (id, at) = tampered
        .iter()
        .find_map(|(id, events)| {
            events
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(e.event, RecordedEvent::Restore { .. }))
                .nth(1)
                .map(|(at, _)| (*id, at))
        })
        .expect("a restart");
    if let RecordedEvent::Restore { durable, .. } = &mut tampered.get_mut(&id).unwrap()[at].event {
        durable.log.pop();
    }
    let why = validate(&tampered).expect_err("a lossy restart is refused");
    assert!(why.contains("restart restored"), "{why}");
}
