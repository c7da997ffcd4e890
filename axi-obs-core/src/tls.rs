//! The rustls client configuration shared by the workspace's TLS clients (feature `tls`).
//!
//! One place for what every client needs: the ring [`provider`] (chosen explicitly, so nothing
//! depends on a process-wide default and no aws-lc is built), the host's trust anchors
//! ([`system_roots`], `/etc/ssl/certs` and the other places OpenSSL looks, read once), PEM
//! files ([`read_certs`], [`read_key`]) and [`ClientTls`], which turns trust anchors, a client
//! identity, `insecure_skip_verify` and ALPN protocols into a [`rustls::ClientConfig`].
//!
//! ```
//! use axi_obs_core::tls::{ClientTls, read_certs};
//!
//! // Verified against the system trust store, offering HTTP/1.1.
//! let config = ClientTls::new().alpn(vec![b"http/1.1".to_vec()]).client_config()?;
//! assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
//!
//! // Errors name the file.
//! let e = read_certs("/nonexistent/ca.pem".as_ref()).unwrap_err();
//! assert!(e.to_string().starts_with("/nonexistent/ca.pem: cannot read: "), "{e}");
//! # Ok::<(), axi_obs_core::tls::TlsError>(())
//! ```
//!
//! Files are read synchronously: from async code, call [`read_certs`], [`read_key`] and
//! [`ClientTls::client_config`] (whose first call without trust anchors reads the system
//! store) in `spawn_blocking` or before the runtime starts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a PEM file could not be used or a client configuration could not be built. File
/// errors name the path first (`/etc/ca.pem: no certificate in the file`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not PEM.
    #[error("{}: not PEM: {source}", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// The PEM error.
        #[source]
        source: pem::Error,
    },
    /// The file holds no certificate.
    #[error("{}: no certificate in the file", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no PEM private key.
    #[error("{}: no PEM private key: {source}", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
        /// The PEM error.
        #[source]
        source: pem::Error,
    },
    /// rustls refused a trust anchor given to [`ClientTls::roots`].
    #[error("not a usable CA certificate: {0}")]
    TrustAnchor(#[source] rustls::Error),
    /// rustls refused the client identity (a key that does not fit the certificate ...).
    #[error("client certificate and key: {0}")]
    Identity(#[source] rustls::Error),
    /// rustls refused the configuration itself.
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

impl TlsError {
    /// The file the error is about, for the file errors.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Read { path, .. }
            | Self::NotPem { path, .. }
            | Self::NoCertificate { path }
            | Self::NoPrivateKey { path, .. } => Some(path),
            Self::TrustAnchor(_) | Self::Identity(_) | Self::Config(_) => None,
        }
    }
}

/// The ring crypto provider, chosen explicitly: nothing depends on a process-wide default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The host's trust anchors (through `rustls-native-certs`), read on the first call and kept
/// for the life of the process. Parts of the store that cannot be read are logged at `warn`
/// and skipped, as are certificates rustls cannot parse (counted at `debug`); an empty
/// result is logged at `warn`, since every verified handshake will then fail.
pub fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "cannot read part of the system trust store");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system trust store loaded");
        if added == 0 {
            tracing::warn!(
                ignored,
                "the system trust store holds no usable certificate"
            );
        }
        roots
    })
}

/// The certificates of a PEM file (a CA bundle or a client certificate chain).
///
/// # Errors
///
/// When the file cannot be read, is not PEM, or holds no certificate.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::NotPem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#1, PKCS#8 or SEC1) of a PEM file.
///
/// # Errors
///
/// When the file cannot be read or holds no PEM private key.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| TlsError::NoPrivateKey {
        path: path.to_owned(),
        source,
    })
}

/// The settings of a TLS client, turned into a [`rustls::ClientConfig`] by
/// [`client_config`](Self::client_config). The default verifies servers against
/// [`system_roots`], presents no client certificate and offers no ALPN protocol.
#[derive(Debug, Default)]
pub struct ClientTls {
    roots: Option<Vec<CertificateDer<'static>>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    insecure_skip_verify: bool,
    alpn: Vec<Vec<u8>>,
}

impl ClientTls {
    /// The default settings (see [`ClientTls`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust exactly these CA certificates (a `ca_file`, see [`read_certs`]) instead of the
    /// system trust store. Defaults to the system trust store.
    #[must_use]
    pub fn roots(mut self, certs: Vec<CertificateDer<'static>>) -> Self {
        self.roots = Some(certs);
        self
    }

    /// Present this certificate chain and its private key (mutual TLS). Defaults to none.
    #[must_use]
    pub fn identity(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.identity = Some((chain, key));
        self
    }

    /// Accept any server certificate (testing only); the handshake signatures are still
    /// checked, so the server must hold the key of the certificate it presents, and the
    /// connection is real TLS. [`roots`](Self::roots) are then not used. Defaults to false.
    #[must_use]
    pub fn insecure_skip_verify(mut self, skip: bool) -> Self {
        self.insecure_skip_verify = skip;
        self
    }

    /// The ALPN protocols to offer, most preferred first (`b"h2"`, `b"http/1.1"`). Defaults to
    /// none.
    #[must_use]
    pub fn alpn(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// The rustls client configuration: the ring [`provider`], rustls's safe default protocol
    /// versions (TLS 1.2 and 1.3). Without [`roots`](Self::roots), the first call reads the
    /// system trust store (see [`system_roots`]).
    ///
    /// # Errors
    ///
    /// When rustls refuses a trust anchor, the identity, or the configuration.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipVerify(
                    provider.signature_verification_algorithms,
                )))
        } else {
            let roots = match &self.roots {
                Some(certs) => {
                    let mut roots = RootCertStore::empty();
                    for cert in certs {
                        roots.add(cert.clone()).map_err(TlsError::TrustAnchor)?;
                    }
                    roots
                }
                None => system_roots().clone(),
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(TlsError::Identity)?,
        };
        config.alpn_protocols.clone_from(&self.alpn);
        Ok(config)
    }
}

/// Accepts any certificate (`insecure_skip_verify`), still checking that the server holds the
/// key of the certificate it presents.
#[derive(Debug)]
struct SkipVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn file_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let e = read_certs(&text).unwrap_err();
        assert_eq!(e.path(), Some(text.as_path()));
        assert_eq!(
            e.to_string(),
            format!("{}: no certificate in the file", text.display())
        );
        let e = read_key(&text).unwrap_err().to_string();
        assert!(e.contains("text.pem: no PEM private key"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = read_certs(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.pem: cannot read: "), "{e}");
    }

    #[test]
    fn a_garbage_trust_anchor_is_refused() {
        let e = ClientTls::new()
            .roots(vec![CertificateDer::from(vec![1, 2, 3])])
            .client_config()
            .unwrap_err();
        assert!(matches!(e, TlsError::TrustAnchor(_)), "{e}");
        assert_eq!(e.path(), None);
    }

    #[test]
    fn skip_verify_and_alpn() {
        let config = ClientTls::new()
            .roots(vec![CertificateDer::from(vec![1, 2, 3])])
            .insecure_skip_verify(true)
            .alpn(vec![b"h2".to_vec()])
            .client_config()
            .unwrap();
        assert_eq!(config.alpn_protocols, [b"h2".to_vec()]);
    }
}
