//! Traces: executions of the model written as JSON Lines, for replay against real nodes
//! (conformance) and against the TLA+ spec. The format is specified in
//! `specs/002-raft-features/contracts/trace-format.md`; this module writes and reads version 1.
//!
//! A trace comes from a path the checker found (a Sometimes example, or a planted bug's
//! counterexample) or from a seeded random walk through the model's transitions. Each step
//! records the action, the observable state of every server after it, and the messages the
//! step's Peer call sent. Steps that touch no server (a client choosing a server, a client's
//! request being lost) are left out: they are environment moves with nothing to replay.

use super::engine::Search;
use super::{ModelConfig, ModelMsg, NetworkKind, RaftModel, RaftState, Value};
use crate::bugs::Bug;
use crate::checker::properties::{self, Expect};
use crate::peer::{
    Entry, FlowControl, Index, Message, NodeId, Peer, Planted, RoleKind, Term, Timer,
};
use serde::{Deserialize, Serialize};
use stateright::actor::{ActorModelAction, Id};
use stateright::{Checker, HasDiscoveries, Model};
use std::collections::BTreeSet;

/// The trace format version this module writes and reads.
pub const VERSION: u32 = 1;

/// The model's action type.
pub type RaftAction = ActorModelAction<ModelMsg, Timer, Id>;

/// What a trace step does: one action of `tla/Raft.tla`'s `Next`, written in a trace as its
/// name. The one list of them, for the trace writer and every reader (conformance, the corpus
/// replay, the spec test).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    /// A server's election timer fires.
    ElectionTimeout,
    /// A leader's heartbeat timer fires.
    HeartbeatTimeout,
    /// A client proposes a value to a server.
    ClientRequest,
    /// A server handles a RequestVote request.
    HandleRequestVoteRequest,
    /// A server handles a RequestVote response.
    HandleRequestVoteResponse,
    /// A server handles a pre-vote request.
    HandlePreVoteRequest,
    /// A server handles a pre-vote response.
    HandlePreVoteResponse,
    /// A server handles an AppendEntries request.
    HandleAppendEntriesRequest,
    /// A server handles an AppendEntries response.
    HandleAppendEntriesResponse,
    /// A leader is asked to hand leadership over to the step's `from` (§3.10).
    TransferLeadership,
    /// A server handles a leader's TimeoutNow.
    HandleTimeoutNow,
    /// A server crashes, keeping only its durable state.
    Crash,
    /// A crashed server restarts from its durable state.
    Recover,
    /// The network loses a message.
    DropMessage,
}

impl Action {
    /// Every action, in the order of the format's specification.
    pub const ALL: [Action; 14] = [
        Action::ElectionTimeout,
        Action::HeartbeatTimeout,
        Action::ClientRequest,
        Action::HandleRequestVoteRequest,
        Action::HandleRequestVoteResponse,
        Action::HandlePreVoteRequest,
        Action::HandlePreVoteResponse,
        Action::HandleAppendEntriesRequest,
        Action::HandleAppendEntriesResponse,
        Action::TransferLeadership,
        Action::HandleTimeoutNow,
        Action::Crash,
        Action::Recover,
        Action::DropMessage,
    ];

