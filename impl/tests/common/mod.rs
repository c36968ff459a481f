//! An in-process cluster for the integration tests: real nodes, real tonic on 127.0.0.1
//! ephemeral ports, real files in temporary directories.

#![allow(dead_code)]

pub mod pki;

use model::{NodeId, RoleKind};
use rdb_server::client::Client;
use rdb_server::config::{NodeConfig, Timing};
use rdb_server::driver::NodeState;
use rdb_server::logging;
use rdb_server::node::{Node, StartOptions};
use rdb_server::tls::TlsCredentials;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::net::TcpListener;

/// Timing fast enough for tests and slow enough for a loaded 2-core machine.
pub const TIMING: Timing = Timing {
    election_timeout_ms_min: 300,
    election_timeout_ms_max: 600,
    heartbeat_interval_ms: 50,
};

/// How long a test waits for something that should happen in well under a second.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The configuration of node 1, alone in cluster `test`, listening on `addr`, with its data
/// in `data_dir`.
pub fn single_node_config(addr: std::net::SocketAddr, data_dir: &std::path::Path) -> NodeConfig {
    NodeConfig {
        id: 1,
        cluster_id: "test".into(),
        listen: addr,
        peers: BTreeMap::from([(1, addr.to_string())]),
        data_dir: data_dir.to_owned(),
        timing: TIMING,
        fsync: true,
        tls: None,
        flow: model::FlowControl::default(),
        pre_vote: false,
    }
}

pub struct TestCluster {
    pub cluster_id: String,
    dirs: BTreeMap<NodeId, TempDir>,
    peers: BTreeMap<NodeId, String>,
    nodes: BTreeMap<NodeId, Node>,
    /// With TLS: the cluster's CA, and every node's credentials.
    tls: Option<(pki::TestCa, BTreeMap<NodeId, TlsCredentials>)>,
}

impl TestCluster {
    /// Starts `size` nodes with ids 1..=size.
    pub async fn start(size: u64) -> TestCluster {
        TestCluster::start_with(size, None).await
    }

    /// Starts `size` nodes with mutual TLS, their certificates signed by a fresh test CA.
    pub async fn start_tls(size: u64) -> TestCluster {
        TestCluster::start_with(size, Some(pki::TestCa::new("rdb test CA"))).await
    }

    async fn start_with(size: u64, ca: Option<pki::TestCa>) -> TestCluster {
        let tls = ca.map(|ca| {
            let nodes = (1..=size).map(|id| (id, ca.node(id))).collect();
            (ca, nodes)
        });
        let mut listeners = BTreeMap::new();
        let mut peers = BTreeMap::new();
        for id in 1..=size {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            peers.insert(id, listener.local_addr().expect("addr").to_string());
            listeners.insert(id, listener);
        }
        let mut cluster = TestCluster {
            cluster_id: "test".into(),
            dirs: (1..=size)
                .map(|id| (id, tempfile::tempdir().expect("temp dir")))
                .collect(),
            peers,
            nodes: BTreeMap::new(),
            tls,
        };
        for (id, listener) in listeners {
            cluster.start_node(id, Some(listener)).await;
        }
        cluster
    }

    pub fn config(&self, id: NodeId) -> NodeConfig {
        NodeConfig {
            id,
            cluster_id: self.cluster_id.clone(),
            listen: self.peers[&id].parse().expect("socket address"),
            peers: self.peers.clone(),
            data_dir: self.dirs[&id].path().to_owned(),
            timing: TIMING,
            fsync: true,
            tls: self.tls.as_ref().map(|(_, nodes)| nodes[&id].clone()),
            flow: model::FlowControl::default(),
            pre_vote: false,
        }
    }

