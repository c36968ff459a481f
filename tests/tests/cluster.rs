//! Real `rdb-server` processes under faults, checked for linearizability.
//!
//! Three nodes run as separate processes (release build of package `rdb-server`). Clients put
//! unique values and get them on a few register keys, and put write-once "ledger" keys, while
//! a nemesis kills nodes with SIGKILL and restarts them from their files, moves leadership
//! to a follower with `TransferLeader` (§3.10) and, when the test runs as root, cuts nodes
//! off with network namespaces (see `tests::cluster`). At least one transfer must move
//! leadership, under the clients' load. Every
//! operation is recorded with its call and return times on one clock and its outcome: ok,
//! failed (it certainly did not take effect) or unknown (it may have). After the faults, one
//! last get of every key is added to the history; then each key's history must be
//! linearizable (`tests::linearizability`), and no acknowledged put may be lost: a ledger key
//! whose put was acknowledged must exist, and a register's last value must not come from a put
//! that an acknowledged put followed in real time.
//!
//! Every node records its Peer calls and saves (`rdb-server --record`, appended across
//! restarts). After the history checks, every node is killed and the recordings are replayed
//! through the model's Peer and checked (`tests::validation`): runs that ended in a SIGKILL,
//! torn last lines and saves in flight included.
//!
//! As root the nodes run in network namespaces and the nemesis partitions them too; set
//! `RDB_CLUSTER_NO_PARTITIONS=1` to keep them on 127.0.0.1 with kills only, as without root.
//! Set `RDB_TLS=1` to run nodes and clients over mutual TLS (needs openssl for the test CA).
//!
//! The clients do not use `rdb_server::client::Client` as it is, because it retries a write
//! after an error whose outcome is unknown, and a write retried that way may take effect twice
//! at two instants, which no single linearization point explains. Here a put stops at its
//! first unknown outcome; it is retried only after answers that say it did not take effect.

use rdb_proto as pb;
use rdb_server::client::{classify, Client, Effect};
use rdb_server::tls::{self, TlsCredentials};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tests::cluster::{
    build_release_binaries, client_runtime, is_root, write_report, ProcessCluster,
};
use tests::linearizability::{
    check_history, lost_puts, render_events, Call, Completion, Operation, Value, Verdict,
};
use tests::validation::{read_recording_file, validate_recordings, Validated};
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

/// The register keys: few, so that operations on one key overlap often.
const REGISTER_KEYS: [&str; 3] = ["r0", "r1", "r2"];
/// Concurrent clients, each a sequential process.
const CLIENTS: usize = 5;
/// Percentage of operations that put a fresh ledger key.
const LEDGER_PERCENT: u8 = 20;
/// How long the nemesis injects faults (the issue asks for at least 30 seconds).
const FAULT_PHASE: Duration = Duration::from_secs(32);
/// How long a client waits for one gRPC call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client keeps retrying one operation after answers that it did not take effect.
const OPERATION_PATIENCE: Duration = Duration::from_secs(6);
/// How long the cluster may take to recover after the faults.
const RECOVERY_PATIENCE: Duration = Duration::from_secs(60);

/// Nanoseconds since the start of the test: the one clock of the history.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// What a failed gRPC call says about the operation.
enum Refusal {
    /// Not executed; the leader is at this index of the address list.
    Redirect(usize),
    /// Certainly not executed: no connection, no leader known, or the entry was overwritten.
    NotExecuted,
    /// It may have been executed.
    Indeterminate,
}

/// Counts of failed attempts by kind, and the first few messages of each.
#[derive(Default)]
struct AttemptStats {
    redirects: AtomicU64,
    not_executed: AtomicU64,
    indeterminate: AtomicU64,
    samples: Mutex<BTreeMap<String, u64>>,
}

impl AttemptStats {
    fn note(&self, refusal: &Refusal, status: &Status) {
        let counter = match refusal {
            Refusal::Redirect(_) => &self.redirects,
            Refusal::NotExecuted => &self.not_executed,
            Refusal::Indeterminate => &self.indeterminate,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let kind = match refusal {
            Refusal::Redirect(_) => "redirect",
            Refusal::NotExecuted => "not executed",
            Refusal::Indeterminate => "indeterminate",
        };
        let mut samples = self.samples.lock().expect("stats lock");
        *samples
            .entry(format!("{kind}: {:?} {}", status.code(), status.message()))
            .or_default() += 1;
    }
}

/// The clients' TLS credentials, set once the cluster has started; `None` without TLS.
static CLIENT_TLS: OnceLock<Option<TlsCredentials>> = OnceLock::new();

fn client_tls() -> Option<&'static TlsCredentials> {
    CLIENT_TLS.get().and_then(Option::as_ref)
}

