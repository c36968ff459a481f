//! The stateright adapter: servers that run the [`Peer`] and clients that propose values.

use super::contract;
use crate::bugs::Bug;
use crate::peer::{
    Config, Durable, Flow, FlowControl, Index, Message, NodeId, Output, Peer, PeerError, Planted,
    Timer, TimerCommand,
};
use stateright::actor::{model_timeout, Actor, Id, Out};
use stateright::{Rewrite, RewritePlan};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

/// A client command in the model: a small distinct value.
pub type Value = u8;

/// What travels on the model's network.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelMsg {
    /// A server-to-server Raft message.
    Peer(InFlight),
    /// A client asks a server to propose a value. A server that is not the leader leaves it
    /// undelivered (the client keeps waiting for that server).
    Propose(Value),
    /// An operator asks a server to take over leadership (`rdb transfer-leader`). A follower
    /// that knows its leader passes it on as [`ModelMsg::Transfer`]; any other server leaves it
    /// undelivered.
    TakeOver,
    /// A follower asks its leader to hand leadership over to it, the envelope's sender. A
    /// server that no longer leads drops it.
    Transfer,
}

/// A Raft message in flight, shared by every state and action that holds it: the checker
/// copies each state's messages many times (into actions, successors, the frontier), and a
/// copy here is a reference count, not a copy of the entries. Its hash is computed once, when
/// it is made; equality and order are the message's.
#[derive(Clone)]
pub struct InFlight(Arc<(u64, Message<Value>)>);

impl InFlight {
    /// Wraps `message`, hashing it once.
    pub fn new(message: Message<Value>) -> InFlight {
        // Fixed seeds: the hash enters state fingerprints, which must not vary between runs.
        let hash = ahash::RandomState::with_seeds(
            0x510E_527F_ADE6_82D1,
            0x9B05_688C_2B3E_6C1F,
            0x1F83_D9AB_FB41_BD6B,
            0x5BE0_CD19_137E_2179,
        )
        .hash_one(&message);
        InFlight(Arc::new((hash, message)))
    }

    /// The message.
    pub fn message(&self) -> &Message<Value> {
        &self.0 .1
    }
}

impl From<Message<Value>> for InFlight {
    fn from(message: Message<Value>) -> InFlight {
        InFlight::new(message)
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.message().fmt(f)
    }
}

impl PartialEq for InFlight {
    fn eq(&self, other: &InFlight) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || (self.0 .0 == other.0 .0 && self.0 .1 == other.0 .1)
    }
}

impl Eq for InFlight {}

impl std::hash::Hash for InFlight {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 .0);
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &InFlight) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &InFlight) -> Ordering {
        self.message().cmp(other.message())
    }
}

/// Facts recorded beside a server's Peer so that properties can speak of the past. They are
/// never read by the protocol.
///
/// Its hash leaves out the texts of `panicked`, `refused` and `contract_broken` (they may name
/// server ids, which symmetry reduction must not see) and keeps only whether they are set: a
/// state where one is set is a counterexample already.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ghost {
    /// A step lowered the server's term.
    pub regressed_term: bool,
    /// A step lowered the server's commit index.
    pub regressed_commit: bool,
    /// The server was recovered from storage whose log had this many entries.
    pub recovered_with: Option<Index>,
    /// The server deleted a conflicting entry from its log.
    pub truncated: bool,
    /// A step of the server's Peer panicked (an assertion or invariant check failed) with this
    /// message. The server keeps the state it had before that step.
    pub panicked: Option<String>,
    /// A step of the server broke the Peer's output contract ([`super::contract`]) this way.
    pub contract_broken: Option<String>,
    /// The server's Peer refused a message as impossible ([`crate::peer::Refusal`]), for this
    /// reason. A correct cluster never sends one, so with no bug planted this is a finding. The
    /// server keeps the state it had, as the refusal left it.
    pub refused: Option<String>,
    /// A pre-vote step (asking, answering, or counting an answer that did not end the round)
    /// changed the server's term or vote (see [`contract::pre_vote_moved_term`]).
    pub pre_vote_moved_term: bool,
    /// The term of the election this server started on a leader's TimeoutNow, the latest one
    /// (leadership transfer, §3.10).
    pub took_over: Option<crate::peer::Term>,
}

/// A server's state in the model. Its `Debug` form is one line (role, term, vote, log, commit
/// and what the role tracks), which is what the explorer shows for each server.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServerState {
    /// The protocol state.
    pub peer: Peer<Value, Planted>,
    /// History for properties.
    pub ghost: Ghost,
    /// With persistence as a step of its own: what the last step asked to persist and has not
    /// reached storage yet, and the messages that wait for it. The server takes no other step
    /// until it is written (the driver flushes before the Peer sees more input).
    pub pending: Option<Arc<Pending>>,
    /// What this server's storage holds: the same value as the model's storage slot for it,
    /// kept here because a step may write only part of it. (A function of the storage, so
    /// fingerprints leave it out.)
    pub stored: Stored,
    /// The hash the handler memo keys this state by, once computed.
    pub hash: Remembered<1>,
    /// The fingerprint's part for this server under each permutation of up to three server
    /// ids (six), once computed: symmetry reduction fingerprints every successor under one or
    /// more permutations, and all but one server's state of a successor are its parent's.
    pub relabelled: Remembered<6>,
    /// The hash of what this server looks like with every server id forgotten (its part of
    /// the key that orders servers for symmetry reduction), once computed.
    pub shape: Remembered<1>,
    /// Whether this server is free of faults (no panic, no refusal, its Peer's own invariants
    /// hold), once known: 1 if it is, 2 if not. Judged in every state the server is part of.
    pub sound: Remembered<1>,
}

