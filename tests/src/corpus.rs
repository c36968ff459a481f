//! The checked-in trace corpus (`tests/testdata/traces/`, written by
//! `scripts/regenerate-traces.sh`), shared by the conformance and spec tests.

use model::checker::trace::{Action, Trace};
use std::path::{Path, PathBuf};

/// The corpus directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/traces")
}

/// Every trace of the corpus, in file-name order. A missing directory or an unreadable trace
/// is a test failure, never an empty corpus.
pub fn load() -> Vec<Trace> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("the corpus directory exists (scripts/regenerate-traces.sh)")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "the corpus {} is empty", dir().display());
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("read trace");
            Trace::parse(&text).unwrap_or_else(|why| panic!("{}: {why}", path.display()))
        })
        .collect()
}

/// Whether a trace is a planted bug's counterexample (not a behaviour of a correct Peer).
pub fn is_counterexample(trace: &Trace) -> bool {
    trace.header.origin == "counterexample"
}

/// The counterexample of `bug` among `traces`, if there is one.
pub fn counterexample_of(traces: &[Trace], bug: model::bugs::Bug) -> Option<&Trace> {
    traces
        .iter()
        .find(|t| is_counterexample(t) && t.header.bug.as_deref() == Some(bug.name()))
}

/// Where the correct Peer first parts from a trace: the step, and what differs there, named as
/// the conformance replay names a mismatch (`node N FIELD` for the first differing field of
/// the first differing server, in id order, or `sent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The step (1-based, as numbered in the trace).
    pub step: usize,
    /// What differs.
    pub what: String,
}

/// The first step at which the correct Peer does not do what `trace` says: the step where a
/// planted bug shows. `None` if the Peer follows the whole trace.
pub fn first_peer_divergence(trace: &Trace) -> Option<Divergence> {
    first_divergence(trace, None)
}

/// The first step at which a Peer running `bug` (the correct Peer for `None`) does not do what
/// `trace` says. `None` if it follows the whole trace. Each server's storage holds exactly what
/// its steps asked to persist, as a node's files do: term and vote when `hard_state` is set,
/// the log from `log_from` on. A Peer that forgets to ask for a write recovers without it.
pub fn first_divergence(trace: &Trace, bug: Option<model::bugs::Bug>) -> Option<Divergence> {
    use model::checker::trace::{NodeView, Sent};
    use model::{Config, Durable, NodeId, Peer, Planted, Timer};
    let members: Vec<NodeId> = (0..trace.header.servers as NodeId).collect();
    let config = |id| Config {
        id,
        members: members.clone(),
        flow: trace.header.config.flow(),
        pre_vote: trace.header.config.pre_vote,
    };
    let restore = |id, durable| {
        let (mut peer, _) = Peer::restore(config(id), durable).ok()?;
        peer.plant_bug(bug);
        Some(peer)
    };
    let mut peers: Vec<Peer<u8, Planted>> = members
        .iter()
        .map(|&id| restore(id, Durable::default()).expect("a valid config"))
        .collect();
    let mut crashed: Vec<Option<Durable<u8>>> = vec![None; members.len()];
    let mut stored: Vec<Durable<u8>> = vec![Durable::default(); members.len()];
    for step in &trace.steps {
        let i = step.node as usize;
        let message = || Some((step.from?, step.message.clone()?));
        let output = match step.action {
            Action::ElectionTimeout => Some(peers[i].handle_timeout(Timer::Election)),
            Action::HeartbeatTimeout => Some(peers[i].handle_timeout(Timer::Heartbeat)),
            Action::ClientRequest => peers[i]
                .propose(vec![step.value?])
                .ok()
                .map(|(_, output)| output),
            Action::Crash => {
                crashed[i] = Some(stored[i].clone());
                None
            }
            Action::Recover => {
                let durable = crashed[i].take()?;
                peers[i] = restore(step.node, durable)?;
                None
            }
            Action::DropMessage => None,
            Action::TransferLeadership => Some(peers[i].transfer_leadership(step.from?).ok()?),
            Action::HandleRequestVoteRequest
            | Action::HandleRequestVoteResponse
            | Action::HandlePreVoteRequest
            | Action::HandlePreVoteResponse
            | Action::HandleAppendEntriesRequest
            | Action::HandleAppendEntriesResponse
            | Action::HandleTimeoutNow => {
                let (from, message) = message()?;
                Some(peers[i].handle_message(from, message).ok()?)
            }
        };
        if let Some(persist) = output.as_ref().map(|o| o.persist) {
            write(&mut stored[i], peers[i].durable(), persist);
        }
        let sent: Vec<Sent> = output
            .iter()
            .flat_map(|o| o.messages())
            .map(|(to, message)| Sent {
                from: step.node,
                to: *to,
                message: message.clone(),
            })
            .collect();
        for want in &step.nodes {
            let id = want.id;
            let actual = match &crashed[id as usize] {
                // Storage no Peer can restore from (a log entry of a term never written, say)
                // is what a node's storage refuses to open: its files are the difference.
                Some(durable)
                    if Peer::<u8, Planted>::restore(config(id), durable.clone()).is_err() =>
                {
                    return Some(Divergence {
                        step: step.step,
                        what: format!("node {id} files"),
                    });
                }
                Some(durable) => NodeView::of_persisted(id, durable.clone()),
                None => NodeView::of_peer(id, &peers[id as usize]),
            };
            if let Some((field, _, _)) = want.differences(&actual).into_iter().next() {
                return Some(Divergence {
                    step: step.step,
                    what: format!("node {id} {field}"),
                });
            }
        }
        if sent != step.sent {
            return Some(Divergence {
                step: step.step,
                what: "sent".into(),
            });
        }
    }
    None
}

/// What a node's storage does with one step's `Persist`: term and vote, then the log from the
/// asked index (a correct Peer never asks from past the end of what is stored).
fn write(stored: &mut model::Durable<u8>, durable: &model::Durable<u8>, persist: model::Persist) {
    if persist.hard_state {
        stored.term = durable.term;
        stored.voted_for = durable.voted_for;
    }
    if let Some(from) = persist.log_from {
        let keep = (from.saturating_sub(1) as usize)
            .min(stored.log.len())
            .min(durable.log.len());
        stored.log.truncate(keep);
        stored.log.extend_from_slice(&durable.log[keep..]);
    }
}
