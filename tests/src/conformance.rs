//! Conformance replay: a model trace, step by step, against real rdb-server nodes.
//!
//! Each server of the trace is a real node in controlled mode: its own gRPC server on
//! 127.0.0.1, its own file storage in a temporary directory, its timers fired only by the
//! replay, and its outbound messages captured instead of sent. For every step the replay does
//! what the model did (fire a timer, deliver a message over gRPC, submit a client command,
//! stop a node, restart it from its files, lose a message) and then compares every node's
//! role, term, vote, leader, log and commit index, and the messages the step sent, with the
//! trace. The first difference is a [`Mismatch`].

use model::checker::trace::{Action, NodeView, Sent, Step, Trace};
use model::checker::Value;
use model::{Entry, Message, NodeId, Planted};
use rdb_proto as pb;
use rdb_server::command::Command;
use rdb_server::config::{NodeConfig, Timing};
use rdb_server::convert::message_to_pb;
use rdb_server::driver::{NodeState, Outbound};
use rdb_server::logging;
use rdb_server::node::{Node, StartOptions};
use rdb_server::storage::{FileStorage, Identity, StorageOptions};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// The first difference between a trace and the real nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The trace's name.
    pub trace: String,
    /// The step (0 for the initial state).
    pub step: usize,
    /// The step's action.
    pub action: String,
    /// What differs (`node 2 term`, `sent`, …).
    pub what: String,
    /// The trace's value.
    pub expected: String,
    /// The node's value.
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trace {} step {} ({}): {} differs\n  expected: {}\n  actual:   {}",
            self.trace, self.step, self.action, self.what, self.expected, self.actual
        )
    }
}

/// What one replay covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Steps replayed.
    pub steps: usize,
    /// Whether the trace crashed a node.
    pub crashed: bool,
}

/// Choices for a replay.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayOptions {
    /// Plant this bug in every node's Peer.
    pub bug: Option<model::bugs::Bug>,
}

/// A model server number as a node id (node ids start at 1; 0 means none on the wire).
pub fn node_id(server: NodeId) -> NodeId {
    server + 1
}

/// A model value as the command a node stores.
pub fn command_of(value: Value) -> Command {
    Command::Put {
        key: format!("v{value}"),
        value: vec![value],
    }
}

/// The model value a node's command stands for.
pub fn value_of(command: &Command) -> Result<Value, String> {
    match command {
        Command::Put { key, value } if value.len() == 1 && *key == format!("v{}", value[0]) => {
            Ok(value[0])
        }
        other => Err(format!("{other:?} is not a model value")),
    }
}

fn entry_to_model(entry: &Entry<Command>) -> Result<Entry<Value>, String> {
    entry.try_map_command(value_of)
}

/// A model message as a node sends it.
pub fn message_to_node(message: &Message<Value>) -> Message<Command> {
    let converted: Result<_, std::convert::Infallible> =
        message.try_map_commands(|value| Ok(command_of(*value)));
    match converted {
        Ok(message) => message,
    }
}

/// A node's message in the model's terms.
pub fn message_to_model(message: &Message<Command>) -> Result<Message<Value>, String> {
    message.try_map_commands(value_of)
}

type Captured = Arc<Mutex<Vec<(NodeId, NodeId, Message<Command>)>>>;

/// The outbound side of a controlled node: every message is recorded, none is sent.
struct Capture {
    from: NodeId,
    sink: Captured,
}

impl Outbound for Capture {
    fn send(&mut self, to: NodeId, message: Message<Command>) {
        self.sink
            .lock()
            .expect("capture lock is never poisoned")
            .push((self.from, to, message));
    }
}

/// The real nodes of one replay.
struct Cluster {
    cluster_id: String,
    dirs: Vec<TempDir>,
    peers: BTreeMap<NodeId, String>,
    nodes: Vec<Option<Node>>,
    clients: Vec<pb::raft_peer_client::RaftPeerClient<Channel>>,
    captured: Captured,
    options: ReplayOptions,
    /// The trace's flow control, which every node runs with.
    flow: model::FlowControl,
    /// Whether the trace runs pre-vote, as every node then does.
    pre_vote: bool,
}

