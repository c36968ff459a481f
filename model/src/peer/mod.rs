//! The one Raft state machine of rdb: sans-IO and deterministic.
//!
//! A [`Peer`] takes one input at a time (a message, a timer firing, a client proposal) and
//! returns an [`Output`] that tells its driver what to persist, what to send and when, what is
//! committed and which timers to arm. It never reads a clock, draws a random number, spawns a
//! task or touches a file: the stateright model, the gRPC node and the conformance harness all
//! drive the very same code.
//!
//! One concern per file:
//! - `mod.rs`: the [`Peer`], its inputs and accessors, restore and the invariants checked
//!   after every step;
//! - `election.rs`: terms, roles, vote requests and votes (§5.1, §5.2, §5.4.1), pre-vote and
//!   leader stickiness (§9.6), check-quorum;
//! - `replication.rs`: AppendEntries and commitment (§5.3, §5.4.2);
//! - `transfer.rs`: leadership transfer (§3.10): TimeoutNow and the transfer's end;
//! - `log.rs`: the log's index arithmetic, the only place that turns an index into a position;
//! - `progress.rs`: the leader's [`Progress`] of each follower, its flow control (probe or
//!   replicate, the window in flight) and the index on a quorum;
//! - `quorum.rs`: majority arithmetic;
//! - `refusal.rs`: messages no correct server can send, refused whole;
//! - `types.rs`, `output.rs`: the vocabulary and what one step asks of its driver;
//! - `planted.rs`: the planted bugs' deviations, out of the protocol's way.

/// Evaluates to whether a planted bug is switched on. In a [`Faithful`] Peer (every server's)
/// it is the constant `false`, so no planted branch is even compiled into a server. Defined
/// before the modules, which use it.
macro_rules! planted {
    ($peer:expr, $bug:ident) => {{
        $peer.deviation.bug() == Some(crate::bugs::Bug::$bug)
    }};
}

mod election;
mod log;
#[cfg(test)]
pub(crate) use log::log_of_terms;
mod output;
mod planted;
mod progress;
pub mod quorum;
mod refusal;
mod replication;
mod transfer;
mod types;

pub use output::{Output, Persist, TimerCommand};
pub use planted::{Deviation, Faithful, Planted, PLANTED_MARKER};
pub use progress::{Flow, FlowControl, Inflight, Progress, ProgressTracker};
pub use refusal::Refusal;
pub use types::{Durable, Entry, Index, Message, NodeId, Payload, RoleKind, Term, Timer};

use log::{RaftLog, RaftLogMut};

use std::collections::BTreeSet;
use std::fmt;

/// The fixed facts a Peer needs: who it is, who the cluster's servers are, and how much a
/// leader may send at once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// This server.
    pub id: NodeId,
    /// Every server of the cluster, this one included.
    pub members: Vec<NodeId>,
    /// The caps of one AppendEntries and of the window in flight to each follower.
    pub flow: FlowControl,
    /// Pre-vote and leader stickiness (dissertation §9.6): a server whose election timer fires
    /// first asks whether a majority would vote for it, and starts an election (a new term)
    /// only if so; a server that follows a leader of its term ignores requests for votes of a
    /// newer term. A server cut off from the cluster then never raises its term, and does not
    /// depose a healthy leader when it comes back.
    pub pre_vote: bool,
}

impl Config {
    /// Server `id` of a cluster of `members`, with the default [`FlowControl`] and without
    /// pre-vote.
    pub fn new(id: NodeId, members: Vec<NodeId>) -> Self {
        Config {
            id,
            members,
            flow: FlowControl::default(),
            pre_vote: false,
        }
    }
}

/// Misuse of the Peer's API. Protocol rejections are messages, never errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerError {
    /// The configuration has no members, repeats one, or does not include the server itself.
    InvalidConfig(String),
    /// The durable state cannot have been written by a Peer.
    InvalidDurable(String),
    /// A message came from a server that is not a member.
    UnknownPeer(NodeId),
    /// A proposal reached a server that is not the leader. `leader` is the one it follows, if
    /// it knows it.
    NotLeader {
        /// The leader of the current term, when known.
        leader: Option<NodeId>,
    },
    /// A proposal carried no commands.
    EmptyProposal,
    /// The leader is handing leadership over to `to` (§3.10) and takes no proposals until the
    /// transfer completes or is given up (after an election timeout).
    Transferring {
        /// The server leadership is being handed to.
        to: NodeId,
    },
    /// Leadership can be handed only to another member of the cluster.
    InvalidTransfer(NodeId),
    /// A message that no correct server can send in this Peer's state was refused whole: the
    /// Peer did not change (see [`Refusal`]).
    Refused(Refusal),
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            PeerError::InvalidDurable(why) => write!(f, "invalid durable state: {why}"),
            PeerError::UnknownPeer(id) => write!(f, "message from unknown server {id}"),
            PeerError::NotLeader { leader: Some(id) } => write!(f, "not the leader; {id} is"),
            PeerError::NotLeader { leader: None } => write!(f, "not the leader; leader unknown"),
            PeerError::EmptyProposal => write!(f, "proposal has no commands"),
            PeerError::Transferring { to } => {
                write!(f, "leadership is being transferred to {to}; retry there")
            }
            PeerError::InvalidTransfer(id) => {
                write!(f, "cannot transfer leadership to {id}: not another member")
            }
            PeerError::Refused(refusal) => write!(f, "impossible message refused: {refusal}"),
        }
    }
}

