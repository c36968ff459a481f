//! Bounded model checks that run in `cargo test`: small configurations explored completely,
//! with their state counts pinned so that a change to the state space shows up in review, and
//! one check per planted bug. The full default suite runs from the CLI (`cargo run --release -p
//! model`), which CI runs too.

use model::bugs::Bug;
use model::checker::{check, CheckReport, ModelConfig, NetworkKind, PropertyStatus};
use std::time::Duration;

fn run(config: ModelConfig) -> CheckReport {
    // The count of distinct states is the same with any number of threads.
    check(&[config], None, 2, Duration::from_secs(3600), &mut |_| {})
}

fn small(name: &str) -> ModelConfig {
    ModelConfig {
        name: name.into(),
        max_term: 1,
        max_in_flight: 3,
        ..ModelConfig::default()
    }
}

fn assert_all_always_hold(report: &CheckReport) {
    assert!(report.complete(), "exploration incomplete");
    for p in report.properties() {
        if p.expectation == model::checker::properties::Expect::Always {
            assert_eq!(p.status, PropertyStatus::Holds, "{} violated", p.name);
        }
    }
}

#[test]
fn one_term_three_servers_is_safe_and_elects_and_commits() {
    let report = run(small("one-term"));
    assert_all_always_hold(&report);
    assert_eq!(
        report.status("LeaderElected"),
        Some(PropertyStatus::Example)
    );
    assert_eq!(
        report.status("EntryCommitted"),
        Some(PropertyStatus::Example)
    );
    assert_eq!(report.unique_states(), PINNED_ONE_TERM);
}

#[test]
fn symmetry_reduction_gives_the_same_verdicts_with_fewer_states() {
    let reduced = run(small("symmetric"));
    let full = run(ModelConfig {
        symmetry: false,
        ..small("full")
    });
    assert_all_always_hold(&full);
    assert_eq!(reduced.properties(), full.properties());
    assert!(
        reduced.unique_states() < full.unique_states(),
        "symmetry reduced nothing: {} vs {}",
        reduced.unique_states(),
        full.unique_states()
    );
    assert_eq!(full.unique_states(), PINNED_ONE_TERM_NO_SYMMETRY);
}

#[test]
fn crash_and_recovery_from_durable_is_safe_and_catches_up() {
    let report = run(ModelConfig {
        max_crashes: 1,
        heartbeats: false,
        ..small("crash")
    });
    assert_all_always_hold(&report);
    assert_eq!(
        report.status("RecoveredNodeCatchesUp"),
        Some(PropertyStatus::Example)
    );
    assert_eq!(report.unique_states(), PINNED_CRASH);
}

#[test]
fn lossy_and_other_networks_are_safe() {
    // A duplicating network never forgets a message, so its bound counts every distinct
    // message ever sent: it gets two servers and a larger bound.
    for (network, lossy, servers, max_in_flight) in [
        (NetworkKind::Unordered, true, 3, 3),
        (NetworkKind::Ordered, false, 3, 3),
        (NetworkKind::Duplicating, false, 2, 8),
    ] {
        let report = run(ModelConfig {
            network,
            lossy,
            servers,
            max_in_flight,
            heartbeats: false,
            ..small("network")
        });
        assert_all_always_hold(&report);
        assert_eq!(
            report.status("EntryCommitted"),
            Some(PropertyStatus::Example),
            "{network} lossy={lossy}"
        );
    }
}

#[test]
fn single_server_commits_alone() {
    let report = run(ModelConfig {
        servers: 1,
        ..small("single")
    });
    assert_all_always_hold(&report);
    assert_eq!(
        report.status("EntryCommitted"),
        Some(PropertyStatus::Example)
    );
}

/// A complete run reports the same number of distinct states every time and with any number
/// of threads: the symmetry representative of a state is canonical.
#[test]
fn counts_are_reproducible_whatever_the_threads() {
    let config = ModelConfig {
        max_crashes: 1,
        heartbeats: false,
        ..small("reproducible")
    };
    let counts: Vec<usize> = [1, 2, 2, 4]
        .into_iter()
        .map(|threads| {
            check(
                std::slice::from_ref(&config),
                None,
                threads,
                Duration::from_secs(3600),
                &mut |_| {},
            )
            .unique_states()
        })
        .collect();
    assert!(counts.iter().all(|c| *c == PINNED_CRASH), "{counts:?}");
}

