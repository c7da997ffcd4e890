//! `email_configs[]` and `tls_config`, with Alertmanager 0.33's defaults and its inheritance
//! of `global.smtp_*` (done once at load, as `config.Load` does).

use std::collections::BTreeMap;
use std::path::Path;

use axi_obs_core::tls::{ClientTls, read_certs, read_key};
use rustls::ClientConfig;
use serde::{Deserialize, Deserializer};

use super::config::{Config, ConfigError, GlobalConfig, Secret};

/// Alertmanager's default `html` of an email config.
pub const DEFAULT_EMAIL_HTML: &str = r#"{{ template "email.default.html" . }}"#;
/// Alertmanager's default `Subject` header.
pub const DEFAULT_EMAIL_SUBJECT: &str = r#"{{ template "email.default.subject" . }}"#;
/// Alertmanager's default `global.smtp_hello`.
pub const DEFAULT_SMTP_HELLO: &str = "localhost";

/// `tls_config` (Prometheus's common TLS settings, the supported subset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificates that verify the server; the system's trust store
    /// when unset.
    pub ca_file: Option<String>,
    /// PEM client certificate (with `key_file`).
    pub cert_file: Option<String>,
    /// PEM client key (with `cert_file`).
    pub key_file: Option<String>,
    /// The name the server's certificate must hold. Defaults to the smarthost's host.
    pub server_name: Option<String>,
    /// Accept any server certificate. Defaults to false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl TlsConfig {
    /// The rustls client configuration (ring provider): trust anchors from `ca_file` (unused
    /// when `insecure_skip_verify`), else the system's; the `cert_file` + `key_file`
    /// identity. `server_name` is the connector's business. Reads the files: call it off the
    /// runtime's threads.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, String> {
        let mut cfg = ClientTls::new().insecure_skip_verify(self.insecure_skip_verify);
        if let (Some(path), false) = (&self.ca_file, self.insecure_skip_verify) {
            let certs = read_certs(path.as_ref()).map_err(|e| format!("ca_file {e}"))?;
            cfg = cfg.roots(certs);
        }
        match (&self.cert_file, &self.key_file) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert.as_ref()).map_err(|e| format!("cert_file {e}"))?;
                let key = read_key(key.as_ref()).map_err(|e| format!("key_file {e}"))?;
                cfg = cfg.identity(chain, key);
            }
            _ => return Err("tls_config: cert_file and key_file go together".into()),
        }
        cfg.client_config().map_err(|e| format!("tls_config: {e}"))
    }
}

/// `email_configs[]`: mail through an SMTP smarthost.
///
/// After [`Config::parse`] every field inherited from `global.smtp_*` is filled in and the
/// `Subject`, `To` and `From` headers have their defaults, as Alertmanager does at load.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Whether resolved alerts are notified. Defaults to false (Alertmanager's default for
    /// mail).
    #[serde(default)]
    pub send_resolved: bool,
    /// Recipients (a template): a comma-separated list of RFC 5322 addresses. Required.
    #[serde(default)]
    pub to: String,
    /// The sender address (a template). Defaults to `global.smtp_from`.
    #[serde(default)]
    pub from: String,
    /// The SMTP server as `host:port`. Defaults to `global.smtp_smarthost`. Port 465 means
    /// implicit TLS unless `force_implicit_tls` says otherwise.
    #[serde(default, deserialize_with = "host_port")]
    pub smarthost: String,
    /// The name sent with EHLO. Defaults to `global.smtp_hello` (`localhost`).
    #[serde(default)]
    pub hello: String,
    /// The AUTH user; without one no AUTH is attempted. Defaults to
    /// `global.smtp_auth_username`.
    #[serde(default)]
    pub auth_username: String,
    /// The AUTH PLAIN / LOGIN password. Defaults to `global.smtp_auth_password`.
    pub auth_password: Option<Secret>,
    /// A file holding the password, read at each delivery. Defaults to
    /// `global.smtp_auth_password_file`.
    pub auth_password_file: Option<String>,
    /// The AUTH PLAIN identity. Defaults to `global.smtp_auth_identity`.
    #[serde(default)]
    pub auth_identity: String,
    /// The CRAM-MD5 secret: refused (CRAM-MD5 is not supported).
    pub auth_secret: Option<Secret>,
    /// The CRAM-MD5 secret file: refused (CRAM-MD5 is not supported).
    pub auth_secret_file: Option<String>,
    /// Whether STARTTLS is required (and done). Defaults to `global.smtp_require_tls`
    /// (true).
    pub require_tls: Option<bool>,
    /// Implicit TLS on any port (`true`), never (`false`), or on port 465 only (unset).
    /// Defaults to `global.smtp_force_implicit_tls`.
    pub force_implicit_tls: Option<bool>,
    /// TLS settings. Defaults to `global.smtp_tls_config`.
    pub tls_config: Option<TlsConfig>,
    /// Header templates by name (names are canonicalised: `subject` is `Subject`).
    /// `Subject`, `To` and `From` default to `email.default.subject`, `to` and `from`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The HTML body template; empty means no HTML part. Defaults to
    /// [`DEFAULT_EMAIL_HTML`].
    #[serde(default = "default_html")]
    pub html: String,
    /// The plain-text body template; empty (the default) means no text part.
    #[serde(default)]
    pub text: String,
}

