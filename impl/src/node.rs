//! A running node: storage opened, Peer restored, driver thread started, gRPC served.

use crate::command::Command;
use crate::config::NodeConfig;
use crate::driver::{
    Applied, ClockTimers, Driver, Input, ManualTimers, NodeState, Outbound, ProposeError, Timers,
    DEFAULT_MAX_BATCH,
};
use crate::record::Recorder;
use crate::service::KvService;
use crate::storage::{FileStorage, StorageError, StorageOptions};
use crate::transport::{GrpcOutbound, Partition, PeerService};
use model::{Config, Message, NodeId, Peer, PeerError, Timer};
use rdb_proto as pb;
use slog::{info, Logger};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The data directory could not be opened or is damaged.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The stored state does not fit the configuration.
    #[error("restoring the Peer: {0}")]
    Restore(#[from] PeerError),
    /// The listen address could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The recording file could not be opened.
    #[error("opening the recording {path}: {source}")]
    Record {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// tonic refused the TLS configuration.
    #[error("TLS: {0}")]
    Tls(String),
    /// The driver thread could not be spawned.
    #[error("spawning the driver thread: {0}")]
    Thread(std::io::Error),
}

/// Choices a test makes when it starts a node; production uses the defaults.
pub struct StartOptions {
    /// A socket already bound to `config.listen` (tests bind port 0 first).
    pub listener: Option<TcpListener>,
    /// How many inputs the driver takes per batch; 1 makes every input its own step.
    pub max_batch: usize,
    /// Record every Peer input and output, and what storage made durable, to this file
    /// (appending). Off by default.
    pub record: Option<std::path::PathBuf>,
    /// A bug of the model's catalogue to plant in the Peer (conformance tests only).
    #[cfg(feature = "planted-bugs")]
    pub bug: Option<model::bugs::Bug>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            listener: None,
            max_batch: DEFAULT_MAX_BATCH,
            record: None,
            #[cfg(feature = "planted-bugs")]
            bug: None,
        }
    }
}

/// A running node and the handles to control it.
pub struct Node {
    id: NodeId,
    addr: SocketAddr,
    inputs: mpsc::Sender<Input>,
    driver: Option<JoinHandle<()>>,
    server: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    partition: Partition,
    logger: Logger,
}

impl Node {
    /// Starts a node with real timers and gRPC to its peers.
    pub async fn start(
        config: NodeConfig,
        logger: Logger,
        options: StartOptions,
    ) -> Result<Node, StartError> {
        let partition = Partition::default();
        let outbound = GrpcOutbound::start(
            &tokio::runtime::Handle::current(),
            config.cluster_id.clone(),
            config.id,
            &config.peers,
            partition.clone(),
            logger.clone(),
            config.tls.as_ref(),
        );
        let timers = ClockTimers::new(config.timing);
        Node::start_with(config, logger, options, timers, outbound, partition).await
    }

    /// Starts a node in controlled mode: its timers fire only through
    /// [`Node::fire_timer`], and every message it sends goes to `outbound` instead of the
    /// network. Storage, the gRPC server and restart-from-files stay real.
    /// Each input is its own batch (`options.max_batch` is ignored), so every step is
    /// persisted before the next one, as in the model.
    pub async fn start_controlled(
        config: NodeConfig,
        logger: Logger,
        options: StartOptions,
        outbound: impl Outbound,
    ) -> Result<Node, StartError> {
        let options = StartOptions {
            max_batch: 1,
            ..options
        };
        let partition = Partition::default();
        Node::start_with(
            config,
            logger,
            options,
            ManualTimers::default(),
            outbound,
            partition,
        )
        .await
    }

