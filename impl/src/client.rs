//! A client of the replicated map that finds the leader by itself: it follows a non-leader's
//! redirect, and tries the other servers when one is down or knows no leader.

use crate::tls::{self, TlsCredentials};
use rdb_proto as pb;
use std::time::Duration;
use thiserror::Error;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// A client call that did not succeed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The request itself is wrong (bad key, value too large); retrying will not help.
    #[error("rejected: {0}")]
    Rejected(String),
    /// No server answered within the attempts; the last error is kept. For a write, the
    /// outcome is unknown: it may or may not have committed.
    #[error("no leader answered after {attempts} attempts; last error: {last}")]
    Unavailable {
        /// How many calls were made.
        attempts: usize,
        /// The last error seen.
        last: String,
    },
    /// One server could not be reached or did not answer.
    #[error("{server}: {reason}")]
    Unreachable {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
    /// A write may or may not have taken effect: the server stopped or timed out after the
    /// command was proposed, or the connection broke mid-call. The client does not retry it,
    /// since a retried write could take effect twice.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The client was given no server address.
    #[error("no server addresses given")]
    NoServers,
    /// A server address is not a valid URI.
    #[error("bad server address `{0}`")]
    BadAddress(String),
    /// The TLS settings were refused.
    #[error("TLS: {0}")]
    Tls(String),
}

/// What a failed call says about its command's effect: the rule [`Client`] retries by, and
/// the one any caller that must know whether a write happened (the cluster fault test) uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The request is wrong (`INVALID_ARGUMENT`); retrying will not help.
    Rejected,
    /// Not the leader (`FAILED_PRECONDITION`), with the leader's address when the server knows
    /// it. The command was not proposed.
    Redirect(Option<String>),
    /// The server says the command did not take effect and never will (it set
    /// [`pb::NO_EFFECT_METADATA`]: not proposed, or overwritten), or the connection was never
    /// made; retrying is safe. The status code says why.
    NoEffect(Code),
    /// Anything else: a write may or may not have taken effect (the server stopped or timed out
    /// after proposing it, or the connection broke mid-call).
    Unknown,
}

/// Classifies a failed call. Only the server's explicit word, or a connection that was never
/// made, makes a command certainly without effect; everything else is [`Effect::Unknown`].
pub fn classify(status: &Status) -> Effect {
    let no_effect = status.metadata().get(pb::NO_EFFECT_METADATA).is_some();
    match status.code() {
        Code::InvalidArgument => Effect::Rejected,
        Code::FailedPrecondition if no_effect => Effect::Redirect(
            status
                .metadata()
                .get(pb::LEADER_ADDR_METADATA)
                .and_then(|addr| addr.to_str().ok())
                .map(str::to_owned),
        ),
        code if no_effect => Effect::NoEffect(code),
        // The request never left the client: no connection could be made.
        Code::Unavailable if status.message().contains("tcp connect error") => {
            Effect::NoEffect(Code::Unavailable)
        }
        _ => Effect::Unknown,
    }
}

/// A client of one cluster.
#[derive(Clone)]
pub struct Client {
    servers: Vec<String>,
    channels: Vec<Channel>,
    /// Mutual TLS towards every server, when on.
    tls: Option<TlsCredentials>,
    /// The index in `servers` believed to be the leader.
    leader: usize,
    /// How many calls one operation may make before it gives up.
    pub max_attempts: usize,
    /// How long to wait before retrying when no leader is known.
    pub retry_delay: Duration,
}

impl Client {
    /// A client of the cluster whose servers listen at `servers` (`host:port`). Connections
    /// are made lazily.
    pub fn new(servers: Vec<String>) -> Result<Client, ClientError> {
        Client::with_tls(servers, None)
    }

    /// As [`Client::new`], over mutual TLS with `tls` when given: the client presents its
    /// certificate and accepts only servers whose certificate the CA signed for
    /// [`tls::SERVER_NAME`].
    pub fn with_tls(
        servers: Vec<String>,
        tls: Option<TlsCredentials>,
    ) -> Result<Client, ClientError> {
        if servers.is_empty() {
            return Err(ClientError::NoServers);
        }
        let mut channels = Vec::new();
        for server in &servers {
            channels.push(channel(server, tls.as_ref())?);
        }
        Ok(Client {
            servers,
            channels,
            tls,
            leader: 0,
            max_attempts: 50,
            retry_delay: Duration::from_millis(100),
        })
    }

    /// Sets `key` to `value`; returns whether the key existed.
    pub async fn put(
        &mut self,
        key: &str,
        value: Vec<u8>,
    ) -> Result<pb::WriteResponse, ClientError> {
        let request = pb::PutRequest {
            key: key.to_owned(),
            value,
        };
        self.call(false, move |mut kv| {
            let request = request.clone();
            async move { kv.put(request).await }
        })
        .await
    }

    /// Removes `key`; returns whether it existed.
    pub async fn delete(&mut self, key: &str) -> Result<pb::WriteResponse, ClientError> {
        let request = pb::DeleteRequest {
            key: key.to_owned(),
        };
        self.call(false, move |mut kv| {
            let request = request.clone();
            async move { kv.delete(request).await }
        })
        .await
    }

