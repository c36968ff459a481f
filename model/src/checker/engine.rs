//! rdb's own search over the stateright model: breadth first, level by level, on several
//! threads, with canonical symmetry reduction.
//!
//! stateright supplies the model (actors, network, crashes, timers) and the explorer; this
//! module supplies the search, because the checker needs four things stateright's searches do
//! not combine:
//!
//! - **Shortest counterexamples with symmetry.** Breadth-first order finds every violation at
//!   the least depth at which it exists, and servers are interchangeable, so one
//!   representative of each permutation of server ids is explored.
//! - **Reproducible counts.** The fingerprint of a state is that of its canonical
//!   representative (see [`canonical`]): every permutation of one state has the same
//!   fingerprint, so a complete run visits the same set of classes whatever the thread
//!   interleaving, and reports the same count. The state explored is the first member of its
//!   class reached, not the representative: the model is symmetric, so every member has
//!   successors in the same classes, and no copy of the state is made to relabel it.
//! - **Cheap properties.** Once a Sometimes property has an example it is not evaluated again.
//! - **Few copies.** A successor is made in its parent, in place, and undone after its
//!   fingerprint is known (see [`step`]); only a new one is copied, and what a server does on
//!   a delivery or a timer is computed once per worker for each of its states.
//!
//! The visited set maps each representative's fingerprint to its parent's. A discovery is
//! turned back into a path by replaying the model from its initial state, choosing at each step
//! an action whose successor has the next fingerprint on the chain.

use super::actor::{NodeState, ServerState};
use super::properties::{self, Expect};
use super::step;
use super::{RaftModel, RaftState};
use crate::peer::{Progress, Role, RoleKind};
use dashmap::DashMap;
use stateright::actor::{ActorModelAction, ActorModelState, Id};
use stateright::{Model, Path, RewritePlan};
use std::collections::BTreeMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A model action.
pub type RaftAction = ActorModelAction<super::ModelMsg, crate::Timer, Id>;

/// A 64-bit fingerprint of a state. Zero is reserved for "no parent".
pub type Fingerprint = u64;

/// The fingerprint of a state: a fixed-seed hash, the same on every run and machine.
pub fn fingerprint(state: &RaftState) -> Fingerprint {
    let identity: Vec<usize> = (0..state.actor_states.len()).collect();
    relabelled_fingerprint(state, &identity)
}

/// A hasher for keys that are fingerprints (or other hashes) already.
#[derive(Default)]
pub(super) struct IdentityHasher(u64);

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
    /// The watchdog: how long one state's expansion may take before the search is declared
    /// stuck, and what to do with the stuck step (print it) before the process exits with
    /// status 1. `None`: no watchdog.
    pub stall: Option<(Duration, &'a dyn Fn(Stall))>,
}

/// A step that did not return: a Peer that loops or waits forever in one step would
/// otherwise stall the search without a word.
pub struct Stall {
    /// The path to the state whose expansion stalled (it ends in that state, or in another
    /// member of its class of symmetric states).
    pub path: Path<RaftState, RaftAction>,
    /// The actions of the path's last state that did not return when tried again (none when
    /// it was the properties' judgment of the state that did not end).
    pub actions: Vec<RaftAction>,
    /// The worker was judging the state's properties, not taking one of its actions.
    pub judging: bool,
    /// How long the worker had been on that state when it was declared stuck.
    pub waited: Duration,
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
    /// One per worker, read by the watchdog.
    beats: Vec<Beat>,
}

/// What one worker is doing, for the watchdog. Written with relaxed stores by its worker
/// alone (one cache line each, so that workers do not share one), read by the main thread.
#[derive(Default)]
#[repr(align(64))]
pub(super) struct Beat {
    /// Bumped each time the worker starts on a state or on one of its actions.
    ticks: AtomicU64,
    /// The fingerprint of the state being expanded; 0 while the worker has no state.
    state: AtomicU64,
    /// The index of the action being taken, [`Beat::JUDGING`] while the state's properties
    /// are judged.
    action: AtomicUsize,
}

impl Beat {
    const JUDGING: usize = usize::MAX;

    pub(super) fn start(&self, ticks: &mut u64, state: Fingerprint, action: usize) {
        *ticks += 1;
        self.state.store(state, Ordering::Relaxed);
        self.action.store(action, Ordering::Relaxed);
        self.ticks.store(*ticks, Ordering::Relaxed);
    }

    pub(super) fn idle(&self) {
        self.state.store(0, Ordering::Relaxed);
    }
}

/// The main thread's view of the workers' beats: a worker whose beat has not moved for the
/// budget while it holds a state is stuck in it.
pub(super) struct Watchdog {
    budget: Duration,
    /// Per worker: the ticks last seen and when they were first seen.
    seen: Vec<(u64, Instant)>,
}

/// A worker stuck in one state: its fingerprint, the action being taken (or
/// [`Beat::JUDGING`]), and for how long.
#[derive(Debug, PartialEq)]
pub(super) struct Stuck {
    pub(super) state: Fingerprint,
    pub(super) action: usize,
    pub(super) waited: Duration,
}

impl Watchdog {
    pub(super) fn new(budget: Duration, workers: usize, now: Instant) -> Self {
        Watchdog {
            budget,
            seen: vec![(0, now); workers],
        }
    }

    /// The first worker stuck at `now`, if any.
    pub(super) fn stuck(&mut self, beats: &[Beat], now: Instant) -> Option<Stuck> {
        for (beat, seen) in beats.iter().zip(&mut self.seen) {
            let ticks = beat.ticks.load(Ordering::Relaxed);
            let state = beat.state.load(Ordering::Relaxed);
            if state == 0 || ticks != seen.0 {
                *seen = (ticks, now);
                continue;
            }
            let waited = now.saturating_duration_since(seen.1);
            if waited >= self.budget {
                return Some(Stuck {
                    state,
                    action: beat.action.load(Ordering::Relaxed),
                    waited,
                });
            }
        }
        None
    }
}

