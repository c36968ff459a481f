//! A data directory belongs to one process, one node and one cluster: real `rdb-server`
//! processes started on a directory another holds, or with another cluster id or member list,
//! exit non-zero with an error that names the problem, and leave the data as it was.

use rdb_server::client::Client;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = env!("CARGO_BIN_EXE_rdb-server");

/// A server process, killed when dropped (a failing test leaves nothing running).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn command(dir: &Path, cluster_id: &str, peers: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(SERVER);
    command
        .args(["--id", "1", "--peers", peers, "--cluster-id", cluster_id])
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--election-timeout-ms-min",
            "150",
            "--election-timeout-ms-max",
            "300",
        ])
        .args(extra)
        // Stops when this test process ends, however it ends.
        .arg("--stop-at-stdin-end")
        .stdin(Stdio::piped());
    command
}

/// Starts a server and waits until it has committed a write of `key`.
async fn start_and_put(mut command: Command, addr: &str, key: &str) -> Server {
    let server = Server(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rdb-server"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut client) = Client::new(vec![addr.to_string()]) {
            if client.put(key, b"v".to_vec()).await.is_ok() {
                return server;
            }
        }
        assert!(Instant::now() < deadline, "the server never took a write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a server that must refuse to start; returns its exit and its stderr.
fn refused(mut command: Command) -> (Output, String) {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rdb-server");
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "the server started: {:?}\n{stderr}",
        output.status
    );
    (output, stderr)
}

async fn value(addr: &str, key: &str) -> Option<Vec<u8>> {
    let mut client = Client::new(vec![addr.to_string()]).expect("client");
    client.get(key).await.expect("get")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_serves_one_process_of_one_node_of_one_cluster() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node-1");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let peers = format!("1={addr}");
    let mut running = start_and_put(command(&dir, "a", &peers, &[]), &addr, "k1").await;
    let holder = running.0.id();
    let segment = dir.join("log-00000000000000000001.seg");
    let before = std::fs::read(&segment).expect("read the segment");

    // A second copy on another port: refused by the lock, naming the holder.
    let other = format!("127.0.0.1:{}", free_port());
    let (_, stderr) = refused(command(&dir, "a", &peers, &["--listen", &other]));
    assert!(
        stderr.contains("is in use by process")
            && stderr.contains(&holder.to_string())
            && stderr.contains("lock"),
        "{stderr}"
    );
    // A second copy with the same flags: refused on the port, before storage is touched.
    let (_, stderr) = refused(command(&dir, "a", &peers, &[]));
    assert!(stderr.contains(&format!("listening on {addr}")), "{stderr}");
    assert_eq!(std::fs::read(&segment).expect("read"), before);
    assert_eq!(value(&addr, "k1").await, Some(b"v".to_vec()));

    // Stopped, the directory refuses another cluster, and another member list.
    let _ = running.0.kill();
    let _ = running.0.wait();
    // (The read went through the log.)
    let before = std::fs::read(&segment).expect("read the segment");
    let (_, stderr) = refused(command(&dir, "b", &peers, &[]));
    assert!(
        stderr.contains("belongs to cluster `a`, not to cluster `b`"),
        "{stderr}"
    );
    let grown = format!("{peers},2=127.0.0.1:{}", free_port());
    let (_, stderr) = refused(command(&dir, "a", &grown, &[]));
    assert!(
        stderr.contains("[1, 2] differ from the members [1]")
            && stderr.contains("--replace-members"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&segment).expect("read"), before);

    // The same node again: its data is there.
    let running = start_and_put(command(&dir, "a", &peers, &[]), &addr, "k2").await;
    assert_eq!(value(&addr, "k1").await, Some(b"v".to_vec()));
    drop(running);

    // The explicit offline step replaces the stored list; later starts use the new one.
    let moved = format!("1={addr},3=127.0.0.1:{}", free_port());
    let (_, stderr) = refused(command(&dir, "a", &moved, &[]));
    assert!(stderr.contains("differ from the members"), "{stderr}");
    let child = command(&dir, "a", &moved, &["--replace-members"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut replaced = Server(child);
    // With two members and one running, it cannot commit; wait until it serves status.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Client::status_of(&addr).await.is_err() {
        assert!(Instant::now() < deadline, "the server never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = replaced.0.kill();
    let _ = replaced.0.wait();
    let (_, stderr) = refused(command(&dir, "a", &peers, &[]));
    assert!(
        stderr.contains("[1] differ from the members [1, 3]"),
        "{stderr}"
    );
}

/// The tests' servers cannot outlive them: a server started with `--stop-at-stdin-end` stops
/// when the process holding its stdin pipe is killed (here a `sleep`, standing in for a test
/// process killed mid-run), and exits 0 as on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stops_when_the_holder_of_its_stdin_is_killed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut holder = Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(writer)
        .spawn()
        .expect("spawn sleep");
    // `writer` moved into the holder; this process keeps no copy of the write end.
    let mut command = command(&tmp.path().join("node-1"), "a", &format!("1={addr}"), &[]);
    command.stdin(reader);
    let mut server = start_and_put(command, &addr, "k").await;
    assert!(server.0.try_wait().expect("try_wait").is_none());
    holder.kill().expect("kill the holder");
    holder.wait().expect("reap the holder");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the server outlived its stdin");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}