    /// The action's name, in traces and in `Raft.tla`.
    pub fn name(self) -> &'static str {
        match self {
            Action::ElectionTimeout => "ElectionTimeout",
            Action::HeartbeatTimeout => "HeartbeatTimeout",
            Action::ClientRequest => "ClientRequest",
            Action::HandleRequestVoteRequest => "HandleRequestVoteRequest",
            Action::HandleRequestVoteResponse => "HandleRequestVoteResponse",
            Action::HandlePreVoteRequest => "HandlePreVoteRequest",
            Action::HandlePreVoteResponse => "HandlePreVoteResponse",
            Action::HandleAppendEntriesRequest => "HandleAppendEntriesRequest",
            Action::HandleAppendEntriesResponse => "HandleAppendEntriesResponse",
            Action::TransferLeadership => "TransferLeadership",
            Action::HandleTimeoutNow => "HandleTimeoutNow",
            Action::Crash => "Crash",
            Action::Recover => "Recover",
            Action::DropMessage => "DropMessage",
        }
    }

    /// The action that handles `message`.
    pub fn handling<C>(message: &Message<C>) -> Action {
        match message {
            Message::RequestVoteRequest { .. } => Action::HandleRequestVoteRequest,
            Message::RequestVoteResponse { .. } => Action::HandleRequestVoteResponse,
            Message::PreVoteRequest { .. } => Action::HandlePreVoteRequest,
            Message::PreVoteResponse { .. } => Action::HandlePreVoteResponse,
            Message::AppendEntriesRequest { .. } => Action::HandleAppendEntriesRequest,
            Message::AppendEntriesResponse { .. } => Action::HandleAppendEntriesResponse,
            Message::TimeoutNow { .. } => Action::HandleTimeoutNow,
        }
    }

    /// The action of `timer` firing.
    pub fn timeout(timer: Timer) -> Action {
        match timer {
            Timer::Election => Action::ElectionTimeout,
            Timer::Heartbeat => Action::HeartbeatTimeout,
        }
    }

    /// The timer that fires, for a timeout.
    pub fn timer(self) -> Option<Timer> {
        match self {
            Action::ElectionTimeout => Some(Timer::Election),
            Action::HeartbeatTimeout => Some(Timer::Heartbeat),
            _ => None,
        }
    }

    /// The kind of message handled ([`Message::kind`]), for a Handle action.
    pub fn handled_kind(self) -> Option<&'static str> {
        match self {
            Action::HandleRequestVoteRequest => Some("RequestVoteRequest"),
            Action::HandleRequestVoteResponse => Some("RequestVoteResponse"),
            Action::HandlePreVoteRequest => Some("PreVoteRequest"),
            Action::HandlePreVoteResponse => Some("PreVoteResponse"),
            Action::HandleAppendEntriesRequest => Some("AppendEntriesRequest"),
            Action::HandleAppendEntriesResponse => Some("AppendEntriesResponse"),
            Action::HandleTimeoutNow => Some("TimeoutNow"),
            _ => None,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Line 1 of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always `header`.
    pub kind: String,
    /// The format version.
    pub version: u32,
    /// The trace's name (its file name without `.jsonl`).
    pub name: String,
    /// `walk`, `example` or `counterexample`.
    pub origin: String,
    /// The property an example or counterexample is for.
    pub property: Option<String>,
    /// The planted bug of a counterexample.
    pub bug: Option<String>,
    /// The seed of a walk.
    pub seed: Option<u64>,
    /// Number of servers.
    pub servers: usize,
    /// The values clients may propose.
    pub values: Vec<Value>,
    /// The model configuration.
    pub config: TraceConfig,
}

/// The configuration a trace was generated under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceConfig {
    /// See [`ModelConfig::name`].
    pub name: String,
    /// See [`ModelConfig::servers`].
    pub servers: usize,
    /// See [`ModelConfig::max_term`].
    pub max_term: Term,
    /// See [`ModelConfig::client_requests`].
    pub client_requests: usize,
    /// See [`ModelConfig::max_crashes`].
    pub max_crashes: usize,
    /// See [`ModelConfig::network`].
    pub network: String,
    /// See [`ModelConfig::lossy`].
    pub lossy: bool,
    /// See [`ModelConfig::max_in_flight`].
    pub max_in_flight: usize,
    /// See [`ModelConfig::heartbeats`].
    pub heartbeats: bool,
    /// See [`ModelConfig::batch`].
    #[serde(default)]
    pub batch: Option<u64>,
    /// See [`ModelConfig::window`].
    #[serde(default)]
    pub window: Option<usize>,
    /// See [`ModelConfig::pre_vote`].
    #[serde(default)]
    pub pre_vote: bool,
    /// See [`ModelConfig::transfers`].
    #[serde(default)]
    pub transfers: usize,
}