/// Hashes of a server's state, each computed at most once per copy: a state behind an `Arc`
/// does not change, and it is looked up (by the handler memo, for every input) and
/// fingerprinted (as part of every system state it is in) many times. Not part of the state: a
/// clone starts with none (it is cloned to be changed), and they take no part in comparing or
/// hashing states.
pub struct Remembered<const N: usize>([std::sync::atomic::AtomicU64; N]);

impl<const N: usize> Remembered<N> {
    /// The hash in `slot`, computed by `compute` the first time (every time for a slot past
    /// the last).
    pub fn get_or(&self, slot: usize, compute: impl FnOnce() -> u64) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(cell) = self.0.get(slot) else {
            return compute();
        };
        match cell.load(Relaxed) {
            0 => {
                // 0 means "not computed": a hash of 0 is taken as 1.
                let hash = compute().max(1);
                cell.store(hash, Relaxed);
                hash
            }
            hash => hash,
        }
    }
}

impl<const N: usize> Default for Remembered<N> {
    fn default() -> Self {
        Remembered(std::array::from_fn(|_| {
            std::sync::atomic::AtomicU64::new(0)
        }))
    }
}

impl<const N: usize> Clone for Remembered<N> {
    fn clone(&self) -> Self {
        Remembered::default()
    }
}

impl<const N: usize> PartialEq for Remembered<N> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<const N: usize> Eq for Remembered<N> {}

impl<const N: usize> std::hash::Hash for Remembered<N> {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// A persist asked for and not done yet, with the messages that leave once it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pending {
    /// Term and vote are to be written.
    pub hard_state: bool,
    /// The log is to be written from this index on.
    pub log_from: Option<Index>,
    /// `send_after_persist` of the step, in order.
    pub held: Vec<(NodeId, Message<Value>)>,
}

impl std::hash::Hash for Ghost {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (
            self.regressed_term,
            self.regressed_commit,
            self.recovered_with,
            self.truncated,
            self.panicked.is_some(),
            self.contract_broken.is_some(),
        )
            .hash(state);
        // Hashed only when set, so that every state without a refusal keeps the fingerprint it
        // had before refusals existed (and the search its canonical representatives).
        if self.refused.is_some() {
            true.hash(state);
        }
        if self.pre_vote_moved_term {
            1u8.hash(state);
        }
        if let Some(term) = self.took_over {
            (2u8, term).hash(state);
        }
    }
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::peer::Role;
        let peer = &self.peer;
        let vote = peer.voted_for().map_or("-".into(), |v| v.to_string());
        write!(
            f,
            "S{} {} term {} vote {vote} log {:?} commit {}",
            peer.id(),
            peer.role_kind(),
            peer.term(),
            peer.log(),
            peer.commit_index()
        )?;
        match peer.role() {
            Role::Follower {
                leader: Some(leader),
            } => write!(f, " leader S{leader}")?,
            Role::Follower { leader: None } => {}
            Role::PreCandidate { votes } => write!(f, " pre-votes {votes:?}")?,
            Role::Candidate { votes } => write!(f, " votes {votes:?}")?,
            Role::Leader {
                progress,
                heard_from,
                transferee,
            } => {
                let progress: Vec<String> = progress
                    .iter()
                    .map(|(id, p)| {
                        let flow = match &p.flow {
                            Flow::Probe { paused: false } => "probe".to_string(),
                            Flow::Probe { paused: true } => "probe sent".to_string(),
                            Flow::Replicate { inflight } => format!(
                                "replicate in flight {:?}",
                                inflight.last_indexes().collect::<Vec<_>>()
                            ),
                        };
                        format!("S{id} next {} match {} {flow}", p.next, p.matched)
                    })
                    .collect();
                write!(f, " [{}] heard {heard_from:?}", progress.join(", "))?;
                if let Some(to) = transferee {
                    write!(f, " transferring to S{to}")?;
                }
            }
        }
        if let Some(entries) = self.ghost.recovered_with {
            write!(f, " (recovered with {entries} entries)")?;
        }
        if let Some(panic) = &self.ghost.panicked {
            write!(f, " PANICKED: {panic}")?;
        }
        if let Some(refusal) = &self.ghost.refused {
            write!(f, " REFUSED: {refusal}")?;
        }
        if let Some(pending) = &self.pending {
            write!(
                f,
                " persisting{}{} ({} held)",
                if pending.hard_state { " term+vote" } else { "" },
                pending
                    .log_from
                    .map_or(String::new(), |from| format!(" log from {from}")),
                pending.held.len()
            )?;
        }
        Ok(())
    }
}

