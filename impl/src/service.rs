//! The client API: put, get, delete and status over gRPC. Every call goes through the log.

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

/// The `Kv` service of one node.
pub struct KvService {
    cluster_id: String,
    peers: BTreeMap<NodeId, String>,
    inputs: mpsc::Sender<Input>,
}

impl KvService {
    /// The service for a node whose cluster is `peers` (id to address).
    pub fn new(
        cluster_id: String,
        peers: BTreeMap<NodeId, String>,
        inputs: mpsc::Sender<Input>,
    ) -> Self {
        KvService {
            cluster_id,
            peers,
            inputs,
        }
    }

    async fn execute(&self, command: Command) -> Result<Applied, Status> {
        let (reply, outcome) = oneshot::channel();
        self.inputs
            .send(Input::Propose { command, reply })
            .map_err(|_| Status::unavailable("node is stopping"))?;
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
        }
    }

    async fn inspect(&self) -> Result<NodeState, Status> {
        let (reply, state) = oneshot::channel();
        self.inputs
            .send(Input::Inspect {
                with_log: false,
                reply,
            })
            .map_err(|_| Status::unavailable("node is stopping"))?;
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
}
