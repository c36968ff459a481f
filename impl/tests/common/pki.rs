//! Certificates for TLS tests, made in memory with rcgen (no openssl needed).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rdb_server::tls::{node_name, TlsCredentials, SERVER_NAME};

/// A certificate authority of its own; certificates of two `TestCa`s do not trust each other.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key generation");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for the DNS names `names`, usable by servers and clients.
    pub fn issue(&self, names: &[String]) -> Issued {
        let mut params = CertificateParams::new(names.to_vec()).expect("valid names");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("key generation");
        let cert = params.signed_by(&key, &self.issuer).expect("signing");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Node `id`'s credentials: `node-<id>.rdb` and `server.rdb`, trusting this CA.
    pub fn node(&self, id: u64) -> TlsCredentials {
        TestCa::credentials(&self.issue(&[node_name(id), SERVER_NAME.to_owned()]), self)
    }

    /// A client's credentials: a certificate naming no node, trusting this CA.
    pub fn client(&self) -> TlsCredentials {
        TestCa::credentials(&self.issue(&["client.rdb".to_owned()]), self)
    }

    /// `issued` (from any CA), trusting `trusted`.
    pub fn credentials(issued: &Issued, trusted: &TestCa) -> TlsCredentials {
        TlsCredentials::from_pem(
            issued.cert_pem.clone(),
            issued.key_pem.clone(),
            trusted.ca_pem(),
        )
        .expect("generated certificates are valid")
    }
}