fn default_html() -> String {
    DEFAULT_EMAIL_HTML.to_string()
}

/// Go's `net.SplitHostPort` as Alertmanager's `HostPort` uses it; an empty string is unset.
fn host_port<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Ok(s);
    }
    split_host_port(&s)
        .map_err(|m| <D::Error as serde::de::Error>::custom(format!("address {s:?}: {m}")))?;
    Ok(s)
}

/// Splits `host:port` (`[v6]:port` too) as Go's `net.SplitHostPort`, refusing an empty port.
pub(crate) fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .ok_or_else(|| "missing ']' in address".to_string())?;
        let p = p
            .strip_prefix(':')
            .ok_or_else(|| "missing port in address".to_string())?;
        (h, p)
    } else {
        let (h, p) = s
            .rsplit_once(':')
            .ok_or_else(|| "missing port in address".to_string())?;
        if h.contains(':') {
            return Err("too many colons in address".into());
        }
        (h, p)
    };
    if port.is_empty() {
        return Err("port cannot be empty".into());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("invalid port {port:?}"))?;
    Ok((host.to_string(), port))
}

/// A character of an RFC 7230 token (a header name).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `content-type` is `Content-Type`; a key with a
/// character outside a header token is returned unchanged.
pub(crate) fn canonical_header_key(k: &str) -> String {
    if !k.chars().all(is_token_char) {
        return k.to_string();
    }
    let mut upper = true;
    k.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

impl EmailConfig {
    /// Whether the connection is TLS from the first byte: `force_implicit_tls`, else port
    /// 465.
    pub fn implicit_tls(&self) -> bool {
        match self.force_implicit_tls {
            Some(b) => b,
            None => split_host_port(&self.smarthost).is_ok_and(|(_, p)| p == 465),
        }
    }

    /// Fills what is unset from `global`, as Alertmanager's `config.Load`, and sets the
    /// default headers.
    fn inherit(&mut self, g: &GlobalConfig) -> Result<(), String> {
        if self.to.is_empty() {
            return Err("missing to address in email config".into());
        }
        if self.auth_password.is_some() && self.auth_password_file.is_some() {
            return Err(
                "at most one of auth_password & auth_password_file must be configured".into(),
            );
        }
        let mut headers = BTreeMap::new();
        for (k, v) in std::mem::take(&mut self.headers) {
            if k.is_empty() || !k.chars().all(is_token_char) {
                return Err(format!("invalid header name {k:?} in email config"));
            }
            let key = canonical_header_key(&k);
            if headers.insert(key.clone(), v).is_some() {
                return Err(format!("duplicate header {key:?} in email config"));
            }
        }
        self.headers = headers;
        if self.tls_config.is_none() {
            self.tls_config.clone_from(&g.smtp_tls_config);
        }
        if self.smarthost.is_empty() {
            match &g.smtp_smarthost {
                Some(h) if !h.is_empty() => {
                    split_host_port(h).map_err(|m| format!("smtp_smarthost {h:?}: {m}"))?;
                    self.smarthost.clone_from(h);
                }
                _ => return Err("no global SMTP smarthost set".into()),
            }
        }
        if self.from.is_empty() {
            match &g.smtp_from {
                Some(f) if !f.is_empty() => self.from.clone_from(f),
                _ => return Err("no global SMTP from set".into()),
            }
        }
        if self.hello.is_empty() {
            self.hello = g
                .smtp_hello
                .clone()
                .unwrap_or_else(|| DEFAULT_SMTP_HELLO.to_string());
        }
        if self.hello.is_empty()
            || self
                .hello
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("invalid hello name {:?}", self.hello));
        }
        if self.auth_username.is_empty() {
            self.auth_username = g.smtp_auth_username.clone().unwrap_or_default();
        }
        if self.auth_password.is_none() && self.auth_password_file.is_none() {
            self.auth_password.clone_from(&g.smtp_auth_password);
            self.auth_password_file
                .clone_from(&g.smtp_auth_password_file);
        }
        if self.auth_secret.is_none() && self.auth_secret_file.is_none() {
            self.auth_secret.clone_from(&g.smtp_auth_secret);
            self.auth_secret_file.clone_from(&g.smtp_auth_secret_file);
        }
        if self.auth_secret.as_ref().is_some_and(|s| !s.0.is_empty())
            || self
                .auth_secret_file
                .as_ref()
                .is_some_and(|f| !f.is_empty())
        {
            return Err(concat!(
                "auth_secret / auth_secret_file (SMTP AUTH CRAM-MD5) is not supported: ",
                "use auth_password (AUTH PLAIN or LOGIN)"
            )
            .into());
        }
        if self.auth_identity.is_empty() {
            self.auth_identity = g.smtp_auth_identity.clone().unwrap_or_default();
        }
        if self.require_tls.is_none() {
            self.require_tls = Some(g.smtp_require_tls.unwrap_or(true));
        }
        if self.force_implicit_tls.is_none() {
            self.force_implicit_tls = g.smtp_force_implicit_tls;
        }
        self.headers
            .entry("Subject".into())
            .or_insert_with(|| DEFAULT_EMAIL_SUBJECT.to_string());
        self.headers
            .entry("To".into())
            .or_insert_with(|| self.to.clone());
        self.headers
            .entry("From".into())
            .or_insert_with(|| self.from.clone());
        let templates = [&self.to, &self.from, &self.html, &self.text]
            .into_iter()
            .chain(self.headers.values());
        for t in templates {
            crate::template::Template::parse("email", t).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl Config {
    /// Applies `global.smtp_*` to every email config (Alertmanager's `config.Load`), after
    /// checking the global password settings.
    pub(super) fn inherit_smtp(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let g = &self.global;
        let fail = |message: String, line: Option<usize>| ConfigError {
            file: path.to_owned(),
            line,
            column: None,
            message,
        };
        if g.smtp_auth_password.is_some() && g.smtp_auth_password_file.is_some() {
            return Err(fail(
                "at most one of smtp_auth_password & smtp_auth_password_file must be configured"
                    .into(),
                line_of(text, 0, "smtp_auth_password"),
            ));
        }
        if let Some(h) = g.smtp_smarthost.as_ref().filter(|h| !h.is_empty()) {
            split_host_port(h).map_err(|m| {
                fail(
                    format!("address {h:?}: {m}"),
                    line_of(text, 0, "smtp_smarthost"),
                )
            })?;
        }
        for r in &mut self.receivers {
            // The receiver's own `email_configs:` line, to point errors at.
            let at = line_of(text, 0, &format!("name: {}", r.name))
                .or_else(|| line_of(text, 0, &r.name))
                .unwrap_or(1);
            let line = line_of(text, at - 1, "email_configs");
            for (i, e) in r.email_configs.iter_mut().enumerate() {
                e.inherit(&self.global).map_err(|m| {
                    fail(
                        format!("receiver {:?}: email_configs[{i}]: {m}", r.name),
                        line,
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// The 1-based number of the first line at or after line index `from` holding `needle`.
fn line_of(text: &str, from: usize, needle: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("am.yml"))
    }

    #[test]
    fn inherits_global_smtp_as_alertmanager() {
        let c = parse(
            "global:\n  smtp_smarthost: 'localhost:25'\n  smtp_from: 'am@example.org'\n  smtp_auth_username: u\n  smtp_auth_password: p\n  smtp_hello: host.example.org\nroute:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: 'one@example.org'\n  - to: two@example.org\n    from: other@example.org\n    auth_password_file: /tmp/pw\n    require_tls: false\n    headers: {subject: 'S', x-team: a}\n",
        )
        .unwrap();
        let e = &c.receivers[0].email_configs;
        assert_eq!(e[0].smarthost, "localhost:25");
        assert_eq!(e[0].from, "am@example.org");
        assert_eq!(e[0].hello, "host.example.org");
        assert_eq!(e[0].auth_username, "u");
        assert_eq!(e[0].auth_password, Some(Secret("p".into())));
        assert_eq!(e[0].require_tls, Some(true));
        assert!(!e[0].send_resolved);
        assert_eq!(e[0].html, DEFAULT_EMAIL_HTML);
        assert_eq!(e[0].headers["Subject"], DEFAULT_EMAIL_SUBJECT);
        assert_eq!(e[0].headers["To"], "one@example.org");
        assert_eq!(e[0].headers["From"], "am@example.org");
        // A local password file replaces both global password settings.
        assert_eq!(e[1].auth_password, None);
        assert_eq!(e[1].auth_password_file.as_deref(), Some("/tmp/pw"));
        assert_eq!(e[1].require_tls, Some(false));
        assert_eq!(e[1].headers["Subject"], "S");
        assert_eq!(e[1].headers["X-Team"], "a");
        assert_eq!(e[1].headers["From"], "other@example.org");
        assert!(!e[0].implicit_tls());
        assert!(format!("{:?}", e[0]).contains("<secret>"));
        assert!(!format!("{:?}", e[0]).contains("\"p\""));
    }

    #[test]
    fn errors_name_the_receiver_and_line() {
        for (text, want, line) in [
            (
                "route:\n  receiver: m\nreceivers:\n- name: x\n- name: m\n  email_configs:\n  - from: a@b\n    smarthost: h:25\n",
                "receiver \"m\": email_configs[0]: missing to address in email config",
                Some(6),
            ),
            (
                "route:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: a@b\n",
                "no global SMTP smarthost set",
                Some(5),
            ),
            (
                "global:\n  smtp_smarthost: h:25\nroute:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: a@b\n",
                "no global SMTP from set",
                Some(7),
            ),
            (
                "global:\n  smtp_smarthost: 'localhost:25'\n  smtp_from: a@b\n  smtp_auth_password: x\n  smtp_auth_password_file: /tmp/g\nroute:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: a@b\n",
                "at most one of smtp_auth_password & smtp_auth_password_file",
                Some(4),
            ),
            (
                "route:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: a@b\n    from: a@b\n    smarthost: h:25\n    auth_secret: s\n",
                "CRAM-MD5",
                Some(5),
            ),
            (
                "route:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: a@b\n    from: a@b\n    smarthost: h:25\n    headers: {subject: a, Subject: b}\n",
                "duplicate header \"Subject\"",
                Some(5),
            ),
            (
                "route:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: a@b\n    from: a@b\n    smarthost: h:25\n    headers: {'Bad Name': b}\n",
                "invalid header name \"Bad Name\"",
                Some(5),
            ),
            (
                "route:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: a@b\n    from: a@b\n    smarthost: h:25\n    hello: \"a\\r\\nMAIL FROM:<x@y>\"\n",
                "invalid hello name",
                Some(5),
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(want), "{text}: {e}");
            assert_eq!(e.line, line, "{text}: {e}");
        }
    }

    #[test]
    fn bad_fields_and_smarthosts_are_located() {
        let e = parse(
            "route:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: a@b\n    smarthost: nohost\n",
        )
        .unwrap_err();
        assert!(e.message.contains("missing port in address"), "{e}");
        assert!(e.line.is_some(), "{e}");
        let e = parse(
            "route:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: a@b\n    threading: {enabled: true}\n",
        )
        .unwrap_err();
        assert!(e.message.contains("threading"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn implicit_tls_and_host_port() {
        assert_eq!(split_host_port("[::1]:25"), Ok(("::1".into(), 25)));
        assert!(split_host_port("h:").is_err());
        let c = parse(
            "global:\n  smtp_smarthost: smtp.example.org:465\n  smtp_from: a@b\nroute:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: a@b\n  - to: a@b\n    force_implicit_tls: false\n",
        )
        .unwrap();
        assert!(c.receivers[0].email_configs[0].implicit_tls());
        assert!(!c.receivers[0].email_configs[1].implicit_tls());
        assert_eq!(canonical_header_key("x-mailer-ID"), "X-Mailer-Id");
    }

    #[test]
    fn alertmanager_testdata_is_accepted_or_refused_alike() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/conformance/alertmanager/config/testdata");
        if !dir.is_dir() {
            eprintln!("skipped: {} is absent", dir.display());
            return;
        }
        for (file, ok) in [
            ("conf.smtp-no-username-or-password.yml", true),
            ("conf.smtp-both-password-and-file.yml", false),
        ] {
            let r = Config::load(&dir.join(file));
            assert_eq!(r.is_ok(), ok, "{file}: {r:?}");
        }
    }
}
