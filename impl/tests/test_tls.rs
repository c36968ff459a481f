//! Mutual TLS: a cluster replicates over it, and a certificate from another CA, no
//! certificate, a sender contradicting its certificate, and a client certificate on the peer
//! service are each refused.

mod common;

use common::pki::{Issued, TestCa};
use common::TestCluster;
use rdb_proto as pb;
use rdb_server::client::ClientError;
use rdb_server::tls::{self, TlsCredentials};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic::Code;

/// A term no honest node of these tests reaches.
const ROGUE_TERM: u64 = 1000;

/// The error and every source under it, joined.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(" <- ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Connects to the server at `addr` with plain rustls, as a client presenting `client`
/// (or no certificate) and trusting `ca_pem`, and returns the TLS error that ends the
/// exchange. With TLS 1.3 the client's side of the handshake completes before the server
/// checks the client's certificate, so the server's refusal arrives as an alert on the
/// first read.
async fn tls_refusal(addr: &str, client: Option<&Issued>, ca_pem: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.expect("CA PEM")).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client {
        Some(issued) => {
            let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("certificate PEM");
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key PEM");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate")
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("TCP connect");
    let name = ServerName::try_from(tls::SERVER_NAME).expect("valid name");
    let exchange = async {
        let mut stream = connector.connect(name, tcp).await?;
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await?;
        stream.flush().await?;
        let mut buffer = [0u8; 64];
        stream.read(&mut buffer).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), exchange).await {
        Ok(Err(error)) => error_chain(&error),
        Ok(Ok(read)) => panic!("the server accepted the connection ({read} bytes read)"),
        Err(_) => panic!("the server neither answered nor refused within 10 s"),
    }
}

/// Asserts that a tonic call failed in the transport, before any service saw it: the
/// connection carried the server's `alert`, or the server had closed it before the client
/// read the alert (with TLS 1.3 the client's side of the handshake ends first, so its first
/// write or read may meet the closed connection instead: closed, broken pipe or reset).
fn assert_transport_refusal(status: &tonic::Status, alert: &str) {
    let chain = error_chain(status);
    assert!(
        chain.contains(&format!("received fatal alert: {alert}"))
            || chain.contains("connection closed")
            || chain.contains("broken pipe")
            || chain.contains("Connection reset by peer"),
        "{chain}"
    );
    assert!(
        chain.contains("transport error"),
        "a transport failure, not an answer of a service: {chain}"
    );
}

/// Asserts that a client's write failed for want of a working connection (which of the
/// two depends on when the connection broke), not for a reason a server gave.
fn assert_connection_failed(error: &ClientError) {
    assert!(
        matches!(
            error,
            ClientError::Unavailable { .. } | ClientError::OutcomeUnknown(_)
        ),
        "{error}"
    );
}

/// Sends one peer envelope to node `to` at `addr` over TLS with `credentials`.
async fn send_peer_message(
    addr: &str,
    to: u64,
    credentials: &TlsCredentials,
    from: u64,
    message: pb::peer_envelope::Message,
) -> Result<(), tonic::Status> {
    let endpoint = Endpoint::from_shared(tls::server_uri(addr, true))
        .expect("valid URI")
        .tls_config(credentials.peer_client_config(to))
        .expect("valid TLS config");
    let mut client = pb::raft_peer_client::RaftPeerClient::new(endpoint.connect_lazy());
    client
        .deliver(pb::PeerEnvelope {
            cluster_id: "test".into(),
            from,
            to,
            message: Some(message),
        })
        .await
        .map(|_| ())
}

fn rogue_vote_request() -> pb::peer_envelope::Message {
    pb::peer_envelope::Message::RequestVoteRequest(pb::RequestVoteRequest {
        term: ROGUE_TERM,
        last_log_index: 0,
        last_log_term: 0,
        transfer: false,
    })
}

/// A stale vote response: the receiver ignores it, so accepting it changes nothing.
fn stale_vote_response() -> pb::peer_envelope::Message {
    pb::peer_envelope::Message::RequestVoteResponse(pb::RequestVoteResponse {
        term: 1,
        granted: false,
    })
}

