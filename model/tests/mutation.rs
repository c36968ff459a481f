//! The judge of `scripts/mutants.sh`: the default check (the exhaustive suite, then the
//! fixed-seed simulation budget), failing only when it reports a violated Always property,
//! a Peer panic included, with a counterexample. Ignored in a plain `cargo test`, which runs
//! the suite's parts on their own elsewhere; cargo-mutants runs it with `--ignored`.

use model::checker::simulate::SimulationPlan;
use model::checker::{check, properties, ModelConfig, PropertyStatus};
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The default suite's configurations by the time a complete run takes (README, "The model
/// checker"); any other runs last.
const QUICKEST_FIRST: [&str; 9] = [
    "transfer",
    "two-requests",
    "transfer-pre-vote",
    "persist",
    "flow-control",
    "three-terms-lossy",
    "pre-vote",
    "crash",
    "base",
];

#[test]
#[ignore = "the mutation-testing judge; run by scripts/mutants.sh"]
fn default_check_finds_no_violation() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Each configuration stops at its first violation: a mutant needs one counterexample.
    // The suite's configurations run from the quickest to the slowest, so that a mutant that
    // several of them catch is caught in seconds; the bounds are the default suite's.
    let mut configs: Vec<ModelConfig> = ModelConfig::default_suite()
        .into_iter()
        .map(|config| ModelConfig {
            stop_at_first_violation: true,
            ..config
        })
        .collect();
    configs.sort_by_key(|config| {
        QUICKEST_FIRST
            .iter()
            .position(|name| *name == config.name)
            .unwrap_or(QUICKEST_FIRST.len())
    });
    let plan = SimulationPlan::default_budget(None, threads);
    let report = check(
        &configs,
        Some(&plan),
        threads,
        Duration::from_secs(3600),
        &mut |line| eprintln!("{line}"),
    );
    for p in report.properties() {
        if p.expectation == properties::Expect::Sometimes && p.status != PropertyStatus::Example {
            // Not a safety finding: the mutant may only have lost liveness.
            println!("JUDGE no_example {}", p.name);
        }
    }
    let violated: Vec<&str> = report
        .properties()
        .iter()
        .filter(|p| p.status == PropertyStatus::Violated)
        .map(|p| p.name)
        .collect();
    if !violated.is_empty() {
        println!("{}", report.summary());
    }
    assert!(violated.is_empty(), "JUDGE violated {violated:?}");
}

/// The judge's order names every configuration of the default suite, so that none of them
/// is left to run last by mistake.
#[test]
fn the_quickest_first_order_names_every_default_configuration() {
    let names: Vec<String> = ModelConfig::default_suite()
        .into_iter()
        .map(|config| config.name)
        .collect();
    for name in &names {
        assert!(
            QUICKEST_FIRST.contains(&name.as_str()),
            "{name} is missing from QUICKEST_FIRST"
        );
    }
    assert_eq!(names.len(), QUICKEST_FIRST.len());
}