/// Which of `actions` do not return within `wait` when `run` is called on each, every one on
/// a thread of its own (a stuck one is left behind: the process is about to exit).
pub(super) fn not_returning<A, F>(actions: Vec<A>, wait: Duration, run: F) -> Vec<A>
where
    A: Clone + Send + 'static,
    F: Fn(A) + Clone + Send + 'static,
{
    let (sender, returned) = std::sync::mpsc::channel::<usize>();
    for (i, action) in actions.iter().enumerate() {
        let (sender, run, action) = (sender.clone(), run.clone(), action.clone());
        std::thread::spawn(move || {
            // A panic is a return as far as stalling goes (the search reports panics).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(action)));
            let _ = sender.send(i);
        });
    }
    drop(sender);
    let deadline = Instant::now() + wait;
    let mut done = vec![false; actions.len()];
    while done.iter().any(|d| !d) {
        let left = deadline.saturating_duration_since(Instant::now());
        match returned.recv_timeout(left) {
            Ok(i) => done[i] = true,
            Err(_) => break,
        }
    }
    actions
        .into_iter()
        .zip(done)
        .filter(|(_, done)| !done)
        .map(|(action, _)| action)
        .collect()
}

impl Search<'_> {
    /// Runs the search to completion (or to the first violation, or the state limit).
    pub fn run(&self, progress: &mut dyn FnMut(usize, usize, usize)) -> Outcome {
        let shared = Shared {
            // More shards than dashmap picks for two cores: fewer workers wait on one lock.
            visited: Visited::with_capacity_and_hasher_and_shard_amount(
                1 << 20,
                BuildHasherDefault::default(),
                64,
            ),
            generated: AtomicUsize::new(0),
            found: properties::ALL
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
            discoveries: Mutex::new(BTreeMap::new()),
            violated: AtomicBool::new(false),
            model: self.model,
            symmetry: self.symmetry,
            beats: (0..self.threads.max(1)).map(|_| Beat::default()).collect(),
        };
        // A level is a list of chunks. Each worker takes a chunk, expands its states and frees
        // it at once, so a level's memory is returned while the next level is being built
        // (the peak is about one level, not two), and it is the workers' own allocator heaps
        // that get it back.
        let mut frontier: Vec<Chunk> = Vec::new();
        let mut first: Chunk = Vec::new();
        for state in self.model.init_states() {
            if !self.model.within_boundary(&state) {
                continue;
            }
            let fp = shared.fingerprint_of(&state);
            if shared.visited.insert(fp, 0).is_none() {
                first.push((state, fp));
            }
        }
        if !first.is_empty() {
            frontier.push(first);
        }
        let mut depth = 0;
        let mut complete = true;
        let mut last_report = Instant::now();
        let threads = self.threads.max(1);
        // The depth of the level being worked on (0 before the first), or `None` at the end.
        let level: Mutex<Option<usize>> = Mutex::new(Some(0));
        let started = std::sync::Condvar::new();
        let current: Mutex<Vec<Chunk>> = Mutex::new(Vec::new());
        let produced: Mutex<Vec<Chunk>> = Mutex::new(Vec::new());
        let (finished, done) = std::sync::mpsc::channel::<()>();
        let mut watchdog = self
            .stall
            .map(|(budget, _)| Watchdog::new(budget, threads, Instant::now()));
        std::thread::scope(|scope| {
            let mut workers = Vec::new();
            for worker in 0..threads {
                let finished = finished.clone();
                let (shared, level, started, current, produced) =
                    (&shared, &level, &started, &current, &produced);
                workers.push(scope.spawn(move || {
                    let mut seen = 0;
                    let mut scratch = Scratch::default();
                    loop {
                        // Wait for a level this worker has not worked on yet (or the end).
                        let depth = {
                            let mut slot = level.lock().expect("no worker panicked");
                            loop {
                                match *slot {
                                    None => return,
                                    Some(depth) if depth > seen => break depth,
                                    Some(_) => {
                                        slot = started.wait(slot).expect("no worker panicked")
                                    }
                                }
                            }
                        };
                        seen = depth;
                        let mut next: Chunk = Vec::with_capacity(CHUNK);
                        loop {
                            let chunk = current.lock().expect("no worker panicked").pop();
                            let Some(chunk) = chunk else { break };
                            // Counted here and added once per chunk: one shared counter
                            // bumped for every successor is a cache line the cores fight
                            // over.
                            scratch.generated = 0;
                            for (mut state, fp) in chunk {
                                shared.visit(
                                    &mut state,
                                    fp,
                                    depth,
                                    worker,
                                    &mut scratch,
                                    &mut next,
                                );
                                if next.len() >= CHUNK {
                                    let full =
                                        std::mem::replace(&mut next, Vec::with_capacity(CHUNK));
                                    produced.lock().expect("no worker panicked").push(full);
                                }
                            }
                            shared
                                .generated
                                .fetch_add(scratch.generated, Ordering::Relaxed);
                        }
                        shared.beats[worker].idle();
                        if !next.is_empty() {
                            produced.lock().expect("no worker panicked").push(next);
                        }
                        if finished.send(()).is_err() {
                            return;
                        }
                    }
                }));
            }
            while !frontier.is_empty() {
                depth += 1;
                *current.lock().expect("no worker panicked") = std::mem::take(&mut frontier);
                *level.lock().expect("no worker panicked") = Some(depth);
                started.notify_all();
                let mut pending = threads;
                while pending > 0 {
                    match done.recv_timeout(Duration::from_millis(10)) {
                        Ok(()) => pending -= 1,
                        Err(_) => {
                            // A worker that ended while the level runs has panicked.
                            if let Some(k) = workers.iter().position(|w| w.is_finished()) {
                                // The others end too (after their current chunk), rather than
                                // wait for a level that never comes.
                                *level.lock().unwrap_or_else(|e| e.into_inner()) = None;
                                started.notify_all();
                                if let Err(panic) = workers.swap_remove(k).join() {
                                    std::panic::resume_unwind(panic);
                                }
                                panic!("a search worker stopped before the level ended");
                            }
                        }
                    }
                    if let Some(stuck) = watchdog
                        .as_mut()
                        .and_then(|w| w.stuck(&shared.beats, Instant::now()))
                    {
                        let (budget, report) = self.stall.expect("a watchdog has a report");
                        report(shared.stall(stuck, budget));
                        // The stuck worker cannot be stopped, nor this scope left without it.
                        std::process::exit(1);
                    }
                    if last_report.elapsed() >= self.interval {
                        last_report = Instant::now();
                        progress(
                            shared.visited.len(),
                            shared.generated.load(Ordering::Relaxed),
                            depth,
                        );
                    }
                }
                frontier = std::mem::take(&mut *produced.lock().expect("no worker panicked"));
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
            *level.lock().expect("no worker panicked") = None;
            started.notify_all();
        });
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
}

/// States of one level, expanded and freed together by one worker.
type Chunk = Vec<(RaftState, Fingerprint)>;

/// A worker's own: the actions of the state being expanded, its memo of handlers' results,
/// the properties' verdicts it knows, and the states it generated in the current chunk.
#[derive(Default)]
struct Scratch {
    actions: Vec<RaftAction>,
    memo: step::Memo,
    verdicts: Verdicts,
    generated: usize,
    /// The worker's beat count (see [`Beat`]).
    ticks: u64,
}

/// What the properties that read no message in flight discovered in states already judged,
/// by their servers: most states share their servers with many others and differ only in the
/// messages in flight (the handler memo even shares the very server states between them). A
/// state's servers are known again only when they are equal server states, storage and crash
/// marks (compared as pointers first, then by content; the entry keeps its states alive), so
/// a verdict is never taken from other servers. Emptied when it holds [`Verdicts::LIMIT`].
#[derive(Default)]
struct Verdicts {
    /// A bucket keeps its first entry in the table itself: a lookup costs one miss, not two.
    known: std::collections::HashMap<
        u64,
        smallvec::SmallVec<[Judged; 1]>,
        BuildHasherDefault<IdentityHasher>,
    >,
    len: usize,
}

/// A few servers, inline (the default suite's three; more spill to the heap).
type Servers<T> = smallvec::SmallVec<[T; 3]>;

/// The servers of a judged state and what the properties discovered in it, kept small: the
/// table is far larger than the caches, and each lookup reads one entry. Only the servers are
/// kept: they are the model's first actors, and the properties read no other actor.
struct Judged {
    actors: Servers<Arc<NodeState>>,
    storages: Servers<Option<super::actor::Stored>>,
    /// Which servers are crashed, one bit each (see [`crash_marks`]).
    crashed: u64,
    /// The properties discovered, one bit each, by their index in [`properties::ALL`].
    discovered: u32,
}

// A property's verdict is one bit of `Judged::discovered`.
const _: () = assert!(properties::ALL.len() <= 32);

/// The crash marks of `state`'s first `servers` actors as bits, or `None` when there are too
/// many for a word (never in this model: then the verdicts are not remembered).
fn crash_marks(state: &RaftState, servers: usize) -> Option<u64> {
    (servers <= 64).then(|| {
        state
            .crashed
            .iter()
            .take(servers)
            .enumerate()
            .fold(0, |marks, (i, &crashed)| marks | (u64::from(crashed) << i))
    })
}

/// The indices of the properties set in `bits`, in report order.
fn discovered_of(bits: u32) -> smallvec::SmallVec<[usize; 2]> {
    (0..properties::ALL.len())
        .filter(|i| bits & (1 << i) != 0)
        .collect()
}

impl Judged {
    /// Whether `state`'s first servers (`self.actors.len()` of them) are the judged ones.
    fn is_of(&self, state: &RaftState, crashed: u64) -> bool {
        self.crashed == crashed
            && self.actors.len() <= state.actor_states.len()
            && self
                .actors
                .iter()
                .zip(&state.actor_states)
                .all(|(a, b)| Arc::ptr_eq(a, b) || a.server() == b.server())
            && self.storages.len() <= state.actor_storages.len()
            && self
                .storages
                .iter()
                .zip(&state.actor_storages)
                .all(|(a, b)| match (a, b) {
                    (None, None) => true,
                    (Some(a), Some(b)) => same_storage(a, b),
                    _ => false,
                })
    }
}

impl Verdicts {
    /// Entries kept at most.
    const LIMIT: usize = 1 << 18;

    /// A hash of the first `servers` actors' states, storage and crash marks (what the
    /// remembered properties read), from hashes the server states remember.
    fn key(state: &RaftState, servers: usize) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = key_hasher().build_hasher();
        for (actor, storage) in state
            .actor_states
            .iter()
            .zip(&state.actor_storages)
            .take(servers)
        {
            let Some(server) = actor.server() else {
                continue;
            };
            actor.memo_hash().hash(&mut h);
            // Storage is almost always the copy the server keeps, which its hash covers.
            match storage {
                None => 0u8.hash(&mut h),
                Some(stored) if same_storage(stored, &server.stored) => 1u8.hash(&mut h),
                Some(stored) => (2u8, &**stored).hash(&mut h),
            }
        }
        crash_marks(state, servers).hash(&mut h);
        h.finish()
    }

    /// What the server-only properties discovered in a state with `state`'s servers, if known
    /// (as bits, see [`Judged::discovered`]).
    fn get(&self, key: u64, state: &RaftState, servers: usize) -> Option<u32> {
        let crashed = crash_marks(state, servers)?;
        self.known
            .get(&key)?
            .iter()
            .find(|judged| judged.is_of(state, crashed))
            .map(|judged| judged.discovered)
    }

    fn remember(&mut self, key: u64, state: &RaftState, servers: usize, discovered: &[usize]) {
        let Some(crashed) = crash_marks(state, servers) else {
            return;
        };
        if self.len >= Self::LIMIT {
            self.known.clear();
            self.len = 0;
        }
        self.len += 1;
        self.known.entry(key).or_default().push(Judged {
            actors: state.actor_states.iter().take(servers).cloned().collect(),
            storages: state.actor_storages.iter().take(servers).cloned().collect(),
            crashed,
            discovered: discovered.iter().fold(0, |bits, i| bits | (1 << i)),
        });
    }
}

