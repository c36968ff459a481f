//! Impl → model: checks recordings of a real cluster (`rdb-server --record`) against the model.
//!
//! For every node, the recording is replayed through a fresh model [`Peer`]: each restore
//! must restore exactly what the node last made durable, each recorded output must be what the
//! model's Peer produces for the recorded input, and what storage made durable must be the
//! Peer's durable state. Across nodes, every received message must have been sent, unchanged,
//! by its sender, and the model's Always properties must hold over the merged history.

use model::{Config, Durable, Entry, Index, Message, NodeId, Peer, RoleKind, Term};
use rdb_server::command::Command;
use rdb_server::record::{Recorded, RecordedEvent, RecordedInput, RecordedOutput};
use std::collections::BTreeMap;
use std::path::Path;

/// What a validation covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Validated {
    /// Events checked.
    pub events: usize,
    /// Nodes recorded.
    pub nodes: usize,
    /// Restarts (restores after the first) seen.
    pub restarts: usize,
}

/// Reads one node's recording.
pub fn read_recording(path: &Path) -> Result<Vec<Recorded>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(number, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: {e}", path.display(), number + 1))
        })
        .collect()
}

type Envelope = (NodeId, NodeId, Message<Command>);

/// Facts gathered while replaying, for the cross-node checks.
#[derive(Default)]
struct History {
    /// Every message a node's Peer output, by (from, to, message): how many times.
    sent: BTreeMap<Envelope, usize>,
    /// Every message a node's Peer was given.
    received: BTreeMap<Envelope, usize>,
    /// Term → the node that led it.
    leaders: BTreeMap<Term, NodeId>,
    /// Index → (the committed entry, the first time any node knew it committed).
    committed: BTreeMap<Index, (Entry<Command>, u64)>,
    /// Each node becoming leader: (time, node, term, its log then).
    elections: Vec<(u64, NodeId, Term, Vec<Entry<Command>>)>,
    /// Each commit advance of a leader: (time, node, term, index).
    leader_commits: Vec<(u64, NodeId, Term, Index)>,
    /// (node, index) → times at which the node made entry (term) durable at that index.
    persisted: BTreeMap<(NodeId, Index), Vec<(u64, Term)>>,
    /// The final log of each node.
    final_logs: BTreeMap<NodeId, Vec<Entry<Command>>>,
}

fn compare(
    what: &str,
    expected: &RecordedOutput,
    peer_output: &RecordedOutput,
) -> Result<(), String> {
    if expected != peer_output {
        return Err(format!(
            "{what}: the node recorded\n    {expected:?}\n  but the model's Peer outputs\n    {peer_output:?}"
        ));
    }
    Ok(())
}