impl std::error::Error for PeerError {}

/// The volatile role-specific state (§5.1); what a role does not need, it does not carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Follows `leader` when it is known.
    Follower {
        /// The leader of the current term, once heard from.
        leader: Option<NodeId>,
    },
    /// Asks whether it could win an election in the next term, without leaving its own.
    /// Invariant: `votes` contains the pre-candidate itself.
    PreCandidate {
        /// Servers that would grant their vote in the next term.
        votes: BTreeSet<NodeId>,
    },
    /// Collects votes. Invariant: `votes` contains the candidate itself.
    Candidate {
        /// Servers that granted their vote in this term.
        votes: BTreeSet<NodeId>,
    },
    /// Replicates its log.
    Leader {
        /// One entry per other server.
        progress: ProgressTracker,
        /// Servers heard from in this term since the last check-quorum.
        heard_from: BTreeSet<NodeId>,
        /// The server leadership is being handed to (§3.10), until it takes over, the leader
        /// steps down, or the leader's next election timeout gives the transfer up.
        transferee: Option<NodeId>,
    },
}

/// One Raft server's protocol state. See the module docs.
///
/// `D` says whether the Peer may deviate from the protocol: [`Faithful`] (the default, and what
/// every server runs) never does; [`Planted`] carries a planted bug of the catalogue, for the
/// model checker and the conformance tests. The choice is a type, so a server binary, which
/// only ever builds a `Peer<C, Faithful>`, contains no planted code whatever features a build
/// turns on.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Peer<C, D = Faithful> {
    config: Config,
    durable: Durable<C>,
    commit_index: Index,
    role: Role,
    deviation: D,
}

impl<C: fmt::Debug, D> fmt::Debug for Peer<C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.config.id)
            .field("term", &self.durable.term)
            .field("voted_for", &self.durable.voted_for)
            .field("log", &self.durable.log)
            .field("commit", &self.commit_index)
            .field("role", &self.role)
            .finish()
    }
}

impl<C: Clone + fmt::Debug + Payload, D: Deviation> Peer<C, D> {
    /// Builds a Peer from its configuration and what stable storage holds: an empty
    /// [`Durable`] on first boot, the last persisted one on recovery. The Peer starts as a
    /// follower with commit index 0 and asks for its election timer.
    pub fn restore(config: Config, durable: Durable<C>) -> Result<(Self, Output<C>), PeerError> {
        validate_config(&config)?;
        validate_durable(&config, &durable)?;
        let peer = Peer {
            config,
            durable,
            commit_index: 0,
            role: Role::Follower { leader: None },
            deviation: D::default(),
        };
        let mut output = Output::default();
        output.timers.push(TimerCommand::Set(Timer::Election));
        peer.check_invariants();
        Ok((peer, output))
    }

    /// Replaces the Peer's deviation (for a [`Planted`] Peer: plants a bug, or none).
    pub fn set_deviation(&mut self, deviation: D) {
        self.deviation = deviation;
    }

    /// The same Peer with every server id passed through `f`, a permutation of the members
    /// (symmetry reduction in the model checker).
    #[cfg(feature = "checker")]
    pub fn map_ids(&self, f: impl Fn(NodeId) -> NodeId) -> Self {
        let mut members: Vec<NodeId> = self.config.members.iter().map(|id| f(*id)).collect();
        members.sort_unstable();
        let role = match &self.role {
            Role::Follower { leader } => Role::Follower {
                leader: leader.map(&f),
            },
            Role::PreCandidate { votes } => Role::PreCandidate {
                votes: votes.iter().map(|id| f(*id)).collect(),
            },
            Role::Candidate { votes } => Role::Candidate {
                votes: votes.iter().map(|id| f(*id)).collect(),
            },
            Role::Leader {
                progress,
                heard_from,
                transferee,
            } => Role::Leader {
                progress: progress.iter().map(|(id, p)| (f(*id), p.clone())).collect(),
                heard_from: heard_from.iter().map(|id| f(*id)).collect(),
                transferee: transferee.map(&f),
            },
        };
        Peer {
            config: Config {
                id: f(self.config.id),
                members,
                flow: self.config.flow,
                pre_vote: self.config.pre_vote,
            },
            durable: Durable {
                term: self.durable.term,
                voted_for: self.durable.voted_for.map(&f),
                log: self.durable.log.clone(),
            },
            commit_index: self.commit_index,
            role,
            deviation: self.deviation.clone(),
        }
    }

