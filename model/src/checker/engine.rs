//! rdb's own search over the stateright model: breadth first, level by level, on several
//! threads, with canonical symmetry reduction.
//!
//! stateright supplies the model (actors, network, crashes, timers) and the explorer; this
//! module supplies the search, because the checker needs three things stateright's searches do
//! not combine:
//!
//! - **Shortest counterexamples with symmetry.** Breadth-first order finds every violation at
//!   the least depth at which it exists, and servers are interchangeable, so one
//!   representative of each permutation of server ids is explored.
//! - **Reproducible counts.** The representative of a state is canonical (see [`canonical`]):
//!   every permutation of one state has the same representative, so a complete run visits the
//!   same set of representatives whatever the thread interleaving, and reports the same count.
//! - **Cheap properties.** Once a Sometimes property has an example it is not evaluated again.
//!
//! The visited set maps each representative's fingerprint to its parent's. A discovery is
//! turned back into a path by replaying the model from its initial state, choosing at each step
//! an action whose successor has the next fingerprint on the chain.

use super::actor::{NodeState, ServerState};
use super::properties::{self, Expect};
use super::{RaftModel, RaftState};
use crate::peer::{Role, RoleKind};
use dashmap::DashMap;
use stateright::actor::{ActorModelAction, ActorModelState, Id};
use stateright::{Model, Path, RewritePlan};
use std::collections::BTreeMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A model action.
pub type RaftAction = ActorModelAction<super::ModelMsg, crate::Timer, Id>;

/// A 64-bit fingerprint of a state. Zero is reserved for "no parent".
pub type Fingerprint = u64;

/// The fingerprint of a state: a fixed-seed hash, the same on every run and machine.
pub fn fingerprint(state: &RaftState) -> Fingerprint {
    let hasher = ahash::RandomState::with_seeds(
        0x243F_6A88_85A3_08D3,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    );
    hasher.hash_one(state).max(1)
}

/// A hasher for keys that are fingerprints already.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Visited = DashMap<Fingerprint, Fingerprint, BuildHasherDefault<IdentityHasher>>;

/// What one search found.
pub struct Outcome {
    /// Every reachable state within the bounds was explored.
    pub complete: bool,
    /// Distinct states (representatives when symmetry is on).
    pub unique_states: usize,
    /// States generated, duplicates included.
    pub states: usize,
    /// The deepest level reached (the initial state is depth 1).
    pub max_depth: usize,
    /// For each property with a discovery, the shortest path to it.
    pub discoveries: BTreeMap<&'static str, Path<RaftState, RaftAction>>,
}

/// How a search runs.
pub struct Search<'a> {
    /// The model.
    pub model: &'a RaftModel,
    /// Explore one representative per permutation of server ids.
    pub symmetry: bool,
    /// Worker threads.
    pub threads: usize,
    /// Stop after the level at which the first Always property is violated.
    pub stop_on_violation: bool,
    /// Stop (incomplete) once this many distinct states are known.
    pub max_states: Option<usize>,
    /// How often to report progress.
    pub interval: Duration,
}

/// Progress counters shared by the workers.
struct Shared<'a> {
    visited: Visited,
    generated: AtomicUsize,
    found: Vec<AtomicBool>,
    discoveries: Mutex<BTreeMap<&'static str, (usize, Fingerprint)>>,
    violated: AtomicBool,
    model: &'a RaftModel,
    symmetry: bool,
}

