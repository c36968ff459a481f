//! Bounded model checks that run in `cargo test`: small configurations explored completely,
//! with their state counts pinned so that a change to the state space shows up in review, and
//! one check per planted bug. The full default suite runs from the CLI (`cargo run --release -p
//! model`), which CI runs too.

use model::bugs::Bug;
use model::checker::{check, CheckReport, ModelConfig, NetworkKind, PropertyStatus};
use std::time::Duration;

fn run(config: ModelConfig) -> CheckReport {
    // One thread: the count of distinct states is then deterministic.
    check(&[config], 1, Duration::from_secs(3600), &mut |_| {})
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

/// Every planted bug is caught, as a violation of the property the catalogue names; together
/// the bugs prove that these Always properties can fail.
#[test]
fn every_planted_bug_is_caught() {
    let mut caught: Vec<&str> = Vec::new();
    for bug in Bug::ALL {
        let report = run(ModelConfig::for_bug(bug));
        assert_eq!(
            report.status(bug.expected_violation()),
            Some(PropertyStatus::Violated),
            "bug {bug} not caught as {}",
            bug.expected_violation()
        );
        assert!(!report.passed());
        for c in &report.configs {
            for counterexample in &c.counterexamples {
                assert!(!counterexample.steps.is_empty());
                caught.push(counterexample.property);
            }
        }
    }
    for name in [
        "ElectionSafety",
        "LeaderCompleteness",
        "ElectableHoldsCommitted",
        "NoCommitOnMinority",
    ] {
        assert!(caught.contains(&name), "{name} never caught: {caught:?}");
    }
}

const PINNED_ONE_TERM: usize = 3284;
const PINNED_ONE_TERM_NO_SYMMETRY: usize = 11860;
const PINNED_CRASH: usize = 66232;
