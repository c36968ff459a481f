//! Seeded random simulation: walks through configurations far larger than any exhaustive search
//! reaches (four or five servers, many terms, several crashes, loss, duplication), checking every
//! Always property at every step.
//!
//! Each walk draws its own configuration from its seed (swarm testing: every walk switches a
//! different set of faults on), so that one run mixes short loss-free walks with long walks
//! full of crashes. A violation is shrunk before it is shown: steps are removed as long as the
//! shorter path, replayed (a step left without its message goes too), still ends in a
//! violation of the same property; then a bounded breadth-first search of the walk's
//! configuration may find a shorter path still.

use super::engine::{not_returning, Beat, RaftAction, Stall, Stuck, Watchdog};
use super::properties::{self, Expect};
use super::step;
use super::trace::SplitMix64;
use super::{ModelConfig, NetworkKind, RaftModel, RaftState};
use crate::bugs::Bug;
use crate::peer::Timer;
use stateright::actor::ActorModelAction;
use stateright::{Model, Path};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a simulation run is asked to do.
#[derive(Clone, Debug)]
pub struct SimulationPlan {
    /// Seed of the first walk; walk `i` uses `seed + i`.
    pub seed: u64,
    /// Stop after this many walks ...
    pub walks: Option<usize>,
    /// ... or after this long, whichever comes first (at least one must be set).
    pub time: Option<Duration>,
    /// Steps per walk at most.
    pub max_steps: usize,
    /// A planted bug, if any.
    pub bug: Option<Bug>,
    /// Worker threads.
    pub threads: usize,
    /// Whether walks may make writes steps of their own (each walk draws it). Off, every walk
    /// writes with the step, as the conformance traces do.
    pub persist_steps: bool,
    /// The Always properties judged ([`ModelConfig::judged`]); `None`: every one.
    pub judged: Option<u32>,
}

impl SimulationPlan {
    /// The configuration of the walk with this seed under this plan.
    pub fn walk_config(&self, seed: u64) -> ModelConfig {
        let mut config = walk_config(seed, self.bug);
        config.persist_steps &= self.persist_steps;
        config.judged = self.judged;
        config
    }

    /// The fixed budget the default check runs after its exhaustive suite: the same walks on
    /// every run and machine.
    pub fn default_budget(bug: Option<Bug>, threads: usize) -> SimulationPlan {
        SimulationPlan {
            seed: 1,
            walks: Some(40_000),
            time: None,
            max_steps: 250,
            bug,
            threads,
            persist_steps: true,
            judged: None,
        }
    }
}

/// A violation found by a walk, shrunk.
#[derive(Clone, Debug)]
pub struct SimulationFinding {
    /// The violated Always property.
    pub property: &'static str,
    /// The walk's seed.
    pub seed: u64,
    /// The walk's configuration.
    pub config: ModelConfig,
    /// Steps of the walk up to the violation, before shrinking.
    pub original_steps: usize,
    /// The shrunk path.
    pub path: Path<RaftState, RaftAction>,
}

/// The result of a simulation run.
#[derive(Clone, Debug)]
pub struct SimulationReport {
    /// The first seed.
    pub seed: u64,
    /// Walks completed.
    pub walks: usize,
    /// Steps taken over all walks.
    pub steps: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// The first violation found (the lowest seed among those found), if any.
    pub finding: Option<SimulationFinding>,
}

