//! The properties the checker verifies, by name. The names are shared with the TLA+ spec's
//! invariants and with the trace format.
//!
//! A crashed server's last state stays in the model state until it recovers; properties about
//! what a server *knows* (its commit index, its log) read it as well, since it was true when the
//! server crashed. Properties about what a server *is now* (a leader) skip crashed servers.

use super::{RaftModel, RaftState, ServerState};
use crate::peer::{Entry, Flow, Index, Role, RoleKind};

/// Whether a property must hold in every state or needs one example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Holds in every reachable state (safety).
    Always,
    /// Holds in at least one reachable state (a coverage target).
    Sometimes,
}

/// A named property.
pub struct NamedProperty {
    /// The name, as printed in reports and used in the TLA+ spec.
    pub name: &'static str,
    /// Always or Sometimes.
    pub expectation: Expect,
    /// One line on what it says.
    pub description: &'static str,
    /// The condition, evaluated on one state.
    pub condition: fn(&RaftModel, &RaftState) -> bool,
    /// Whether the condition reads the messages in flight. One that does not reads only the
    /// servers' states, their storage and which are crashed, so its verdict on one state holds
    /// for every state with the same servers (the search remembers it, see `engine`).
    pub reads_network: bool,
}

/// Every property, in report order. Where one state violates several, the first in this
/// order is the one a planted bug is said to violate first: the more specific properties come
/// before the broader ones that the same damage also breaks.
pub const ALL: [NamedProperty; 23] = [
    NamedProperty {
        name: "ElectionSafety",
        expectation: Expect::Always,
        description: "at most one leader per term (§5.2)",
        condition: election_safety,
        reads_network: false,
    },
    NamedProperty {
        name: "LogMatching",
        expectation: Expect::Always,
        description: "logs with an entry of the same index and term agree up to it (§5.3)",
        condition: log_matching,
        reads_network: false,
    },
    NamedProperty {
        name: "LeaderCompleteness",
        expectation: Expect::Always,
        description: "a leader holds every entry committed in an earlier or its own term (§5.4)",
        condition: leader_completeness,
        reads_network: false,
    },
    NamedProperty {
        name: "StateMachineSafety",
        expectation: Expect::Always,
        description: "no two servers commit different entries at one index (§5.4.3)",
        condition: state_machine_safety,
        reads_network: false,
    },
    NamedProperty {
        name: "CommittedSurvivesCrash",
        expectation: Expect::Always,
        description: "what a server has committed is in its own durable log",
        condition: committed_survives_crash,
        reads_network: false,
    },
    NamedProperty {
        name: "NoCommitOnMinority",
        expectation: Expect::Always,
        description: "every committed entry is in the durable log of a majority",
        condition: no_commit_on_minority,
        reads_network: false,
    },
    NamedProperty {
        name: "ElectableHoldsCommitted",
        expectation: Expect::Always,
        description: "a server whose log could win a majority's votes holds every committed entry",
        condition: electable_holds_committed,
        reads_network: false,
    },
    NamedProperty {
        name: "MonotonicTerm",
        expectation: Expect::Always,
        description: "a server's term never decreases, not even across a crash",
        condition: monotonic_term,
        reads_network: false,
    },
    NamedProperty {
        name: "PreVoteChangesNothing",
        expectation: Expect::Always,
        description: "asking for, granting or counting pre-votes changes no server's term or \
                      vote; only pre-votes from a majority start an election (§9.6)",
        condition: pre_vote_changes_nothing,
        reads_network: false,
    },
    NamedProperty {
        name: "MonotonicCommit",
        expectation: Expect::Always,
        description: "a running server's commit index never decreases",
        condition: monotonic_commit,
        reads_network: false,
    },
    NamedProperty {
        name: "FlowControlWindow",
        expectation: Expect::Always,
        description: "a leader's progress of each follower stays in range: matched < next <= \
                      last + 1, a follower still in the leader's term stores the leader's log \
                      up to matched, at most the window in flight, each message in flight \
                      ending after matched and before next, and the bytes in flight counted \
                      exactly",
        condition: flow_control_window,
        reads_network: false,
    },
    NamedProperty {
        name: "OutputContract",
        expectation: Expect::Always,
        description: "every step's output keeps the Peer's contract (messages, persist, commit), \
                      and every server starts with its election timer armed",
        condition: output_contract,
        reads_network: false,
    },
    NamedProperty {
        name: "PeerInvariant",
        expectation: Expect::Always,
        description:
            "no Peer step panics or refuses a message, and every Peer's own invariants hold",
        condition: peer_invariant,
        reads_network: false,
    },
    NamedProperty {
        name: "LeaderElected",
        expectation: Expect::Sometimes,
        description: "a leader is elected",
        condition: leader_elected,
        reads_network: false,
    },
    NamedProperty {
        name: "EntryCommitted",
        expectation: Expect::Sometimes,
        description: "a client entry commits",
        condition: entry_committed,
        reads_network: false,
    },
    NamedProperty {
        name: "BlankEntryCommitsEarlierTerm",
        expectation: Expect::Sometimes,
        description: "a leader's commit index reaches its blank entry, past an earlier term's \
                      client entry, with no client entry of its own term",
        condition: blank_entry_commits_earlier_term,
        reads_network: false,
    },
    NamedProperty {
        name: "LaterLeaderCommits",
        expectation: Expect::Sometimes,
        description: "a leader of a later term commits after an earlier leader committed",
        condition: later_leader_commits,
        reads_network: false,
    },
    NamedProperty {
        name: "RecoveredNodeCatchesUp",
        expectation: Expect::Sometimes,
        description: "a recovered server catches up and an entry commits afterwards",
        condition: recovered_node_catches_up,
        reads_network: false,
    },
    NamedProperty {
        name: "FollowerTruncatesConflict",
        expectation: Expect::Sometimes,
        description: "a follower deletes a conflicting uncommitted entry",
        condition: follower_truncates_conflict,
        reads_network: false,
    },
    NamedProperty {
        name: "PreVoteRefusedInSameTerm",
        expectation: Expect::Sometimes,
        description: "a pre-candidate is refused by a server of its own term whose log is more \
                      up-to-date, and neither changes term",
        condition: pre_vote_refused_in_same_term,
        reads_network: true,
    },
    NamedProperty {
        name: "TransferCompletes",
        expectation: Expect::Sometimes,
        description: "a server told by the leader to take over (TimeoutNow) leads the term it \
                      campaigned in (§3.10)",
        condition: transfer_completes,
        reads_network: false,
    },
    NamedProperty {
        name: "WindowFills",
        expectation: Expect::Sometimes,
        description:
            "a leader has as many AppendEntries in flight to a follower as its window allows",
        condition: window_fills,
        reads_network: false,
    },
    NamedProperty {
        name: "FollowerCatchesUpInBatches",
        expectation: Expect::Sometimes,
        description: "a follower is known to store more entries than one AppendEntries carries",
        condition: follower_catches_up_in_batches,
        reads_network: false,
    },
];

