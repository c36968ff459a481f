//! Server-to-server transport over tonic: the inbound `RaftPeer` service, and one outbound
//! link per peer with reconnect, backoff and a deadline on every call.

use crate::command::Command;
use crate::convert::{message_to_pb, Envelope};
use crate::driver::{Input, Outbound};
use crate::tls::{self, TlsCredentials};
use model::{Message, NodeId};
use rdb_proto as pb;
use slog::{debug, warn, Logger};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc as async_mpsc;
use tonic::transport::{ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};

/// How long a peer call may take before it is abandoned (the message is then lost, which
/// Raft tolerates).
pub const PEER_CALL_DEADLINE: Duration = Duration::from_millis(1000);
/// How long connecting to a peer may take.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Backoff after a failed call, doubling up to `MAX_BACKOFF`.
pub const MIN_BACKOFF: Duration = Duration::from_millis(20);
/// The longest backoff between attempts to reach a peer.
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Messages queued for one peer at most; beyond it new ones are dropped (Raft resends),
/// counted and logged.
pub const PEER_QUEUE: usize = 8192;

/// Dropped messages are logged at most once per this interval, with their count.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// A link with this many messages waiting behind the one in flight counts as congested.
pub const CONGESTED_BACKLOG: usize = 1;

/// A fault-injection switch for tests: the peers this node neither sends to nor accepts
/// messages from. Empty in production.
#[derive(Clone, Debug, Default)]
pub struct Partition {
    blocked: Arc<RwLock<BTreeSet<NodeId>>>,
}

impl Partition {
    /// Cuts this node off from `peers` in both directions.
    pub fn block(&self, peers: impl IntoIterator<Item = NodeId>) {
        self.blocked
            .write()
            .expect("partition lock is never poisoned")
            .extend(peers);
    }

    /// Reconnects every peer.
    pub fn heal(&self) {
        self.blocked
            .write()
            .expect("partition lock is never poisoned")
            .clear();
    }

    /// Whether messages to and from `peer` are dropped.
    pub fn is_blocked(&self, peer: NodeId) -> bool {
        self.blocked
            .read()
            .expect("partition lock is never poisoned")
            .contains(&peer)
    }
}

/// Counts messages dropped for one reason and logs a warning with the count at most once per
/// [`DROP_LOG_INTERVAL`]: Raft tolerates lost messages, but an operator must see them.
#[derive(Debug)]
pub struct DropCounter {
    what: &'static str,
    tally: Mutex<DropTally>,
}

#[derive(Debug, Default)]
struct DropTally {
    total: u64,
    unlogged: u64,
    last_logged: Option<Instant>,
}

impl DropCounter {
    /// A counter whose log line says `what`.
    pub fn new(what: &'static str) -> Self {
        DropCounter {
            what,
            tally: Mutex::new(DropTally::default()),
        }
    }

    /// Counts `dropped` more messages, logging if the last line is old enough.
    pub fn add(&self, logger: &Logger, dropped: u64) {
        if dropped == 0 {
            return;
        }
        let mut tally = self
            .tally
            .lock()
            .expect("drop counter lock is never poisoned");
        tally.total += dropped;
        tally.unlogged += dropped;
        let now = Instant::now();
        if tally
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= DROP_LOG_INTERVAL)
        {
            warn!(logger, "{}", self.what; "dropped" => tally.unlogged, "dropped_total" => tally.total);
            tally.unlogged = 0;
            tally.last_logged = Some(now);
        }
    }

    /// Messages dropped so far.
    pub fn total(&self) -> u64 {
        self.tally
            .lock()
            .expect("drop counter lock is never poisoned")
            .total
    }
}

/// Outbound messages over gRPC: one queue and one task per peer.
pub struct GrpcOutbound {
    cluster_id: String,
    id: NodeId,
    links: BTreeMap<NodeId, Link>,
    partition: Partition,
    logger: Logger,
}

/// One peer's outbound queue, and the count of messages dropped on the way to it.
struct Link {
    queue: async_mpsc::Sender<pb::PeerEnvelope>,
    dropped: Arc<DropCounter>,
    logger: Logger,
}