impl TraceConfig {
    /// The Peer's flow control in the configuration (as [`ModelConfig::flow`]).
    pub fn flow(&self) -> FlowControl {
        ModelConfig {
            batch: self.batch,
            window: self.window,
            ..ModelConfig::default()
        }
        .flow()
    }
}

impl From<&ModelConfig> for TraceConfig {
    fn from(config: &ModelConfig) -> Self {
        TraceConfig {
            name: config.name.clone(),
            servers: config.servers,
            max_term: config.max_term,
            client_requests: config.client_requests,
            max_crashes: config.max_crashes,
            network: config.network.to_string(),
            lossy: config.lossy,
            max_in_flight: config.max_in_flight,
            heartbeats: config.heartbeats,
            batch: config.batch,
            window: config.window,
            pre_vote: config.pre_vote,
            transfers: config.transfers,
        }
    }
}

/// One server's observable state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// The server.
    pub id: NodeId,
    /// Whether it is crashed.
    pub crashed: bool,
    /// Its role; `None` when crashed.
    pub role: Option<RoleKind>,
    /// Its term (when crashed: the persisted term).
    pub term: Term,
    /// Its vote (when crashed: the persisted vote).
    pub voted_for: Option<NodeId>,
    /// The leader it knows; `None` when crashed.
    pub leader: Option<NodeId>,
    /// The server a leader is handing leadership to (§3.10); `None` otherwise. Left out of
    /// the JSON when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transferee: Option<NodeId>,
    /// Its log (when crashed: the persisted log).
    pub log: Vec<Entry<Value>>,
    /// Its commit index; 0 when crashed.
    pub commit: Index,
}

impl NodeView {
    /// What a running server shows.
    pub fn of_peer(id: NodeId, peer: &Peer<Value, Planted>) -> NodeView {
        NodeView {
            id,
            crashed: false,
            role: Some(peer.role_kind()),
            term: peer.term(),
            voted_for: peer.voted_for(),
            leader: peer.leader(),
            transferee: peer.transferee(),
            log: peer.log().to_vec(),
            commit: peer.commit_index(),
        }
    }

    /// The fields (named as in the trace format) in which `self` and `other` differ, with
    /// `self`'s value and then `other`'s, in the order of the struct.
    pub fn differences(&self, other: &NodeView) -> Vec<(&'static str, String, String)> {
        let fields = [
            (
                "crashed",
                format!("{}", self.crashed),
                format!("{}", other.crashed),
            ),
            (
                "role",
                format!("{:?}", self.role),
                format!("{:?}", other.role),
            ),
            ("term", self.term.to_string(), other.term.to_string()),
            (
                "voted_for",
                format!("{:?}", self.voted_for),
                format!("{:?}", other.voted_for),
            ),
            (
                "leader",
                format!("{:?}", self.leader),
                format!("{:?}", other.leader),
            ),
            (
                "transferee",
                format!("{:?}", self.transferee),
                format!("{:?}", other.transferee),
            ),
            ("log", format!("{:?}", self.log), format!("{:?}", other.log)),
            ("commit", self.commit.to_string(), other.commit.to_string()),
        ];
        fields.into_iter().filter(|(_, a, b)| a != b).collect()
    }

    /// What a crashed server shows: what it persisted.
    pub fn of_persisted(id: NodeId, durable: crate::peer::Durable<Value>) -> NodeView {
        NodeView {
            id,
            crashed: true,
            role: None,
            term: durable.term,
            voted_for: durable.voted_for,
            leader: None,
            transferee: None,
            log: durable.log,
            commit: 0,
        }
    }
}

/// Line 2 of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Init {
    /// Always `init`.
    pub kind: String,
    /// Every server's initial state.
    pub nodes: Vec<NodeView>,
}

/// A message a step sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The message.
    pub message: Message<Value>,
}

