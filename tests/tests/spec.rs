//! The TLA+ spec `tla/Raft.tla`, checked with the `tla-checker` crate as a library:
//!
//! - `Raft.tla` and `MCRaft.tla` parse, define one action per trace action and one invariant
//!   per Always property of the model, with the same names;
//! - the bounded configurations `MCRaft.cfg` (two terms) and `MCRaftCrash.cfg` (one term, one
//!   crash at a time) are model-checked to completion without violation;
//! - model traces (the checked-in corpus and freshly generated walks) are replayed against
//!   `Raft.tla`: every step, mapped into TLA+ variables, must be a step of `Next` through the
//!   trace's action, and every state must satisfy the invariants;
//! - a trace with one illegal step is rejected at that step, and each planted bug's
//!   counterexample is rejected at the step where the correct Peer parts from it;
//! - deliberately broken copies of the spec violate each of the nine invariants in turn, so
//!   each of them can fail.
//!
//! `cargo test -p tests --test spec` prints `spec: distinct_states=N traces_validated=M`.

use model::bugs::Bug;
use model::checker::properties::{self, Expect};
use model::checker::trace::{self, Action, NodeView, Sent, Step, Trace};
use model::{Entry, FlowControl, Message, NodeId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tests::corpus::{self, is_counterexample};
use tla_checker::ast::{Env, Expr, Spec, State, Value};
use tla_checker::checker::{self as tlc, CheckResult};
use tla_checker::eval::{self, Definitions, EvalContext};
use tla_checker::load::prepare_from_path;

/// Walks generated in the test, on top of the checked-in corpus (more if the corpus holds
/// fewer than 100 - 60 valid traces).
/// The value of MaxBatch or Window that stands for no cap: more than any bounded run sends.
const UNCAPPED: i64 = 1000;
const GENERATED_WALKS: usize = 60;
const GENERATED_SEED: u64 = 5000;
const GENERATED_MAX_STEPS: usize = 40;

fn tla_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tla")
}

fn name(text: &str) -> Arc<str> {
    Arc::from(text)
}

fn always_properties() -> Vec<&'static str> {
    properties::ALL
        .iter()
        .filter(|p| p.expectation == Expect::Always && !properties::CODE_ONLY.contains(&p.name))
        .map(|p| p.name)
        .collect()
}

// ----- Loading the spec -----

/// `Raft.tla` prepared for evaluation under one binding of its constants.
struct Loaded {
    spec: Spec,
    env: Env,
    defs: Definitions,
    primed: Vec<Arc<str>>,
    index: BTreeMap<String, usize>,
    duplicating: bool,
}

impl Loaded {
    /// `Raft.tla` with servers `0..servers` (as in traces), the given values, and the
    /// network's kind.
    fn new(
        source_dir: &Path,
        servers: usize,
        values: &[u8],
        duplicating: bool,
        lossy: bool,
        flow: FlowControl,
        pre_vote: bool,
    ) -> Self {
        // The spec has no "no cap": a cap no run of the model reaches stands for none.
        let cap = |cap: u64| Value::Int(i64::try_from(cap).unwrap_or(i64::MAX).min(UNCAPPED));
        let constants = vec![
            (
                name("Server"),
                Value::set((0..servers as i64).map(Value::Int).collect()),
            ),
            (
                name("Value"),
                Value::set(values.iter().map(|v| Value::Int(i64::from(*v))).collect()),
            ),
            (name("Nil"), Value::Model(name("Nil"))),
            (name("Duplicating"), Value::Bool(duplicating)),
            (name("Lossy"), Value::Bool(lossy)),
            (name("MaxBatch"), cap(flow.max_entries)),
            (name("Window"), cap(flow.max_inflight as u64)),
            (name("PreVote"), Value::Bool(pre_vote)),
            // Whether a step is a transfer is the trace's to say: the action is always there.
            (name("Transfers"), Value::Bool(true)),
        ];
        let prepared = prepare_from_path(&source_dir.join("Raft.tla"), None, &constants)
            .unwrap_or_else(|e| panic!("Raft.tla does not load: {e}"));
        let (env, defs) = tlc::prepare_spec(
            &prepared.spec,
            &prepared.domains,
            Some(&prepared.spec_path),
            true,
        )
        .unwrap_or_else(|e| panic!("Raft.tla does not prepare: {e:?}"));
        let spec = prepared.spec;
        let primed = eval::make_primed_names(&spec.vars);
        let index = spec
            .vars
            .iter()
            .enumerate()
            .map(|(i, v)| (v.to_string(), i))
            .collect();
        Loaded {
            spec,
            env,
            defs,
            primed,
            index,
            duplicating,
        }
    }

    fn for_trace(trace: &Trace) -> Self {
        let config = &trace.header.config;
        Loaded::new(
            &tla_dir(),
            trace.header.servers,
            &trace.header.values,
            config.network == "duplicating",
            config.lossy,
            config.flow(),
            config.pre_vote,
        )
    }