impl Cluster {
    async fn start(
        servers: usize,
        flow: model::FlowControl,
        pre_vote: bool,
        options: ReplayOptions,
    ) -> Result<Cluster, String> {
        let mut listeners = Vec::new();
        let mut peers = BTreeMap::new();
        for server in 0..servers {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("bind: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            peers.insert(node_id(server as NodeId), addr.to_string());
            listeners.push(listener);
        }
        let mut cluster = Cluster {
            cluster_id: "conformance".into(),
            dirs: (0..servers)
                .map(|_| tempfile::tempdir().map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            clients: peers.values().map(|addr| peer_client(addr)).collect(),
            peers,
            nodes: Vec::new(),
            captured: Captured::default(),
            options,
            flow,
            pre_vote,
        };
        for (server, listener) in listeners.into_iter().enumerate() {
            let node = cluster.start_node(server, Some(listener)).await?;
            cluster.nodes.push(Some(node));
        }
        Ok(cluster)
    }

    fn config(&self, server: usize) -> NodeConfig {
        let id = node_id(server as NodeId);
        NodeConfig {
            id,
            cluster_id: self.cluster_id.clone(),
            listen: self.peers[&id].parse().expect("socket address"),
            peers: self.peers.clone(),
            data_dir: self.dirs[server].path().to_owned(),
            timing: Timing::default(),
            // Replays compare states, not durability against power loss; files, checksums
            // and restarts stay real.
            fsync: false,
            tls: None,
            flow: self.flow,
            pre_vote: self.pre_vote,
        }
    }

    async fn start_node(
        &self,
        server: usize,
        listener: Option<TcpListener>,
    ) -> Result<Node, String> {
        let config = self.config(server);
        let listener = match listener {
            Some(listener) => listener,
            None => rebind(config.listen).await?,
        };
        let options = StartOptions {
            listener: Some(listener),
            ..StartOptions::default()
        };
        let capture = Capture {
            from: config.id,
            sink: self.captured.clone(),
        };
        let deviation = Planted(self.options.bug);
        Node::start_deviating(config, logging::for_tests(), options, capture, deviation)
            .await
            .map_err(|e| format!("starting node {}: {e}", server + 1))
    }

    fn take_captured(&self) -> Vec<(NodeId, NodeId, Message<Command>)> {
        std::mem::take(&mut *self.captured.lock().expect("capture lock"))
    }

    async fn stop_all(&mut self) {
        for node in self.nodes.iter_mut() {
            if let Some(node) = node.take() {
                node.stop().await;
            }
        }
    }
}

/// A lazily connected client of the peer service at `addr`.
fn peer_client(addr: &str) -> pb::raft_peer_client::RaftPeerClient<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .timeout(Duration::from_secs(10));
    pb::raft_peer_client::RaftPeerClient::new(endpoint.connect_lazy())
}

async fn rebind(addr: std::net::SocketAddr) -> Result<TcpListener, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => return Err(format!("binding {addr} again: {e}")),
        }
    }
}

/// The messages in flight, as a multiset: what the nodes sent and no step has yet consumed.
#[derive(Default)]
struct InFlight(BTreeMap<(NodeId, NodeId, Message<Value>), usize>);

impl InFlight {
    fn add(&mut self, from: NodeId, to: NodeId, message: Message<Value>) {
        *self.0.entry((from, to, message)).or_default() += 1;
    }

    fn contains(&self, key: &(NodeId, NodeId, Message<Value>)) -> bool {
        self.0.contains_key(key)
    }

    fn remove(&mut self, key: &(NodeId, NodeId, Message<Value>)) {
        if let Some(count) = self.0.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(key);
            }
        }
    }
}

/// A node's state in the trace's terms.
fn view_of(server: NodeId, state: &NodeState) -> Result<NodeView, String> {
    let to_server = |id: Option<NodeId>| id.map(|id| id - 1);
    Ok(NodeView {
        id: server,
        crashed: false,
        role: Some(state.role),
        term: state.term,
        voted_for: to_server(state.voted_for),
        leader: to_server(state.leader),
        transferee: to_server(state.transferee),
        log: state
            .log
            .as_ref()
            .expect("inspected with the log")
            .iter()
            .map(entry_to_model)
            .collect::<Result<_, _>>()?,
        commit: state.commit_index,
    })
}

