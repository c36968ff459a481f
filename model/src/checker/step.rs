//! The search's successor step: stateright's `ActorModel::next_state`, done to the parent in
//! place and undone afterwards, so that a successor is copied only when its fingerprint is
//! new (about one in four) and a successor beyond the bounds is judged without a copy at all.
//!
//! The step follows stateright 0.31's `next_state` and `process_commands` rule for rule (which
//! actions are no-ops, that a delivery or a loss takes one copy of an envelope off the network,
//! that a fired timer is cancelled before the handler's commands, that a crash clears the
//! actor's timers and random choices, and that a recovery starts the actor from its storage).
//! Only the unordered network that never duplicates is done in place; the search builds the
//! successors of the other networks with stateright's own `next_state`. The test below checks,
//! on states of random walks, that every step done in place is stateright's successor and that
//! undoing it gives the parent back; the per-configuration state counts pinned in the tests
//! check the same over whole searches.

use super::actor::{ModelActor, NodeState, Stored};
use super::engine::{IdentityHasher, RaftAction};
use super::{ModelMsg, RaftModel, RaftState};
use crate::peer::Timer;
use stateright::actor::{
    Actor, ActorModelAction, Command, Envelope, Id, Network, Out, RandomChoices,
};
use std::borrow::Cow;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

/// What [`apply`] did to the state.
// Returned once per step and never stored: boxing the undo would cost the allocation that
// keeping its changes inline saves.
#[allow(clippy::large_enum_variant)]
pub enum Applied {
    /// The action is not enabled or changes nothing: stateright has no successor for it.
    Disabled,
    /// The state is not one this module steps in place (another kind of network): the action,
    /// given back, is to be taken with stateright's `next_state`.
    Elsewhere(RaftAction),
    /// The state is now the successor; [`undo`] turns it back into the parent.
    Done(Undo),
    /// The successor has more messages in flight than `crowd` allows, so it lies beyond the
    /// bounds and is only judged, by properties that read no message in flight: the state
    /// now has the successor's actors, timers, random choices, storage and crash marks, and
    /// still the parent's network. [`undo`] turns it back into the parent; the action is given
    /// back, to be taken again without the bound should the successor break a property.
    Crowded(Undo, RaftAction),
}

/// How to turn a successor made by [`apply`] back into its parent.
pub struct Undo {
    /// The actor that stepped.
    index: usize,
    /// Its state before the step, if the step replaced it.
    actor: Option<Arc<NodeState>>,
    /// Whether it was crashed, if the step changed that.
    crashed: Option<bool>,
    /// Which of its timers were set (election, heartbeat).
    timers: [bool; 2],
    /// Its random choices before the step, if the step may have changed them.
    choices: Option<RandomChoices<Id>>,
    /// Its storage before the step, if the step saved.
    storage: Option<Option<Stored>>,
    /// The network's changes, in the order they were made (kept inline: a step takes one
    /// message off and sends a few).
    network: smallvec::SmallVec<[Change; 4]>,
}

impl Undo {
    /// Whether the step left every server's state, storage and crash mark as they were (the
    /// very same server state): only timers, random choices or the network changed, which no
    /// property that reads the servers alone reads.
    pub fn servers_unchanged(&self, state: &RaftState) -> bool {
        self.crashed.is_none()
            && self.storage.is_none()
            && self
                .actor
                .as_ref()
                .is_none_or(|before| Arc::ptr_eq(before, &state.actor_states[self.index]))
    }
}

/// One change to the network's multiset of envelopes.
enum Change {
    /// One copy of the envelope was taken off.
    Removed(Envelope<ModelMsg>),
    /// One copy of the envelope was added.
    Added(Envelope<ModelMsg>),
}

fn add(network: &mut Network<ModelMsg>, envelope: Envelope<ModelMsg>) {
    let Network::UnorderedNonDuplicating(multiset) = network else {
        unreachable!("only an unordered, non-duplicating network is stepped in place")
    };
    *multiset.entry(envelope).or_insert(0) += 1;
}

fn remove(network: &mut Network<ModelMsg>, envelope: &Envelope<ModelMsg>) {
    let Network::UnorderedNonDuplicating(multiset) = network else {
        unreachable!("only an unordered, non-duplicating network is stepped in place")
    };
    let copies = multiset
        .get_mut(envelope)
        .expect("an envelope taken off the network is on it");
    if *copies > 1 {
        *copies -= 1;
    } else {
        multiset.remove(envelope);
    }
}