/// Whether two stored states are equal: almost always the very same one, shared.
fn same_storage(a: &super::actor::Stored, b: &super::actor::Stored) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// States a worker takes from the frontier at a time.
const CHUNK: usize = 1024;

impl Shared<'_> {
    /// The fingerprint of `state`'s representative (of `state` itself without symmetry
    /// reduction). The state itself is what gets explored: the model is symmetric, so any
    /// member of a class of states has successors of the same classes, and building the
    /// representative would only cost a copy of every server.
    fn fingerprint_of(&self, state: &RaftState) -> Fingerprint {
        if self.symmetry {
            canonical_fingerprint(state).0
        } else {
            fingerprint(state)
        }
    }

    /// Evaluates the properties on `state` and queues its new successors. Each successor is
    /// made in `state` itself and undone again (see [`step`]); only a new one is copied.
    fn visit(
        &self,
        state: &mut RaftState,
        fp: Fingerprint,
        depth: usize,
        worker: usize,
        scratch: &mut Scratch,
        next: &mut Vec<(RaftState, Fingerprint)>,
    ) {
        let Scratch {
            actions,
            memo,
            verdicts,
            generated,
            ticks,
        } = scratch;
        let beat = &self.beats[worker];
        beat.start(ticks, fp, Beat::JUDGING);
        let found = |i: usize| {
            properties::ALL[i].expectation == Expect::Sometimes
                && self.found[i].load(Ordering::Relaxed)
        };
        // The properties that read only the servers: remembered by the servers.
        for i in self.server_discoveries(state, verdicts) {
            if !found(i) {
                self.discover(i, depth, fp);
            }
        }
        // The others, in every state.
        properties::discoveries(
            self.model,
            state,
            |i| !properties::ALL[i].reads_network || found(i),
            |i| self.discover(i, depth, fp),
        );
        actions.clear();
        self.model.actions(state, actions);
        // A successor with more messages in flight than the bounds allow is made without its
        // network (`step::Applied::Crowded`), as long as no safety property reads the network.
        let crowd = (!properties::ALWAYS_READS_NETWORK)
            .then(|| (state.network.len(), self.model.cfg.max_in_flight));
        for (k, action) in actions.drain(..).enumerate() {
            beat.start(ticks, fp, k);
            match step::apply(self.model, memo, state, action, crowd) {
                step::Applied::Disabled => {}
                step::Applied::Crowded(undo, _) if undo.servers_unchanged(state) => {
                    // The servers are this state's, judged above: nothing new to find.
                    step::undo(state, undo);
                }
                step::Applied::Crowded(undo, action) => {
                    let violated = self.violated_by_servers(state, verdicts);
                    step::undo(state, undo);
                    if !violated.is_empty() {
                        // Rare: the successor is made in full, to be recorded.
                        if let step::Applied::Done(undo) =
                            step::apply(self.model, memo, state, action, None)
                        {
                            self.record_beyond(state, fp, depth + 1, violated);
                            step::undo(state, undo);
                        }
                    }
                }
                step::Applied::Done(undo) => {
                    if let Some(successor_fp) = self.admit(state, fp, depth, generated, verdicts) {
                        next.push((state.clone(), successor_fp));
                    }
                    step::undo(state, undo);
                }
                step::Applied::Elsewhere(action) => {
                    if let Some(successor) = self.model.next_state(state, action) {
                        if let Some(successor_fp) =
                            self.admit(&successor, fp, depth, generated, verdicts)
                        {
                            next.push((successor, successor_fp));
                        }
                    }
                }
            }
        }
    }

    /// Judges a successor beyond the bounds; records a successor within them, and returns its
    /// fingerprint, if it is new.
    fn admit(
        &self,
        successor: &RaftState,
        parent: Fingerprint,
        depth: usize,
        generated: &mut usize,
        verdicts: &mut Verdicts,
    ) -> Option<Fingerprint> {
        if !self.model.within_boundary(successor) {
            self.beyond_boundary(successor, parent, depth + 1, verdicts);
            return None;
        }
        *generated += 1;
        let successor_fp = self.fingerprint_of(successor);
        match self.visited.entry(successor_fp) {
            dashmap::Entry::Vacant(entry) => {
                entry.insert(parent);
                Some(successor_fp)
            }
            dashmap::Entry::Occupied(_) => None,
        }
    }

    /// Records a discovery of `properties::ALL[i]` in the state `fp` at `depth`.
    fn discover(&self, i: usize, depth: usize, fp: Fingerprint) {
        let property = &properties::ALL[i];
        self.found[i].store(true, Ordering::Relaxed);
        if property.expectation == Expect::Always {
            self.violated.store(true, Ordering::Relaxed);
        }
        // The shallowest discovery wins; within one level, the least fingerprint, so that the
        // reported path does not depend on thread timing.
        let mut discoveries = self.discoveries.lock().expect("no worker panicked");
        discoveries
            .entry(property.name)
            .and_modify(|known| *known = (*known).min((depth, fp)))
            .or_insert((depth, fp));
    }

    /// A successor beyond the bounds is not explored, but a step that breaks a safety
    /// property on the way out of the bounds (a term that wraps past `--max-term`, say) is
    /// still a violation: it is recorded with its parent, and reported like any other.
    fn beyond_boundary(
        &self,
        successor: &RaftState,
        parent: Fingerprint,
        depth: usize,
        verdicts: &mut Verdicts,
    ) {
        let mut violated = self.violated_by_servers(successor, verdicts);
        if properties::ALWAYS_READS_NETWORK {
            properties::discoveries(
                self.model,
                successor,
                |i| {
                    !properties::ALL[i].reads_network
                        || properties::ALL[i].expectation != Expect::Always
                },
                |i| violated.push(i),
            );
        }
        self.record_beyond(successor, parent, depth, violated);
    }

    /// The safety properties that read only the servers (not the network) and do not hold in
    /// `state`: most successors beyond the bounds (one message too many in flight) have servers
    /// judged before.
    fn violated_by_servers(
        &self,
        state: &RaftState,
        verdicts: &mut Verdicts,
    ) -> smallvec::SmallVec<[usize; 2]> {
        let mut violated = self.server_discoveries(state, verdicts);
        violated.retain(|i| properties::ALL[*i].expectation == Expect::Always);
        violated
    }

    /// What the properties that read only the servers discover in `state` (the Sometimes
    /// properties not yet found when judged), from the remembered verdicts where its servers
    /// were judged before, else judged now and remembered.
    fn server_discoveries(
        &self,
        state: &RaftState,
        verdicts: &mut Verdicts,
    ) -> smallvec::SmallVec<[usize; 2]> {
        // The servers are the model's first actors (see `into_model`).
        let servers = self.model.cfg.servers;
        let key = Verdicts::key(state, servers);
        if let Some(known) = verdicts.get(key, state, servers) {
            return discovered_of(known);
        }
        let mut discovered: smallvec::SmallVec<[usize; 2]> = smallvec::SmallVec::new();
        properties::discoveries(
            self.model,
            state,
            |i| {
                properties::ALL[i].reads_network
                    || (properties::ALL[i].expectation == Expect::Sometimes
                        && self.found[i].load(Ordering::Relaxed))
            },
            |i| discovered.push(i),
        );
        verdicts.remember(key, state, servers, &discovered);
        discovered
    }

    /// Records the violations found in a successor beyond the bounds, with its parent.
    fn record_beyond(
        &self,
        successor: &RaftState,
        parent: Fingerprint,
        depth: usize,
        violated: smallvec::SmallVec<[usize; 2]>,
    ) {
        if violated.is_empty() {
            return;
        }
        let fp = self.fingerprint_of(successor);
        self.visited.entry(fp).or_insert(parent);
        for i in violated {
            self.discover(i, depth, fp);
        }
    }

    /// The report of a stuck worker: the path to its state and the actions of that state that
    /// do not return when tried again. The path may end in another member of the stuck
    /// state's class (symmetry), whose action list is in another order: so each action is
    /// tried, on threads of its own, for as long as the budget, rather than named by index.
    fn stall(&self, stuck: Stuck, budget: Duration) -> Stall {
        let path = self.path_to(stuck.state);
        let actions = if stuck.action == Beat::JUDGING {
            Vec::new()
        } else {
            let state = path.last_state().clone();
            let mut actions = Vec::new();
            self.model.actions(&state, &mut actions);
            let config = self.model.cfg.clone();
            not_returning(actions, budget, move |action| {
                let _ = config.clone().into_model().next_state(&state, action);
            })
        };
        Stall {
            path,
            actions,
            judging: stuck.action == Beat::JUDGING,
            waited: stuck.waited,
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
            .find(|s| self.fingerprint_of(s) == chain[0])
            .expect("the chain starts at an initial state");
        let mut state = init.clone();
        let mut actions = Vec::new();
        for want in &chain[1..] {
            let (action, next) = model
                .next_steps(&state)
                .into_iter()
                .find(|(_, next)| self.fingerprint_of(next) == *want)
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
/// [`server_keys`]); [`canonical`] settles the ties that remain. Everything in it is the
/// server's own (its Peer, its history, its storage and a write in progress), so its hash is
/// remembered by the server state: a successor shares all but one server with its parent.
#[derive(Hash)]
struct Shape<'a> {
    term: u64,
    vote: u8,
    log: &'a [crate::peer::Entry<super::Value>],
    commit: u64,
    role: RoleKind,
    role_detail: (bool, usize, usize),
    ghost: &'a super::Ghost,
    stored: (u64, u8, &'a [crate::peer::Entry<super::Value>]),
    busy: u8,
}

fn vote_shape(vote: Option<u64>, own: u64) -> u8 {
    match vote {
        None => 0,
        Some(id) if id == own => 1,
        Some(_) => 2,
    }
}

fn shape(server: &ServerState) -> Shape<'_> {
    let peer = &server.peer;
    let own = peer.id();
    let role_detail = match peer.role() {
        Role::Follower { leader } => (leader.is_some(), 0, 0),
        Role::PreCandidate { votes } | Role::Candidate { votes } => (false, votes.len(), 0),
        Role::Leader {
            heard_from,
            transferee,
            ..
        } => (true, usize::from(transferee.is_some()), heard_from.len()),
    };
    let stored = &server.stored;
    Shape {
        term: peer.term(),
        vote: vote_shape(peer.voted_for(), own),
        log: peer.log(),
        commit: peer.commit_index(),
        role: peer.role_kind(),
        role_detail,
        ghost: &server.ghost,
        stored: (
            stored.term,
            vote_shape(stored.voted_for, own),
            stored.log.as_slice(),
        ),
        // A write in progress, with how many messages wait for it (persistence as a step).
        busy: server
            .pending
            .as_ref()
            .map_or(0, |p| 1 + p.held.len().min(15) as u8),
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
fn server_keys(state: &RaftState, servers: &[(usize, &ServerState)]) -> Small<u64> {
    let hasher = key_hasher();
    let base: Small<u64> = servers
        .iter()
        .map(|(i, server)| {
            let timers: u8 = state.timers_set[*i]
                .iter()
                .map(|timer| match timer {
                    crate::peer::Timer::Election => 1,
                    crate::peer::Timer::Heartbeat => 2,
                })
                .sum();
            let own = server.shape.get_or(0, || hasher.hash_one(shape(server)));
            hasher.hash_one((state.crashed[*i], own, timers))
        })
        .collect();
    let n = servers.len();
    // Distinct shapes order the servers already; relations are needed only to split ties.
    // (Whether shapes tie does not depend on ids, so every permutation takes the same path.)
    let mut sorted = base.clone();
    sorted.sort_unstable();
    if sorted.windows(2).all(|w| w[0] != w[1]) {
        return base;
    }
    // Clients keep their ids, so a client is named by its index.
    let name = |actor: usize| base.get(actor).copied().unwrap_or(actor as u64);
    // Kept inline (a handful of servers, a few relations each): this runs for most
    // successors, and allocating here was a good part of the search's time.
    let mut relations: smallvec::SmallVec<[Small<(u64, u64)>; 8]> =
        (0..n).map(|_| Small::new()).collect();
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
            Role::PreCandidate { votes } => votes.iter().for_each(|v| relate(7, *v)),
            Role::Candidate { votes } => votes.iter().for_each(|v| relate(4, *v)),
            Role::Leader {
                progress,
                heard_from,
                transferee,
            } => {
                for (other, p) in progress {
                    relate(hasher.hash_one((5u8, p)), *other);
                }
                heard_from.iter().for_each(|h| relate(6, *h));
                if let Some(to) = transferee {
                    relate(8, *to);
                }
            }
        }
    }
    // The messages in flight between each pair, in order when the network keeps order. (The
    // network is read variant by variant: stateright's `iter_all` miscounts repeated sends
    // and never ends on an ordered network.)
    let mut flows: Flows = Flows::new();
    fn flow(flows: &mut Flows, src: Id, dst: Id) -> &mut Small<u64> {
        let key = (usize::from(src), usize::from(dst));
        let at = match flows.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                flows.push((key, Small::new()));
                flows.len() - 1
            }
        };
        &mut flows[at].1
    }
    let ordered = match &state.network {
        stateright::actor::Network::UnorderedNonDuplicating(envelopes) => {
            for (envelope, copies) in envelopes.iter() {
                let message = hasher.hash_one(&envelope.msg);
                flow(&mut flows, envelope.src, envelope.dst).extend((0..*copies).map(|_| message));
            }
            false
        }
        stateright::actor::Network::UnorderedDuplicating(envelopes, _) => {
            for envelope in envelopes.iter() {
                flow(&mut flows, envelope.src, envelope.dst).push(hasher.hash_one(&envelope.msg));
            }
            false
        }
        stateright::actor::Network::Ordered(queues) => {
            for ((src, dst), messages) in queues.iter() {
                flow(&mut flows, *src, *dst).extend(messages.iter().map(|m| hasher.hash_one(m)));
            }
            true
        }
    };
    // In order of (source, destination), as the hash of each flow is mixed in below.
    flows.sort_unstable_by_key(|(key, _)| *key);
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

/// The messages in flight from one actor to another, one hash per message.
type Flows = smallvec::SmallVec<[((usize, usize), Small<u64>); 16]>;

/// Where each actor goes: `positions[actor]` is its new index. Clients keep theirs.
type Positions = Small<usize>;

/// A short list kept inline: states have a handful of actors, so the fingerprint of a
/// successor (computed for every generated state) allocates nothing.
type Small<T> = smallvec::SmallVec<[T; 8]>;

/// The canonical representative of `state` under permutations of server ids. Servers are
/// sorted by their [`server_keys`]; servers with equal keys are tied, and among the orders
/// that the ties allow, the one whose relabelled state has the least fingerprint is chosen.
/// Both steps depend only on the state up to permutation, so every permutation of a state has
/// the same representative. Clients keep their ids.
pub fn canonical(state: &RaftState) -> RaftState {
    let (_, positions) = canonical_fingerprint(state);
    relabel(state, &positions)
}

/// The fingerprint of `state`'s canonical representative, and how to relabel `state` into it,
/// computed without building the representative: most successors turn out to be known, and
/// for them no copy is made.
pub fn canonical_fingerprint(state: &RaftState) -> (Fingerprint, Positions) {
    let servers: Small<(usize, &ServerState)> = state
        .actor_states
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &**s {
            NodeState::Server(server) => Some((i, server)),
            NodeState::Client(_) | NodeState::Admin(_) => None,
        })
        .collect();
    let mut order: Small<usize> = (0..servers.len()).collect();
    let keys = server_keys(state, &servers);
    order.sort_by_key(|&i| keys[i]);
    // Runs of equal keys in sorted order.
    let mut groups: Small<(usize, usize)> = Small::new();
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
    let positions_of = |order: &[usize]| -> Positions {
        let mut positions: Positions = (0..actors).collect();
        for (new, &old) in order.iter().enumerate() {
            positions[servers[old].0] = new;
        }
        positions
    };
    if groups.is_empty() {
        let positions = positions_of(&order);
        return (relabelled_fingerprint(state, &positions), positions);
    }
    let mut best: Option<(Fingerprint, Positions)> = None;
    for_each_tie_order(&mut order, &groups, 0, &mut |candidate| {
        let positions = positions_of(candidate);
        let fp = relabelled_fingerprint(state, &positions);
        if best.as_ref().is_none_or(|(known, _)| fp < *known) {
            best = Some((fp, positions));
        }
    });
    best.expect("at least one order")
}

