//! Impl → model: checks recordings of a real cluster (`rdb-server --record`) against the model.
//!
//! For every node, the recording is replayed through a fresh model [`Peer`]: each restore
//! must restore exactly what the node last made durable, each recorded output must be what the
//! model's Peer produces for the recorded input, and what storage made durable must be the
//! Peer's durable state. Across nodes, every received message must have been sent, unchanged,
//! by its sender, and the model's Always properties must hold over the merged history.
//!
//! What each check compares against:
//!
//! - **On disk:** a `Restore` event holds what the node read back from its files when it
//!   started (its storage's recovery). Comparing it with the last recorded save checks the
//!   files themselves: a save that did not reach the disk, or a recovery that lost or invented
//!   something, shows here.
//! - **The driver's own record:** a `Persisted` event is what the driver asked storage to write
//!   (term, vote, and the Peer's entries from `log_from`), recorded after the write and its
//!   fsync returned; it is not read back from the disk. "Storage held the Peer's durable state"
//!   therefore checks the driver's persist calls against the model, and the files are checked
//!   only at each restore.
//! - **The model:** every recorded output is compared with what the model's Peer produces for
//!   the recorded input, and the Always properties are evaluated over the merged history.
//!
//! A node killed with SIGKILL loses what it had not yet written to its recording. The node
//! writes its buffered lines before a save starts and before any message or answer leaves
//! (see `impl/src/driver.rs`), so what a kill can lose is only an unseen tail of the run: its
//! last line torn part-way, and the lines after the last write. Two things are accepted for
//! that, and nothing else:
//!
//! - a torn line (a prefix of a line, cut short) as the last line of a run: at the end of
//!   the file, or right before the restarted node's `Restore`;
//! - a restore that differs from the last recorded save, when a save in flight explains it:
//!   its term and vote are those of the last recorded save or those the replayed Peer held
//!   after its last recorded step (the save that was in flight), and its log is a prefix of
//!   one of those two logs, no shorter than what both hold (recovery cuts a torn log tail).
//!
//! A graceful stop saves everything before it ends, so its restore equals the last recorded
//! save and passes the exact check.

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
    /// Restarts that restored something else than the last recorded save, explained by a save
    /// in flight when the node was killed.
    pub inflight_restores: usize,
    /// Torn lines (a run's last line, cut short by a kill) skipped.
    pub torn_lines: usize,
}

/// One node's recording as read from its file.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    /// Each event with its line number in the file (from 1).
    pub events: Vec<(usize, Recorded)>,
    /// Torn lines skipped.
    pub torn_lines: usize,
}

/// Parses one node's recording (`name` is what errors call it). A line that does not parse is
/// accepted only as a torn line: a non-empty prefix of a line that ends early, as the last
/// line of the file or right before a `Restore`.
pub fn parse_recording(bytes: &[u8], name: &str) -> Result<Recording, String> {
    let mut lines: Vec<&[u8]> = bytes.split(|byte| *byte == b'\n').collect();
    if lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
    let parsed: Vec<Result<Recorded, serde_json::Error>> = lines
        .iter()
        .map(|line| serde_json::from_slice(line))
        .collect();
    let mut recording = Recording::default();
    for (number, result) in parsed.iter().enumerate() {
        match result {
            Ok(recorded) => recording.events.push((number + 1, recorded.clone())),
            Err(error) => {
                let ends_a_run = match parsed.get(number + 1) {
                    None => true,
                    Some(Ok(next)) => matches!(next.event, RecordedEvent::Restore { .. }),
                    Some(Err(_)) => false,
                };
                if error.is_eof() && !lines[number].is_empty() && ends_a_run {
                    recording.torn_lines += 1;
                } else {
                    let why = if error.is_eof() && !lines[number].is_empty() {
                        " (a torn line, but not the last line of a run)"
                    } else {
                        ""
                    };
                    return Err(format!("{name} line {}: {error}{why}", number + 1));
                }
            }
        }
    }
    Ok(recording)
}

/// Reads one node's recording file (see [`parse_recording`]).
pub fn read_recording_file(path: &Path) -> Result<Recording, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_recording(&bytes, &path.display().to_string())
}