/// What a stopped node left in its files, in the trace's terms.
fn persisted_view(cluster: &Cluster, server: usize) -> Result<NodeView, String> {
    let options = StorageOptions {
        fsync: false,
        ..StorageOptions::default()
    };
    let config = cluster.config(server);
    let identity = Identity::new(config.cluster_id, config.id, config.peers.keys().copied());
    let (_, durable, _) = FileStorage::open(cluster.dirs[server].path(), &identity, options)
        .map_err(|e| format!("reading node {}'s files: {e}", server + 1))?;
    Ok(NodeView {
        id: server as NodeId,
        crashed: true,
        role: None,
        term: durable.term,
        voted_for: durable.voted_for.map(|id| id - 1),
        leader: None,
        transferee: None,
        log: durable
            .log
            .iter()
            .map(entry_to_model)
            .collect::<Result<_, _>>()?,
        commit: 0,
    })
}

/// Replays `trace` against fresh real nodes. Returns what it covered, or the first mismatch.
pub async fn replay(trace: &Trace, options: ReplayOptions) -> Result<Replayed, Mismatch> {
    let name = trace.header.name.clone();
    let setup_error = |step: usize, action: &str, why: String| Mismatch {
        trace: name.clone(),
        step,
        action: action.into(),
        what: "the replay itself".into(),
        expected: "the step can be replayed".into(),
        actual: why,
    };
    let mut cluster = Cluster::start(
        trace.header.servers,
        trace.header.config.flow(),
        trace.header.config.pre_vote,
        options,
    )
    .await
    .map_err(|why| setup_error(0, "Init", why))?;
    let result = replay_steps(trace, &mut cluster).await;
    cluster.stop_all().await;
    result
}

async fn replay_steps(trace: &Trace, cluster: &mut Cluster) -> Result<Replayed, Mismatch> {
    let name = &trace.header.name;
    let duplicating = trace.header.config.network == "duplicating";
    let mut in_flight = InFlight::default();
    compare_nodes(name, 0, "Init", &trace.init.nodes, cluster).await?;
    let mut crashed = false;
    for step in &trace.steps {
        let fail = |what: &str, expected: String, actual: String| Mismatch {
            trace: name.clone(),
            step: step.step,
            action: step.action.to_string(),
            what: what.into(),
            expected,
            actual,
        };
        let server = step.node as usize;
        if server >= cluster.nodes.len() {
            return Err(fail(
                "node",
                "a server of the trace".into(),
                step.node.to_string(),
            ));
        }
        match step.action {
            Action::ElectionTimeout | Action::HeartbeatTimeout => {
                let timer = step.action.timer().expect("a timeout action has a timer");
                let node =
                    running(cluster, server).map_err(|a| fail("node", "running".into(), a))?;
                node.fire_timer(timer)
                    .await
                    .map_err(|why| fail("timer", format!("{timer:?} armed"), why))?;
            }
            Action::HandleRequestVoteRequest
            | Action::HandleRequestVoteResponse
            | Action::HandlePreVoteRequest
            | Action::HandlePreVoteResponse
            | Action::HandleAppendEntriesRequest
            | Action::HandleAppendEntriesResponse
            | Action::HandleTimeoutNow => {
                let (from, message) =
                    message_of(step).map_err(|why| fail("step", why, String::new()))?;
                if step.action != Action::handling(&message) {
                    return Err(fail(
                        "action",
                        Action::handling(&message).to_string(),
                        step.action.to_string(),
                    ));
                }
                let key = (from, step.node, message.clone());
                if !in_flight.contains(&key) {
                    return Err(fail(
                        "message in flight",
                        format!("{message:?} from {from} to {}", step.node),
                        "no node sent it (or it was already consumed)".into(),
                    ));
                }
                if !duplicating {
                    in_flight.remove(&key);
                }
                running(cluster, server).map_err(|a| fail("node", "running".into(), a))?;
                let envelope = pb::PeerEnvelope {
                    cluster_id: cluster.cluster_id.clone(),
                    from: node_id(from),
                    to: node_id(step.node),
                    message: Some(message_to_pb(message_to_node(&message))),
                };
                cluster.clients[server]
                    .deliver(envelope)
                    .await
                    .map_err(|status| fail("delivery", "accepted".into(), status.to_string()))?;
            }
            Action::ClientRequest => {
                let value = step
                    .value
                    .ok_or_else(|| fail("value", "a value".into(), "none".into()))?;
                let node =
                    running(cluster, server).map_err(|a| fail("node", "running".into(), a))?;
                // The proposal is submitted now; its outcome (commit) shows in later states.
                drop(node.propose(command_of(value)));
            }
            Action::TransferLeadership => {
                let to = step
                    .from
                    .ok_or_else(|| fail("from", "the transfer's target".into(), "none".into()))?;
                let node =
                    running(cluster, server).map_err(|a| fail("node", "running".into(), a))?;
                node.transfer(node_id(to))
                    .await
                    .map_err(|why| fail("transfer", format!("a transfer to {to}"), why))?;
            }
            Action::Crash => {
                let node = cluster.nodes[server]
                    .take()
                    .ok_or_else(|| fail("node", "running".into(), "already crashed".into()))?;
                node.stop().await;
                crashed = true;
            }
            Action::Recover => {
                if cluster.nodes[server].is_some() {
                    return Err(fail("node", "crashed".into(), "running".into()));
                }
                let node = cluster.start_node(server, None).await.map_err(|why| {
                    fail("restart", "the node restarts from its files".into(), why)
                })?;
                cluster.nodes[server] = Some(node);
                // A new connection for the new process: the old one ended with the crash,
                // and a call on it could fail in the transport, not in the node.
                cluster.clients[server] = peer_client(&cluster.peers[&node_id(step.node)]);
            }
            Action::DropMessage => {
                let (from, message) =
                    message_of(step).map_err(|why| fail("step", why, String::new()))?;
                let key = (from, step.node, message);
                if !in_flight.contains(&key) {
                    return Err(fail(
                        "message in flight",
                        format!("{:?} from {from} to {}", key.2, step.node),
                        "no node sent it".into(),
                    ));
                }
                in_flight.remove(&key);
            }
        }
        compare_nodes(name, step.step, step.action.name(), &step.nodes, cluster).await?;
        let sent =
            sent_by_step(cluster).map_err(|why| fail("sent", "model messages".into(), why))?;
        if sent != step.sent {
            return Err(fail(
                "sent",
                format!("{:?}", step.sent),
                format!("{sent:?}"),
            ));
        }
        for message in sent {
            in_flight.add(message.from, message.to, message.message);
        }
    }
    Ok(Replayed {
        steps: trace.steps.len(),
        crashed,
    })
}

