//! A small SMTP client (RFC 5321) on Tokio and rustls, doing what Alertmanager's email
//! notifier does with Go's `net/smtp`: greeting, EHLO (HELO when EHLO is refused), STARTTLS
//! when TLS is required, or implicit TLS; AUTH PLAIN or LOGIN when a user is configured and
//! the server offers AUTH; MAIL FROM, one RCPT TO per recipient, DATA with dot-stuffing,
//! QUIT. Every step has a timeout.
//!
//! Reply classes decide retries: a 4xx reply is transient (retried), a 5xx reply is
//! permanent; network errors and timeouts are retried.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::email_config::TlsConfig;

/// Default limit of each SMTP step (connect, TLS handshake, each command, the message).
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest reply line read; longer replies are a protocol error.
const MAX_LINE: u64 = 4096;
/// The most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 256;

/// Why an SMTP delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The connection failed or broke.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A step took longer than the timeout.
    #[error("{step}: timed out")]
    Timeout {
        /// What was being done.
        step: &'static str,
    },
    /// The server answered with an unexpected reply code.
    #[error("{step}: {code} {text}")]
    Reply {
        /// What was being done.
        step: &'static str,
        /// The reply code (4xx: transient, 5xx: permanent).
        code: u16,
        /// The reply text (its lines joined with a space).
        text: String,
    },
    /// The server's reply could not be read as SMTP.
    #[error("{step}: malformed reply: {detail}")]
    Protocol {
        /// What was being done.
        step: &'static str,
        /// The problem.
        #[source]
        detail: ProtocolDetail,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {server}: {source}")]
    Tls {
        /// The server name checked.
        server: String,
        /// The rustls or I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot work with this server (TLS required but not offered,
    /// credentials over plain text, an unusable TLS file, no usable AUTH mechanism, a bad
    /// address). Not retried.
    #[error("{0}")]
    Config(String),
}

/// What was wrong with a reply.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolDetail(String);

impl SmtpError {
    /// Whether trying again may help: network errors, timeouts, TLS handshakes, malformed
    /// replies and 4xx replies are retried; 5xx replies and configuration problems are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            SmtpError::Io { .. }
            | SmtpError::Timeout { .. }
            | SmtpError::Tls { .. }
            | SmtpError::Protocol { .. } => true,
            SmtpError::Reply { code, .. } => (400..500).contains(code),
            SmtpError::Config(_) => false,
        }
    }
}

/// Credentials for AUTH PLAIN / LOGIN.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) identity: String,
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One message to deliver and how.
#[derive(Debug, Clone)]
pub(crate) struct Envelope<'a> {
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) hello: &'a str,
    pub(crate) implicit_tls: bool,
    pub(crate) require_tls: bool,
    pub(crate) tls: Option<&'a TlsConfig>,
    /// `None` when no user is configured: no AUTH.
    pub(crate) credentials: Option<Credentials>,
    pub(crate) from: &'a str,
    pub(crate) to: &'a [String],
    /// The message, lines ending in CRLF (bare LF is turned into CRLF).
    pub(crate) data: &'a [u8],
    pub(crate) timeout: Duration,
}

/// Delivers one message.
pub(crate) async fn send(env: &Envelope<'_>) -> Result<(), SmtpError> {
    let tcp = step(
        env.timeout,
        "connect",
        TcpStream::connect((env.host, env.port)),
    )
    .await?;
    if env.implicit_tls {
        let tls = handshake(env, tcp).await?;
        let mut c = Conn::new(tls, env.timeout);
        c.expect("greeting", &[220]).await?;
        let ext = c.hello(env.hello).await?;
        return c.transaction(env, &ext, true).await;
    }
    let mut c = Conn::new(tcp, env.timeout);
    c.expect("greeting", &[220]).await?;
    let ext = c.hello(env.hello).await?;
    if !env.require_tls {
        // As Alertmanager: without require_tls, no STARTTLS even when offered.
        return c.transaction(env, &ext, false).await;
    }
    if !ext.has("STARTTLS") {
        return Err(SmtpError::Config(format!(
            "'require_tls' is true (default) but \"{}:{}\" does not advertise the STARTTLS extension",
            env.host, env.port
        )));
    }
    c.command("STARTTLS", "STARTTLS", &[220]).await?;
    if !c.io.buffer().is_empty() {
        // Bytes sent before the handshake would be read as if they came over TLS.
        return Err(SmtpError::Config(
            "server sent data after its STARTTLS reply".into(),
        ));
    }
    let tls = handshake(env, c.io.into_inner()).await?;
    let mut c = Conn::new(tls, env.timeout);
    let ext = c.hello(env.hello).await?;
    c.transaction(env, &ext, true).await
}

