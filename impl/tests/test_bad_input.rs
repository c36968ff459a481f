//! Bad input: damaged files on disk, and malformed or misrouted messages on the wire. Each is
//! refused with an error that names the problem, and nothing acknowledged is lost.

mod common;

use common::TestCluster;
use model::RoleKind;
use rdb_proto as pb;
use rdb_server::logging;
use rdb_server::node::{Node, StartError, StartOptions};
use rdb_server::storage::StorageError;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

const SEGMENT_HEADER_BYTES: u64 = 8;
const RECORD_HEADER_BYTES: u64 = 8;

fn first_segment(dir: &Path) -> PathBuf {
    dir.join("log-00000000000000000001.seg")
}

/// The byte offset of every record in a segment, walking the length prefixes.
fn record_offsets(segment: &Path) -> Vec<u64> {
    let bytes = std::fs::read(segment).expect("read segment");
    let mut offsets = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while at + RECORD_HEADER_BYTES <= bytes.len() as u64 {
        offsets.push(at);
        let length = u32::from_le_bytes(bytes[at as usize..at as usize + 4].try_into().unwrap());
        at += RECORD_HEADER_BYTES + length as u64;
    }
    offsets
}

/// A one-node cluster that acknowledged `writes` puts and then stopped.
async fn stopped_node_with_writes(writes: usize) -> (TestCluster, Vec<u64>) {
    let mut cluster = TestCluster::start(1).await;
    cluster.wait_for_leader(&[1]).await;
    let mut client = cluster.client();
    for i in 0..writes {
        client
            .put(&format!("k{i}"), vec![i as u8; 10])
            .await
            .expect("put");
    }
    cluster.stop(1).await;
    let offsets = record_offsets(&first_segment(&cluster.data_dir(1)));
    assert_eq!(
        offsets.len(),
        writes + 1,
        "the leader's blank entry, then one record per acknowledged write"
    );
    (cluster, offsets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_inside_the_log_stops_the_node_naming_file_and_offset() {
    let (cluster, offsets) = stopped_node_with_writes(5).await;
    let segment = first_segment(&cluster.data_dir(1));
    let damaged = offsets[2];
    let mut bytes = std::fs::read(&segment).expect("read");
    bytes[(damaged + RECORD_HEADER_BYTES + 3) as usize] ^= 0x40;
    std::fs::write(&segment, &bytes).expect("write");

    let result = Node::start(
        cluster.config(1),
        logging::for_tests(),
        StartOptions::default(),
    )
    .await;
    let error = match result {
        Err(error) => error,
        Ok(_) => panic!("a node started on a damaged log"),
    };
    match &error {
        StartError::Storage(StorageError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, &segment);
            assert_eq!(*offset, damaged);
        }
        other => panic!("expected a corruption error, got {other}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("log-00000000000000000001.seg"),
        "{message}"
    );
    assert!(
        message.contains(&format!("byte offset {damaged}")),
        "{message}"
    );
    // The damaged file is left as it was, for an operator to inspect.
    assert_eq!(std::fs::read(&segment).expect("read"), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_a_damaged_log_with_the_file_and_offset() {
    let (cluster, offsets) = stopped_node_with_writes(3).await;
    let segment = first_segment(&cluster.data_dir(1));
    let mut bytes = std::fs::read(&segment).expect("read");
    bytes[(offsets[1] + RECORD_HEADER_BYTES) as usize] ^= 0x01;
    std::fs::write(&segment, &bytes).expect("write");
    let config = cluster.config(1);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rdb-server"))
        .args(["--id", "1", "--cluster-id", "test"])
        .arg("--peers")
        .arg(format!("1={}", config.listen))
        .arg("--data-dir")
        .arg(&config.data_dir)
        .output()
        .expect("run rdb-server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("log-00000000000000000001.seg"), "{stderr}");
    assert!(
        stderr.contains(&format!("byte offset {}", offsets[1])),
        "{stderr}"
    );
}

/// Cuts the last three bytes off `segment` (the middle of its last record); returns the new
/// length.
fn cut_three_bytes(segment: &Path) -> u64 {
    let length = std::fs::metadata(segment).expect("stat").len() - 3;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .expect("open");
    file.set_len(length).expect("truncate");
    length
}

/// A one-node cluster that acknowledged 4 puts, stopped, with its files as a crash in the
/// middle of the last write would leave them: the last record a few bytes short, and the
/// `synced` file as it was before that write (its fsync never returned, so it was never
/// acknowledged in a real run). Returns the cluster and the segment.
async fn crashed_in_the_last_write() -> (TestCluster, Vec<u64>, PathBuf) {
    let mut cluster = TestCluster::start(1).await;
    cluster.wait_for_leader(&[1]).await;
    let mut client = cluster.client();
    let synced = cluster.data_dir(1).join("synced");
    let mut before_last = Vec::new();
    for i in 0..4 {
        if i == 3 {
            before_last = std::fs::read(&synced).expect("read synced");
        }
        client
            .put(&format!("k{i}"), vec![i as u8; 10])
            .await
            .expect("put");
    }
    cluster.stop(1).await;
    let segment = first_segment(&cluster.data_dir(1));
    let offsets = record_offsets(&segment);
    assert_eq!(
        offsets.len(),
        5,
        "the leader's blank entry, then one record per acknowledged write"
    );
    cut_three_bytes(&segment);
    std::fs::write(&synced, before_last).expect("restore synced");
    (cluster, offsets, segment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_last_record_cut_short_stops_the_node() {
    let (cluster, offsets) = stopped_node_with_writes(4).await;
    let segment = first_segment(&cluster.data_dir(1));
    let length = cut_three_bytes(&segment);
    let config = cluster.config(1);
    let error = match Node::start(config, logging::for_tests(), StartOptions::default()).await {
        Ok(_) => panic!("a node started without an acknowledged entry"),
        Err(error) => error,
    };
    match &error {
        StartError::Storage(StorageError::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(path, &segment);
            assert_eq!(*offset, offsets[4]);
            assert!(
                reason.contains("entries up to index 5 were made durable"),
                "{reason}"
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    // Nothing was cut behind the error.
    assert_eq!(std::fs::metadata(&segment).expect("stat").len(), length);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_record_torn_by_a_crash_is_dropped_and_the_node_starts() {
    let (mut cluster, offsets, segment) = crashed_in_the_last_write().await;
    cluster.restart(1).await;
    let state = cluster.state(1).await;
    assert_eq!(
        state.last_log_index, 4,
        "the torn record is gone, the others stay"
    );
    assert_eq!(std::fs::metadata(&segment).expect("stat").len(), offsets[4]);
    cluster.wait_for_leader(&[1]).await;
    let mut client = cluster.client();
    for i in 0..3 {
        assert_eq!(
            client.get(&format!("k{i}")).await.expect("get"),
            Some(vec![i as u8; 10])
        );
    }
    client
        .put("after", b"ok".to_vec())
        .await
        .expect("the node writes again");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_node_is_refused() {
    let (cluster, _) = stopped_node_with_writes(1).await;
    let mut config = cluster.config(1);
    config.id = 2;
    config.peers.insert(2, "127.0.0.1:1".into());
    let error = match Node::start(config, logging::for_tests(), StartOptions::default()).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("node 2 started on node 1's files"),
    };
    assert!(error.contains('1') && error.contains('2'), "{error}");
}

/// Sends raw bytes as the body of a gRPC call.
#[derive(Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use bytes::Buf;
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

async fn deliver_raw(addr: &str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/rdb.RaftPeer/Deliver");
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(|response| response.into_inner())
}

async fn deliver(addr: &str, envelope: pb::PeerEnvelope) -> Result<(), Status> {
    let mut client = pb::raft_peer_client::RaftPeerClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    client.deliver(envelope).await.map(|_| ())
}

/// A vote request in a far-future term: accepted, it would make the node move to term 99.
fn vote_request(cluster_id: &str, from: u64, to: u64) -> pb::PeerEnvelope {
    pb::PeerEnvelope {
        cluster_id: cluster_id.into(),
        from,
        to,
        message: Some(pb::peer_envelope::Message::RequestVoteRequest(
            pb::RequestVoteRequest {
                term: 99,
                last_log_index: 1000,
                last_log_term: 98,
                transfer: false,
            },
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_misrouted_messages_are_refused_while_the_node_serves() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.wait_for_leader(&cluster.ids()).await;
    let target = cluster.follower_of(leader);
    let addr = cluster.addr(target);
    let sender = leader;

    // Bytes that are not a protobuf message at all.
    let status = deliver_raw(&addr, vec![0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("malformed protobuf"),
        "{status:?}"
    );

    // A well-formed protobuf that is not a valid Peer message: no message set.
    let mut empty = vote_request(&cluster.cluster_id, sender, target);
    empty.message = None;
    let status = deliver(&addr, empty).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("missing field `message`"),
        "{status:?}"
    );

    // A vote request whose last log term is above its own term.
    let mut impossible = vote_request(&cluster.cluster_id, sender, target);
    impossible.message = Some(pb::peer_envelope::Message::RequestVoteRequest(
        pb::RequestVoteRequest {
            term: 99,
            last_log_index: 1,
            last_log_term: 100,
            transfer: false,
        },
    ));
    let status = deliver(&addr, impossible).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("last_log_term"), "{status:?}");

    // Another cluster.
    let status = deliver(&addr, vote_request("other-cluster", sender, target))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("cluster id mismatch"),
        "{status:?}"
    );
    assert!(status.message().contains("other-cluster"), "{status:?}");

    // A sender that is not a member.
    let status = deliver(&addr, vote_request(&cluster.cluster_id, 42, target))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("unknown sender: node 42"),
        "{status:?}"
    );

    // A message for another node.
    let status = deliver(&addr, vote_request(&cluster.cluster_id, sender, 7))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("addressed to node 7"),
        "{status:?}"
    );

    // None of them reached the Peer: no node moved to term 99, and the cluster still serves.
    for (id, state) in cluster.states().await {
        assert!(
            state.term < 99,
            "node {id} acted on a refused message: {state:?}"
        );
    }
    let mut client = cluster.client();
    client.put("still", b"serving".to_vec()).await.expect("put");
    assert_eq!(
        client.get("still").await.expect("get"),
        Some(b"serving".to_vec())
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_requests_are_refused_with_the_reason() {
    let cluster = TestCluster::start(1).await;
    cluster.wait_for_leader(&[1]).await;
    let mut client = cluster.client();
    let error = client.put("", b"v".to_vec()).await.unwrap_err().to_string();
    assert!(error.contains("key") && error.contains("empty"), "{error}");
    let error = client
        .put("big", vec![0; rdb_server::convert::MAX_VALUE_BYTES + 1])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("value"), "{error}");
    cluster.stop_all().await;
}

/// A well-formed message that no correct member can send: an acknowledgement of `u64::MAX`
/// to the leader, in its term, in the name of a follower. The Peer refuses it, the node counts
/// it in its status, and the cluster keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_message_from_a_member_is_refused_and_counted() {
    let cluster = TestCluster::start(3).await;
    let mut counted = false;
    // A leader change between the look and the delivery makes the message merely stale: try
    // again with the new leader.
    for _ in 0..5 {
        let leader = cluster.wait_for_leader(&cluster.ids()).await;
        let follower = cluster.follower_of(leader);
        // A new leader commits its blank entry on its own schedule: wait for that, so that
        // the commit index can move only on the message under test.
        let mut before = cluster.state(leader).await;
        for _ in 0..500 {
            if before.commit_index == before.last_log_index {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            before = cluster.state(leader).await;
        }
        if before.role != RoleKind::Leader || before.commit_index != before.last_log_index {
            continue;
        }
        let ack = pb::PeerEnvelope {
            cluster_id: cluster.cluster_id.clone(),
            from: follower,
            to: leader,
            message: Some(pb::peer_envelope::Message::AppendEntriesResponse(
                pb::AppendEntriesResponse {
                    term: before.term,
                    success: true,
                    index: u64::MAX,
                },
            )),
        };
        deliver(&cluster.addr(leader), ack)
            .await
            .expect("a well-formed message from a member is accepted for delivery");
        let after = cluster.state(leader).await;
        if (after.role, after.term) != (before.role, before.term) {
            continue;
        }
        assert_eq!(after.refused_messages, before.refused_messages + 1);
        assert_eq!(after.commit_index, before.commit_index);
        let status = rdb_server::client::Client::status_of(&cluster.addr(leader))
            .await
            .expect("status");
        assert_eq!(status.refused_peer_messages, after.refused_messages);
        counted = true;
        break;
    }
    assert!(
        counted,
        "at every attempt the leader changed or did not commit its blank entry within 5 s"
    );
    let mut client = cluster.client();
    client.put("still", b"serving".to_vec()).await.expect("put");
    cluster.stop_all().await;
}
