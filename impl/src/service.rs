//! The client API: put, get, delete and status over gRPC, and leadership transfer. Every
//! read and write goes through the log.
//!
//! A call that finds the driver's input queue full, or too many proposals waiting to commit,
//! is answered `RESOURCE_EXHAUSTED`: the node is overloaded and did not propose the command,
//! so retrying later is safe.

use crate::command::Command;
use crate::convert::{validate_key, validate_value};
use crate::driver::{Applied, Input, NodeState, ProposeError};
use crate::kv::CommandResult;
use model::NodeId;
use rdb_proto as pb;
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

/// How long the server waits for a command to commit before it answers that the outcome is
/// unknown.
pub const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// How long a leadership transfer is followed before the call answers that its outcome is
/// unknown. A leader gives a transfer up after one election timeout, far sooner.
pub const TRANSFER_WAIT: Duration = Duration::from_secs(10);

/// How often a transfer in progress is looked at.
const TRANSFER_POLL: Duration = Duration::from_millis(10);

/// The `Kv` service of one node.
pub struct KvService {
    cluster_id: String,
    peers: BTreeMap<NodeId, String>,
    inputs: mpsc::SyncSender<Input>,
}

impl KvService {
    /// The service for a node whose cluster is `peers` (id to address).
    pub fn new(
        cluster_id: String,
        peers: BTreeMap<NodeId, String>,
        inputs: mpsc::SyncSender<Input>,
    ) -> Self {
        KvService {
            cluster_id,
            peers,
            inputs,
        }
    }

    async fn execute(&self, command: Command) -> Result<Applied, Status> {
        let (reply, outcome) = oneshot::channel();
        self.queue(Input::Propose { command, reply })?;
        match tokio::time::timeout(COMMIT_WAIT, outcome).await {
            Err(_) => Err(Status::deadline_exceeded(format!(
                "not committed within {COMMIT_WAIT:?}; the outcome is unknown"
            ))),
            // After the proposal, only UNKNOWN or DEADLINE_EXCEEDED: a client retries
            // UNAVAILABLE, which must mean the command was not proposed.
            Ok(Err(_)) => Err(Status::unknown("node stopped; the outcome is unknown")),
            Ok(Ok(Ok(applied))) => Ok(applied),
            Ok(Ok(Err(error))) => Err(self.status_for(error)),
        }
    }

    fn status_for(&self, error: ProposeError) -> Status {
        let no_effect = !matches!(error, ProposeError::Stopped | ProposeError::Failed { .. });
        let status = self.status_of(error);
        if no_effect {
            without_effect(status)
        } else {
            status
        }
    }

    fn status_of(&self, error: ProposeError) -> Status {
        match error {
            ProposeError::NotLeader {
                leader: Some(leader),
            } => {
                let addr = self.peers.get(&leader).cloned().unwrap_or_default();
                let mut status = Status::failed_precondition(format!(
                    "not the leader; the leader is node {leader} at {addr}"
                ));
                status
                    .metadata_mut()
                    .insert(pb::LEADER_ID_METADATA, MetadataValue::from(leader));
                if let Ok(value) = addr.parse() {
                    status
                        .metadata_mut()
                        .insert(pb::LEADER_ADDR_METADATA, value);
                }
                status
            }
            ProposeError::NotLeader { leader: None } => {
                Status::unavailable("not the leader, and no leader is known yet; retry shortly")
            }
            ProposeError::Overwritten => Status::aborted(
                "another entry committed in the command's place; it did not take effect, retry it",
            ),
            ProposeError::Stopped => Status::unknown("node is stopping; the outcome is unknown"),
            ProposeError::Overloaded => overloaded("too many commands are waiting to commit"),
            ProposeError::Failed { cause } => {
                Status::unknown(format!("node failed: {cause}; the outcome is unknown"))
            }
        }
    }

    /// Hands `input` to the driver without waiting: a full queue means overload.
    fn queue(&self, input: Input) -> Result<(), Status> {
        self.inputs.try_send(input).map_err(|error| {
            without_effect(match error {
                mpsc::TrySendError::Full(_) => overloaded("its input queue is full"),
                mpsc::TrySendError::Disconnected(_) => Status::unavailable("node is stopping"),
            })
        })
    }