impl NamedProperty {
    /// Whether the property holds in `state`, or `Err` with a panic's message. The properties
    /// are total over any state, but they read each server through its Peer's accessors, and a
    /// Peer that broke its own state (a log position past its entries, say) may panic in one:
    /// that is a broken Peer invariant, reported as a violation of [`PEER_INVARIANT`], never a
    /// crashed or stalled checker.
    pub fn holds(&self, model: &RaftModel, state: &RaftState) -> Result<bool, String> {
        super::actor::guarded(|| (self.condition)(model, state))
    }
}

/// Whether some Always property reads the messages in flight. None does: the search then
/// judges a successor beyond the bound on messages in flight without building its network.
pub const ALWAYS_READS_NETWORK: bool = {
    let mut i = 0;
    let mut reads = false;
    while i < ALL.len() {
        reads |= ALL[i].reads_network && matches!(ALL[i].expectation, Expect::Always);
        i += 1;
    }
    reads
};

/// The index in [`ALL`] of PeerInvariant, which a panic while evaluating any property violates.
pub const PEER_INVARIANT: usize = 12;

/// What evaluating `ALL[i]` on `state` discovers, as an index into [`ALL`]: `i` itself when an
/// Always property is violated or a Sometimes property has its example, [`PEER_INVARIANT`]
/// when the evaluation panicked, nothing otherwise.
pub fn discovery(i: usize, model: &RaftModel, state: &RaftState) -> Option<usize> {
    let property = &ALL[i];
    match (property.holds(model, state), property.expectation) {
        (Ok(holds), Expect::Always) => (!holds).then_some(i),
        (Ok(holds), Expect::Sometimes) => holds.then_some(i),
        (Err(_), _) => Some(PEER_INVARIANT),
    }
}

