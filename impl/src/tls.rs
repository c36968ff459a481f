//! Mutual TLS for peers and clients: loading and checking the PEM files, the tonic server and
//! client configurations, and the node identity a certificate carries.
//!
//! Names in certificates (DNS subject alternative names):
//! - a node certificate names its node as `node-<id>.rdb` and carries `server.rdb`, the name
//!   clients check when they connect to any server of the cluster;
//! - a client certificate (for `rdb`, `rdb-bench`) is signed by the same CA and names no node.
//!
//! With TLS on, a server accepts only connections whose certificate the CA signed. The peer
//! service takes a message's sender from the connection's certificate: a message whose `from`
//! is another node than the certificate's is refused, and so is a message over a connection
//! whose certificate names no node (a client's). A node connecting to peer `p` checks that
//! the peer's certificate names `node-<p>.rdb`.

use model::NodeId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// The DNS name every node certificate carries and every client checks.
pub const SERVER_NAME: &str = "server.rdb";

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The DNS name a certificate of node `id` carries.
pub fn node_name(id: NodeId) -> String {
    format!("node-{id}.rdb")
}

/// TLS files that cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// Some but not all of the three settings were given.
    #[error("TLS needs all of certificate, key and CA; missing: {}", .0.join(", "))]
    Incomplete(Vec<&'static str>),
    /// A file could not be read.
    #[error("reading TLS file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what it should be: not PEM, no section of the expected kind, bad DER, a
    /// key that does not fit the certificate.
    #[error("TLS file {source_name}: {reason}")]
    Malformed {
        /// The file (or, for material given in memory, which part).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Where the three PEM files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's (or client's) certificate chain, its own certificate first.
    pub cert: PathBuf,
    /// The private key of `cert`.
    pub key: PathBuf,
    /// The CA certificate(s) that sign every certificate of the cluster.
    pub ca: PathBuf,
}

impl TlsFiles {
    /// All three paths, or none; `names` spell the three settings in the error, in the order
    /// certificate, key, CA (flags: `--tls-cert` …; TOML: `tls_cert` …).
    pub fn from_parts(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
        names: [&'static str; 3],
    ) -> Result<Option<TlsFiles>, TlsError> {
        match (cert, key, ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
            (cert, key, ca) => {
                let missing = [cert.is_none(), key.is_none(), ca.is_none()]
                    .into_iter()
                    .zip(names)
                    .filter_map(|(missing, name)| missing.then_some(name))
                    .collect();
                Err(TlsError::Incomplete(missing))
            }
        }
    }

    /// Reads and checks the three files.
    pub fn load(&self) -> Result<TlsCredentials, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        TlsCredentials::parse(
            (&self.cert.display().to_string(), read(&self.cert)?),
            (&self.key.display().to_string(), read(&self.key)?),
            (&self.ca.display().to_string(), read(&self.ca)?),
        )
    }
}

/// Checked TLS material: a certificate chain with its key, and the CA to trust.
///
/// Invariant: the PEM parses, the key fits the certificate, and `node` is the node the
/// certificate names.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsCredentials {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca_pem: Vec<u8>,
    node: Option<NodeId>,
    has_server_name: bool,
}

impl fmt::Debug for TlsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("TlsCredentials")
            .field("node", &self.node)
            .field("has_server_name", &self.has_server_name)
            .finish_non_exhaustive()
    }
}

impl TlsCredentials {
    /// Checks PEM material given in memory (tests make it with a certificate generator).
    pub fn from_pem(
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
        ca: impl Into<Vec<u8>>,
    ) -> Result<TlsCredentials, TlsError> {
        TlsCredentials::parse(
            ("certificate", cert.into()),
            ("key", key.into()),
            ("CA", ca.into()),
        )
    }

    fn parse(
        (cert_name, cert_pem): (&str, Vec<u8>),
        (key_name, key_pem): (&str, Vec<u8>),
        (ca_name, ca_pem): (&str, Vec<u8>),
    ) -> Result<TlsCredentials, TlsError> {
        let chain = certificates(cert_name, &cert_pem)?;
        let names = dns_names(cert_name, &chain[0])?;
        let node = node_of_names(&names).map_err(|reason| malformed(cert_name, reason))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|error| malformed(key_name, format!("no usable private key: {error}")))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in certificates(ca_name, &ca_pem)? {
            roots
                .add(ca)
                .map_err(|error| malformed(ca_name, format!("not a CA certificate: {error}")))?;
        }
        let provider = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|error| {
            malformed(
                key_name,
                format!("the key cannot be used with certificate {cert_name}: {error}"),
            )
        })?;
        Ok(TlsCredentials {
            cert_pem,
            key_pem,
            ca_pem,
            node,
            has_server_name: names.iter().any(|name| name == SERVER_NAME),
        })
    }

    /// The node the certificate names, if any (client certificates name none).
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }

    /// Checks that this is the certificate of node `id`, fit to serve peers and clients.
    pub fn check_node(&self, id: NodeId) -> Result<(), String> {
        match self.node {
            Some(node) if node == id => {}
            Some(node) => {
                return Err(format!(
                    "the TLS certificate is node {node}'s ({}), but this node's id is {id}",
                    node_name(node)
                ))
            }
            None => {
                return Err(format!(
                    "the TLS certificate names no node; node {id} needs the DNS name {}",
                    node_name(id)
                ))
            }
        }
        if !self.has_server_name {
            return Err(format!(
                "the TLS certificate lacks the DNS name {SERVER_NAME}, which clients check"
            ));
        }
        Ok(())
    }

    /// The server side: this certificate, and a certificate signed by the CA required from
    /// every client.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The client side towards peer `peer`: its certificate must name that node.
    pub fn peer_client_config(&self, peer: NodeId) -> ClientTlsConfig {
        self.client_config_for(node_name(peer))
    }

    /// The client side towards any server of the cluster (the `rdb` client, `rdb-bench`).
    pub fn client_config(&self) -> ClientTlsConfig {
        self.client_config_for(SERVER_NAME.to_owned())
    }

    fn client_config_for(&self, server_name: String) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .identity(self.identity())
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(server_name)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

