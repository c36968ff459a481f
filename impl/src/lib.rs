//! rdb-server: the model's Raft [`model::Peer`] run for real.

pub mod command;
pub mod storage;