/// One step of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Always `step`.
    pub kind: String,
    /// 1, 2, 3, …
    pub step: usize,
    /// The action (a TLA+ action of `tla/Raft.tla`, written as its name).
    pub action: Action,
    /// The server taking the step (the receiver of a delivery or a drop).
    pub node: NodeId,
    /// The sender, for message actions.
    pub from: Option<NodeId>,
    /// The message, for message actions.
    pub message: Option<Message<Value>>,
    /// The proposed value, for `ClientRequest`.
    pub value: Option<Value>,
    /// Every server after the step.
    pub nodes: Vec<NodeView>,
    /// What the step sent, in output order.
    pub sent: Vec<Sent>,
}

/// A whole trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Line 1.
    pub header: Header,
    /// Line 2.
    pub init: Init,
    /// The remaining lines.
    pub steps: Vec<Step>,
}

impl Trace {
    /// The trace as JSON Lines.
    pub fn to_jsonl(&self) -> String {
        let mut text = String::new();
        let mut push = |line: String| {
            text.push_str(&line);
            text.push('\n');
        };
        push(serde_json::to_string(&self.header).expect("trace header serializes"));
        push(serde_json::to_string(&self.init).expect("trace init serializes"));
        for step in &self.steps {
            push(serde_json::to_string(step).expect("trace step serializes"));
        }
        text
    }

    /// Reads a trace; the error names the line and what is wrong with it.
    pub fn parse(text: &str) -> Result<Trace, String> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = lines.next().ok_or("empty trace")?;
        let header: Header =
            serde_json::from_str(first).map_err(|e| format!("line 1 (header): {e}"))?;
        if header.kind != "header" {
            return Err(format!("line 1: kind is `{}`, not `header`", header.kind));
        }
        if header.version != VERSION {
            return Err(format!(
                "line 1: trace format version {} is not supported (this reader knows {VERSION})",
                header.version
            ));
        }
        let (_, second) = lines.next().ok_or("line 2 (init) is missing")?;
        let init: Init = serde_json::from_str(second).map_err(|e| format!("line 2 (init): {e}"))?;
        let mut steps = Vec::new();
        for (number, line) in lines {
            let step: Step =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}", number + 1))?;
            if step.kind != "step" || step.step != steps.len() + 1 {
                return Err(format!(
                    "line {}: expected step {}, found kind `{}` step {}",
                    number + 1,
                    steps.len() + 1,
                    step.kind,
                    step.step
                ));
            }
            steps.push(step);
        }
        Ok(Trace {
            header,
            init,
            steps,
        })
    }

    /// Whether any step crashes a server.
    pub fn has_crash(&self) -> bool {
        self.steps.iter().any(|step| step.action == Action::Crash)
    }
}

/// Every server's observable state in `state`.
pub fn node_views(config: &ModelConfig, state: &RaftState) -> Vec<NodeView> {
    (0..config.servers)
        .map(|i| {
            let server = state.actor_states[i]
                .server()
                .expect("the first actors are servers");
            if state.crashed[i] {
                let durable = state.actor_storages[i]
                    .as_deref()
                    .cloned()
                    .unwrap_or_default();
                NodeView::of_persisted(i as NodeId, durable)
            } else {
                NodeView::of_peer(i as NodeId, &server.peer)
            }
        })
        .collect()
}

fn server_peer(state: &RaftState, id: Id) -> Option<&Peer<Value, Planted>> {
    state
        .actor_states
        .get(usize::from(id))?
        .server()
        .map(|s| &s.peer)
}

fn sent_of(from: NodeId, output: &crate::peer::Output<Value>) -> Vec<Sent> {
    output
        .messages()
        .map(|(to, message)| Sent {
            from,
            to: *to,
            message: message.clone(),
        })
        .collect()
}