/// Calls `found` with what evaluating each property of [`ALL`] not `skipped` discovers on
/// `state` (as [`discovery`] does), in order. The properties are evaluated under one guard;
/// only when one of them panics are they evaluated again one by one, each under its own, so
/// that the verdicts are [`discovery`]'s.
pub fn discoveries(
    model: &RaftModel,
    state: &RaftState,
    skipped: impl Fn(usize) -> bool,
    found: impl FnMut(usize),
) {
    let skipped = |i: usize| skipped(i) || !model.cfg.judges(i);
    let together = super::actor::guarded(|| {
        let mut hits: smallvec::SmallVec<[usize; 4]> = smallvec::SmallVec::new();
        for (i, property) in ALL.iter().enumerate() {
            if skipped(i) {
                continue;
            }
            let holds = (property.condition)(model, state);
            if holds == (property.expectation == Expect::Sometimes) {
                hits.push(i);
            }
        }
        hits
    });
    match together {
        Ok(hits) => hits.into_iter().for_each(found),
        // A panic is PeerInvariant's discovery, if that is judged.
        Err(_) => (0..ALL.len())
            .filter(|&i| !skipped(i))
            .filter_map(|i| discovery(i, model, state))
            .filter(|&d| model.cfg.judges(d))
            .for_each(found),
    }
}

/// Always properties about what each step of the Peer's code does rather than about the
/// protocol's states: the TLA+ spec has no invariant for them, its actions state them by
/// construction (HandlePreVoteRequest, for one, leaves every term and vote UNCHANGED).
pub const CODE_ONLY: [&str; 3] = ["OutputContract", "PeerInvariant", "PreVoteChangesNothing"];

/// Looks a property up by name.
pub fn by_name(name: &str) -> Option<&'static NamedProperty> {
    ALL.iter().find(|p| p.name == name)
}

/// The mask of [`super::ModelConfig::judged`] that judges the Always properties `names` only.
/// The error names the first name that is not an Always property, and lists those there are.
pub fn always_mask<S: AsRef<str>>(names: &[S]) -> Result<u32, String> {
    let always = || {
        ALL.iter()
            .filter(|p| p.expectation == Expect::Always)
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut mask = 0;
    for name in names {
        let name = name.as_ref();
        match ALL.iter().position(|p| p.name == name) {
            Some(i) if ALL[i].expectation == Expect::Always => mask |= 1 << i,
            Some(_) => {
                return Err(format!(
                    "{name} is a Sometimes property, searched in every run; --property takes \
                     an Always property: {}",
                    always()
                ))
            }
            None => {
                return Err(format!(
                    "unknown property `{name}`; the Always properties are: {}",
                    always()
                ))
            }
        }
    }
    Ok(mask)
}

/// Whether a run whose [`super::ModelConfig::judged`] is `judged` judges the Always property
/// `ALL[i]` (every one when `judged` is `None`).
pub fn judges_always(judged: Option<u32>, i: usize) -> bool {
    judged.is_none_or(|mask| mask & (1 << i) != 0)
}

/// The names of the properties in `mask`, in report order.
pub fn mask_names(mask: u32) -> Vec<&'static str> {
    (0..ALL.len())
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| ALL[i].name)
        .collect()
}

