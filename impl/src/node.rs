//! A running node: storage opened, Peer restored, driver thread started, gRPC served.
//!
//! The node fails stop: when its driver thread ends on its own (a storage failure, a panic)
//! or its gRPC server does, [`Node::failed`] resolves with the cause, and `rdb-server`'s main
//! exits non-zero so that a supervisor restarts it from its files.

use crate::command::Command;
use crate::config::NodeConfig;
use crate::convert::peer_message_limit;
use crate::driver::{
    Applied, ClockTimers, Driver, Input, ManualTimers, NodeState, Outbound, ProposeError, Timers,
    DEFAULT_MAX_BATCH, INPUT_QUEUE_CAPACITY,
};
use crate::record::Recorder;
use crate::service::KvService;
use crate::storage::{FileStorage, Identity, StorageError, StorageOptions};
use crate::transport::{GrpcOutbound, Partition, PeerService};
use model::{Config, Deviation, Faithful, Message, NodeId, Peer, PeerError, Timer};
use rdb_proto as pb;
use slog::{crit, info, Logger};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
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

/// Why a running node failed. The node serves no more; the process should exit and be
/// restarted, and storage recovers what reached the disk.
#[derive(Clone, Debug, Error)]
pub enum NodeFailure {
    /// A write or fsync failed, so what the Peer promised may not be durable: the driver
    /// stopped.
    #[error("storage failed{full}: {0}", full = if .0.is_disk_full() { " (disk full)" } else { "" })]
    Storage(Arc<StorageError>),
    /// The driver thread panicked.
    #[error("the driver thread panicked: {0}")]
    DriverPanicked(String),
    /// The gRPC server returned an error.
    #[error("the gRPC server failed: {0}")]
    Server(String),
    /// The gRPC server ended without being asked to stop.
    #[error("the gRPC server stopped without being asked to")]
    ServerEnded,
}

impl NodeFailure {
    /// The process exit code for this failure: 74 (`EX_IOERR`) for storage, 70
    /// (`EX_SOFTWARE`) for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            NodeFailure::Storage(_) => 74,
            NodeFailure::DriverPanicked(_) | NodeFailure::Server(_) | NodeFailure::ServerEnded => {
                70
            }
        }
    }
}

/// Where a node's first failure is kept; [`Node::failed`] watches it.
#[derive(Clone)]
struct FailureReport {
    cell: Arc<watch::Sender<Option<NodeFailure>>>,
    logger: Logger,
}

impl FailureReport {
    fn new(logger: Logger) -> Self {
        FailureReport {
            cell: Arc::new(watch::Sender::new(None)),
            logger,
        }
    }

    /// Records `failure` unless an earlier one is recorded, and logs it.
    fn report(&self, failure: NodeFailure) {
        crit!(self.logger, "node failed"; "cause" => %failure);
        self.cell.send_if_modified(|cell| {
            let first = cell.is_none();
            if first {
                *cell = Some(failure);
            }
            first
        });
    }
}

/// Runs the driver on its own thread; when it ends by a storage error or a panic, reports
/// the failure. A clean stop reports nothing.
fn spawn_driver(
    name: String,
    run: impl FnOnce() -> Result<(), StorageError> + Send + 'static,
    failure: FailureReport,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        // The model's Peer is built with panic = unwind: a panic ends this thread, and the
        // node's supervisor decides what follows.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failure.report(NodeFailure::Storage(Arc::new(error))),
            Err(payload) => failure.report(NodeFailure::DriverPanicked(panic_message(&*payload))),
        }
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a payload that is not text".to_owned()
    }
}

/// Serves gRPC until `stopped` resolves; if the server ends otherwise, reports the failure.
fn spawn_server(
    router: tonic::transport::server::Router,
    incoming: TcpIncoming,
    stopped: oneshot::Receiver<()>,
    failure: FailureReport,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let asked = Arc::new(AtomicBool::new(false));
        let asked_in_shutdown = asked.clone();
        let result = router
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.await;
                asked_in_shutdown.store(true, Ordering::SeqCst);
            })
            .await;
        match result {
            Err(error) => failure.report(NodeFailure::Server(error.to_string())),
            Ok(()) if !asked.load(Ordering::SeqCst) => failure.report(NodeFailure::ServerEnded),
            Ok(()) => {}
        }
    })
}

/// How long [`Node::stop`] lets the gRPC server finish the calls under way.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(5);

/// Choices a test makes when it starts a node; production uses the defaults.
pub struct StartOptions {
    /// A socket already bound to `config.listen` (tests bind port 0 first).
    pub listener: Option<TcpListener>,
    /// How many inputs the driver takes per batch; 1 makes every input its own step.
    pub max_batch: usize,
    /// How many inputs may wait for the driver (at least 1); past it clients are answered
    /// `RESOURCE_EXHAUSTED` and peer messages are refused.
    pub input_queue: usize,
    /// Record every Peer input and output, and what storage made durable, to this file
    /// (appending). Off by default.
    pub record: Option<std::path::PathBuf>,
    /// Replace the member list stored in the data directory by `config.peers`' ids instead of
    /// refusing a difference (`rdb-server --replace-members`: an offline change of members).
    pub replace_members: bool,
    /// For tests: after persisting each batch the driver sleeps this long, as on a slow disk,
    /// so that clients can outpace it whatever the machine's disk. `None` in every server.
    pub batch_pause: Option<Duration>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            listener: None,
            max_batch: DEFAULT_MAX_BATCH,
            input_queue: INPUT_QUEUE_CAPACITY,
            record: None,
            replace_members: false,
            batch_pause: None,
        }
    }
}