/// The step for `action` from `before` to `after`, or `None` for an environment move that
/// touches no server. The step's messages come from running the same Peer call again on a
/// copy of the server, which must land in the model's next state (asserted).
pub fn step_of(
    config: &ModelConfig,
    before: &RaftState,
    action: &RaftAction,
    after: &RaftState,
    number: usize,
) -> Option<Step> {
    let servers = config.servers;
    let is_server = |id: Id| usize::from(id) < servers;
    let mut step = Step {
        kind: "step".into(),
        step: number,
        // A placeholder: every arm below that keeps the step sets it.
        action: Action::Crash,
        node: 0,
        from: None,
        message: None,
        value: None,
        nodes: node_views(config, after),
        sent: Vec::new(),
    };
    let check = |peer: &Peer<Value, Planted>, id: Id| {
        assert_eq!(
            Some(peer),
            server_peer(after, id),
            "replaying the step on a copy of server {id:?} gives the model's next state"
        );
    };
    match action {
        ActorModelAction::Deliver { src, dst, msg } if is_server(*dst) => {
            let mut peer = server_peer(before, *dst)?.clone();
            step.node = usize::from(*dst) as NodeId;
            match msg {
                ModelMsg::Peer(message) => {
                    let from = usize::from(*src) as NodeId;
                    step.action = Action::handling(message.message());
                    step.from = Some(from);
                    step.message = Some(message.message().clone());
                    let output = peer
                        .handle_message(from, message.message().clone())
                        .expect("model messages come from members");
                    step.sent = sent_of(step.node, &output);
                }
                ModelMsg::Propose(value) => {
                    step.action = Action::ClientRequest;
                    step.value = Some(*value);
                    // A proposal to a server that is not the leader changes nothing; an
                    // ordered network still consumes it, a move with nothing to replay.
                    let (_, output) = peer.propose(vec![*value]).ok()?;
                    step.sent = sent_of(step.node, &output);
                }
                ModelMsg::Transfer => {
                    // A request that reached a server that no longer leads is dropped: a move
                    // with nothing to replay.
                    let to = usize::from(*src) as NodeId;
                    step.action = Action::TransferLeadership;
                    step.from = Some(to);
                    let output = peer.transfer_leadership(to).ok()?;
                    step.sent = sent_of(step.node, &output);
                }
                // A follower passes the request on to its leader: nothing to replay.
                ModelMsg::TakeOver => return None,
            }
            check(&peer, *dst);
        }
        ActorModelAction::Timeout(id, timer) if is_server(*id) => {
            let mut peer = server_peer(before, *id)?.clone();
            step.node = usize::from(*id) as NodeId;
            step.action = Action::timeout(*timer);
            let output = peer.handle_timeout(*timer);
            step.sent = sent_of(step.node, &output);
            check(&peer, *id);
        }
        ActorModelAction::Drop(envelope) if is_server(envelope.dst) => {
            let ModelMsg::Peer(message) = &envelope.msg else {
                return None;
            };
            step.action = Action::DropMessage;
            step.node = usize::from(envelope.dst) as NodeId;
            step.from = Some(usize::from(envelope.src) as NodeId);
            step.message = Some(message.message().clone());
        }
        ActorModelAction::Crash(id) if is_server(*id) => {
            step.action = Action::Crash;
            step.node = usize::from(*id) as NodeId;
        }
        ActorModelAction::Recover(id) if is_server(*id) => {
            step.action = Action::Recover;
            step.node = usize::from(*id) as NodeId;
        }
        _ => return None,
    }
    Some(step)
}

/// A trace of a path of (state, action taken from it) pairs, as stateright returns them.
pub fn from_path(
    config: &ModelConfig,
    pairs: &[(RaftState, Option<RaftAction>)],
    header: Header,
) -> Trace {
    let init = Init {
        kind: "init".into(),
        nodes: node_views(config, &pairs[0].0),
    };
    let mut steps = Vec::new();
    for window in pairs.windows(2) {
        let (before, Some(action)) = (&window[0].0, &window[0].1) else {
            continue;
        };
        if let Some(step) = step_of(config, before, action, &window[1].0, steps.len() + 1) {
            steps.push(step);
        }
    }
    Trace {
        header,
        init,
        steps,
    }
}