fn timers_of(state: &RaftState, index: usize) -> [bool; 2] {
    let mut set = [false; 2];
    for timer in state.timers_set[index].iter() {
        match timer {
            Timer::Election => set[0] = true,
            Timer::Heartbeat => set[1] = true,
        }
    }
    set
}

/// Takes `action` in `state`, in place. On [`Applied::Done`], `state` is the successor that
/// stateright's `next_state` would return, until [`undo`] is called. `crowd`, if given, is the
/// number of messages in flight in `state` and the most the bounds allow: a successor with
/// more is [`Applied::Crowded`], its network left as it was.
pub fn apply(
    model: &RaftModel,
    memo: &mut Memo,
    state: &mut RaftState,
    action: RaftAction,
    crowd: Option<(usize, usize)>,
) -> Applied {
    if !matches!(state.network, Network::UnorderedNonDuplicating(_)) {
        return Applied::Elsewhere(action);
    }
    let index = match &action {
        ActorModelAction::Deliver { dst, .. } => usize::from(*dst),
        ActorModelAction::Timeout(id, _)
        | ActorModelAction::Crash(id)
        | ActorModelAction::Recover(id) => usize::from(*id),
        ActorModelAction::SelectRandom { actor, .. } => usize::from(*actor),
        ActorModelAction::Drop(envelope) => usize::from(envelope.dst),
    };
    if index >= state.actor_states.len()
        || index >= state.timers_set.len()
        || index >= state.actor_storages.len()
        || index >= state.random_choices.len()
    {
        // Not a state of this model's making (every actor has its slots from the start);
        // stateright knows what to do with it.
        return Applied::Elsewhere(action);
    }
    let mut undo = Undo {
        index,
        actor: None,
        crashed: None,
        timers: timers_of(state, index),
        choices: None,
        storage: None,
        network: smallvec::SmallVec::new(),
    };
    let id = Id::from(index);
    let actor: &ModelActor = &model.actors[index];
    let outcome: Arc<Outcome> = match &action {
        ActorModelAction::Drop(_) => {
            let ActorModelAction::Drop(envelope) = action else {
                unreachable!("matched above")
            };
            remove(&mut state.network, &envelope);
            undo.network.push(Change::Removed(envelope));
            return Applied::Done(undo);
        }
        ActorModelAction::Deliver { src, msg, .. } => {
            if state.crashed[index] {
                return Applied::Disabled;
            }
            let input = InputRef::Deliver(*src, msg);
            let Some(outcome) = memo.outcome(actor, index, &state.actor_states[index], input)
            else {
                return Applied::Disabled;
            };
            outcome
        }
        ActorModelAction::Timeout(_, timer) => {
            let input = InputRef::Timeout(timer);
            let Some(outcome) = memo.outcome(actor, index, &state.actor_states[index], input)
            else {
                return Applied::Disabled;
            };
            state.timers_set[index].cancel(timer);
            outcome
        }
        ActorModelAction::Crash(_) => {
            undo.choices = Some(state.random_choices[index].clone());
            undo.crashed = Some(state.crashed[index]);
            state.timers_set[index].cancel_all();
            state.random_choices[index].map.clear();
            state.crashed[index] = true;
            return Applied::Done(undo);
        }
        ActorModelAction::Recover(_) => {
            assert!(state.crashed[index], "only a crashed actor recovers");
            let mut out = Out::new();
            let next = actor.on_start(id, &state.actor_storages[index], &mut out);
            undo.crashed = Some(true);
            state.crashed[index] = false;
            Arc::new(Outcome::new(Some(next), out))
        }
        ActorModelAction::SelectRandom { key, random, .. } => {
            let mut next = Cow::Borrowed(&*state.actor_states[index]);
            let mut out = Out::new();
            actor.on_random(id, &mut next, random, &mut out);
            let next = match next {
                Cow::Owned(next) => Some(next),
                Cow::Borrowed(_) => None,
            };
            undo.choices = Some(state.random_choices[index].clone());
            state.random_choices[index].remove(key);
            Arc::new(Outcome::new(next, out))
        }
    };
    let delivered = matches!(action, ActorModelAction::Deliver { .. });
    let sent = outcome
        .commands
        .iter()
        .filter(|command| matches!(command, Cmd::Send(..)))
        .count();
    let crowded =
        crowd.is_some_and(|(in_flight, most)| in_flight + sent > most + usize::from(delivered));
    // Kept to be given back when crowded; else a delivered message leaves the network.
    let crowded = if crowded {
        Some(action)
    } else {
        if let ActorModelAction::Deliver { src, dst, msg } = action {
            let envelope = Envelope { src, dst, msg };
            remove(&mut state.network, &envelope);
            undo.network.push(Change::Removed(envelope));
        }
        None
    };
    if let Some(next) = &outcome.next {
        undo.actor = Some(std::mem::replace(
            &mut state.actor_states[index],
            next.clone(),
        ));
    }
    for command in &outcome.commands {
        match command {
            Cmd::Send(..) if crowded.is_some() => {}
            Cmd::Send(dst, msg) => {
                let envelope = Envelope {
                    src: id,
                    dst: *dst,
                    msg: msg.clone(),
                };
                undo.network.push(Change::Added(envelope.clone()));
                add(&mut state.network, envelope);
            }
            Cmd::SetTimer(timer) => {
                state.timers_set[index].set(*timer);
            }
            Cmd::CancelTimer(timer) => {
                state.timers_set[index].cancel(timer);
            }
            Cmd::ChooseRandom(key, random) => {
                if undo.choices.is_none() {
                    undo.choices = Some(state.random_choices[index].clone());
                }
                if random.is_empty() {
                    state.random_choices[index].remove(key);
                } else {
                    state.random_choices[index].insert(key.clone(), random.clone());
                }
            }
            Cmd::Save(storage) => {
                let old = state.actor_storages[index].replace(storage.clone());
                if undo.storage.is_none() {
                    undo.storage = Some(old);
                }
            }
        }
    }
    match crowded {
        Some(action) => Applied::Crowded(undo, action),
        None => Applied::Done(undo),
    }
}