    /// Starts handing leadership to `target` and follows the transfer to its end.
    async fn transfer(&self, target: NodeId) -> Result<pb::TransferLeaderResponse, Status> {
        if !self.peers.contains_key(&target) {
            return Err(Status::invalid_argument(format!(
                "node {target} is not a member of cluster {}; members are {:?}",
                self.cluster_id,
                self.peers.keys().collect::<Vec<_>>()
            )));
        }
        let (reply, started) = oneshot::channel();
        self.queue(Input::Transfer { to: target, reply })?;
        let started = started
            .await
            .map_err(|_| Status::unavailable("node is stopping"))?;
        let term = match started {
            Ok(term) => term,
            Err(model::PeerError::NotLeader { leader }) => {
                return Err(self.status_for(ProposeError::NotLeader { leader }))
            }
            Err(model::PeerError::InvalidTransfer(id)) => {
                return Err(Status::invalid_argument(format!(
                    "cannot transfer leadership to node {id}: it is this node"
                )))
            }
            Err(other) => return Err(Status::internal(other.to_string())),
        };
        let deadline = tokio::time::Instant::now() + TRANSFER_WAIT;
        loop {
            let state = self.inspect().await?;
            if state.term > term && state.leader == Some(target) {
                return Ok(pb::TransferLeaderResponse {
                    leader_id: target,
                    term: state.term,
                });
            }
            if state.term > term {
                if let Some(other) = state.leader {
                    return Err(Status::aborted(format!(
                        "node {other} took over in term {}, not node {target}",
                        state.term
                    )));
                }
            } else if state.transferee != Some(target) {
                return Err(Status::aborted(format!(
                    "the transfer to node {target} did not complete within an election \
                     timeout; node {} gave it up and is the {} of term {term}",
                    state.id, state.role
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "the transfer to node {target} did not finish within {TRANSFER_WAIT:?}; \
                     see `rdb status`"
                )));
            }
            tokio::time::sleep(TRANSFER_POLL).await;
        }
    }

    async fn inspect(&self) -> Result<NodeState, Status> {
        let (reply, state) = oneshot::channel();
        self.queue(Input::Inspect {
            with_log: false,
            reply,
        })?;
        state
            .await
            .map_err(|_| Status::unavailable("node is stopping"))
    }
}

fn written(applied: Applied) -> pb::WriteResponse {
    let existed = matches!(applied.result, CommandResult::Written { existed: true });
    pb::WriteResponse {
        index: applied.index,
        existed,
    }
}

/// Marks `status` as the answer to a command that did not take effect and never will
/// ([`pb::NO_EFFECT_METADATA`]): the client may retry it.
fn without_effect(mut status: Status) -> Status {
    status
        .metadata_mut()
        .insert(pb::NO_EFFECT_METADATA, MetadataValue::from_static("1"));
    status
}

fn overloaded(why: &str) -> Status {
    Status::resource_exhausted(format!(
        "node overloaded: {why}; the command was not proposed, retry later"
    ))
}

