//! Pre-vote and leader stickiness (§9.6) on real processes: a node cut off from the cluster for
//! five seconds does not raise its term, and when the network heals the leader and its term
//! are unchanged on every node.
//!
//! Three `rdb-server` processes (release build), each in its own network namespace so that
//! one can be cut off (root only; without root the test says SKIP). The control runs the same
//! isolation without pre-vote: the isolated node campaigns in ever higher terms and, once
//! healed, its term deposes the leader. That is what the first test would see if pre-vote
//! or stickiness were broken.

use std::time::{Duration, Instant};
use tests::cluster::{
    build_release_binaries, client_runtime, is_root, node_status, wait_for_leader, ProcessCluster,
};

/// How long the first election may take.
const ELECTION_PATIENCE: Duration = Duration::from_secs(20);
/// How long the node stays cut off: many election timeouts (300 to 600 ms).
const ISOLATION: Duration = Duration::from_secs(5);
/// How long the healed cluster is watched: several election timeouts and many heartbeats.
const WATCH: Duration = Duration::from_secs(3);

/// (leader id, term) of every node, as each reports it (`None` for a node that does not
/// answer).
async fn views(addrs: &[String]) -> Vec<Option<(u64, u64)>> {
    let mut seen = Vec::new();
    for addr in addrs {
        seen.push(node_status(addr).await.map(|s| (s.leader_id, s.term)));
    }
    seen
}

/// Starts three nodes with `flags`, isolates a follower for [`ISOLATION`], heals, and
/// returns the first (leader, term), the isolated node, its term just before the heal, and
/// every view seen while watching the healed cluster for [`WATCH`]. `None` without root.
fn isolate_a_follower(flags: &[&str]) -> Option<IsolationRun> {
    if !is_root() {
        eprintln!("SKIP: isolating a node needs network namespaces, which need root");
        return None;
    }
    let binaries = build_release_binaries().expect("building rdb-server");
    let runtime = client_runtime();
    let mut cluster =
        ProcessCluster::start_with_flags(binaries, 3, true, flags).expect("starting the cluster");
    if !cluster.can_partition() {
        eprintln!("SKIP: network namespaces could not be made");
        return None;
    }
    let addrs = cluster.addrs().to_vec();
    let all: Vec<&String> = addrs.iter().collect();
    let (leader, term) = runtime.block_on(wait_for_leader(&all, 0, ELECTION_PATIENCE));
    let isolated = (1..=3).find(|&n| n != leader as usize).expect("a follower");
    cluster.isolate(isolated).expect("isolating a follower");
    std::thread::sleep(ISOLATION);
    let isolated_term = runtime
        .block_on(node_status(&addrs[isolated - 1]))
        .expect("the isolated node answers its clients")
        .term;
    cluster.heal().expect("healing the network");
    let start = Instant::now();
    let mut watched = Vec::new();
    while start.elapsed() < WATCH {
        watched.push(runtime.block_on(views(&addrs)));
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(IsolationRun {
        leader,
        term,
        isolated: isolated as u64,
        isolated_term,
        watched,
    })
}

struct IsolationRun {
    leader: u64,
    term: u64,
    isolated: u64,
    isolated_term: u64,
    watched: Vec<Vec<Option<(u64, u64)>>>,
}

/// One test, two runs in turn: the network namespaces of one test process are named after
/// its pid, so two clusters of one process must not exist at once.
#[test]
fn an_isolated_node_does_not_depose_the_leader_when_it_comes_back() {
    with_pre_vote();
    without_pre_vote();
}

fn with_pre_vote() {
    // Pre-vote is the default; the flag says so explicitly.
    let Some(run) = isolate_a_follower(&["--pre-vote"]) else {
        return;
    };
    assert_eq!(
        run.isolated_term, run.term,
        "node {} raised its term from {} to {} while cut off (pre-vote must keep it)",
        run.isolated, run.term, run.isolated_term
    );
    // Every node stays in the leader's term; the two that never lost it keep following it,
    // and the returning node follows it again once a heartbeat reaches it.
    for views in &run.watched {
        for (node, view) in views.iter().enumerate() {
            let node = node as u64 + 1;
            let (leader, term) = view.unwrap_or_else(|| panic!("node {node} did not answer"));
            let follows = leader == run.leader || (node == run.isolated && leader == 0);
            assert!(
                term == run.term && follows,
                "after the heal node {node} saw leader {leader} of term {term}; the leader was \
                 {} of term {} (all views: {views:?})",
                run.leader,
                run.term
            );
        }
    }
    let last = run.watched.last().expect("the healed cluster was watched");
    assert!(
        last.iter()
            .all(|view| *view == Some((run.leader, run.term))),
        "node {} does not follow leader {} again {WATCH:?} after the heal: {last:?}",
        run.isolated,
        run.leader
    );
    eprintln!(
        "node {} cut off for {ISOLATION:?} stayed in term {}; leader {} of term {} kept on \
         every node for {WATCH:?} after the heal",
        run.isolated, run.isolated_term, run.leader, run.term
    );
}

/// The control: without pre-vote the same isolation deposes the leader.
fn without_pre_vote() {
    let Some(run) = isolate_a_follower(&["--no-pre-vote"]) else {
        return;
    };
    assert!(
        run.isolated_term > run.term,
        "node {} stayed in term {} while cut off for {ISOLATION:?} without pre-vote",
        run.isolated,
        run.term
    );
    let last = run.watched.last().expect("the healed cluster was watched");
    let deposed = last.iter().flatten().all(|(_, term)| *term > run.term);
    assert!(
        deposed,
        "without pre-vote the leader {} of term {} survived the return of node {} (term {}): \
         {last:?}",
        run.leader, run.term, run.isolated, run.isolated_term
    );
    eprintln!(
        "without pre-vote node {} reached term {} while cut off; after the heal every node is \
         past term {}: {last:?}",
        run.isolated, run.isolated_term, run.term
    );
}