/// A client of the cluster with one channel per node, that knows which failures are
/// certain.
struct KvClients {
    addrs: Vec<String>,
    channels: Vec<pb::kv_client::KvClient<Channel>>,
    leader: usize,
    stats: Arc<AttemptStats>,
}

impl KvClients {
    fn new(addrs: &[String], stats: Arc<AttemptStats>) -> KvClients {
        let channels = addrs
            .iter()
            .map(|addr| {
                let endpoint = Endpoint::from_shared(tls::server_uri(addr, client_tls().is_some()))
                    .expect("a valid URI")
                    .connect_timeout(Duration::from_millis(500))
                    .timeout(REQUEST_TIMEOUT)
                    .tcp_nodelay(true);
                let endpoint = match client_tls() {
                    Some(credentials) => endpoint
                        .tls_config(credentials.client_config())
                        .expect("a valid TLS configuration"),
                    None => endpoint,
                };
                pb::kv_client::KvClient::new(endpoint.connect_lazy())
            })
            .collect();
        KvClients {
            addrs: addrs.to_vec(),
            channels,
            leader: fastrand::usize(..addrs.len()),
            stats,
        }
    }

    /// The shipped client's rule ([`rdb_server::client::classify`]), so that the test judges
    /// outcomes exactly as users' clients do.
    fn classify(&self, status: &Status) -> Refusal {
        match classify(status) {
            Effect::Redirect(addr) => addr
                .and_then(|addr| self.addrs.iter().position(|known| *known == addr))
                .map_or(Refusal::NotExecuted, Refusal::Redirect),
            Effect::NoEffect(_) => Refusal::NotExecuted,
            Effect::Rejected => {
                panic!("the test sent a malformed request: {}", status.message())
            }
            Effect::Unknown => Refusal::Indeterminate,
        }
    }

    async fn attempt(&mut self, key: &str, call: Call) -> Result<Completion, Status> {
        let client = &mut self.channels[self.leader];
        match call {
            Call::Put(value) => {
                let request = pb::PutRequest {
                    key: key.to_owned(),
                    value: value.to_string().into_bytes(),
                };
                client.put(request).await.map(|_| Completion::PutOk)
            }
            Call::Get => {
                let request = pb::GetRequest {
                    key: key.to_owned(),
                };
                let response = client.get(request).await?.into_inner();
                Ok(Completion::GetOk(
                    response.found.then(|| parse_value(&response.value)),
                ))
            }
        }
    }

