//! A cluster of real `rdb-server` processes for fault tests: SIGKILL and restart, and, when the
//! test runs as root, network partitions.
//!
//! Partitions use one network namespace per node, joined by veth links to a bridge in the
//! test's own namespace (so the test's clients reach every node). Cutting node A off from
//! node B adds a blackhole route to B's address inside A's namespace and the reverse inside
//! B's: packets between them are dropped in both directions while clients still reach both,
//! so a client can still talk to an isolated leader, as a client on the wrong side of a real
//! partition would. No iptables is needed, only `ip` from iproute2.
//!
//! With `RDB_TLS=1` in the environment the nodes run with mutual TLS, their certificates made
//! by `scripts/make-test-ca.sh` (which needs openssl) in the cluster's directory; clients take
//! theirs from [`ProcessCluster::client_tls`].

use anyhow::{anyhow, bail, Context};
use rdb_server::tls::{TlsCredentials, TlsFiles};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;

/// The environment variable that, set to `1`, runs a [`ProcessCluster`] over mutual TLS.
pub const TLS_ENV: &str = "RDB_TLS";

/// The workspace's root directory.
fn workspace_root() -> anyhow::Result<&'static Path> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests package lives inside the workspace")
}

/// Makes a test CA with certificates for nodes `1..=size` and a client in `dir`, with
/// `scripts/make-test-ca.sh`.
fn make_test_ca(dir: &Path, size: usize) -> anyhow::Result<()> {
    let script = workspace_root()?.join("scripts/make-test-ca.sh");
    let output = Command::new(&script)
        .arg(dir)
        .args((1..=size).map(|node| node.to_string()))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The release binaries of package `rdb-server`.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The node, `rdb-server`.
    pub server: PathBuf,
    /// The command-line client, `rdb`.
    pub client: PathBuf,
}

/// Builds `rdb-server` and `rdb` in release mode (a no-op when they are up to date) and returns
/// where cargo put them. Only package `rdb-server` is built: building the whole workspace
/// would turn on the model's checker feature in the server's dependencies.
pub fn build_release_binaries() -> anyhow::Result<Binaries> {
    let workspace = workspace_root()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("cluster: building the release binaries: cargo build --release -p rdb-server");
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "-p",
            "rdb-server",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build --release -p rdb-server")?;
    if !output.status.success() {
        bail!(
            "cargo build --release -p rdb-server failed: {}",
            output.status
        );
    }
    let mut server = None;
    let mut client = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        match message["target"]["name"].as_str() {
            Some("rdb-server") => server = Some(PathBuf::from(executable)),
            Some("rdb") => client = Some(PathBuf::from(executable)),
            _ => {}
        }
    }
    Ok(Binaries {
        server: server.context("cargo reported no rdb-server executable")?,
        client: client.context("cargo reported no rdb executable")?,
    })
}

/// Runs `ip` with `args`; an error carries its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// The tokio runtime the process tests drive their clients on: two workers, as many as the
/// cores CI has.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The status of the node at `addr`, or `None` if it does not answer.
pub async fn node_status(addr: &str) -> Option<rdb_proto::NodeStatus> {
    rdb_server::client::Client::status_of(addr).await.ok()
}

