//! rdb's wire contract, generated from `proto/raft_server.proto` at build time.
//!
//! - [`raft_peer_server`] / [`raft_peer_client`]: server-to-server delivery of one Peer
//!   message per call ([`PeerEnvelope`]).
//! - [`kv_server`] / [`kv_client`]: the client API (put, get, delete, status).
//!
//! These types are only used at a node's edge; `rdb-server` converts them into the Peer's own
//! types and rejects malformed input there.

#![allow(missing_docs)]

pub mod codec;

tonic::include_proto!("rdb");

/// The metadata key a non-leader sets to the leader's node id.
pub const LEADER_ID_METADATA: &str = "rdb-leader-id";
/// The metadata key a non-leader sets to the leader's address.
pub const LEADER_ADDR_METADATA: &str = "rdb-leader-addr";
/// The metadata key a server sets on an error when the command certainly did not take effect
/// and never will (not proposed, or overwritten by another leader's entry): retrying it is
/// safe. An error without it, from the server or the connection, leaves a write's outcome
/// unknown.
pub const NO_EFFECT_METADATA: &str = "rdb-no-effect";
