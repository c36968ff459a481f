//! # rdb's consensus core against raft-rs, side by side
//!
//! Two in-memory clusters of three nodes run the same workload in one process: one made of
//! rdb's sans-IO [`model::Peer`], one of raft-rs's `RawNode` over its `MemStorage`. Nothing
//! touches a disk or a socket, so the figures compare what the protocol cores (and the minimal
//! driver each one needs) cost in CPU, not what a node costs.
//!
//! The workload, identical for both:
//! 1. three nodes boot empty; node 1 starts an election and the cluster settles (not timed);
//! 2. the commands are proposed on node 1, `batch` per proposal; after each proposal every
//!    message is delivered in memory until all three nodes have applied the whole batch;
//! 3. at the end every node must have applied every command, in order, with the same bytes,
//!    and its storage must agree with its core; any shortfall is an error, never a figure.
//!
//! Delivery goes in rounds: in each round every node takes every message addressed to it in
//! the previous round, then does one I/O cycle (persist into its in-memory storage, send,
//! apply). See [`rdb`] and [`raftrs`] for what one cycle is for each core.

pub mod raftrs;
pub mod rdb;

use bytes::Bytes;
use std::time::{Duration, Instant};

/// A node id, 1 to [`NODES`].
pub type NodeId = u64;

/// Nodes per cluster.
pub const NODES: usize = 3;

/// The node that is elected before the timed part and takes every proposal.
pub const LEADER: NodeId = 1;

/// Every node id of the cluster.
pub fn members() -> Vec<NodeId> {
    (1..=NODES as NodeId).collect()
}

/// A run that did not do what it must: the figures of such a run are never reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchError(pub String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

/// Returns early with a [`BenchError`] built like `format!`.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::BenchError(format!($($arg)*)))
    };
}

/// The smallest command: its first 8 bytes are its sequence number.
pub const MIN_VALUE_BYTES: usize = 8;

/// Command number `seq` of `value_bytes` bytes: the sequence number (little-endian) followed by
/// filler derived from it, so that two different commands never have the same bytes.
pub fn command(seq: u64, value_bytes: usize) -> Bytes {
    assert!(
        value_bytes >= MIN_VALUE_BYTES,
        "a command holds at least its sequence number"
    );
    let mut value = Vec::with_capacity(value_bytes);
    value.extend_from_slice(&seq.to_le_bytes());
    value.extend((MIN_VALUE_BYTES..value_bytes).map(|i| (seq as u8).wrapping_add(i as u8)));
    let command = Bytes::from(value);
    // The first clone of a `Bytes` made from a `Vec` moves it to a shared allocation: do it
    // here, so that no timed run pays it.
    drop(command.clone());
    command
}

/// The commands of one run: `0..entries`.
pub fn commands(entries: usize, value_bytes: usize) -> Vec<Bytes> {
    (0..entries as u64)
        .map(|seq| command(seq, value_bytes))
        .collect()
}

/// A node's replicated state machine: it checks that commands arrive in proposal order and
/// keeps a digest of every byte applied, so that nodes can be compared at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateMachine {
    /// Commands applied so far.
    pub applied: u64,
    /// A hash of the bytes and lengths of every applied command, in order.
    pub digest: u64,
}