/// Every server with its index and whether it is crashed.
fn servers(state: &RaftState) -> impl Iterator<Item = (usize, &ServerState, bool)> + Clone {
    state
        .actor_states
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.server().map(|server| (i, server, state.crashed[i])))
}

/// Every peer message in flight, with the index of the server it goes to.
fn in_flight(
    state: &RaftState,
) -> impl Iterator<Item = (usize, &crate::peer::Message<super::Value>)> {
    use stateright::actor::Network;
    let envelopes: Vec<(stateright::actor::Id, &super::ModelMsg)> = match &state.network {
        Network::UnorderedNonDuplicating(envelopes) => {
            envelopes.keys().map(|e| (e.dst, &e.msg)).collect()
        }
        Network::UnorderedDuplicating(envelopes, _) => {
            envelopes.iter().map(|e| (e.dst, &e.msg)).collect()
        }
        Network::Ordered(flows) => flows
            .iter()
            .flat_map(|((_, dst), messages)| messages.iter().map(move |m| (*dst, m)))
            .collect(),
    };
    envelopes.into_iter().filter_map(|(dst, msg)| match msg {
        super::ModelMsg::Peer(message) => Some((usize::from(dst), message.message())),
        super::ModelMsg::Propose(_) | super::ModelMsg::TakeOver | super::ModelMsg::Transfer => None,
    })
}

fn live_leaders(state: &RaftState) -> impl Iterator<Item = &ServerState> + Clone {
    servers(state)
        .filter(|(_, s, crashed)| !crashed && s.peer.role_kind() == RoleKind::Leader)
        .map(|(_, s, _)| s)
}

/// The entries a server has committed. Total over any state: a commit index past the end of
/// the log (itself a broken Peer invariant) reads as the whole log.
fn committed(server: &ServerState) -> &[Entry<super::Value>] {
    let log = server.peer.log();
    let commit = usize::try_from(server.peer.commit_index()).unwrap_or(usize::MAX);
    &log[..commit.min(log.len())]
}

/// Whether `count` servers are a majority of the model's servers: more than half of them.
/// Written from the definition, not with the Peer's own quorum arithmetic, so that a wrong
/// majority in the Peer cannot weaken the properties that judge it.
fn is_majority(model: &RaftModel, count: usize) -> bool {
    2 * count > model.cfg.servers
}

/// A server's broken Peer invariant, the panic of one of its steps or a message it refused
/// as impossible, if any.
pub fn peer_fault(server: &ServerState) -> Option<String> {
    if let Some(panic) = &server.ghost.panicked {
        return Some(format!("panicked: {panic}"));
    }
    if let Some(refusal) = &server.ghost.refused {
        return Some(format!("refused {refusal}"));
    }
    server.peer.invariant_violation().err()
}

fn election_safety(_: &RaftModel, state: &RaftState) -> bool {
    let leaders: smallvec::SmallVec<[u64; 8]> =
        live_leaders(state).map(|s| s.peer.term()).collect();
    leaders
        .iter()
        .enumerate()
        .all(|(i, term)| !leaders[i + 1..].contains(term))
}

fn log_matching(_: &RaftModel, state: &RaftState) -> bool {
    servers(state).all(|(i, a, _)| {
        servers(state).skip(i + 1).all(|(_, b, _)| {
            let (a, b) = (a.peer.log(), b.peer.log());
            let shared = a.len().min(b.len());
            match (0..shared).rev().find(|&k| a[k].term == b[k].term) {
                Some(k) => a[..=k] == b[..=k],
                None => true,
            }
        })
    })
}