impl ServerState {
    /// Everything but the server's own id, which symmetry reduction must ignore when sorting.
    fn sort_key(&self) -> impl Ord + '_ {
        (
            self.peer.durable(),
            self.peer.commit_index(),
            self.peer.role(),
            &self.ghost,
            &self.pending,
        )
    }
}

impl PartialOrd for ServerState {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ServerState {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

/// A client's state: its value and whether it has sent it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientState {
    /// The value this client proposes.
    pub value: Value,
    /// Whether the proposal is on its way.
    pub sent: bool,
}

/// An operator's state: whether it has asked a server to take over leadership.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdminState {
    /// Whether the request is on its way.
    pub sent: bool,
}

/// An actor's state. Servers sort before clients, so symmetry reduction never mixes them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
// Each state lives behind an `Arc` in the model, so the size of the larger variant costs
// nothing per client.
#[allow(clippy::large_enum_variant)]
pub enum NodeState {
    /// A Raft server.
    Server(ServerState),
    /// A client.
    Client(ClientState),
    /// An operator who moves leadership.
    Admin(AdminState),
}

impl NodeState {
    /// The hash of the whole state that the handler memo keys it by, remembered for a
    /// server's (see [`Remembered`]).
    pub fn memo_hash(&self) -> u64 {
        let hasher = super::step::memo_hasher();
        match self {
            NodeState::Server(server) => server.hash.get_or(0, || hasher.hash_one(server)),
            NodeState::Client(_) | NodeState::Admin(_) => hasher.hash_one(self),
        }
    }

    /// The server's state, if this is a server.
    pub fn server(&self) -> Option<&ServerState> {
        match self {
            NodeState::Server(server) => Some(server),
            NodeState::Client(_) | NodeState::Admin(_) => None,
        }
    }
}

/// An actor of the model.
#[derive(Clone, Debug)]
pub enum ModelActor {
    /// A server of a cluster of `servers` servers (ids 0..servers).
    Server {
        /// Cluster size.
        servers: usize,
        /// The planted bug, if any.
        bug: Option<Bug>,
        /// Whether leaders' heartbeat timers fire.
        heartbeats: bool,
        /// The Peer's flow control.
        flow: FlowControl,
        /// Pre-vote and leader stickiness.
        pre_vote: bool,
        /// Persistence is a step of its own (see [`Pending`]).
        persist_steps: bool,
    },
    /// A client that proposes `value` to one server of its choice.
    Client {
        /// Cluster size.
        servers: usize,
        /// The value to propose.
        value: Value,
    },
    /// An operator who asks one server of its choice to take over leadership, once.
    Admin {
        /// Cluster size.
        servers: usize,
    },
}

impl ModelActor {
    fn server_options(&self) -> Options {
        match *self {
            ModelActor::Server {
                heartbeats,
                bug,
                persist_steps,
                ..
            } => Options {
                heartbeats,
                bug,
                persist_steps,
            },
            ModelActor::Client { .. } | ModelActor::Admin { .. } => Options {
                heartbeats: false,
                bug: None,
                persist_steps: false,
            },
        }
    }
}

/// How a server's steps reach the environment.
#[derive(Clone, Copy)]
struct Options {
    heartbeats: bool,
    bug: Option<Bug>,
    persist_steps: bool,
}

/// What storage keeps of `durable`: all of it, unless the planted storage bug drops the vote.
/// (Shared, so that the model copies a pointer, not a log, with every state.)
fn saved(durable: &Durable<Value>, bug: Option<Bug>) -> Stored {
    let mut saved = durable.clone();
    if bug == Some(Bug::VoteNotPersisted) {
        saved.voted_for = None;
    }
    Arc::new(saved)
}

/// What a server's storage holds in the model.
pub type Stored = Arc<Durable<Value>>;

fn stored_or_empty(storage: &Option<Stored>) -> Stored {
    storage.clone().unwrap_or_default()
}

fn node_id(id: Id) -> NodeId {
    usize::from(id) as NodeId
}

fn actor_id(node: NodeId) -> Id {
    Id::from(node as usize)
}

impl Actor for ModelActor {
    type Msg = ModelMsg;
    type State = NodeState;
    type Timer = Timer;
    type Random = Id;
    type Storage = Stored;