impl Search<'_> {
    /// Runs the search to completion (or to the first violation, or the state limit).
    pub fn run(&self, progress: &mut dyn FnMut(usize, usize, usize)) -> Outcome {
        let shared = Shared {
            visited: Visited::default(),
            generated: AtomicUsize::new(0),
            found: properties::ALL
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
            discoveries: Mutex::new(BTreeMap::new()),
            violated: AtomicBool::new(false),
            model: self.model,
            symmetry: self.symmetry,
        };
        let mut frontier: Vec<(RaftState, Fingerprint)> = Vec::new();
        for state in self.model.init_states() {
            if !self.model.within_boundary(&state) {
                continue;
            }
            let state = shared.representative(&state);
            let fp = fingerprint(&state);
            if shared.visited.insert(fp, 0).is_none() {
                frontier.push((state, fp));
            }
        }
        let mut depth = 0;
        let mut complete = true;
        let mut last_report = Instant::now();
        while !frontier.is_empty() {
            depth += 1;
            let next = self.level(&shared, &frontier, depth, &mut last_report, progress);
            frontier = next;
            if self.stop_on_violation && shared.violated.load(Ordering::Relaxed) {
                complete = frontier.is_empty();
                break;
            }
            if self
                .max_states
                .is_some_and(|max| shared.visited.len() >= max)
            {
                complete = frontier.is_empty();
                break;
            }
        }
        let discoveries = shared
            .discoveries
            .lock()
            .expect("no worker panicked")
            .iter()
            .map(|(name, (_, fp))| (*name, shared.path_to(*fp)))
            .collect();
        Outcome {
            complete,
            unique_states: shared.visited.len(),
            states: shared.generated.load(Ordering::Relaxed),
            max_depth: depth,
            discoveries,
        }
    }

    /// Checks every state of one level and returns the next level's new states.
    fn level(
        &self,
        shared: &Shared,
        frontier: &[(RaftState, Fingerprint)],
        depth: usize,
        last_report: &mut Instant,
        progress: &mut dyn FnMut(usize, usize, usize),
    ) -> Vec<(RaftState, Fingerprint)> {
        const CHUNK: usize = 256;
        let cursor = AtomicUsize::new(0);
        let threads = self
            .threads
            .max(1)
            .min(frontier.len().div_ceil(CHUNK).max(1));
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut next = Vec::new();
                        let mut actions = Vec::new();
                        loop {
                            let start = cursor.fetch_add(CHUNK, Ordering::Relaxed);
                            if start >= frontier.len() {
                                break;
                            }
                            let end = (start + CHUNK).min(frontier.len());
                            for (state, fp) in &frontier[start..end] {
                                shared.visit(state, *fp, depth, &mut actions, &mut next);
                            }
                        }
                        next
                    })
                })
                .collect();
            while workers.iter().any(|w| !w.is_finished()) {
                std::thread::sleep(Duration::from_millis(10));
                if last_report.elapsed() >= self.interval {
                    *last_report = Instant::now();
                    progress(
                        shared.visited.len(),
                        shared.generated.load(Ordering::Relaxed),
                        depth,
                    );
                }
            }
            let mut next = Vec::new();
            for worker in workers {
                next.extend(worker.join().expect("a search worker panicked"));
            }
            next
        })
    }
}

impl Shared<'_> {
    fn representative(&self, state: &RaftState) -> RaftState {
        if self.symmetry {
            canonical_if_moved(state).unwrap_or_else(|| state.clone())
        } else {
            state.clone()
        }
    }

    /// Evaluates the properties on `state` and queues its new successors.
    fn visit(
        &self,
        state: &RaftState,
        fp: Fingerprint,
        depth: usize,
        actions: &mut Vec<RaftAction>,
        next: &mut Vec<(RaftState, Fingerprint)>,
    ) {
        for (i, property) in properties::ALL.iter().enumerate() {
            if property.expectation == Expect::Sometimes && self.found[i].load(Ordering::Relaxed) {
                continue;
            }
            let holds = (property.condition)(self.model, state);
            let discovered = match property.expectation {
                Expect::Always => !holds,
                Expect::Sometimes => holds,
            };
            if discovered {
                self.found[i].store(true, Ordering::Relaxed);
                if property.expectation == Expect::Always {
                    self.violated.store(true, Ordering::Relaxed);
                }
                // The shallowest discovery wins; within one level, the least fingerprint, so
                // that the reported path does not depend on thread timing.
                let mut discoveries = self.discoveries.lock().expect("no worker panicked");
                discoveries
                    .entry(property.name)
                    .and_modify(|known| *known = (*known).min((depth, fp)))
                    .or_insert((depth, fp));
            }
        }
        actions.clear();
        self.model.actions(state, actions);
        for action in actions.drain(..) {
            let Some(successor) = self.model.next_state(state, action) else {
                continue;
            };
            if !self.model.within_boundary(&successor) {
                continue;
            }
            self.generated.fetch_add(1, Ordering::Relaxed);
            let successor = if self.symmetry {
                canonical_if_moved(&successor).unwrap_or(successor)
            } else {
                successor
            };
            let successor_fp = fingerprint(&successor);
            if let dashmap::Entry::Vacant(entry) = self.visited.entry(successor_fp) {
                entry.insert(fp);
                next.push((successor, successor_fp));
            }
        }
    }

    /// The path from an initial state to the state with fingerprint `target`.
    fn path_to(&self, target: Fingerprint) -> Path<RaftState, RaftAction> {
        let mut chain = vec![target];
        let mut fp = target;
        while let Some(parent) = self.visited.get(&fp).map(|p| *p) {
            if parent == 0 {
                break;
            }
            chain.push(parent);
            fp = parent;
        }
        chain.reverse();
        let model = self.model;
        let init = model
            .init_states()
            .into_iter()
            .find(|s| fingerprint(&self.representative(s)) == chain[0])
            .expect("the chain starts at an initial state");
        let mut state = init.clone();
        let mut actions = Vec::new();
        for want in &chain[1..] {
            let (action, next) = model
                .next_steps(&state)
                .into_iter()
                .find(|(_, next)| {
                    model.within_boundary(next) && fingerprint(&self.representative(next)) == *want
                })
                .expect("every link of the chain is a step of the model");
            actions.push(action);
            state = next;
        }
        Path::from_actions(model, init, &actions).expect("the replayed actions form a path")
    }
}