/// The configuration of the walk with `seed`: each dimension drawn on its own.
pub fn walk_config(seed: u64, bug: Option<Bug>) -> ModelConfig {
    let mut rng = SplitMix64::new(seed ^ 0x5EED_CAFE_F00D_D00D);
    let servers = [3, 3, 5][rng.below(3) as usize];
    let network = [
        NetworkKind::Unordered,
        NetworkKind::Unordered,
        NetworkKind::Duplicating,
        NetworkKind::Ordered,
    ][rng.below(4) as usize];
    let mut config = ModelConfig {
        name: format!("walk {seed}"),
        servers,
        max_term: 2 + rng.below(7),
        client_requests: 1 + rng.below(4) as usize,
        max_crashes: (rng.below(3) as usize).min(servers / 2),
        network,
        lossy: rng.below(2) == 0,
        max_in_flight: 4 + rng.below(9) as usize,
        heartbeats: rng.below(3) != 0,
        batch: [None, Some(1), Some(2)][rng.below(3) as usize],
        window: [None, Some(1), Some(2)][rng.below(3) as usize],
        pre_vote: rng.below(2) == 0,
        transfers: 0,
        persist_steps: false,
        symmetry: false,
        bug,
        stop_at_first_violation: true,
        judged: None,
    };
    // Drawn last, so that the dimensions above stay what they were for every seed.
    config.transfers = rng.below(3) as usize;
    config.persist_steps = rng.below(2) == 0 && config.network != NetworkKind::Ordered;
    // Half the walks of five servers take four: an even cluster, where a majority is more
    // than half and not half rounded up (two disjoint halves must never both decide).
    if config.servers == 5 && rng.below(2) == 0 {
        config.servers = 4;
    }
    config
}

/// The Always property `state` violates first, if any (PeerInvariant if evaluating one
/// panics).
fn violated(model: &RaftModel, state: &RaftState) -> Option<&'static str> {
    properties::ALL
        .iter()
        .enumerate()
        .filter(|(i, p)| p.expectation == Expect::Always && model.cfg.judges(*i))
        .find_map(|(i, _)| properties::discovery(i, model, state).filter(|&d| model.cfg.judges(d)))
        .map(|i| properties::ALL[i].name)
}