    fn on_start(&self, id: Id, storage: &Option<Self::Storage>, o: &mut Out<Self>) -> NodeState {
        match *self {
            ModelActor::Server {
                servers,
                bug,
                heartbeats,
                flow,
                pre_vote,
                persist_steps: _,
            } => {
                let config = Config {
                    id: node_id(id),
                    members: (0..servers as NodeId).collect(),
                    flow,
                    pre_vote,
                };
                let durable = storage.as_deref().cloned().unwrap_or_default();
                let restored = guarded(|| Peer::restore(config.clone(), durable.clone()));
                let (mut peer, output) = match restored {
                    Ok(Ok(restored)) => restored,
                    // Storage that a Peer cannot restore from: the server comes up empty and
                    // the refusal is reported as a broken Peer invariant.
                    Ok(Err(refused)) => {
                        return broken_start(config, refused.to_string(), &stored_or_empty(storage))
                    }
                    Err(panic) => return broken_start(config, panic, &stored_or_empty(storage)),
                };
                peer.plant_bug(bug);
                let ghost = Ghost {
                    recovered_with: storage.as_ref().map(|d| d.log.len() as Index),
                    contract_broken: super::contract::start_violation(&durable, &peer, &output),
                    ..Ghost::default()
                };
                let stored = match storage {
                    Some(stored) => stored.clone(),
                    None => {
                        // First boot: storage now holds an empty Durable, so a later start is
                        // a recovery.
                        let stored = saved(peer.durable(), bug);
                        o.save(stored.clone());
                        stored
                    }
                };
                apply_output(output, heartbeats, o);
                NodeState::Server(ServerState {
                    peer,
                    ghost,
                    pending: None,
                    stored,
                    hash: Remembered::default(),
                    relabelled: Remembered::default(),
                    shape: Remembered::default(),
                    sound: Remembered::default(),
                })
            }
            ModelActor::Client { servers, value } => {
                o.choose_random("server", (0..servers).map(Id::from).collect());
                NodeState::Client(ClientState { value, sent: false })
            }
            ModelActor::Admin { servers } => {
                o.choose_random("server", (0..servers).map(Id::from).collect());
                NodeState::Admin(AdminState { sent: false })
            }
        }
    }

    fn on_msg(
        &self,
        _id: Id,
        state: &mut Cow<NodeState>,
        src: Id,
        msg: ModelMsg,
        o: &mut Out<Self>,
    ) {
        let NodeState::Server(server) = &**state else {
            return;
        };
        if server.pending.is_some() {
            // Busy writing: the message waits.
            return;
        }
        match msg {
            // The request to take over goes on to the leader this server follows.
            ModelMsg::TakeOver => {
                match server.peer.role() {
                    crate::peer::Role::Follower {
                        leader: Some(leader),
                    } => o.send(actor_id(*leader), ModelMsg::Transfer),
                    // The leader itself is asked to take over: a transfer to itself, which
                    // the Peer must refuse. The request is answered and gone.
                    crate::peer::Role::Leader { .. } => {
                        let own = server.peer.id();
                        let expected = Err(PeerError::InvalidTransfer(own));
                        if let Some(fault) = refused_transfer(server, own, expected) {
                            *state.to_mut() = NodeState::Server(fault);
                        } else {
                            o.set_timer(Timer::Election, model_timeout());
                        }
                    }
                    // No leader known: the request waits.
                    _ => {}
                }
                return;
            }
            // A request to transfer leadership that reached a server that no longer leads is
            // refused (its sender hears the error) and gone; the Peer must say who leads.
            ModelMsg::Transfer if server.peer.role_kind() != crate::peer::RoleKind::Leader => {
                let expected = Err(PeerError::NotLeader {
                    leader: known_leader(&server.peer),
                });
                if let Some(fault) = refused_transfer(server, node_id(src), expected) {
                    *state.to_mut() = NodeState::Server(fault);
                } else {
                    o.set_timer(Timer::Election, model_timeout());
                }
                return;
            }
            _ => {}
        }
        let mut next = server.clone();
        let expected_first = server.peer.last_index() + 1;
        let mut first = None;
        let result = guarded(|| match &msg {
            ModelMsg::Peer(message) => next
                .peer
                .handle_message(node_id(src), message.message().clone()),
            ModelMsg::Propose(value) => next.peer.propose(vec![*value]).map(|(index, output)| {
                first = Some(index);
                output
            }),
            ModelMsg::Transfer => next.peer.transfer_leadership(node_id(src)),
            ModelMsg::TakeOver => unreachable!("passed on above"),
        });
        let result = match result {
            Ok(result) => result,
            Err(panic) => {
                *state.to_mut() = NodeState::Server(server.broken(panic));
                return;
            }
        };
        let output = match result {
            Ok(output) => output,
            Err(PeerError::Refused(refusal)) => {
                let kind = match &msg {
                    ModelMsg::Peer(message) => message.message().kind(),
                    ModelMsg::Propose(_) => "proposal",
                    ModelMsg::Transfer | ModelMsg::TakeOver => "transfer request",
                };
                let mut refused = server.clone();
                refused.ghost.refused = Some(format!("{kind} from {}: {refusal}", node_id(src)));
                *state.to_mut() = NodeState::Server(refused);
                return;
            }
            // A proposal to a server that does not lead changes nothing and stays undelivered;
            // it names the leader the server follows.
            Err(PeerError::NotLeader { leader })
                if matches!(msg, ModelMsg::Propose(_))
                    && server.peer.role_kind() != crate::peer::RoleKind::Leader
                    && leader == known_leader(&server.peer) =>
            {
                return
            }
            // A proposal to a leader that is handing leadership over waits, as one to a
            // follower does.
            Err(PeerError::Transferring { to })
                if matches!(msg, ModelMsg::Propose(_)) && server.peer.transferee() == Some(to) =>
            {
                return
            }
            // Any other error is a fault of the Peer: every message comes from a member.
            Err(error) => {
                let mut refused = server.clone();
                refused.ghost.refused = Some(format!("{msg:?} from {}: {error:?}", node_id(src)));
                *state.to_mut() = NodeState::Server(refused);
                return;
            }
        };
        if first.is_some_and(|first| first != expected_first) {
            next.ghost.contract_broken.get_or_insert(format!(
                "a proposal reported index {first:?} for its first entry; it went to {expected_first}"
            ));
        }
        let value;
        let input = match &msg {
            ModelMsg::Peer(message) => contract::Input::Message(node_id(src), message.message()),
            ModelMsg::Propose(proposed) => {
                value = [*proposed];
                contract::Input::Propose(&value)
            }
            ModelMsg::Transfer => contract::Input::Transfer(node_id(src)),
            ModelMsg::TakeOver => unreachable!("passed on above"),
        };
        if let Some(broken) = contract::violation(&server.peer, &input, &next.peer, &output) {
            next.ghost.contract_broken.get_or_insert(broken);
        }
        next.ghost.pre_vote_moved_term |=
            contract::pre_vote_moved_term(&server.peer, &input, &next.peer);
        if matches!(&msg, ModelMsg::Peer(message) if matches!(message.message(), Message::TimeoutNow { .. }))
            && next.peer.term() > server.peer.term()
            && matches!(
                next.peer.role_kind(),
                crate::peer::RoleKind::Candidate | crate::peer::RoleKind::Leader
            )
        {
            next.ghost.took_over = Some(next.peer.term());
        }
        match commit_step(server, next, output, self.server_options(), o) {
            Some(changed) => *state.to_mut() = NodeState::Server(changed),
            // A stale message is read and ignored. stateright would treat the delivery as a
            // no-op and leave the message in flight forever, where it would hold one of the
            // bounded in-flight slots; re-arming the election timer (always armed on a running
            // server, and without duration in the model) makes the delivery consume it.
            None if o.is_empty() => o.set_timer(Timer::Election, model_timeout()),
            None => {}
        }
    }