    /// Reads `key` through the log (linearizable).
    pub async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let request = pb::GetRequest {
            key: key.to_owned(),
        };
        let response = self
            .call(true, move |mut kv| {
                let request = request.clone();
                async move { kv.get(request).await }
            })
            .await?;
        Ok(response.found.then_some(response.value))
    }

    /// Hands leadership to the member `target` (§3.10): asks the leader, and answers once
    /// `target` leads, with its term. The leader gives a transfer up after an election
    /// timeout (when `target` cannot catch up or lost its election); the error says so, and
    /// the transfer may be retried.
    pub async fn transfer_leader(
        &mut self,
        target: u64,
    ) -> Result<pb::TransferLeaderResponse, ClientError> {
        self.call(false, move |mut kv| async move {
            kv.transfer_leader(pb::TransferLeaderRequest { target })
                .await
        })
        .await
    }

    /// The status of the server at `server` (any server, leader or not).
    pub async fn status_of(server: &str) -> Result<pb::NodeStatus, ClientError> {
        Client::status_with_tls(server, None).await
    }

    /// As [`Client::status_of`], over mutual TLS with `tls` when given.
    pub async fn status_with_tls(
        server: &str,
        tls: Option<&TlsCredentials>,
    ) -> Result<pb::NodeStatus, ClientError> {
        let mut kv = pb::kv_client::KvClient::new(channel(server, tls)?);
        kv.status(pb::StatusRequest {})
            .await
            .map(|response| response.into_inner())
            .map_err(|status| ClientError::Unreachable {
                server: server.to_owned(),
                reason: status.message().to_owned(),
            })
    }

    /// Calls the believed leader and follows redirects until an answer or `max_attempts`.
    /// A call is retried only when the server said the command did not take effect
    /// (`UNAVAILABLE`: not proposed; `FAILED_PRECONDITION`: not the leader; `ABORTED`: another
    /// entry committed in its place; `RESOURCE_EXHAUSTED`: the server is overloaded and did not
    /// propose it, retried on the same server after `retry_delay`), or when it is a read
    /// (`idempotent`).
    async fn call<R, F, Fut>(&mut self, idempotent: bool, mut attempt: F) -> Result<R, ClientError>
    where
        F: FnMut(pb::kv_client::KvClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let mut last = String::new();
        for attempts in 1..=self.max_attempts {
            let kv = pb::kv_client::KvClient::new(self.channels[self.leader].clone());
            let status = match attempt(kv).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            last = format!("{}: {}", self.servers[self.leader], status.message());
            match classify(&status) {
                Effect::Rejected => return Err(ClientError::Rejected(status.message().to_owned())),
                Effect::Redirect(addr) => {
                    if let Some(index) = addr.and_then(|addr| self.server_index(addr)) {
                        self.leader = index;
                        continue;
                    }
                    self.next_server();
                }
                // Another entry committed in its place; safe to retry at once.
                Effect::NoEffect(Code::Aborted) => {}
                // Not proposed: give the overloaded leader a moment.
                Effect::NoEffect(Code::ResourceExhausted) => {
                    tokio::time::sleep(self.retry_delay).await
                }
                Effect::NoEffect(_) => {
                    self.next_server();
                    let delay = if attempts % self.servers.len() == 0 {
                        self.retry_delay
                    } else {
                        self.retry_delay / 4
                    };
                    tokio::time::sleep(delay).await;
                }
                Effect::Unknown if !idempotent => return Err(ClientError::OutcomeUnknown(last)),
                Effect::Unknown => {
                    self.next_server();
                    if attempts % self.servers.len() == 0 {
                        tokio::time::sleep(self.retry_delay).await;
                    }
                }
            }
        }
        Err(ClientError::Unavailable {
            attempts: self.max_attempts,
            last,
        })
    }

    /// The index of the server at `addr` (a redirect's leader), adding it if it is new.
    fn server_index(&mut self, addr: String) -> Option<usize> {
        if let Some(index) = self.servers.iter().position(|server| *server == addr) {
            return Some(index);
        }
        let channel = channel(&addr, self.tls.as_ref()).ok()?;
        self.servers.push(addr);
        self.channels.push(channel);
        Some(self.servers.len() - 1)
    }

    fn next_server(&mut self) {
        self.leader = (self.leader + 1) % self.servers.len();
    }
}

fn channel(server: &str, tls: Option<&TlsCredentials>) -> Result<Channel, ClientError> {
    let uri = if server.contains("://") {
        server.to_owned()
    } else {
        tls::server_uri(server, tls.is_some())
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|_| ClientError::BadAddress(server.to_owned()))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    let endpoint = match tls {
        Some(tls) => endpoint
            .tls_config(tls.client_config())
            .map_err(|error| ClientError::Tls(error.to_string()))?,
        None => endpoint,
    };
    Ok(endpoint.connect_lazy())
}