/// One walk: at each step an action is drawn among the enabled ones. Returns the actions and
/// the property violated at the end, if the walk found one (`judge` off: none is looked for).
/// `at(steps, judging)` hears where the walk is, for the watchdog: before a step is drawn
/// from the state that `steps` actions reach (`judging` false), and before that state's
/// properties are judged (true). The walk depends on its seed alone, so the same seed retraces
/// it.
fn walk(
    model: &RaftModel,
    seed: u64,
    max_steps: usize,
    judge: bool,
    at: &mut dyn FnMut(usize, bool),
) -> (Vec<RaftAction>, Option<&'static str>) {
    let mut rng = SplitMix64::new(seed);
    let mut state = model
        .init_states()
        .into_iter()
        .next()
        .expect("the model has an initial state");
    let mut taken = Vec::new();
    at(0, true);
    if let Some(property) = judge.then(|| violated(model, &state)).flatten() {
        return (taken, Some(property));
    }
    let mut actions = Vec::new();
    let mut memo = step::Memo::off();
    for _ in 0..max_steps {
        at(taken.len(), false);
        actions.clear();
        model.actions(&state, &mut actions);
        let mut next = None;
        // Draw until an action is enabled within the bounds; give up on a dead end.
        while !actions.is_empty() {
            let total: u64 = actions.iter().map(weight).sum();
            let mut pick = rng.below(total.max(1));
            let index = actions
                .iter()
                .position(|a| {
                    let w = weight(a);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .unwrap_or(0);
            let action = actions.swap_remove(index);
            // Stepped in place where the network allows it (as the search does), so that a
            // step copies only what it changes; undone if it leaves the bounds.
            match step::apply(model, &mut memo, &mut state, action.clone(), None) {
                step::Applied::Disabled => {}
                // Not without a bound on messages in flight; a step past the bounds is undone.
                step::Applied::Crowded(undo, _) => step::undo(&mut state, undo),
                step::Applied::Done(undo) => {
                    if model.within_boundary(&state) {
                        next = Some(action);
                        break;
                    }
                    step::undo(&mut state, undo);
                }
                step::Applied::Elsewhere(action) => {
                    if let Some(successor) = model.next_state(&state, action.clone()) {
                        if model.within_boundary(&successor) {
                            state = successor;
                            next = Some(action);
                            break;
                        }
                    }
                }
            }
        }
        let Some(action) = next else {
            break;
        };
        taken.push(action);
        at(taken.len(), true);
        if let Some(property) = judge.then(|| violated(model, &state)).flatten() {
            return (taken, Some(property));
        }
    }
    (taken, None)
}

/// How often a walk picks each kind of action: deliveries dominate; crashes and losses are
/// rarer, but common enough that a long walk sees several.
fn weight(action: &RaftAction) -> u64 {
    match action {
        ActorModelAction::Deliver { .. } => 20,
        ActorModelAction::SelectRandom { .. } => 8,
        ActorModelAction::Timeout(_, Timer::Election) => 3,
        ActorModelAction::Timeout(_, Timer::Heartbeat) => 4,
        ActorModelAction::Recover(_) => 6,
        ActorModelAction::Crash(_) => 1,
        ActorModelAction::Drop(_) => 2,
    }
}

/// Replays `actions` from the initial state, skipping any that is not enabled where it comes
/// (a removed step can take a later step's message out of the network); returns the path of
/// the steps taken up to the first state that violates `property`, or `None` if no state
/// violates it.
fn replay(
    model: &RaftModel,
    actions: &[RaftAction],
    property: &'static str,
) -> Option<Path<RaftState, RaftAction>> {
    let init = model.init_states().into_iter().next()?;
    let mut state = init.clone();
    let condition = properties::by_name(property)?.condition;
    let mut enabled = Vec::new();
    let mut taken = Vec::with_capacity(actions.len());
    for action in actions {
        if !condition(model, &state) {
            break;
        }
        // stateright would panic on delivering a message that is not in flight.
        enabled.clear();
        model.actions(&state, &mut enabled);
        if !enabled.contains(action) {
            continue;
        }
        let Some(next) = model.next_state(&state, action.clone()) else {
            continue;
        };
        if !model.within_boundary(&next) {
            continue;
        }
        state = next;
        taken.push(action.clone());
    }
    if condition(model, &state) {
        return None;
    }
    Path::from_actions(model, init, &taken)
}

/// Removes steps while the path still ends in a violation of `property`: first halves and
/// quarters, then single steps, until no single step can go. A step that a removal leaves
/// without its message (or otherwise disabled) goes with it.
fn shrink(
    model: &RaftModel,
    mut actions: Vec<RaftAction>,
    property: &'static str,
) -> Path<RaftState, RaftAction> {
    let mut chunk = (actions.len() / 2).max(1);
    loop {
        let mut removed_any = false;
        let mut start = 0;
        while start < actions.len() {
            let end = (start + chunk).min(actions.len());
            let mut candidate = actions[..start].to_vec();
            candidate.extend_from_slice(&actions[end..]);
            if let Some(path) = replay(model, &candidate, property) {
                actions = path.into_actions();
                removed_any = true;
            } else {
                start += chunk;
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        if !removed_any {
            chunk = (chunk / 2).max(1);
        }
    }
    replay(model, &actions, property).expect("the shrunk path still violates the property")
}

/// The number of steps of `path`.
pub(crate) fn steps_of(path: &Path<RaftState, RaftAction>) -> usize {
    path.clone().into_actions().len()
}

/// Distinct states the search for a shorter counterexample may visit.
pub const SHORTEST_SEARCH_STATES: usize = 3_000_000;

/// A shortest path to a violation of `property` in the walk's own configuration, if a
/// breadth-first search of at most [`SHORTEST_SEARCH_STATES`] states finds one: removing
/// steps keeps the walk's terms and messages, a fresh search does not.
fn shortest(
    model: &RaftModel,
    threads: usize,
    property: &'static str,
) -> Option<Path<RaftState, RaftAction>> {
    // The path found is replayed from the initial state, so every server keeps its id.
    let mut outcome = super::engine::Search {
        model,
        symmetry: true,
        threads,
        stop_on_violation: true,
        max_states: Some(SHORTEST_SEARCH_STATES),
        interval: Duration::from_secs(3600),
        stall: None,
    }
    .run(&mut |_, _, _| {});
    outcome.discoveries.remove(property)
}

/// The walk a stuck worker was on, retraced from its seed up to the state it was stuck in
/// (every step before it returned), with the steps from that state that still do not return
/// when tried again for `budget` (none when the state's judgment was stuck).
fn stalled_walk(plan: &SimulationPlan, stuck: Stuck, budget: Duration) -> (ModelConfig, Stall) {
    let seed = plan.seed.wrapping_add(stuck.state - 1);
    let (steps, judging) = (stuck.action / 2, stuck.action % 2 == 1);
    let config = plan.walk_config(seed);
    let model = config.clone().into_model();
    // Not judged: the judgment of the last state may be what does not return.
    let (actions, _) = walk(&model, seed, steps, false, &mut |_, _| {});
    let init = model
        .init_states()
        .into_iter()
        .next()
        .expect("the model has an initial state");
    let script = Script {
        model: &model,
        actions: &actions,
        next: std::cell::Cell::new(0),
    };
    let path = Path::from_actions(&script, init, &actions).expect("a walk's steps form a path");
    let actions = if judging {
        Vec::new()
    } else {
        let state = path.last_state().clone();
        let mut enabled = Vec::new();
        model.actions(&state, &mut enabled);
        let again = config.clone();
        not_returning(enabled, budget, move |action| {
            let _ = again.clone().into_model().next_state(&state, action);
        })
    };
    let stall = Stall {
        path,
        actions,
        judging,
        waited: stuck.waited,
    };
    (config, stall)
}

/// The model as a retraced walk sees it: from each state only the walk's next action is
/// taken. `Path::from_actions` takes every enabled action of each state on the way (to find
/// the one asked for), and a walk, unlike the exhaustive search, passes states with steps
/// it never took, the stuck one among them.
struct Script<'a> {
    model: &'a RaftModel,
    actions: &'a [RaftAction],
    /// The action to take next (`Path::from_actions` asks for each state's steps in order).
    next: std::cell::Cell<usize>,
}

impl Model for Script<'_> {
    type State = RaftState;
    type Action = RaftAction;

    fn init_states(&self) -> Vec<RaftState> {
        self.model.init_states()
    }

    fn actions(&self, _: &RaftState, actions: &mut Vec<RaftAction>) {
        actions.extend(self.actions.get(self.next.get()).cloned());
    }

    fn next_state(&self, last: &RaftState, action: RaftAction) -> Option<RaftState> {
        self.next.set(self.next.get() + 1);
        self.model.next_state(last, action)
    }
}

/// What the simulation's watchdog does with a walk whose step (or judgment) does not return:
/// the walk's configuration and the stuck step, to print before the process exits with
/// status 1.
pub type StallReport<'a> = &'a dyn Fn(&ModelConfig, Stall);

/// Runs walks until the plan's budget is spent or a violation is found. `progress` hears a
/// line every `interval`. With `stall`, a walk that spends the given time on one step or on
/// judging one state is retraced, its stuck step named and reported, and the process exits
/// with status 1, as the exhaustive search's watchdog does.
pub fn simulate(
    plan: &SimulationPlan,
    interval: Duration,
    progress: &mut dyn FnMut(&str),
    stall: Option<(Duration, StallReport)>,
) -> SimulationReport {
    assert!(plan.walks.is_some() || plan.time.is_some(), "a budget");
    let start = Instant::now();
    let next_walk = AtomicUsize::new(0);
    let walks_done = AtomicUsize::new(0);
    let steps = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let found: Mutex<Option<(usize, &'static str, Vec<RaftAction>)>> = Mutex::new(None);
    let out_of_budget = |walk: usize| {
        plan.walks.is_some_and(|max| walk >= max)
            || plan.time.is_some_and(|time| start.elapsed() >= time)
    };
    let threads = plan.threads.max(1);
    // One beat per worker: the walk it is on (its index + 1; 0 between walks) and where in it,
    // `2 * steps + judging` (see `walk`).
    let beats: Vec<Beat> = (0..threads).map(|_| Beat::default()).collect();
    let mut watchdog = stall.map(|(budget, _)| Watchdog::new(budget, threads, Instant::now()));
    std::thread::scope(|scope| {
        let workers: Vec<_> = beats
            .iter()
            .map(|beat| {
                let (next_walk, stop, steps, walks_done, found, out_of_budget) = (
                    &next_walk,
                    &stop,
                    &steps,
                    &walks_done,
                    &found,
                    &out_of_budget,
                );
                scope.spawn(move || {
                    // Counted across the worker's walks, so that a new walk is a new beat.
                    let mut ticks = 0u64;
                    loop {
                        let i = next_walk.fetch_add(1, Ordering::Relaxed);
                        if stop.load(Ordering::Relaxed) || out_of_budget(i) {
                            beat.idle();
                            break;
                        }
                        let seed = plan.seed.wrapping_add(i as u64);
                        let model = plan.walk_config(seed).into_model();
                        let (actions, property) =
                            walk(&model, seed, plan.max_steps, true, &mut |at, judging| {
                                beat.start(&mut ticks, i as u64 + 1, 2 * at + usize::from(judging))
                            });
                        beat.idle();
                        steps.fetch_add(actions.len(), Ordering::Relaxed);
                        walks_done.fetch_add(1, Ordering::Relaxed);
                        if let Some(property) = property {
                            let mut found = found.lock().expect("no worker panicked");
                            // Keep the lowest walk index, so that the finding does not depend on
                            // thread timing when several walks fail.
                            if found.as_ref().is_none_or(|(known, _, _)| i < *known) {
                                *found = Some((i, property, actions));
                            }
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        let mut last = Instant::now();
        while workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            if let Some(stuck) = watchdog
                .as_mut()
                .and_then(|w| w.stuck(&beats, Instant::now()))
            {
                let (budget, report) = stall.expect("a watchdog has a report");
                let (config, stall) = stalled_walk(plan, stuck, budget);
                report(&config, stall);
                // The stuck worker cannot be stopped, nor this scope left without it.
                std::process::exit(1);
            }
            if last.elapsed() >= interval {
                last = Instant::now();
                progress(&format!(
                    "  [simulation] {:.0}s walks={} steps={}",
                    start.elapsed().as_secs_f64(),
                    walks_done.load(Ordering::Relaxed),
                    steps.load(Ordering::Relaxed)
                ));
            }
        }
    });
    let finding = found
        .into_inner()
        .expect("no worker panicked")
        .map(|(i, property, actions)| {
            let seed = plan.seed.wrapping_add(i as u64);
            let config = plan.walk_config(seed);
            let model = config.clone().into_model();
            let original_steps = actions.len();
            progress(&format!(
                "  [simulation] walk {seed} violates {property} after {original_steps} steps; shrinking"
            ));
            let shrunk = shrink(&model, actions, property);
            let shrunk_steps = steps_of(&shrunk);
            progress(&format!(
                "  [simulation] shrunk to {shrunk_steps} steps; looking for a shorter path in the walk's configuration"
            ));
            let path = match shortest(&model, plan.threads, property) {
                Some(shorter) if steps_of(&shorter) < shrunk_steps => shorter,
                _ => shrunk,
            };
            SimulationFinding {
                property,
                seed,
                config,
                original_steps,
                path,
            }
        });
    SimulationReport {
        seed: plan.seed,
        walks: walks_done.load(Ordering::Relaxed),
        steps: steps.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        finding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watchdog's retracing rests on this: a walk depends on its seed alone, judged or
    /// not, and a shorter walk from the same seed takes the first steps of the longer one;
    /// `at` hears every step and every judgment in order.
    #[test]
    fn a_walk_is_retraced_from_its_seed() {
        let plan = SimulationPlan::default_budget(None, 1);
        let mut long_walks = 0;
        for seed in 1..12 {
            let model = plan.walk_config(seed).into_model();
            let mut heard = Vec::new();
            let (long, property) = walk(&model, seed, 60, true, &mut |at, judging| {
                heard.push((at, judging))
            });
            assert_eq!(property, None, "walk {seed} of a correct Peer");
            // Some configurations come to a dead end early (every bound reached).
            if long.len() <= 10 {
                continue;
            }
            long_walks += 1;
            let mut expected = vec![(0, true)];
            for k in 0..long.len() {
                expected.extend([(k, false), (k + 1, true)]);
            }
            // A walk that ends before its budget (a dead end) draws once more in vain.
            if long.len() < 60 {
                expected.push((long.len(), false));
            }
            assert_eq!(heard, expected, "walk {seed}");
            let (unjudged, _) = walk(&model, seed, 60, false, &mut |_, _| {});
            assert_eq!(unjudged, long, "walk {seed} unjudged");
            let (short, _) = walk(&model, seed, 10, false, &mut |_, _| {});
            assert_eq!(short, long[..10], "walk {seed} cut at 10 steps");
        }
        assert!(long_walks >= 4, "{long_walks} walks longer than 10 steps");
    }

    /// Removing steps keeps a walk's terms and messages, so a walk of many elections can stay
    /// long; the breadth-first search of the walk's configuration then finds the shortest
    /// violation. With seed 1, walk 76 is the first to elect two leaders of one term under
    /// `election-majority-of-others` (75 steps); the path shown has 6: two candidates of term
    /// 1, each elected by one vote of four servers.
    #[test]
    fn a_long_walk_is_shown_as_a_shortest_path() {
        let plan = SimulationPlan {
            walks: Some(100),
            time: None,
            ..SimulationPlan::default_budget(Some(Bug::ElectionMajorityOfOthers), 2)
        };
        let finding = simulate(&plan, Duration::from_secs(3600), &mut |_| {}, None)
            .finding
            .expect("a walk of the first 100 finds the bug");
        assert_eq!(finding.property, "ElectionSafety");
        assert_eq!((finding.seed, finding.original_steps), (76, 75));
        assert_eq!(finding.config.servers, 4);
        let states = finding.path.clone().into_states();
        assert_eq!(states.len(), 7, "6 steps");
        let last = states.last().expect("a last state");
        let leaders: Vec<(usize, u64)> = last
            .actor_states
            .iter()
            .enumerate()
            .filter_map(|(i, actor)| actor.server().map(|server| (i, server)))
            .filter(|(i, server)| {
                !last.crashed[*i] && server.peer.leader() == Some(*i as crate::peer::NodeId)
            })
            .map(|(i, server)| (i, server.peer.term()))
            .collect();
        assert_eq!(leaders.len(), 2, "{leaders:?}");
        assert!(leaders.iter().all(|&(_, term)| term == 1), "{leaders:?}");
    }

    /// A stuck worker's beat names its walk and its place in it; the walk is retraced to the
    /// state it was stuck in, and from a correct Peer's state every step returns when tried
    /// again (so none is named).
    #[test]
    fn a_stuck_walk_is_retraced_to_its_state() {
        let plan = SimulationPlan::default_budget(None, 1);
        // The first walk of the plan that goes 30 steps.
        let (walk_index, taken) = (0..20)
            .find_map(|index| {
                let seed = plan.seed + index;
                let model = plan.walk_config(seed).into_model();
                let (taken, _) = walk(&model, seed, 30, false, &mut |_, _| {});
                (taken.len() == 30).then_some((index, taken))
            })
            .expect("a walk of 30 steps among the first 20");
        let seed = plan.seed + walk_index;
        for (steps, judging) in [(0, true), (12, false), (12, true), (30, false)] {
            let stuck = Stuck {
                state: walk_index + 1,
                action: 2 * steps + usize::from(judging),
                waited: Duration::from_secs(61),
            };
            let (config, stall) = stalled_walk(&plan, stuck, Duration::from_secs(60));
            assert_eq!(config.name, format!("walk {seed}"));
            assert_eq!(
                stall.path.clone().into_actions(),
                taken[..steps],
                "{steps} steps"
            );
            assert_eq!(stall.judging, judging);
            assert!(stall.actions.is_empty(), "{:?}", stall.actions);
            assert_eq!(stall.waited, Duration::from_secs(61));
        }
    }
}