/// What a handler did: the actor's new state (`None`: unchanged) and its commands.
pub struct Outcome {
    next: Option<Arc<NodeState>>,
    commands: Vec<Cmd>,
}

/// stateright's `Command`, kept (it is not `Clone`).
enum Cmd {
    Send(Id, ModelMsg),
    SetTimer(Timer),
    CancelTimer(Timer),
    ChooseRandom(String, Vec<Id>),
    Save(Stored),
}

impl Outcome {
    fn new(next: Option<NodeState>, out: Out<ModelActor>) -> Outcome {
        let commands = out
            .into_iter()
            .map(|command| match command {
                Command::Send(dst, msg) => Cmd::Send(dst, msg),
                Command::SetTimer(timer, _) => Cmd::SetTimer(timer),
                Command::CancelTimer(timer) => Cmd::CancelTimer(timer),
                Command::ChooseRandom(key, random) => Cmd::ChooseRandom(key, random),
                Command::Save(storage) => Cmd::Save(storage),
            })
            .collect();
        Outcome {
            next: next.map(Arc::new),
            commands,
        }
    }
}

/// A delivery or a timer, the inputs whose handling is remembered.
enum Input {
    Deliver(Id, ModelMsg),
    Timeout(Timer),
}

/// An [`Input`], borrowed.
#[derive(Clone, Copy, Hash)]
enum InputRef<'a> {
    Deliver(Id, &'a ModelMsg),
    Timeout(&'a Timer),
}

impl Input {
    fn is(&self, other: InputRef<'_>) -> bool {
        match (self, other) {
            (Input::Deliver(src, msg), InputRef::Deliver(other_src, other_msg)) => {
                src == &other_src && msg == other_msg
            }
            (Input::Timeout(timer), InputRef::Timeout(other)) => timer == other,
            _ => false,
        }
    }
}

/// One remembered handling.
struct Remembered {
    index: usize,
    actor: Arc<NodeState>,
    input: Input,
    outcome: Option<Arc<Outcome>>,
}

/// The handlers' results for deliveries and timers, remembered: the Peer and the model's
/// handlers are deterministic (sans-IO), so an actor in the same state given the same input
/// does the same thing in every state of the system it is part of, and a server state recurs in
/// thousands of them. A hit also shares the successor's actor state with every other state
/// that reached it this way. One per search worker; emptied when it holds [`Memo::LIMIT`].
#[derive(Default)]
pub struct Memo {
    /// A bucket keeps its first handling in the table itself: a lookup costs one miss, not two.
    buckets: std::collections::HashMap<
        u64,
        smallvec::SmallVec<[Remembered; 1]>,
        BuildHasherDefault<IdentityHasher>,
    >,
    len: usize,
    /// The server states the remembered handlings made, one shared copy of each by content:
    /// a server state is reached by many handlings (the same vote granted from two states,
    /// say), and sharing one copy makes the comparisons that follow it (here and in the
    /// search's remembered verdicts) a pointer comparison, and its remembered hashes computed
    /// once. Emptied with the handlings.
    shared: std::collections::HashMap<u64, Vec<Arc<NodeState>>, BuildHasherDefault<IdentityHasher>>,
    /// Runs every handler afresh and remembers nothing (a random walk seldom meets the same
    /// server state twice with the same input).
    off: bool,
}

impl Memo {
    /// Handlings remembered at most.
    const LIMIT: usize = 1 << 17;

    /// A memo that remembers nothing.
    pub fn off() -> Memo {
        Memo {
            off: true,
            ..Memo::default()
        }
    }

    /// What `actor`, in state `current`, does on `input`: `None` if that is nothing at all
    /// (stateright's no-op, which disables the action).
    fn outcome(
        &mut self,
        actor: &ModelActor,
        index: usize,
        current: &Arc<NodeState>,
        input: InputRef<'_>,
    ) -> Option<Arc<Outcome>> {
        if self.off {
            return handle(actor, index, current, input);
        }
        let key = memo_hasher().hash_one((index, current.memo_hash(), input));
        if let Some(bucket) = self.buckets.get(&key) {
            if let Some(known) = bucket.iter().find(|r| {
                r.index == index
                    && r.input.is(input)
                    && (Arc::ptr_eq(&r.actor, current) || r.actor == *current)
            }) {
                return known.outcome.clone();
            }
        }
        let mut outcome = handle(actor, index, current, input);
        if self.len >= Self::LIMIT {
            self.buckets.clear();
            self.shared.clear();
            self.len = 0;
        }
        if let Some(next) = outcome
            .as_mut()
            .and_then(|o| Arc::get_mut(o))
            .and_then(|o| o.next.as_mut())
            .filter(|next| next.server().is_some())
        {
            let copies = self.shared.entry(next.memo_hash()).or_default();
            match copies.iter().find(|known| **known == *next) {
                Some(known) => *next = known.clone(),
                None => copies.push(next.clone()),
            }
        }
        self.len += 1;
        let input = match input {
            InputRef::Deliver(src, msg) => Input::Deliver(src, msg.clone()),
            InputRef::Timeout(timer) => Input::Timeout(*timer),
        };
        self.buckets.entry(key).or_default().push(Remembered {
            index,
            actor: current.clone(),
            input,
            outcome: outcome.clone(),
        });
        outcome
    }
}

pub(super) fn memo_hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x6A09_E667_F3BC_C908,
        0xBB67_AE85_84CA_A73B,
        0x3C6E_F372_FE94_F82B,
        0xA54F_F53A_5F1D_36F1,
    )
}

