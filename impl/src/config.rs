//! A node's configuration: from command-line flags, a TOML file, or both (flags win).

use crate::tls::{TlsCredentials, TlsError, TlsFiles};
use model::NodeId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Everything one node needs to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node's id. Invariant: a key of `peers`.
    pub id: NodeId,
    /// Every message carries it; a message with another cluster id is refused.
    pub cluster_id: String,
    /// Where this node listens for peers and clients.
    pub listen: SocketAddr,
    /// Every member of the cluster, this node included: id to the address others reach it at.
    pub peers: BTreeMap<NodeId, String>,
    /// The directory holding the log segments and the term/vote file.
    pub data_dir: PathBuf,
    /// Timing of elections and heartbeats.
    pub timing: Timing,
    /// Whether storage fsyncs. Turning it off loses acknowledged writes on a machine crash;
    /// it exists for benchmarks that measure everything else.
    pub fsync: bool,
    /// Mutual TLS for peers and clients; `None` serves plain gRPC.
    /// Invariant: the certificate is this node's (see [`TlsCredentials::check_node`]).
    pub tls: Option<TlsCredentials>,
    /// How much a leader sends a follower at once: entries and bytes per AppendEntries, and
    /// the window in flight. The peer message limit follows from it
    /// ([`crate::convert::peer_message_limit`]).
    pub flow: model::FlowControl,
    /// Pre-vote and leader stickiness (§9.6, [`model::Config::pre_vote`]), on unless turned
    /// off: a node cut off from the cluster does not raise its term, and does not depose a
    /// live leader when it comes back. Every node of a cluster must agree on it.
    pub pre_vote: bool,
}

/// Election and heartbeat timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// The election timeout is drawn uniformly from `[min, max)` each time it is armed (§5.2).
    pub election_timeout_ms_min: u64,
    /// See `election_timeout_ms_min`. Invariant: greater than the minimum.
    pub election_timeout_ms_max: u64,
    /// How often a leader sends AppendEntries to every follower.
    /// Invariant: below `election_timeout_ms_min`.
    pub heartbeat_interval_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            election_timeout_ms_min: 300,
            election_timeout_ms_max: 600,
            heartbeat_interval_ms: 50,
        }
    }
}

impl Timing {
    /// The heartbeat interval as a duration.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// A fresh random election timeout.
    pub fn random_election_timeout(&self) -> Duration {
        Duration::from_millis(fastrand::u64(
            self.election_timeout_ms_min..self.election_timeout_ms_max,
        ))
    }

    /// Checks the invariants stated on the fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.election_timeout_ms_min == 0
            || self.election_timeout_ms_max <= self.election_timeout_ms_min
        {
            return Err(ConfigError::Invalid(format!(
                "election timeout range {}..{} ms must be non-empty and start above 0",
                self.election_timeout_ms_min, self.election_timeout_ms_max
            )));
        }
        if self.heartbeat_interval_ms == 0
            || self.heartbeat_interval_ms >= self.election_timeout_ms_min
        {
            return Err(ConfigError::Invalid(format!(
                "heartbeat interval {} ms must be above 0 and below the election timeout minimum {} ms",
                self.heartbeat_interval_ms, self.election_timeout_ms_min
            )));
        }
        Ok(())
    }
}

/// A configuration that cannot run.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for a node.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A required setting is missing.
    #[error("missing setting `{0}` (give it as a flag or in the config file)")]
    Missing(&'static str),
    /// A setting has a bad value.
    #[error("{0}")]
    Invalid(String),
    /// The TLS settings are incomplete or their files cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The settings as a TOML file spells them; every one optional so flags can fill the rest.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PartialConfig {
    /// See [`NodeConfig::id`].
    pub id: Option<NodeId>,
    /// See [`NodeConfig::cluster_id`].
    pub cluster_id: Option<String>,
    /// See [`NodeConfig::listen`].
    pub listen: Option<String>,
    /// See [`NodeConfig::peers`]; in TOML a table `[peers]` of `"1" = "127.0.0.1:7001"`.
    pub peers: Option<BTreeMap<String, String>>,
    /// See [`NodeConfig::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Timing`].
    pub election_timeout_ms_min: Option<u64>,
    /// See [`Timing`].
    pub election_timeout_ms_max: Option<u64>,
    /// See [`Timing`].
    pub heartbeat_interval_ms: Option<u64>,
    /// See [`NodeConfig::fsync`].
    pub fsync: Option<bool>,
    /// This node's certificate (PEM), naming it `node-<id>.rdb`; see [`NodeConfig::tls`].
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA certificate (PEM) that signs every node's and client's certificate.
    pub tls_ca: Option<PathBuf>,
    /// See [`model::FlowControl::max_entries`].
    pub max_append_entries: Option<u64>,
    /// See [`model::FlowControl::max_bytes`].
    pub max_append_bytes: Option<u64>,
    /// See [`model::FlowControl::max_inflight`].
    pub max_inflight: Option<u64>,
    /// See [`model::FlowControl::max_inflight_bytes`].
    pub max_inflight_bytes: Option<u64>,
    /// See [`NodeConfig::pre_vote`].
    pub pre_vote: Option<bool>,
}