fn running(cluster: &Cluster, server: usize) -> Result<&Node, String> {
    cluster.nodes[server]
        .as_ref()
        .ok_or_else(|| format!("node {} is crashed", server + 1))
}

fn message_of(step: &Step) -> Result<(NodeId, Message<Value>), String> {
    let from = step.from.ok_or("a message step without `from`")?;
    let message = step
        .message
        .clone()
        .ok_or("a message step without `message`")?;
    Ok((from, message))
}

/// The messages the nodes sent since the last step, in the trace's terms.
fn sent_by_step(cluster: &Cluster) -> Result<Vec<Sent>, String> {
    cluster
        .take_captured()
        .iter()
        .map(|(from, to, message)| {
            Ok(Sent {
                from: from - 1,
                to: to - 1,
                message: message_to_model(message)?,
            })
        })
        .collect()
}

async fn compare_nodes(
    trace: &str,
    step: usize,
    action: &str,
    expected: &[NodeView],
    cluster: &Cluster,
) -> Result<(), Mismatch> {
    let fail = |what: String, expected: String, actual: String| Mismatch {
        trace: trace.into(),
        step,
        action: action.into(),
        what,
        expected,
        actual,
    };
    for want in expected {
        let server = want.id as usize;
        let actual = match &cluster.nodes[server] {
            Some(node) => {
                let state = node.inspect(true).await.ok_or_else(|| {
                    fail(format!("node {server}"), "running".into(), "stopped".into())
                })?;
                view_of(want.id, &state)
                    .map_err(|why| fail(format!("node {server} log"), "model values".into(), why))?
            }
            None => persisted_view(cluster, server)
                .map_err(|why| fail(format!("node {server} files"), "readable".into(), why))?,
        };
        if let Some((field, expected, actual)) = want.differences(&actual).into_iter().next() {
            return Err(fail(format!("node {server} {field}"), expected, actual));
        }
    }
    Ok(())
}