/// Reads one node's recording: its events, without line numbers.
pub fn read_recording(path: &Path) -> Result<Vec<Recorded>, String> {
    Ok(read_recording_file(path)?
        .events
        .into_iter()
        .map(|(_, recorded)| recorded)
        .collect())
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

/// Why a restore after a kill is not explained by the last recorded save (`saved`) and the
/// save in flight (`in_flight`, the replayed Peer's durable state after its last recorded
/// step); `None` when it is.
fn unexplained_restore(
    restored: &Durable<Command>,
    saved: &Durable<Command>,
    in_flight: &Durable<Command>,
) -> Option<String> {
    let hard_state = (restored.term, restored.voted_for);
    if hard_state != (saved.term, saved.voted_for)
        && hard_state != (in_flight.term, in_flight.voted_for)
    {
        return Some(format!(
            "term {} vote {:?} is neither the last save's (term {} vote {:?}) nor the save in \
             flight's (term {} vote {:?})",
            restored.term,
            restored.voted_for,
            saved.term,
            saved.voted_for,
            in_flight.term,
            in_flight.voted_for
        ));
    }
    let shared = saved
        .log
        .iter()
        .zip(&in_flight.log)
        .take_while(|(a, b)| a == b)
        .count();
    let log = &restored.log;
    if log.len() >= shared && (saved.log.starts_with(log) || in_flight.log.starts_with(log)) {
        return None;
    }
    for (offset, entry) in log.iter().enumerate() {
        if saved.log.get(offset) != Some(entry) && in_flight.log.get(offset) != Some(entry) {
            return Some(format!(
                "entry {} ({entry:?}) was never recorded there: the last save holds {:?}, the \
                 save in flight {:?}",
                offset + 1,
                saved.log.get(offset),
                in_flight.log.get(offset)
            ));
        }
    }
    Some(if log.len() < shared {
        format!(
            "its log has {} entries, fewer than the {shared} that both the last save and the \
             save in flight hold",
            log.len()
        )
    } else {
        "its log mixes entries of the last save and of the save in flight".to_string()
    })
}

/// What one node's replay counted.
#[derive(Default)]
struct NodeCounts {
    events: usize,
    restores: usize,
    inflight_restores: usize,
}

/// Replays one node's recording (each event with its line number).
fn replay_node(
    node: NodeId,
    events: &[(usize, &Recorded)],
    history: &mut History,
) -> Result<NodeCounts, String> {
    let mut peer: Option<Peer<Command>> = None;
    let mut durable: Durable<Command> = Durable::default();
    let mut counts = NodeCounts {
        events: events.len(),
        ..NodeCounts::default()
    };
    let mut last_term = 0;
    let mut last_commit = 0;
    for &(line, recorded) in events {
        let at = |why: String| format!("node {node} line {line}: {why}");
        if recorded.node != node {
            return Err(at(format!("recorded by node {}", recorded.node)));
        }
        match &recorded.event {
            RecordedEvent::Restore {
                members,
                flow,
                pre_vote,
                durable: restored,
                output,
            } => {
                // CommittedSurvivesCrash and exact recovery: the node restored precisely what it
                // had last made durable, or, after a kill, what a save in flight explains.
                if *restored != durable {
                    let why = match &peer {
                        Some(previous) => {
                            unexplained_restore(restored, &durable, previous.durable())
                        }
                        None => Some("nothing was recorded before".to_string()),
                    };
                    if let Some(why) = why {
                        return Err(at(format!(
                            "restart restored term {} vote {:?} and {} entries, but the node had \
                             made durable term {} vote {:?} and {} entries, and the Peer held \
                             term {} vote {:?} and {} entries: {why}",
                            restored.term,
                            restored.voted_for,
                            restored.log.len(),
                            durable.term,
                            durable.voted_for,
                            durable.log.len(),
                            peer.as_ref().map_or(0, |p| p.term()),
                            peer.as_ref().and_then(|p| p.voted_for()),
                            peer.as_ref().map_or(0, |p| p.log().len()),
                        )));
                    }
                    counts.inflight_restores += 1;
                    durable = restored.clone();
                }
                let config = Config {
                    id: node,
                    members: members.clone(),
                    flow: *flow,
                    pre_vote: *pre_vote,
                };
                let (restored_peer, restore_output) =
                    Peer::restore(config, restored.clone()).map_err(|e| at(e.to_string()))?;
                compare(
                    &at("restore".into()),
                    output,
                    &RecordedOutput::from(&restore_output),
                )?;
                peer = Some(restored_peer);
                counts.restores += 1;
                // A term the node held but never saved (a kill before the save) is gone, and
                // no message carried it: its messages wait for the save.
                last_term = restored.term;
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
                    RecordedInput::Transfer(to) => peer
                        .transfer_leadership(*to)
                        .map_err(|e| at(format!("the model refuses the transfer: {e}")))?,
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
    Ok(counts)
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

/// Checks the recordings of a whole cluster (one list of events per node; errors number the
/// events from 1 as lines).
pub fn validate(recordings: &BTreeMap<NodeId, Vec<Recorded>>) -> Result<Validated, String> {
    let numbered = recordings
        .iter()
        .map(|(node, events)| {
            (
                *node,
                events.iter().enumerate().map(|(i, e)| (i + 1, e)).collect(),
            )
        })
        .collect();
    check(numbered)
}

/// Checks the recordings of a whole cluster as read from their files (one per node).
pub fn validate_recordings(recordings: &BTreeMap<NodeId, Recording>) -> Result<Validated, String> {
    let numbered = recordings
        .iter()
        .map(|(node, recording)| {
            (
                *node,
                recording
                    .events
                    .iter()
                    .map(|(line, recorded)| (*line, recorded))
                    .collect(),
            )
        })
        .collect();
    let mut validated = check(numbered)?;
    validated.torn_lines = recordings.values().map(|r| r.torn_lines).sum();
    Ok(validated)
}

fn check(recordings: BTreeMap<NodeId, Vec<(usize, &Recorded)>>) -> Result<Validated, String> {
    let mut history = History::default();
    let mut validated = Validated {
        nodes: recordings.len(),
        ..Validated::default()
    };
    for (node, events) in &recordings {
        let counts = replay_node(*node, events, &mut history)?;
        validated.events += counts.events;
        validated.restarts += counts.restores.saturating_sub(1);
        validated.inflight_restores += counts.inflight_restores;
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

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Output, Timer};

    /// Peers driven by hand, recorded as a node records itself.
    #[derive(Clone)]
    struct Sim {
        peers: BTreeMap<NodeId, Peer<Command>>,
        pending: BTreeMap<NodeId, Output<Command>>,
        recordings: BTreeMap<NodeId, Vec<Recorded>>,
        micros: u64,
    }

    fn put(key: &str, value: u8) -> Command {
        Command::Put {
            key: key.into(),
            value: vec![value],
        }
    }

    impl Sim {
        fn new(size: NodeId) -> Sim {
            let mut sim = Sim {
                peers: BTreeMap::new(),
                pending: BTreeMap::new(),
                recordings: BTreeMap::new(),
                micros: 0,
            };
            for node in 1..=size {
                sim.restart(node, Durable::default());
            }
            sim
        }

        fn record(&mut self, node: NodeId, event: RecordedEvent) {
            self.micros += 1;
            self.recordings.entry(node).or_default().push(Recorded {
                micros: self.micros,
                node,
                event,
            });
        }

        /// The node starts from `durable` (a restart, after a stop or a kill).
        fn restart(&mut self, node: NodeId, durable: Durable<Command>) {
            let members = (1..=3).collect();
            let config = Config::new(node, Vec::clone(&members));
            let flow = config.flow;
            let (peer, output) = Peer::restore(config, durable.clone()).expect("restore");
            self.record(
                node,
                RecordedEvent::Restore {
                    members,
                    flow,
                    pre_vote: false,
                    durable,
                    output: RecordedOutput::from(&output),
                },
            );
            self.peers.insert(node, peer);
            self.pending.remove(&node);
        }

        /// One Peer call; returns the messages it sends.
        fn step(&mut self, node: NodeId, input: RecordedInput) -> Vec<(NodeId, Message<Command>)> {
            let peer = self.peers.get_mut(&node).expect("a running node");
            let output = match input.clone() {
                RecordedInput::Message { from, message } => {
                    peer.handle_message(from, message).expect("a valid message")
                }
                RecordedInput::Timeout(timer) => peer.handle_timeout(timer),
                RecordedInput::Propose(commands) => peer.propose(commands).expect("leader").1,
                RecordedInput::Transfer(to) => peer.transfer_leadership(to).expect("leader"),
            };
            let event = RecordedEvent::Step {
                input,
                output: RecordedOutput::from(&output),
                role: peer.role_kind(),
                term: peer.term(),
                commit: peer.commit_index(),
            };
            self.record(node, event);
            let messages = output.messages().cloned().collect();
            self.pending.entry(node).or_default().merge(output);
            messages
        }

        /// The save of what the node's steps changed completes.
        fn save(&mut self, node: NodeId) {
            let persist = self.pending.remove(&node).unwrap_or_default().persist;
            if !persist.is_needed() {
                return;
            }
            let durable = self.peers[&node].durable().clone();
            let entries = persist
                .log_from
                .map_or_else(Vec::new, |from| durable.log[(from - 1) as usize..].to_vec());
            self.record(
                node,
                RecordedEvent::Persisted {
                    term: durable.term,
                    voted_for: durable.voted_for,
                    log_from: persist.log_from,
                    entries,
                },
            );
        }

        /// Node `from`'s messages delivered, each answer saved and delivered back.
        fn exchange(&mut self, from: NodeId, messages: Vec<(NodeId, Message<Command>)>) {
            for (to, message) in messages {
                let answers = self.step(to, RecordedInput::Message { from, message });
                self.save(to);
                for (back, answer) in answers {
                    self.step(
                        back,
                        RecordedInput::Message {
                            from: to,
                            message: answer,
                        },
                    );
                    self.save(back);
                }
            }
        }

        fn jsonl(&self, node: NodeId) -> Vec<u8> {
            let mut bytes = Vec::new();
            for recorded in &self.recordings[&node] {
                serde_json::to_writer(&mut bytes, recorded).expect("serialise");
                bytes.push(b'\n');
            }
            bytes
        }

        fn parsed(&self) -> BTreeMap<NodeId, Recording> {
            self.recordings
                .keys()
                .map(|node| {
                    let recording = parse_recording(&self.jsonl(*node), "sim").expect("parses");
                    (*node, recording)
                })
                .collect()
        }
    }

    /// Node 1 is elected in term 1 (its blank entry saved) and proposes two commands: its
    /// AppendEntries leave at once and the save of the two entries starts; node 1 is killed
    /// before that save is recorded.
    fn killed_mid_save() -> (Sim, Durable<Command>, Durable<Command>) {
        let mut sim = Sim::new(3);
        let requests = sim.step(1, RecordedInput::Timeout(Timer::Election));
        sim.save(1);
        sim.exchange(1, requests);
        assert_eq!(sim.peers[&1].role_kind(), RoleKind::Leader);
        let saved = sim.peers[&1].durable().clone();
        sim.step(1, RecordedInput::Propose(vec![put("a", 1), put("b", 2)]));
        let in_flight = sim.peers[&1].durable().clone();
        // The blank entry of its election, then the two commands.
        assert_eq!(in_flight.log.len(), 3);
        (sim, saved, in_flight)
    }

    #[test]
    fn a_torn_last_line_is_accepted() {
        let (sim, _, _) = killed_mid_save();
        let whole = sim.jsonl(1);
        // The step after, cut short at every byte: a process killed mid-write.
        let mut next = sim.clone();
        next.step(1, RecordedInput::Timeout(Timer::Heartbeat));
        let mut extra = Vec::new();
        serde_json::to_writer(&mut extra, next.recordings[&1].last().unwrap()).unwrap();
        for cut in 1..extra.len() {
            let mut bytes = whole.clone();
            bytes.extend_from_slice(&extra[..cut]);
            let recording = parse_recording(&bytes, "node-1")
                .unwrap_or_else(|why| panic!("cut at {cut}: {why}"));
            assert_eq!(recording.torn_lines, 1);
            assert_eq!(recording.events.len(), sim.recordings[&1].len());
            let mut all = sim.parsed();
            all.insert(1, recording);
            let validated = validate_recordings(&all).expect("valid");
            assert_eq!(validated.torn_lines, 1);
        }
        // A torn line closed by the restarted node's newline, right before its Restore.
        let mut restarted = sim.clone();
        restarted.restart(1, sim.peers[&1].durable().clone());
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&extra[..extra.len() / 2]);
        bytes.push(b'\n');
        let mut restore = Vec::new();
        serde_json::to_writer(&mut restore, restarted.recordings[&1].last().unwrap()).unwrap();
        bytes.extend_from_slice(&restore);
        bytes.push(b'\n');
        let recording = parse_recording(&bytes, "node-1").expect("torn line before a restore");
        assert_eq!(recording.torn_lines, 1);
        let last_line = recording.events.last().unwrap().0;
        assert_eq!(
            last_line,
            sim.recordings[&1].len() + 2,
            "lines keep their numbers"
        );
        let mut all = sim.parsed();
        all.insert(1, recording);
        let validated = validate_recordings(&all).expect("valid");
        assert_eq!((validated.restarts, validated.inflight_restores), (1, 1));
    }

    #[test]
    fn a_broken_line_anywhere_else_is_refused() {
        let (sim, _, _) = killed_mid_save();
        let whole = sim.jsonl(1);
        let mut lines: Vec<&[u8]> = whole.split(|b| *b == b'\n').collect();
        lines.pop();
        let half = &lines[2][..lines[2].len() / 2];
        // A torn line followed by more of the same run.
        let mut middle = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            middle.extend_from_slice(if i == 2 { half } else { line });
            middle.push(b'\n');
        }
        let why = parse_recording(&middle, "node-1").expect_err("torn mid-run");
        assert!(
            why.contains("node-1 line 3") && why.contains("not the last line of a run"),
            "{why}"
        );
        // A last line that is not a prefix of a line, and an empty line.
        for bad in [&b"{\"micros\":x}"[..], b"garbage", b""] {
            let mut bytes = whole.clone();
            bytes.extend_from_slice(bad);
            bytes.extend_from_slice(b"\n");
            let why = parse_recording(&bytes, "node-1").expect_err("not torn");
            assert!(why.contains(&format!("line {}", lines.len() + 1)), "{why}");
        }
    }

    #[test]
    fn a_kill_mid_save_is_accepted() {
        let (sim, saved, in_flight) = killed_mid_save();
        // The save did not start (the blank entry of the election alone), wrote one command (a
        // torn second one cut at recovery), or completed before its line was written.
        for kept in 1..=3 {
            let mut restored = in_flight.clone();
            restored.log.truncate(kept);
            let mut run = sim.clone();
            run.restart(1, restored.clone());
            // The run goes on from what was restored.
            let requests = run.step(1, RecordedInput::Timeout(Timer::Election));
            run.save(1);
            run.exchange(1, requests);
            let validated = validate_recordings(&run.parsed())
                .unwrap_or_else(|why| panic!("{kept} entries kept: {why}"));
            assert_eq!(validated.restarts, 1);
            assert_eq!(validated.inflight_restores, usize::from(restored != saved));
        }
        // A vote in flight: a follower of a higher term's candidate is killed before the save.
        let mut run = sim.clone();
        let requests = run.step(2, RecordedInput::Timeout(Timer::Election));
        let request = requests.into_iter().find(|(to, _)| *to == 3).unwrap().1;
        run.step(
            3,
            RecordedInput::Message {
                from: 2,
                message: request,
            },
        );
        let voted = run.peers[&3].durable().clone();
        assert_eq!((voted.term, voted.voted_for), (2, Some(2)));
        run.restart(3, voted);
        let validated = validate_recordings(&run.parsed()).expect("the vote's save completed");
        assert_eq!(validated.inflight_restores, 1);
    }

    #[test]
    fn a_restore_nothing_recorded_explains_is_refused() {
        let (sim, saved, in_flight) = killed_mid_save();
        let line = sim.recordings[&1].len() + 1;
        // An entry never recorded anywhere.
        let mut restored = in_flight.clone();
        restored.log[1] = Entry {
            term: 1,
            command: Some(put("b", 3)),
        };
        let mut run = sim.clone();
        run.restart(1, restored);
        let why = validate_recordings(&run.parsed()).expect_err("an unknown entry");
        assert!(
            why.starts_with(&format!("node 1 line {line}: restart restored")),
            "{why}"
        );
        assert!(
            why.contains("entry 2") && why.contains("never recorded"),
            "{why}"
        );
        // A term nobody recorded.
        let mut restored = in_flight.clone();
        restored.term = 2;
        let mut run = sim.clone();
        run.restart(1, restored);
        let why = validate_recordings(&run.parsed()).expect_err("an unknown term");
        assert!(why.contains("term 2 vote Some(1) is neither"), "{why}");
        // Less than the last save (after a save that completed and was recorded).
        let mut run = sim.clone();
        run.save(1);
        let mut restored = in_flight.clone();
        restored.log.pop();
        run.restart(1, restored);
        let why = validate_recordings(&run.parsed()).expect_err("a lost entry");
        assert!(why.contains("fewer than the 3"), "{why}");
        // A first start that restores anything but empty storage.
        let mut run = sim.clone();
        run.recordings.get_mut(&1).unwrap().clear();
        run.restart(1, saved);
        let why = validate_recordings(&run.parsed()).expect_err("nothing before");
        assert!(why.contains("nothing was recorded before"), "{why}");
    }
}