async fn step<T, E: Into<std::io::Error>>(
    timeout: Duration,
    step: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, SmtpError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SmtpError::Io {
            step,
            source: e.into(),
        }),
        Err(_) => Err(SmtpError::Timeout { step }),
    }
}

/// The extensions an EHLO reply announced (keywords upper-cased, with their parameters).
#[derive(Debug, Default)]
struct Extensions(Vec<(String, String)>);

impl Extensions {
    fn has(&self, keyword: &str) -> bool {
        self.0.iter().any(|(k, _)| k == keyword)
    }

    fn params(&self, keyword: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, p)| p.as_str())
    }
}

struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        self.lines.join(" ")
    }
}

struct Conn<S> {
    io: BufReader<S>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(io: S, timeout: Duration) -> Self {
        Conn {
            io: BufReader::new(io),
            timeout,
        }
    }

    async fn read_reply(&mut self, what: &'static str) -> Result<Reply, SmtpError> {
        let timeout = self.timeout;
        let io = &mut self.io;
        let read = async move {
            let mut lines = Vec::new();
            loop {
                let mut line = Vec::new();
                let n = (&mut *io)
                    .take(MAX_LINE)
                    .read_until(b'\n', &mut line)
                    .await?;
                if n == 0 {
                    return Ok(Err("connection closed".to_string()));
                }
                if line.last() != Some(&b'\n') {
                    return Ok(Err("reply line too long".to_string()));
                }
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\r', '\n']);
                let (code, rest) = match (line.get(..3), line.get(3..)) {
                    (Some(c), Some(rest)) if c.bytes().all(|b| b.is_ascii_digit()) => (c, rest),
                    _ => return Ok(Err(format!("{line:?}"))),
                };
                let Ok(code) = code.parse::<u16>() else {
                    return Ok(Err(format!("{line:?}")));
                };
                let (more, text) = match rest.as_bytes().first() {
                    None => (false, ""),
                    Some(b' ') => (false, &rest[1..]),
                    Some(b'-') => (true, &rest[1..]),
                    Some(_) => return Ok(Err(format!("{line:?}"))),
                };
                lines.push((code, text.to_string()));
                if !more {
                    break;
                }
                if lines.len() >= MAX_REPLY_LINES {
                    return Ok(Err("reply has too many lines".to_string()));
                }
            }
            let code = lines[0].0;
            if lines.iter().any(|(c, _)| *c != code) {
                return Ok(Err("reply lines with different codes".to_string()));
            }
            Ok::<_, std::io::Error>(Ok(Reply {
                code,
                lines: lines.into_iter().map(|(_, t)| t).collect(),
            }))
        };
        match step(timeout, what, read).await? {
            Ok(r) => Ok(r),
            Err(detail) => Err(SmtpError::Protocol {
                step: what,
                detail: ProtocolDetail(detail),
            }),
        }
    }

    async fn expect(&mut self, what: &'static str, codes: &[u16]) -> Result<Reply, SmtpError> {
        let r = self.read_reply(what).await?;
        if codes.contains(&r.code) {
            Ok(r)
        } else {
            Err(SmtpError::Reply {
                step: what,
                code: r.code,
                text: r.text(),
            })
        }
    }