fn invalid(error: crate::convert::ConvertError) -> Status {
    Status::invalid_argument(error.to_string())
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let pb::PutRequest { key, value } = request.into_inner();
        validate_key(&key).map_err(invalid)?;
        validate_value(&value).map_err(invalid)?;
        let applied = self.execute(Command::Put { key, value }).await?;
        Ok(Response::new(written(applied)))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let pb::DeleteRequest { key } = request.into_inner();
        validate_key(&key).map_err(invalid)?;
        let applied = self.execute(Command::Delete { key }).await?;
        Ok(Response::new(written(applied)))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let pb::GetRequest { key } = request.into_inner();
        validate_key(&key).map_err(invalid)?;
        let applied = self.execute(Command::Get { key }).await?;
        let value = match applied.result {
            CommandResult::Read { value } => value,
            CommandResult::Written { .. } => {
                return Err(Status::internal("a read applied as a write"));
            }
        };
        Ok(Response::new(pb::GetResponse {
            index: applied.index,
            found: value.is_some(),
            value: value.unwrap_or_default(),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        let state = self.inspect().await?;
        let leader_addr = state
            .leader
            .and_then(|leader| self.peers.get(&leader).cloned())
            .unwrap_or_default();
        Ok(Response::new(pb::NodeStatus {
            id: state.id,
            cluster_id: self.cluster_id.clone(),
            role: state.role.to_string(),
            term: state.term,
            voted_for: state.voted_for.unwrap_or(0),
            leader_id: state.leader.unwrap_or(0),
            leader_addr,
            last_log_index: state.last_log_index,
            last_log_term: state.last_log_term,
            commit_index: state.commit_index,
            applied_index: state.applied_index,
            refused_peer_messages: state.refused_messages,
            transferring_to: state.transferee.unwrap_or(0),
            members: self
                .peers
                .iter()
                .map(|(id, addr)| pb::Member {
                    id: *id,
                    addr: addr.clone(),
                })
                .collect(),
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let pb::TransferLeaderRequest { target } = request.into_inner();
        Ok(Response::new(self.transfer(target).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::kv_server::Kv;

    #[tokio::test]
    async fn a_full_input_queue_answers_resource_exhausted_and_proposes_nothing() {
        let (inputs, queue) = mpsc::sync_channel(1);
        let service = KvService::new("test".into(), BTreeMap::new(), inputs);
        let (reply, _outcome) = oneshot::channel();
        service
            .queue(Input::Inspect {
                with_log: false,
                reply,
            })
            .expect("the first input fits");
        let status = service
            .put(Request::new(pb::PutRequest {
                key: "k".into(),
                value: b"v".to_vec(),
            }))
            .await
            .expect_err("the queue is full");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "node overloaded: its input queue is full; the command was not proposed, retry later"
        );
        // Only the input queued first is there: the put never reached the driver.
        assert!(matches!(queue.try_recv(), Ok(Input::Inspect { .. })));
        assert!(queue.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_transfer_to_a_stranger_is_refused_without_reaching_the_driver() {
        let (inputs, queue) = mpsc::sync_channel(1);
        let peers = BTreeMap::from([(1, "a:1".to_string()), (2, "b:2".to_string())]);
        let service = KvService::new("test".into(), peers, inputs);
        for target in [0, 7] {
            let status = service
                .transfer_leader(Request::new(pb::TransferLeaderRequest { target }))
                .await
                .expect_err("not a member");
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert_eq!(
                status.message(),
                format!("node {target} is not a member of cluster test; members are [1, 2]")
            );
        }
        assert!(queue.try_recv().is_err(), "nothing reached the driver");
    }

    #[test]
    fn too_many_pending_proposals_is_resource_exhausted() {
        let (inputs, _queue) = mpsc::sync_channel(1);
        let service = KvService::new("test".into(), BTreeMap::new(), inputs);
        let status = service.status_for(ProposeError::Overloaded);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().starts_with("node overloaded: "),
            "{status}"
        );
    }

    /// The client's retry rule ([`crate::client::classify`]) on what this service answers:
    /// only errors after which the command cannot take effect say so.
    #[test]
    fn only_errors_without_effect_are_marked_retryable() {
        use crate::client::{classify, Effect};
        use tonic::Code;
        let (inputs, _queue) = mpsc::sync_channel(1);
        let peers = BTreeMap::from([(2, "127.0.0.1:7002".to_string())]);
        let service = KvService::new("test".into(), peers, inputs);
        let verdict = |error| classify(&service.status_for(error));
        assert_eq!(
            verdict(ProposeError::NotLeader { leader: Some(2) }),
            Effect::Redirect(Some("127.0.0.1:7002".into()))
        );
        assert_eq!(
            verdict(ProposeError::NotLeader { leader: None }),
            Effect::NoEffect(Code::Unavailable)
        );
        assert_eq!(
            verdict(ProposeError::Overwritten),
            Effect::NoEffect(Code::Aborted)
        );
        assert_eq!(
            verdict(ProposeError::Overloaded),
            Effect::NoEffect(Code::ResourceExhausted)
        );
        assert_eq!(verdict(ProposeError::Stopped), Effect::Unknown);
        let failed = ProposeError::Failed {
            cause: "disk full".into(),
        };
        assert_eq!(verdict(failed), Effect::Unknown);
        // The same codes without the server's word: the outcome is unknown.
        assert_eq!(
            classify(&Status::unavailable("connection reset")),
            Effect::Unknown
        );
        assert_eq!(classify(&Status::aborted("h2 aborted")), Effect::Unknown);
        assert_eq!(
            classify(&Status::unavailable(
                "tcp connect error: Connection refused (os error 111)"
            )),
            Effect::NoEffect(Code::Unavailable)
        );
        assert_eq!(
            classify(&Status::invalid_argument("bad key")),
            Effect::Rejected
        );
    }
}