/// Replays one node's recording; returns how many events it checked and restarts it saw.
fn replay_node(
    node: NodeId,
    events: &[Recorded],
    history: &mut History,
) -> Result<(usize, usize), String> {
    let mut peer: Option<Peer<Command>> = None;
    let mut durable: Durable<Command> = Durable::default();
    let mut restores: usize = 0;
    let mut last_term = 0;
    let mut last_commit = 0;
    for (number, recorded) in events.iter().enumerate() {
        let at = |why: String| format!("node {node} event {}: {why}", number + 1);
        if recorded.node != node {
            return Err(at(format!("recorded by node {}", recorded.node)));
        }
        match &recorded.event {
            RecordedEvent::Restore {
                members,
                durable: restored,
                output,
            } => {
                // CommittedSurvivesCrash and exact recovery: the node restored precisely what it
                // had last made durable.
                if *restored != durable {
                    return Err(at(format!(
                        "restart restored term {} vote {:?} and {} entries, but the node had made \
                         durable term {} vote {:?} and {} entries",
                        restored.term,
                        restored.voted_for,
                        restored.log.len(),
                        durable.term,
                        durable.voted_for,
                        durable.log.len()
                    )));
                }
                let config = Config {
                    id: node,
                    members: members.clone(),
                };
                let (restored_peer, restore_output) =
                    Peer::restore(config, restored.clone()).map_err(|e| at(e.to_string()))?;
                compare(
                    &at("restore".into()),
                    output,
                    &RecordedOutput::from(&restore_output),
                )?;
                peer = Some(restored_peer);
                restores += 1;
                last_commit = 0;
            }
            RecordedEvent::Step {
                input,
                output,
                role,
                term,
                commit,
            } => {
                let peer = peer
                    .as_mut()
                    .ok_or_else(|| at("a step before any restore".into()))?;
                let was_leader = peer.role_kind() == RoleKind::Leader;
                let model_output = match input {
                    RecordedInput::Message { from, message } => {
                        *history
                            .received
                            .entry((*from, node, message.clone()))
                            .or_default() += 1;
                        peer.handle_message(*from, message.clone())
                            .map_err(|e| at(e.to_string()))?
                    }
                    RecordedInput::Timeout(timer) => peer.handle_timeout(*timer),
                    RecordedInput::Propose(commands) => {
                        peer.propose(commands.clone())
                            .map_err(|e| at(format!("the model refuses the proposal: {e}")))?
                            .1
                    }
                };
                compare(
                    &at(format!("{input:?}")),
                    output,
                    &RecordedOutput::from(&model_output),
                )?;
                if (peer.role_kind(), peer.term(), peer.commit_index()) != (*role, *term, *commit) {
                    return Err(at(format!(
                        "after the step the node was {role:?} term {term} commit {commit}, the model's \
                         Peer is {:?} term {} commit {}",
                        peer.role_kind(),
                        peer.term(),
                        peer.commit_index()
                    )));
                }
                for (to, message) in model_output.messages() {
                    *history
                        .sent
                        .entry((node, *to, message.clone()))
                        .or_default() += 1;
                }
                // MonotonicTerm (across restarts too: the term is durable) and MonotonicCommit.
                if peer.term() < last_term {
                    return Err(at(format!(
                        "MonotonicTerm: term went from {last_term} to {}",
                        peer.term()
                    )));
                }
                if peer.commit_index() < last_commit {
                    return Err(at(format!(
                        "MonotonicCommit: commit went from {last_commit} to {}",
                        peer.commit_index()
                    )));
                }
                observe(
                    node,
                    recorded.micros,
                    peer,
                    was_leader,
                    last_commit,
                    history,
                )
                .map_err(at)?;
                last_term = peer.term();
                last_commit = peer.commit_index();
            }
            RecordedEvent::Persisted {
                term,
                voted_for,
                log_from,
                entries,
            } => {
                durable.term = *term;
                durable.voted_for = *voted_for;
                if let Some(from) = log_from {
                    durable.log.truncate((*from - 1) as usize);
                    durable.log.extend(entries.iter().cloned());
                    for (offset, entry) in entries.iter().enumerate() {
                        history
                            .persisted
                            .entry((node, from + offset as Index))
                            .or_default()
                            .push((recorded.micros, entry.term));
                    }
                }
                let peer = peer
                    .as_ref()
                    .ok_or_else(|| at("a persist before any restore".into()))?;
                if &durable != peer.durable() {
                    return Err(at(format!(
                        "storage made durable term {} vote {:?} log {:?}, but the model's Peer \
                         holds term {} vote {:?} log {:?}",
                        durable.term,
                        durable.voted_for,
                        durable.log,
                        peer.term(),
                        peer.voted_for(),
                        peer.log()
                    )));
                }
            }
        }
    }
    if let Some(peer) = peer {
        history.final_logs.insert(node, peer.log().to_vec());
    }
    Ok((events.len(), restores.saturating_sub(1)))
}