fn header(config: &ModelConfig, name: String, origin: &str) -> Header {
    Header {
        kind: "header".into(),
        version: VERSION,
        name,
        origin: origin.into(),
        property: None,
        bug: config.bug.map(|bug| bug.name().to_string()),
        seed: None,
        servers: config.servers,
        values: (1..=config.client_requests as Value).collect(),
        config: TraceConfig::from(config),
    }
}

/// A small deterministic generator (SplitMix64), so that a seed gives the same walk on every
/// machine and every version of every dependency.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// How often a walk picks each kind of action, relative to the others: deliveries and client
/// moves dominate, so that walks make progress; loss and crashes are rarer.
fn weight(action: &RaftAction) -> u64 {
    match action {
        ActorModelAction::Deliver { .. } => 12,
        ActorModelAction::SelectRandom { .. } => 12,
        ActorModelAction::Timeout(_, Timer::Election) => 3,
        ActorModelAction::Timeout(_, Timer::Heartbeat) => 4,
        ActorModelAction::Recover(_) => 6,
        ActorModelAction::Crash(_) => 1,
        ActorModelAction::Drop(_) => 1,
    }
}

/// The configurations walks use, in turn: three servers, up to three terms, two requests, one
/// crash at a time, and each network kind, lossy or not; two of them send one entry per
/// AppendEntries with a window of one or two; two run pre-vote, one of them with two
/// leadership transfers.
pub fn walk_configs() -> Vec<ModelConfig> {
    let base = ModelConfig {
        name: "walk".into(),
        servers: 3,
        max_term: 3,
        client_requests: 2,
        max_crashes: 1,
        max_in_flight: 8,
        heartbeats: true,
        symmetry: false,
        ..ModelConfig::default()
    };
    vec![
        ModelConfig {
            name: "walk-unordered-lossy".into(),
            lossy: true,
            ..base.clone()
        },
        ModelConfig {
            name: "walk-duplicating-batched".into(),
            network: NetworkKind::Duplicating,
            batch: Some(1),
            window: Some(1),
            ..base.clone()
        },
        ModelConfig {
            name: "walk-unordered-batched-pre-vote".into(),
            batch: Some(1),
            window: Some(2),
            pre_vote: true,
            ..base.clone()
        },
        ModelConfig {
            name: "walk-ordered-lossy".into(),
            network: NetworkKind::Ordered,
            lossy: true,
            ..base.clone()
        },
        ModelConfig {
            name: "walk-unordered-transfer-pre-vote".into(),
            pre_vote: true,
            transfers: 2,
            ..base
        },
    ]
}

