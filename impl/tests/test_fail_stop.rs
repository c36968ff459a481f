//! Fail-stop: a node whose storage fails stops serving and says why, in process through
//! `Node::failed`, and as a process by exiting non-zero with the cause on stderr.
//! Run with `cargo test -p rdb-server --test test_fail_stop`.

mod common;

use common::{single_node_config, PATIENCE};
use model::{Message, NodeId, Timer};
use rdb_server::command::Command;
use rdb_server::driver::{Outbound, ProposeError};
use rdb_server::logging;
use rdb_server::node::{Node, NodeFailure, StartOptions};
use std::io::ErrorKind;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Messages of a node alone in its cluster go nowhere.
struct Nowhere;

impl Outbound for Nowhere {
    fn send(&mut self, _to: NodeId, _message: Message<Command>) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_ends_the_driver_and_node_failed_names_the_cause() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = single_node_config(addr, &data_dir);
    let options = StartOptions {
        listener: Some(listener),
        ..StartOptions::default()
    };
    let node = Node::start_controlled(config, logging::for_tests(), options, Nowhere)
        .await
        .expect("node starts");
    // The election's term and vote are saved by writing `state.tmp` in the data directory:
    // with the directory gone, that save fails.
    std::fs::remove_dir_all(&data_dir).expect("remove the data directory");
    node.fire_timer(Timer::Election)
        .await
        .expect("the election timer is armed");
    let failure = tokio::time::timeout(PATIENCE, node.failed())
        .await
        .expect("the node fails within the patience");
    let NodeFailure::Storage(error) = &failure else {
        panic!("expected a storage failure, got {failure}");
    };
    let rdb_server::storage::StorageError::Io {
        path,
        operation,
        source,
    } = &**error
    else {
        panic!("expected an I/O error, got {error}");
    };
    assert_eq!(path, &data_dir.join("state.tmp"));
    assert_eq!(source.kind(), ErrorKind::NotFound, "{failure}");
    assert!(
        failure.to_string().starts_with("storage failed: ")
            && failure.to_string().contains(operation),
        "{failure}"
    );
    assert_eq!(failure.exit_code(), 74);
    // The driver is gone: nothing more is proposed, and the node says so.
    assert_eq!(
        node.propose(Command::Put {
            key: "after".into(),
            value: b"failure".to_vec(),
        })
        .await,
        Err(ProposeError::Stopped)
    );
    assert!(node.inspect(false).await.is_none());
    node.stop().await;
}

/// A free loopback address (bound, then released for the server to take).
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

#[test]
fn the_binary_exits_74_with_the_cause_when_storage_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let stderr_path = dir.path().join("stderr.log");
    // Nodes 2 and 3 never run: without pre-vote, node 1 campaigns again at every election
    // timeout, and each campaign saves a new term and vote. (With pre-vote, the default, a
    // node alone never starts an election, and so never saves.)
    let peers = format!("1={},2={},3={}", free_addr(), free_addr(), free_addr());
    let mut server = Process::new(env!("CARGO_BIN_EXE_rdb-server"))
        .args([
            "--id",
            "1",
            "--cluster-id",
            "test",
            "--peers",
            &peers,
            "--no-pre-vote",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        // Stops when this test process ends, however it ends.
        .arg("--stop-at-stdin-end")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("run rdb-server");
    let deadline = Instant::now() + PATIENCE;
    // Serving: storage is open (removing the directory earlier would fail the start instead).
    while !std::fs::read_to_string(&stderr_path)
        .unwrap_or_default()
        .contains("node serving")
    {
        assert!(Instant::now() < deadline, "the node never served");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_dir_all(&data_dir).expect("remove the data directory");
    let status = loop {
        if let Some(status) = server.try_wait().expect("wait for rdb-server") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = server.kill();
            let _ = server.wait();
            panic!("rdb-server did not exit after its data directory was removed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&stderr_path).expect("read stderr");
    assert_eq!(status.code(), Some(74), "{stderr}");
    let cause = format!(
        "rdb-server: node failed: storage failed: {}: ",
        data_dir.join("state.tmp").display()
    );
    assert!(stderr.contains(&cause), "no `{cause}` in:\n{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    // The critical log line carries the cause too, for log collectors.
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("CRIT") && line.contains("node failed")),
        "{stderr}"
    );
}