/// Runs the handler, as stateright's `next_state` does, with its no-op rules.
fn handle(
    actor: &ModelActor,
    index: usize,
    current: &NodeState,
    input: InputRef<'_>,
) -> Option<Arc<Outcome>> {
    let id = Id::from(index);
    let mut next = Cow::Borrowed(current);
    let mut out = Out::new();
    let no_op = match input {
        InputRef::Deliver(src, msg) => {
            actor.on_msg(id, &mut next, src, msg.clone(), &mut out);
            out.is_empty()
        }
        InputRef::Timeout(timer) => {
            actor.on_timeout(id, &mut next, timer, &mut out);
            // Renewing the same timer and nothing else is a no-op too.
            out.len() == 1
                && out
                    .iter()
                    .any(|c| matches!(c, Command::SetTimer(t, _) if t == timer))
        }
    };
    if matches!(next, Cow::Borrowed(_)) && no_op {
        return None;
    }
    let next = match next {
        Cow::Owned(next) => Some(next),
        Cow::Borrowed(_) => None,
    };
    Some(Arc::new(Outcome::new(next, out)))
}

/// Turns the successor that [`apply`] made back into its parent.
pub fn undo(state: &mut RaftState, undo: Undo) {
    let index = undo.index;
    for change in undo.network.into_iter().rev() {
        match change {
            Change::Removed(envelope) => add(&mut state.network, envelope),
            Change::Added(envelope) => remove(&mut state.network, &envelope),
        }
    }
    if let Some(actor) = undo.actor {
        state.actor_states[index] = actor;
    }
    if let Some(crashed) = undo.crashed {
        state.crashed[index] = crashed;
    }
    if timers_of(state, index) != undo.timers {
        let timers = &mut state.timers_set[index];
        timers.cancel_all();
        if undo.timers[0] {
            timers.set(Timer::Election);
        }
        if undo.timers[1] {
            timers.set(Timer::Heartbeat);
        }
    }
    if let Some(choices) = undo.choices {
        state.random_choices[index] = choices;
    }
    if let Some(storage) = undo.storage {
        state.actor_storages[index] = storage;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::trace::SplitMix64;
    use crate::checker::{ModelConfig, NetworkKind};
    use stateright::Model;

    /// On random walks through configurations that use every kind of action (deliveries,
    /// losses, timers, crashes and recoveries, clients' and operators' random choices, writes
    /// as steps), every action taken in place gives stateright's own successor (or none when
    /// stateright has none), and undoing it gives back the parent.
    #[test]
    fn a_step_in_place_is_the_models_successor_and_undoes_to_its_parent() {
        let configs = [
            ModelConfig {
                lossy: true,
                max_crashes: 1,
                client_requests: 2,
                max_in_flight: 6,
                ..ModelConfig::default()
            },
            ModelConfig {
                pre_vote: true,
                transfers: 1,
                max_in_flight: 5,
                ..ModelConfig::default()
            },
            ModelConfig {
                persist_steps: true,
                max_crashes: 1,
                max_in_flight: 5,
                heartbeats: false,
                ..ModelConfig::default()
            },
        ];
        let (mut steps, mut crowded, mut unchanged) = (0, 0, 0);
        for config in configs {
            assert_eq!(config.network, NetworkKind::Unordered);
            let model = config.into_model();
            let mut memo = Memo::default();
            for seed in 0..40 {
                let mut rng = SplitMix64::new(seed);
                let mut state = model.init_states().remove(0);
                for _ in 0..40 {
                    let mut actions = Vec::new();
                    model.actions(&state, &mut actions);
                    let mut successors = Vec::new();
                    for action in actions {
                        let expected = model.next_state(&state, action.clone());
                        let parent = state.clone();
                        match apply(&model, &mut memo, &mut state, action.clone(), None) {
                            Applied::Disabled => {
                                assert!(expected.is_none(), "{action:?} is enabled");
                            }
                            Applied::Elsewhere(_) => panic!("{action:?} not stepped in place"),
                            Applied::Crowded(..) => panic!("{action:?}: crowded without a bound"),
                            Applied::Done(changes) => {
                                let expected =
                                    expected.clone().expect("stateright has a successor");
                                assert!(state == expected, "{action:?}: another successor");
                                undo(&mut state, changes);
                                assert!(state == parent, "{action:?}: not undone");
                                steps += 1;
                                successors.push(expected);
                            }
                        }
                        // Again with room for no more messages than the parent has: a step
                        // that sends more than it takes is crowded.
                        let most = state.network.len();
                        let crowd = Some((most, most));
                        match apply(&model, &mut memo, &mut state, action.clone(), crowd) {
                            Applied::Disabled => assert!(expected.is_none()),
                            Applied::Elsewhere(_) => panic!("{action:?} not stepped in place"),
                            Applied::Done(changes) => {
                                let expected = expected.expect("stateright has a successor");
                                assert!(expected.network.len() <= most, "{action:?}: not crowded");
                                assert!(state == expected, "{action:?}: another successor");
                                undo(&mut state, changes);
                                assert!(state == parent, "{action:?}: not undone");
                            }
                            Applied::Crowded(changes, _) => {
                                let expected = expected.expect("stateright has a successor");
                                assert!(expected.network.len() > most, "{action:?}: crowded");
                                // The search skips judging such a step: its servers must be
                                // the parent's.
                                if changes.servers_unchanged(&state) {
                                    assert!(
                                        state.actor_states == parent.actor_states
                                            && state.actor_storages == parent.actor_storages
                                            && state.crashed == parent.crashed,
                                        "{action:?}: said to leave the servers as they were"
                                    );
                                    unchanged += 1;
                                }
                                assert!(state.network == parent.network, "{action:?}: network");
                                let mut rest = expected.clone();
                                rest.network = parent.network.clone();
                                assert!(state == rest, "{action:?}: another successor");
                                undo(&mut state, changes);
                                assert!(state == parent, "{action:?}: not undone");
                                crowded += 1;
                            }
                        }
                    }
                    successors.retain(|s| Model::within_boundary(&model, s));
                    if successors.is_empty() {
                        break;
                    }
                    state = successors.swap_remove(rng.below(successors.len() as u64) as usize);
                }
            }
        }
        assert!(steps > 10_000, "only {steps} steps compared");
        assert!(crowded > 1_000, "only {crowded} crowded steps compared");
        assert!(
            unchanged > 100 && unchanged < crowded,
            "{unchanged} of {crowded} crowded steps left the servers as they were"
        );
    }
}
