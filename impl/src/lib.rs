//! rdb-server: the model's Raft [`model::Peer`] run for real.

pub mod client;
pub mod command;
pub mod config;
pub mod convert;
pub mod driver;
pub mod kv;
pub mod logging;
pub mod node;
pub mod record;
pub mod service;
pub mod storage;
pub mod tls;
pub mod transport;