    /// Runs one operation to its completion. A put ends at its first indeterminate answer
    /// (retrying could apply it twice); a get, which changes nothing, is retried.
    async fn run(&mut self, key: &str, call: Call, patience: Duration) -> Completion {
        let started = Instant::now();
        loop {
            let status = match self.attempt(key, call).await {
                Ok(completion) => return completion,
                Err(status) => status,
            };
            let refusal = self.classify(&status);
            self.stats.note(&refusal, &status);
            match refusal {
                Refusal::Redirect(leader) => {
                    self.leader = leader;
                    continue;
                }
                Refusal::Indeterminate if matches!(call, Call::Put(_)) => {
                    self.leader = (self.leader + 1) % self.addrs.len();
                    return Completion::Unknown;
                }
                Refusal::NotExecuted | Refusal::Indeterminate => {
                    self.leader = (self.leader + 1) % self.addrs.len();
                }
            }
            if started.elapsed() > patience {
                return Completion::Failed;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Values are decimal numbers; anything else read back is a value no put wrote.
fn parse_value(bytes: &[u8]) -> Value {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(Value::MAX)
}

/// One client: random operations until `stop`.
async fn client_loop(
    client: usize,
    addrs: Vec<String>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    next_value: Arc<AtomicU64>,
    stats: Arc<AttemptStats>,
) -> Vec<Operation> {
    let mut kv = KvClients::new(&addrs, stats);
    let mut history = Vec::new();
    let mut ledger_keys = 0;
    while !stop.load(Ordering::Relaxed) {
        let key;
        let call;
        if fastrand::u8(..100) < LEDGER_PERCENT {
            key = format!("ledger-{client}-{ledger_keys}");
            ledger_keys += 1;
            call = Call::Put(next_value.fetch_add(1, Ordering::Relaxed));
        } else {
            key = REGISTER_KEYS[fastrand::usize(..REGISTER_KEYS.len())].to_owned();
            call = if fastrand::bool() {
                Call::Put(next_value.fetch_add(1, Ordering::Relaxed))
            } else {
                Call::Get
            };
        }
        let invoked_ns = clock.now_ns();
        let completion = kv.run(&key, call, OPERATION_PATIENCE).await;
        history.push(Operation {
            client,
            key,
            call,
            invoked_ns,
            completed_ns: clock.now_ns(),
            completion,
        });
    }
    history
}

/// The statuses of every node that answers.
async fn statuses(addrs: &[String]) -> Vec<Option<pb::NodeStatus>> {
    let mut all = Vec::new();
    for addr in addrs {
        let status = tokio::time::timeout(
            Duration::from_secs(1),
            Client::status_with_tls(addr, client_tls()),
        )
        .await;
        all.push(status.ok().and_then(Result::ok));
    }
    all
}

/// The node (1-based) that calls itself leader in the highest term, if any.
async fn find_leader(addrs: &[String]) -> Option<usize> {
    statuses(addrs)
        .await
        .into_iter()
        .enumerate()
        .filter_map(|(index, status)| status.map(|status| (index, status)))
        .filter(|(_, status)| status.role == "leader")
        .max_by_key(|(_, status)| status.term)
        .map(|(index, _)| index + 1)
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Hand leadership to a follower (`rdb transfer-leader`); nothing to heal.
    TransferLeader,
    KillLeader,
    IsolateLeader,
    KillFollower,
    IsolateFollower,
    KillMajority,
}

/// Injects faults one after another until `duration` has passed; returns their
/// descriptions. A node that exits by itself is an error.
fn run_nemesis(
    cluster: &Mutex<ProcessCluster>,
    runtime: &tokio::runtime::Handle,
    clock: Clock,
    duration: Duration,
) -> anyhow::Result<Vec<String>> {
    let (addrs, size, partitions) = {
        let cluster = cluster.lock().expect("cluster lock");
        (
            cluster.addrs().to_vec(),
            cluster.size(),
            cluster.can_partition(),
        )
    };
    let schedule: Vec<Fault> = if partitions {
        vec![
            Fault::TransferLeader,
            Fault::KillLeader,
            Fault::IsolateLeader,
            Fault::TransferLeader,
            Fault::KillFollower,
            Fault::IsolateFollower,
            Fault::KillMajority,
        ]
    } else {
        vec![
            Fault::TransferLeader,
            Fault::KillLeader,
            Fault::TransferLeader,
            Fault::KillFollower,
            Fault::KillMajority,
        ]
    };
    let started = Instant::now();
    let mut faults = Vec::new();
    while started.elapsed() < duration {
        let fault = schedule[faults.len() % schedule.len()];
        let leader = runtime
            .block_on(find_leader(&addrs))
            .unwrap_or_else(|| 1 + fastrand::usize(..size));
        let follower = {
            let others: Vec<usize> = (1..=size).filter(|&node| node != leader).collect();
            others[fastrand::usize(..others.len())]
        };
        if let Fault::TransferLeader = fault {
            let outcome = runtime.block_on(transfer_leader(&addrs, leader, follower));
            let description = format!(
                "t={:.1}s {fault:?} {leader} -> {follower}: {outcome}",
                clock.now_ns() as f64 / 1e9
            );
            eprintln!("nemesis: {description}");
            faults.push(description);
            std::thread::sleep(Duration::from_millis(fastrand::u64(1000..2000)));
            continue;
        }
        let targets = match fault {
            Fault::TransferLeader => unreachable!("handled above"),
            Fault::KillLeader | Fault::IsolateLeader => vec![leader],
            Fault::KillFollower | Fault::IsolateFollower => vec![follower],
            Fault::KillMajority => vec![leader, follower],
        };
        let description = format!(
            "t={:.1}s {fault:?} {targets:?} (leader {leader})",
            clock.now_ns() as f64 / 1e9
        );
        eprintln!("nemesis: {description}");
        {
            let mut cluster = cluster.lock().expect("cluster lock");
            check_alive(&mut cluster)?;
            for &node in &targets {
                match fault {
                    Fault::IsolateLeader | Fault::IsolateFollower => cluster.isolate(node)?,
                    _ => cluster.kill(node)?,
                }
            }
        }
        faults.push(description);
        std::thread::sleep(Duration::from_millis(fastrand::u64(1500..3000)));
        {
            let mut cluster = cluster.lock().expect("cluster lock");
            cluster.heal()?;
            for &node in &targets {
                if !cluster.is_running(node) {
                    cluster.restart(node)?;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(1000..2000)));
    }
    check_alive(&mut cluster.lock().expect("cluster lock"))?;
    Ok(faults)
}

/// What [`transfer_leader`] says when leadership moved as asked.
const MOVED: &str = "moved";

/// Asks node `leader` to hand leadership to `target`, and says whether it moved: the
/// call's answer, and the leader every node then names.
async fn transfer_leader(addrs: &[String], leader: usize, target: usize) -> String {
    let mut client = match Client::with_tls(vec![addrs[leader - 1].clone()], client_tls().cloned())
    {
        Ok(client) => client,
        Err(error) => return format!("no client: {error}"),
    };
    client.max_attempts = 1;
    match client.transfer_leader(target as u64).await {
        Ok(answer) if answer.leader_id == target as u64 => match find_leader(addrs).await {
            Some(now) if now == target => format!("{MOVED} (term {})", answer.term),
            other => format!("answered term {} but the leader is {other:?}", answer.term),
        },
        Ok(answer) => format!("answered leader {}", answer.leader_id),
        Err(error) => format!("failed: {error}"),
    }
}

/// Fails if a node the nemesis did not kill has exited.
fn check_alive(cluster: &mut ProcessCluster) -> anyhow::Result<()> {
    for node in 1..=cluster.size() {
        if let Some(status) = cluster.exited(node) {
            anyhow::bail!(
                "node {node} exited by itself ({status}); its log ends with:\n{}",
                cluster.log_tail(node, 30)
            );
        }
    }
    Ok(())
}

/// Waits until every node answers and names the same leader; with `idle` (no client
/// traffic), also until every node has the same log length and has applied all of it: a
/// new leader's blank entry commits what earlier terms left uncommitted, with no client write.
/// Returns the statuses it last saw when that does not happen in time.
async fn wait_until_converged(addrs: &[String], idle: bool) -> Result<(), String> {
    let deadline = Instant::now() + RECOVERY_PATIENCE;
    loop {
        let all = statuses(addrs).await;
        let converged = all.iter().all(Option::is_some) && {
            let all: Vec<&pb::NodeStatus> = all.iter().flatten().collect();
            let leader = all[0].leader_id;
            let last = all[0].last_log_index;
            leader != 0
                && all.iter().all(|status| {
                    status.leader_id == leader
                        && (!idle
                            || (status.last_log_index == last
                                && status.commit_index == last
                                && status.applied_index == last))
                })
        };
        if converged {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{all:#?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One get of each key after the faults, added to the history. Returns the value each key
/// ended with; a key no get could read in time is missing from the map.
async fn final_reads(
    addrs: &[String],
    keys: Vec<String>,
    clock: Clock,
    stats: Arc<AttemptStats>,
    history: &mut Vec<Operation>,
) -> BTreeMap<String, Option<Value>> {
    let readers = CLIENTS;
    let mut tasks = Vec::new();
    for reader in 0..readers {
        let mine: Vec<String> = keys.iter().skip(reader).step_by(readers).cloned().collect();
        let addrs = addrs.to_vec();
        let stats = stats.clone();
        tasks.push(tokio::spawn(async move {
            let mut kv = KvClients::new(&addrs, stats);
            let mut operations = Vec::new();
            for key in mine {
                let invoked_ns = clock.now_ns();
                let completion = kv.run(&key, Call::Get, RECOVERY_PATIENCE).await;
                operations.push(Operation {
                    client: CLIENTS + reader,
                    key,
                    call: Call::Get,
                    invoked_ns,
                    completed_ns: clock.now_ns(),
                    completion,
                });
            }
            operations
        }));
    }
    let mut finals = BTreeMap::new();
    for task in tasks {
        for operation in task.await.expect("final reader") {
            if let Completion::GetOk(value) = operation.completion {
                finals.insert(operation.key.clone(), value);
            }
            history.push(operation);
        }
    }
    finals
}

#[test]
fn hand_made_non_linearizable_history_is_rejected() {
    let op = |client, call, span: (u64, u64), completion| Operation {
        client,
        key: "x".into(),
        call,
        invoked_ns: span.0,
        completed_ns: span.1,
        completion,
    };
    // Client 0's puts of 1 and then 2 are acknowledged; later client 1 reads 1, as a leader
    // cut off from the majority would answer if it served reads from its own state.
    let stale_read = vec![
        op(0, Call::Put(1), (0, 10), Completion::PutOk),
        op(0, Call::Put(2), (20, 30), Completion::PutOk),
        op(1, Call::Get, (40, 50), Completion::GetOk(Some(1))),
    ];
    let verdicts = check_history(&stale_read);
    let Verdict::NotLinearizable { stuck_at, .. } = &verdicts["x"] else {
        panic!("a stale read must be rejected: {verdicts:?}");
    };
    assert_eq!(stuck_at.client, 1, "the stale read is the culprit");

    // The same history without the stale read is fine, so the rejection is about it.
    assert_eq!(check_history(&stale_read[..2])["x"], Verdict::Linearizable);

    // A put acknowledged after the one whose value survived, lost by the cluster.
    let lost = lost_puts(&stale_read[..2], Some(1));
    assert_eq!(lost, vec![&stale_read[1]]);
}

#[test]
fn linearizable_under_kills_and_partitions() {
    let binaries = build_release_binaries().expect("building rdb-server");
    let runtime = client_runtime();
    let partitions = is_root() && std::env::var_os("RDB_CLUSTER_NO_PARTITIONS").is_none();
    let cluster = ProcessCluster::start(binaries, 3, partitions).expect("starting the cluster");
    let addrs = cluster.addrs().to_vec();
    CLIENT_TLS
        .set(cluster.client_tls().expect("the client's TLS files"))
        .expect("set once");
    let report_path = cluster.dir().join("history.txt");
    eprintln!(
        "cluster: nodes {addrs:?}, data and logs in {}, partitions {}",
        cluster.dir().display(),
        if cluster.can_partition() {
            "on (network namespaces)"
        } else if partitions {
            "off (namespaces failed; see above)"
        } else if is_root() {
            "off (RDB_CLUSTER_NO_PARTITIONS); kills only"
        } else {
            "off (needs root); kills only"
        }
    );
    let cluster = Mutex::new(cluster);
    let clock = Clock(Instant::now());
    let stats = Arc::new(AttemptStats::default());

    runtime
        .block_on(wait_until_converged(&addrs, true))
        .expect("the new cluster elects a leader");

    let stop = Arc::new(AtomicBool::new(false));
    let next_value = Arc::new(AtomicU64::new(1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            runtime.spawn(client_loop(
                client,
                addrs.clone(),
                clock,
                stop.clone(),
                next_value.clone(),
                stats.clone(),
            ))
        })
        .collect();

    let faults = run_nemesis(&cluster, runtime.handle(), clock, FAULT_PHASE);
    let recovered = runtime.block_on(wait_until_converged(&addrs, false));
    // Some calm traffic after recovery, then stop the clients.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let mut history: Vec<Operation> = runtime.block_on(async {
        let mut all = Vec::new();
        for client in clients {
            all.extend(client.await.expect("client task"));
        }
        all
    });
    let faults = faults.expect("the nemesis");
    let transfers = faults
        .iter()
        .filter(|fault| fault.contains("TransferLeader"))
        .count();
    let moved = faults
        .iter()
        .filter(|fault| fault.contains("TransferLeader") && fault.contains(MOVED))
        .count();
    if let Err(statuses) = recovered {
        panic!("no leader after the faults: {statuses}");
    }
    let operations = history.len();

    let keys: Vec<String> = {
        let mut keys: Vec<String> = history.iter().map(|op| op.key.clone()).collect();
        keys.sort();
        keys.dedup();
        keys
    };
    let finals = runtime.block_on(final_reads(
        &addrs,
        keys.clone(),
        clock,
        stats.clone(),
        &mut history,
    ));
    write_report(&report_path, &render_events(&history)).expect("writing the history");
    // The final gets went through the log in the leader's term, so every entry before them
    // is committed: every node must now catch up.
    if let Err(statuses) = runtime.block_on(wait_until_converged(&addrs, true)) {
        panic!("the nodes' logs did not converge after the faults: {statuses}");
    }

    let count = |wanted: fn(&Operation) -> bool| {
        history[..operations].iter().filter(|op| wanted(op)).count()
    };
    eprintln!(
        "cluster: {operations} operations: {} ok, {} failed, {} unknown; {} keys; attempts refused: {} redirects, {} not executed, {} indeterminate",
        count(|op| matches!(op.completion, Completion::PutOk | Completion::GetOk(_))),
        count(|op| op.completion == Completion::Failed),
        count(|op| op.completion == Completion::Unknown),
        keys.len(),
        stats.redirects.load(Ordering::Relaxed),
        stats.not_executed.load(Ordering::Relaxed),
        stats.indeterminate.load(Ordering::Relaxed),
    );
    for (sample, times) in stats.samples.lock().expect("stats lock").iter() {
        eprintln!("cluster:   {times:>6} x {sample}");
    }
    for fault in &faults {
        eprintln!("cluster: fault {fault}");
    }

    let unread: Vec<&String> = keys
        .iter()
        .filter(|key| !finals.contains_key(*key))
        .collect();
    assert!(
        unread.is_empty(),
        "keys no final get could read: {unread:?}"
    );

    let checked = Instant::now();
    let verdicts = check_history(&history);
    let bad: Vec<(&String, &Verdict)> = verdicts
        .iter()
        .filter(|(_, verdict)| **verdict != Verdict::Linearizable)
        .collect();
    eprintln!(
        "cluster: checked {} keys in {:.2}s",
        verdicts.len(),
        checked.elapsed().as_secs_f64()
    );
    let mut lost = Vec::new();
    for key in &keys {
        let of_key: Vec<Operation> = history[..operations]
            .iter()
            .filter(|op| &op.key == key)
            .cloned()
            .collect();
        lost.extend(lost_puts(&of_key, finals[key]).into_iter().cloned());
    }
    // The recordings, checked against the model once every node is killed (a last SIGKILL:
    // each file may end torn).
    let (validation, restarts) = {
        let mut cluster = cluster.lock().expect("cluster lock");
        cluster.kill_all().expect("killing the nodes");
        let started = Instant::now();
        let recordings = (1..=cluster.size())
            .map(|node| {
                read_recording_file(&cluster.recording_path(node))
                    .map(|recording| (node as model::NodeId, recording))
            })
            .collect::<Result<BTreeMap<_, _>, String>>();
        let validation = recordings.and_then(|recordings| validate_recordings(&recordings));
        eprintln!(
            "cluster: validated the recordings in {:.2}s",
            started.elapsed().as_secs_f64()
        );
        (validation, cluster.restarts())
    };
    let validated = match &validation {
        Ok(Validated {
            events,
            restarts,
            inflight_restores,
            torn_lines,
            ..
        }) => format!(
            "validated_events={events} restarts={restarts} inflight_restores={inflight_restores} torn_lines={torn_lines}"
        ),
        Err(_) => "validated=false".to_string(),
    };
    // Written to stdout itself rather than with println!, which the test harness captures:
    // `cargo test` shows this line even when the test passes.
    let summary = format!(
        "cluster: ops={operations} faults={} transfers={moved}/{transfers} linearizable={} lost={} \
         {validated}\n",
        faults.len(),
        bad.is_empty(),
        lost.len()
    );
    std::io::stdout()
        .write_all(summary.as_bytes())
        .expect("writing to stdout");
    assert!(
        bad.is_empty(),
        "not linearizable: {bad:#?}\n(history in {})",
        report_path.display()
    );
    assert!(
        moved >= 1,
        "no leadership transfer moved leadership under load: {:#?}",
        faults
            .iter()
            .filter(|fault| fault.contains("TransferLeader"))
            .collect::<Vec<_>>()
    );
    assert!(
        lost.is_empty(),
        "acknowledged puts lost: {}",
        lost.iter()
            .map(|op| op.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let validated = validation.unwrap_or_else(|why| {
        panic!(
            "the recordings are not a run of the model: {why}\n(recordings in the kept directory)"
        )
    });
    assert_eq!(validated.nodes, 3);
    // Every restart of the nemesis is in the recordings, unless a node was killed before it
    // wrote its first line.
    assert!(
        (1..=restarts).contains(&validated.restarts),
        "{} restarts recorded, {restarts} made",
        validated.restarts
    );
    assert!(operations >= 1000, "only {operations} operations");
    assert!(faults.len() >= 3, "only {} faults", faults.len());
}
