//! Seed US3: failure and recovery. Run with `cargo test -p rdb-server -- test_recovery`.

mod common;

use common::{assert_same_prefix, TestCluster, PATIENCE};
use model::{NodeId, RoleKind};
use rdb_server::command::Command;
use rdb_server::driver::ProposeError;
use std::time::{Duration, Instant};

fn put(key: &str, value: &str) -> Command {
    Command::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn others(cluster: &TestCluster, id: NodeId) -> Vec<NodeId> {
    cluster.ids().into_iter().filter(|&o| o != id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_recovery_follower_catches_up_after_restart() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(&cluster.ids()).await;
    let follower = others(&cluster, leader)[0];
    let mut client = cluster.client_of(leader);
    client.put("before", b"0".to_vec()).await.expect("put");
    cluster.stop(follower).await;

    // Entries commit on the remaining majority while the follower is down.
    let mut last = 0;
    for i in 0..10 {
        last = client
            .put(&format!("while-down-{i}"), vec![i])
            .await
            .expect("put commits with 2 of 3")
            .index;
    }
    cluster.restart(follower).await;
    let state = cluster.wait_applied(follower, last).await;
    assert!(state.commit_index >= last);
    let leader_state = cluster.state(leader).await;
    assert_same_prefix(&[&leader_state, &state], last);
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_recovery_isolated_leader_cannot_commit_and_steps_down() {
    let cluster = TestCluster::start(3).await;
    let old = cluster.wait_for_leader(&cluster.ids()).await;
    let mut client = cluster.client_of(old);
    client.put("settled", b"yes".to_vec()).await.expect("put");
    let before = cluster.state(old).await;

    cluster.isolate(old);
    let pending = {
        let proposal = cluster.node(old).propose(put("cut-off", "lost"));
        tokio::time::timeout(Duration::from_secs(3), proposal).await
    };
    // In 3 seconds (several election timeouts) the proposal never committed...
    assert!(
        !matches!(pending, Ok(Ok(_))),
        "an isolated leader committed: {pending:?}"
    );
    let isolated = cluster.state(old).await;
    assert_eq!(
        isolated.commit_index, before.commit_index,
        "commit moved without a majority"
    );
    // ...the entry was appended locally only...
    assert!(isolated.last_log_index > before.last_log_index);
    // ...and check-quorum made the leader step down.
    assert_ne!(isolated.role, RoleKind::Leader, "{isolated:#?}");

    // The majority elects a leader of a later term and commits.
    let majority = others(&cluster, old);
    let new = cluster.wait_for_leader(&majority).await;
    let mut client = cluster.client_of(new);
    let committed = client
        .put("after", b"1".to_vec())
        .await
        .expect("majority commits");
    assert!(cluster.state(new).await.term > before.term);
    assert!(committed.index > before.commit_index);
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_recovery_conflicting_suffix_is_truncated() {
    let cluster = TestCluster::start(3).await;
    let old = cluster.wait_for_leader(&cluster.ids()).await;
    cluster
        .client_of(old)
        .put("base", b"0".to_vec())
        .await
        .expect("put");
    let base = cluster.state(old).await;

    // The isolated leader appends entries no one else will ever hold.
    cluster.isolate(old);
    let mut lost = Vec::new();
    for i in 0..3 {
        let node_proposal = cluster.node(old).propose(put(&format!("doomed-{i}"), "x"));
        lost.push(tokio::spawn(tokio::time::timeout(PATIENCE, node_proposal)));
    }
    let deadline = Instant::now() + PATIENCE;
    while cluster.state(old).await.last_log_index < base.last_log_index + 3 {
        assert!(
            Instant::now() < deadline,
            "the isolated leader did not append"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let conflicting = cluster.state(old).await;

    // Meanwhile the majority commits other entries at the same indexes.
    let majority = others(&cluster, old);
    let new = cluster.wait_for_leader(&majority).await;
    let mut client = cluster.client_of(new);
    let mut last = 0;
    for i in 0..5 {
        last = client
            .put(&format!("kept-{i}"), b"y".to_vec())
            .await
            .expect("put")
            .index;
    }

    // After healing, the old leader's uncommitted suffix is replaced by the leader's entries.
    cluster.heal();
    let healed = cluster.wait_applied(old, last).await;
    let leader_state = cluster.state(new).await;
    assert_same_prefix(&[&leader_state, &healed], last);
    let log = healed.log.as_ref().expect("log");
    let conflicting_log = conflicting.log.as_ref().expect("log");
    let first_doomed = base.last_log_index as usize;
    assert_ne!(
        log[first_doomed], conflicting_log[first_doomed],
        "the conflicting entry was replaced"
    );
    assert!(log.iter().all(|entry| !matches!(
        &entry.command,
        Some(Command::Put { key, .. }) if key.starts_with("doomed-")
    )));
    // Their proposers learn that the entries did not commit.
    for proposal in lost {
        let outcome = proposal.await.expect("task");
        assert_eq!(outcome, Ok(Err(ProposeError::Overwritten)));
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_recovery_new_leader_holds_every_committed_entry() {
    let mut cluster = TestCluster::start(3).await;
    let old = cluster.wait_for_leader(&cluster.ids()).await;
    let mut client = cluster.client();
    let mut acknowledged = Vec::new();
    for i in 0..15 {
        let key = format!("k{i}");
        let response = client.put(&key, vec![i]).await.expect("put");
        acknowledged.push((response.index, key, vec![i]));
    }
    cluster.stop(old).await;

    let survivors = others(&cluster, old);
    let new = cluster.wait_for_leader(&survivors).await;
    assert_ne!(new, old);
    let state = cluster.state(new).await;
    let log = state.log.as_ref().expect("log");
    for (index, key, value) in &acknowledged {
        assert_eq!(
            log[*index as usize - 1].command,
            Some(Command::Put {
                key: key.clone(),
                value: value.clone()
            }),
            "acknowledged entry {index} is in the new leader's log"
        );
    }
    // The cluster keeps serving, and reads see every acknowledged write.
    for (_, key, value) in &acknowledged {
        assert_eq!(client.get(key).await.expect("get"), Some(value.clone()));
    }
    let last = client
        .put("after", b"new".to_vec())
        .await
        .expect("put")
        .index;
    cluster.restart(old).await;
    cluster.wait_applied(old, last).await;
    cluster.stop_all().await;
}
