//! Seed US2: a 3-node cluster elects one leader and replicates to a majority, then to all.
//! Run with `cargo test -p rdb-server -- test_replication`.

mod common;

use common::{assert_same_prefix, TestCluster};
use model::RoleKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_replication_commits_on_a_majority_then_on_all() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(&cluster.ids()).await;
    let mut client = cluster.client();
    let written = client.put("x", b"1".to_vec()).await.expect("put");

    // Acknowledged means committed: at least 2 of 3 nodes hold the entry right now.
    let states = cluster.states().await;
    let holding: Vec<_> = states
        .values()
        .filter(|s| {
            s.log
                .as_ref()
                .is_some_and(|log| log.len() as u64 >= written.index)
        })
        .collect();
    assert!(
        holding.len() >= 2,
        "only {} nodes hold the entry",
        holding.len()
    );
    assert_same_prefix(&holding, written.index);
    assert!(states[&leader].commit_index >= written.index);

    // Then every node commits and applies it.
    for id in cluster.ids() {
        let state = cluster.wait_applied(id, written.index).await;
        assert!(state.commit_index >= written.index);
    }
    let states = cluster.states().await;
    let all: Vec<_> = states.values().collect();
    assert_same_prefix(&all, written.index);
    assert_eq!(
        all.iter().filter(|s| s.role == RoleKind::Leader).count(),
        1,
        "one leader"
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_replication_through_any_node_with_redirects() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(&cluster.ids()).await;
    let follower = cluster.follower_of(leader);
    // A client that only knows a follower is redirected to the leader.
    let mut via_follower = cluster.client_of(follower);
    via_follower
        .put("k", b"from-follower".to_vec())
        .await
        .expect("put");
    for id in cluster.ids() {
        let mut client = cluster.client_of(id);
        assert_eq!(
            client.get("k").await.expect("get"),
            Some(b"from-follower".to_vec()),
            "read through node {id}"
        );
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_replication_of_many_concurrent_writes() {
    let cluster = TestCluster::start(3).await;
    cluster.wait_for_leader(&cluster.ids()).await;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let mut client = cluster.client();
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            for i in 0..25 {
                let response = client
                    .put(&format!("w{worker}-{i}"), vec![worker as u8; 100])
                    .await
                    .expect("put");
                last = last.max(response.index);
            }
            last
        }));
    }
    let mut last = 0;
    for task in tasks {
        last = last.max(task.await.expect("writer"));
    }
    assert!(last >= 200);
    for id in cluster.ids() {
        cluster.wait_applied(id, last).await;
    }
    let states = cluster.states().await;
    let all: Vec<_> = states.values().collect();
    assert_same_prefix(&all, last);
    cluster.stop_all().await;
}
