//! Flow control on real processes: a follower far behind catches up, and the largest values
//! commit, without any leader change.
//!
//! Three `rdb-server` processes (release build) on 127.0.0.1 with the default settings. One
//! follower is killed while 4 writers put 64 values of 1 MiB each (64 MiB); it is restarted
//! and must apply everything the leader holds within [`CATCH_UP_BOUND`]. Then 4 values of the
//! largest size a client may write are put at once and must commit on all three nodes.
//! Throughout, the leader and its term must stay what they were after the first election: a
//! lagging follower is fed in batches and does not time out, so no election happens.
//!
//! The catch-up figure (MiB/s) is printed; `rdb-bench` measures it as a benchmark.

use rdb_server::client::Client;
use rdb_server::convert::MAX_VALUE_BYTES;
use std::time::{Duration, Instant};
use tests::cluster::{node_status as status, start_and_elect};

/// Writers putting values at once.
const WRITERS: usize = 4;
/// Values each writer puts while the follower is down: 4 × 16 values of 1 MiB.
const VALUES_PER_WRITER: usize = 16;
/// How long the restarted follower may take to apply what it missed.
const CATCH_UP_BOUND: Duration = Duration::from_secs(60);
/// How long the first election may take.
const ELECTION_PATIENCE: Duration = Duration::from_secs(20);

/// Asserts that every running node at `addrs` follows `leader` in `term`.
async fn assert_same_leader(addrs: &[&String], leader: u64, term: u64, when: &str) {
    for addr in addrs {
        let s = status(addr)
            .await
            .unwrap_or_else(|| panic!("{addr} unreachable {when}"));
        assert_eq!(
            (s.leader_id, s.term),
            (leader, term),
            "{addr} {when}: the leader or term changed"
        );
    }
}

/// Puts `count` values of `bytes` bytes from each of `WRITERS` writers at once.
async fn put_concurrently(addrs: &[String], prefix: &str, count: usize, bytes: usize) {
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let addrs = addrs.to_vec();
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                let mut client = Client::new(addrs).expect("a client");
                for i in 0..count {
                    let value = vec![(writer * count + i) as u8; bytes];
                    client
                        .put(&format!("{prefix}-{writer}-{i}"), value)
                        .await
                        .unwrap_or_else(|e| panic!("put {prefix}-{writer}-{i}: {e}"));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("a writer task");
    }
}

#[test]
fn a_follower_far_behind_catches_up_and_the_largest_values_commit_without_a_leader_change() {
    let (mut cluster, runtime, addrs, (leader, term)) = start_and_elect(3, ELECTION_PATIENCE);
    let all: Vec<&String> = addrs.iter().collect();
    let follower = (1..=3)
        .find(|node| *node as u64 != leader)
        .expect("a follower");
    let others: Vec<&String> = (1..=3)
        .filter(|node| *node != follower)
        .map(|node| &addrs[node - 1])
        .collect();
    eprintln!("catch-up: leader {leader} in term {term}; stopping follower {follower}");

    cluster.kill(follower).expect("stopping the follower");
    let written = WRITERS * VALUES_PER_WRITER * MAX_VALUE_BYTES;
    runtime.block_on(put_concurrently(
        &addrs,
        "behind",
        VALUES_PER_WRITER,
        MAX_VALUE_BYTES,
    ));
    let leader_addr = &addrs[leader as usize - 1];
    let target = runtime
        .block_on(status(leader_addr))
        .expect("the leader answers")
        .last_log_index;
    runtime.block_on(assert_same_leader(
        &others,
        leader,
        term,
        "while the follower was down",
    ));

    cluster.restart(follower).expect("restarting the follower");
    let start = Instant::now();
    let follower_addr = &addrs[follower - 1];
    let applied = runtime.block_on(async {
        loop {
            let applied = status(follower_addr).await.map_or(0, |s| s.applied_index);
            if applied >= target || start.elapsed() > CATCH_UP_BOUND {
                return applied;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let elapsed = start.elapsed();
    assert!(
        applied >= target,
        "the follower applied {applied} of {target} entries in {elapsed:?} (bound \
         {CATCH_UP_BOUND:?}); its log:\n{}",
        cluster.log_tail(follower, 20)
    );
    let mib = written as f64 / (1024.0 * 1024.0);
    eprintln!(
        "catch-up: {mib:.0} MiB ({target} entries) applied by the restarted follower in \
         {:.1}s ({:.1} MiB/s, from its restart)",
        elapsed.as_secs_f64(),
        mib / elapsed.as_secs_f64()
    );
    runtime.block_on(assert_same_leader(&all, leader, term, "after the catch-up"));

    // Four values of the largest size a client may write, at once: one batch of about
    // 4 MiB at the leader, which flow control splits for the followers.
    runtime.block_on(put_concurrently(&addrs, "largest", 1, MAX_VALUE_BYTES));
    let target = runtime
        .block_on(status(leader_addr))
        .expect("the leader answers")
        .last_log_index;
    let start = Instant::now();
    runtime.block_on(async {
        for addr in &addrs {
            loop {
                let applied = status(addr).await.map_or(0, |s| s.applied_index);
                if applied >= target {
                    break;
                }
                assert!(
                    start.elapsed() < CATCH_UP_BOUND,
                    "{addr} applied {applied} of {target} entries"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    runtime.block_on(assert_same_leader(
        &all,
        leader,
        term,
        "after the largest values",
    ));
    eprintln!("catch-up: 4 values of {MAX_VALUE_BYTES} bytes committed on all three nodes");
}
