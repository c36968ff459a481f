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
use std::sync::{Arc, RwLock};
use std::time::Duration;
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
/// Messages queued for one peer at most; beyond it new ones are dropped (Raft resends).
pub const PEER_QUEUE: usize = 8192;

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

/// Outbound messages over gRPC: one queue and one task per peer.
pub struct GrpcOutbound {
    cluster_id: String,
    id: NodeId,
    links: BTreeMap<NodeId, async_mpsc::Sender<pb::PeerEnvelope>>,
    partition: Partition,
    logger: Logger,
}

impl GrpcOutbound {
    /// Starts one link task per peer other than `id` on `runtime`; over mutual TLS with
    /// `tls`, checking that each peer's certificate names that peer.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        cluster_id: String,
        id: NodeId,
        peers: &BTreeMap<NodeId, String>,
        partition: Partition,
        logger: Logger,
        tls: Option<&TlsCredentials>,
    ) -> Self {
        let mut links = BTreeMap::new();
        for (&peer, addr) in peers.iter().filter(|(peer, _)| **peer != id) {
            let (sender, receiver) = async_mpsc::channel(PEER_QUEUE);
            let logger = logger.new(slog::o!("peer" => peer, "peer_addr" => addr.clone()));
            let tls = tls.map(|tls| tls.peer_client_config(peer));
            runtime.spawn(run_link(addr.clone(), tls, receiver, logger));
            links.insert(peer, sender);
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
        if link.try_send(envelope).is_err() {
            debug!(self.logger, "peer queue full or closed; message dropped"; "to" => to);
        }
    }

    /// Congested when fewer than a quorum of followers have an idle queue (a commit needs a
    /// majority counting the leader, so the `(n/2)`-th least busy follower decides).
    fn congested(&self) -> bool {
        let mut backlogs: Vec<usize> = self
            .links
            .values()
            .map(|link| link.max_capacity() - link.capacity())
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
/// Peer resends what matters) and the link backs off.
async fn run_link(
    addr: String,
    tls: Option<ClientTlsConfig>,
    mut queue: async_mpsc::Receiver<pb::PeerEnvelope>,
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
            while queue.recv().await.is_some() {}
            return;
        }
    };
    let mut client = pb::raft_peer_client::RaftPeerClient::new(endpoint.connect_lazy());
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
                while queue.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                while queue.try_recv().is_ok() {}
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
    inputs: mpsc::Sender<Input>,
    partition: Partition,
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
        inputs: mpsc::Sender<Input>,
        partition: Partition,
        logger: Logger,
    ) -> Self {
        PeerService {
            cluster_id,
            id,
            members,
            inputs,
            partition,
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
            true => Some(tls::certified_sender(&request).inspect_err(|status| {
                warn!(self.logger, "peer message refused"; "reason" => status.message());
            })?),
            false => None,
        };
        let envelope = Envelope::try_from(request.into_inner()).map_err(|error| {
            warn!(self.logger, "malformed peer message refused"; "error" => %error);
            Status::invalid_argument(format!("malformed peer message: {error}"))
        })?;
        let checked = certified
            .map_or(Ok(()), |node| {
                tls::check_claimed_sender(node, envelope.from)
            })
            .and_then(|()| self.check_route(&envelope));
        if let Err(status) = checked {
            warn!(self.logger, "peer message refused"; "from" => envelope.from, "reason" => status.message());
            return Err(status);
        }
        if self.partition.is_blocked(envelope.from) {
            return Err(Status::unavailable(
                "partitioned from the sender (fault injection)",
            ));
        }
        self.inputs
            .send(Input::Message {
                from: envelope.from,
                message: envelope.message,
            })
            .map_err(|_| Status::unavailable("node is stopping"))?;
        Ok(Response::new(pb::DeliverAck {}))
    }
}
