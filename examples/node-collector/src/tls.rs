//! TLS for HTTPS probes: the rustls client configuration of a probe (trust store, `ca_file`,
//! `insecure_skip_verify`) and what blackbox_exporter reports about a handshake (TLS version,
//! the earliest `NotAfter` of the presented chain).
//!
//! Certificates are verified against the host's trust store (`/etc/ssl/certs` and the other
//! places OpenSSL looks, through `rustls-native-certs`), as blackbox_exporter uses Go's system
//! pool; a probe with `ca_file` trusts exactly the certificates in that file instead, as
//! blackbox_exporter's `tls_config.ca_file` does.

use std::path::Path;
use std::sync::Arc;

use axi_obs_core::tls::{ClientTls, TlsError};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};

/// Why a probe's TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// `ca_file` could not be read or held no PEM certificate.
    #[error("ca_file {0}")]
    CaFile(#[source] TlsError),
    /// rustls refused the configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The certificates of a PEM file (`ca_file`).
///
/// # Errors
///
/// When the file cannot be read, is not PEM, or holds no certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    axi_obs_core::tls::read_certs(path).map_err(TlsConfigError::CaFile)
}

/// The rustls client configuration of one HTTPS probe: verified against `ca_file` when given,
/// else against the system trust store; not verified at all with `insecure_skip_verify` (the
/// handshake signatures still are, so the connection is real TLS). ALPN offers `http/1.1`.
///
/// # Errors
///
/// When `ca_file` cannot be used.
pub fn client_config(
    ca_file: Option<&Path>,
    insecure_skip_verify: bool,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let mut tls = ClientTls::new()
        .insecure_skip_verify(insecure_skip_verify)
        .alpn(vec![b"http/1.1".to_vec()]);
    if let (Some(path), false) = (ca_file, insecure_skip_verify) {
        tls = tls.roots(read_ca_file(path)?);
    }
    Ok(Arc::new(tls.client_config()?))
}

/// blackbox_exporter's name of a TLS version (`probe_tls_version_info{version}`).
pub fn version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_0 => "TLS 1.0",
        rustls::ProtocolVersion::TLSv1_1 => "TLS 1.1",
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2",
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3",
        _ => "unknown",
    }
}

/// The earliest `NotAfter` (Unix seconds) of the certificates a server presented, as
/// blackbox_exporter's `probe_ssl_earliest_cert_expiry`; `None` when none could be read.
pub fn earliest_expiry(chain: &[CertificateDer<'_>]) -> Option<i64> {
    chain.iter().filter_map(|c| not_after(c)).min()
}

/// The `NotAfter` of a DER certificate in Unix seconds, or `None` when the DER is not a
/// certificate of the RFC 5280 shape. Reads only the path to the validity field:
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... }, ... }`.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xA0 {
        rest = after;
    }
    for expected in [0x02, 0x30, 0x30] {
        // serialNumber INTEGER, signature AlgorithmIdentifier, issuer Name.
        let (tag, _, after) = tlv(rest)?;
        if tag != expected {
            return None;
        }
        rest = after;
    }
    let (0x30, validity, _) = tlv(rest)? else {
        return None;
    };
    let (_, _, after_not_before) = tlv(validity)?;
    let (tag, time, _) = tlv(after_not_before)?;
    asn1_time(tag, time)
}

/// One DER tag-length-value: (tag, content, the bytes after it). Single-byte tags and definite
/// lengths of at most 4 bytes, which is all a certificate's outer structure uses.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1F == 0x1F {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (content, after) = rest.split_at(len);
    Some((tag, content, after))
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18), the
/// DER forms RFC 5280 allows, to Unix seconds.
fn asn1_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let (year, rest) = match (tag, text.len()) {
        (0x17, 13) => {
            let yy = digits(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let (month, day) = (digits(&rest[0..2])?, digits(&rest[2..4])?);
    let (hour, minute, second) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A server name for SNI and verification: a DNS name or an IP address literal (brackets of an
/// IPv6 URL host removed).
pub(crate) fn server_name(host: &str) -> Option<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cert_expiring(year: i32, month: u8, day: u8) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, month, day);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn not_after_of_utctime_and_generalizedtime_certificates() {
        // 2030-06-15T00:00:00Z is UTCTime in the certificate, 2060 GeneralizedTime.
        assert_eq!(not_after(&cert_expiring(2030, 6, 15)), Some(1_907_712_000));
        assert_eq!(not_after(&cert_expiring(2060, 1, 2)), Some(2_840_227_200));
        let chain = [
            CertificateDer::from(cert_expiring(2060, 1, 2)),
            CertificateDer::from(cert_expiring(2030, 6, 15)),
        ];
        assert_eq!(earliest_expiry(&chain), Some(1_907_712_000));
        assert_eq!(earliest_expiry(&[]), None);
    }

    #[test]
    fn asn1_times() {
        assert_eq!(asn1_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(asn1_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(asn1_time(0x17, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(asn1_time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(asn1_time(0x17, b"700101000000+"), None);
        assert_eq!(asn1_time(0x17, b"701301000000Z"), None);
        assert_eq!(asn1_time(0x18, b"2038011903140Z"), None);
        assert_eq!(asn1_time(0x04, b"700101000000Z"), None);
    }

    /// Truncated or corrupted certificates give `None` or some number, never a panic.
    #[test]
    fn broken_der_never_panics() {
        let der = cert_expiring(2031, 1, 1);
        for end in 0..der.len() {
            assert_eq!(not_after(&der[..end]), None, "truncated at {end}");
        }
        for i in 0..der.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut bad = der.clone();
                bad[i] ^= flip;
                let _ = not_after(&bad);
            }
        }
        assert_eq!(not_after(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]), None);
        assert_eq!(not_after(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
    }

    #[test]
    fn ca_file_errors_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = read_ca_file(&empty).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no certificate"),
            "{e}"
        );
        let e = read_ca_file(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("example.com"),
            Some(ServerName::DnsName(_))
        ));
        assert_eq!(version_name(rustls::ProtocolVersion::TLSv1_3), "TLS 1.3");
    }
}