    async fn start_node(&mut self, id: NodeId, listener: Option<TcpListener>) {
        let listener = match listener {
            Some(listener) => listener,
            None => rebind(&self.peers[&id]).await,
        };
        let options = StartOptions {
            listener: Some(listener),
            ..StartOptions::default()
        };
        let node = Node::start(self.config(id), logging::for_tests(), options)
            .await
            .expect("node starts");
        self.nodes.insert(id, node);
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    /// A member other than `leader`.
    pub fn follower_of(&self, leader: NodeId) -> NodeId {
        self.ids()
            .into_iter()
            .find(|&id| id != leader)
            .expect("a cluster of more than one node")
    }

    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn addr(&self, id: NodeId) -> String {
        self.peers[&id].clone()
    }

    pub fn data_dir(&self, id: NodeId) -> std::path::PathBuf {
        self.dirs[&id].path().to_owned()
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    /// Stops a node; its files stay.
    pub async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("node is running");
        node.stop().await;
    }

    /// Starts a stopped node again from its files, on the same address.
    pub async fn restart(&mut self, id: NodeId) {
        assert!(!self.nodes.contains_key(&id), "node {id} is running");
        self.start_node(id, None).await;
    }

    /// Cuts `id` off from every other node, in both directions.
    pub fn isolate(&self, id: NodeId) {
        let others: Vec<NodeId> = self.ids().into_iter().filter(|&o| o != id).collect();
        self.nodes[&id].partition().block(others.iter().copied());
        for other in others {
            if let Some(node) = self.nodes.get(&other) {
                node.partition().block([id]);
            }
        }
    }

    /// Undoes every partition.
    pub fn heal(&self) {
        for node in self.nodes.values() {
            node.partition().heal();
        }
    }

    pub async fn state(&self, id: NodeId) -> NodeState {
        self.nodes[&id]
            .inspect(true)
            .await
            .expect("node is running")
    }

    pub async fn states(&self) -> BTreeMap<NodeId, NodeState> {
        let mut states = BTreeMap::new();
        for &id in self.nodes.keys() {
            states.insert(id, self.state(id).await);
        }
        states
    }

    /// Waits until among `among` exactly one node leads in the highest term seen and the
    /// others follow it; returns it. Also asserts election safety on every poll: at most one
    /// leader per term.
    pub async fn wait_for_leader(&self, among: &[NodeId]) -> NodeId {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut states = Vec::new();
            for id in among {
                states.push(self.state(*id).await);
            }
            assert_one_leader_per_term(&states);
            let top = states.iter().map(|s| s.term).max().unwrap_or(0);
            let leaders: Vec<&NodeState> = states
                .iter()
                .filter(|s| s.role == RoleKind::Leader && s.term == top)
                .collect();
            if let [leader] = leaders.as_slice() {
                if states.iter().all(|s| s.leader == Some(leader.id)) {
                    return leader.id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no stable leader among {among:?} within {PATIENCE:?}: {states:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: NodeId, index: u64) -> NodeState {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let state = self.state(id).await;
            if state.applied_index >= index {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not apply index {index} within {PATIENCE:?}: {state:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The cluster's CA, when it runs with TLS.
    pub fn ca(&self) -> Option<&pki::TestCa> {
        self.tls.as_ref().map(|(ca, _)| ca)
    }

    /// A client that knows every server (with a client certificate when TLS is on).
    pub fn client(&self) -> Client {
        let tls = self.ca().map(pki::TestCa::client);
        Client::with_tls(self.peers.values().cloned().collect(), tls).expect("addresses are valid")
    }

    /// A client that knows only `id`, to test redirects.
    pub fn client_of(&self, id: NodeId) -> Client {
        let tls = self.ca().map(pki::TestCa::client);
        Client::with_tls(vec![self.addr(id)], tls).expect("address is valid")
    }

    pub async fn stop_all(mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }
}

/// Binds the address a stopped node used, retrying briefly while the old socket closes.
async fn rebind(addr: &str) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("cannot bind {addr} again: {error}"),
        }
    }
}

/// Election safety over one snapshot of states: no two leaders share a term.
pub fn assert_one_leader_per_term(states: &[NodeState]) {
    let mut leaders: BTreeMap<u64, NodeId> = BTreeMap::new();
    for state in states.iter().filter(|s| s.role == RoleKind::Leader) {
        if let Some(other) = leaders.insert(state.term, state.id) {
            panic!(
                "two leaders in term {}: {other} and {}",
                state.term, state.id
            );
        }
    }
}

/// Asserts that the entries up to `index` are the same on every given state (log matching
/// for the committed prefix).
pub fn assert_same_prefix(states: &[&NodeState], index: u64) {
    let first = states[0].log.as_ref().expect("inspected with the log");
    for state in &states[1..] {
        let log = state.log.as_ref().expect("inspected with the log");
        assert_eq!(
            &log[..index as usize],
            &first[..index as usize],
            "nodes {} and {} differ in the first {index} entries",
            states[0].id,
            state.id
        );
    }
}