impl Default for StateMachine {
    fn default() -> Self {
        StateMachine {
            applied: 0,
            digest: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl StateMachine {
    /// Applies one committed command; it must be the next one proposed.
    pub fn apply(&mut self, command: &[u8]) -> Result<(), BenchError> {
        let Some(seq) = command.get(..MIN_VALUE_BYTES) else {
            fail!("applied a command of {} bytes", command.len());
        };
        let seq = u64::from_le_bytes(seq.try_into().expect("8 bytes"));
        if seq != self.applied {
            fail!(
                "applied command {seq} where command {} was due",
                self.applied
            );
        }
        // A word at a time, so that checking costs little beside the cores being measured.
        let mut words = command.chunks_exact(8);
        for word in &mut words {
            self.mix(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..words.remainder().len()].copy_from_slice(words.remainder());
        self.mix(u64::from_le_bytes(tail) ^ ((command.len() as u64) << 56));
        self.applied += 1;
        Ok(())
    }

    fn mix(&mut self, word: u64) {
        self.digest = (self.digest ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }

    /// The state every node must reach after applying `commands`.
    pub fn expected(commands: &[Bytes]) -> Self {
        let mut sm = StateMachine::default();
        for command in commands {
            sm.apply(command).expect("commands are numbered in order");
        }
        sm
    }
}

/// The in-memory network: one inbox per node, delivered a round at a time.
pub struct Network<M> {
    inboxes: Vec<Vec<(NodeId, M)>>,
    spare: Vec<Vec<(NodeId, M)>>,
    sent: u64,
}

impl<M> Default for Network<M> {
    fn default() -> Self {
        Network {
            inboxes: (0..NODES).map(|_| Vec::new()).collect(),
            spare: (0..NODES).map(|_| Vec::new()).collect(),
            sent: 0,
        }
    }
}

impl<M> Network<M> {
    /// Queues `message` from `from` for `to`'s next round.
    pub fn send(&mut self, from: NodeId, to: NodeId, message: M) -> Result<(), BenchError> {
        let Some(inbox) = to
            .checked_sub(1)
            .and_then(|i| self.inboxes.get_mut(i as usize))
        else {
            fail!("node {from} sent a message to unknown node {to}");
        };
        inbox.push((from, message));
        self.sent += 1;
        Ok(())
    }

    /// Whether no message is waiting.
    pub fn is_idle(&self) -> bool {
        self.inboxes.iter().all(Vec::is_empty)
    }

    /// Takes every waiting message, one inbox per node (index `id - 1`); messages sent from
    /// now on wait for the next round. Give the inboxes back, drained, with [`Self::recycle`].
    pub fn take_round(&mut self) -> Vec<Vec<(NodeId, M)>> {
        std::mem::replace(&mut self.inboxes, std::mem::take(&mut self.spare))
    }

    /// Returns a round's drained inboxes so that their memory is reused.
    pub fn recycle(&mut self, mut round: Vec<Vec<(NodeId, M)>>) {
        round.iter_mut().for_each(Vec::clear);
        self.spare = round;
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

/// A three-node cluster of one consensus core, driven in memory.
pub trait Cluster: Sized {
    /// The name in tables and JSON.
    const NAME: &'static str;

    /// Boots three empty nodes and elects node 1, delivering every message until the cluster
    /// is quiet.
    fn elect() -> Result<Self, BenchError>;

    /// Proposes `commands` on node 1 in one proposal, then delivers messages until the cluster
    /// is quiet. Fails unless every node has applied them all.
    fn replicate(&mut self, commands: &[Bytes]) -> Result<(), BenchError>;

    /// Each node's state machine, node 1 first.
    fn state_machines(&self) -> Vec<&StateMachine>;

    /// Checks each node's storage against its core, and that every node's log is committed.
    fn check_storage(&self) -> Result<(), BenchError>;

    /// Messages delivered so far.
    fn messages(&self) -> u64;
}

/// One timed run of one core at one batch size.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// [`Cluster::NAME`].
    pub core: &'static str,
    /// Commands per proposal.
    pub batch: usize,
    /// Commands committed and applied on every node.
    pub entries: usize,
    /// Proposals made.
    pub proposals: usize,
    /// Messages delivered during the timed part.
    pub messages: u64,
    /// Wall time of the timed part.
    pub elapsed: Duration,
}

impl RunResult {
    /// Committed entries per second.
    pub fn entries_per_sec(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64()
    }
    /// Mean microseconds from one proposal until all three nodes applied it.
    pub fn us_per_batch(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / self.proposals as f64
    }
    /// Mean messages per proposal.
    pub fn messages_per_batch(&self) -> f64 {
        self.messages as f64 / self.proposals as f64
    }
}

/// Elects a leader of core `C` (not timed), replicates `commands` in proposals of `batch`
/// (timed), and checks that every node applied every command identically.
pub fn run<C: Cluster>(commands: &[Bytes], batch: usize) -> Result<RunResult, BenchError> {
    if batch == 0 {
        fail!("the batch size must be positive");
    }
    let mut cluster = C::elect()?;
    let messages_before = cluster.messages();
    let start = Instant::now();
    let mut proposals = 0;
    for chunk in commands.chunks(batch) {
        cluster.replicate(chunk)?;
        proposals += 1;
    }
    let elapsed = start.elapsed();
    let messages = cluster.messages() - messages_before;
    verify(&cluster, commands)?;
    Ok(RunResult {
        core: C::NAME,
        batch,
        entries: commands.len(),
        proposals,
        messages,
        elapsed,
    })
}

/// Every node applied exactly `commands`, in order, and its storage agrees with its core.
pub fn verify<C: Cluster>(cluster: &C, commands: &[Bytes]) -> Result<(), BenchError> {
    let expected = StateMachine::expected(commands);
    for (index, sm) in cluster.state_machines().into_iter().enumerate() {
        if *sm != expected {
            fail!(
                "{}: node {} applied {} commands (digest {:#x}); expected {} (digest {:#x})",
                C::NAME,
                index + 1,
                sm.applied,
                sm.digest,
                expected.applied,
                expected.digest
            );
        }
    }
    cluster.check_storage()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny<C: Cluster>() {
        let commands = commands(50, 16);
        let result = run::<C>(&commands, 4).unwrap();
        assert_eq!(result.entries, 50);
        assert_eq!(result.proposals, 13);
        assert!(result.messages > 0);
    }

    #[test]
    fn rdb_peer_commits_and_applies_every_entry_on_every_node() {
        tiny::<rdb::RdbCluster>();
    }

    #[test]
    fn raft_rs_commits_and_applies_every_entry_on_every_node() {
        tiny::<raftrs::RaftRsCluster>();
    }

    #[test]
    fn both_cores_reach_the_same_state() {
        let commands = commands(50, 16);
        let mut a = rdb::RdbCluster::elect().unwrap();
        let mut b = raftrs::RaftRsCluster::elect().unwrap();
        for chunk in commands.chunks(4) {
            a.replicate(chunk).unwrap();
            b.replicate(chunk).unwrap();
        }
        let expected = StateMachine::expected(&commands);
        for sm in a.state_machines().into_iter().chain(b.state_machines()) {
            assert_eq!(*sm, expected);
        }
        verify(&a, &commands).unwrap();
        verify(&b, &commands).unwrap();
    }

    #[test]
    fn a_state_machine_rejects_a_command_out_of_order() {
        let mut sm = StateMachine::default();
        sm.apply(&command(0, 16)).unwrap();
        assert!(sm.apply(&command(2, 16)).is_err());
        assert!(sm.apply(&[1, 2, 3]).is_err());
    }

    #[test]
    fn verification_catches_a_missing_command() {
        let commands = commands(8, 16);
        let mut cluster = rdb::RdbCluster::elect().unwrap();
        cluster.replicate(&commands[..7]).unwrap();
        assert!(verify(&cluster, &commands).is_err());
    }
}