fn leader_completeness(_: &RaftModel, state: &RaftState) -> bool {
    live_leaders(state).all(|leader| {
        servers(state).all(|(_, server, _)| {
            // The server learned its commit index in a term no later than its own.
            let prefix = committed(server);
            server.peer.term() > leader.peer.term() || leader.peer.log().starts_with(prefix)
        })
    })
}

/// The Leader Completeness argument of §5.4.3 applied to every server that could win an election
/// now: if a majority's logs are no more up-to-date than its own (§5.4.1), it must already hold
/// everything committed. This sees a lost committed entry before a later leader is elected.
fn electable_holds_committed(model: &RaftModel, state: &RaftState) -> bool {
    let up_to_date = |s: &ServerState| (s.peer.last_term(), s.peer.last_index());
    servers(state).all(|(_, candidate, _)| {
        let voters = servers(state)
            .filter(|(_, voter, _)| up_to_date(voter) <= up_to_date(candidate))
            .count();
        !is_majority(model, voters)
            || servers(state)
                .all(|(_, server, _)| candidate.peer.log().starts_with(committed(server)))
    })
}

fn state_machine_safety(_: &RaftModel, state: &RaftState) -> bool {
    servers(state).all(|(i, a, _)| {
        servers(state).skip(i + 1).all(|(_, b, _)| {
            let (a, b) = (committed(a), committed(b));
            let shared = a.len().min(b.len());
            a[..shared] == b[..shared]
        })
    })
}

fn no_commit_on_minority(model: &RaftModel, state: &RaftState) -> bool {
    servers(state).all(|(_, server, _)| {
        let prefix = committed(server);
        prefix.is_empty()
            || is_majority(
                model,
                state
                    .actor_storages
                    .iter()
                    .take(model.cfg.servers)
                    .filter(|storage| storage.as_ref().is_some_and(|d| d.log.starts_with(prefix)))
                    .count(),
            )
    })
}

/// A server busy writing (persistence as a step) is judged once the write is done: its node
/// applies and answers only after it.
fn committed_survives_crash(_: &RaftModel, state: &RaftState) -> bool {
    servers(state).all(|(i, server, crashed)| {
        crashed
            || server.pending.is_some()
            || state
                .actor_storages
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|durable| durable.log.starts_with(committed(server)))
    })
}

fn monotonic_term(_: &RaftModel, state: &RaftState) -> bool {
    servers(state).all(|(i, server, crashed)| {
        let saved = state
            .actor_storages
            .get(i)
            .and_then(Option::as_ref)
            .map_or(0, |d| d.term);
        !server.ghost.regressed_term
            && (crashed || server.pending.is_some() || saved >= server.peer.term())
    })
}

/// A live leader of the term it campaigned in on a leader's TimeoutNow.
fn transfer_completes(_: &RaftModel, state: &RaftState) -> bool {
    live_leaders(state).any(|leader| leader.ghost.took_over == Some(leader.peer.term()))
}

fn pre_vote_changes_nothing(_: &RaftModel, state: &RaftState) -> bool {
    servers(state).all(|(_, server, _)| !server.ghost.pre_vote_moved_term)
}

/// A refused pre-vote answer in flight to a pre-candidate, carrying the pre-candidate's own
/// term: the voter was in that term and refused for its log.
fn pre_vote_refused_in_same_term(_: &RaftModel, state: &RaftState) -> bool {
    use crate::peer::Message;
    // Most states have no pre-candidate; the messages in flight are read only if one has.
    if !servers(state)
        .any(|(_, s, crashed)| !crashed && s.peer.role_kind() == RoleKind::PreCandidate)
    {
        return false;
    }
    let refused: Vec<(usize, u64)> = in_flight(state)
        .filter_map(|(dst, message)| match message {
            Message::PreVoteResponse {
                term,
                granted: false,
            } => Some((dst, *term)),
            _ => None,
        })
        .collect();
    servers(state).any(|(i, server, crashed)| {
        !crashed
            && server.peer.role_kind() == RoleKind::PreCandidate
            && refused.contains(&(i, server.peer.term()))
    })
}