/// `state` with every actor moved to its new index and every server id inside mapped alike,
/// the clients' choices of server sorted (their order means nothing), so that two members of
/// one class relabel to the same state.
pub fn relabel(state: &RaftState, positions: &[usize]) -> RaftState {
    // `reindex` moves each actor's part and rewrites the ids inside it (see the `Rewrite`
    // impls in `actor.rs`).
    let plan = RewritePlan::<Id, _>::from_values_to_sort(positions);
    let mut random_choices = plan.reindex(&state.random_choices);
    for choices in &mut random_choices {
        for ids in choices.map.values_mut() {
            ids.sort_unstable();
        }
    }
    ActorModelState {
        actor_states: plan.reindex(&state.actor_states),
        network: stateright::Rewrite::rewrite(&state.network, &plan),
        timers_set: plan.reindex(&state.timers_set),
        random_choices,
        crashed: plan.reindex(&state.crashed),
        actor_storages: plan.reindex(&state.actor_storages),
        history: (),
    }
}

/// The fingerprint of `relabel(state, positions)`, computed without building it. Sets (the
/// network of an unordered kind, timers, votes, progress) are hashed in an order that does not
/// depend on ids, so the relabelled state and the relabelling of the state agree.
pub fn relabelled_fingerprint(state: &RaftState, positions: &[usize]) -> Fingerprint {
    use std::hash::{BuildHasher, Hash};
    let seeds = ahash::RandomState::with_seeds(
        0x243F_6A88_85A3_08D3,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    );
    let map = |id: u64| positions.get(id as usize).map_or(id, |&p| p as u64);
    let mut inverse: Small<usize> = smallvec::smallvec![0; positions.len()];
    for (old, &new) in positions.iter().enumerate() {
        inverse[new] = old;
    }
    // The servers' parts are remembered by the permutation of the first actors, which the
    // model makes the servers; were any server elsewhere, nothing is remembered.
    let leading = state
        .actor_states
        .iter()
        .take_while(|s| s.server().is_some())
        .count();
    let servers_first = state.actor_states[leading..]
        .iter()
        .all(|s| s.server().is_none());
    // The permutation's slot among the six of three servers (past them: nothing remembered).
    let slot = match (servers_first, leading, positions) {
        (false, ..) => usize::MAX,
        (true, 1, _) => 0,
        (true, 2, [a, ..]) => *a,
        (true, 3, [a, b, c, ..]) => 2 * *a + usize::from(b > c),
        _ => usize::MAX,
    };
    let mut h = seeds.build_hasher();
    for &old in &inverse {
        state.crashed[old].hash(&mut h);
        let timers: u8 = state.timers_set[old]
            .iter()
            .map(|timer| match timer {
                crate::peer::Timer::Election => 1,
                crate::peer::Timer::Heartbeat => 2,
            })
            .sum();
        timers.hash(&mut h);
        // Hashed as a sorted slice; most actors have no choice to make, and none more than
        // one or two (kept inline: this runs for every successor).
        let mut choices: smallvec::SmallVec<[(&String, Small<u64>); 2]> = smallvec::SmallVec::new();
        for (key, ids) in &state.random_choices[old].map {
            let mut ids: Small<u64> = ids.iter().map(|id| map(usize::from(*id) as u64)).collect();
            ids.sort_unstable();
            choices.push((key, ids));
        }
        choices.sort_unstable();
        choices.hash(&mut h);
        // A server's storage is the copy its state keeps (`ServerState::stored`), hashed with
        // the rest of the server's part below; only storage that differs from it (none of
        // this model's making) is hashed here.
        let kept = state.actor_states[old]
            .server()
            .map(|server| &server.stored);
        match state.actor_storages[old].as_ref() {
            None => 0u8.hash(&mut h),
            Some(durable) if kept.is_some_and(|kept| same_storage(durable, kept)) => {
                2u8.hash(&mut h)
            }
            Some(durable) => {
                1u8.hash(&mut h);
                (durable.term, durable.voted_for.map(map), &durable.log).hash(&mut h);
            }
        }
        match &*state.actor_states[old] {
            NodeState::Client(client) => client.hash(&mut h),
            NodeState::Admin(admin) => (9u8, admin).hash(&mut h),
            NodeState::Server(server) => {
                // The server's part, hashed on its own and remembered per permutation of ids
                // by the server state (most successors share all but one server's state
                // with their parent).
                let part = server.relabelled.get_or(slot, || {
                    let mut h = seeds.build_hasher();
                    let peer = &server.peer;
                    (
                        map(peer.id()),
                        peer.term(),
                        peer.voted_for().map(map),
                        peer.log(),
                        peer.commit_index(),
                        &server.ghost,
                    )
                        .hash(&mut h);
                    let stored = &server.stored;
                    (stored.term, stored.voted_for.map(map), &stored.log).hash(&mut h);
                    match peer.role() {
                        Role::Follower { leader } => (0u8, leader.map(map)).hash(&mut h),
                        Role::PreCandidate { votes } => {
                            let mut votes: Small<u64> = votes.iter().map(|v| map(*v)).collect();
                            votes.sort_unstable();
                            (3u8, votes).hash(&mut h);
                        }
                        Role::Candidate { votes } => {
                            let mut votes: Small<u64> = votes.iter().map(|v| map(*v)).collect();
                            votes.sort_unstable();
                            (1u8, votes).hash(&mut h);
                        }
                        Role::Leader {
                            progress,
                            heard_from,
                            transferee,
                        } => {
                            let mut progress: Small<(u64, &Progress)> =
                                progress.iter().map(|(id, p)| (map(*id), p)).collect();
                            progress.sort_unstable();
                            let mut heard: Small<u64> =
                                heard_from.iter().map(|v| map(*v)).collect();
                            heard.sort_unstable();
                            (2u8, progress, heard).hash(&mut h);
                            // Hashed only when set (most leaders transfer nothing).
                            if let Some(to) = transferee {
                                map(*to).hash(&mut h);
                            }
                        }
                    }
                    // Hashed only when set (persistence as a step is one configuration's).
                    // The held messages go to an unordered network: a set.
                    if let Some(pending) = &server.pending {
                        let mut held: Small<(u64, &crate::peer::Message<super::Value>)> = pending
                            .held
                            .iter()
                            .map(|(to, message)| (map(*to), message))
                            .collect();
                        held.sort_unstable();
                        (4u8, pending.hard_state, pending.log_from, held).hash(&mut h);
                    }
                    std::hash::Hasher::finish(&h)
                });
                part.hash(&mut h);
            }
        }
    }
    // The network: a sum of one hash per envelope (per flow when ordered), which no
    // iteration order changes.
    let mut sum = 0u64;
    let mut count = 0u64;
    let mut add = |x: u64| {
        sum = sum.wrapping_add(x);
        count += 1;
    };
    let pair = |src: Id, dst: Id| (map(usize::from(src) as u64), map(usize::from(dst) as u64));
    match &state.network {
        stateright::actor::Network::UnorderedNonDuplicating(envelopes) => {
            for (envelope, copies) in envelopes.iter() {
                add(seeds.hash_one((pair(envelope.src, envelope.dst), &envelope.msg, copies)));
            }
        }
        stateright::actor::Network::UnorderedDuplicating(envelopes, last) => {
            for envelope in envelopes.iter() {
                add(seeds.hash_one((pair(envelope.src, envelope.dst), &envelope.msg)));
            }
            add(seeds.hash_one(last.as_ref().map(|e| (pair(e.src, e.dst), &e.msg))));
        }
        stateright::actor::Network::Ordered(flows) => {
            for ((src, dst), messages) in flows.iter() {
                add(seeds.hash_one((pair(*src, *dst), messages)));
            }
        }
    }
    (sum, count).hash(&mut h);
    std::hash::Hasher::finish(&h).max(1)
}