    // ----- Accessors -----

    /// This server's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }
    /// The configuration it was restored with.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The current term.
    pub fn term(&self) -> Term {
        self.durable.term
    }
    /// The vote cast in the current term.
    pub fn voted_for(&self) -> Option<NodeId> {
        self.durable.voted_for
    }
    /// The log; entry `i` is at `log()[i - 1]` (see [`Peer::entry`] to read one by index).
    pub fn log(&self) -> &[Entry<C>] {
        &self.durable.log
    }
    /// The state that must be on stable storage.
    pub fn durable(&self) -> &Durable<C> {
        &self.durable
    }
    /// The highest index known to be committed. Volatile: 0 after a restart.
    pub fn commit_index(&self) -> Index {
        self.commit_index
    }
    /// The role with its volatile state.
    pub fn role(&self) -> &Role {
        &self.role
    }
    /// The role's kind.
    pub fn role_kind(&self) -> RoleKind {
        match self.role {
            Role::Follower { .. } => RoleKind::Follower,
            Role::PreCandidate { .. } => RoleKind::PreCandidate,
            Role::Candidate { .. } => RoleKind::Candidate,
            Role::Leader { .. } => RoleKind::Leader,
        }
    }
    /// The leader of the current term as far as this server knows.
    pub fn leader(&self) -> Option<NodeId> {
        match self.role {
            Role::Follower { leader } => leader,
            Role::PreCandidate { .. } | Role::Candidate { .. } => None,
            Role::Leader { .. } => Some(self.config.id),
        }
    }
    /// The server a leader is handing leadership to, while it does (§3.10).
    pub fn transferee(&self) -> Option<NodeId> {
        match self.role {
            Role::Leader { transferee, .. } => transferee,
            _ => None,
        }
    }
    /// The index of the last log entry (0 when empty).
    pub fn last_index(&self) -> Index {
        self.raft_log().last_index()
    }
    /// The term of the entry at `index`; 0 for index 0 or an index past the end.
    pub fn term_at(&self, index: Index) -> Term {
        self.raft_log().term_at(index)
    }
    /// The term of the last entry.
    pub fn last_term(&self) -> Term {
        self.raft_log().last_term()
    }
    /// The entry at `index`, if the log has one.
    pub fn entry(&self, index: Index) -> Option<&Entry<C>> {
        self.raft_log().entry(index)
    }

