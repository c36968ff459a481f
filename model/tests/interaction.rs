//! Interaction tests for the sans-IO [`Peer`], in the style of etcd raft's `interaction_test`.
//!
//! Every file under `tests/testdata/` is a script of commands run against a fresh cluster; the
//! expected output of each command is written below it. `REWRITE=1 cargo test -p model --test
//! interaction` regenerates the expected outputs (read the diff before committing it).
//!
//! The environment is a driver that keeps the Peer's contract strictly:
//! - every step is persisted synchronously: `send_now` messages are queued first, then the
//!   step's `persist` is applied to the node's storage copy (exactly as `Persist` describes it:
//!   hard state, and the log from `log_from` on), then `send_after_persist` messages are queued;
//! - after each step the storage copy must equal `peer.durable()`: a Peer that changes durable
//!   state without asking for it to be persisted fails the test;
//! - `send_now` may carry only AppendEntries requests;
//! - every commit a node reports must agree with every other commit ever reported
//!   (State Machine Safety), and `peer.check_invariants()` runs on every live node after every
//!   step.
//!
//! Commands:
//! - `add-nodes n=3`: servers 1..=n, restored from `Durable::default()`.
//! - `campaign 1`: fire the election timer of a follower or candidate.
//! - `tick-election 1`: fire the election timer on any role (a leader runs check-quorum).
//! - `tick-heartbeat 1`: fire the heartbeat timer.
//! - `propose 1 value`: a client proposes `value` (not a number) at server 1.
//! - `deliver-msgs [from=X] [to=Y] [drop]`: deliver (or drop) the matching messages queued when
//!   the command starts, oldest first. Messages they produce are queued, not delivered.
//! - `stabilize`: deliver until nothing is in flight.
//! - `print-msgs`: list the messages in flight.
//! - `crash 2` / `restart 2`: the node loses its in-memory state (messages it already sent stay
//!   in flight) / recovers from its storage.
//! - `isolate 1` / `heal`: cut a node off from everybody / restore the network.
//! - `status`: every node's role, term, vote, commit index and log.
//!
//! A message is lost when, at the time it is sent or delivered, either end is isolated or the
//! receiver is down.

