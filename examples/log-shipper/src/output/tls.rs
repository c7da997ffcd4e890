//! TLS for `https://` endpoints: the rustls client configuration (ring provider, no C crypto
//! build) of an output and the HTTP client built on it.
//!
//! Certificates are verified against the host's trust store (`/etc/ssl/certs` and the other
//! places OpenSSL looks, through `rustls-native-certs`); with `ca_file` against exactly the
//! certificates of that PEM file instead (as the OpenTelemetry Collector's and Filebeat's
//! `ca_file` / `certificate_authorities`). `insecure_skip_verify` accepts any server
//! certificate (the handshake signatures are still checked, so the connection is real TLS).
//! `cert_file` + `key_file` present a client certificate (mutual TLS).

use std::path::PathBuf;

use axi_obs_core::https::{Connector, HttpClient};
use axi_obs_core::tls::{ClientTls, TlsError, read_certs, read_key};
use rustls::ClientConfig;

/// TLS settings of an output (`tls:` in the configuration). The default verifies the server
/// against the system trust store and presents no client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// PEM file of the certificate authorities to trust instead of the system trust store.
    /// Defaults to none (system trust store).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only). Defaults to false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM file of a client certificate chain (mutual TLS); needs `key_file`. Defaults to none.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key; needs `cert_file`. Defaults to none.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Why a TLS configuration could not be built; the variant names the field.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// `ca_file` could not be read, held no PEM certificate, or a certificate rustls refused.
    #[error("ca_file: {0}")]
    CaFile(#[source] TlsError),
    /// `cert_file` could not be read or held no PEM certificate.
    #[error("cert_file: {0}")]
    CertFile(#[source] TlsError),
    /// `key_file` could not be read or held no PEM private key.
    #[error("key_file: {0}")]
    KeyFile(#[source] TlsError),
    /// Settings that do not go together (`cert_file` without `key_file` ...).
    #[error("{field}: {detail}")]
    Conflict {
        /// The field to change.
        field: &'static str,
        /// Why.
        detail: &'static str,
    },
    /// rustls refused the configuration (a key that does not match the certificate ...).
    #[error("{field}: {source}")]
    Rustls {
        /// The field most likely at fault.
        field: &'static str,
        /// rustls's reason, as [`TlsError`] gives it.
        #[source]
        source: TlsError,
    },
}

impl TlsConfigError {
    /// The configuration field the error is about (`ca_file`, `cert_file`, `key_file`,
    /// `insecure_skip_verify`).
    pub fn field(&self) -> &'static str {
        match self {
            Self::CaFile(_) => "ca_file",
            Self::CertFile(_) => "cert_file",
            Self::KeyFile(_) => "key_file",
            Self::Conflict { field, .. } | Self::Rustls { field, .. } => field,
        }
    }
}

impl TlsOptions {
    /// Whether every field has its default (a `tls:` section that changes nothing).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The rustls client configuration, with no ALPN protocols set (the connectors set
    /// `http/1.1` or `h2`). Reads the files.
    ///
    /// # Errors
    ///
    /// When a file cannot be read or holds no PEM certificate or key, when only one of
    /// `cert_file` and `key_file` is set, when `ca_file` and `insecure_skip_verify` are both
    /// set, or when the key does not fit rustls.
    pub fn client_config(&self) -> Result<ClientConfig, TlsConfigError> {
        if self.insecure_skip_verify && self.ca_file.is_some() {
            return Err(TlsConfigError::Conflict {
                field: "insecure_skip_verify",
                detail: "verification is skipped, so ca_file would not be used: set one of them",
            });
        }
        let mut tls = ClientTls::new().insecure_skip_verify(self.insecure_skip_verify);
        match (&self.cert_file, &self.key_file) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert).map_err(TlsConfigError::CertFile)?;
                let key = read_key(key).map_err(TlsConfigError::KeyFile)?;
                tls = tls.identity(chain, key);
            }
            (Some(_), None) => {
                return Err(TlsConfigError::Conflict {
                    field: "key_file",
                    detail: "cert_file needs key_file",
                });
            }
            (None, Some(_)) => {
                return Err(TlsConfigError::Conflict {
                    field: "cert_file",
                    detail: "key_file needs cert_file",
                });
            }
        }
        if let Some(path) = &self.ca_file {
            tls = tls.roots(read_certs(path).map_err(TlsConfigError::CaFile)?);
        }
        tls.client_config().map_err(|e| match e {
            TlsError::TrustAnchor(_) => TlsConfigError::CaFile(e),
            TlsError::Identity(_) => TlsConfigError::Rustls {
                field: "key_file",
                source: e,
            },
            _ => TlsConfigError::Rustls {
                field: "tls",
                source: e,
            },
        })
    }
}

/// An HTTP/1.1 client for `http://` and `https://` with these settings (axi-obs-core's
/// [`HttpClient`], connections kept alive); each request, connect included, takes at most
/// `timeout`.
pub(crate) fn http_client(
    tls: &TlsOptions,
    timeout: std::time::Duration,
) -> Result<HttpClient, TlsConfigError> {
    let connector = Connector::new(tls.client_config()?)
        .connect_timeout(timeout)
        .build();
    Ok(HttpClient::new(connector, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_and_conflicts_name_their_field() {
        assert!(TlsOptions::default().client_config().is_ok());
        let half = TlsOptions {
            cert_file: Some("c.pem".into()),
            ..TlsOptions::default()
        };
        assert_eq!(half.client_config().unwrap_err().field(), "key_file");
        let both = TlsOptions {
            ca_file: Some("ca.pem".into()),
            insecure_skip_verify: true,
            ..TlsOptions::default()
        };
        assert_eq!(
            both.client_config().unwrap_err().field(),
            "insecure_skip_verify"
        );
        let missing = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let e = missing.client_config().unwrap_err();
        assert_eq!(e.field(), "ca_file");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let o = TlsOptions {
            ca_file: Some(path),
            ..TlsOptions::default()
        };
        let e = o.client_config().unwrap_err();
        assert_eq!(e.field(), "ca_file");
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}
