//! raft-rs's `RawNode` over its `MemStorage`, in memory.
//!
//! One I/O cycle of a node: step every message of the round into the `RawNode`; then, if it has
//! a `Ready`, send its messages, apply its committed entries, append its entries and write its
//! hard state into `MemStorage`, send its persisted messages, `advance`, record the new commit
//! index in storage, send the light ready's messages, apply its committed entries, and
//! `advance_apply`. The node is never ticked: nothing here waits for time.
//!
//! Settings that differ from raft-rs's defaults, to match what rdb's Peer does: no limit on
//! the bytes per append message (the Peer sends everything from a follower's next index). A
//! batch is one `MsgPropose` carrying all of its entries, stepped into the leader, as
//! `RawNode::propose` does for one entry. Logs go to a discarding logger.

use crate::{fail, BenchError, Cluster, Network, NodeId, StateMachine, LEADER, NODES};
use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, EntryType, Message, MessageType};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole, Storage, NO_LIMIT};

/// One node: the core over its storage, and its state machine.
struct Node {
    raw: RawNode<MemStorage>,
    sm: StateMachine,
}

/// Three `RawNode`s and the network between them.
pub struct RaftRsCluster {
    nodes: Vec<Node>,
    net: Network<Message>,
}

fn raft_error(id: NodeId, error: raft::Error) -> BenchError {
    BenchError(format!("raft-rs: node {id}: {error}"))
}

fn apply(id: NodeId, sm: &mut StateMachine, entries: Vec<Entry>) -> Result<(), BenchError> {
    for entry in entries {
        match entry.get_entry_type() {
            // A new leader's empty entry of its term.
            EntryType::EntryNormal if entry.data.is_empty() => {}
            EntryType::EntryNormal => sm.apply(&entry.data)?,
            other => fail!("raft-rs: node {id} committed an entry of type {other:?}"),
        }
    }
    Ok(())
}

fn send(net: &mut Network<Message>, id: NodeId, messages: Vec<Message>) -> Result<(), BenchError> {
    for message in messages {
        let to = message.to;
        net.send(id, to, message)?;
    }
    Ok(())
}

impl RaftRsCluster {
    /// One I/O cycle of node `id`, if its core has anything ready.
    fn handle_ready(&mut self, id: NodeId) -> Result<bool, BenchError> {
        let node = &mut self.nodes[id as usize - 1];
        if !node.raw.has_ready() {
            return Ok(false);
        }
        let store = node.raw.store().clone();
        let mut ready = node.raw.ready();
        send(&mut self.net, id, ready.take_messages())?;
        if !ready.snapshot().is_empty() {
            fail!("raft-rs: node {id} was sent a snapshot");
        }
        apply(id, &mut node.sm, ready.take_committed_entries())?;
        store
            .wl()
            .append(ready.entries())
            .map_err(|e| raft_error(id, e))?;
        if let Some(hard_state) = ready.hs() {
            store.wl().set_hardstate(hard_state.clone());
        }
        send(&mut self.net, id, ready.take_persisted_messages())?;
        let mut light = node.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            store.wl().mut_hard_state().set_commit(commit);
        }
        send(&mut self.net, id, light.take_messages())?;
        apply(id, &mut node.sm, light.take_committed_entries())?;
        node.raw.advance_apply();
        Ok(true)
    }

    /// Delivers rounds of messages until none is left and no node has anything ready.
    fn settle(&mut self) -> Result<(), BenchError> {
        loop {
            let mut round = self.net.take_round();
            let mut busy = false;
            for (index, inbox) in round.iter_mut().enumerate() {
                let id = index as NodeId + 1;
                let node = &mut self.nodes[index];
                for (_, message) in inbox.drain(..) {
                    node.raw.step(message).map_err(|e| raft_error(id, e))?;
                }
                busy |= self.handle_ready(id)?;
            }
            self.net.recycle(round);
            if !busy && self.net.is_idle() {
                return Ok(());
            }
        }
    }
}

