//! Disk full: a real `rdb-server` whose data directory is on a 2 MiB tmpfs writes until the
//! file system is full, then stops acknowledging, exits 74 naming the disk-full condition and
//! the file, and after space is freed restarts with every acknowledged write.
//! Needs root (to mount the tmpfs): without it the test prints SKIP and passes.
//! Run with `cargo test -p rdb-server --test test_disk_full -- --nocapture`.

mod common;

use common::PATIENCE;
use rdb_proto as pb;
use rdb_server::client::{classify, Effect};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// The tmpfs size: small enough to fill in a few hundred writes.
const TMPFS_SIZE: &str = "2m";
/// The filler file that takes most of the tmpfs, deleted to free space.
const FILLER_BYTES: usize = 1024 * 1024;
/// Each write's value.
const VALUE_BYTES: usize = 4096;
/// Clients writing at once, so that a batch of several is in flight when the disk fills.
const WRITERS: usize = 4;

/// Whether this process runs as root (effective uid 0), from /proc/self/status.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// A tmpfs mounted on a temporary directory, unmounted on drop (also when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "rdb-disk-full",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // Still busy (a server that would not die): detach it so nothing is left behind.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// A running `rdb-server`, killed on drop if it is still running.
struct Server {
    child: Child,
    stderr: PathBuf,
}

impl Server {
    fn start(addr: &str, data_dir: &Path, stderr: PathBuf) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_rdb-server"))
            .args(["--id", "1", "--cluster-id", "test"])
            .arg("--peers")
            .arg(format!("1={addr}"))
            .arg("--data-dir")
            .arg(data_dir)
            // Stops when this test process ends, however it ends.
            .arg("--stop-at-stdin-end")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("run rdb-server");
        Server { child, stderr }
    }

    fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for rdb-server") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rdb-server still runs: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

fn value_of(key: &str) -> Vec<u8> {
    let mut value = format!("{key}=").into_bytes();
    value.resize(VALUE_BYTES, b'.');
    value
}

/// Connects to the server once it is up and leads (a probe write commits); returns the
/// probe's key and the channel.
async fn connect_when_leading(addr: &str, probe: &str) -> Channel {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(channel) = Endpoint::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
        {
            let mut kv = pb::kv_client::KvClient::new(channel.clone());
            let put = pb::PutRequest {
                key: probe.into(),
                value: value_of(probe),
            };
            if kv.put(put).await.is_ok() {
                return channel;
            }
        }
        assert!(Instant::now() < deadline, "rdb-server at {addr} never led");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes distinct keys until the server refuses one; returns the acknowledged keys and the
/// refusal.
async fn write_until_refused(channel: Channel, writer: usize) -> (Vec<String>, tonic::Status) {
    let mut kv = pb::kv_client::KvClient::new(channel);
    let mut acknowledged = Vec::new();
    for n in 0.. {
        let key = format!("writer-{writer}-{n}");
        let put = pb::PutRequest {
            key: key.clone(),
            value: value_of(&key),
        };
        match kv.put(put).await {
            Ok(_) => acknowledged.push(key),
            Err(status) => return (acknowledged, status),
        }
    }
    unreachable!("a 2 MiB file system fills up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_acknowledging_exits_74_and_a_restart_keeps_every_write() {
    if !is_root() {
        println!("SKIP: a_full_disk_stops_acknowledging_exits_74_and_a_restart_keeps_every_write needs root (mount -t tmpfs)");
        return;
    }
    let tmpfs = Tmpfs::mount(TMPFS_SIZE);
    let logs = tempfile::tempdir().expect("log dir");
    let data_dir = tmpfs.path().join("data");
    let addr = free_addr();

    let mut server = Server::start(&addr, &data_dir, logs.path().join("first.log"));
    let channel = connect_when_leading(&addr, "probe-1").await;
    let filler = tmpfs.path().join("filler");
    std::fs::write(&filler, vec![0xA5; FILLER_BYTES]).expect("write the filler file");

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        writers.push(tokio::spawn(write_until_refused(channel.clone(), writer)));
    }
    let mut acknowledged = vec!["probe-1".to_string()];
    let mut refusals = Vec::new();
    for writer in writers {
        let (keys, status) = writer.await.expect("writer task");
        acknowledged.extend(keys);
        refusals.push(status);
    }
    println!(
        "disk full: {} writes acknowledged; refusals: {:?}",
        acknowledged.len(),
        refusals
            .iter()
            .map(|status| format!("{:?}: {}", status.code(), status.message()))
            .collect::<Vec<_>>()
    );
    assert!(acknowledged.len() > 1, "no write fit on the tmpfs");
    // The writes caught in the failed save learn the cause; their outcome is unknown (they
    // may be on disk). Later ones are told the node is stopping (outcome unknown, or not
    // proposed), or lose the connection as the process exits, which the transport reports
    // under several codes (`CANCELLED`, `INTERNAL` for a GOAWAY, ...): such a status carries the
    // transport's error as its source.
    assert!(
        refusals.iter().any(|status| status.code() == Code::Unknown
            && status.message().contains("storage failed (disk full)")
            && status.message().contains("No space left on device")),
        "no client was told about the full disk: {refusals:?}"
    );
    for status in &refusals {
        let from_transport = std::error::Error::source(status)
            .is_some_and(|source| source.is::<tonic::transport::Error>());
        let from_the_server = match classify(status) {
            Effect::NoEffect(_) => true,
            Effect::Unknown => {
                status.code() == Code::Unknown && status.message().ends_with("outcome is unknown")
            }
            Effect::Rejected | Effect::Redirect(_) => false,
        };
        assert!(
            from_transport || from_the_server,
            "unexpected refusal {status:?}"
        );
    }

    let status = server.wait_for_exit();
    let stderr = server.stderr();
    assert_eq!(status.code(), Some(74), "{stderr}");
    let cause = format!(
        "rdb-server: node failed: storage failed (disk full): {}/",
        data_dir.display()
    );
    assert!(stderr.contains(&cause), "no `{cause}` in:\n{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    drop(server);

    // Free the space, restart: every acknowledged write is there, and writes resume.
    std::fs::remove_file(&filler).expect("remove the filler file");
    let mut server = Server::start(&addr, &data_dir, logs.path().join("second.log"));
    let channel = connect_when_leading(&addr, "probe-2").await;
    let mut kv = pb::kv_client::KvClient::new(channel);
    for key in &acknowledged {
        let read = kv
            .get(pb::GetRequest { key: key.clone() })
            .await
            .expect("get")
            .into_inner();
        assert!(read.found, "acknowledged key {key} is lost");
        assert_eq!(read.value, value_of(key), "key {key}");
    }
    let stopped = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(stopped.success());
    let status = server.wait_for_exit();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
}