    fn var<'a>(&self, state: &'a State, var: &str) -> &'a Value {
        &state.values[self.index[var]]
    }

    fn init_states(&self) -> Vec<State> {
        let init = self.spec.init.as_ref().expect("Raft.tla defines Init");
        eval::init_states(init, &self.spec.vars, &self.env, &self.defs)
            .unwrap_or_else(|e| panic!("Init: {}", tlc::format_eval_error(&e)))
    }

    /// The successors of `state` through `action` with `bindings` in scope.
    fn successors(&self, action: &Expr, state: &State, bindings: &[(&str, Value)]) -> Vec<State> {
        let mut env = self.env.clone();
        for (var, value) in bindings {
            env.insert(name(var), value.clone());
        }
        eval::next_states(
            action,
            state,
            &self.spec.vars,
            &self.primed,
            &mut env,
            &self.defs,
        )
        .unwrap_or_else(|e| panic!("evaluating an action: {}", tlc::format_eval_error(&e)))
        .into_iter()
        .map(|t| t.state)
        .collect()
    }

    fn next_successors(&self, state: &State) -> Vec<State> {
        let next = self.spec.next.as_ref().expect("Raft.tla defines Next");
        self.successors(next, state, &[])
    }

    /// The model's Always properties that the state `after` violates (each is an invariant
    /// of the spec; the two about history read the ghost variables the step set).
    fn violated_properties(&self, after: &State) -> Vec<&'static str> {
        let mut env = self.env.clone();
        for (var, value) in self.spec.vars.iter().zip(&after.values) {
            env.insert(var.clone(), value.clone());
        }
        let context = EvalContext {
            state_vars: self.spec.vars.clone(),
        };
        always_properties()
            .into_iter()
            .filter(|property| {
                let (_, body) = &self.defs[*property];
                let holds = eval::eval_with_context(body, &mut env, &self.defs, &context);
                !matches!(holds, Ok(Value::Bool(true)))
            })
            .collect()
    }
}

// ----- TLA+ values of trace data, and back -----

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(i) => *i,
        other => panic!("expected an integer, found {}", tlc::format_value(other)),
    }
}

/// `f[key]` for a function, sequence or record value.
fn apply<'a>(f: &'a Value, key: &Value) -> &'a Value {
    let found = match (f, key) {
        (Value::Fn(map), key) => map.get(key),
        (Value::Tuple(items), Value::Int(i)) => {
            usize::try_from(*i - 1).ok().and_then(|i| items.get(i))
        }
        (Value::Record(fields), Value::Str(field)) => fields.get(field),
        _ => None,
    };
    found.unwrap_or_else(|| {
        panic!(
            "{} has no element {}",
            tlc::format_value(f),
            tlc::format_value(key)
        )
    })
}

fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    apply(record, &Value::Str(Arc::from(name)))
}

fn server(id: NodeId) -> Value {
    Value::Int(id as i64)
}

fn optional_server(value: &Value) -> Option<NodeId> {
    match value {
        Value::Int(i) => Some(*i as NodeId),
        _ => None,
    }
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::record(fields.into_iter().map(|(k, v)| (name(k), v)).collect())
}

fn entry_value(entry: &Entry<u8>) -> Value {
    record(vec![
        ("term", Value::Int(entry.term as i64)),
        (
            "command",
            entry
                .command
                .map_or(Value::Model(name("Nil")), |c| Value::Int(i64::from(c))),
        ),
    ])
}

fn entries_value(entries: &[Entry<u8>]) -> Value {
    Value::tuple(entries.iter().map(entry_value).collect())
}

/// A message with its envelope, as `Raft.tla` writes it.
fn message_value(from: NodeId, to: NodeId, message: &Message<u8>) -> Value {
    let int = |n: u64| Value::Int(n as i64);
    let mut fields = vec![
        ("type", Value::Str(name(message.kind()))),
        ("term", int(message.term())),
        ("from", server(from)),
        ("to", server(to)),
    ];
    match message {
        Message::RequestVoteRequest {
            last_log_index,
            last_log_term,
            transfer,
            ..
        } => {
            fields.push(("last_log_index", int(*last_log_index)));
            fields.push(("last_log_term", int(*last_log_term)));
            fields.push(("transfer", Value::Bool(*transfer)));
        }
        Message::TimeoutNow { .. } => {}
        Message::PreVoteRequest {
            last_log_index,
            last_log_term,
            ..
        } => {
            fields.push(("last_log_index", int(*last_log_index)));
            fields.push(("last_log_term", int(*last_log_term)));
        }
        Message::RequestVoteResponse { granted, .. } | Message::PreVoteResponse { granted, .. } => {
            fields.push(("granted", Value::Bool(*granted)));
        }
        Message::AppendEntriesRequest {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
            ..
        } => {
            fields.push(("prev_log_index", int(*prev_log_index)));
            fields.push(("prev_log_term", int(*prev_log_term)));
            fields.push(("entries", entries_value(entries)));
            fields.push(("leader_commit", int(*leader_commit)));
        }
        Message::AppendEntriesResponse { success, index, .. } => {
            fields.push(("success", Value::Bool(*success)));
            fields.push(("index", int(*index)));
        }
    }
    record(fields)
}

type Bag = BTreeMap<Value, i64>;

fn bag(value: &Value) -> Bag {
    match value {
        Value::Fn(map) => map.iter().map(|(k, v)| (k.clone(), int(v))).collect(),
        Value::Tuple(items) if items.is_empty() => Bag::new(),
        other => panic!("messages is not a bag: {}", tlc::format_value(other)),
    }
}

