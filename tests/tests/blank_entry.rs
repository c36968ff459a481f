//! A new leader's blank entry (§8) on real processes: the commit index reaches the leader's
//! last index right after each election, with no client write.
//!
//! Three `rdb-server` processes (release build) on 127.0.0.1. After the first election every
//! node must report a commit index equal to the leader's last index, which is at least 1 (the
//! blank entry). One value is written, the leader is killed, and the two others elect a new
//! leader of a later term: its log must grow by exactly one entry (its own blank entry) and
//! both survivors must commit and apply it, again with no client write.

use rdb_server::client::Client;
use std::time::{Duration, Instant};
use tests::cluster::{node_status, start_and_elect, wait_for_leader};

/// How long an election may take.
const ELECTION_PATIENCE: Duration = Duration::from_secs(20);
/// How long the blank entry may take to commit and apply on every node after an election.
const COMMIT_PATIENCE: Duration = Duration::from_secs(10);

/// Waits until every node at `addrs` has committed and applied exactly `last`, the leader's
/// last index; panics after [`COMMIT_PATIENCE`] with the statuses last seen.
async fn wait_for_commit(addrs: &[&String], last: u64, when: &str) {
    let start = Instant::now();
    loop {
        let mut seen = Vec::new();
        for addr in addrs {
            seen.push(
                node_status(addr)
                    .await
                    .map(|s| (s.last_log_index, s.commit_index, s.applied_index)),
            );
        }
        if seen.iter().all(|s| *s == Some((last, last, last))) {
            return;
        }
        assert!(
            start.elapsed() < COMMIT_PATIENCE,
            "{when}: not every node committed and applied index {last} within \
             {COMMIT_PATIENCE:?}; (last, commit, applied) seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_new_leader_commits_its_blank_entry_without_a_client_write() {
    let (mut cluster, runtime, addrs, (leader, term)) = start_and_elect(3, ELECTION_PATIENCE);
    let all: Vec<&String> = addrs.iter().collect();
    let first = runtime
        .block_on(node_status(&addrs[leader as usize - 1]))
        .expect("the leader answers");
    assert!(
        first.last_log_index >= 1,
        "the first leader (term {term}) holds no entry: {first:?}"
    );
    runtime.block_on(wait_for_commit(
        &all,
        first.last_log_index,
        "after the first election",
    ));
    eprintln!(
        "blank entry: leader {leader} of term {term} committed index {} with no write",
        first.last_log_index
    );

    runtime.block_on(async {
        let mut client = Client::new(addrs.clone()).expect("a client");
        client
            .put("before-the-election", b"v".to_vec())
            .await
            .expect("a put");
    });
    let written = runtime
        .block_on(node_status(&addrs[leader as usize - 1]))
        .expect("the leader answers")
        .last_log_index;
    runtime.block_on(wait_for_commit(&all, written, "after the write"));

    cluster.kill(leader as usize).expect("killing the leader");
    let survivors: Vec<&String> = (1..=3)
        .filter(|node| *node as u64 != leader)
        .map(|node| &addrs[node - 1])
        .collect();
    let (new_leader, new_term) =
        runtime.block_on(wait_for_leader(&survivors, term, ELECTION_PATIENCE));
    assert_ne!(new_leader, leader, "the killed node cannot lead");
    // The new leader's log is the old one plus its own blank entry.
    runtime.block_on(wait_for_commit(
        &survivors,
        written + 1,
        "after the second election",
    ));
    eprintln!(
        "blank entry: leader {new_leader} of term {new_term} committed index {} with no write",
        written + 1
    );
}