/// A panic inside the Peer (here the assertion of the planted `panic-on-stale-rejection`) is a
/// counterexample to PeerInvariant, with the shortest path and the panic's message, not a
/// crashed checker.
#[test]
fn a_panic_in_the_peer_is_a_counterexample() {
    let report = run(ModelConfig {
        bug: Some(Bug::PanicOnStaleRejection),
        stop_at_first_violation: true,
        lossy: true,
        ..small("panic")
    });
    assert_eq!(
        report.status("PeerInvariant"),
        Some(PropertyStatus::Violated)
    );
    let counterexample = report.configs[0]
        .counterexamples
        .iter()
        .find(|c| c.property == "PeerInvariant")
        .expect("a PeerInvariant counterexample");
    assert!(
        counterexample
            .faults
            .iter()
            .any(|f| f.contains("panicked: rejection below the matched index")),
        "{:?}",
        counterexample.faults
    );
    // The last step is the delivery of the stale rejection that trips the assertion.
    let last = counterexample.steps.last().expect("steps");
    assert!(
        last.contains("AppendEntriesResponse") && last.contains("success: false"),
        "{last}"
    );
    assert!(!counterexample.encoded.is_empty());
}

const PINNED_ONE_TERM: usize = 7256;
const PINNED_ONE_TERM_NO_SYMMETRY: usize = 43306;
const PINNED_CRASH: usize = 88511;

/// The explorer's own search (stateright's, over the model whose states are canonical
/// representatives) counts exactly what `model check` counts.
#[test]
fn the_explorer_reduces_symmetry_as_the_check_does() {
    use stateright::{Checker, Model};
    let config = small("explorer");
    let checked = run(config.clone()).unique_states();
    let explorer = model::checker::symmetric::Symmetric(config.into_model())
        .checker()
        .threads(2)
        .spawn_bfs()
        .join();
    assert!(explorer.is_done());
    assert_eq!(explorer.unique_state_count(), checked);
    assert_eq!(checked, PINNED_ONE_TERM);
}

/// A counterexample's explorer link, followed step by step through the symmetric explorer's
/// states and actions, ends in a state that violates the property.
#[test]
fn a_counterexample_link_leads_to_the_violation_in_the_explorer() {
    use stateright::Model;
    let config = ModelConfig {
        bug: Some(Bug::PanicOnStaleRejection),
        stop_at_first_violation: true,
        lossy: true,
        ..small("link")
    };
    let report = run(config.clone());
    let counterexample = report.configs[0]
        .counterexamples
        .first()
        .expect("panic-on-stale-rejection is caught");
    let symmetric = model::checker::symmetric::Symmetric(config.into_model());
    let mut indices = counterexample
        .encoded
        .split('/')
        .map(|i| i.parse::<usize>().expect("an index"));
    let mut state = symmetric.init_states()[indices.next().expect("the initial state")].clone();
    let mut steps = 0;
    for index in indices {
        let mut actions = Vec::new();
        symmetric.actions(&state, &mut actions);
        state = symmetric
            .next_state(&state, actions[index].clone())
            .expect("the link's action is enabled");
        steps += 1;
    }
    assert_eq!(steps, counterexample.steps.len());
    let property = symmetric
        .properties()
        .into_iter()
        .find(|p| p.name == counterexample.property)
        .expect("the property");
    assert!(
        !(property.condition)(&symmetric, &state),
        "the link ends in a state that satisfies {}",
        counterexample.property
    );
}

/// A step that breaks a safety property on its way out of the bounds is reported, though the
/// state it leads to is not explored. With one message in flight, a pre-candidate's broadcast
/// is beyond the bounds, so the bug's only violating step is one that leaves them.
#[test]
fn a_violation_on_a_step_beyond_the_bounds_is_reported() {
    let config = ModelConfig {
        bug: Some(Bug::PreVoteBumpsTerm),
        pre_vote: true,
        max_in_flight: 1,
        stop_at_first_violation: true,
        ..small("beyond")
    };
    let report = run(config);
    assert_eq!(
        report.status("PreVoteChangesNothing"),
        Some(PropertyStatus::Violated)
    );
    let counterexample = report.configs[0]
        .counterexamples
        .iter()
        .find(|c| c.property == "PreVoteChangesNothing")
        .expect("a PreVoteChangesNothing counterexample");
    assert_eq!(counterexample.steps.len(), 1, "{:?}", counterexample.steps);
    assert!(
        counterexample.steps[0].contains("precandidate t1"),
        "{:?}",
        counterexample.steps
    );
}