/// Calls `f` with every order obtained from `order` by permuting the members of each group.
fn for_each_tie_order(
    order: &mut [usize],
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
fn permute(order: &mut [usize], k: usize, end: usize, f: &mut dyn FnMut(&mut [usize])) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::trace::SplitMix64;
    use crate::checker::{ModelConfig, NetworkKind};

    /// States met on random walks through `config`.
    fn states(config: ModelConfig, walks: u64) -> Vec<RaftState> {
        let model = config.into_model();
        let mut found = Vec::new();
        for seed in 0..walks {
            let mut rng = SplitMix64::new(seed);
            let mut state = model.init_states().remove(0);
            for _ in 0..40 {
                let mut actions = Vec::new();
                model.actions(&state, &mut actions);
                let enabled: Vec<RaftState> = actions
                    .into_iter()
                    .filter_map(|a| model.next_state(&state, a))
                    .filter(|s| Model::within_boundary(&model, s))
                    .collect();
                if enabled.is_empty() {
                    break;
                }
                state = enabled[rng.below(enabled.len() as u64) as usize].clone();
                found.push(state.clone());
            }
        }
        found
    }

    /// Two requests, a crash, four messages in flight: every kind of server state soon.
    fn busy_config() -> ModelConfig {
        ModelConfig {
            client_requests: 2,
            max_crashes: 1,
            max_in_flight: 4,
            ..ModelConfig::default()
        }
    }

    /// The servers' parts of a fingerprint, remembered by the server states, are what a fresh
    /// copy of the state (which remembers nothing) computes, under every permutation and on
    /// every later call.
    #[test]
    fn remembered_fingerprint_parts_are_computed_ones() {
        let config = busy_config();
        let permutations = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let mut checked = 0;
        for state in states(config, 20) {
            let identity: Vec<usize> = (0..state.actor_states.len()).collect();
            for permutation in permutations {
                let mut positions = identity.clone();
                positions[..3].copy_from_slice(&permutation);
                let first = relabelled_fingerprint(&state, &positions);
                let again = relabelled_fingerprint(&state, &positions);
                // `relabel` builds every server state anew.
                let fresh = relabelled_fingerprint(&relabel(&state, &identity), &positions);
                assert_eq!((first, again), (fresh, fresh), "{permutation:?}");
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} fingerprints checked");
    }

    /// A verdict remembered for a state's servers is given back for any state with the same
    /// servers (the same server states, storage and crash marks, whatever is in flight), is
    /// then what the properties say of that state, and is never given for other servers.
    #[test]
    fn remembered_verdicts_are_the_properties_verdicts() {
        let config = busy_config();
        let model = config.clone().into_model();
        let judge = |state: &RaftState| {
            let mut discovered: Small<usize> = Small::new();
            properties::discoveries(
                &model,
                state,
                |i| properties::ALL[i].reads_network,
                |i| discovered.push(i),
            );
            discovered
        };
        let servers = config.servers;
        let mut verdicts = Verdicts::default();
        let (mut known, mut refused) = (0, 0);
        let mut previous: Option<RaftState> = None;
        for state in states(config, 30) {
            let key = Verdicts::key(&state, servers);
            let verdict = judge(&state);
            match verdicts.get(key, &state, servers) {
                Some(remembered) => {
                    assert_eq!(discovered_of(remembered).as_slice(), verdict.as_slice());
                    known += 1;
                }
                None => verdicts.remember(key, &state, servers, &verdict),
            }
            // The same servers, built anew, with nothing in flight: the same verdict.
            let identity: Vec<usize> = (0..state.actor_states.len()).collect();
            let mut quiet = relabel(&state, &identity);
            quiet.network = stateright::actor::Network::new_unordered_nonduplicating([]);
            assert_eq!(
                verdicts
                    .get(Verdicts::key(&quiet, servers), &quiet, servers)
                    .map(discovered_of),
                Some(verdict.iter().copied().collect())
            );
            // A step that changed a server, its storage or a crash mark: the verdict of the
            // state before is not given for the state after, even under the same key.
            if let Some(before) = previous.take() {
                let same_servers = before.crashed == state.crashed
                    && before.actor_storages == state.actor_storages
                    && before
                        .actor_states
                        .iter()
                        .zip(&state.actor_states)
                        .all(|(a, b)| a.server() == b.server());
                if !same_servers {
                    let mut alone = Verdicts::default();
                    let key = Verdicts::key(&before, servers);
                    alone.remember(key, &before, servers, &judge(&before));
                    assert_eq!(alone.get(key, &state, servers), None);
                    refused += 1;
                }
            }
            previous = Some(state);
        }
        assert!(
            known > 10 && refused > 100,
            "{known} known, {refused} refused"
        );
    }

    /// Every permutation of server ids of a state has the same canonical fingerprint, and the
    /// fingerprint computed without relabelling is that of the relabelled state.
    #[test]
    fn the_representative_does_not_depend_on_ids() {
        for network in [
            NetworkKind::Unordered,
            NetworkKind::Ordered,
            NetworkKind::Duplicating,
        ] {
            let config = ModelConfig {
                network,
                client_requests: 2,
                max_crashes: 1,
                max_in_flight: 6,
                ..ModelConfig::default()
            };
            for state in states(config, 30) {
                let (fp, positions) = canonical_fingerprint(&state);
                assert_eq!(fingerprint(&relabel(&state, &positions)), fp, "{network}");
                for permutation in [[1, 0, 2], [2, 1, 0], [1, 2, 0]] {
                    let mut positions: Vec<usize> = (0..state.actor_states.len()).collect();
                    positions[..3].copy_from_slice(&permutation);
                    let moved = relabel(&state, &positions);
                    assert_eq!(
                        canonical_fingerprint(&moved).0,
                        fp,
                        "{network} {permutation:?}"
                    );
                    // The representative itself, not only its fingerprint, is one state.
                    assert!(
                        canonical(&moved) == canonical(&state),
                        "{network} {permutation:?}: {:?} vs {:?}",
                        canonical(&moved),
                        canonical(&state)
                    );
                }
            }
        }
    }

    /// The watchdog names a worker whose beat stands still on a state for the budget, and
    /// only such a worker: not one that keeps starting actions, nor one without a state.
    #[test]
    fn the_watchdog_names_a_worker_stuck_on_one_state() {
        let budget = Duration::from_secs(60);
        let t0 = Instant::now();
        let beats: Vec<Beat> = (0..3).map(|_| Beat::default()).collect();
        let mut dog = Watchdog::new(budget, beats.len(), t0);
        let mut ticks = [0u64; 3];
        // Worker 0 is idle; worker 1 keeps working; worker 2 starts action 4 of state 77.
        beats[1].start(&mut ticks[1], 55, Beat::JUDGING);
        beats[2].start(&mut ticks[2], 77, 4);
        assert_eq!(dog.stuck(&beats, t0), None);
        let mut now = t0;
        for step in 1..=4 {
            now = t0 + budget / 2 * step;
            beats[1].start(&mut ticks[1], 55, step as usize);
            let stuck = dog.stuck(&beats, now);
            if step < 2 {
                assert_eq!(stuck, None, "half the budget at step {step}");
            } else {
                assert_eq!(
                    stuck,
                    Some(Stuck {
                        state: 77,
                        action: 4,
                        waited: now - t0
                    }),
                    "at step {step}"
                );
            }
        }
        // Once worker 2 moves on, or has no state, it is no longer stuck.
        beats[2].start(&mut ticks[2], 78, Beat::JUDGING);
        assert_eq!(dog.stuck(&beats, now), None);
        // At the level's end every worker is idle, however long the next level takes to come.
        beats[1].idle();
        beats[2].idle();
        assert_eq!(dog.stuck(&beats, now + budget * 2), None);
    }

    /// Trying the actions again finds exactly the one that does not return, and it comes back
    /// as soon as the others have returned when none is stuck.
    #[test]
    fn trying_the_actions_again_finds_the_one_that_does_not_return() {
        let stuck = not_returning((0..5).collect(), Duration::from_millis(300), |a: u32| {
            if a == 3 {
                loop {
                    std::thread::park();
                }
            }
        });
        assert_eq!(stuck, vec![3]);
        let started = Instant::now();
        let stuck = not_returning((0..5).collect(), Duration::from_secs(600), |a: u32| {
            assert!(a != 2, "a panic is a return");
        });
        assert!(stuck.is_empty(), "{stuck:?}");
        assert!(started.elapsed() < Duration::from_secs(600));
    }
}