    fn on_timeout(&self, _id: Id, state: &mut Cow<NodeState>, timer: &Timer, o: &mut Out<Self>) {
        let NodeState::Server(server) = &**state else {
            return;
        };
        if server.pending.is_some() {
            // Busy writing: the timer fires later.
            return;
        }
        let mut next = server.clone();
        let output = match guarded(|| next.peer.handle_timeout(*timer)) {
            Ok(output) => output,
            Err(panic) => {
                *state.to_mut() = NodeState::Server(server.broken(panic));
                return;
            }
        };
        let input = contract::Input::Timeout(*timer);
        if let Some(broken) = contract::violation(&server.peer, &input, &next.peer, &output) {
            next.ghost.contract_broken.get_or_insert(broken);
        }
        next.ghost.pre_vote_moved_term |=
            contract::pre_vote_moved_term(&server.peer, &input, &next.peer);
        if let Some(changed) = commit_step(server, next, output, self.server_options(), o) {
            *state.to_mut() = NodeState::Server(changed);
        }
    }

    fn on_random(&self, id: Id, state: &mut Cow<NodeState>, random: &Id, o: &mut Out<Self>) {
        match &**state {
            // The only choice a server makes: its storage completes (part of) a write.
            NodeState::Server(server) => {
                if let Some(next) = persist_step(server, id, self.server_options(), o) {
                    *state.to_mut() = NodeState::Server(next);
                }
            }
            NodeState::Client(client) => {
                o.send(*random, ModelMsg::Propose(client.value));
                *state.to_mut() = NodeState::Client(ClientState {
                    value: client.value,
                    sent: true,
                });
            }
            NodeState::Admin(_) => {
                o.send(*random, ModelMsg::TakeOver);
                *state.to_mut() = NodeState::Admin(AdminState { sent: true });
            }
        }
    }

    fn name(&self) -> String {
        match self {
            ModelActor::Server { .. } => "Server".into(),
            ModelActor::Client { .. } => "Client".into(),
            ModelActor::Admin { .. } => "Admin".into(),
        }
    }
}

thread_local! {
    /// Set while a Peer step runs under [`guarded`]: its panics are expected findings, and the
    /// panic hook keeps quiet about them.
    static IN_PEER_STEP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that stays silent for panics inside [`guarded`] Peer steps and
/// reports every other panic as the default hook does.
fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PEER_STEP.with(|flag| flag.get()) {
                default(info);
            }
        }));
    });
}

/// Runs one Peer step; a panic inside it (a failed assertion or invariant check) becomes an
/// error with the panic's message, so that the checker reports it as a counterexample.
pub(crate) fn guarded<T>(step: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    IN_PEER_STEP.with(|flag| flag.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step));
    IN_PEER_STEP.with(|flag| flag.set(false));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