    async fn start_with(
        config: NodeConfig,
        logger: Logger,
        options: StartOptions,
        timers: impl Timers,
        outbound: impl Outbound,
        partition: Partition,
    ) -> Result<Node, StartError> {
        let logger = logger.new(slog::o!("node" => config.id));
        let storage_options = StorageOptions {
            fsync: config.fsync,
            ..StorageOptions::default()
        };
        let (storage, durable, recovery) =
            FileStorage::open(&config.data_dir, config.id, storage_options)?;
        info!(logger, "storage opened";
            "data_dir" => %config.data_dir.display(),
            "term" => durable.term,
            "voted_for" => durable.voted_for,
            "entries" => recovery.entries,
            "truncated_tail_bytes" => recovery.truncated_tail_bytes);
        let peer_config = Config {
            id: config.id,
            members: config.peers.keys().copied().collect(),
        };
        #[allow(unused_mut)]
        let (mut peer, restore_output) = Peer::<Command>::restore(peer_config, durable)?;
        #[cfg(feature = "planted-bugs")]
        peer.plant_bug(options.bug);
        let listener = match options.listener {
            Some(listener) => listener,
            None => {
                TcpListener::bind(config.listen)
                    .await
                    .map_err(|source| StartError::Listen {
                        addr: config.listen,
                        source,
                    })?
            }
        };
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        let recorder = match &options.record {
            Some(path) => {
                Some(
                    Recorder::open(path, config.id).map_err(|source| StartError::Record {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let (inputs, receiver) = mpsc::channel();
        let driver = Driver::new(
            peer,
            restore_output,
            storage,
            timers,
            outbound,
            receiver,
            logger.clone(),
            options.max_batch,
            recorder,
        );
        let driver = std::thread::Builder::new()
            .name(format!("rdb-driver-{}", config.id))
            .spawn(move || driver.run())
            .map_err(StartError::Thread)?;
        let members = config.peers.keys().copied().collect();
        let peer_service = PeerService::new(
            config.cluster_id.clone(),
            config.id,
            members,
            inputs.clone(),
            partition.clone(),
            logger.clone(),
        )
        .with_certified_senders(config.tls.is_some());
        let kv_service = KvService::new(
            config.cluster_id.clone(),
            config.peers.clone(),
            inputs.clone(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let server_logger = logger.clone();
        // Small Raft messages must not wait for Nagle's algorithm.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
        if let Some(tls) = &config.tls {
            builder = builder
                .tls_config(tls.server_config())
                .map_err(|error| StartError::Tls(error.to_string()))?;
        }
        let server = tokio::spawn(async move {
            let result = builder
                .add_service(pb::raft_peer_server::RaftPeerServer::new(peer_service))
                .add_service(pb::kv_server::KvServer::new(kv_service))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = result {
                slog::error!(server_logger, "gRPC server failed"; "error" => %error);
            }
        });
        info!(logger, "node serving"; "addr" => %addr, "cluster_id" => &config.cluster_id,
            "tls" => config.tls.is_some());
        Ok(Node {
            id: config.id,
            addr,
            inputs,
            driver: Some(driver),
            server: Some((stop, server)),
            partition,
            logger,
        })
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address it serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fault-injection switch of its transport.
    pub fn partition(&self) -> &Partition {
        &self.partition
    }

    /// Its state once every input sent before this call is processed and persisted; `None`
    /// if the node has stopped.
    pub async fn inspect(&self, with_log: bool) -> Option<NodeState> {
        let (reply, state) = oneshot::channel();
        self.inputs.send(Input::Inspect { with_log, reply }).ok()?;
        state.await.ok()
    }

    /// Fires an armed timer (controlled mode). Errors if the timer is not armed.
    pub async fn fire_timer(&self, timer: Timer) -> Result<(), String> {
        let (reply, done) = oneshot::channel();
        self.inputs
            .send(Input::FireTimer { timer, reply })
            .map_err(|_| "node stopped".to_string())?;
        done.await.map_err(|_| "node stopped".to_string())?
    }

    /// Proposes `command` at this node, as the client API does. The proposal is submitted
    /// at once; the returned future resolves with its outcome.
    pub fn propose(
        &self,
        command: Command,
    ) -> impl std::future::Future<Output = Result<Applied, ProposeError>> + Send + 'static {
        let (reply, outcome) = oneshot::channel();
        let submitted = self.inputs.send(Input::Propose { command, reply }).is_ok();
        async move {
            if !submitted {
                return Err(ProposeError::Stopped);
            }
            outcome.await.unwrap_or(Err(ProposeError::Stopped))
        }
    }

    /// Hands a message straight to the driver, skipping gRPC (tests of the driver alone).
    pub fn inject(&self, from: NodeId, message: Message<Command>) -> bool {
        self.inputs.send(Input::Message { from, message }).is_ok()
    }

    /// Stops the node: the driver finishes its batch (persisting it) and stops, then the gRPC
    /// server stops. Everything acknowledged is on disk when this returns.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        let _ = self.inputs.send(Input::Shutdown);
        if let Some(driver) = self.driver.take() {
            let _ = tokio::task::spawn_blocking(move || driver.join()).await;
        }
        if let Some((stop, server)) = self.server.take() {
            let _ = stop.send(());
            let _ = server.await;
        }
        info!(self.logger, "node stopped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A node dropped without `stop` still stops its driver; the server task ends with the
        // runtime.
        let _ = self.inputs.send(Input::Shutdown);
        if let Some((stop, _)) = self.server.take() {
            let _ = stop.send(());
        }
    }
}