fn format_bag(bag: &Bag) -> String {
    let items: Vec<String> = bag
        .iter()
        .map(|(m, n)| {
            let shown = tlc::format_value(m);
            if *n == 1 {
                shown
            } else {
                format!("{n} x {shown}")
            }
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn log_of(value: &Value) -> Vec<Entry<u8>> {
    let Value::Tuple(items) = value else {
        panic!("a log is a sequence, found {}", tlc::format_value(value));
    };
    items
        .iter()
        .map(|e| Entry {
            term: int(field(e, "term")) as u64,
            command: match field(e, "command") {
                Value::Int(c) => Some(*c as u8),
                _ => None,
            },
        })
        .collect()
}

impl Loaded {
    /// Server `i` of `state` as a trace shows it: a crashed server shows its persisted term,
    /// vote and log, and no role, leader or commit index.
    fn node_view(&self, state: &State, i: NodeId) -> NodeView {
        let at = |var: &str| apply(self.var(state, var), &server(i));
        let crashed = matches!(at("crashed"), Value::Bool(true));
        let role = match at("role") {
            Value::Str(role) => match role.as_ref() {
                "Follower" => model::RoleKind::Follower,
                "PreCandidate" => model::RoleKind::PreCandidate,
                "Candidate" => model::RoleKind::Candidate,
                "Leader" => model::RoleKind::Leader,
                other => panic!("unknown role {other}"),
            },
            other => panic!("a role is a string, found {}", tlc::format_value(other)),
        };
        NodeView {
            id: i,
            crashed,
            role: (!crashed).then_some(role),
            term: int(at("currentTerm")) as u64,
            voted_for: optional_server(at("votedFor")),
            leader: if crashed {
                None
            } else {
                optional_server(at("leader"))
            },
            transferee: if crashed {
                None
            } else {
                optional_server(at("transferee"))
            },
            log: log_of(at("log")),
            commit: if crashed {
                0
            } else {
                int(at("commitIndex")) as u64
            },
        }
    }

    fn node_views(&self, state: &State, servers: usize) -> Vec<NodeView> {
        (0..servers as NodeId)
            .map(|i| self.node_view(state, i))
            .collect()
    }
}

/// The TLA+ variables in which two node views differ, with both values.
fn node_differences(spec: &NodeView, trace: &NodeView) -> Vec<String> {
    spec.differences(trace)
        .into_iter()
        .map(|(field, a, b)| {
            let var = match field {
                "term" => "currentTerm",
                "voted_for" => "votedFor",
                "commit" => "commitIndex",
                other => other,
            };
            format!("{var}[{}]: spec {a}, trace {b}", trace.id)
        })
        .collect()
}

// ----- Replaying a trace against the spec -----

/// Why a trace is not a behaviour of the spec.
#[derive(Debug)]
struct Rejection {
    trace: String,
    step: usize,
    reason: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "trace {}: step {} is not a step of Raft.tla's Next: {}",
            self.trace, self.step, self.reason
        )
    }
}

/// An action instance: the expression, and the values of the names it uses.
type Instance = (String, Vec<(&'static str, Value)>);

/// The instance of a `Next` disjunct that a trace step names, with the values it binds.
fn instance(step: &Step) -> Result<Instance, String> {
    let node = ("node", server(step.node));
    let message = || -> Result<(&'static str, Value), String> {
        let from = step.from.ok_or("a message action without `from`")?;
        let message = step
            .message
            .as_ref()
            .ok_or("a message action without `message`")?;
        Ok(("msg", message_value(from, step.node, message)))
    };
    let handler = |kind: &str| -> Result<Instance, String> {
        let msg = message()?;
        let expected = format!("Handle{}", field_str(&msg.1, "type"));
        if expected != step.action.name() {
            return Err(format!(
                "{} carries a {}",
                step.action,
                field_str(&msg.1, "type")
            ));
        }
        Ok((
            format!(
                "msg \\in BagToSet(messages) /\\ msg.type = \"{kind}\" \
                 /\\ {}(msg.to, msg.from, msg)",
                step.action
            ),
            vec![msg],
        ))
    };
    match step.action {
        Action::ElectionTimeout | Action::HeartbeatTimeout | Action::Crash | Action::Recover => {
            Ok((format!("{}(node)", step.action), vec![node]))
        }
        Action::ClientRequest => {
            let value = step.value.ok_or("ClientRequest without `value`")?;
            Ok((
                "ClientRequest(node, value)".into(),
                vec![node, ("value", Value::Int(i64::from(value)))],
            ))
        }
        Action::HandleRequestVoteRequest
        | Action::HandleRequestVoteResponse
        | Action::HandlePreVoteRequest
        | Action::HandlePreVoteResponse
        | Action::HandleAppendEntriesRequest
        | Action::HandleAppendEntriesResponse
        | Action::HandleTimeoutNow => handler(step.action.handled_kind().expect("a Handle action")),
        Action::TransferLeadership => {
            let to = step.from.ok_or("TransferLeadership without `from`")?;
            Ok((
                "TransferLeadership(node, target)".into(),
                vec![node, ("target", server(to))],
            ))
        }
        Action::DropMessage => Ok((
            "msg \\in BagToSet(messages) /\\ DropMessage(msg)".into(),
            vec![message()?],
        )),
    }
}

fn field_str(record: &Value, name: &str) -> String {
    match field(record, name) {
        Value::Str(s) => s.to_string(),
        other => tlc::format_value(other),
    }
}

impl Loaded {
    /// The messages in flight after `step` from `before`, as the trace says.
    fn expected_network(&self, before: &State, step: &Step) -> Bag {
        let mut network = bag(self.var(before, "messages"));
        let consumes = match step.action {
            Action::DropMessage => true,
            action => action.handled_kind().is_some() && !self.duplicating,
        };
        if consumes {
            if let (Some(from), Some(message)) = (step.from, &step.message) {
                let consumed = message_value(from, step.node, message);
                if let Some(count) = network.get_mut(&consumed) {
                    *count -= 1;
                    if *count == 0 {
                        network.remove(&consumed);
                    }
                }
            }
        }
        for Sent { from, to, message } in &step.sent {
            *network
                .entry(message_value(*from, *to, message))
                .or_insert(0) += 1;
        }
        network
    }

    /// How the spec's successor `after` differs from what the trace says of the step.
    fn differences(&self, before: &State, after: &State, step: &Step) -> Vec<String> {
        let mut out = Vec::new();
        for expected in &step.nodes {
            let actual = self.node_view(after, expected.id);
            out.extend(node_differences(&actual, expected));
        }
        let expected = self.expected_network(before, step);
        let actual = bag(self.var(after, "messages"));
        if expected != actual {
            // Only what differs: the messages one side has more copies of than the other.
            let surplus = |a: &Bag, b: &Bag| -> Bag {
                a.iter()
                    .filter_map(|(m, n)| {
                        let extra = n - b.get(m).copied().unwrap_or(0);
                        (extra > 0).then(|| (m.clone(), extra))
                    })
                    .collect()
            };
            out.push(format!(
                "messages in flight: only the spec has {}, only the trace has {}",
                format_bag(&surplus(&actual, &expected)),
                format_bag(&surplus(&expected, &actual))
            ));
        }
        out
    }

    /// Why the step's action instance has no successor from `state`.
    fn disabled_reason(&self, state: &State, step: &Step, bindings: &[(&str, Value)]) -> String {
        let node = server(step.node);
        let crashed = matches!(apply(self.var(state, "crashed"), &node), Value::Bool(true));
        let role = field_str_value(apply(self.var(state, "role"), &node));
        let mut why = format!("it is not enabled (server {} ", step.node);
        if crashed {
            why.push_str("is crashed");
        } else {
            write!(why, "is a running {role}").expect("writing to a String");
        }
        if let Some((_, msg)) = bindings.iter().find(|(n, _)| *n == "msg") {
            let network = bag(self.var(state, "messages"));
            if !network.contains_key(msg) {
                write!(
                    why,
                    "; the message {} is not in flight",
                    tlc::format_value(msg)
                )
                .expect("writing to a String");
            }
        }
        why.push(')');
        why
    }

    /// Replays `trace`; returns the number of steps, or where and why the spec disagrees.
    fn validate(&self, trace: &Trace) -> Result<usize, Rejection> {
        let servers = trace.header.servers;
        let reject = |step: usize, reason: String| Rejection {
            trace: trace.header.name.clone(),
            step,
            reason,
        };
        let init = self.init_states();
        let mut current: Vec<State> = init
            .into_iter()
            .filter(|s| self.node_views(s, servers) == trace.init.nodes)
            .collect();
        if current.is_empty() {
            return Err(reject(0, "the initial state is not an Init state".into()));
        }
        for step in &trace.steps {
            let (text, bindings) = instance(step).map_err(|why| reject(step.step, why))?;
            // A step of Next is the action together with RecordHistory, which keeps the
            // ghost variables; those are not in the trace and follow from the spec.
            let text = format!("({text}) /\\ RecordHistory");
            let action = tla_checker::parser::parse_expr(&text)
                .unwrap_or_else(|e| panic!("parsing `{text}`: {e:?}"));
            let mut next: Vec<State> = Vec::new();
            let mut reasons = Vec::new();
            for before in &current {
                let successors = self.successors(&action, before, &bindings);
                if successors.is_empty() {
                    reasons.push(format!(
                        "{} {}",
                        step.action,
                        self.disabled_reason(before, step, &bindings)
                    ));
                    continue;
                }
                let mut of_next: Option<Vec<State>> = None;
                for after in successors {
                    let differences = self.differences(before, &after, step);
                    if !differences.is_empty() {
                        reasons.push(format!(
                            "after {} the spec and the trace differ in {}",
                            step.action,
                            differences.join("; ")
                        ));
                        continue;
                    }
                    let of_next = of_next.get_or_insert_with(|| self.next_successors(before));
                    if !of_next.contains(&after) {
                        reasons.push(format!(
                            "the {} step is not among Next's successors",
                            step.action
                        ));
                        continue;
                    }
                    let violated = self.violated_properties(&after);
                    if !violated.is_empty() {
                        reasons.push(format!("the state after it violates {violated:?}"));
                        continue;
                    }
                    if !next.contains(&after) {
                        next.push(after);
                    }
                }
            }
            if next.is_empty() {
                reasons.dedup();
                return Err(reject(step.step, reasons.join(" | ")));
            }
            current = next;
        }
        Ok(trace.steps.len())
    }
}

fn field_str_value(value: &Value) -> String {
    match value {
        Value::Str(s) => s.to_string(),
        other => tlc::format_value(other),
    }
}

// ----- Replaying a trace against the correct Peer (to locate a planted bug's step) -----

/// The step at which the correct Peer parts from `trace` (see
/// [`tests::corpus::first_peer_divergence`]).
fn first_peer_divergence(trace: &Trace) -> Option<usize> {
    corpus::first_peer_divergence(trace).map(|d| d.step)
}

// ----- Traces -----

/// Every trace that must be a behaviour of the spec: the corpus's walks and examples, and
/// freshly generated walks (so that the spec keeps up with the current model).
fn valid_traces() -> Vec<Trace> {
    let mut traces: Vec<Trace> = corpus::load()
        .into_iter()
        .filter(|t| !is_counterexample(t))
        .collect();
    let count = GENERATED_WALKS.max(100usize.saturating_sub(traces.len()));
    traces.extend(trace::walks(count, GENERATED_SEED, GENERATED_MAX_STEPS));
    traces
}

/// Validates every trace; panics with every rejection. Returns the number of traces and of
/// validated steps per action.
fn validate_all(traces: &[Trace]) -> (usize, BTreeMap<String, usize>) {
    let mut steps: BTreeMap<String, usize> = BTreeMap::new();
    let mut rejections = Vec::new();
    for trace in traces {
        match Loaded::for_trace(trace).validate(trace) {
            Ok(_) => {
                for step in &trace.steps {
                    *steps.entry(step.action.to_string()).or_default() += 1;
                }
            }
            Err(rejection) => rejections.push(rejection.to_string()),
        }
    }
    assert!(
        rejections.is_empty(),
        "{} of {} traces are not behaviours of Raft.tla:\n{}",
        rejections.len(),
        traces.len(),
        rejections.join("\n")
    );
    (traces.len(), steps)
}

// ----- Model checking -----

struct CheckFigures {
    distinct_states: usize,
    max_depth: usize,
    elapsed_s: f64,
}

fn describe(result: &CheckResult, spec: &Spec) -> String {
    match result {
        CheckResult::InvariantViolation(counterexample, _) => {
            let name = spec
                .invariant_names
                .get(counterexample.violated_invariant)
                .cloned()
                .flatten()
                .map_or("?".to_string(), |n| n.to_string());
            format!(
                "invariant {name} violated:\n{}",
                tlc::format_trace_with_actions(
                    &counterexample.trace,
                    &counterexample.actions,
                    &spec.vars
                )
            )
        }
        CheckResult::PropertyViolation(violation, _) => format!(
            "property {} violated:\n{}",
            violation.property,
            tlc::format_trace_with_actions(&violation.trace, &violation.actions, &spec.vars)
        ),
        CheckResult::NextError(e, _, _) => format!("error in Next: {}", tlc::format_eval_error(e)),
        CheckResult::InvariantError(e, _, _) => {
            format!("error in an invariant: {}", tlc::format_eval_error(e))
        }
        other => format!("{other:?}"),
    }
}

/// Model-checks `module` under `cfg` to completion.
fn model_check(module: &Path, cfg: &Path) -> (CheckResult, Spec) {
    let prepared = prepare_from_path(module, Some(cfg), &[])
        .unwrap_or_else(|e| panic!("{} does not load: {e}", module.display()));
    let mut config = prepared.checker_config;
    config.max_states = 10_000_000;
    config.max_depth = 1_000_000;
    config.quiet = true;
    let result = tlc::check(&prepared.spec, &prepared.domains, &config);
    (result, prepared.spec)
}

/// The bounded configurations of `MCRaft.tla`: two terms without crashes, and one term with
/// one crash at a time.
const CONFIGURATIONS: [&str; 2] = ["MCRaft.cfg", "MCRaftCrash.cfg"];

fn check_mcraft(cfg: &str) -> CheckFigures {
    let start = Instant::now();
    let (result, spec) = model_check(&tla_dir().join("MCRaft.tla"), &tla_dir().join(cfg));
    match result {
        CheckResult::Ok(stats) => CheckFigures {
            distinct_states: stats.states_explored,
            max_depth: stats.max_depth_reached,
            elapsed_s: start.elapsed().as_secs_f64(),
        },
        other => panic!(
            "{cfg} did not complete cleanly: {}",
            describe(&other, &spec)
        ),
    }
}

// ----- Tests -----

/// The one test that prints the figures: the bounded model checks (each in its own thread)
/// and the replay of every valid trace.
#[test]
fn model_check_and_trace_validation() {
    let checkers: Vec<_> = CONFIGURATIONS
        .iter()
        .map(|cfg| (cfg, std::thread::spawn(move || check_mcraft(cfg))))
        .collect();
    let start = Instant::now();
    let traces = valid_traces();
    assert!(
        traces.len() >= 100,
        "only {} traces to validate",
        traces.len()
    );
    let (validated, by_action) = validate_all(&traces);
    let steps: usize = by_action.values().sum();
    for action in Action::ALL {
        assert!(
            by_action.contains_key(action.name()),
            "no validated trace has a {action} step"
        );
    }

    let validation_s = start.elapsed().as_secs_f64();
    // Written past the test harness's capture, so that `cargo test` shows the figures.
    let mut out = std::io::stdout();
    let mut distinct_states = 0;
    for (cfg, checker) in checkers {
        let figures = checker.join().expect("the model check finished");
        assert!(figures.distinct_states > 0);
        distinct_states += figures.distinct_states;
        writeln!(
            out,
            "spec: {cfg} complete, no violation: distinct_states={} max_depth={} in {:.1}s",
            figures.distinct_states, figures.max_depth, figures.elapsed_s
        )
        .expect("writing to stdout");
    }
    writeln!(
        out,
        "spec: {validated} traces ({steps} steps) are behaviours of Raft.tla, checked in \
         {validation_s:.1}s; steps by action: {by_action:?}"
    )
    .expect("writing to stdout");
    writeln!(
        out,
        "spec: distinct_states={distinct_states} traces_validated={validated}"
    )
    .expect("writing to stdout");
}

#[test]
fn spec_and_model_configuration_parse() {
    for module in ["Raft.tla", "MCRaft.tla"] {
        let path = tla_dir().join(module);
        let cfg = (module == "MCRaft.tla").then(|| tla_dir().join(CONFIGURATIONS[0]));
        let constants = [];
        let prepared = prepare_from_path(&path, cfg.as_deref(), &constants)
            .unwrap_or_else(|e| panic!("{module} does not parse: {e}"));
        let unparsed: Vec<String> = prepared
            .spec
            .definitions
            .keys()
            .filter_map(|d| prepared.spec.unparsed_definition(d).map(|u| u.to_string()))
            .collect();
        assert!(unparsed.is_empty(), "{module}: {unparsed:?}");
        let warnings: Vec<&String> = prepared.warnings.iter().map(|w| &w.value).collect();
        assert!(warnings.is_empty(), "{module}: {warnings:?}");
        for action in Action::ALL {
            assert!(
                prepared.spec.definitions.contains_key(action.name()),
                "{module} does not define the action {action}"
            );
        }

        for property in always_properties() {
            assert!(
                prepared.spec.definitions.contains_key(property),
                "{module} does not define {property}, an Always property of the model"
            );
        }
    }
    // Every action is a disjunct of Next, and each configuration checks every Always property.
    let raft = std::fs::read_to_string(tla_dir().join("Raft.tla")).expect("Raft.tla");
    let next = &raft[raft.find("\nNext ==").expect("Raft.tla defines Next")..];
    let next = &next[..next.find("\n\n").expect("Next ends")];
    for action in Action::ALL {
        assert!(next.contains(&format!(" {action}(")), "Next lacks {action}");
    }
    for name in CONFIGURATIONS {
        let prepared = prepare_from_path(
            &tla_dir().join("MCRaft.tla"),
            Some(&tla_dir().join(name)),
            &[],
        )
        .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        let invariants: BTreeSet<&str> = prepared
            .spec
            .invariant_names
            .iter()
            .flatten()
            .map(|n| n.as_ref())
            .collect();
        for property in always_properties() {
            assert!(
                invariants.contains(property),
                "{name} does not check {property} as an invariant"
            );
        }
    }
}

/// A trace of the correct model with one step altered is rejected at that step, and the
/// rejection names the variable.
#[test]
fn a_trace_with_one_illegal_step_is_rejected_there() {
    let walk = trace::walks(1, GENERATED_SEED, GENERATED_MAX_STEPS).remove(0);
    let loaded = Loaded::for_trace(&walk);
    if let Err(rejection) = loaded.validate(&walk) {
        panic!("the unaltered walk is rejected: {rejection}");
    }
    let k = walk
        .steps
        .iter()
        .position(|s| s.action == Action::ElectionTimeout)
        .expect("the walk has an election");

    // The server's term after its election timeout is one too high.
    let mut wrong_term = walk.clone();
    let step = &mut wrong_term.steps[k];
    let node = step.node as usize;
    step.nodes[node].term += 1;
    let rejection = loaded
        .validate(&wrong_term)
        .expect_err("a wrong term is rejected");
    assert_eq!(rejection.step, k + 1, "{rejection}");
    assert!(
        rejection.reason.contains(&format!("currentTerm[{node}]")),
        "{rejection}"
    );

    // A vote request is missing from what the step sent.
    let mut lost_send = walk.clone();
    lost_send.steps[k].sent.pop();
    let rejection = loaded
        .validate(&lost_send)
        .expect_err("a missing send is rejected");
    assert_eq!(rejection.step, k + 1, "{rejection}");
    assert!(rejection.reason.contains("messages"), "{rejection}");

    // A heartbeat timer fires on a server that is not a leader.
    let mut not_leader = walk.clone();
    not_leader.steps[k].action = Action::HeartbeatTimeout;
    let rejection = loaded
        .validate(&not_leader)
        .expect_err("a follower's heartbeat is rejected");
    assert_eq!(rejection.step, k + 1, "{rejection}");
    assert!(rejection.reason.contains("not enabled"), "{rejection}");
}

/// Each planted bug's counterexample is not a behaviour of the spec: it is rejected exactly
/// at the step where the correct Peer parts from it.
#[test]
fn planted_bug_counterexamples_are_rejected_at_the_buggy_step() {
    // The corpus's counterexamples; a bug missing from it is searched for here.
    let corpus = corpus::load();
    let counterexamples: Vec<Trace> = Bug::traced()
        .map(|bug| {
            corpus::counterexample_of(&corpus, bug)
                .cloned()
                .or_else(|| trace::counterexample(bug))
                .unwrap_or_else(|| panic!("no counterexample for {bug}"))
        })
        .collect();
    for trace in &counterexamples {
        let buggy = first_peer_divergence(trace)
            .unwrap_or_else(|| panic!("{}: the correct Peer follows it", trace.header.name));
        let rejection = Loaded::for_trace(trace)
            .validate(trace)
            .expect_err("a counterexample is rejected");
        eprintln!(
            "{}: {rejection}",
            trace.header.bug.as_deref().unwrap_or("?")
        );
        assert_eq!(
            rejection.step, buggy,
            "{}: rejected at step {}, the Peer parts at step {buggy}: {rejection}",
            trace.header.name, rejection.step
        );
    }
}

/// A hand-written trace (`tests/testdata/spec/`) in which server 2 votes for two candidates
/// in term 1: the steps before the second vote are behaviours of the spec, the second vote is
/// not, and the rejection names the vote.
#[test]
fn a_hand_written_double_vote_is_rejected_at_the_second_vote() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/spec/double-vote-by-hand.jsonl");
    let text = std::fs::read_to_string(&path).expect("the hand-written trace");
    let trace = Trace::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(first_peer_divergence(&trace), Some(4));
    let rejection = Loaded::for_trace(&trace)
        .validate(&trace)
        .expect_err("a second vote in one term is rejected");
    assert_eq!(rejection.step, 4, "{rejection}");
    assert!(rejection.reason.contains("votedFor[2]"), "{rejection}");
}

/// The correct Peer follows every valid trace: the buggy-step locator above is sound.
#[test]
fn the_peer_follows_every_corpus_walk() {
    for trace in corpus::load().iter().filter(|t| !is_counterexample(t)) {
        assert_eq!(first_peer_divergence(trace), None, "{}", trace.header.name);
    }
}

// ----- Each invariant can fail -----

/// A broken copy of `Raft.tla` that violates one invariant: `from` (which occurs once) is
/// replaced by `to`, and the copy is model-checked under small bounds.
struct Mutant {
    invariant: &'static str,
    why: &'static str,
    from: &'static str,
    to: &'static str,
    values: &'static str,
    max_term: u32,
    max_commands: u32,
    max_in_flight: u32,
    max_crashed: u32,
}

/// One mutation per Always property of the model.
const MUTANTS: [Mutant; 10] = [
    Mutant {
        invariant: "ElectionSafety",
        why: "a server votes again in a term it already voted in, so two leaders share a term",
        from: "/\\ newer \\/ votedFor[i] = Nil \\/ votedFor[i] = j",
        to: "/\\ TRUE",
        values: "{1}",
        max_term: 1,
        max_commands: 0,
        max_in_flight: 5,
        max_crashed: 0,
    },
    Mutant {
        invariant: "LogMatching",
        why: "a leader replaces its log with each new command: two entries of one term at one \
              index over time, and a follower keeps the first",
        from: "Append(@, [term |-> currentTerm[i], command |-> v])",
        to: "<<[term |-> currentTerm[i], command |-> v]>>",
        values: "{1, 2}",
        max_term: 1,
        max_commands: 1,
        max_in_flight: 5,
        max_crashed: 0,
    },
    Mutant {
        invariant: "LeaderCompleteness",
        why: "a voter skips the up-to-date check (§5.4.1) and elects a server that lacks an \
              entry committed in an earlier term",
        from: "/\\ \\/ m.last_log_term > LastTerm(log[i])\n          \
               \\/ m.last_log_term = LastTerm(log[i]) /\\ m.last_log_index >= Len(log[i])",
        to: "/\\ TRUE",
        values: "{1}",
        max_term: 2,
        max_commands: 1,
        max_in_flight: 3,
        max_crashed: 0,
    },
    Mutant {
        invariant: "ElectableHoldsCommitted",
        why: "a leader counts a quorum one short: two servers whose empty logs could elect \
              either of them, and neither holds the committed entry",
        from: "Cardinality(Agree(i, xmatch, k)) >= Majority",
        to: "Cardinality(Agree(i, xmatch, k)) >= Majority - 1",
        values: "{1}",
        max_term: 1,
        max_commands: 1,
        max_in_flight: 3,
        max_crashed: 0,
    },
    Mutant {
        invariant: "StateMachineSafety",
        why: "any one server is taken for a majority: a leader per server in one term, each \
              committing its own command at one index",
        from: "Majority == Cardinality(Server) \\div 2 + 1",
        to: "Majority == 1",
        values: "{1, 2}",
        max_term: 1,
        max_commands: 1,
        max_in_flight: 6,
        max_crashed: 0,
    },
    Mutant {
        invariant: "NoCommitOnMinority",
        why: "a leader counts a quorum one short and commits an entry only it stores",
        from: "Cardinality(Agree(i, xmatch, k)) >= Majority",
        to: "Cardinality(Agree(i, xmatch, k)) >= Majority - 1",
        values: "{1}",
        max_term: 1,
        max_commands: 1,
        max_in_flight: 3,
        max_crashed: 0,
    },
    Mutant {
        invariant: "CommittedSurvivesCrash",
        why: "a server persists its commit index but not its log, and recovers with a commit \
              index past the end of its log",
        from:
            "/\\ commitIndex' = [commitIndex EXCEPT ![i] = 0]\n    /\\ BecomeFollower(i, Nil)\n    \
               /\\ UNCHANGED <<durableVars, messages>>",
        to: "/\\ BecomeFollower(i, Nil)\n    /\\ log' = [log EXCEPT ![i] = << >>]\n    \
             /\\ UNCHANGED <<currentTerm, votedFor, commitIndex, messages>>",
        values: "{1}",
        max_term: 1,
        max_commands: 1,
        max_in_flight: 3,
        max_crashed: 1,
    },
    Mutant {
        invariant: "MonotonicTerm",
        why: "a server recovers without its persisted term and goes back to term 0",
        from: "/\\ BecomeFollower(i, Nil)\n    /\\ UNCHANGED <<durableVars, messages>>",
        to:
            "/\\ BecomeFollower(i, Nil)\n    /\\ currentTerm' = [currentTerm EXCEPT ![i] = 0]\n    \
             /\\ UNCHANGED <<votedFor, log, messages>>",
        values: "{1}",
        max_term: 1,
        max_commands: 0,
        max_in_flight: 2,
        max_crashed: 1,
    },
    Mutant {
        invariant: "FlowControlWindow",
        why: "a new leader probes one index past the end of its log (its blank entry \
              included), so a follower's next index is out of range",
        from: "[j \\in Server |-> IF j = i THEN 0 ELSE Len(log[i]) + 1]]",
        to: "[j \\in Server |-> IF j = i THEN 0 ELSE Len(log[i]) + 3]]",
        values: "{1}",
        max_term: 1,
        max_commands: 0,
        max_in_flight: 2,
        max_crashed: 0,
    },
    Mutant {
        invariant: "MonotonicCommit",
        why: "a follower takes a stale AppendEntries's commit index as its own instead of never \
              lowering it, and goes back on a commit when an older request arrives after a newer",
        from: "Max(@, Min(m.leader_commit, m.prev_log_index + Len(m.entries)))",
        to: "Min(m.leader_commit, m.prev_log_index + Len(m.entries))",
        values: "{1}",
        max_term: 1,
        max_commands: 1,
        max_in_flight: 4,
        max_crashed: 0,
    },
];

impl Mutant {
    /// Model-checks the broken copy, checking only this mutant's invariant; returns the name
    /// of the invariant found violated.
    fn violated(&self) -> String {
        let source = std::fs::read_to_string(tla_dir().join("Raft.tla")).expect("Raft.tla");
        assert_eq!(
            source.matches(self.from).count(),
            1,
            "`{}` occurs once in Raft.tla",
            self.from
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(
            dir.path().join("Raft.tla"),
            source.replace(self.from, self.to),
        )
        .expect("write");
        std::fs::copy(tla_dir().join("MCRaft.tla"), dir.path().join("MCRaft.tla")).expect("copy");
        let cfg = format!(
            "CONSTANTS\n    Server = {{s1, s2, s3}}\n    Nil = Nil\n    Duplicating = FALSE\n    \
             Lossy = FALSE\n    MaxBatch = 1\n    Window = 1\n    PreVote = FALSE\n    Transfers = FALSE\n    Value = {}\n    MaxTerm = {}\n    MaxCommands = {}\n    \
             MaxInFlight = {}\n    MaxCrashed = {}\nSPECIFICATION Spec\nINVARIANT {}\n\
             CONSTRAINT MCBounds\nSYMMETRY MCSymmetry\nCHECK_DEADLOCK FALSE\n",
            self.values,
            self.max_term,
            self.max_commands,
            self.max_in_flight,
            self.max_crashed,
            self.invariant
        );
        std::fs::write(dir.path().join("Mutant.cfg"), cfg).expect("write");
        let (result, spec) = model_check(
            &dir.path().join("MCRaft.tla"),
            &dir.path().join("Mutant.cfg"),
        );
        match result {
            CheckResult::InvariantViolation(counterexample, _) => spec.invariant_names
                [counterexample.violated_invariant]
                .as_ref()
                .map_or("?".into(), |n| n.to_string()),
            other => panic!(
                "the {} mutant ({}) was not caught: {}",
                self.invariant,
                self.why,
                describe(&other, &spec)
            ),
        }
    }
}

/// Every Always property of the model has a mutant, and each mutant violates its invariant.
#[test]
fn every_invariant_can_fail() {
    let covered: BTreeSet<&str> = MUTANTS.iter().map(|m| m.invariant).collect();
    let expected: BTreeSet<&str> = always_properties().into_iter().collect();
    assert_eq!(covered, expected, "one mutant per Always property");
    for mutant in &MUTANTS {
        assert_eq!(
            mutant.violated(),
            mutant.invariant,
            "the {} mutant: {}",
            mutant.invariant,
            mutant.why
        );
    }
}