/// The largest `max_append_bytes`: larger batches gain nothing and make every peer message
/// limit (and the memory one message may take) larger.
pub const MAX_APPEND_BYTES_LIMIT: u64 = 64 << 20;

impl PartialConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<PartialConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Fills every setting missing here from `file`.
    pub fn or(self, file: PartialConfig) -> PartialConfig {
        PartialConfig {
            id: self.id.or(file.id),
            cluster_id: self.cluster_id.or(file.cluster_id),
            listen: self.listen.or(file.listen),
            peers: self.peers.or(file.peers),
            data_dir: self.data_dir.or(file.data_dir),
            election_timeout_ms_min: self
                .election_timeout_ms_min
                .or(file.election_timeout_ms_min),
            election_timeout_ms_max: self
                .election_timeout_ms_max
                .or(file.election_timeout_ms_max),
            heartbeat_interval_ms: self.heartbeat_interval_ms.or(file.heartbeat_interval_ms),
            fsync: self.fsync.or(file.fsync),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_ca: self.tls_ca.or(file.tls_ca),
            max_append_entries: self.max_append_entries.or(file.max_append_entries),
            max_append_bytes: self.max_append_bytes.or(file.max_append_bytes),
            max_inflight: self.max_inflight.or(file.max_inflight),
            max_inflight_bytes: self.max_inflight_bytes.or(file.max_inflight_bytes),
            pre_vote: self.pre_vote.or(file.pre_vote),
        }
    }

    /// Flow control: the defaults of [`model::FlowControl`] for what is not set. Each setting
    /// must be at least 1, and `max-append-bytes` at most [`MAX_APPEND_BYTES_LIMIT`].
    fn flow(&self) -> Result<model::FlowControl, ConfigError> {
        let defaults = model::FlowControl::default();
        let at_least_one = |name: &str, value: Option<u64>, default: u64| match value {
            Some(0) => Err(ConfigError::Invalid(format!("{name} must be at least 1"))),
            Some(value) => Ok(value),
            None => Ok(default),
        };
        let max_bytes = at_least_one(
            "max-append-bytes",
            self.max_append_bytes,
            defaults.max_bytes,
        )?;
        if max_bytes > MAX_APPEND_BYTES_LIMIT {
            return Err(ConfigError::Invalid(format!(
                "max-append-bytes of {max_bytes}; at most {MAX_APPEND_BYTES_LIMIT} are allowed"
            )));
        }
        let max_inflight = at_least_one(
            "max-inflight",
            self.max_inflight,
            defaults.max_inflight as u64,
        )?;
        Ok(model::FlowControl {
            max_entries: at_least_one(
                "max-append-entries",
                self.max_append_entries,
                defaults.max_entries,
            )?,
            max_bytes,
            max_inflight: usize::try_from(max_inflight).unwrap_or(usize::MAX),
            max_inflight_bytes: at_least_one(
                "max-inflight-bytes",
                self.max_inflight_bytes,
                defaults.max_inflight_bytes,
            )?,
        })
    }

    /// Validates and completes the settings. The listen address defaults to this node's own
    /// address in `peers`; the cluster id defaults to `rdb`.
    pub fn build(self) -> Result<NodeConfig, ConfigError> {
        let flow = self.flow()?;
        let id = self.id.ok_or(ConfigError::Missing("id"))?;
        let raw_peers = self.peers.ok_or(ConfigError::Missing("peers"))?;
        let mut peers = BTreeMap::new();
        for (key, addr) in raw_peers {
            let peer_id: NodeId = key.trim().parse().map_err(|_| {
                ConfigError::Invalid(format!("peer id `{key}` is not a positive integer"))
            })?;
            if peer_id == 0 {
                return Err(ConfigError::Invalid(
                    "peer id 0 is reserved (it means `none` on the wire)".into(),
                ));
            }
            if addr.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "peer {peer_id} has an empty address"
                )));
            }
            if peers.insert(peer_id, addr.trim().to_owned()).is_some() {
                return Err(ConfigError::Invalid(format!(
                    "peer {peer_id} is listed twice"
                )));
            }
        }
        let own_addr = peers.get(&id).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "node id {id} is not among the peers {:?}",
                peers.keys().collect::<Vec<_>>()
            ))
        })?;
        let listen_text = self.listen.unwrap_or_else(|| own_addr.clone());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "listen address `{listen_text}` is not an IP:port socket address"
            ))
        })?;
        let data_dir = self.data_dir.ok_or(ConfigError::Missing("data-dir"))?;
        let defaults = Timing::default();
        let timing = Timing {
            election_timeout_ms_min: self
                .election_timeout_ms_min
                .unwrap_or(defaults.election_timeout_ms_min),
            election_timeout_ms_max: self
                .election_timeout_ms_max
                .unwrap_or(defaults.election_timeout_ms_max),
            heartbeat_interval_ms: self
                .heartbeat_interval_ms
                .unwrap_or(defaults.heartbeat_interval_ms),
        };
        timing.validate()?;
        let cluster_id = self.cluster_id.unwrap_or_else(|| "rdb".to_owned());
        if cluster_id.is_empty() {
            return Err(ConfigError::Invalid("cluster id must not be empty".into()));
        }
        if cluster_id.len() > crate::storage::MAX_CLUSTER_ID_BYTES {
            return Err(ConfigError::Invalid(format!(
                "cluster id of {} bytes; at most {} are allowed",
                cluster_id.len(),
                crate::storage::MAX_CLUSTER_ID_BYTES
            )));
        }
        let tls = load_node_tls(id, self.tls_cert, self.tls_key, self.tls_ca)?;
        Ok(NodeConfig {
            id,
            cluster_id,
            listen,
            peers,
            data_dir,
            timing,
            fsync: self.fsync.unwrap_or(true),
            tls,
            flow,
            pre_vote: self.pre_vote.unwrap_or(true),
        })
    }
}

