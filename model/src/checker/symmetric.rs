//! The model as the explorer walks it with symmetry reduction: every state is replaced by its
//! canonical representative (see [`engine::canonical`]), so the explorer's own search counts
//! what `model check` counts, one state per permutation of server ids.
//!
//! The price is the names: after each step the servers are renamed to the representative's
//! order, so `S0` of one state need not be `S0` of the next. `model check` prints a
//! counterexample with the names of the path as it was taken; its explorer link follows the
//! same path through the representatives.

use super::engine::{self, canonical};
use super::properties;
use super::{RaftModel, RaftState};
use stateright::{Expectation, Model, Path, Property};

/// A [`RaftModel`] whose states are canonical representatives.
pub struct Symmetric(pub RaftModel);

use engine::RaftAction;

impl Model for Symmetric {
    type State = RaftState;
    type Action = RaftAction;

    fn init_states(&self) -> Vec<RaftState> {
        self.0.init_states().iter().map(canonical).collect()
    }

    fn actions(&self, state: &RaftState, actions: &mut Vec<RaftAction>) {
        self.0.actions(state, actions)
    }

    fn next_state(&self, last: &RaftState, action: RaftAction) -> Option<RaftState> {
        self.0.next_state(last, action).map(|next| canonical(&next))
    }

    fn format_action(&self, action: &RaftAction) -> String {
        self.0.format_action(action)
    }

    fn format_step(&self, last: &RaftState, action: RaftAction) -> Option<String> {
        self.0.format_step(last, action)
    }

    fn as_svg(&self, path: Path<RaftState, RaftAction>) -> Option<String> {
        self.0.as_svg(path)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        properties::ALL
            .iter()
            .zip(CONDITIONS)
            .map(|(property, condition)| Property {
                expectation: match property.expectation {
                    properties::Expect::Always => Expectation::Always,
                    properties::Expect::Sometimes => Expectation::Sometimes,
                },
                name: property.name,
                condition,
            })
            .collect()
    }

    fn within_boundary(&self, state: &RaftState) -> bool {
        Model::within_boundary(&self.0, state)
    }
}

/// The condition of `properties::ALL[I]`, on the wrapped model. A panic while evaluating it
/// is PeerInvariant's violation, as in `model check`: the explorer shows PeerInvariant
/// violated in that state and no other property either way.
fn condition<const I: usize>(model: &Symmetric, state: &RaftState) -> bool {
    let property = &properties::ALL[I];
    match property.holds(&model.0, state) {
        Ok(holds) => holds,
        Err(_) if I == properties::PEER_INVARIANT => false,
        Err(_) => property.expectation == properties::Expect::Always,
    }
}

type Condition = fn(&Symmetric, &RaftState) -> bool;

/// One condition per property, in [`properties::ALL`] order (the length is checked by the type).
const CONDITIONS: [Condition; properties::ALL.len()] = [
    condition::<0>,
    condition::<1>,
    condition::<2>,
    condition::<3>,
    condition::<4>,
    condition::<5>,
    condition::<6>,
    condition::<7>,
    condition::<8>,
    condition::<9>,
    condition::<10>,
    condition::<11>,
    condition::<12>,
    condition::<13>,
    condition::<14>,
    condition::<15>,
    condition::<16>,
    condition::<17>,
    condition::<18>,
    condition::<19>,
    condition::<20>,
    condition::<21>,
    condition::<22>,
];

/// The explorer's encoding (`/#/steps/...`) of `path`, a path of the plain model, as the
/// symmetric explorer walks it: at each step, the index of the action whose representative
/// successor is the class of the path's next state. `None` if some step has no such action
/// (the model would not be symmetric).
pub fn encode(model: &RaftModel, path: &Path<RaftState, RaftAction>) -> Option<String> {
    let class = |state: &RaftState| engine::canonical_fingerprint(state).0;
    let states = path.clone().into_states();
    let inits: Vec<RaftState> = model.init_states().iter().map(canonical).collect();
    let first = states.first()?;
    let init = inits.iter().position(|s| class(s) == class(first))?;
    let mut at = inits[init].clone();
    let mut encoded = vec![init.to_string()];
    for next in &states[1..] {
        let want = class(next);
        let mut actions = Vec::new();
        model.actions(&at, &mut actions);
        let step = actions.into_iter().enumerate().find_map(|(i, action)| {
            let successor = canonical(&model.next_state(&at, action)?);
            (class(&successor) == want).then_some((i, successor))
        });
        let (i, successor) = step?;
        encoded.push(i.to_string());
        at = successor;
    }
    Some(encoded.join("/"))
}
