//! Seed US1: a single node self-elects, proposes, commits and applies, and keeps everything
//! across a restart. Run with `cargo test -p rdb-server -- single_node`.

mod common;

use common::TestCluster;
use model::RoleKind;
use rdb_server::command::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_elects_itself_commits_and_applies() {
    let cluster = TestCluster::start(1).await;
    let leader = cluster.wait_for_leader(&[1]).await;
    assert_eq!(leader, 1);
    let mut client = cluster.client();
    let put = client
        .put("greeting", b"hello".to_vec())
        .await
        .expect("put");
    assert!(!put.existed);
    let overwrite = client.put("greeting", b"hi".to_vec()).await.expect("put");
    assert!(overwrite.existed);
    assert!(overwrite.index > put.index);
    assert_eq!(
        client.get("greeting").await.expect("get"),
        Some(b"hi".to_vec())
    );
    assert_eq!(client.get("missing").await.expect("get"), None);
    let delete = client.delete("greeting").await.expect("delete");
    assert!(delete.existed);
    assert_eq!(client.get("greeting").await.expect("get"), None);

    let state = cluster.state(1).await;
    assert_eq!(state.role, RoleKind::Leader);
    assert_eq!(state.commit_index, state.last_log_index);
    assert_eq!(state.applied_index, state.commit_index);
    let log = state.log.expect("log");
    assert_eq!(
        log[put.index as usize - 1].command,
        Some(Command::Put {
            key: "greeting".into(),
            value: b"hello".to_vec()
        })
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_restarts_from_its_files_and_still_serves() {
    let mut cluster = TestCluster::start(1).await;
    cluster.wait_for_leader(&[1]).await;
    let mut client = cluster.client();
    for i in 0..20 {
        client
            .put(&format!("key-{i}"), format!("value-{i}").into_bytes())
            .await
            .expect("put");
    }
    let before = cluster.state(1).await;
    cluster.stop(1).await;

    cluster.restart(1).await;
    // The restored node has its term, vote and log from disk before any new election.
    let restored = cluster.state(1).await;
    assert_eq!(restored.log, before.log);
    assert!(restored.term >= before.term);
    cluster.wait_for_leader(&[1]).await;
    let after = cluster.state(1).await;
    assert!(after.term > before.term, "a restart starts a new term");
    let mut client = cluster.client();
    for i in 0..20 {
        assert_eq!(
            client.get(&format!("key-{i}")).await.expect("get"),
            Some(format!("value-{i}").into_bytes()),
            "key-{i} survived the restart"
        );
    }
    cluster.stop_all().await;
}