// ----- Canonical symmetry reduction -----

/// What a server's state looks like with every server id forgotten: equal for two servers
/// that differ only by a permutation of ids. Part of the key servers are sorted by (see
/// [`server_keys`]); [`canonical`] settles the ties that remain.
#[derive(Hash)]
struct Shape<'a> {
    crashed: bool,
    term: u64,
    vote: u8,
    log: &'a [crate::peer::Entry<super::Value>],
    commit: u64,
    role: RoleKind,
    role_detail: (bool, usize, usize),
    ghost: &'a super::Ghost,
    stored: Option<(u64, u8, &'a [crate::peer::Entry<super::Value>])>,
}

fn vote_shape(vote: Option<u64>, own: u64) -> u8 {
    match vote {
        None => 0,
        Some(id) if id == own => 1,
        Some(_) => 2,
    }
}

fn shape<'a>(state: &'a RaftState, index: usize, server: &'a ServerState) -> Shape<'a> {
    let peer = &server.peer;
    let own = peer.id();
    let role_detail = match peer.role() {
        Role::Follower { leader } => (leader.is_some(), 0, 0),
        Role::Candidate { votes } => (false, votes.len(), 0),
        Role::Leader { heard_from, .. } => (true, 0, heard_from.len()),
    };
    Shape {
        crashed: state.crashed[index],
        term: peer.term(),
        vote: vote_shape(peer.voted_for(), own),
        log: peer.log(),
        commit: peer.commit_index(),
        role: peer.role_kind(),
        role_detail,
        ghost: &server.ghost,
        stored: state.actor_storages[index]
            .as_ref()
            .map(|d| (d.term, vote_shape(d.voted_for, own), d.log.as_slice())),
    }
}

fn key_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x9E37_79B9_7F4A_7C15,
        0xBF58_476D_1CE4_E5B9,
        0x94D0_49BB_1331_11EB,
        0x2545_F491_4F6C_DD1D,
    )
}

/// One key per server that does not depend on server ids: its [`Shape`] and armed timers,
/// refined once by its relations to the others (whom it voted for, follows, counts votes from,
/// tracks progress of, has heard from, and the messages in flight between them), each other
/// server named by its own shape rather than its id. Servers that still share a key are
/// almost always interchangeable.
fn server_keys(state: &RaftState, servers: &[(usize, &ServerState)]) -> Vec<u64> {
    let hasher = key_hasher();
    let base: Vec<u64> = servers
        .iter()
        .map(|(i, server)| {
            let timers: u8 = state.timers_set[*i]
                .iter()
                .map(|timer| match timer {
                    crate::peer::Timer::Election => 1,
                    crate::peer::Timer::Heartbeat => 2,
                })
                .sum();
            hasher.hash_one((shape(state, *i, server), timers))
        })
        .collect();
    let n = servers.len();
    // Clients keep their ids, so a client is named by its index.
    let name = |actor: usize| base.get(actor).copied().unwrap_or(actor as u64);
    let mut relations: Vec<Vec<(u64, u64)>> = vec![Vec::new(); n];
    for (i, server) in servers {
        let peer = &server.peer;
        let mut relate = |what: u64, other: u64| relations[*i].push((what, name(other as usize)));
        if let Some(vote) = peer.voted_for() {
            relate(1, vote);
        }
        if let Some(vote) = state.actor_storages[*i].as_ref().and_then(|d| d.voted_for) {
            relate(2, vote);
        }
        match peer.role() {
            Role::Follower {
                leader: Some(leader),
            } => relate(3, *leader),
            Role::Follower { leader: None } => {}
            Role::Candidate { votes } => votes.iter().for_each(|v| relate(4, *v)),
            Role::Leader {
                progress,
                heard_from,
            } => {
                for (other, p) in progress {
                    relate(hasher.hash_one((5u8, p.next, p.matched)), *other);
                }
                heard_from.iter().for_each(|h| relate(6, *h));
            }
        }
    }
    let ordered = matches!(state.network, stateright::actor::Network::Ordered(_));
    let mut flows: BTreeMap<(usize, usize), Vec<u64>> = BTreeMap::new();
    for envelope in state.network.iter_all() {
        flows
            .entry((usize::from(envelope.src), usize::from(envelope.dst)))
            .or_default()
            .push(hasher.hash_one(envelope.msg));
    }
    for ((src, dst), mut messages) in flows {
        if !ordered {
            messages.sort_unstable();
        }
        let flow = hasher.hash_one(&messages);
        if src < n {
            relations[src].push((flow ^ 0x5555, name(dst)));
        }
        if dst < n {
            relations[dst].push((flow ^ 0xAAAA, name(src)));
        }
    }
    (0..n)
        .map(|i| {
            relations[i].sort_unstable();
            hasher.hash_one((base[i], &relations[i]))
        })
        .collect()
}