/// A running node and the handles to control it.
pub struct Node {
    id: NodeId,
    addr: SocketAddr,
    inputs: mpsc::SyncSender<Input>,
    driver: Option<JoinHandle<()>>,
    server: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    partition: Partition,
    failure: FailureReport,
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
            peer_message_limit(&config.flow),
        );
        let timers = ClockTimers::new(config.timing);
        Node::start_with(
            config, logger, options, timers, outbound, partition, Faithful,
        )
        .await
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
        Node::start_deviating(config, logger, options, outbound, Faithful).await
    }

    /// [`Node::start_controlled`], with a Peer that may deviate from the protocol: a
    /// [`model::Planted`] bug of the catalogue, for the conformance test that shows a node
    /// running a planted bug is caught. `rdb-server` never calls it, so no server binary
    /// contains a planted bug's code.
    pub async fn start_deviating<D: Deviation + Send + 'static>(
        config: NodeConfig,
        logger: Logger,
        options: StartOptions,
        outbound: impl Outbound,
        deviation: D,
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
            deviation,
        )
        .await
    }

    async fn start_with<D: Deviation + Send + 'static>(
        config: NodeConfig,
        logger: Logger,
        options: StartOptions,
        timers: impl Timers,
        outbound: impl Outbound,
        partition: Partition,
        deviation: D,
    ) -> Result<Node, StartError> {
        let logger = logger.new(slog::o!("node" => config.id));
        // The port first: a second copy of a running node fails here or on the data
        // directory's lock, before recovery writes anything.
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
        let storage_options = StorageOptions {
            fsync: config.fsync,
            replace_members: options.replace_members,
            ..StorageOptions::default()
        };
        let identity = Identity::new(
            config.cluster_id.clone(),
            config.id,
            config.peers.keys().copied(),
        );
        let (storage, durable, recovery) =
            FileStorage::open(&config.data_dir, &identity, storage_options)?;
        info!(logger, "storage opened";
            "data_dir" => %config.data_dir.display(),
            "term" => durable.term,
            "voted_for" => durable.voted_for,
            "entries" => recovery.entries,
            "truncated_tail_bytes" => recovery.truncated_tail_bytes);
        if let Some(old) = &recovery.replaced_members {
            slog::warn!(logger, "member list replaced in the data directory";
                "old" => ?old, "new" => ?identity.members);
        }
        let peer_config = Config {
            id: config.id,
            members: config.peers.keys().copied().collect(),
            flow: config.flow,
            pre_vote: config.pre_vote,
        };
        let (mut peer, restore_output) = Peer::<Command, D>::restore(peer_config, durable)?;
        peer.set_deviation(deviation);
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
        let (inputs, receiver) = mpsc::sync_channel(options.input_queue.max(1));
        let failure = FailureReport::new(logger.clone());
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
        )
        .with_batch_pause(options.batch_pause);
        let driver = spawn_driver(
            format!("rdb-driver-{}", config.id),
            move || driver.run(),
            failure.clone(),
        )
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
        // Small Raft messages must not wait for Nagle's algorithm.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
        if let Some(tls) = &config.tls {
            builder = builder
                .tls_config(tls.server_config())
                .map_err(|error| StartError::Tls(error.to_string()))?;
        }
        let router = builder
            .add_service(
                pb::raft_peer_server::RaftPeerServer::new(peer_service)
                    .max_decoding_message_size(peer_message_limit(&config.flow)),
            )
            .add_service(pb::kv_server::KvServer::new(kv_service));
        let server = spawn_server(router, incoming, stopped, failure.clone());
        info!(logger, "node serving"; "addr" => %addr, "cluster_id" => &config.cluster_id,
            "tls" => config.tls.is_some());
        Ok(Node {
            id: config.id,
            addr,
            inputs,
            driver: Some(driver),
            server: Some((stop, server)),
            partition,
            failure,
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

    /// Resolves when the node fails: its driver thread ended on its own (a storage failure
    /// or a panic) or its gRPC server did. Never resolves for a node that keeps running.
    pub async fn failed(&self) -> NodeFailure {
        let mut watcher = self.failure.cell.subscribe();
        let failure = watcher
            .wait_for(Option::is_some)
            .await
            .expect("the node holds the sender while this borrows it");
        failure.clone().expect("waited for Some")
    }

    /// Queues `input` for the driver, waiting while the queue is full (test and operator
    /// calls, which must not be refused for load). Gives `input` back if the driver is gone.
    async fn submit(&self, mut input: Input) -> Result<(), Input> {
        loop {
            match self.inputs.try_send(input) {
                Ok(()) => return Ok(()),
                Err(mpsc::TrySendError::Full(back)) => input = back,
                Err(mpsc::TrySendError::Disconnected(back)) => return Err(back),
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Its state once every input sent before this call is processed and persisted; `None`
    /// if the node has stopped.
    pub async fn inspect(&self, with_log: bool) -> Option<NodeState> {
        let (reply, state) = oneshot::channel();
        self.submit(Input::Inspect { with_log, reply }).await.ok()?;
        state.await.ok()
    }

    /// Fires an armed timer (controlled mode). Errors if the timer is not armed.
    pub async fn fire_timer(&self, timer: Timer) -> Result<(), String> {
        let (reply, done) = oneshot::channel();
        self.submit(Input::FireTimer { timer, reply })
            .await
            .map_err(|_| "node stopped".to_string())?;
        done.await.map_err(|_| "node stopped".to_string())?
    }

    /// Proposes `command` at this node, as the client API does. The proposal is submitted
    /// at once (answered [`ProposeError::Overloaded`] if the input queue is full); the
    /// returned future resolves with its outcome.
    pub fn propose(
        &self,
        command: Command,
    ) -> impl std::future::Future<Output = Result<Applied, ProposeError>> + Send + 'static {
        let (reply, outcome) = oneshot::channel();
        let submitted = match self.inputs.try_send(Input::Propose { command, reply }) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Full(_)) => Err(ProposeError::Overloaded),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(ProposeError::Stopped),
        };
        async move {
            submitted?;
            outcome.await.unwrap_or(Err(ProposeError::Stopped))
        }
    }

    /// Starts handing leadership to `to` at this node, as the client API does; answers with
    /// the term of the transfer, or the Peer's refusal (not the leader, not another member).
    pub async fn transfer(&self, to: NodeId) -> Result<model::Term, String> {
        let (reply, started) = oneshot::channel();
        self.submit(Input::Transfer { to, reply })
            .await
            .map_err(|_| "node stopped".to_string())?;
        started
            .await
            .map_err(|_| "node stopped".to_string())?
            .map_err(|error| error.to_string())
    }

    /// Hands a message straight to the driver, skipping gRPC (tests of the driver alone).
    /// False if the input queue is full or the driver has stopped.
    pub fn inject(&self, from: NodeId, message: Message<Command>) -> bool {
        self.inputs
            .try_send(Input::Message { from, message })
            .is_ok()
    }

    /// Stops the node: the driver finishes its batch (persisting it) and stops, then the gRPC
    /// server stops. Everything acknowledged is on disk when this returns.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        let _ = self.submit(Input::Shutdown).await;
        if let Some(driver) = self.driver.take() {
            let _ = tokio::task::spawn_blocking(move || driver.join()).await;
        }
        if let Some((stop, server)) = self.server.take() {
            let _ = stop.send(());
            // Calls under way end quickly once the driver has answered them; a client that
            // holds its connection open must not keep the node from stopping.
            let _ = tokio::time::timeout(SERVER_STOP_GRACE, server).await;
        }
        info!(self.logger, "node stopped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A node dropped without `stop` still stops its driver; the server task ends with the
        // runtime.
        let _ = self.inputs.try_send(Input::Shutdown);
        if let Some((stop, _)) = self.server.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn watched(report: &FailureReport) -> Option<NodeFailure> {
        report.cell.borrow().clone()
    }

    #[test]
    fn a_driver_panic_is_reported_with_its_message() {
        let report = FailureReport::new(Logger::root(slog::Discard, slog::o!()));
        let thread = spawn_driver(
            "panicking-driver".into(),
            || panic!("the driver broke"),
            report.clone(),
        )
        .expect("spawn");
        thread.join().expect("the panic is caught on the thread");
        let failure = watched(&report).expect("reported");
        assert!(
            matches!(&failure, NodeFailure::DriverPanicked(message) if message == "the driver broke"),
            "{failure:?}"
        );
        assert_eq!(failure.exit_code(), 70);
    }

    #[test]
    fn a_storage_error_is_reported_and_a_clean_stop_is_not() {
        let report = FailureReport::new(Logger::root(slog::Discard, slog::o!()));
        spawn_driver("clean-driver".into(), || Ok(()), report.clone())
            .expect("spawn")
            .join()
            .expect("join");
        assert!(watched(&report).is_none());
        let full = StorageError::Io {
            path: PathBuf::from("/data/log-00000000000000000001.seg"),
            operation: "write",
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        spawn_driver("failing-driver".into(), move || Err(full), report.clone())
            .expect("spawn")
            .join()
            .expect("join");
        let failure = watched(&report).expect("reported");
        assert_eq!(failure.exit_code(), 74);
        assert!(
            failure.to_string().starts_with(
                "storage failed (disk full): /data/log-00000000000000000001.seg: write: "
            ),
            "{failure}"
        );
        // Only the first failure is kept.
        report.report(NodeFailure::ServerEnded);
        assert!(matches!(watched(&report), Some(NodeFailure::Storage(_))));
    }
}