/// Asserts that no node took a message from outside: every term stays below the rogue term,
/// the honest write is there, and `absent` was never written.
async fn assert_untouched(cluster: &TestCluster, absent: &str) {
    for (id, state) in cluster.states().await {
        assert!(
            state.term < ROGUE_TERM,
            "node {id} reached term {} from a refused message",
            state.term
        );
    }
    let mut client = cluster.client();
    assert_eq!(
        client.get("k").await.expect("honest read"),
        Some(b"honest".to_vec())
    );
    assert_eq!(client.get(absent).await.expect("honest read"), None);
}

async fn honest_cluster() -> TestCluster {
    let cluster = TestCluster::start_tls(3).await;
    cluster.wait_for_leader(&cluster.ids()).await;
    let mut client = cluster.client();
    client
        .put("k", b"honest".to_vec())
        .await
        .expect("honest write");
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_replicates_writes() {
    let cluster = TestCluster::start_tls(3).await;
    cluster.wait_for_leader(&cluster.ids()).await;
    let mut client = cluster.client();
    let written = client
        .put("greeting", b"hello".to_vec())
        .await
        .expect("write over TLS");
    for id in cluster.ids() {
        cluster.wait_applied(id, written.index).await;
    }
    assert_eq!(
        client.get("greeting").await.expect("read over TLS"),
        Some(b"hello".to_vec())
    );
    // A client that knows one follower only follows the redirect to the leader over TLS.
    let leader = cluster.wait_for_leader(&cluster.ids()).await;
    let follower = cluster.follower_of(leader);
    let mut redirected = cluster.client_of(follower);
    redirected
        .put("redirected", b"yes".to_vec())
        .await
        .expect("redirected write over TLS");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let cluster = honest_cluster().await;
    let honest_ca = cluster.ca().expect("TLS cluster");
    let rogue_ca = TestCa::new("rogue CA");
    // The rogue holds a well-formed node-2 certificate from its own CA; it trusts the honest
    // CA, so that only its own certificate is at stake.
    let rogue_issued = rogue_ca.issue(&[tls::node_name(2), tls::SERVER_NAME.to_owned()]);
    let refusal = tls_refusal(&cluster.addr(1), Some(&rogue_issued), &honest_ca.ca_pem()).await;
    assert!(
        refusal.contains("received fatal alert: UnknownCA"),
        "{refusal}"
    );
    let rogue_node = TestCa::credentials(&rogue_issued, honest_ca);
    let status = send_peer_message(&cluster.addr(1), 1, &rogue_node, 2, rogue_vote_request())
        .await
        .expect_err("a certificate from another CA is refused");
    assert_transport_refusal(&status, "UnknownCA");

    let mut rogue_client = rdb_server::client::Client::with_tls(
        cluster.ids().iter().map(|&id| cluster.addr(id)).collect(),
        Some(rogue_node),
    )
    .expect("valid addresses");
    rogue_client.max_attempts = 3;
    let error = rogue_client
        .put("rogue", b"x".to_vec())
        .await
        .expect_err("a client certificate from another CA is refused");
    assert_connection_failed(&error);

    // The other way round: an honest client that trusts only the rogue CA refuses the
    // honest servers' certificates.
    let misled = TestCa::credentials(&honest_ca.issue(&["client.rdb".to_owned()]), &rogue_ca);
    let status = send_peer_message(&cluster.addr(1), 1, &misled, 2, rogue_vote_request())
        .await
        .expect_err("the server's certificate is not from the trusted CA");
    let chain = error_chain(&status);
    assert!(
        chain.contains("invalid peer certificate") && chain.contains("UnknownIssuer"),
        "{chain}"
    );

    assert_untouched(&cluster, "rogue").await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused() {
    let cluster = honest_cluster().await;
    let honest_ca = cluster.ca().expect("TLS cluster");
    let refusal = tls_refusal(&cluster.addr(1), None, &honest_ca.ca_pem()).await;
    assert!(
        refusal.contains("received fatal alert: CertificateRequired"),
        "{refusal}"
    );
    // The same through tonic: TLS, trusting the cluster's CA, but presenting no certificate.
    let endpoint = Endpoint::from_shared(tls::server_uri(&cluster.addr(1), true))
        .expect("valid URI")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(honest_ca.ca_pem()))
                .domain_name(tls::SERVER_NAME),
        )
        .expect("valid TLS config");
    let mut kv = pb::kv_client::KvClient::new(endpoint.connect_lazy());
    let status = kv
        .put(pb::PutRequest {
            key: "anonymous".into(),
            value: b"x".to_vec(),
        })
        .await
        .expect_err("no client certificate");
    assert_transport_refusal(&status, "CertificateRequired");

    // Plain gRPC to a TLS server gets no answer either.
    let mut plain = rdb_server::client::Client::new(vec![cluster.addr(1)]).expect("valid");
    plain.max_attempts = 2;
    let error = plain
        .put("anonymous", b"x".to_vec())
        .await
        .expect_err("plain gRPC is refused");
    assert_connection_failed(&error);

    assert_untouched(&cluster, "anonymous").await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_message_whose_sender_contradicts_its_certificate_is_refused() {
    let cluster = honest_cluster().await;
    let node_3 = cluster.ca().expect("TLS cluster").node(3);
    let status = send_peer_message(&cluster.addr(1), 1, &node_3, 2, rogue_vote_request())
        .await
        .expect_err("node 3 may not speak for node 2");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("sender mismatch: the message says it is from node 2, but the connection's certificate is node 3's"),
        "{status:?}"
    );
    // The same connection speaking for itself is accepted.
    send_peer_message(&cluster.addr(1), 1, &node_3, 3, stale_vote_response())
        .await
        .expect("node 3's own message is accepted");
    assert_untouched(&cluster, "rogue").await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_cannot_send_peer_messages() {
    let cluster = honest_cluster().await;
    let client = cluster.ca().expect("TLS cluster").client();
    let status = send_peer_message(&cluster.addr(1), 1, &client, 2, rogue_vote_request())
        .await
        .expect_err("a client certificate may not send peer messages");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("names no node"), "{status:?}");
    // The same certificate is a good client of the Kv service.
    let mut kv = rdb_server::client::Client::with_tls(vec![cluster.addr(1)], Some(client))
        .expect("valid address");
    kv.put("from-client", b"ok".to_vec())
        .await
        .expect("a client certificate may write");
    assert_untouched(&cluster, "rogue").await;
    cluster.stop_all().await;
}