impl GrpcOutbound {
    /// Starts one link task per peer other than `id` on `runtime`; over mutual TLS with
    /// `tls`, checking that each peer's certificate names that peer. A message larger than
    /// `message_limit` bytes is not sent (the peers refuse anything larger).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        runtime: &tokio::runtime::Handle,
        cluster_id: String,
        id: NodeId,
        peers: &BTreeMap<NodeId, String>,
        partition: Partition,
        logger: Logger,
        tls: Option<&TlsCredentials>,
        message_limit: usize,
    ) -> Self {
        let mut links = BTreeMap::new();
        for (&peer, addr) in peers.iter().filter(|(peer, _)| **peer != id) {
            let (sender, receiver) = async_mpsc::channel(PEER_QUEUE);
            let logger = logger.new(slog::o!("peer" => peer, "peer_addr" => addr.clone()));
            let dropped = Arc::new(DropCounter::new(
                "messages to a peer dropped (its queue was full, or it was unreachable)",
            ));
            let tls = tls.map(|tls| tls.peer_client_config(peer));
            runtime.spawn(run_link(
                addr.clone(),
                tls,
                message_limit,
                receiver,
                dropped.clone(),
                logger.clone(),
            ));
            let link = Link {
                queue: sender,
                dropped,
                logger,
            };
            links.insert(peer, link);
        }
        GrpcOutbound {
            cluster_id,
            id,
            links,
            partition,
            logger,
        }
    }
}

impl Outbound for GrpcOutbound {
    fn send(&mut self, to: NodeId, message: Message<Command>) {
        if self.partition.is_blocked(to) {
            return;
        }
        let Some(link) = self.links.get(&to) else {
            warn!(self.logger, "no link to a peer the Peer sent to"; "to" => to);
            return;
        };
        let envelope = pb::PeerEnvelope {
            cluster_id: self.cluster_id.clone(),
            from: self.id,
            to,
            message: Some(message_to_pb(message)),
        };
        if link.queue.try_send(envelope).is_err() {
            link.dropped.add(&link.logger, 1);
        }
    }

    /// Congested when fewer than a quorum of followers have an idle queue (a commit needs a
    /// majority counting the leader, so the `(n/2)`-th least busy follower decides).
    fn congested(&self) -> bool {
        let mut backlogs: Vec<usize> = self
            .links
            .values()
            .map(|link| link.queue.max_capacity() - link.queue.capacity())
            .collect();
        if backlogs.is_empty() {
            return false;
        }
        backlogs.sort_unstable();
        let needed = backlogs.len().div_ceil(2);
        backlogs[needed.max(1) - 1] >= CONGESTED_BACKLOG
    }
}