/// The canonical representative of `state` under permutations of server ids. Servers are
/// sorted by their [`server_keys`]; servers with equal keys are tied, and among the orders
/// that the ties allow, the one whose rewritten state has the least fingerprint is chosen.
/// Both steps depend only on the state up to permutation, so every permutation of a state has the
/// same representative. Clients keep their ids.
pub fn canonical(state: &RaftState) -> RaftState {
    canonical_if_moved(state).unwrap_or_else(|| state.clone())
}

/// [`canonical`], or `None` when `state` is its own representative (its servers are already
/// in canonical order with no ties), which spares a copy: successors of a canonical state
/// often are.
fn canonical_if_moved(state: &RaftState) -> Option<RaftState> {
    let servers: Vec<(usize, &ServerState)> = state
        .actor_states
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &**s {
            NodeState::Server(server) => Some((i, server)),
            NodeState::Client(_) => None,
        })
        .collect();
    let mut order: Vec<usize> = (0..servers.len()).collect();
    let keys = server_keys(state, &servers);
    order.sort_by_key(|&i| keys[i]);
    // Runs of equal keys in sorted order.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for k in 1..=order.len() {
        if k == order.len() || keys[order[k]] != keys[order[start]] {
            if k - start > 1 {
                groups.push((start, k));
            }
            start = k;
        }
    }
    let actors = state.actor_states.len();
    let rewrite = |order: &[usize]| -> RaftState {
        // positions[actor] = the actor's new index.
        let mut positions: Vec<usize> = (0..actors).collect();
        for (new, &old) in order.iter().enumerate() {
            positions[servers[old].0] = new;
        }
        let plan = RewritePlan::<Id, _>::from_values_to_sort(&positions);
        ActorModelState {
            actor_states: plan.reindex(&state.actor_states),
            network: stateright::Rewrite::rewrite(&state.network, &plan),
            timers_set: plan.reindex(&state.timers_set),
            random_choices: plan.reindex(&state.random_choices),
            crashed: plan.reindex(&state.crashed),
            actor_storages: plan.reindex(&state.actor_storages),
            history: (),
        }
    };
    if groups.is_empty() {
        if order.iter().enumerate().all(|(new, &old)| new == old) {
            return None;
        }
        return Some(rewrite(&order));
    }
    let mut best: Option<(Fingerprint, RaftState)> = None;
    for_each_tie_order(&mut order, &groups, 0, &mut |candidate| {
        let rewritten = rewrite(candidate);
        let fp = fingerprint(&rewritten);
        if best.as_ref().is_none_or(|(known, _)| fp < *known) {
            best = Some((fp, rewritten));
        }
    });
    best.map(|(_, state)| state)
}

/// Calls `f` with every order obtained from `order` by permuting the members of each group.
fn for_each_tie_order(
    order: &mut Vec<usize>,
    groups: &[(usize, usize)],
    group: usize,
    f: &mut dyn FnMut(&[usize]),
) {
    let Some(&(start, end)) = groups.get(group) else {
        f(order);
        return;
    };
    permute(order, start, end, &mut |order| {
        for_each_tie_order(order, groups, group + 1, f)
    });
}

/// Calls `f` with every permutation of `order[k..end]`, the rest of `order` fixed.
fn permute(order: &mut Vec<usize>, k: usize, end: usize, f: &mut dyn FnMut(&mut Vec<usize>)) {
    if k + 1 >= end {
        f(order);
        return;
    }
    for i in k..end {
        order.swap(k, i);
        permute(order, k + 1, end, f);
        order.swap(k, i);
    }
}