    async fn write(&mut self, what: &'static str, bytes: &[u8]) -> Result<(), SmtpError> {
        let timeout = self.timeout;
        let io = self.io.get_mut();
        step(timeout, what, async move {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
    }

    async fn command(
        &mut self,
        what: &'static str,
        line: &str,
        codes: &[u16],
    ) -> Result<Reply, SmtpError> {
        self.write(what, format!("{line}\r\n").as_bytes()).await?;
        self.expect(what, codes).await
    }

    /// EHLO, or HELO when EHLO is refused (then no extensions).
    async fn hello(&mut self, name: &str) -> Result<Extensions, SmtpError> {
        match self.command("EHLO", &format!("EHLO {name}"), &[250]).await {
            Ok(r) => Ok(Extensions(
                r.lines
                    .iter()
                    .skip(1)
                    .map(|l| {
                        let (k, p) = l.split_once(' ').unwrap_or((l, ""));
                        (k.to_ascii_uppercase(), p.to_string())
                    })
                    .collect(),
            )),
            Err(SmtpError::Reply { .. }) => {
                self.command("HELO", &format!("HELO {name}"), &[250])
                    .await?;
                Ok(Extensions::default())
            }
            Err(e) => Err(e),
        }
    }

    /// AUTH (when configured and offered), MAIL, RCPT, DATA, QUIT.
    async fn transaction(
        &mut self,
        env: &Envelope<'_>,
        ext: &Extensions,
        tls: bool,
    ) -> Result<(), SmtpError> {
        if let (Some(creds), Some(mechs)) = (&env.credentials, ext.params("AUTH")) {
            self.auth(env.host, creds, mechs, tls).await?;
        }
        self.command("MAIL", &format!("MAIL FROM:<{}>", env.from), &[250])
            .await?;
        for rcpt in env.to {
            self.command("RCPT", &format!("RCPT TO:<{rcpt}>"), &[250, 251])
                .await?;
        }
        self.command("DATA", "DATA", &[354]).await?;
        self.write("message", &dot_stuff(env.data)).await?;
        self.expect("message", &[250]).await?;
        // The message is accepted: a failing QUIT does not undo that.
        if let Err(e) = self.command("QUIT", "QUIT", &[221]).await {
            tracing::debug!(error = %e, "SMTP QUIT failed after the message was accepted");
        }
        Ok(())
    }

    /// AUTH with the first mechanism of the server's list that we can do (PLAIN or LOGIN),
    /// as Alertmanager picks it. Credentials only go over TLS or to a loopback host (Go's
    /// `smtp.PlainAuth` rule).
    async fn auth(
        &mut self,
        host: &str,
        creds: &Credentials,
        mechs: &str,
        tls: bool,
    ) -> Result<(), SmtpError> {
        let mech = mechs
            .split_ascii_whitespace()
            .map(str::to_ascii_uppercase)
            .find(|m| m == "PLAIN" || m == "LOGIN")
            .ok_or_else(|| {
                SmtpError::Config(format!(
                    "no supported auth mechanism (PLAIN, LOGIN) in {mechs:?}"
                ))
            })?;
        if creds.password.is_empty() {
            return Err(SmtpError::Config(format!(
                "missing password for {mech} auth mechanism"
            )));
        }
        if !tls && !matches!(host, "localhost" | "127.0.0.1" | "::1") {
            return Err(SmtpError::Config(
                "refusing to send SMTP credentials over an unencrypted connection".into(),
            ));
        }
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        if mech == "PLAIN" {
            let resp = format!("{}\0{}\0{}", creds.identity, creds.username, creds.password);
            self.command(
                "AUTH",
                &format!("AUTH PLAIN {}", b64(resp.as_bytes())),
                &[235],
            )
            .await?;
            return Ok(());
        }
        self.write("AUTH", b"AUTH LOGIN\r\n").await?;
        // The challenges are "Username:" and "Password:" by convention; servers word them
        // differently (aiosmtpd: "User Name\0"), so unknown ones are answered in order.
        for i in 0..4 {
            let r = self.expect("AUTH", &[235, 334]).await?;
            if r.code == 235 {
                return Ok(());
            }
            let challenge = base64::engine::general_purpose::STANDARD
                .decode(r.text().trim())
                .map(|c| String::from_utf8_lossy(&c).to_ascii_lowercase())
                .unwrap_or_default();
            let answer = if challenge.contains("pass") {
                &creds.password
            } else if challenge.contains("user") || i == 0 {
                &creds.username
            } else if i == 1 {
                &creds.password
            } else {
                // Cancel the exchange (RFC 4954) before giving up.
                let _ = self.write("AUTH", b"*\r\n").await;
                return Err(SmtpError::Protocol {
                    step: "AUTH",
                    detail: ProtocolDetail("unexpected server challenge".into()),
                });
            };
            self.write("AUTH", format!("{}\r\n", b64(answer.as_bytes())).as_bytes())
                .await?;
        }
        let _ = self.write("AUTH", b"*\r\n").await;
        Err(SmtpError::Protocol {
            step: "AUTH",
            detail: ProtocolDetail("too many server challenges".into()),
        })
    }
}

/// The DATA payload: lines ending in CRLF, a leading `.` doubled, then `.` CRLF.
pub(crate) fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in data {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

async fn handshake(
    env: &Envelope<'_>,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SmtpError> {
    let default = TlsConfig::default();
    let tls = env.tls.unwrap_or(&default);
    let cfg = client_config(tls).await?;
    let name = tls
        .server_name
        .clone()
        .unwrap_or_else(|| env.host.to_string());
    let server = ServerName::try_from(name.clone())
        .map_err(|e| SmtpError::Config(format!("TLS server name {name:?}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    match tokio::time::timeout(env.timeout, connector.connect(server, tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(source)) => Err(SmtpError::Tls {
            server: name,
            source,
        }),
        Err(_) => Err(SmtpError::Timeout {
            step: "TLS handshake",
        }),
    }
}

/// The rustls configuration of `tls`; files are read off the runtime threads.
async fn client_config(tls: &TlsConfig) -> Result<ClientConfig, SmtpError> {
    let tls = tls.clone();
    tokio::task::spawn_blocking(move || tls.client_config())
        .await
        .map_err(|e| SmtpError::Config(format!("TLS configuration: {e}")))?
        .map_err(SmtpError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// One connection: `(expected line prefix, reply)` in order. An empty prefix sends the
    /// reply without reading; `<DATA>` reads the message up to `.` CRLF; `<TLS>` does the
    /// server side of a TLS handshake.
    type Script = Vec<(&'static str, &'static str)>;

    /// A scripted SMTP server on 127.0.0.1 serving one connection per script; yields what
    /// each connection received.
    async fn server(
        scripts: Vec<Script>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let mut out = Vec::new();
            for script in scripts {
                let (tcp, _) = l.accept().await.unwrap();
                let mut log = String::new();
                let mut io = BufReader::new(tcp);
                let i = play(&mut io, &script, &mut log).await;
                if i < script.len() {
                    let acceptor = tls.clone().expect("a TLS acceptor");
                    let tls = acceptor.accept(io.into_inner()).await.unwrap();
                    log.push_str("<TLS>\n");
                    play(&mut BufReader::new(tls), &script[i + 1..], &mut log).await;
                }
                out.push(log);
            }
            out
        });
        (port, h)
    }

    /// Plays `script` until its end or a `<TLS>` step (whose index is returned).
    async fn play<S: AsyncRead + AsyncWrite + Unpin>(
        io: &mut BufReader<S>,
        script: &[(&str, &str)],
        log: &mut String,
    ) -> usize {
        for (i, (expect, reply)) in script.iter().enumerate() {
            match *expect {
                "<TLS>" => return i,
                "" => {}
                "<DATA>" => loop {
                    let mut line = String::new();
                    io.read_line(&mut line).await.unwrap();
                    assert!(!line.is_empty(), "connection closed in DATA");
                    log.push_str(&line);
                    if line == ".\r\n" {
                        break;
                    }
                },
                prefix => {
                    let mut line = String::new();
                    io.read_line(&mut line).await.unwrap();
                    assert!(line.starts_with(prefix), "want {prefix:?}, got {line:?}");
                    log.push_str(&line);
                }
            }
            io.get_mut().write_all(reply.as_bytes()).await.unwrap();
        }
        script.len()
    }

    fn envelope<'a>(port: u16, data: &'a [u8], to: &'a [String]) -> Envelope<'a> {
        Envelope {
            host: "127.0.0.1",
            port,
            hello: "axi.test",
            implicit_tls: false,
            require_tls: false,
            tls: None,
            credentials: None,
            from: "am@example.org",
            to,
            data,
            timeout: Duration::from_secs(10),
        }
    }

    fn creds() -> Option<Credentials> {
        Some(Credentials {
            identity: String::new(),
            username: "user".into(),
            password: "pass".into(),
        })
    }

    const EHLO_AUTH: &str = "250-mx.test\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n";

    fn happy(ehlo: &'static str, auth: Script) -> Script {
        let mut s = vec![("", "220 mx.test ESMTP\r\n"), ("EHLO axi.test\r\n", ehlo)];
        s.extend(auth);
        s.extend([
            ("MAIL FROM:<am@example.org>\r\n", "250 ok\r\n"),
            ("RCPT TO:<a@example.org>\r\n", "250 ok\r\n"),
            ("RCPT TO:<b@example.org>\r\n", "251 forwarded\r\n"),
            ("DATA\r\n", "354 go on\r\n"),
            ("<DATA>", "250 queued\r\n"),
            ("QUIT\r\n", "221 bye\r\n"),
        ]);
        s
    }

    fn rcpts() -> Vec<String> {
        vec!["a@example.org".into(), "b@example.org".into()]
    }

    #[tokio::test]
    async fn auth_plain_several_recipients_and_dot_stuffing() {
        let script = happy(
            EHLO_AUTH,
            vec![("AUTH PLAIN AHVzZXIAcGFzcw==\r\n", "235 ok\r\n")],
        );
        let (port, h) = server(vec![script], None).await;
        let to = rcpts();
        let data = b"Subject: x\r\n\r\n.leading dot\n..two\r\nlast";
        let mut env = envelope(port, data, &to);
        env.credentials = creds();
        send(&env).await.unwrap();
        let log = h.await.unwrap().remove(0);
        assert!(
            log.contains("\r\n\r\n..leading dot\r\n...two\r\nlast\r\n.\r\n"),
            "{log}"
        );
    }

    #[tokio::test]
    async fn auth_login_and_helo_fallback() {
        let login = happy(
            "250-mx.test\r\n250 AUTH LOGIN CRAM-MD5\r\n",
            vec![
                ("AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n"),
                ("dXNlcg==\r\n", "334 UGFzc3dvcmQ6\r\n"),
                ("cGFzcw==\r\n", "235 ok\r\n"),
            ],
        );
        let mut helo = happy("", vec![]);
        helo[1] = ("EHLO axi.test\r\n", "502 what\r\n");
        helo.insert(2, ("HELO axi.test\r\n", "250 hi\r\n"));
        let (port, h) = server(vec![login, helo], None).await;
        let to = rcpts();
        let mut env = envelope(port, b"x", &to);
        env.credentials = creds();
        send(&env).await.unwrap();
        // No AUTH without EHLO extensions, even with credentials.
        send(&env).await.unwrap();
        let logs = h.await.unwrap();
        assert!(logs[1].contains("HELO axi.test"), "{}", logs[1]);
        assert!(!logs[1].contains("AUTH"), "{}", logs[1]);
    }

    #[tokio::test]
    async fn reply_classes_decide_retries() {
        let transient = vec![
            ("", "220 mx\r\n"),
            ("EHLO", "250 mx\r\n"),
            ("MAIL", "250 ok\r\n"),
            ("RCPT", "451-greylisted\r\n451 try later\r\n"),
        ];
        let permanent = vec![
            ("", "220 mx\r\n"),
            ("EHLO", "250 mx\r\n"),
            ("MAIL", "250 ok\r\n"),
            ("RCPT", "250 ok\r\n"),
            ("RCPT", "250 ok\r\n"),
            ("DATA", "354 go\r\n"),
            ("<DATA>", "554 rejected as spam\r\n"),
        ];
        let (port, h) = server(vec![transient, permanent], None).await;
        let to = rcpts();
        let env = envelope(port, b"x", &to);
        let e = send(&env).await.unwrap_err();
        assert!(
            matches!(&e, SmtpError::Reply { step: "RCPT", code: 451, text } if text == "greylisted try later"),
            "{e}"
        );
        assert!(e.is_retryable());
        let e = send(&env).await.unwrap_err();
        assert!(matches!(e, SmtpError::Reply { code: 554, .. }), "{e}");
        assert!(!e.is_retryable());
        h.await.unwrap();
    }

    #[tokio::test]
    async fn require_tls_refuses_a_server_without_starttls_and_garbage_is_an_error() {
        let plain = vec![("", "220 mx\r\n"), ("EHLO", "250-mx\r\n250 AUTH PLAIN\r\n")];
        let garbage = vec![("", "hello there\r\n")];
        let (port, h) = server(vec![plain, garbage], None).await;
        let to = rcpts();
        let mut env = envelope(port, b"x", &to);
        env.require_tls = true;
        let e = send(&env).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("does not advertise the STARTTLS extension"),
            "{e}"
        );
        assert!(!e.is_retryable());
        let e = send(&env).await.unwrap_err();
        assert!(
            matches!(
                e,
                SmtpError::Protocol {
                    step: "greeting",
                    ..
                }
            ),
            "{e}"
        );
        h.await.unwrap();
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            // Holds the connection open without a greeting until the client gives up.
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf).await;
        });
        let to = rcpts();
        let mut env = envelope(port, b"x", &to);
        env.timeout = Duration::from_millis(200);
        let e = send(&env).await.unwrap_err();
        assert!(matches!(e, SmtpError::Timeout { step: "greeting" }), "{e}");
        assert!(e.is_retryable());
        h.await.unwrap();
    }

    fn pki(dir: &std::path::Path) -> (tokio_rustls::TlsAcceptor, String) {
        let pki = axi_obs_core::testing::TestPki::new(&["mx.test"]);
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &pki.ca_pem).unwrap();
        (
            tokio_rustls::TlsAcceptor::from(pki.server_config()),
            ca_file.display().to_string(),
        )
    }

    #[tokio::test]
    async fn starttls_then_auth_and_implicit_tls() {
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, ca_file) = pki(dir.path());
        let mut starttls = vec![
            ("", "220 mx.test\r\n"),
            ("EHLO axi.test\r\n", "250-mx.test\r\n250 STARTTLS\r\n"),
            ("STARTTLS\r\n", "220 go ahead\r\n"),
            ("<TLS>", ""),
        ];
        starttls.extend(
            happy(EHLO_AUTH, vec![("AUTH PLAIN", "235 ok\r\n")])
                .into_iter()
                .skip(1),
        );
        let mut implicit = vec![("<TLS>", "")];
        implicit.extend(happy("250 mx.test\r\n", vec![]));
        // A certificate for another name is refused.
        let wrong_name = vec![
            ("", "220 mx.test\r\n"),
            ("EHLO axi.test\r\n", "250-mx.test\r\n250 STARTTLS\r\n"),
            ("STARTTLS\r\n", "220 go ahead\r\n"),
        ];
        let (port, h) = server(vec![starttls, implicit, wrong_name], Some(acceptor)).await;
        let to = rcpts();
        let tls = TlsConfig {
            ca_file: Some(ca_file),
            server_name: Some("mx.test".into()),
            ..TlsConfig::default()
        };
        let mut env = envelope(port, b"Subject: s\r\n\r\nbody", &to);
        env.require_tls = true;
        env.tls = Some(&tls);
        env.credentials = creds();
        send(&env).await.unwrap();
        env.implicit_tls = true;
        env.credentials = None;
        send(&env).await.unwrap();
        let other = TlsConfig {
            server_name: Some("other.test".into()),
            ..tls.clone()
        };
        env.implicit_tls = false;
        env.tls = Some(&other);
        let e = send(&env).await.unwrap_err();
        assert!(matches!(e, SmtpError::Tls { .. }), "{e}");
        let logs = h.await.unwrap();
        let after_tls = logs[0].split("<TLS>\n").nth(1).unwrap();
        assert!(
            after_tls.starts_with("EHLO axi.test\r\nAUTH PLAIN"),
            "{}",
            logs[0]
        );
        assert!(logs[1].contains("\r\n\r\nbody\r\n.\r\n"), "{}", logs[1]);
    }

    #[tokio::test]
    async fn unknown_auth_mechanism_is_refused() {
        let cram = vec![
            ("", "220 mx\r\n"),
            ("EHLO", "250-mx\r\n250 AUTH CRAM-MD5\r\n"),
        ];
        let (port, h) = server(vec![cram], None).await;
        let to = rcpts();
        let mut env = envelope(port, b"x", &to);
        env.credentials = creds();
        let e = send(&env).await.unwrap_err();
        assert!(e.to_string().contains("no supported auth mechanism"), "{e}");
        assert!(!e.is_retryable());
        h.await.unwrap();
    }

    #[tokio::test]
    async fn notifier_retries_4xx_and_gives_up_on_5xx() {
        use crate::delivery::{
            AmAlert, Config, Delivered, DeliveryError, Integration, LabelSet, Notification,
            NotificationReason, Notifier, RetryPolicy,
        };
        let greylist = vec![
            ("", "220 mx\r\n"),
            ("EHLO", "250 mx\r\n"),
            ("MAIL", "421 too busy\r\n"),
        ];
        let mut ok = happy("250 mx\r\n", vec![]);
        ok.retain(|(p, _)| !p.starts_with("RCPT TO:<b@"));
        let rejected = vec![
            ("", "220 mx\r\n"),
            ("EHLO", "250 mx\r\n"),
            ("MAIL", "550 no such sender\r\n"),
        ];
        let (port, h) = server(vec![greylist, ok, rejected], None).await;
        let cfg = Config::parse(
            &format!(
                "route:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: a@example.org\n    from: am@example.org\n    smarthost: 127.0.0.1:{port}\n    hello: axi.test\n    require_tls: false\n"
            ),
            std::path::Path::new("am.yml"),
        )
        .unwrap();
        let integration = Integration::Email(Box::new(cfg.receivers[0].email_configs[0].clone()));
        assert_eq!(integration.name(), "email");
        assert!(!integration.send_resolved());
        let n = Notification {
            receiver: "m".into(),
            group_key: "{}:{}".into(),
            group_labels: LabelSet::new(),
            alerts: vec![AmAlert {
                labels: LabelSet::from([("alertname".to_string(), "Down".to_string())]),
                annotations: LabelSet::new(),
                starts_at: 0,
                ends_at: None,
                generator_url: String::new(),
            }],
            reason: NotificationReason::FirstNotification,
            now_ms: 1_000,
            external_url: String::new(),
        };
        let notifier = Notifier::new(
            crate::delivery::http_client().expect("the delivery HTTP client"),
            RetryPolicy {
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(1),
                max_attempts: 3,
            },
        )
        .with_smtp_timeout(Duration::from_secs(10));
        assert_eq!(
            notifier.deliver(&integration, &n).await.unwrap(),
            Delivered::Sent
        );
        let e = notifier.deliver(&integration, &n).await.unwrap_err();
        assert!(
            matches!(&e, DeliveryError::Smtp(SmtpError::Reply { code: 550, .. })),
            "{e}"
        );
        // Three connections in all: the 5xx was not retried.
        let logs = h.await.unwrap();
        assert_eq!(logs.len(), 3);
        assert!(
            logs[1].contains("Subject: [FIRING:1]  (Down)\r\n"),
            "{}",
            logs[1]
        );
    }
}