impl ServerState {
    /// This server, marked as having panicked with `message`.
    fn broken(&self, message: String) -> ServerState {
        let mut broken = self.clone();
        broken.ghost.panicked = Some(message);
        broken
    }
}

/// A server whose Peer could not be restored: an empty follower marked as broken.
fn broken_start(config: Config, message: String, stored: &Stored) -> NodeState {
    let (peer, _) = Peer::restore(config, Durable::default()).expect("an empty Durable is valid");
    NodeState::Server(ServerState {
        peer,
        ghost: Ghost {
            panicked: Some(message),
            ..Ghost::default()
        },
        pending: None,
        stored: stored.clone(),
        hash: Remembered::default(),
        relabelled: Remembered::default(),
        shape: Remembered::default(),
        sound: Remembered::default(),
    })
}

/// Asks `server`'s Peer (a copy) to transfer leadership to `to`, which it must refuse with
/// `expected` without changing; otherwise the server, marked with what went wrong.
fn refused_transfer(
    server: &ServerState,
    to: NodeId,
    expected: Result<(), PeerError>,
) -> Option<ServerState> {
    let mut peer = server.peer.clone();
    let answer = match guarded(|| peer.transfer_leadership(to).map(|_| ())) {
        Ok(answer) => answer,
        Err(panic) => return Some(server.broken(panic)),
    };
    if answer == expected && peer == server.peer {
        return None;
    }
    let mut fault = server.clone();
    fault.ghost.contract_broken = Some(format!(
        "a {} asked to transfer leadership to {to} answered {answer:?}, not {expected:?}{}",
        server.peer.role_kind(),
        if peer == server.peer {
            ""
        } else {
            ", and changed"
        }
    ));
    Some(fault)
}

/// The leader a server knows of, from the definition of its role: the one it follows, itself
/// when it leads, none while it campaigns.
fn known_leader(peer: &Peer<Value, Planted>) -> Option<NodeId> {
    match peer.role() {
        crate::peer::Role::Follower { leader } => *leader,
        crate::peer::Role::Leader { .. } => Some(peer.id()),
        crate::peer::Role::PreCandidate { .. } | crate::peer::Role::Candidate { .. } => None,
    }
}

/// Records the step's save, sends and timers, and returns the new server state only when it
/// changed (so that stateright can prune no-op deliveries).
fn commit_step(
    before: &ServerState,
    mut after: ServerState,
    mut output: Output<Value>,
    options: Options,
    o: &mut Out<ModelActor>,
) -> Option<ServerState> {
    let Options {
        heartbeats,
        bug,
        persist_steps,
    } = options;
    let (old, new) = (&before.peer, &after.peer);
    after.ghost.regressed_term |= new.term() < old.term();
    after.ghost.regressed_commit |= new.commit_index() < old.commit_index();
    if new.log().len() < old.log().len()
        || output
            .persist
            .log_from
            .is_some_and(|from| from <= old.last_index())
    {
        after.ghost.truncated = true;
    }
    // The planted storage bug `leader-log-not-persisted`: a leader's own new entries never
    // reach its disk (the write is skipped), though the Peer asked for them.
    let skipped = bug == Some(Bug::LeaderLogNotPersisted)
        && new.role_kind() == crate::peer::RoleKind::Leader
        && !output.persist.hard_state;
    if persist_steps && output.persist.is_needed() {
        // The write is a step of its own: the leader's AppendEntries leave now, the rest waits.
        let pending = Pending {
            hard_state: output.persist.hard_state,
            log_from: output.persist.log_from.filter(|_| !skipped),
            held: std::mem::take(&mut output.send_after_persist),
        };
        if pending.hard_state || pending.log_from.is_some() {
            after.pending = Some(Arc::new(pending));
            o.choose_random("persist", vec![actor_id(after.peer.id())]);
        } else {
            output.send_after_persist = pending.held;
        }
    } else if output.persist.is_needed() && !skipped {
        let stored = saved(after.peer.durable(), bug);
        o.save(stored.clone());
        after.stored = stored;
    }
    apply_output(output, heartbeats, o);
    (after != *before).then_some(after)
}