/// Waits until every node at `addrs` answers and follows one leader in one term later than
/// `after_term`; returns that leader's id and term. Panics after `patience`.
pub async fn wait_for_leader(
    addrs: &[&String],
    after_term: u64,
    patience: std::time::Duration,
) -> (u64, u64) {
    let start = std::time::Instant::now();
    loop {
        let mut seen = Vec::new();
        for addr in addrs {
            if let Some(s) = node_status(addr).await {
                seen.push((s.leader_id, s.term));
            }
        }
        let agreed = seen.len() == addrs.len()
            && seen[0].0 != 0
            && seen[0].1 > after_term
            && seen.iter().all(|s| *s == seen[0]);
        if agreed {
            return seen[0];
        }
        assert!(
            start.elapsed() < patience,
            "no leader of a term after {after_term} agreed on within {patience:?}: \
             (leader, term) seen {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Builds the release binaries, starts `size` unrecorded `rdb-server` processes and waits for
/// them to agree on a first leader. Returns the cluster, the clients' runtime, the nodes'
/// addresses and the leader's id and term.
pub fn start_and_elect(
    size: usize,
    patience: std::time::Duration,
) -> (
    ProcessCluster,
    tokio::runtime::Runtime,
    Vec<String>,
    (u64, u64),
) {
    let binaries = build_release_binaries().expect("building rdb-server");
    let runtime = client_runtime();
    let cluster = ProcessCluster::start_unrecorded(binaries, size).expect("starting the cluster");
    let addrs = cluster.addrs().to_vec();
    let all: Vec<&String> = addrs.iter().collect();
    let elected = runtime.block_on(wait_for_leader(&all, 0, patience));
    (cluster, runtime, addrs, elected)
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// The name prefix of everything [`Namespaces`] creates, followed by the test's pid.
const NAME_PREFIX: &str = "rdbt";

/// One network namespace per node, each with a veth link to a bridge in the caller's
/// namespace. Dropping it deletes them all.
pub struct Namespaces {
    tag: String,
    subnet: String,
    size: usize,
    /// Blackholed directed pairs (from node, to node), 1-based.
    blocked: Vec<(usize, usize)>,
}

impl Namespaces {
    /// Creates namespaces for nodes `1..=size`. Fails (leaving nothing behind) without root or
    /// without `ip`.
    pub fn create(size: usize) -> anyhow::Result<Namespaces> {
        remove_stale_namespaces();
        let pid = std::process::id();
        let namespaces = Namespaces {
            tag: format!("{NAME_PREFIX}{pid}"),
            // A /24 per test process, so that runs in parallel do not collide.
            subnet: format!("10.210.{}", pid % 250),
            size,
            blocked: Vec::new(),
        };
        namespaces.set_up()?;
        Ok(namespaces)
    }

    fn bridge(&self) -> String {
        format!("{}b", self.tag)
    }

    fn veth(&self, node: usize) -> String {
        format!("{}v{node}", self.tag)
    }

    /// The namespace node `node` runs in.
    pub fn namespace(&self, node: usize) -> String {
        format!("{}n{node}", self.tag)
    }

    /// The IP address of node `node`.
    pub fn ip(&self, node: usize) -> String {
        format!("{}.{node}", self.subnet)
    }

    fn set_up(&self) -> anyhow::Result<()> {
        let bridge = self.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", self.subnet),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for node in 1..=self.size {
            let namespace = self.namespace(node);
            let veth = self.veth(node);
            ip(&["netns", "add", &namespace])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge])?;
            ip(&["link", "set", &veth, "up"])?;
            let address = format!("{}/24", self.ip(node));
            ip(&["-n", &namespace, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", &namespace, "link", "set", "eth0", "up"])?;
            ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Drops every packet from `from` to `to` (both 1-based), in `from`'s namespace.
    fn block(&mut self, from: usize, to: usize) -> anyhow::Result<()> {
        if self.blocked.contains(&(from, to)) {
            return Ok(());
        }
        let route = format!("{}/32", self.ip(to));
        ip(&[
            "-n",
            &self.namespace(from),
            "route",
            "add",
            "blackhole",
            &route,
        ])?;
        self.blocked.push((from, to));
        Ok(())
    }

    /// Cuts `node` off from every other node, in both directions. Clients still reach it.
    pub fn isolate(&mut self, node: usize) -> anyhow::Result<()> {
        for other in (1..=self.size).filter(|&other| other != node) {
            self.block(node, other)?;
            self.block(other, node)?;
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        for (from, to) in std::mem::take(&mut self.blocked) {
            let route = format!("{}/32", self.ip(to));
            ip(&[
                "-n",
                &self.namespace(from),
                "route",
                "del",
                "blackhole",
                &route,
            ])?;
        }
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        remove_tagged(&self.tag, self.size);
    }
}

/// Deletes the bridge, veth links and namespaces of `tag`, ignoring what does not exist.
fn remove_tagged(tag: &str, size: usize) {
    for node in 1..=size {
        let _ = ip(&["link", "del", &format!("{tag}v{node}")]);
        let _ = ip(&["netns", "del", &format!("{tag}n{node}")]);
    }
    let _ = ip(&["link", "del", &format!("{tag}b")]);
}

/// Deletes namespaces left by earlier test processes that died before cleaning up.
fn remove_stale_namespaces() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some((pid, _node)) = rest.split_once('n') else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tagged(&format!("{NAME_PREFIX}{pid}"), 9);
        }
    }
}

/// How the nodes are wired.
pub enum Wiring {
    /// Every node on 127.0.0.1, on its own port. Only kills and restarts.
    Loopback,
    /// Every node in its own network namespace: partitions too.
    Namespaces(Namespaces),
}

/// `size` rdb-server processes with data in a temporary directory. Every node records its
/// Peer calls and saves (`--record`) to [`ProcessCluster::recording_path`], and a restarted
/// node appends to the same file. Dropping it kills them (and removes the namespaces); when
/// the thread is panicking, the directory with the data, the logs and the recordings is kept
/// and its path printed.
pub struct ProcessCluster {
    binaries: Binaries,
    dir: Option<TempDir>,
    addrs: Vec<String>,
    wiring: Wiring,
    children: Vec<Option<Child>>,
    /// Processes started so far, first starts included.
    starts: usize,
    /// Extra flags for every node.
    pub extra_args: Vec<String>,
    /// With TLS: the directory of the test CA and certificates.
    tls_dir: Option<PathBuf>,
    /// Whether nodes record their Peer calls (`--record`).
    record: bool,
}

impl ProcessCluster {
    /// Starts nodes `1..=size`. With `partitions`, tries network namespaces and falls back to
    /// loopback (with a note on stderr) when they cannot be made.
    pub fn start(
        binaries: Binaries,
        size: usize,
        partitions: bool,
    ) -> anyhow::Result<ProcessCluster> {
        ProcessCluster::start_with(binaries, size, partitions, true)
    }

    /// As [`ProcessCluster::start`] on loopback, without recordings: for tests that write
    /// more than a recording should hold (a recording spells every command out).
    pub fn start_unrecorded(binaries: Binaries, size: usize) -> anyhow::Result<ProcessCluster> {
        ProcessCluster::start_with(binaries, size, false, false)
    }

    /// As [`ProcessCluster::start`], unrecorded, with `flags` added to every node's command
    /// line from its first start on.
    pub fn start_with_flags(
        binaries: Binaries,
        size: usize,
        partitions: bool,
        flags: &[&str],
    ) -> anyhow::Result<ProcessCluster> {
        ProcessCluster::start_configured(binaries, size, partitions, false, flags)
    }

    fn start_with(
        binaries: Binaries,
        size: usize,
        partitions: bool,
        record: bool,
    ) -> anyhow::Result<ProcessCluster> {
        ProcessCluster::start_configured(binaries, size, partitions, record, &[])
    }

    fn start_configured(
        binaries: Binaries,
        size: usize,
        partitions: bool,
        record: bool,
        flags: &[&str],
    ) -> anyhow::Result<ProcessCluster> {
        let wiring = if partitions {
            match Namespaces::create(size) {
                Ok(namespaces) => Wiring::Namespaces(namespaces),
                Err(error) => {
                    eprintln!("cluster: no partitions, network namespaces unavailable: {error:#}");
                    Wiring::Loopback
                }
            }
        } else {
            Wiring::Loopback
        };
        let addrs = match &wiring {
            Wiring::Namespaces(namespaces) => (1..=size)
                .map(|node| format!("{}:7001", namespaces.ip(node)))
                .collect(),
            Wiring::Loopback => free_loopback_addrs(size)?,
        };
        let dir = tempfile::Builder::new()
            .prefix("rdb-cluster-")
            .tempdir()
            .context("creating the cluster's temporary directory")?;
        let tls_dir = if std::env::var(TLS_ENV).is_ok_and(|value| value == "1") {
            let tls_dir = dir.path().join("tls");
            make_test_ca(&tls_dir, size)?;
            Some(tls_dir)
        } else {
            None
        };
        let mut cluster = ProcessCluster {
            binaries,
            dir: Some(dir),
            addrs,
            wiring,
            children: (0..size).map(|_| None).collect(),
            starts: 0,
            extra_args: flags.iter().map(|flag| flag.to_string()).collect(),
            tls_dir,
            record,
        };
        for node in 1..=size {
            cluster.restart(node)?;
        }
        Ok(cluster)
    }

    /// Whether [`ProcessCluster::isolate`] works.
    pub fn can_partition(&self) -> bool {
        matches!(self.wiring, Wiring::Namespaces(_))
    }

    /// A client's TLS credentials when the cluster runs with TLS (see [`TLS_ENV`]).
    pub fn client_tls(&self) -> anyhow::Result<Option<TlsCredentials>> {
        let Some(tls_dir) = &self.tls_dir else {
            return Ok(None);
        };
        let files = TlsFiles {
            cert: tls_dir.join("client.pem"),
            key: tls_dir.join("client-key.pem"),
            ca: tls_dir.join("ca.pem"),
        };
        Ok(Some(files.load()?))
    }

    /// The client addresses of nodes 1, 2, …
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// How many nodes the cluster has.
    pub fn size(&self) -> usize {
        self.addrs.len()
    }

    /// The temporary directory holding data and logs.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("the directory lives until drop")
            .path()
    }

    /// Node `node`'s log file (stderr of every run, appended).
    pub fn log_path(&self, node: usize) -> PathBuf {
        self.dir().join(format!("node-{node}.log"))
    }

    /// Node `node`'s recording (`rdb-server --record`; every run appends).
    pub fn recording_path(&self, node: usize) -> PathBuf {
        self.dir().join(format!("node-{node}.record.jsonl"))
    }

    /// How many times a node was started again after its first start.
    pub fn restarts(&self) -> usize {
        self.starts.saturating_sub(self.size())
    }

    /// Whether node `node` runs.
    pub fn is_running(&self, node: usize) -> bool {
        self.children[node - 1].is_some()
    }

    /// Starts node `node` from its files (the first start creates them).
    pub fn restart(&mut self, node: usize) -> anyhow::Result<()> {
        if self.is_running(node) {
            bail!("node {node} is already running");
        }
        let peers: Vec<String> = self
            .addrs
            .iter()
            .enumerate()
            .map(|(index, addr)| format!("{}={addr}", index + 1))
            .collect();
        let data_dir = self.dir().join(format!("node-{node}"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(node))
            .context("opening the node's log")?;
        let mut command = match &self.wiring {
            Wiring::Namespaces(namespaces) => {
                // `ip netns exec` execs the server: the child's pid is the server's.
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", &namespaces.namespace(node)])
                    .arg(&self.binaries.server);
                command
            }
            Wiring::Loopback => Command::new(&self.binaries.server),
        };
        command
            .arg("--id")
            .arg(node.to_string())
            .arg("--peers")
            .arg(peers.join(","))
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--cluster-id")
            .arg("cluster-test")
            .args(
                self.record
                    .then(|| ["--record".into(), self.recording_path(node)])
                    .into_iter()
                    .flatten(),
            )
            .args(&self.extra_args)
            .args(self.tls_args(node))
            // The server stops when the test process ends, however it ends (the kernel
            // closes the pipe held in `children`).
            .arg("--stop-at-stdin-end")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let child = command
            .spawn()
            .with_context(|| format!("starting node {node}"))?;
        self.children[node - 1] = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// The TLS flags of node `node`; none without TLS.
    fn tls_args(&self, node: usize) -> Vec<PathBuf> {
        let Some(tls_dir) = &self.tls_dir else {
            return Vec::new();
        };
        vec![
            "--tls-cert".into(),
            tls_dir.join(format!("node-{node}.pem")),
            "--tls-key".into(),
            tls_dir.join(format!("node-{node}-key.pem")),
            "--tls-ca".into(),
            tls_dir.join("ca.pem"),
        ]
    }

    /// Kills node `node` with SIGKILL and reaps it.
    pub fn kill(&mut self, node: usize) -> anyhow::Result<()> {
        let mut child = self.children[node - 1]
            .take()
            .ok_or_else(|| anyhow!("node {node} is not running"))?;
        // std's Child::kill sends SIGKILL on Unix.
        child.kill().context("SIGKILL")?;
        child.wait().context("reaping the killed node")?;
        Ok(())
    }

    /// Kills every running node with SIGKILL and reaps it.
    pub fn kill_all(&mut self) -> anyhow::Result<()> {
        for node in 1..=self.size() {
            if self.is_running(node) {
                self.kill(node)?;
            }
        }
        Ok(())
    }

    /// Whether a running node exited by itself (a crash): its exit status, if so.
    pub fn exited(&mut self, node: usize) -> Option<std::process::ExitStatus> {
        self.children[node - 1]
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Cuts node `node` off from the other nodes (both directions); clients still reach it.
    pub fn isolate(&mut self, node: usize) -> anyhow::Result<()> {
        match &mut self.wiring {
            Wiring::Namespaces(namespaces) => namespaces.isolate(node),
            Wiring::Loopback => bail!("partitions need network namespaces (root)"),
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        match &mut self.wiring {
            Wiring::Namespaces(namespaces) => namespaces.heal(),
            Wiring::Loopback => Ok(()),
        }
    }

    /// The last `lines` lines of node `node`'s log.
    pub fn log_tail(&self, node: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(node)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Keeps the temporary directory after drop; returns its path.
    pub fn keep_dir(&mut self) -> PathBuf {
        let dir = self.dir.take().expect("the directory lives until drop");
        dir.keep()
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for node in 1..=self.children.len() {
            if self.is_running(node) {
                let _ = self.kill(node);
            }
        }
        if std::thread::panicking() && self.dir.is_some() {
            let kept = self.keep_dir();
            eprintln!("cluster: data and logs kept in {}", kept.display());
        }
    }
}

/// `count` addresses on 127.0.0.1 with ports the kernel just handed out (and took back).
fn free_loopback_addrs(count: usize) -> anyhow::Result<Vec<String>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free ports")?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.to_string()))
        .collect()
}

/// Writes `text` to `path` (for reports next to the logs).
pub fn write_report(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
