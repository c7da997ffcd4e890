//! Certificates for TLS tests: a CA made at test time and a server certificate it signed.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA and a server certificate it signed for some names, made when the test runs, with
/// what a TLS server or client of a test needs from them.
///
/// ```
/// let pki = axi_obs_core::testing::TestPki::new(&["localhost"]);
/// let server = pki.server_config(); // for a tokio-rustls acceptor
/// assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
/// # drop(server);
/// ```
#[derive(Debug)]
pub struct TestPki {
    /// The CA's certificate, PEM (a `ca_file`, `SSL_CERT_FILE`).
    pub ca_pem: String,
    /// The server's certificate, PEM.
    pub cert_pem: String,
    /// The server's private key, PKCS#8 PEM.
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestPki {
    /// A new CA and a server certificate for `names` (DNS names; IP addresses as written).
    ///
    /// # Panics
    ///
    /// When rcgen cannot make them (a name it refuses).
    pub fn new(names: &[&str]) -> Self {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap_or_else(|e| panic!("CA parameters: {e}"));
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "axi-obs test CA");
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
        let ca_cert = ca
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("CA certificate: {e}"));
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let leaf =
            rcgen::CertificateParams::new(names).unwrap_or_else(|e| panic!("server names: {e}"));
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("server key: {e}"));
        let cert = leaf
            .signed_by(&key, &rcgen::Issuer::from_params(&ca, &ca_key))
            .unwrap_or_else(|e| panic!("server certificate: {e}"));
        Self {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A rustls server configuration presenting the server certificate (ring provider, no
    /// client authentication).
    ///
    /// # Panics
    ///
    /// When rustls refuses the certificate or key (never for those [`TestPki::new`] makes).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let cfg = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("TLS versions: {e}"))
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert_der.clone()],
                PrivateKeyDer::Pkcs8(self.key_der.clone().into()),
            )
            .unwrap_or_else(|e| panic!("server certificate: {e}"));
        Arc::new(cfg)
    }
}