/// The server's storage writes what is pending, as the node's storage does: term and vote
/// first, then the log from the asked index, one entry at a time, so that a crash in between
/// keeps a prefix of the entries. The held messages leave once the last entry is written.
/// `None` if nothing was pending.
fn persist_step(
    server: &ServerState,
    id: Id,
    options: Options,
    o: &mut Out<ModelActor>,
) -> Option<ServerState> {
    let pending = server.pending.as_ref()?;
    let mut next = server.clone();
    let durable = server.peer.durable();
    let mut stored = (*server.stored).clone();
    if pending.hard_state {
        stored.term = durable.term;
        stored.voted_for = durable.voted_for;
        if options.bug == Some(Bug::VoteNotPersisted) {
            stored.voted_for = None;
        }
    }
    let mut rest = None;
    if let Some(from) = pending.log_from {
        let keep = from.saturating_sub(1) as usize;
        if from == 0 || keep > stored.log.len() || keep > durable.log.len() {
            // Storage refuses (the node's panics): the Peer asked for a write it cannot do.
            next.ghost.contract_broken.get_or_insert(format!(
                "asked to persist the log from index {from}, with {} entries stored and {} in \
                 memory",
                stored.log.len(),
                durable.log.len()
            ));
            next.pending = None;
            return Some(next);
        }
        stored.log.truncate(keep);
        if let Some(entry) = durable.log.get(keep) {
            stored.log.push(entry.clone());
            if keep + 1 < durable.log.len() {
                rest = Some(from + 1);
            }
        }
    }
    let stored = Arc::new(stored);
    o.save(stored.clone());
    next.stored = stored;
    if rest.is_some() {
        next.pending = Some(Arc::new(Pending {
            hard_state: false,
            log_from: rest,
            held: pending.held.clone(),
        }));
        o.choose_random("persist", vec![id]);
    } else {
        for (to, message) in &pending.held {
            o.send(actor_id(*to), ModelMsg::Peer(message.clone().into()));
        }
        next.pending = None;
    }
    Some(next)
}

fn apply_output(output: Output<Value>, heartbeats: bool, o: &mut Out<ModelActor>) {
    for (to, message) in output.send_now.into_iter().chain(output.send_after_persist) {
        o.send(actor_id(to), ModelMsg::Peer(message.into()));
    }
    for command in output.timers {
        match command {
            // Without heartbeats the environment never fires a leader's heartbeat timer: a
            // schedule with a long heartbeat interval, explored in full.
            TimerCommand::Set(Timer::Heartbeat) if !heartbeats => {}
            TimerCommand::Set(timer) => o.set_timer(timer, model_timeout()),
            TimerCommand::Cancel(timer) => o.cancel_timer(timer),
        }
    }
}

// ----- Symmetry reduction: servers are interchangeable, so ids may be permuted. -----

fn rewrite_id<S>(node: NodeId, plan: &RewritePlan<Id, S>) -> NodeId {
    node_id(plan.rewrite(&actor_id(node)))
}

impl Rewrite<Id> for ModelMsg {
    fn rewrite<S>(&self, _plan: &RewritePlan<Id, S>) -> Self {
        // Messages carry no server ids: the envelope does.
        self.clone()
    }
}

impl Rewrite<Id> for Durable<Value> {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        Durable {
            term: self.term,
            voted_for: self.voted_for.map(|id| rewrite_id(id, plan)),
            log: self.log.clone(),
        }
    }
}