/// Records what the properties need after one step of `node`.
fn observe(
    node: NodeId,
    micros: u64,
    peer: &Peer<Command>,
    was_leader: bool,
    previous_commit: Index,
    history: &mut History,
) -> Result<(), String> {
    if peer.role_kind() == RoleKind::Leader {
        // ElectionSafety: one leader per term.
        if let Some(other) = history.leaders.insert(peer.term(), node) {
            if other != node {
                return Err(format!(
                    "ElectionSafety: nodes {other} and {node} both led term {}",
                    peer.term()
                ));
            }
        }
        if !was_leader {
            history
                .elections
                .push((micros, node, peer.term(), peer.log().to_vec()));
        }
        if peer.commit_index() > previous_commit {
            history
                .leader_commits
                .push((micros, node, peer.term(), peer.commit_index()));
        }
    }
    // StateMachineSafety: no two nodes ever commit different entries at one index.
    for index in previous_commit + 1..=peer.commit_index() {
        let entry = peer
            .entry(index)
            .expect("committed entries are in the log")
            .clone();
        match history.committed.get(&index) {
            Some((known, _)) if *known != entry => {
                return Err(format!(
                    "StateMachineSafety: node {node} committed {entry:?} at index {index}, \
                     another node committed {known:?}"
                ));
            }
            Some(_) => {}
            None => {
                history.committed.insert(index, (entry, micros));
            }
        }
    }
    Ok(())
}

/// Checks the recordings of a whole cluster (one file per node).
pub fn validate(recordings: &BTreeMap<NodeId, Vec<Recorded>>) -> Result<Validated, String> {
    let mut history = History::default();
    let mut validated = Validated {
        nodes: recordings.len(),
        ..Validated::default()
    };
    for (node, events) in recordings {
        let (events, restarts) = replay_node(*node, events, &mut history)?;
        validated.events += events;
        validated.restarts += restarts;
    }
    // Every message a node received was sent by its sender, unchanged.
    for (envelope, received) in &history.received {
        let sent = history.sent.get(envelope).copied().unwrap_or(0);
        if *received > sent {
            return Err(format!(
                "node {} received {:?} from node {} {received} time(s), but it was sent {sent} time(s)",
                envelope.1, envelope.2, envelope.0
            ));
        }
    }
    // LeaderCompleteness: a new leader holds every entry committed before it was elected.
    for (elected_at, leader, term, log) in &history.elections {
        for (index, (entry, committed_at)) in &history.committed {
            if committed_at < elected_at && log.get(*index as usize - 1) != Some(entry) {
                return Err(format!(
                    "LeaderCompleteness: node {leader} became leader of term {term} without entry \
                     {index} ({entry:?}), committed before"
                ));
            }
        }
    }
    // NoCommitOnMinority: when a leader commits an index, a majority already made it durable.
    let majority = recordings.len() / 2 + 1;
    for (at, leader, term, index) in &history.leader_commits {
        let Some((entry, _)) = history.committed.get(index) else {
            continue;
        };
        let holders = recordings
            .keys()
            .filter(|node| {
                history
                    .persisted
                    .get(&(**node, *index))
                    .is_some_and(|writes| {
                        writes
                            .iter()
                            .any(|(when, t)| when <= at && *t == entry.term)
                    })
            })
            .count();
        if holders < majority {
            return Err(format!(
                "NoCommitOnMinority: node {leader} (term {term}) committed index {index} when only \
                 {holders} node(s) had made it durable"
            ));
        }
    }
    // LogMatching over the final logs.
    let logs: Vec<(&NodeId, &Vec<Entry<Command>>)> = history.final_logs.iter().collect();
    for (i, (a, log_a)) in logs.iter().enumerate() {
        for (b, log_b) in &logs[i + 1..] {
            for index in (0..log_a.len().min(log_b.len())).rev() {
                if log_a[index].term == log_b[index].term {
                    if log_a[..=index] != log_b[..=index] {
                        return Err(format!(
                            "LogMatching: nodes {a} and {b} agree on the term at index {} but not \
                             on the entries before",
                            index + 1
                        ));
                    }
                    break;
                }
            }
        }
    }
    Ok(validated)
}
