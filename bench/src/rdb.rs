//! rdb's [`Peer`] in memory.
//!
//! One I/O cycle of a node: feed the Peer every message of the round and merge the outputs
//! ([`Output::merge`], as a node's driver does for a batch of inputs); send `send_now`; write
//! `persist` into an in-memory copy of [`Durable`]; send `send_after_persist`; apply entries up
//! to the commit index. A step that has `send_now` messages and needs a persist ends the cycle
//! early, as the ordering contract on [`Output`] requires. Timers are never armed: nothing
//! here waits for time.
//!
//! One thing the driver adds: when the leader's commit index advances it fires the leader's
//! heartbeat at once, so that the followers learn the new commit index in the next round
//! rather than at the next heartbeat or proposal (the Peer leaves that timing to its driver).

use crate::{fail, BenchError, Cluster, Network, NodeId, StateMachine, LEADER, NODES};
use bytes::Bytes;
use model::{Config, Durable, Index, Message, Output, Peer, RoleKind, Timer};

/// One node: the Peer, what its storage holds, and its state machine.
struct Node {
    peer: Peer<Bytes>,
    stored: Durable<Bytes>,
    applied_index: Index,
    sm: StateMachine,
}

/// Three Peers and the network between them.
pub struct RdbCluster {
    nodes: Vec<Node>,
    net: Network<Message<Bytes>>,
}

fn peer_error(id: NodeId, error: model::PeerError) -> BenchError {
    BenchError(format!("rdb-peer: node {id}: {error}"))
}

impl RdbCluster {
    fn node(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// One I/O cycle of node `id` for `output`.
    fn handle_output(&mut self, id: NodeId, mut output: Output<Bytes>) -> Result<(), BenchError> {
        let node = &mut self.nodes[id as usize - 1];
        if output.commit.is_some() && node.peer.role_kind() == RoleKind::Leader {
            output.merge(node.peer.handle_timeout(Timer::Heartbeat));
        }
        for (to, message) in output.send_now {
            self.net.send(id, to, message)?;
        }
        let node = &mut self.nodes[id as usize - 1];
        if output.persist.hard_state {
            node.stored.term = node.peer.term();
            node.stored.voted_for = node.peer.voted_for();
        }
        if let Some(from) = output.persist.log_from {
            let from = from as usize - 1;
            node.stored.log.truncate(from);
            node.stored.log.extend_from_slice(&node.peer.log()[from..]);
        }
        for (to, message) in output.send_after_persist {
            self.net.send(id, to, message)?;
        }
        let node = &mut self.nodes[id as usize - 1];
        let commit = node.peer.commit_index();
        while node.applied_index < commit {
            node.applied_index += 1;
            let entry = node
                .peer
                .entry(node.applied_index)
                .expect("committed entries are in the log");
            // A new leader's blank entry (§8) carries no command.
            if let Some(command) = &entry.command {
                node.sm.apply(command)?;
            }
        }
        Ok(())
    }

    /// Delivers rounds of messages until none is left.
    fn settle(&mut self) -> Result<(), BenchError> {
        while !self.net.is_idle() {
            let mut round = self.net.take_round();
            for (index, inbox) in round.iter_mut().enumerate() {
                if inbox.is_empty() {
                    continue;
                }
                let id = index as NodeId + 1;
                let mut output = Output::default();
                for (from, message) in inbox.drain(..) {
                    let step = self
                        .node(id)
                        .peer
                        .handle_message(from, message)
                        .map_err(|e| peer_error(id, e))?;
                    // A step that sends at once and also needs a persist is flushed before
                    // the Peer sees more input (the ordering contract on `Output`).
                    let flush = !step.send_now.is_empty() && step.persist.is_needed();
                    output.merge(step);
                    if flush {
                        self.handle_output(id, std::mem::take(&mut output))?;
                    }
                }
                if !output.is_empty() {
                    self.handle_output(id, output)?;
                }
            }
            self.net.recycle(round);
        }
        Ok(())
    }
}

impl Cluster for RdbCluster {
    const NAME: &'static str = "rdb-peer";

    fn elect() -> Result<Self, BenchError> {
        let members = crate::members();
        let mut nodes = Vec::with_capacity(NODES);
        for &id in &members {
            let config = Config::new(id, members.clone());
            // The boot output only asks for the election timer, which the driver never arms.
            let (peer, _) =
                Peer::restore(config, Durable::default()).map_err(|e| peer_error(id, e))?;
            nodes.push(Node {
                peer,
                stored: Durable::default(),
                applied_index: 0,
                sm: StateMachine::default(),
            });
        }
        let mut cluster = RdbCluster {
            nodes,
            net: Network::default(),
        };
        let output = cluster.node(LEADER).peer.handle_timeout(Timer::Election);
        cluster.handle_output(LEADER, output)?;
        cluster.settle()?;
        for node in &cluster.nodes {
            if node.peer.leader() != Some(LEADER) {
                fail!(
                    "rdb-peer: node {} follows {:?} after the election, not node {LEADER}",
                    node.peer.id(),
                    node.peer.leader()
                );
            }
        }
        Ok(cluster)
    }

    fn replicate(&mut self, commands: &[Bytes]) -> Result<(), BenchError> {
        let (first, output) = self
            .node(LEADER)
            .peer
            .propose(commands.to_vec())
            .map_err(|e| peer_error(LEADER, e))?;
        let last = first + commands.len() as Index - 1;
        self.handle_output(LEADER, output)?;
        self.settle()?;
        for node in &self.nodes {
            if node.applied_index < last {
                fail!(
                    "rdb-peer: node {} applied up to {} after the cluster went quiet; {last} was proposed",
                    node.peer.id(),
                    node.applied_index
                );
            }
        }
        Ok(())
    }

    fn state_machines(&self) -> Vec<&StateMachine> {
        self.nodes.iter().map(|node| &node.sm).collect()
    }

    fn check_storage(&self) -> Result<(), BenchError> {
        let leader_log = self.nodes[LEADER as usize - 1].peer.log();
        for node in &self.nodes {
            let id = node.peer.id();
            if node.stored != *node.peer.durable() {
                fail!("rdb-peer: node {id}'s storage differs from its Peer's durable state");
            }
            if node.peer.commit_index() != node.peer.last_index() {
                fail!(
                    "rdb-peer: node {id} committed {} of {} entries",
                    node.peer.commit_index(),
                    node.peer.last_index()
                );
            }
            if node.peer.log() != leader_log {
                fail!("rdb-peer: node {id}'s log differs from the leader's");
            }
        }
        Ok(())
    }

    fn messages(&self) -> u64 {
        self.net.sent()
    }
}