/// Runs `rdb-server` with `args`, expecting it to refuse to start; returns its stderr.
fn server_refuses(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_rdb-server"))
        .args(args)
        .output()
        .expect("run rdb-server");
    assert!(!output.status.success(), "rdb-server started with {args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn server_refuses_incomplete_malformed_or_foreign_tls_files() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| directory.path().join(name).display().to_string();
    let ca = TestCa::new("rdb test CA");
    let node_2 = ca.issue(&[tls::node_name(2), tls::SERVER_NAME.to_owned()]);
    std::fs::write(path("ca.pem"), ca.ca_pem()).expect("write");
    std::fs::write(path("node-2.pem"), &node_2.cert_pem).expect("write");
    std::fs::write(path("node-2-key.pem"), &node_2.key_pem).expect("write");
    std::fs::write(path("garbage.pem"), "not PEM at all\n").expect("write");
    let data = path("data");
    let base = [
        "--id",
        "1",
        "--peers",
        "1=127.0.0.1:1,2=127.0.0.1:2",
        "--data-dir",
        data.as_str(),
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run =
        |args: Vec<String>| server_refuses(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // All three TLS flags, with the files named in the test's directory.
    let all_three = |cert: &str, key: &str, ca: &str| {
        let (cert, key, ca) = (path(cert), path(key), path(ca));
        run(with(&[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
        ]))
    };

    let error = run(with(&["--tls-cert", &path("node-2.pem")]));
    assert!(error.contains("missing: tls-key, tls-ca"), "{error}");

    let error = all_three("garbage.pem", "node-2-key.pem", "ca.pem");
    assert!(
        error.contains(&path("garbage.pem")) && error.contains("no CERTIFICATE section"),
        "{error}"
    );

    let error = all_three("node-2.pem", "node-2-key.pem", "missing.pem");
    assert!(
        error.contains("reading TLS file") && error.contains(&path("missing.pem")),
        "{error}"
    );

    // Node 2's certificate cannot serve as node 1.
    let error = all_three("node-2.pem", "node-2-key.pem", "ca.pem");
    assert!(
        error.contains("the TLS certificate is node 2's (node-2.rdb), but this node's id is 1"),
        "{error}"
    );
}
