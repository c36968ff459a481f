//! Shared helpers for rdb's cross-cutting test targets (`tests/tests/*.rs`).

pub mod cluster;
pub mod conformance;
pub mod corpus;
pub mod linearizability;
pub mod validation;