/// A random walk of at most `max_steps` server steps through `config`'s model, choosing among
/// the enabled transitions (within the model's bounds) with [`weight`]. It stops early when no
/// transition is enabled.
pub fn random_walk(config: &ModelConfig, seed: u64, max_steps: usize, name: String) -> Trace {
    let model: RaftModel = config.clone().into_model();
    let mut rng = SplitMix64::new(seed);
    let mut state = model
        .init_states()
        .into_iter()
        .next()
        .expect("the model has an initial state");
    let mut header = header(config, name, "walk");
    header.seed = Some(seed);
    let init = Init {
        kind: "init".into(),
        nodes: node_views(config, &state),
    };
    let mut steps = Vec::new();
    let mut moves = 0;
    // Environment moves do not count as steps, but are bounded too.
    while steps.len() < max_steps && moves < max_steps * 4 {
        moves += 1;
        let mut actions = Vec::new();
        model.actions(&state, &mut actions);
        let enabled: Vec<(RaftAction, RaftState)> = actions
            .into_iter()
            .filter_map(|action| {
                let next = model.next_state(&state, action.clone())?;
                Model::within_boundary(&model, &next).then_some((action, next))
            })
            .collect();
        if enabled.is_empty() {
            break;
        }
        let total: u64 = enabled.iter().map(|(a, _)| weight(a)).sum();
        let mut pick = rng.below(total);
        let (action, next) = enabled
            .into_iter()
            .find(|(a, _)| {
                let w = weight(a);
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .expect("the pick is below the total weight");
        if let Some(step) = step_of(config, &state, &action, &next, steps.len() + 1) {
            steps.push(step);
        }
        state = next;
    }
    Trace {
        header,
        init,
        steps,
    }
}

/// The configurations searched for Sometimes examples, in order: each property's example is
/// the shortest path in the first configuration that has one.
pub fn example_configs() -> Vec<ModelConfig> {
    let base = ModelConfig {
        name: "examples".into(),
        symmetry: false,
        heartbeats: false,
        max_in_flight: 4,
        ..ModelConfig::default()
    };
    // The crash configuration is the largest, so it comes last: by then only the properties
    // that need a crash are still wanted, and its search stops at their first examples.
    vec![
        base.clone(),
        ModelConfig {
            name: "examples-flow-control".into(),
            batch: Some(1),
            window: Some(1),
            ..base.clone()
        },
        ModelConfig {
            name: "examples-pre-vote".into(),
            pre_vote: true,
            max_in_flight: 3,
            ..base.clone()
        },
        ModelConfig {
            name: "examples-transfer".into(),
            transfers: 1,
            max_in_flight: 3,
            ..base.clone()
        },
        ModelConfig {
            name: "examples-crash".into(),
            max_crashes: 1,
            max_in_flight: 3,
            ..base
        },
    ]
}

/// One trace per Sometimes property: the shortest example (BFS) in the first configuration of
/// [`example_configs`] where one exists. `progress` hears about each search.
pub fn examples(progress: &mut dyn FnMut(&str)) -> Vec<Trace> {
    let mut wanted: BTreeSet<&'static str> = properties::ALL
        .iter()
        .filter(|p| p.expectation == Expect::Sometimes)
        .map(|p| p.name)
        .collect();
    let mut traces = Vec::new();
    for config in example_configs() {
        if wanted.is_empty() {
            break;
        }
        progress(&format!(
            "searching {} for examples of {wanted:?}",
            config.name
        ));
        let checker = config
            .clone()
            .into_model()
            .checker()
            .finish_when(HasDiscoveries::AllOf(wanted.clone()))
            .spawn_bfs()
            .join();
        for name in wanted.clone() {
            let Some(path) = checker.discovery(name) else {
                continue;
            };
            let mut header = header(&config, format!("example-{name}"), "example");
            header.property = Some(name.to_string());
            traces.push(from_path(&config, &path.into_vec(), header));
            wanted.remove(name);
        }
    }
    traces
}

/// The counterexample of a planted bug, as a trace marked with the bug and the violated
/// property: the shortest one in the first configuration of the bug's suite that has one, or
/// else the shrunk walk of the default simulation budget that finds it (as `model check
/// --bug` does). The search reduces symmetry, but the path it returns is replayed from the
/// initial state, so every server keeps its own id.
pub fn counterexample(bug: Bug) -> Option<Trace> {
    // Conformance replays a trace against a node that writes with every step, so a trace
    // comes from configurations and walks that do too.
    for config in ModelConfig::bug_suite(bug)
        .into_iter()
        .filter(|c| !c.persist_steps)
    {
        let model = config.clone().into_model();
        let outcome = Search {
            model: &model,
            symmetry: config.symmetry,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            stop_on_violation: true,
            max_states: None,
            interval: std::time::Duration::from_secs(3600),
            stall: None,
        }
        .run(&mut |_, _, _| {});
        let found = properties::ALL
            .iter()
            .filter(|p| p.expectation == Expect::Always)
            .find_map(|p| outcome.discoveries.get(p.name).map(|path| (p.name, path)));
        let Some((property, path)) = found else {
            continue;
        };
        let mut header = header(
            &config,
            format!("counterexample-{}", bug.name()),
            "counterexample",
        );
        header.property = Some(property.to_string());
        return Some(from_path(&config, &path.clone().into_vec(), header));
    }
    // Beyond the exhaustive bounds: the default simulation budget's shrunk walk.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = super::simulate::SimulationPlan {
        persist_steps: false,
        ..super::simulate::SimulationPlan::default_budget(Some(bug), threads)
    };
    let finding = super::simulate::simulate(
        &plan,
        std::time::Duration::from_secs(3600),
        &mut |_| {},
        Some((super::run::STEP_BUDGET, &super::run::print_walk_stall)),
    )
    .finding?;
    let mut header = header(
        &finding.config,
        format!("counterexample-{}", bug.name()),
        "counterexample",
    );
    header.property = Some(finding.property.to_string());
    header.seed = Some(finding.seed);
    Some(from_path(&finding.config, &finding.path.into_vec(), header))
}

/// `count` random walks from `seed`: walk `i` uses seed `seed + i`, the walk configuration
/// `i mod 4`, and at most `max_steps` steps.
pub fn walks(count: usize, seed: u64, max_steps: usize) -> Vec<Trace> {
    let configs = walk_configs();
    (0..count)
        .map(|i| {
            let walk_seed = seed.wrapping_add(i as u64);
            let config = &configs[i % configs.len()];
            random_walk(config, walk_seed, max_steps, format!("walk-{walk_seed:06}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_is_deterministic_and_reads_back() {
        let config = &walk_configs()[0];
        let one = random_walk(config, 7, 40, "w".into());
        let two = random_walk(config, 7, 40, "w".into());
        assert_eq!(one.to_jsonl(), two.to_jsonl());
        assert!(!one.steps.is_empty());
        assert_eq!(Trace::parse(&one.to_jsonl()), Ok(one));
    }

    #[test]
    fn an_action_is_written_as_its_name() {
        for action in Action::ALL {
            let json = serde_json::to_string(&action).expect("an action serializes");
            assert_eq!(json, format!("\"{}\"", action.name()));
            assert_eq!(serde_json::from_str::<Action>(&json).ok(), Some(action));
        }
        assert!(serde_json::from_str::<Action>("\"Nap\"").is_err());
    }

    #[test]
    fn a_handle_action_names_the_message_it_handles() {
        let messages: [Message<Value>; 7] = [
            Message::RequestVoteRequest {
                term: 1,
                last_log_index: 0,
                last_log_term: 0,
                transfer: false,
            },
            Message::TimeoutNow { term: 1 },
            Message::PreVoteRequest {
                term: 1,
                last_log_index: 0,
                last_log_term: 0,
            },
            Message::PreVoteResponse {
                term: 1,
                granted: false,
            },
            Message::RequestVoteResponse {
                term: 1,
                granted: true,
            },
            Message::AppendEntriesRequest {
                term: 1,
                prev_log_index: 0,
                prev_log_term: 0,
                entries: Vec::new(),
                leader_commit: 0,
            },
            Message::AppendEntriesResponse {
                term: 1,
                success: true,
                index: 0,
            },
        ];
        for message in &messages {
            let action = Action::handling(message);
            assert_eq!(action.name(), format!("Handle{}", message.kind()));
            assert_eq!(action.handled_kind(), Some(message.kind()));
        }
        for timer in [Timer::Election, Timer::Heartbeat] {
            assert_eq!(Action::timeout(timer).timer(), Some(timer));
        }
    }

    #[test]
    fn a_reader_refuses_another_version() {
        let mut trace = random_walk(&walk_configs()[0], 1, 5, "w".into());
        trace.header.version = 2;
        let error = Trace::parse(&trace.to_jsonl()).unwrap_err();
        assert!(error.contains("version 2"), "{error}");
    }
}