    /// The log in Raft's indexes.
    fn raft_log(&self) -> RaftLog<'_, C> {
        RaftLog::new(&self.durable.log)
    }
    /// The log in Raft's indexes, to change it.
    fn raft_log_mut(&mut self) -> RaftLogMut<'_, C> {
        RaftLogMut::new(&mut self.durable.log)
    }

    // ----- Inputs -----

    /// Handles a message from another server.
    ///
    /// The message must be well formed, as `rdb-server` validates every message off the wire:
    /// terms at least 1, entries of nondecreasing terms between `prev_log_term` and the
    /// message's term. A well-formed message that no correct server can send in this Peer's
    /// state is refused with [`PeerError::Refused`] and changes nothing.
    pub fn handle_message(
        &mut self,
        from: NodeId,
        message: Message<C>,
    ) -> Result<Output<C>, PeerError> {
        if from == self.config.id || !self.config.members.contains(&from) {
            return Err(PeerError::UnknownPeer(from));
        }
        if let Some(refusal) = self.refusal(from, &message) {
            return Err(PeerError::Refused(refusal));
        }
        let mut output = Output::default();
        if self.ignores(&message) {
            return Ok(output);
        }
        if let Some(term) = message.sender_term() {
            self.observe_term(term, &mut output);
        }
        match message {
            Message::RequestVoteRequest {
                term,
                last_log_index,
                last_log_term,
                transfer: _,
            } => self.handle_request_vote_request(
                from,
                term,
                last_log_index,
                last_log_term,
                &mut output,
            ),
            Message::RequestVoteResponse { term, granted } => {
                self.handle_request_vote_response(from, term, granted, &mut output)
            }
            Message::PreVoteRequest {
                term,
                last_log_index,
                last_log_term,
            } => {
                self.handle_pre_vote_request(from, term, last_log_index, last_log_term, &mut output)
            }
            Message::PreVoteResponse { term, granted } => {
                self.handle_pre_vote_response(from, term, granted, &mut output)
            }
            Message::AppendEntriesRequest {
                term,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => self.handle_append_entries_request(
                from,
                term,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                &mut output,
            ),
            Message::AppendEntriesResponse {
                term,
                success,
                index,
            } => self.handle_append_entries_response(from, term, success, index, &mut output),
            Message::TimeoutNow { term } => self.handle_timeout_now(term, &mut output),
        }
        self.check_invariants();
        Ok(output)
    }

    /// Handles a timer that fired.
    pub fn handle_timeout(&mut self, timer: Timer) -> Output<C> {
        let mut output = Output::default();
        match (timer, &self.role) {
            (Timer::Election, Role::Leader { .. }) => self.check_quorum(&mut output),
            (Timer::Election, _) if self.config.pre_vote => self.start_pre_vote(&mut output),
            (Timer::Election, _) => self.start_election(false, &mut output),
            (Timer::Heartbeat, Role::Leader { .. }) => {
                self.broadcast_heartbeat(&mut output);
                output.timers.push(TimerCommand::Set(Timer::Heartbeat));
            }
            // A heartbeat timer that outlived its leadership: nothing to do.
            (Timer::Heartbeat, _) => {}
        }
        self.check_invariants();
        output
    }

    /// Appends client commands to the leader's log and replicates them. Returns the index of
    /// the first new entry; the commands are committed once `commit` reaches the last one.
    pub fn propose(&mut self, commands: Vec<C>) -> Result<(Index, Output<C>), PeerError> {
        if !matches!(self.role, Role::Leader { .. }) {
            return Err(PeerError::NotLeader {
                leader: self.leader(),
            });
        }
        if let Some(to) = self.transferee() {
            if !planted!(self, ProposeWhileTransferring) {
                return Err(PeerError::Transferring { to });
            }
        }
        if commands.is_empty() {
            return Err(PeerError::EmptyProposal);
        }
        let mut output = Output::default();
        let first = self.last_index() + 1;
        let term = self.durable.term;
        self.raft_log_mut()
            .extend(commands.into_iter().map(|command| Entry {
                term,
                command: Some(command),
            }));
        output.persist.log_from = Some(first);
        self.broadcast_append(&mut output);
        // A cluster of one commits on its own (the entry is durable before the driver applies it).
        self.maybe_commit(&mut output);
        self.check_invariants();
        Ok((first, output))
    }

    /// Hands leadership over to `to` (dissertation §3.10): the leader stops taking proposals,
    /// brings `to`'s log up to its own, then tells it to start an election at once
    /// ([`Message::TimeoutNow`]). The transfer completes when `to` wins (this leader then
    /// follows the newer term), and is given up at the leader's next election timeout, which
    /// this call re-arms. A second call replaces the target.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<Output<C>, PeerError> {
        if !matches!(self.role, Role::Leader { .. }) {
            return Err(PeerError::NotLeader {
                leader: self.leader(),
            });
        }
        if to == self.config.id || !self.config.members.contains(&to) {
            return Err(PeerError::InvalidTransfer(to));
        }
        let mut output = Output::default();
        self.start_transfer(to, &mut output);
        self.check_invariants();
        Ok(output)
    }

    fn bug_planted(&self) -> bool {
        self.deviation.bug().is_some()
    }

    fn others(&self) -> impl Iterator<Item = NodeId> + '_ {
        let id = self.config.id;
        self.config
            .members
            .iter()
            .copied()
            .filter(move |m| *m != id)
    }

    // ----- Invariants -----

    /// Asserts what must hold after every step. Runs in tests, the model and debug builds.
    /// With a planted bug the model's properties report the damage instead.
    pub fn check_invariants(&self) {
        if cfg!(any(debug_assertions, feature = "checker")) && !self.bug_planted() {
            if let Err(why) = self.invariant_violation() {
                panic!(
                    "Peer {} broke an invariant: {why}\n{self:?}",
                    self.config.id
                );
            }
        }
    }

    /// The first broken invariant, if any.
    pub fn invariant_violation(&self) -> Result<(), String> {
        let last = self.last_index();
        if self.commit_index > last {
            return Err(format!("commit {} > last index {last}", self.commit_index));
        }
        validate_durable(&self.config, &self.durable).map_err(|e| e.to_string())?;
        match &self.role {
            Role::Follower { leader } => {
                if *leader == Some(self.config.id) {
                    return Err("follower follows itself".into());
                }
            }
            Role::PreCandidate { votes } => {
                if !self.config.pre_vote {
                    return Err("pre-candidate without pre-vote".into());
                }
                if !votes.contains(&self.config.id) {
                    return Err("pre-candidate does not count itself".into());
                }
            }
            Role::Candidate { votes } => {
                if self.durable.voted_for != Some(self.config.id)
                    || !votes.contains(&self.config.id)
                {
                    return Err("candidate has not voted for itself".into());
                }
            }
            Role::Leader {
                progress,
                heard_from,
                transferee,
            } => {
                if transferee.is_some_and(|to| progress.get(&to).is_none()) {
                    return Err(format!(
                        "transfers leadership to {transferee:?}, a stranger"
                    ));
                }
                if self.durable.voted_for != Some(self.config.id) {
                    return Err("leader has not voted for itself".into());
                }
                if progress.len() + 1 != self.config.members.len() {
                    return Err("leader does not track every follower".into());
                }
                for (id, p) in progress {
                    if let Some(why) = p.violation(last, &self.config.flow) {
                        return Err(format!("progress of {id}: {why}"));
                    }
                }
                if heard_from.contains(&self.config.id) {
                    return Err("leader counts itself as heard from".into());
                }
            }
        }
        Ok(())
    }
}

