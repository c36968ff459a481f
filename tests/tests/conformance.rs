//! Conformance: model traces replayed step by step against real rdb-server nodes (real gRPC
//! on 127.0.0.1, real file storage, real restarts from files). See `tests/src/conformance.rs`
//! and README.md, "Conformance".

use model::bugs::Bug;
use model::checker::properties::{self, Expect};
use model::checker::trace::{self, Trace};
use tests::conformance::{replay, Mismatch, ReplayOptions};
use tests::corpus::{self, first_divergence, first_peer_divergence, is_counterexample};

/// The seed of the walks generated during the test (the corpus uses its own, see its README).
const FRESH_SEED: u64 = 20_261_126;
const FRESH_WALKS: usize = 500;
const MAX_STEPS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_replays_the_corpus_and_fresh_walks() {
    let corpus = corpus::load();
    let fresh = trace::walks(FRESH_WALKS, FRESH_SEED, MAX_STEPS);
    let (mut traces, mut steps, mut crash_traces) = (0, 0, 0);
    let mut counterexamples = 0;
    let mut by_action: std::collections::BTreeMap<&str, usize> = Default::default();
    for trace in corpus.iter().chain(fresh.iter()) {
        let outcome = replay(trace, ReplayOptions::default()).await;
        if is_counterexample(trace) {
            // The trace is a behaviour of a buggy Peer: a correct node must not follow it, and
            // must part from it exactly where the correct Peer does, in the same field (not
            // at some failure of the replay's own set-up).
            let mismatch = outcome.expect_err(&format!(
                "a correct node followed the counterexample {} to its end",
                trace.header.name
            ));
            let divergence = first_peer_divergence(trace)
                .unwrap_or_else(|| panic!("{}: the correct Peer follows it", trace.header.name));
            assert_eq!(mismatch.trace, trace.header.name);
            assert_eq!(
                (mismatch.step, mismatch.what.as_str()),
                (divergence.step, divergence.what.as_str()),
                "{}: the node parts from the counterexample elsewhere than the Peer: {mismatch}",
                trace.header.name
            );
            counterexamples += 1;
            continue;
        }
        let replayed = outcome.unwrap_or_else(|mismatch| panic!("{mismatch}"));
        for step in &trace.steps {
            *by_action.entry(step.action.name()).or_default() += 1;
        }
        traces += 1;
        steps += replayed.steps;
        crash_traces += usize::from(replayed.crashed);
    }
    // Every Sometimes property's example is among the replayed traces.
    for property in properties::ALL
        .iter()
        .filter(|p| p.expectation == Expect::Sometimes)
    {
        assert!(
            corpus
                .iter()
                .any(|t| t.header.property.as_deref() == Some(property.name)
                    && t.header.origin == "example"),
            "the corpus has no example of {}",
            property.name
        );
    }
    assert_eq!(
        counterexamples,
        Bug::traced().count(),
        "one counterexample per traced planted bug"
    );
    // Written to stdout itself: the harness captures println!, and this line should show
    // even when the test passes.
    // Every action of the trace format was replayed on real nodes, pre-vote's included.
    for action in trace::Action::ALL {
        assert!(
            by_action.contains_key(action.name()),
            "no replayed trace has a {action} step: {by_action:?}"
        );
    }
    let line = format!(
        "conformance: traces={traces} steps={steps} crash_traces={crash_traces} \
         steps by action: {by_action:?}\n"
    );
    std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes()).expect("stdout");
    assert!(traces >= 500 && steps >= 10_000 && crash_traces >= 100);
}