fn monotonic_commit(_: &RaftModel, state: &RaftState) -> bool {
    servers(state).all(|(_, server, _)| !server.ghost.regressed_commit)
}

/// Written from the definitions of flow control, with the model's own caps, not with the
/// Peer's checks of its progress.
fn flow_control_window(model: &RaftModel, state: &RaftState) -> bool {
    live_leaders(state).all(|leader| {
        let Role::Leader { progress, .. } = leader.peer.role() else {
            return true;
        };
        let last = leader.peer.last_index();
        progress.iter().all(|(id, p)| {
            if !(p.matched < p.next && p.next <= last + 1) {
                return false;
            }
            if !stores_matched(state, leader, *id, p.matched) {
                return false;
            }
            let Flow::Replicate { inflight } = &p.flow else {
                return true;
            };
            let ends: Vec<Index> = inflight.last_indexes().collect();
            let within_window = model.cfg.window.is_none_or(|window| ends.len() <= window);
            let ordered = ends.first().is_none_or(|first| *first > p.matched)
                && ends.windows(2).all(|pair| pair[0] < pair[1])
                && ends.last().is_none_or(|last| *last < p.next);
            let bytes: u64 = inflight.messages().map(|(_, bytes)| bytes).sum();
            within_window && ordered && bytes == inflight.bytes()
        })
    })
}

/// Whether the follower `id` stores the leader's first `matched` entries, when it is still in
/// the leader's term: it acknowledged them in that term, after writing them, and only that
/// term's leader, whose log begins with them, can have changed its log since. (A follower of a
/// newer term may have lost them to a newer leader, as Raft allows.)
fn stores_matched(state: &RaftState, leader: &ServerState, id: u64, matched: Index) -> bool {
    let Some(follower) = usize::try_from(id)
        .ok()
        .and_then(|i| state.actor_states.get(i))
        .and_then(|s| s.server())
    else {
        return true;
    };
    if follower.peer.term() != leader.peer.term() {
        return true;
    }
    let matched = usize::try_from(matched).unwrap_or(usize::MAX);
    let (theirs, ours) = (follower.peer.log(), leader.peer.log());
    matched <= theirs.len() && matched <= ours.len() && theirs[..matched] == ours[..matched]
}

fn output_contract(_: &RaftModel, state: &RaftState) -> bool {
    servers(state).all(|(_, server, _)| server.ghost.contract_broken.is_none())
}

fn peer_invariant(_: &RaftModel, state: &RaftState) -> bool {
    servers(state).all(|(_, server, _)| {
        let sound = || if peer_fault(server).is_none() { 1 } else { 2 };
        server.sound.get_or(0, sound) == 1
    })
}

fn leader_elected(_: &RaftModel, state: &RaftState) -> bool {
    live_leaders(state).next().is_some()
}

fn entry_committed(_: &RaftModel, state: &RaftState) -> bool {
    servers(state).any(|(_, server, _)| committed(server).iter().any(|e| e.command.is_some()))
}

fn blank_entry_commits_earlier_term(_: &RaftModel, state: &RaftState) -> bool {
    live_leaders(state).any(|leader| {
        let term = leader.peer.term();
        let prefix = committed(leader);
        let own_blank = prefix
            .last()
            .is_some_and(|e| e.term == term && e.command.is_none());
        let earlier_command = prefix.iter().any(|e| e.term < term && e.command.is_some());
        let own_command = prefix.iter().any(|e| e.term == term && e.command.is_some());
        own_blank && earlier_command && !own_command
    })
}