fn validate_config(config: &Config) -> Result<(), PeerError> {
    config.flow.validate().map_err(PeerError::InvalidConfig)?;
    let unique: BTreeSet<_> = config.members.iter().collect();
    if unique.len() != config.members.len() {
        return Err(PeerError::InvalidConfig("a member is listed twice".into()));
    }
    if !config.members.contains(&config.id) {
        return Err(PeerError::InvalidConfig(format!(
            "server {} is not among the members {:?}",
            config.id, config.members
        )));
    }
    Ok(())
}

fn validate_durable<C>(config: &Config, durable: &Durable<C>) -> Result<(), PeerError> {
    if let Some(vote) = durable.voted_for {
        if !config.members.contains(&vote) {
            return Err(PeerError::InvalidDurable(format!(
                "vote for {vote}, which is not a member"
            )));
        }
    }
    let mut previous = 0;
    for (index, entry) in RaftLog::new(&durable.log).indexed() {
        if entry.term == 0 || entry.term < previous || entry.term > durable.term {
            return Err(PeerError::InvalidDurable(format!(
                "entry {index} has term {} after term {previous} (current term {})",
                entry.term, durable.term
            )));
        }
        previous = entry.term;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follower_with_log(terms: &[Term]) -> Peer<u8> {
        let durable = Durable {
            term: *terms.last().unwrap_or(&0),
            voted_for: None,
            log: terms
                .iter()
                .map(|&term| Entry {
                    term,
                    command: Some(0),
                })
                .collect(),
        };
        let config = Config::new(1, vec![1, 2, 3]);
        Peer::restore(config, durable).unwrap().0
    }

    fn entries(terms: &[Term]) -> Vec<Entry<u8>> {
        terms
            .iter()
            .map(|&term| Entry {
                term,
                command: Some(1),
            })
            .collect()
    }

    #[test]
    fn rejection_hint_skips_the_conflicting_term() {
        let peer = follower_with_log(&[1, 2, 2, 2]);
        // The entry at 4 has term 2, not the leader's: skip every entry of term 2.
        assert_eq!(peer.rejection_hint(4), 1);
        // The follower's log is too short: retry right after its last entry.
        assert_eq!(peer.rejection_hint(7), 4);
    }

    #[test]
    fn append_truncates_only_from_the_first_conflict() {
        let mut peer = follower_with_log(&[1, 1, 1]);
        let mut output = Output::default();
        peer.append_entries(1, entries(&[1, 2]), &mut output);
        let terms: Vec<Term> = peer.log().iter().map(|e| e.term).collect();
        assert_eq!(terms, vec![1, 1, 2]);
        assert_eq!(output.persist.log_from, Some(3));
    }

    #[test]
    fn append_of_present_entries_changes_nothing() {
        let mut peer = follower_with_log(&[1, 1, 1]);
        let before = peer.clone();
        let mut output = Output::default();
        // A stale request carrying a prefix of what is stored must not cut the log short.
        peer.append_entries(0, entries(&[1]), &mut output);
        assert_eq!(peer.log(), before.log());
        assert_eq!(output.persist.log_from, None);
    }

    #[test]
    fn restore_rejects_inconsistent_durable_state() {
        let config = Config::new(1, vec![1, 2, 3]);
        let future_entry = Durable {
            term: 1,
            voted_for: None,
            log: entries(&[2]),
        };
        assert!(matches!(
            Peer::<u8>::restore(config.clone(), future_entry),
            Err(PeerError::InvalidDurable(_))
        ));
        let stranger_vote = Durable::<u8> {
            term: 1,
            voted_for: Some(9),
            log: Vec::new(),
        };
        assert!(matches!(
            Peer::<u8>::restore(config, stranger_vote),
            Err(PeerError::InvalidDurable(_))
        ));
        let not_a_member = Config::new(4, vec![1, 2, 3]);
        assert!(matches!(
            Peer::<u8>::restore(not_a_member, Durable::<u8>::default()),
            Err(PeerError::InvalidConfig(_))
        ));
    }

    /// A follower of 2 in term 2 with log terms [1, 1, 2], of which the first two entries are
    /// committed.
    fn follower_with_commit() -> Peer<u8> {
        let mut peer = follower_with_log(&[1, 1, 2]);
        let heartbeat = Message::AppendEntriesRequest {
            term: 2,
            prev_log_index: 3,
            prev_log_term: 2,
            entries: Vec::new(),
            leader_commit: 2,
        };
        peer.handle_message(2, heartbeat).unwrap();
        assert_eq!((peer.commit_index(), peer.leader()), (2, Some(2)));
        peer
    }

    /// The leader of term 3 with log terms [1, 1, 2, 3] (the last its blank entry), after 2
    /// acknowledged the whole log.
    fn leader_with_progress() -> Peer<u8> {
        let mut peer = follower_with_log(&[1, 1, 2]);
        peer.handle_timeout(Timer::Election);
        let vote = Message::RequestVoteResponse {
            term: 3,
            granted: true,
        };
        peer.handle_message(2, vote).unwrap();
        let ack = Message::AppendEntriesResponse {
            term: 3,
            success: true,
            index: 4,
        };
        peer.handle_message(2, ack).unwrap();
        assert_eq!(peer.role_kind(), RoleKind::Leader);
        peer
    }

    /// Asserts that `peer` refuses `message` from `from` with `refusal`, and that the refusal
    /// left it exactly as it was.
    fn assert_refused(peer: &mut Peer<u8>, from: NodeId, message: Message<u8>, refusal: Refusal) {
        let before = peer.clone();
        assert_eq!(
            peer.handle_message(from, message),
            Err(PeerError::Refused(refusal))
        );
        assert_eq!(*peer, before);
    }

    fn progress_of(peer: &Peer<u8>, follower: NodeId) -> Progress {
        let Role::Leader { progress, .. } = peer.role() else {
            panic!("not a leader: {peer:?}");
        };
        progress[&follower].clone()
    }

    #[test]
    fn overwrite_of_a_committed_index_is_refused_and_changes_nothing() {
        let mut peer = follower_with_commit();
        // Consistent at index 1, then replaces the committed entry at index 2 (term 1).
        let overwrite = Message::AppendEntriesRequest {
            term: 2,
            prev_log_index: 1,
            prev_log_term: 1,
            entries: entries(&[2, 2]),
            leader_commit: 2,
        };
        let refusal = Refusal::OverwritesCommitted {
            index: 2,
            committed_term: 1,
            entry_term: 2,
        };
        assert_refused(&mut peer, 2, overwrite, refusal);
    }

    #[test]
    fn overwrite_of_a_committed_index_in_a_later_term_keeps_the_term() {
        let mut peer = follower_with_commit();
        let before = peer.clone();
        let overwrite = Message::AppendEntriesRequest {
            term: 7,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: entries(&[3]),
            leader_commit: 0,
        };
        assert!(matches!(
            peer.handle_message(3, overwrite),
            Err(PeerError::Refused(Refusal::OverwritesCommitted {
                index: 1,
                ..
            }))
        ));
        assert_eq!(peer.term(), 2);
        assert_eq!(peer, before);
    }

    #[test]
    fn resending_committed_entries_and_replacing_uncommitted_ones_is_accepted() {
        let mut peer = follower_with_commit();
        // Same terms at the committed indexes 1 and 2, a new term at the uncommitted index 3.
        let request = Message::AppendEntriesRequest {
            term: 3,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: entries(&[1, 1, 3]),
            leader_commit: 2,
        };
        peer.handle_message(3, request).unwrap();
        let terms: Vec<Term> = peer.log().iter().map(|e| e.term).collect();
        assert_eq!(terms, vec![1, 1, 3]);
    }

    #[test]
    fn an_append_from_a_second_leader_of_the_term_is_refused() {
        let mut follower = follower_with_commit();
        let append = Message::AppendEntriesRequest {
            term: 2,
            prev_log_index: 3,
            prev_log_term: 2,
            entries: Vec::new(),
            leader_commit: 3,
        };
        let refusal = Refusal::SecondLeader { term: 2, leader: 2 };
        assert_refused(&mut follower, 3, append.clone(), refusal);
        // The known leader itself is heard as usual.
        assert!(follower.handle_message(2, append).is_ok());

        let mut leader = leader_with_progress();
        let append = Message::AppendEntriesRequest {
            term: 3,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: Vec::new(),
            leader_commit: 0,
        };
        let refusal = Refusal::SecondLeader { term: 3, leader: 1 };
        assert_refused(&mut leader, 3, append, refusal);
    }

    #[test]
    fn a_candidate_gives_up_to_the_leader_of_its_term() {
        let mut peer = follower_with_log(&[1]);
        peer.handle_timeout(Timer::Election);
        let append = Message::AppendEntriesRequest {
            term: 2,
            prev_log_index: 1,
            prev_log_term: 1,
            entries: Vec::new(),
            leader_commit: 0,
        };
        peer.handle_message(3, append).unwrap();
        assert_eq!(peer.leader(), Some(3));
    }

    #[test]
    fn an_acknowledgement_past_the_log_is_refused_without_overflow() {
        let mut peer = leader_with_progress();
        let ack = Message::AppendEntriesResponse {
            term: 3,
            success: true,
            index: Index::MAX,
        };
        let refusal = Refusal::AcknowledgesBeyondLog {
            index: Index::MAX,
            last_index: 4,
        };
        assert_refused(&mut peer, 3, ack, refusal);
        let hint = Message::AppendEntriesResponse {
            term: 3,
            success: false,
            index: Index::MAX,
        };
        let refusal = Refusal::HintBeyondLog {
            index: Index::MAX,
            last_index: 4,
        };
        assert_refused(&mut peer, 3, hint, refusal);
    }

    #[test]
    fn responses_of_other_terms_are_not_judged_against_the_log() {
        let mut peer = leader_with_progress();
        // A follower of term 2 acknowledging a long log of an earlier leader: stale, ignored.
        let stale = Message::AppendEntriesResponse {
            term: 2,
            success: true,
            index: Index::MAX,
        };
        let output = peer.handle_message(3, stale).unwrap();
        assert!(output.is_empty());
        assert_eq!(progress_of(&peer, 3).matched, 0);
    }

    #[test]
    fn a_rejection_below_the_match_index_is_probed_right_after_it() {
        let mut peer = leader_with_progress();
        assert_eq!(progress_of(&peer, 2).matched, 4);
        let below = Message::AppendEntriesResponse {
            term: 3,
            success: false,
            index: 0,
        };
        // Stale or not (a hint that skipped a term run reaching below the match), the leader
        // probes again right after the match, never below it.
        let output = peer.handle_message(2, below).unwrap();
        assert_eq!(progress_of(&peer, 2).next, 5);
        assert!(progress_of(&peer, 2).is_paused(&peer.config().flow));
        let probes: Vec<_> = output
            .messages()
            .filter_map(|(to, m)| match m {
                Message::AppendEntriesRequest { prev_log_index, .. } => {
                    Some((*to, *prev_log_index))
                }
                _ => None,
            })
            .collect();
        assert_eq!(probes, vec![(2, 4)]);
    }

    /// A follower holding stale entries of the term of the entries it acknowledged, past them,
    /// refuses the next message with a hint that skips that whole run, below its match index;
    /// after a lost message the leader must still repair it (it once took such a rejection for
    /// a stale one and left the follower refusing everything, a message lost for good).
    #[test]
    fn a_follower_whose_hint_falls_below_its_match_is_repaired() {
        use crate::peer::FlowControl;
        let flow = FlowControl {
            max_entries: 1,
            max_bytes: u64::MAX,
            max_inflight: 2,
            max_inflight_bytes: u64::MAX,
        };
        let restore = |id: NodeId, term: Term, terms: &[Term]| {
            let mut config = Config::new(id, vec![1, 2, 3]);
            config.flow = flow;
            Peer::<u8>::restore(
                config,
                Durable {
                    term,
                    voted_for: None,
                    log: log_of_terms(terms),
                },
            )
            .unwrap()
            .0
        };
        // Server 1 leads term 3 with [1, 2, 3 (blank)]; server 2 holds [1, 1, 1] of term 1.
        let mut leader = restore(1, 2, &[1, 2]);
        let mut follower = restore(2, 1, &[1, 1, 1]);
        leader.handle_timeout(Timer::Election);
        let vote = Message::RequestVoteResponse {
            term: 3,
            granted: true,
        };
        let mut to_follower: Vec<Message<u8>> = leader
            .handle_message(3, vote)
            .unwrap()
            .messages()
            .filter(|(to, _)| *to == 2)
            .map(|(_, m)| m.clone())
            .collect();
        let mut lost = false;
        for _ in 0..20 {
            if to_follower.is_empty() {
                let heartbeat = leader.handle_timeout(Timer::Heartbeat);
                to_follower.extend(
                    heartbeat
                        .messages()
                        .filter(|(to, _)| *to == 2)
                        .map(|(_, m)| m.clone()),
                );
                continue;
            }
            let message = to_follower.remove(0);
            // The message that carries entry 2, once pipelining, is lost.
            if let Message::AppendEntriesRequest {
                prev_log_index: 1, ..
            } = &message
            {
                if !lost {
                    lost = true;
                    continue;
                }
            }
            let answers = follower.handle_message(1, message).unwrap();
            for (_, answer) in answers.messages() {
                let output = leader.handle_message(2, answer.clone()).unwrap();
                to_follower.extend(
                    output
                        .messages()
                        .filter(|(to, _)| *to == 2)
                        .map(|(_, m)| m.clone()),
                );
            }
        }
        assert!(lost, "the message carrying entry 2 was sent and lost");
        assert_eq!(follower.log(), leader.log(), "the follower is repaired");
        assert_eq!(progress_of(&leader, 2).matched, 3);
    }

    #[test]
    fn a_transfer_is_only_to_another_member_and_only_by_the_leader() {
        let mut leader = leader_with_progress();
        assert_eq!(
            leader.transfer_leadership(1),
            Err(PeerError::InvalidTransfer(1))
        );
        assert_eq!(
            leader.transfer_leadership(9),
            Err(PeerError::InvalidTransfer(9))
        );
        let mut follower = follower_with_commit();
        assert_eq!(
            follower.transfer_leadership(3),
            Err(PeerError::NotLeader { leader: Some(2) })
        );
    }

    #[test]
    fn a_caught_up_target_is_told_at_once_and_proposals_wait() {
        let mut leader = leader_with_progress();
        // 2 acknowledged the whole log (index 4): TimeoutNow goes at once.
        let output = leader.transfer_leadership(2).unwrap();
        assert_eq!(
            output.send_after_persist,
            vec![(2, Message::TimeoutNow { term: 3 })]
        );
        assert!(output.send_now.is_empty());
        assert_eq!(leader.transferee(), Some(2));
        assert_eq!(
            leader.propose(vec![5]),
            Err(PeerError::Transferring { to: 2 })
        );
        // The election timeout gives the transfer up; proposals flow again.
        leader.handle_timeout(Timer::Election);
        assert_eq!(leader.transferee(), None);
        assert!(leader.propose(vec![5]).is_ok());
    }

    #[test]
    fn timeout_now_from_another_than_the_leader_is_refused_and_a_stale_one_ignored() {
        let mut follower = follower_with_commit();
        let refusal = Refusal::SecondLeader { term: 2, leader: 2 };
        assert_refused(&mut follower, 3, Message::TimeoutNow { term: 2 }, refusal);
        let before = follower.clone();
        let output = follower
            .handle_message(2, Message::TimeoutNow { term: 1 })
            .unwrap();
        assert!(output.is_empty());
        assert_eq!(follower, before);
        // From its leader, in its term: an election at once, its requests marked as a
        // transfer's.
        let output = follower
            .handle_message(2, Message::TimeoutNow { term: 2 })
            .unwrap();
        assert_eq!(follower.role_kind(), RoleKind::Candidate);
        assert_eq!(follower.term(), 3);
        assert!(output.send_after_persist.iter().all(|(_, m)| matches!(
            m,
            Message::RequestVoteRequest {
                transfer: true,
                term: 3,
                ..
            }
        )));
        assert_eq!(output.send_after_persist.len(), 2);
    }

    #[test]
    fn messages_from_strangers_and_self_are_misuse() {
        let mut peer = follower_with_log(&[]);
        let message = Message::RequestVoteResponse {
            term: 0,
            granted: true,
        };
        assert_eq!(
            peer.handle_message(9, message.clone()),
            Err(PeerError::UnknownPeer(9))
        );
        assert_eq!(
            peer.handle_message(1, message),
            Err(PeerError::UnknownPeer(1))
        );
    }
}