/// A walk long enough to alter a step in its middle.
fn some_walk() -> Trace {
    trace::walks(20, FRESH_SEED, MAX_STEPS)
        .into_iter()
        .find(|t| t.steps.len() >= 20)
        .expect("a walk of 20 steps")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_expected_value_is_reported_at_its_step() {
    let mut trace = some_walk();
    let target = trace.steps.len() / 2;
    let step = &mut trace.steps[target - 1];
    let node = step
        .nodes
        .iter_mut()
        .find(|n| !n.crashed)
        .expect("a running node");
    node.term += 1;
    let server = node.id;
    let mismatch: Mismatch = replay(&trace, ReplayOptions::default())
        .await
        .expect_err("the altered trace must not replay");
    println!("{mismatch}");
    assert_eq!(mismatch.step, target, "{mismatch}");
    assert_eq!(mismatch.what, format!("node {server} term"), "{mismatch}");
    assert_eq!(
        mismatch.expected,
        (mismatch.actual.parse::<u64>().unwrap() + 1).to_string()
    );
    let text = mismatch.to_string();
    assert!(
        text.contains(&trace.header.name) && text.contains(trace.steps[target - 1].action.name())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_sent_message_is_reported_at_its_step() {
    let mut trace = some_walk();
    let (index, _) = trace
        .steps
        .iter()
        .enumerate()
        .find(|(_, s)| !s.sent.is_empty())
        .expect("a step that sends");
    trace.steps[index].sent.pop();
    let mismatch = replay(&trace, ReplayOptions::default())
        .await
        .expect_err("the altered trace must not replay");
    assert_eq!(
        (mismatch.step, mismatch.what.as_str()),
        (index + 1, "sent"),
        "{mismatch}"
    );
}

/// Planted bugs that live in the Peer but that correct traces cannot show on a node, each with
/// the reason. The default check catches every one of them.
const NOT_SHOWN_BY_CORRECT_TRACES: [(Bug, &str); 8] = [
    (
        Bug::ElectionMajorityOfOthers,
        "every corpus trace and fresh walk has three servers, where a majority of the others is \
         a majority of the cluster; the mistake shows with four (its counterexample)",
    ),
    (
        Bug::CommitAtMiddleIndex,
        "every corpus trace and fresh walk has three servers, where the middle match index is \
         a majority's; the mistake shows with four (its counterexample)",
    ),
    (
        Bug::UpToDateByIndexOnly,
        "no corpus trace or fresh walk has a vote between logs whose last terms and lengths \
         disagree",
    ),
    (
        Bug::NoConsistencyCheck,
        "no corpus trace or fresh walk sends AppendEntries whose previous entry the follower \
         has with another term",
    ),
    (
        Bug::CommitPastNewEntries,
        "no corpus trace or fresh walk commits on a follower holding stale entries past a batch",
    ),
    (
        Bug::InflightBytesLeak,
        "the mistake stays in the leader's window record, which a trace does not show",
    ),
    (
        Bug::PanicOnStaleRejection,
        "the buggy Peer panics at the step that shows it: there is no state to compare",
    ),
    (
        Bug::ProposeWhileTransferring,
        "no corpus trace or fresh walk proposes while a transfer runs; and a node holds such \
         proposals back (the driver), so its Peer would not see one",
    ),
];

/// The correct traces the test below replays: the corpus without its counterexamples, and
/// fresh walks.
fn correct_traces() -> Vec<Trace> {
    let mut traces = corpus::load();
    traces.retain(|t| !is_counterexample(t));
    traces.extend(trace::walks(200, FRESH_SEED, MAX_STEPS));
    traces
}

/// The list above says what it says: a model Peer running each of those bugs follows every
/// correct trace to its end, except the one that panics, which panics on some trace. (Should a
/// trace come to show one of them, this fails, and the bug belongs in the test below.)
#[test]
fn the_bugs_correct_traces_cannot_show_are_not_shown() {
    let traces = correct_traces();
    for (bug, why) in NOT_SHOWN_BY_CORRECT_TRACES {
        let outcomes: Vec<_> = traces
            .iter()
            .map(|t| {
                let outcome =
                    std::panic::catch_unwind(|| first_divergence(t, Some(bug))).map_err(|_| ());
                (t.header.name.as_str(), outcome)
            })
            .collect();
        if bug == Bug::PanicOnStaleRejection {
            assert!(
                outcomes.iter().any(|(_, o)| o.is_err()),
                "{bug}: no correct trace makes the buggy Peer panic ({why})"
            );
            continue;
        }
        for (name, outcome) in outcomes {
            assert_eq!(
                outcome,
                Ok(None),
                "{bug} is listed as not shown by correct traces ({why}), but a Peer running it \
                 parts from {name} (Err: it panicked)"
            );
        }
    }
}

/// Replaying correct traces against nodes whose Peer runs a planted bug reports a mismatch,
/// for every bug that lives in the Peer (not [`Bug::in_storage`]: the counterexample of
/// `vote-not-persisted` is refused by a correct node in the test above) and that correct
/// traces can show (see [`NOT_SHOWN_BY_CORRECT_TRACES`]). Each replay must end exactly where a
/// model Peer running the same bug parts from the trace, in the same field, with storage that
/// holds what each step asked to persist; a trace that the buggy Peer follows must replay to
/// its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_running_a_planted_bug_is_caught() {
    let traces = correct_traces();
    let shown = Bug::ALL
        .into_iter()
        .filter(|b| !b.in_storage() && !NOT_SHOWN_BY_CORRECT_TRACES.iter().any(|(n, _)| n == b));
    let mut caught_bugs = 0;
    for bug in shown {
        let options = ReplayOptions { bug: Some(bug) };
        let mut caught = None;
        for trace in &traces {
            let expected = first_divergence(trace, Some(bug));
            match (replay(trace, options).await, expected) {
                (Ok(_), None) => {}
                (Err(mismatch), Some(divergence)) => {
                    assert_eq!(
                        (mismatch.step, mismatch.what.as_str()),
                        (divergence.step, divergence.what.as_str()),
                        "planted {bug}: the node parts from {} elsewhere than the buggy Peer: \
                         {mismatch}",
                        trace.header.name
                    );
                    caught = Some(mismatch);
                    break;
                }
                (Ok(_), Some(divergence)) => panic!(
                    "planted {bug}: the node followed {} to its end, but the buggy Peer parts \
                     from it at step {} ({})",
                    trace.header.name, divergence.step, divergence.what
                ),
                (Err(mismatch), None) => panic!(
                    "planted {bug}: the buggy Peer follows {}, but the node does not: {mismatch}",
                    trace.header.name
                ),
            }
        }
        let mismatch = caught.unwrap_or_else(|| panic!("no trace caught the planted bug {bug}"));
        println!(
            "planted {bug}: caught at {} step {} ({})",
            mismatch.trace, mismatch.step, mismatch.what
        );
        caught_bugs += 1;
    }
    println!(
        "nodes running {caught_bugs} planted bugs were caught where the buggy Peer parts; not \
         shown by correct traces: {}",
        NOT_SHOWN_BY_CORRECT_TRACES
            .iter()
            .map(|(bug, why)| format!("{bug} ({why})"))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

/// The other direction for each traced bug's own counterexample: a node whose Peer runs the
/// bug makes the same mistake the model's buggy Peer made, at the same step, and so follows the
/// counterexample to its end (the correct node, above, parts from it where the correct Peer
/// does). A bug planted in the model's storage ([`Bug::in_storage`]) is left out: a node
/// cannot run it. So is propose-while-transferring: a node holds a proposal while its leader
/// transfers (the driver's own guard, `impl/src/driver.rs`), so its Peer, buggy or not, never
/// sees the proposal that the buggy Peer takes; the correct node's refusal is checked above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_running_a_planted_bug_follows_its_counterexample() {
    let corpus = corpus::load();
    let mut followed = 0;
    for bug in Bug::traced().filter(|b| !b.in_storage() && *b != Bug::ProposeWhileTransferring) {
        let trace = corpus::counterexample_of(&corpus, bug)
            .unwrap_or_else(|| panic!("the corpus has no counterexample of {bug}"));
        assert_eq!(
            first_divergence(trace, Some(bug)),
            None,
            "the model's Peer running {bug} does not follow its own counterexample"
        );
        let replayed = replay(trace, ReplayOptions { bug: Some(bug) })
            .await
            .unwrap_or_else(|mismatch| {
                panic!("a node running {bug} parts from its counterexample: {mismatch}")
            });
        assert_eq!(replayed.steps, trace.steps.len(), "{bug}");
        followed += 1;
    }
    println!("buggy nodes followed {followed} counterexamples to their end");
}

/// The other half of `impl/tests/test_no_planted_bugs.rs`: a binary that can run a Peer with a
/// planted bug (this one) links `model::PLANTED_MARKER`, so its absence from the server
/// binaries means something.
#[test]
fn a_binary_that_plants_bugs_links_the_marker() {
    let path = std::env::current_exe().expect("this test binary");
    let bytes = std::fs::read(&path).expect("read this test binary");
    let marker = model::PLANTED_MARKER.as_bytes();
    assert!(
        bytes.windows(marker.len()).any(|window| window == marker),
        "{} plants bugs but does not contain the marker",
        path.display()
    );
}