/// The URI of a server at `addr` (`host:port`): `https` when TLS is on.
pub fn server_uri(addr: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

/// The node a peer request comes from, as its connection's certificate says. The TLS
/// handshake has already checked that the CA signed the certificate.
pub fn certified_sender<T>(request: &Request<T>) -> Result<NodeId, Status> {
    let certificates = request.peer_certs().ok_or_else(|| {
        Status::unauthenticated("peer messages need a TLS connection with a node certificate")
    })?;
    let own = certificates.first().ok_or_else(|| {
        Status::unauthenticated("peer messages need a TLS connection with a node certificate")
    })?;
    let names = dns_names("the peer's certificate", own)
        .map_err(|error| Status::permission_denied(error.to_string()))?;
    match node_of_names(&names) {
        Ok(Some(node)) => Ok(node),
        Ok(None) => Err(Status::permission_denied(format!(
            "the connection's certificate names no node (no DNS name node-<id>.rdb; names {names:?}); only nodes may send peer messages"
        ))),
        Err(reason) => Err(Status::permission_denied(reason)),
    }
}

/// Refuses a message whose claimed sender is not the node its certificate names.
pub fn check_claimed_sender(certified: NodeId, claimed: NodeId) -> Result<(), Status> {
    if certified == claimed {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "sender mismatch: the message says it is from node {claimed}, but the connection's certificate is node {certified}'s ({})",
        node_name(certified)
    )))
}

fn malformed(source_name: &str, reason: impl Into<String>) -> TlsError {
    TlsError::Malformed {
        source_name: source_name.to_owned(),
        reason: reason.into(),
    }
}

/// Every certificate in `pem`; at least one.
fn certificates(name: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| malformed(name, format!("not valid PEM: {error}")))?;
    if chain.is_empty() {
        return Err(malformed(name, "no CERTIFICATE section in the PEM"));
    }
    for certificate in &chain {
        x509_parser::parse_x509_certificate(certificate)
            .map_err(|error| malformed(name, format!("not a valid X.509 certificate: {error}")))?;
    }
    Ok(chain)
}

/// The DNS subject alternative names of a certificate.
fn dns_names(name: &str, certificate: &CertificateDer<'_>) -> Result<Vec<String>, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
        .map_err(|error| malformed(name, format!("not a valid X.509 certificate: {error}")))?;
    let alternative_names = parsed.subject_alternative_name().map_err(|error| {
        malformed(
            name,
            format!("unreadable subject alternative names: {error}"),
        )
    })?;
    Ok(alternative_names
        .map(|extension| {
            extension
                .value
                .general_names
                .iter()
                .filter_map(|general| match general {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The node named by `node-<id>.rdb` among `names`; an error if several nodes are named.
fn node_of_names(names: &[String]) -> Result<Option<NodeId>, String> {
    let mut nodes: Vec<NodeId> = names
        .iter()
        .filter_map(|name| {
            name.strip_prefix("node-")?
                .strip_suffix(".rdb")?
                .parse()
                .ok()
        })
        .filter(|&id: &NodeId| id != 0)
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    match nodes.as_slice() {
        [] => Ok(None),
        [node] => Ok(Some(*node)),
        several => Err(format!(
            "the certificate names several nodes {several:?}; a node certificate names one"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn node_names_parse_to_one_id() {
        assert_eq!(
            node_of_names(&names(&["server.rdb", "node-7.rdb"])),
            Ok(Some(7))
        );
        assert_eq!(
            node_of_names(&names(&["server.rdb", "client.rdb"])),
            Ok(None)
        );
        assert_eq!(
            node_of_names(&names(&["node-0.rdb", "node-x.rdb"])),
            Ok(None)
        );
        let error = node_of_names(&names(&["node-1.rdb", "node-2.rdb"])).unwrap_err();
        assert!(error.contains("several nodes [1, 2]"), "{error}");
    }

    #[test]
    fn all_three_files_or_none() {
        let names = ["--tls-cert", "--tls-key", "--tls-ca"];
        assert_eq!(TlsFiles::from_parts(None, None, None, names).unwrap(), None);
        let error = TlsFiles::from_parts(Some("c.pem".into()), None, None, names)
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing: --tls-key, --tls-ca"), "{error}");
    }

    #[test]
    fn malformed_pem_names_the_file() {
        let directory = tempfile::tempdir().expect("temp dir");
        let bad = directory.path().join("bad.pem");
        std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nnot base64!\n").expect("write");
        let files = TlsFiles {
            cert: bad.clone(),
            key: bad.clone(),
            ca: bad.clone(),
        };
        let error = files.load().unwrap_err().to_string();
        assert!(
            error.contains(&bad.display().to_string()) && error.contains("not valid PEM"),
            "{error}"
        );
        let missing = directory.path().join("missing.pem");
        let files = TlsFiles {
            cert: missing.clone(),
            ..files
        };
        let error = files.load().unwrap_err().to_string();
        assert!(
            error.contains("reading TLS file") && error.contains(&missing.display().to_string()),
            "{error}"
        );
    }
}