/// Reads the TLS files, if any, and checks that the certificate is node `id`'s.
fn load_node_tls(
    id: NodeId,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Option<TlsCredentials>, ConfigError> {
    let names = ["tls-cert", "tls-key", "tls-ca"];
    let Some(files) = TlsFiles::from_parts(cert, key, ca, names)? else {
        return Ok(None);
    };
    let credentials = files.load()?;
    credentials
        .check_node(id)
        .map_err(|reason| ConfigError::Invalid(format!("{}: {reason}", files.cert.display())))?;
    Ok(Some(credentials))
}

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002` into the `peers` table.
pub fn parse_peer_list(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').filter(|item| !item.trim().is_empty()) {
        let (id, addr) = item.split_once('=').ok_or_else(|| {
            ConfigError::Invalid(format!("peer `{item}` is not of the form ID=HOST:PORT"))
        })?;
        if peers
            .insert(id.trim().to_owned(), addr.trim().to_owned())
            .is_some()
        {
            return Err(ConfigError::Invalid(format!("peer {id} is listed twice")));
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_peers() -> BTreeMap<String, String> {
        parse_peer_list("1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003").expect("valid")
    }

    #[test]
    fn flags_override_the_file_and_listen_defaults_to_own_address() {
        let file: PartialConfig = toml::from_str(
            r#"
            id = 2
            data_dir = "/tmp/a"
            heartbeat_interval_ms = 20
            tls_cert = "/etc/rdb/node-2.pem"
            tls_key = "/etc/rdb/node-2-key.pem"
            tls_ca = "/etc/rdb/ca.pem"
            [peers]
            1 = "127.0.0.1:7001"
            2 = "127.0.0.1:7002"
            3 = "127.0.0.1:7003"
            "#,
        )
        .expect("valid TOML");
        let flags = PartialConfig {
            data_dir: Some("/tmp/b".into()),
            ..PartialConfig::default()
        };
        let merged = flags.or(file);
        assert_eq!(merged.tls_cert, Some("/etc/rdb/node-2.pem".into()));
        assert_eq!(merged.tls_key, Some("/etc/rdb/node-2-key.pem".into()));
        assert_eq!(merged.tls_ca, Some("/etc/rdb/ca.pem".into()));
        // The files do not exist: TLS settings are checked when the configuration is built.
        let error = merged.clone().build().unwrap_err().to_string();
        assert!(
            error.contains("reading TLS file /etc/rdb/node-2.pem"),
            "{error}"
        );
        let config = PartialConfig {
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            ..merged
        }
        .build()
        .expect("complete");
        assert_eq!(config.id, 2);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/b"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:7002");
        assert_eq!(config.timing.heartbeat_interval_ms, 20);
        assert_eq!(config.cluster_id, "rdb");
    }

    #[test]
    fn flow_control_settings_come_from_the_file_or_the_defaults() {
        let file: PartialConfig = toml::from_str(
            "id = 1\ndata_dir = \"/tmp/f\"\nmax_append_entries = 8\nmax_inflight = 3\n\
             [peers]\n\"1\" = \"127.0.0.1:7001\"\n",
        )
        .expect("parses");
        let config = PartialConfig {
            max_append_bytes: Some(4096),
            ..PartialConfig::default()
        }
        .or(file)
        .build()
        .expect("complete");
        assert_eq!(
            config.flow,
            model::FlowControl {
                max_entries: 8,
                max_bytes: 4096,
                max_inflight: 3,
                ..model::FlowControl::default()
            }
        );
    }

    #[test]
    fn pre_vote_is_on_unless_the_file_or_a_flag_turns_it_off() {
        let file = |text: &str| -> PartialConfig {
            toml::from_str(&format!(
                "id = 1\ndata_dir = \"/tmp/f\"\n{text}[peers]\n\"1\" = \"127.0.0.1:7001\"\n"
            ))
            .expect("parses")
        };
        let build = |flags: PartialConfig, text: &str| flags.or(file(text)).build().expect("ok");
        assert!(build(PartialConfig::default(), "").pre_vote);
        assert!(!build(PartialConfig::default(), "pre_vote = false\n").pre_vote);
        let off = PartialConfig {
            pre_vote: Some(false),
            ..PartialConfig::default()
        };
        assert!(!build(off, "pre_vote = true\n").pre_vote);
        let on = PartialConfig {
            pre_vote: Some(true),
            ..PartialConfig::default()
        };
        assert!(build(on, "pre_vote = false\n").pre_vote);
    }

    #[test]
    fn bad_settings_are_named() {
        let base = PartialConfig {
            id: Some(4),
            peers: Some(three_peers()),
            data_dir: Some("/tmp/x".into()),
            ..PartialConfig::default()
        };
        let error = base.clone().build().unwrap_err().to_string();
        assert!(
            error.contains("node id 4 is not among the peers"),
            "{error}"
        );
        let error = PartialConfig {
            id: Some(1),
            heartbeat_interval_ms: Some(500),
            ..base.clone()
        }
        .build()
        .unwrap_err()
        .to_string();
        assert!(error.contains("heartbeat interval 500 ms"), "{error}");
        let error = PartialConfig {
            id: Some(1),
            data_dir: None,
            ..base.clone()
        }
        .build()
        .unwrap_err()
        .to_string();
        assert!(error.contains("data-dir"), "{error}");
        let error = PartialConfig {
            id: Some(1),
            cluster_id: Some("c".repeat(crate::storage::MAX_CLUSTER_ID_BYTES + 1)),
            ..base.clone()
        }
        .build()
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("cluster id of 1025 bytes; at most 1024"),
            "{error}"
        );
        let error = PartialConfig {
            id: Some(1),
            tls_cert: Some("/tmp/node-1.pem".into()),
            tls_ca: Some("/tmp/ca.pem".into()),
            ..base.clone()
        }
        .build()
        .unwrap_err()
        .to_string();
        assert!(error.contains("missing: tls-key"), "{error}");
        let error = PartialConfig {
            id: Some(1),
            max_inflight: Some(0),
            ..base.clone()
        }
        .build()
        .unwrap_err()
        .to_string();
        assert!(error.contains("max-inflight must be at least 1"), "{error}");
        let error = PartialConfig {
            id: Some(1),
            max_append_bytes: Some(MAX_APPEND_BYTES_LIMIT + 1),
            ..base.clone()
        }
        .build()
        .unwrap_err()
        .to_string();
        assert!(error.contains("max-append-bytes of 67108865"), "{error}");
        let error = parse_peer_list("1:7001").unwrap_err().to_string();
        assert!(error.contains("ID=HOST:PORT"), "{error}");
        let error = toml::from_str::<PartialConfig>("idd = 1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("idd"), "{error}");
    }
}