use datadriven::{walk, TestCase};
use model::{
    Config, Durable, Entry, Message, NodeId, Output, Peer, PeerError, Persist, Role, Timer,
    TimerCommand,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

type Cmd = String;

/// One server: its Peer while it is up, and what its stable storage holds.
struct Node {
    peer: Option<Peer<Cmd>>,
    storage: Durable<Cmd>,
}

/// A message in flight.
struct Envelope {
    from: NodeId,
    to: NodeId,
    message: Message<Cmd>,
}

#[derive(Default)]
struct Env {
    members: Vec<NodeId>,
    /// Whether the nodes run pre-vote (`add-nodes n=3 pre-vote=true`).
    pre_vote: bool,
    nodes: BTreeMap<NodeId, Node>,
    queue: VecDeque<Envelope>,
    isolated: BTreeSet<NodeId>,
    /// The longest committed prefix any node has reported.
    committed: Vec<Entry<Cmd>>,
}

/// What is printed about a Peer before and after a step, to report what changed.
#[derive(PartialEq)]
struct Summary {
    term: u64,
    vote: Option<NodeId>,
    role: String,
    votes: Option<Vec<NodeId>>,
}

fn summary(peer: &Peer<Cmd>) -> Summary {
    let votes = match peer.role() {
        Role::Candidate { votes } => Some(votes.iter().copied().collect()),
        _ => None,
    };
    Summary {
        term: peer.term(),
        vote: peer.voted_for(),
        role: role_name(peer),
        votes,
    }
}

fn role_name(peer: &Peer<Cmd>) -> String {
    match peer.role() {
        Role::Follower { leader: Some(id) } => format!("follower of {id}"),
        Role::Follower { leader: None } => "follower".to_string(),
        Role::PreCandidate { .. } => "pre-candidate".to_string(),
        Role::Candidate { .. } => "candidate".to_string(),
        Role::Leader { .. } => "leader".to_string(),
    }
}

fn vote_name(vote: Option<NodeId>) -> String {
    vote.map_or_else(|| "none".to_string(), |id| id.to_string())
}

fn timer_name(command: &TimerCommand) -> String {
    match command {
        TimerCommand::Set(timer) => format!("set {timer:?}"),
        TimerCommand::Cancel(timer) => format!("cancel {timer:?}"),
    }
}

fn describe(from: NodeId, to: NodeId, message: &Message<Cmd>) -> String {
    let body = match message {
        Message::RequestVoteRequest {
            term,
            last_log_index,
            last_log_term,
            transfer,
        } => format!(
            "RequestVote term={term} last_log_index={last_log_index} last_log_term={last_log_term}{}",
            if *transfer { " transfer" } else { "" }
        ),
        Message::TimeoutNow { term } => format!("TimeoutNow term={term}"),
        Message::RequestVoteResponse { term, granted } => {
            let verdict = if *granted { "granted" } else { "rejected" };
            format!("RequestVoteResp term={term} {verdict}")
        }
        Message::PreVoteRequest {
            term,
            last_log_index,
            last_log_term,
        } => format!(
            "PreVote term={term} last_log_index={last_log_index} last_log_term={last_log_term}"
        ),
        Message::PreVoteResponse { term, granted } => {
            let verdict = if *granted { "granted" } else { "rejected" };
            format!("PreVoteResp term={term} {verdict}")
        }
        Message::AppendEntriesRequest {
            term,
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } => format!(
            "AppendEntries term={term} prev_log_index={prev_log_index} \
             prev_log_term={prev_log_term} commit={leader_commit} entries={entries:?}"
        ),
        Message::AppendEntriesResponse {
            term,
            success: true,
            index,
        } => format!("AppendEntriesResp term={term} success index={index}"),
        Message::AppendEntriesResponse {
            term,
            success: false,
            index,
        } => format!("AppendEntriesResp term={term} reject hint={index}"),
    };
    format!("{from}->{to} {body}")
}

/// The positional arguments of a directive (`campaign 1` has the argument `1` with no value).
fn positional(tc: &mut TestCase) -> Vec<String> {
    let mut names: Vec<String> = tc
        .args
        .iter()
        .filter(|(_, values)| values.is_empty())
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    for name in &names {
        tc.args.remove(name);
    }
    names
}

/// The single node id of `campaign 1`, `crash 2`, ...
fn node_arg(tc: &mut TestCase) -> NodeId {
    let names = positional(tc);
    assert_eq!(names.len(), 1, "{}: expected one node id", tc.directive);
    names[0]
        .parse()
        .unwrap_or_else(|_| panic!("{}: {:?} is not a node id", tc.directive, names[0]))
}

impl Env {
    fn handle(&mut self, tc: &mut TestCase) -> String {
        let mut out = String::new();
        match tc.directive.as_str() {
            "add-nodes" => {
                let n: u64 = tc.take_arg("n").expect("add-nodes n=N");
                self.pre_vote = tc
                    .try_take_arg("pre-vote")
                    .expect("pre-vote=true|false")
                    .unwrap_or(false);
                self.add_nodes(n, &mut out);
            }
            "campaign" => {
                let id = node_arg(tc);
                let peer = self.live(id);
                assert!(
                    !matches!(peer.role(), Role::Leader { .. }),
                    "campaign {id}: it is the leader; use tick-election"
                );
                self.step(id, "", &mut out, |peer| {
                    Ok(peer.handle_timeout(Timer::Election))
                });
            }
            "tick-election" => {
                let id = node_arg(tc);
                self.step(id, "", &mut out, |peer| {
                    Ok(peer.handle_timeout(Timer::Election))
                });
            }
            "tick-heartbeat" => {
                let id = node_arg(tc);
                self.step(id, "", &mut out, |peer| {
                    Ok(peer.handle_timeout(Timer::Heartbeat))
                });
            }
            "propose" => {
                let names = positional(tc);
                let (ids, values): (Vec<String>, Vec<String>) = names
                    .into_iter()
                    .partition(|name| name.parse::<NodeId>().is_ok());
                assert!(
                    ids.len() == 1 && values.len() == 1,
                    "usage: propose <node> <value>, value not a number"
                );
                let id: NodeId = ids[0].parse().unwrap();
                let value = values[0].clone();
                self.step(id, "", &mut out, |peer| {
                    peer.propose(vec![value])
                        .map(|(index, output)| (Some(format!("proposed at index {index}")), output))
                });
            }
            "transfer-leader" => {
                let id = node_arg(tc);
                let to: NodeId = tc
                    .try_take_arg("to")
                    .expect("to=<node>")
                    .expect("to=<node>");
                self.step(id, "", &mut out, |peer| {
                    peer.transfer_leadership(to)
                        .map(|output| (Some(format!("transferring leadership to {to}")), output))
                });
            }
            "deliver-msgs" => {
                let from: Option<NodeId> = tc.try_take_arg("from").expect("from=<node>");
                let to: Option<NodeId> = tc.try_take_arg("to").expect("to=<node>");
                let drop = tc.take_flag("drop").expect("drop is a flag");
                if self.deliver(from, to, drop, &mut out) == 0 {
                    out.push_str("no messages\n");
                }
            }
            "stabilize" => {
                let mut rounds = 0;
                while !self.queue.is_empty() {
                    rounds += 1;
                    assert!(rounds < 1000, "stabilize: the cluster does not quiesce");
                    self.deliver(None, None, false, &mut out);
                }
                if rounds == 0 {
                    out.push_str("no messages\n");
                }
            }
            "print-msgs" => {
                for envelope in &self.queue {
                    let line = describe(envelope.from, envelope.to, &envelope.message);
                    writeln!(out, "{line}").unwrap();
                }
                if self.queue.is_empty() {
                    out.push_str("no messages\n");
                }
            }
            "crash" => {
                let id = node_arg(tc);
                let node = self.nodes.get_mut(&id).expect("no such node");
                assert!(node.peer.take().is_some(), "crash {id}: already down");
                writeln!(out, "{id}: crashed").unwrap();
            }
            "restart" => {
                let id = node_arg(tc);
                let config = Config {
                    pre_vote: self.pre_vote,
                    ..Config::new(id, self.members.clone())
                };
                let node = self.nodes.get_mut(&id).expect("no such node");
                assert!(node.peer.is_none(), "restart {id}: it is up");
                let (peer, output) = Peer::restore(config, node.storage.clone())
                    .expect("a Peer restores from what it persisted");
                node.peer = Some(peer);
                self.print_node(id, &mut out);
                self.apply(id, output, "  ", &mut out);
            }
            "isolate" => {
                let id = node_arg(tc);
                self.isolated.insert(id);
                writeln!(out, "{id}: isolated").unwrap();
            }
            "heal" => {
                self.isolated.clear();
                out.push_str("network healed\n");
            }
            "status" => {
                let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
                for id in ids {
                    self.print_node(id, &mut out);
                }
            }
            other => panic!("unknown command {other:?}"),
        }
        tc.expect_empty().expect("every argument is used");
        out
    }

    fn add_nodes(&mut self, n: u64, out: &mut String) {
        assert!(self.nodes.is_empty(), "add-nodes runs once per script");
        self.members = (1..=n).collect();
        for id in 1..=n {
            let config = Config {
                pre_vote: self.pre_vote,
                ..Config::new(id, self.members.clone())
            };
            let (peer, output) =
                Peer::restore(config, Durable::default()).expect("a fresh Peer boots");
            self.nodes.insert(
                id,
                Node {
                    peer: Some(peer),
                    storage: Durable::default(),
                },
            );
            self.print_node(id, out);
            self.apply(id, output, "  ", out);
        }
    }

    fn live(&self, id: NodeId) -> &Peer<Cmd> {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
            .peer
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is down"))
    }

    fn print_node(&self, id: NodeId, out: &mut String) {
        let node = &self.nodes[&id];
        match &node.peer {
            Some(peer) => {
                writeln!(
                    out,
                    "{id}: {} term={} vote={} commit={} log={:?}",
                    role_name(peer),
                    peer.term(),
                    vote_name(peer.voted_for()),
                    peer.commit_index(),
                    peer.log()
                )
                .unwrap();
                if let Role::Leader {
                    progress,
                    heard_from,
                    transferee,
                } = peer.role()
                {
                    let progress: Vec<String> = progress
                        .iter()
                        .map(|(id, p)| format!("{id}: match={} next={}", p.matched, p.next))
                        .collect();
                    let transfer = transferee
                        .map(|to| format!("; transferring to {to}"))
                        .unwrap_or_default();
                    writeln!(
                        out,
                        "   progress {}; heard from {heard_from:?}{transfer}",
                        progress.join(", ")
                    )
                    .unwrap();
                }
                Ok(())
            }
            None => writeln!(
                out,
                "{id}: down; storage term={} vote={} log={:?}",
                node.storage.term,
                vote_name(node.storage.voted_for),
                node.storage.log
            ),
        }
        .unwrap();
    }

    /// Runs one input on node `id` and applies its output; `indent` prefixes every line.
    fn step<F, R>(&mut self, id: NodeId, indent: &str, out: &mut String, input: F)
    where
        F: FnOnce(&mut Peer<Cmd>) -> Result<R, PeerError>,
        R: Into<StepResult>,
    {
        let peer = self
            .nodes
            .get_mut(&id)
            .and_then(|node| node.peer.as_mut())
            .unwrap_or_else(|| panic!("node {id} is down or unknown"));
        let before = summary(peer);
        let printed = out.len();
        let result = input(peer).map(Into::into);
        let after = summary(peer);
        let output = match result {
            Ok(StepResult { note, output }) => {
                if let Some(note) = note {
                    writeln!(out, "{indent}{id}: {note}").unwrap();
                }
                output
            }
            Err(error) => {
                writeln!(out, "{indent}{id}: error: {error}").unwrap();
                Output::default()
            }
        };
        if before.role != after.role {
            writeln!(out, "{indent}{id}: {} -> {}", before.role, after.role).unwrap();
        }
        if before.term != after.term {
            writeln!(out, "{indent}{id}: term {} -> {}", before.term, after.term).unwrap();
        }
        if before.vote != after.vote {
            let (was, is) = (vote_name(before.vote), vote_name(after.vote));
            writeln!(out, "{indent}{id}: vote {was} -> {is}").unwrap();
        }
        if let (Some(votes), true) = (&after.votes, before.votes != after.votes) {
            writeln!(out, "{indent}{id}: votes from {votes:?}").unwrap();
        }
        if printed == out.len() && output.is_empty() {
            writeln!(out, "{indent}{id}: no output").unwrap();
        }
        self.apply(id, output, indent, out);
    }

    /// Carries out an Output in the order the contract demands.
    fn apply(&mut self, id: NodeId, output: Output<Cmd>, indent: &str, out: &mut String) {
        let node = self.nodes.get_mut(&id).expect("known node");
        let peer = node
            .peer
            .as_ref()
            .expect("a live node produced this output");
        let is_leader = matches!(peer.role(), Role::Leader { .. });

        // 1. Messages that may leave before the persist.
        for (to, message) in output.send_now {
            assert!(
                matches!(message, Message::AppendEntriesRequest { .. }) && is_leader,
                "{id}: only a leader's AppendEntries may be sent before persisting: {message:?}"
            );
            writeln!(
                out,
                "{indent}{id}: send now: {}",
                describe(id, to, &message)
            )
            .unwrap();
            self.send(id, to, message, indent, out);
        }

        // 2. Persist exactly what Persist asks for, then check that it was enough.
        let node = self.nodes.get_mut(&id).expect("known node");
        let peer = node.peer.as_ref().expect("live");
        let durable = peer.durable();
        if output.persist.hard_state {
            node.storage.term = durable.term;
            node.storage.voted_for = durable.voted_for;
            writeln!(
                out,
                "{indent}{id}: persist hard state: term={} vote={}",
                durable.term,
                vote_name(durable.voted_for)
            )
            .unwrap();
        }
        if let Some(from) = output.persist.log_from {
            assert!(from >= 1, "{id}: log_from 0");
            let keep = (from - 1) as usize;
            assert!(
                keep <= node.storage.log.len() && keep <= durable.log.len(),
                "{id}: log_from {from} leaves a hole in storage"
            );
            let replaced: Vec<Entry<Cmd>> = node.storage.log.drain(keep..).collect();
            node.storage.log.extend_from_slice(&durable.log[keep..]);
            let written = &durable.log[keep..];
            if replaced.is_empty() {
                writeln!(out, "{indent}{id}: persist log from {from}: {written:?}").unwrap();
            } else {
                writeln!(
                    out,
                    "{indent}{id}: persist log from {from}: {written:?} replacing {replaced:?}"
                )
                .unwrap();
            }
        }
        assert_eq!(
            &node.storage, durable,
            "{id}: the Peer's durable state differs from what its Output asked to persist \
             ({:?})",
            output.persist
        );
        let commit_log = peer.log()[..output.commit.unwrap_or(0) as usize].to_vec();

        // 3. Messages that promise something about durable state.
        for (to, message) in output.send_after_persist {
            let line = describe(id, to, &message);
            writeln!(out, "{indent}{id}: send after persist: {line}").unwrap();
            self.send(id, to, message, indent, out);
        }

        // 4. Commit: every node must agree on every committed entry.
        if let Some(commit) = output.commit {
            for (i, (ours, known)) in commit_log.iter().zip(&self.committed).enumerate() {
                assert_eq!(
                    ours,
                    known,
                    "{id}: committed index {} differs from what another node committed",
                    i + 1
                );
            }
            if commit_log.len() > self.committed.len() {
                self.committed = commit_log;
            }
            writeln!(out, "{indent}{id}: commit {commit}").unwrap();
        }

        if !output.timers.is_empty() {
            let timers: Vec<String> = output.timers.iter().map(timer_name).collect();
            writeln!(out, "{indent}{id}: timers: {}", timers.join(", ")).unwrap();
        }

        for node in self.nodes.values() {
            if let Some(peer) = &node.peer {
                peer.check_invariants();
            }
        }
    }

    /// Why a message between `from` and `to` is lost right now, if it is.
    fn loss(&self, from: NodeId, to: NodeId) -> Option<String> {
        if self.nodes[&to].peer.is_none() {
            Some(format!("{to} is down"))
        } else if self.isolated.contains(&to) {
            Some(format!("{to} is isolated"))
        } else if self.isolated.contains(&from) {
            Some(format!("{from} is isolated"))
        } else {
            None
        }
    }

    fn send(
        &mut self,
        from: NodeId,
        to: NodeId,
        message: Message<Cmd>,
        indent: &str,
        out: &mut String,
    ) {
        if let Some(why) = self.loss(from, to) {
            writeln!(out, "{indent}  lost: {why}").unwrap();
            return;
        }
        self.queue.push_back(Envelope { from, to, message });
    }

    /// Delivers (or drops) the matching messages queued now; returns how many matched.
    fn deliver(
        &mut self,
        from: Option<NodeId>,
        to: Option<NodeId>,
        drop: bool,
        out: &mut String,
    ) -> usize {
        let matches =
            |e: &Envelope| from.is_none_or(|f| f == e.from) && to.is_none_or(|t| t == e.to);
        let (batch, rest): (VecDeque<Envelope>, VecDeque<Envelope>) =
            self.queue.drain(..).partition(|e| matches(e));
        self.queue = rest;
        let count = batch.len();
        for Envelope { from, to, message } in batch {
            let line = describe(from, to, &message);
            if drop {
                writeln!(out, "{line} (dropped)").unwrap();
                continue;
            }
            if let Some(why) = self.loss(from, to) {
                writeln!(out, "{line} (lost: {why})").unwrap();
                continue;
            }
            writeln!(out, "{line}").unwrap();
            self.step(to, "  ", out, |peer| peer.handle_message(from, message));
        }
        count
    }
}

/// What a step returns besides its Output: a line worth printing (the index of a proposal).
struct StepResult {
    note: Option<String>,
    output: Output<Cmd>,
}

impl From<Output<Cmd>> for StepResult {
    fn from(output: Output<Cmd>) -> Self {
        StepResult { note: None, output }
    }
}

impl From<(Option<String>, Output<Cmd>)> for StepResult {
    fn from((note, output): (Option<String>, Output<Cmd>)) -> Self {
        StepResult { note, output }
    }
}

#[test]
fn interaction() {
    walk("tests/testdata", |file| {
        let mut env = Env::default();
        file.run(|tc| env.handle(tc));
    });
}

// The environment itself must catch a driver-visible contract violation; these feed it doctored
// Outputs.

#[test]
#[should_panic(expected = "differs from what its Output asked to persist")]
fn env_catches_a_durable_change_left_unpersisted() {
    let mut env = Env::default();
    let mut out = String::new();
    env.add_nodes(3, &mut out);
    env.step(1, "", &mut out, |peer| {
        let mut output = peer.handle_timeout(Timer::Election);
        output.persist = Persist::default();
        Ok(output)
    });
}

#[test]
#[should_panic(expected = "only a leader's AppendEntries may be sent before persisting")]
fn env_catches_a_vote_request_sent_before_persisting() {
    let mut env = Env::default();
    let mut out = String::new();
    env.add_nodes(3, &mut out);
    env.step(1, "", &mut out, |peer| {
        let mut output = peer.handle_timeout(Timer::Election);
        output.send_now = std::mem::take(&mut output.send_after_persist);
        Ok(output)
    });
}

#[test]
#[should_panic(expected = "differs from what another node committed")]
fn env_catches_conflicting_commits() {
    let mut env = Env::default();
    let mut out = String::new();
    env.add_nodes(1, &mut out);
    env.step(1, "", &mut out, |peer| {
        Ok(peer.handle_timeout(Timer::Election))
    });
    env.step(1, "", &mut out, |peer| {
        peer.propose(vec!["a".into()]).map(|(_, o)| o)
    });
    // Pretend another node had committed something else at index 1.
    env.committed = vec![Entry {
        term: 1,
        command: Some("b".into()),
    }];
    env.step(1, "", &mut out, |peer| {
        peer.propose(vec!["c".into()]).map(|(_, o)| o)
    });
}