impl Rewrite<Id> for NodeState {
    fn rewrite<S>(&self, plan: &RewritePlan<Id, S>) -> Self {
        match self {
            NodeState::Server(server) => NodeState::Server(ServerState {
                peer: server.peer.map_ids(|id| rewrite_id(id, plan)),
                ghost: server.ghost.clone(),
                pending: server.pending.as_ref().map(|pending| {
                    Arc::new(Pending {
                        held: pending
                            .held
                            .iter()
                            .map(|(to, message)| (rewrite_id(*to, plan), message.clone()))
                            .collect(),
                        ..(**pending).clone()
                    })
                }),
                stored: server.stored.rewrite(plan),
                hash: Remembered::default(),
                relabelled: Remembered::default(),
                shape: Remembered::default(),
                sound: Remembered::default(),
            }),
            NodeState::Client(client) => NodeState::Client(client.clone()),
            NodeState::Admin(admin) => NodeState::Admin(admin.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::properties::peer_fault;
    use crate::peer::Entry;

    fn deliver(
        actor: &ModelActor,
        state: NodeState,
        from: usize,
        message: Message<Value>,
    ) -> NodeState {
        let mut state = Cow::Owned(state);
        let mut out = Out::new();
        actor.on_msg(
            Id::from(0),
            &mut state,
            Id::from(from),
            ModelMsg::Peer(message.into()),
            &mut out,
        );
        state.into_owned()
    }

    /// A server of three, with or without writes as steps of their own.
    fn server_actor(persist_steps: bool) -> ModelActor {
        ModelActor::Server {
            servers: 3,
            bug: None,
            heartbeats: true,
            flow: FlowControl::UNLIMITED,
            pre_vote: false,
            persist_steps,
        }
    }

    fn append(term: u64, entries: Vec<Entry<Value>>, leader_commit: Index) -> Message<Value> {
        Message::AppendEntriesRequest {
            term,
            prev_log_index: 0,
            prev_log_term: 0,
            entries,
            leader_commit,
        }
    }

    /// A message in flight is equal to, hashes like and orders like the same message made
    /// apart (states holding either are one state), and differs from any other; a copy shares
    /// the message itself.
    #[test]
    fn a_message_in_flight_is_its_message() {
        let entry = |term| Entry {
            term,
            command: Some(7),
        };
        let hash = |m: &InFlight| ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(m);
        let one = InFlight::new(append(1, vec![entry(1)], 0));
        let again = InFlight::new(append(1, vec![entry(1)], 0));
        assert!(!Arc::ptr_eq(&one.0, &again.0));
        assert_eq!(one, again);
        assert_eq!(hash(&one), hash(&again));
        assert_eq!(one.cmp(&again), Ordering::Equal);
        for other in [
            append(1, vec![entry(1)], 1),
            append(2, vec![entry(1)], 0),
            append(1, vec![entry(1), entry(1)], 0),
            append(1, vec![], 0),
        ] {
            let other = InFlight::new(other.clone());
            assert_ne!(one, other);
            assert_ne!(hash(&one), hash(&other));
            assert_eq!(one.cmp(&other), one.message().cmp(other.message()));
        }
        let copy = one.clone();
        assert!(Arc::ptr_eq(&one.0, &copy.0));
        assert_eq!(copy.message(), &append(1, vec![entry(1)], 0));
    }

    /// A correct Peer never refuses a message in a correct cluster, so a refusal (here of a
    /// request that would overwrite a committed entry) is a PeerInvariant counterexample: a
    /// planted bug that made a leader send one would be caught.
    #[test]
    fn a_refusal_by_a_correct_peer_is_a_peer_invariant_fault() {
        let actor = server_actor(false);
        let state = actor.on_start(Id::from(0), &None, &mut Out::new());
        let entry = |term| Entry {
            term,
            command: Some(7),
        };
        let state = deliver(&actor, state, 1, append(1, vec![entry(1)], 1));
        let server = state.server().expect("a server");
        assert_eq!(server.peer.commit_index(), 1);
        assert_eq!(peer_fault(server), None);

        let state = deliver(&actor, state, 2, append(2, vec![entry(2)], 1));
        let server = state.server().expect("a server");
        assert_eq!(server.peer.log(), &[entry(1)], "the refusal kept the log");
        let fault = peer_fault(server).expect("a PeerInvariant fault");
        assert!(
            fault.starts_with("refused AppendEntriesRequest from 2: AppendEntries would replace committed index 1"),
            "{fault}"
        );
    }

    /// With persistence as a step, a follower's acknowledgement waits for its write; the
    /// write goes entry by entry, so a crash in the middle recovers a prefix of the entries.
    #[test]
    fn a_write_is_a_step_of_its_own_and_a_crash_keeps_a_prefix() {
        let actor = server_actor(true);
        let state = actor.on_start(Id::from(0), &None, &mut Out::new());
        let entry = |command| Entry {
            term: 1,
            command: Some(command),
        };
        let mut out = Out::new();
        let mut cow = Cow::Owned(state);
        actor.on_msg(
            Id::from(0),
            &mut cow,
            Id::from(1),
            ModelMsg::Peer(append(1, vec![entry(7), entry(8)], 0).into()),
            &mut out,
        );
        let server = cow.server().expect("a server").clone();
        assert_eq!(server.peer.log().len(), 2, "the Peer took the entries");
        assert!(server.stored.log.is_empty(), "nothing is written yet");
        let pending = server.pending.clone().expect("a write is pending");
        assert_eq!((pending.hard_state, pending.log_from), (true, Some(1)));
        assert_eq!(
            pending.held.len(),
            1,
            "the acknowledgement waits for the write"
        );
        let sends = |out: &Out<ModelActor>| format!("{out:?}").matches("Send").count();
        assert_eq!(sends(&out), 0, "nothing left the server: {out:?}");

        // Busy writing, the server takes no other step: a message stays in flight.
        let mut busy = Cow::Owned(NodeState::Server(server.clone()));
        let mut ignored = Out::new();
        actor.on_msg(
            Id::from(0),
            &mut busy,
            Id::from(2),
            ModelMsg::Peer(append(1, vec![], 0).into()),
            &mut ignored,
        );
        assert!(matches!(busy, Cow::Owned(_)) && ignored.is_empty());
        assert_eq!(busy.server(), Some(&server));

        // The first write: term, vote and the first entry; the rest and the ack still wait.
        let mut out = Out::new();
        let first = persist_step(&server, Id::from(0), actor.server_options(), &mut out)
            .expect("a write was pending");
        assert_eq!(first.stored.term, 1);
        assert_eq!(first.stored.log, vec![entry(7)]);
        assert_eq!(first.pending.as_ref().map(|p| p.log_from), Some(Some(2)));
        assert_eq!(sends(&out), 0, "{out:?}");

        // A crash now recovers the prefix that was written.
        let recovered = actor.on_start(Id::from(0), &Some(first.stored.clone()), &mut Out::new());
        assert_eq!(
            recovered.server().expect("a server").peer.log(),
            &[entry(7)]
        );

        // The second write finishes it, and the acknowledgement leaves.
        let mut out = Out::new();
        let done = persist_step(&first, Id::from(0), actor.server_options(), &mut out)
            .expect("a write was pending");
        assert_eq!(done.stored.log, vec![entry(7), entry(8)]);
        assert!(done.pending.is_none());
        assert_eq!(sends(&out), 1, "{out:?}");
        assert!(
            format!("{out:?}").contains("AppendEntriesResponse"),
            "{out:?}"
        );
    }
}