fn later_leader_commits(_: &RaftModel, state: &RaftState) -> bool {
    live_leaders(state).any(|leader| {
        let term = leader.peer.term();
        let own_entry_committed = leader.peer.term_at(leader.peer.commit_index()) == term;
        // A server still in an earlier term that knows of a commit learned it from the leader
        // of that earlier term (or was that leader).
        own_entry_committed
            && servers(state)
                .any(|(_, server, _)| server.peer.term() < term && server.peer.commit_index() > 0)
    })
}

fn recovered_node_catches_up(_: &RaftModel, state: &RaftState) -> bool {
    servers(state).any(|(_, server, crashed)| {
        !crashed
            && server
                .ghost
                .recovered_with
                .is_some_and(|entries| server.peer.commit_index() > entries)
    })
}

fn follower_truncates_conflict(_: &RaftModel, state: &RaftState) -> bool {
    servers(state).any(|(_, server, _)| server.ghost.truncated)
}

fn window_fills(model: &RaftModel, state: &RaftState) -> bool {
    let Some(window) = model.cfg.window else {
        return false;
    };
    live_leaders(state).any(|leader| match leader.peer.role() {
        Role::Leader { progress, .. } => progress.iter().any(
            |(_, p)| matches!(&p.flow, Flow::Replicate { inflight } if inflight.len() >= window),
        ),
        _ => false,
    })
}