impl Cluster for RaftRsCluster {
    const NAME: &'static str = "raft-rs";

    fn elect() -> Result<Self, BenchError> {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let members = crate::members();
        let mut nodes = Vec::with_capacity(NODES);
        for &id in &members {
            let config = Config {
                id,
                max_size_per_msg: NO_LIMIT,
                ..Config::default()
            };
            let storage = MemStorage::new_with_conf_state(ConfState::from((
                members.clone(),
                Vec::<NodeId>::new(),
            )));
            let raw = RawNode::new(&config, storage, &logger).map_err(|e| raft_error(id, e))?;
            nodes.push(Node {
                raw,
                sm: StateMachine::default(),
            });
        }
        let mut cluster = RaftRsCluster {
            nodes,
            net: Network::default(),
        };
        cluster.nodes[LEADER as usize - 1]
            .raw
            .campaign()
            .map_err(|e| raft_error(LEADER, e))?;
        cluster.settle()?;
        let leader = &cluster.nodes[LEADER as usize - 1].raw.raft;
        if leader.state != StateRole::Leader {
            fail!(
                "raft-rs: node {LEADER} is {:?} after the election",
                leader.state
            );
        }
        let committed = leader.raft_log.committed;
        for (index, node) in cluster.nodes.iter().enumerate() {
            if node.raw.raft.leader_id != LEADER || node.raw.raft.raft_log.applied != committed {
                fail!(
                    "raft-rs: node {} follows {} and applied {} after the election; expected {LEADER} and {committed}",
                    index + 1,
                    node.raw.raft.leader_id,
                    node.raw.raft.raft_log.applied
                );
            }
        }
        Ok(cluster)
    }

    fn replicate(&mut self, commands: &[Bytes]) -> Result<(), BenchError> {
        let leader = &mut self.nodes[LEADER as usize - 1].raw;
        let last = leader.raft.raft_log.last_index() + commands.len() as u64;
        let mut proposal = Message::default();
        proposal.set_msg_type(MessageType::MsgPropose);
        proposal.from = LEADER;
        let entries: Vec<Entry> = commands
            .iter()
            .map(|command| Entry {
                data: command.clone(),
                ..Entry::default()
            })
            .collect();
        proposal.set_entries(entries.into());
        leader.step(proposal).map_err(|e| raft_error(LEADER, e))?;
        self.settle()?;
        for (index, node) in self.nodes.iter().enumerate() {
            let applied = node.raw.raft.raft_log.applied;
            if applied < last {
                fail!(
                    "raft-rs: node {} applied up to {applied} after the cluster went quiet; {last} was proposed",
                    index + 1
                );
            }
        }
        Ok(())
    }

    fn state_machines(&self) -> Vec<&StateMachine> {
        self.nodes.iter().map(|node| &node.sm).collect()
    }

    fn check_storage(&self) -> Result<(), BenchError> {
        let leader_last = self.nodes[LEADER as usize - 1]
            .raw
            .raft
            .raft_log
            .last_index();
        for (index, node) in self.nodes.iter().enumerate() {
            let id = index + 1;
            let log = &node.raw.raft.raft_log;
            let store = node.raw.store();
            let stored_last = store
                .last_index()
                .map_err(|e| raft_error(id as NodeId, e))?;
            let stored_commit = store.rl().hard_state().commit;
            if stored_last != log.last_index() || log.last_index() != leader_last {
                fail!(
                    "raft-rs: node {id} stores up to {stored_last}, its log ends at {}, the leader's at {leader_last}",
                    log.last_index()
                );
            }
            if log.committed != leader_last || stored_commit != leader_last {
                fail!(
                    "raft-rs: node {id} committed {} (stored {stored_commit}) of {leader_last} entries",
                    log.committed
                );
            }
        }
        Ok(())
    }

    fn messages(&self) -> u64 {
        self.net.sent()
    }
}