/// Delivers queued messages to one peer, one call at a time so they arrive in order. After a
/// failure the queue is emptied (those messages are stale by the time the peer is back; the
/// Peer resends what matters), the dropped messages counted, and the link backs off. A peer
/// that answers `RESOURCE_EXHAUSTED` is overloaded: backing off is what it needs.
async fn run_link(
    addr: String,
    tls: Option<ClientTlsConfig>,
    message_limit: usize,
    mut queue: async_mpsc::Receiver<pb::PeerEnvelope>,
    dropped: Arc<DropCounter>,
    logger: Logger,
) {
    let endpoint =
        Endpoint::from_shared(tls::server_uri(&addr, tls.is_some())).and_then(|endpoint| {
            let endpoint = endpoint
                .connect_timeout(PEER_CONNECT_TIMEOUT)
                .timeout(PEER_CALL_DEADLINE)
                .tcp_nodelay(true);
            match tls {
                Some(tls) => endpoint.tls_config(tls),
                None => Ok(endpoint),
            }
        });
    let endpoint = match endpoint {
        Ok(endpoint) => endpoint,
        Err(error) => {
            warn!(logger, "bad peer address or TLS settings; messages to it are dropped"; "error" => %error);
            while queue.recv().await.is_some() {
                dropped.add(&logger, 1);
            }
            return;
        }
    };
    let mut client = pb::raft_peer_client::RaftPeerClient::new(endpoint.connect_lazy())
        .max_encoding_message_size(message_limit)
        .max_decoding_message_size(message_limit);
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    while let Some(envelope) = queue.recv().await {
        match client.deliver(envelope).await {
            Ok(_) => {
                if failing {
                    debug!(logger, "peer reachable again");
                }
                failing = false;
                backoff = MIN_BACKOFF;
            }
            Err(status) => {
                if !failing {
                    debug!(logger, "peer unreachable; backing off"; "status" => %status);
                }
                failing = true;
                let mut stale = 1;
                while queue.try_recv().is_ok() {
                    stale += 1;
                }
                tokio::time::sleep(backoff).await;
                while queue.try_recv().is_ok() {
                    stale += 1;
                }
                dropped.add(&logger, stale);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The inbound side: validates each envelope and hands its message to the driver.
pub struct PeerService {
    cluster_id: String,
    id: NodeId,
    members: BTreeSet<NodeId>,
    inputs: mpsc::SyncSender<Input>,
    partition: Partition,
    /// Messages refused because the driver's input queue was full.
    refused: Arc<DropCounter>,
    /// Messages refused before the Peer: malformed, misrouted, or from a sender the
    /// connection's certificate contradicts.
    invalid: Arc<DropCounter>,
    logger: Logger,
    /// Whether a message's sender must be the node its connection's certificate names.
    certified_senders: bool,
}

impl PeerService {
    /// A service for node `id` of `cluster_id`, whose cluster is `members`.
    pub fn new(
        cluster_id: String,
        id: NodeId,
        members: BTreeSet<NodeId>,
        inputs: mpsc::SyncSender<Input>,
        partition: Partition,
        logger: Logger,
    ) -> Self {
        PeerService {
            cluster_id,
            id,
            members,
            inputs,
            partition,
            refused: Arc::new(DropCounter::new(
                "peer messages refused: the input queue is full (node overloaded)",
            )),
            invalid: Arc::new(DropCounter::new(
                "peer messages refused: malformed, misrouted or from the wrong sender (each \
                 reason at debug level)",
            )),
            logger,
            certified_senders: false,
        }
    }

    /// With `on`, takes each message's sender from its TLS connection: a connection whose
    /// certificate names no node, or another node than the message's `from`, is refused.
    pub fn with_certified_senders(self, on: bool) -> Self {
        PeerService {
            certified_senders: on,
            ..self
        }
    }

    /// The count of messages refused because the input queue was full.
    pub fn refused(&self) -> Arc<DropCounter> {
        self.refused.clone()
    }

    /// The count of messages refused before the Peer: malformed, misrouted, or from a sender
    /// the connection's certificate contradicts. Each is answered with an error naming the
    /// problem and logged at debug level; the count is logged as a warning at most once a
    /// second, so hostile input cannot flood the log.
    pub fn invalid(&self) -> Arc<DropCounter> {
        self.invalid.clone()
    }

    fn refuse(&self, status: Status) -> Status {
        debug!(self.logger, "peer message refused"; "code" => ?status.code(), "reason" => status.message());
        self.invalid.add(&self.logger, 1);
        status
    }

    /// Checks routing: the right cluster, a known sender other than this node, this node as
    /// the receiver.
    fn check_route(&self, envelope: &Envelope) -> Result<(), Status> {
        if envelope.cluster_id != self.cluster_id {
            return Err(Status::failed_precondition(format!(
                "cluster id mismatch: the message is for cluster `{}`, this node (id {}) is in cluster `{}`",
                envelope.cluster_id, self.id, self.cluster_id
            )));
        }
        if !self.members.contains(&envelope.from) || envelope.from == self.id {
            return Err(Status::permission_denied(format!(
                "unknown sender: node {} is not another member of cluster `{}` (members {:?})",
                envelope.from, self.cluster_id, self.members
            )));
        }
        if envelope.to != self.id {
            return Err(Status::invalid_argument(format!(
                "wrong receiver: the message is addressed to node {}, this is node {}",
                envelope.to, self.id
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::raft_peer_server::RaftPeer for PeerService {
    async fn deliver(
        &self,
        request: Request<pb::PeerEnvelope>,
    ) -> Result<Response<pb::DeliverAck>, Status> {
        let certified = match self.certified_senders {
            true => Some(tls::certified_sender(&request).map_err(|status| self.refuse(status))?),
            false => None,
        };
        let envelope = Envelope::try_from(request.into_inner()).map_err(|error| {
            self.refuse(Status::invalid_argument(format!(
                "malformed peer message: {error}"
            )))
        })?;
        certified
            .map_or(Ok(()), |node| {
                tls::check_claimed_sender(node, envelope.from)
            })
            .and_then(|()| self.check_route(&envelope))
            .map_err(|status| self.refuse(status))?;
        if self.partition.is_blocked(envelope.from) {
            return Err(Status::unavailable(
                "partitioned from the sender (fault injection)",
            ));
        }
        let input = Input::Message {
            from: envelope.from,
            message: envelope.message,
        };
        match self.inputs.try_send(input) {
            Ok(()) => Ok(Response::new(pb::DeliverAck {})),
            Err(mpsc::TrySendError::Full(_)) => {
                self.refused.add(&self.logger, 1);
                Err(Status::resource_exhausted(format!(
                    "node {} overloaded: its input queue is full; message refused",
                    self.id
                )))
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                Err(Status::unavailable("node is stopping"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::raft_peer_server::RaftPeer;

    fn vote_request(from: NodeId, to: NodeId) -> pb::PeerEnvelope {
        pb::PeerEnvelope {
            cluster_id: "test".into(),
            from,
            to,
            message: Some(message_to_pb(Message::RequestVoteRequest {
                term: 1,
                last_log_index: 0,
                last_log_term: 0,
                transfer: false,
            })),
        }
    }

    /// The peer service of node 1 of cluster `test` (members 1, 2, 3), with an input queue of
    /// `capacity` and its receiving end.
    fn service(capacity: usize) -> (PeerService, mpsc::Receiver<Input>) {
        let (inputs, queue) = mpsc::sync_channel(capacity);
        let service = PeerService::new(
            "test".into(),
            1,
            BTreeSet::from([1, 2, 3]),
            inputs,
            Partition::default(),
            Logger::root(slog::Discard, slog::o!()),
        );
        (service, queue)
    }

    #[tokio::test]
    async fn a_peer_message_that_finds_the_queue_full_is_refused_and_counted() {
        let (service, queue) = service(1);
        service
            .deliver(Request::new(vote_request(2, 1)))
            .await
            .expect("the first message fits");
        for _ in 0..3 {
            let status = service
                .deliver(Request::new(vote_request(3, 1)))
                .await
                .expect_err("the queue is full");
            assert_eq!(status.code(), tonic::Code::ResourceExhausted);
            assert_eq!(
                status.message(),
                "node 1 overloaded: its input queue is full; message refused"
            );
        }
        assert_eq!(service.refused().total(), 3);
        assert!(matches!(
            queue.try_recv(),
            Ok(Input::Message { from: 2, .. })
        ));
        assert!(queue.try_recv().is_err());
    }

    #[tokio::test]
    async fn malformed_and_misrouted_messages_are_refused_and_counted() {
        let (service, queue) = service(4);
        let no_message = pb::PeerEnvelope {
            message: None,
            ..vote_request(2, 1)
        };
        let other_cluster = pb::PeerEnvelope {
            cluster_id: "other".into(),
            ..vote_request(2, 1)
        };
        let cases = [
            (no_message, tonic::Code::InvalidArgument),
            (other_cluster, tonic::Code::FailedPrecondition),
            (vote_request(9, 1), tonic::Code::PermissionDenied),
            (vote_request(2, 3), tonic::Code::InvalidArgument),
        ];
        for (count, (envelope, code)) in (1..).zip(cases) {
            let status = service
                .deliver(Request::new(envelope))
                .await
                .expect_err("refused");
            assert_eq!(status.code(), code, "{status}");
            assert_eq!(service.invalid().total(), count);
        }
        // Nothing reached the Peer; a good message still does, and counts nothing.
        assert!(queue.try_recv().is_err());
        service
            .deliver(Request::new(vote_request(2, 1)))
            .await
            .expect("delivered");
        assert!(matches!(
            queue.try_recv(),
            Ok(Input::Message { from: 2, .. })
        ));
        assert_eq!(
            (service.invalid().total(), service.refused().total()),
            (4, 0)
        );
    }
}
