//! rdb-server: the model's Raft [`model::Peer`] run for real.

pub mod command;
pub mod storage;
pub mod config;
pub mod convert;
pub mod driver;
pub mod kv;
pub mod logging;
pub mod node;
pub mod service;
pub mod transport;
pub mod client;