fn follower_catches_up_in_batches(model: &RaftModel, state: &RaftState) -> bool {
    let Some(batch) = model.cfg.batch else {
        return false;
    };
    live_leaders(state).any(|leader| match leader.peer.role() {
        Role::Leader { progress, .. } => progress.iter().any(|(_, p)| p.matched > batch),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateright::Model;

    #[test]
    fn peer_invariant_is_where_its_index_says() {
        assert_eq!(ALL[PEER_INVARIANT].name, "PeerInvariant");
    }

    /// `--property` names Always properties; the mask judges those and every Sometimes
    /// property, and nothing else.
    #[test]
    fn a_mask_judges_the_named_always_properties_and_every_sometimes_one() {
        let mask = always_mask(&["NoCommitOnMinority", "ElectionSafety"]).expect("two names");
        assert_eq!(mask_names(mask), ["ElectionSafety", "NoCommitOnMinority"]);
        let config = crate::checker::ModelConfig {
            judged: Some(mask),
            ..Default::default()
        };
        for (i, p) in ALL.iter().enumerate() {
            let named = ["ElectionSafety", "NoCommitOnMinority"].contains(&p.name);
            assert_eq!(
                config.judges(i),
                named || p.expectation == Expect::Sometimes,
                "{}",
                p.name
            );
            assert!(crate::checker::ModelConfig::default().judges(i));
        }
        let unknown = always_mask(&["Safety"]).expect_err("not a property");
        assert!(
            unknown.starts_with("unknown property `Safety`"),
            "{unknown}"
        );
        let sometimes = always_mask(&["LeaderElected"]).expect_err("a Sometimes property");
        assert!(
            sometimes.starts_with("LeaderElected is a Sometimes"),
            "{sometimes}"
        );
    }

    /// A run that judges one property does not evaluate the others: a state that violates
    /// only another is no discovery.
    #[test]
    fn properties_not_judged_are_not_evaluated() {
        let judged = |names: &[&str]| {
            let config = crate::checker::ModelConfig {
                servers: 1,
                judged: Some(always_mask(names).expect("names")),
                ..Default::default()
            };
            let model = config.into_model();
            let mut state = model.init_states().remove(0);
            // A lowered term: MonotonicTerm (and nothing else) is violated.
            let mut node = (*state.actor_states[0]).clone();
            if let super::super::actor::NodeState::Server(server) = &mut node {
                server.ghost.regressed_term = true;
            }
            state.actor_states[0] = std::sync::Arc::new(node);
            let mut found = Vec::new();
            discoveries(&model, &state, |_| false, |i| found.push(ALL[i].name));
            found.retain(|name| by_name(name).unwrap().expectation == Expect::Always);
            found
        };
        assert_eq!(judged(&["MonotonicTerm"]), ["MonotonicTerm"]);
        assert!(judged(&["ElectionSafety"]).is_empty());
    }

    /// A property whose evaluation panics (as a broken Peer's accessor does) gives the
    /// panic's message, not a crashed checker; one that does not gives its verdict.
    #[test]
    fn a_panic_while_evaluating_a_property_is_an_error_with_its_message() {
        fn broken(_: &RaftModel, state: &RaftState) -> bool {
            let servers = state.actor_states.len();
            let log: &[u64] = &[];
            log[servers] == 0
        }
        let property = NamedProperty {
            name: "Broken",
            expectation: Expect::Always,
            description: "panics",
            condition: broken,
            reads_network: false,
        };
        let model = super::super::ModelConfig::default().into_model();
        let state = model.init_states().remove(0);
        let err = property
            .holds(&model, &state)
            .expect_err("the evaluation panics");
        assert!(err.contains("index out of bounds"), "{err}");
        assert_eq!(ALL[0].holds(&model, &state), Ok(true));
    }

    /// A leader's match index of a follower still in its term is at most what that follower
    /// stores of the leader's log: a match index the follower never acknowledged is a
    /// violation of FlowControlWindow; one a newer leader took the entries from is not.
    #[test]
    fn a_match_index_past_what_a_follower_of_its_term_stores_breaks_flow_control_window() {
        use crate::peer::{log_of_terms, Config, Durable, Entry, Message, Peer, Timer};
        use std::sync::Arc;
        let model = super::super::ModelConfig::default().into_model();
        let mut state = model.init_states().remove(0);
        let peer = |id: u64, term: u64, log: Vec<Entry<super::super::Value>>| {
            Peer::restore(
                Config::new(id, vec![0, 1, 2]),
                Durable {
                    term,
                    voted_for: None,
                    log,
                },
            )
            .expect("a valid durable state")
            .0
        };
        let set = |state: &mut RaftState, i: usize, peer: Peer<super::super::Value, _>| {
            let mut node = (*state.actor_states[i]).clone();
            if let super::super::actor::NodeState::Server(server) = &mut node {
                server.peer = peer;
            }
            state.actor_states[i] = Arc::new(node);
        };
        // Server 0 leads term 3 with the log [1, 1, 2, 3] (its blank entry last), and server 1
        // acknowledged all four entries.
        let mut leader = peer(0, 2, log_of_terms(&[1, 1, 2]));
        leader.handle_timeout(Timer::Election);
        let vote = Message::RequestVoteResponse {
            term: 3,
            granted: true,
        };
        leader.handle_message(1, vote).expect("a vote");
        let ack = Message::AppendEntriesResponse {
            term: 3,
            success: true,
            index: 4,
        };
        leader.handle_message(1, ack).expect("an ack");
        let full = leader.log().to_vec();
        set(&mut state, 0, leader);
        set(&mut state, 1, peer(1, 3, full.clone()));
        set(&mut state, 2, peer(2, 3, log_of_terms(&[1, 1, 2])));
        assert!(flow_control_window(&model, &state));
        // Server 1, in the leader's term, lacks the blank entry it is said to store.
        set(&mut state, 1, peer(1, 3, full[..3].to_vec()));
        assert!(!flow_control_window(&model, &state));
        // ... or holds another entry of the same term in its place.
        let mut other = full.clone();
        other[3].command = Some(7);
        set(&mut state, 1, peer(1, 3, other));
        assert!(!flow_control_window(&model, &state));
        // In a newer term, a newer leader may have replaced them.
        set(&mut state, 1, peer(1, 4, full[..3].to_vec()));
        assert!(flow_control_window(&model, &state));
    }
}
