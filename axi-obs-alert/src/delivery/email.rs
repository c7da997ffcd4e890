//! Mail notifications: the message Alertmanager's email notifier writes (headers rendered
//! from templates and RFC 2047 Q-encoded, a `multipart/alternative` body with quoted-printable
//! text and HTML parts), sent over [`smtp`](super::smtp).

use std::time::Duration;

use super::email_config::{EmailConfig, split_host_port};
use super::integrations::{Delivered, DeliveryError};
use super::notification::{Notification, TemplateData};
use super::smtp::{self, Credentials, Envelope};
use crate::template::{Env, GoTime, Template};

/// The default templates used by mail, with Alertmanager's names so that a configuration
/// written for Alertmanager works: `email.default.subject` (Alertmanager's subject line:
/// status, firing count, group label values, then the other common label values),
/// `email.default.html` (our own compact HTML: a coloured status header, a link to the
/// alerts, then each firing and resolved alert with its labels, annotations and source
/// link), `__subject`, `__alertmanager` and `__alertmanagerURL`. Every mail template can
/// call them.
pub const DEFAULT_EMAIL_TEMPLATES: &str = include_str!("email_default.tmpl");

/// A rendered mail: the envelope and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    /// The envelope sender (`MAIL FROM`): the address of the rendered `from`.
    pub from: String,
    /// The envelope recipients (`RCPT TO`): the addresses of the rendered `to`.
    pub to: Vec<String>,
    /// The message (headers and MIME body), lines ending in CRLF, 7-bit clean.
    pub data: Vec<u8>,
}

fn render(
    name: &str,
    text: &str,
    data: &TemplateData,
    now_ms: i64,
) -> Result<String, DeliveryError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let full = format!("{text}{DEFAULT_EMAIL_TEMPLATES}");
    let t = Template::parse(name, &full).map_err(|e| DeliveryError::Template(e.to_string()))?;
    t.execute(&data.to_value(), &Env::new(&data.external_url, now_ms))
        .map_err(|e| DeliveryError::Template(e.to_string()))
}

/// The template data with every string HTML-escaped, standing in for Go's `html/template`
/// (Alertmanager renders `html` with it): label and annotation values cannot inject markup.
fn html_data(data: &TemplateData) -> TemplateData {
    let esc_map = |m: &super::model::LabelSet| {
        m.iter()
            .map(|(k, v)| (html_escape(k), html_escape(v)))
            .collect()
    };
    let mut d = data.clone();
    d.receiver = html_escape(&d.receiver);
    d.external_url = html_escape(&d.external_url);
    d.group_labels = esc_map(&d.group_labels);
    d.common_labels = esc_map(&d.common_labels);
    d.common_annotations = esc_map(&d.common_annotations);
    for a in &mut d.alerts {
        a.labels = esc_map(&a.labels);
        a.annotations = esc_map(&a.annotations);
        a.generator_url = html_escape(&a.generator_url);
    }
    d
}

/// Drops `<!-- ... -->` as Go's `html/template` drops comments of the template text (data
/// cannot add any: it is escaped).
fn strip_html_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("<!--") {
        out.push_str(&rest[..i]);
        match rest[i + 4..].find("-->") {
            Some(j) => rest = &rest[i + 4 + j + 3..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// Go's `html/template` escaping of text and attribute values: `&`, `<`, `>`, `"`, `'`,
/// `+` and NUL.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '+' => out.push_str("&#43;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The mail for `n`, or `None` when there is nothing to send (only resolved alerts and
/// `send_resolved: false`).
///
/// Headers are written in name order: those of `cfg.headers` (rendered, Q-encoded when not
/// printable ASCII), then `Message-Id` and `Date` unless configured. The `Message-Id` is
/// `<{flush ms}.{hash of receiver, group and recipients}@{hello}>`, the same for every retry
/// of one notification; `Date` is the flush time.
///
/// # Errors
///
/// [`DeliveryError::Template`] when a template fails, [`DeliveryError::Mail`] when `to`
/// or `from` does not render to valid addresses.
pub fn email_message(
    cfg: &EmailConfig,
    n: &Notification,
) -> Result<Option<EmailMessage>, DeliveryError> {
    let alerts = n.alerts_for(cfg.send_resolved);
    if alerts.is_empty() {
        return Ok(None);
    }
    let data = TemplateData::new(n, &alerts);
    let from = render("from", &cfg.from, &data, n.now_ms)?;
    let from = parse_address_list(&from)
        .map_err(|e| DeliveryError::Mail(format!("parse 'from' addresses: {e}")))?;
    let [from] = from.as_slice() else {
        return Err(DeliveryError::Mail(format!(
            "must be exactly one 'from' address (got: {})",
            from.len()
        )));
    };
    let to = render("to", &cfg.to, &data, n.now_ms)?;
    let to = parse_address_list(&to)
        .map_err(|e| DeliveryError::Mail(format!("parse 'to' addresses: {e}")))?;

    let mut msg = String::new();
    for (name, value) in &cfg.headers {
        let value = render(name, value, &data, n.now_ms)?;
        msg.push_str(&format!("{name}: {}\r\n", q_encode(&value)));
    }
    if !cfg.headers.contains_key("Message-Id") {
        let mut h = Fnv::new();
        for part in [n.receiver.as_str(), n.group_key.as_str()]
            .into_iter()
            .chain(to.iter().map(String::as_str))
        {
            h.write(part.as_bytes());
            h.write(&[0xff]);
        }
        msg.push_str(&format!(
            "Message-Id: <{}.{:016x}@{}>\r\n",
            n.now_ms, h.0, cfg.hello
        ));
    }
    if !cfg.headers.contains_key("Date") {
        let t = GoTime::from_unix_nanos(i128::from(n.now_ms) * 1_000_000);
        msg.push_str(&format!(
            "Date: {}\r\n",
            crate::template::gotime::format(t, "Mon, 02 Jan 2006 15:04:05 -0700")
        ));
    }
    let mut parts = Vec::new();
    if !cfg.text.is_empty() {
        let text = render("text", &cfg.text, &data, n.now_ms)?;
        parts.push(("text/plain", quoted_printable(&text)));
    }
    if !cfg.html.is_empty() {
        let html = strip_html_comments(&render("html", &cfg.html, &html_data(&data), n.now_ms)?);
        parts.push(("text/html", quoted_printable(&html)));
    }
    let boundary = boundary(&parts, n.now_ms);
    msg.push_str(&format!(
        "Content-Type: multipart/alternative;  boundary={boundary}\r\nMIME-Version: 1.0\r\n\r\n"
    ));
    for (i, (ctype, body)) in parts.iter().enumerate() {
        if i > 0 {
            msg.push_str("\r\n");
        }
        msg.push_str(&format!(
            "--{boundary}\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: {ctype}; charset=UTF-8\r\n\r\n{body}"
        ));
    }
    msg.push_str(&format!("\r\n--{boundary}--\r\n"));
    Ok(Some(EmailMessage {
        from: from.clone(),
        to,
        data: msg.into_bytes(),
    }))
}

/// A boundary that occurs in no part (quoted-printable lines never start with `--` followed
/// by it unless the text has it; the counter moves on then).
fn boundary(parts: &[(&str, String)], seed: i64) -> String {
    let mut h = Fnv::new();
    h.write(&seed.to_be_bytes());
    for (_, body) in parts {
        h.write(body.as_bytes());
    }
    let mut n = 0u32;
    loop {
        let b = format!("{:016x}{n:04x}", h.0);
        if !parts.iter().any(|(_, body)| body.contains(&b)) {
            return b;
        }
        n += 1;
    }
}

/// FNV-1a 64.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(14_695_981_039_346_656_037)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(1_099_511_628_211);
        }
    }
}

/// Go's `mime.QEncoding.Encode("utf-8", s)`: `s` unchanged when it is printable ASCII (tab
/// allowed), else RFC 2047 encoded-words of at most 75 characters, split between characters.
pub fn q_encode(s: &str) -> String {
    if s.bytes().all(|b| (b' '..=b'~').contains(&b) || b == b'\t') {
        return s.to_string();
    }
    const PREFIX: &str = "=?utf-8?q?";
    const MAX_WORD: usize = 75;
    let mut out = String::new();
    let mut word = String::new();
    for c in s.chars() {
        let mut enc = String::new();
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            match b {
                b' ' => enc.push('_'),
                b'!'..=b'~' if b != b'=' && b != b'?' && b != b'_' => enc.push(b as char),
                _ => enc.push_str(&format!("={b:02X}")),
            }
        }
        if PREFIX.len() + word.len() + enc.len() + 2 > MAX_WORD && !word.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("{PREFIX}{word}?="));
            word.clear();
        }
        word.push_str(&enc);
    }
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(&format!("{PREFIX}{word}?="));
    out
}

/// Quoted-printable (RFC 2045): line breaks become CRLF, lines stay within 76 characters
/// with soft breaks, `=`, control and non-ASCII bytes and trailing blanks are encoded.
pub fn quoted_printable(s: &str) -> String {
    const MAX: usize = 76;
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    let text = s.replace("\r\n", "\n");
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let bytes = line.as_bytes();
        let mut len = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let enc = match b {
                b' ' | b'\t' if last => format!("={b:02X}"),
                b' ' | b'\t' => (b as char).to_string(),
                b'!'..=b'~' if b != b'=' => (b as char).to_string(),
                _ => format!("={b:02X}"),
            };
            // Room for a soft break's `=` unless this is the line's end.
            let limit = if last { MAX } else { MAX - 1 };
            if len + enc.len() > limit {
                out.push_str("=\r\n");
                len = 0;
            }
            out.push_str(&enc);
            len += enc.len();
        }
        if lines.peek().is_some() {
            out.push_str("\r\n");
        }
    }
    out
}

/// Parses a comma-separated address list as Go's `mail.ParseAddressList` accepts the common
/// forms (`a@b`, `Name <a@b>`, `"Last, First" <a@b>`), returning the bare addresses.
pub fn parse_address_list(s: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let (mut cur, mut quoted, mut angle) = (String::new(), false, false);
    let mut escaped = false;
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if quoted || angle {
        return Err(format!(
            "mail: unclosed {} in {s:?}",
            if quoted { "quote" } else { "angle-addr" }
        ));
    }
    items.push(cur);
    let mut out = Vec::new();
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            return Err("mail: no address".into());
        }
        let addr = match (item.rfind('<'), item.ends_with('>')) {
            (Some(i), true) => {
                check_display_name(item[..i].trim())?;
                &item[i + 1..item.len() - 1]
            }
            (None, false) => item,
            _ => return Err(format!("mail: missing '>' in {item:?}")),
        };
        check_addr_spec(addr)?;
        out.push(addr.to_string());
    }
    Ok(out)
}

/// A display name: a quoted string, or words without specials; no control characters.
fn check_display_name(name: &str) -> Result<(), String> {
    let quoted = name.len() >= 2 && name.starts_with('"') && name.ends_with('"');
    let special = |c: char| !quoted && "()<>[]:;@\\,\"".contains(c);
    if name.chars().any(|c| c.is_control() || special(c)) {
        return Err(format!("mail: invalid display name {name:?}"));
    }
    Ok(())
}

fn check_addr_spec(a: &str) -> Result<(), String> {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return Err(format!("mail: missing @ in addr-spec {a:?}"));
    };
    let bad = |c: char| c.is_control() || c.is_whitespace() || "<>()[],;:\\\"".contains(c);
    if local.is_empty() || local.chars().any(bad) {
        return Err(format!("mail: invalid local part in {a:?}"));
    }
    if domain.is_empty() || domain.chars().any(|c| bad(c) || c == '@') {
        return Err(format!("mail: invalid domain in {a:?}"));
    }
    Ok(())
}

/// Sends `n` as mail through `cfg.smarthost`: STARTTLS when `require_tls` (refusing servers
/// that do not offer it), implicit TLS on port 465 or with `force_implicit_tls`, AUTH PLAIN
/// or LOGIN when `auth_username` is set and the server offers AUTH; each SMTP step limited
/// by `timeout`.
///
/// # Errors
///
/// A [`DeliveryError`]: [`DeliveryError::Smtp`] is retried for network errors and 4xx
/// replies, not for 5xx replies.
pub async fn send_email(
    cfg: &EmailConfig,
    n: &Notification,
    timeout: Duration,
) -> Result<Delivered, DeliveryError> {
    let Some(msg) = email_message(cfg, n)? else {
        return Ok(Delivered::NothingToSend);
    };
    let (host, port) = split_host_port(&cfg.smarthost)
        .map_err(|m| DeliveryError::Mail(format!("smarthost {:?}: {m}", cfg.smarthost)))?;
    let credentials = if cfg.auth_username.is_empty() {
        None
    } else {
        Some(Credentials {
            identity: cfg.auth_identity.clone(),
            username: cfg.auth_username.clone(),
            password: password(cfg).await?,
        })
    };
    let env = Envelope {
        host: &host,
        port,
        hello: &cfg.hello,
        implicit_tls: cfg.implicit_tls(),
        require_tls: cfg.require_tls.unwrap_or(true),
        tls: cfg.tls_config.as_ref(),
        credentials,
        from: &msg.from,
        to: &msg.to,
        data: &msg.data,
        timeout,
    };
    smtp::send(&env).await.map_err(DeliveryError::Smtp)?;
    Ok(Delivered::Sent)
}

/// `auth_password`, or the trimmed content of `auth_password_file` (read at each delivery,
/// off the runtime threads).
async fn password(cfg: &EmailConfig) -> Result<String, DeliveryError> {
    if let Some(file) = cfg.auth_password_file.clone() {
        let read = tokio::task::spawn_blocking(move || {
            std::fs::read_to_string(&file).map_err(|e| format!("could not read {file}: {e}"))
        })
        .await
        .map_err(|e| DeliveryError::Mail(e.to_string()))?;
        return read
            .map(|s| s.trim().to_string())
            .map_err(DeliveryError::Mail);
    }
    Ok(cfg
        .auth_password
        .as_ref()
        .map(|p| p.0.clone())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::config::{Config, Secret};
    use crate::delivery::model::{AmAlert, LabelSet};
    use crate::delivery::notification::NotificationReason;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn cfg(extra: &str) -> EmailConfig {
        let text = format!(
            "global:\n  smtp_smarthost: 'localhost:25'\n  smtp_from: 'Alertmanager <am@example.org>'\nroute:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: 'ops@example.org, \"Doe, J\" <jd@example.org>'\n{extra}"
        );
        let c = Config::parse(&text, std::path::Path::new("am.yml")).unwrap();
        c.receivers[0].email_configs[0].clone()
    }

    fn note(alerts: Vec<AmAlert>) -> Notification {
        Notification {
            receiver: "m".into(),
            group_key: "{}:{alertname=\"Down\"}".into(),
            group_labels: ls(&[("alertname", "Down")]),
            alerts,
            reason: NotificationReason::FirstNotification,
            now_ms: 1_577_836_801_000,
            external_url: "http://am:9093".into(),
        }
    }

    fn alert(labels: &[(&str, &str)], ends_at: Option<i64>) -> AmAlert {
        AmAlert {
            labels: ls(labels),
            annotations: ls(&[("summary", "api <b>down</b>")]),
            starts_at: 1_577_836_800_000,
            ends_at,
            generator_url: "http://prom/graph?a=1&b=2".into(),
        }
    }

    fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
        msg.split("\r\n\r\n")
            .next()?
            .split("\r\n")
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }

    #[test]
    fn default_subject_is_alertmanagers() {
        let c = cfg("");
        let two = note(vec![
            alert(&[("alertname", "Down"), ("job", "api"), ("i", "1")], None),
            alert(&[("alertname", "Down"), ("job", "api"), ("i", "2")], None),
        ]);
        let m = email_message(&c, &two).unwrap().unwrap();
        let text = String::from_utf8(m.data).unwrap();
        assert_eq!(header(&text, "Subject"), Some("[FIRING:2] Down (api)"));
        assert_eq!(
            header(&text, "To"),
            Some("ops@example.org, \"Doe, J\" <jd@example.org>")
        );
        assert_eq!(header(&text, "From"), Some("Alertmanager <am@example.org>"));
        assert_eq!(
            header(&text, "Date"),
            Some("Wed, 01 Jan 2020 00:00:01 +0000")
        );
        assert!(header(&text, "Message-Id").is_some_and(|v| v.ends_with("@localhost>")));
        assert_eq!(m.from, "am@example.org");
        assert_eq!(m.to, vec!["ops@example.org", "jd@example.org"]);
        // Equal label counts: no parenthesis, Alertmanager's trailing blank kept.
        let one = note(vec![alert(&[("alertname", "Down")], None)]);
        let m = email_message(&c, &one).unwrap().unwrap();
        let text = String::from_utf8(m.data).unwrap();
        assert_eq!(header(&text, "Subject"), Some("[FIRING:1] Down "));
    }

    #[test]
    fn html_part_escapes_values_and_text_part_is_optional() {
        let c = cfg("");
        let m = email_message(&c, &note(vec![alert(&[("alertname", "Down")], None)]))
            .unwrap()
            .unwrap();
        let text = String::from_utf8(m.data).unwrap();
        assert!(text.contains("Content-Type: multipart/alternative;  boundary="));
        assert!(text.contains("Content-Type: text/html; charset=UTF-8"));
        assert!(!text.contains("text/plain"), "no text part by default");
        let body = text.replace("=\r\n", "");
        assert!(body.contains("api &lt;b&gt;down&lt;/b&gt;"), "{body}");
        assert!(body.contains("http://prom/graph?a=3D1&amp;b=3D2"), "{body}");
        assert!(body.contains("alertname =3D Down"), "{body}");
        // html/template drops comments.
        assert!(!body.contains("<!--"), "{body}");
        assert_eq!(strip_html_comments("a<!-- x -->b<!--c"), "ab");
        assert_eq!(html_escape("a+b<'\""), "a&#43;b&lt;&#39;&#34;");
        for line in text.split("\r\n") {
            assert!(line.len() <= 998 && line.is_ascii(), "{line}");
        }
        let with_text = cfg(
            "    text: '{{ range .Alerts }}{{ .Labels.alertname }}: {{ .Annotations.summary }}{{ end }}'\n",
        );
        let m = email_message(
            &with_text,
            &note(vec![alert(&[("alertname", "Down")], None)]),
        )
        .unwrap()
        .unwrap();
        let text = String::from_utf8(m.data).unwrap();
        let plain = text.find("text/plain").unwrap();
        assert!(plain < text.find("text/html").unwrap());
        assert!(
            text.contains("\r\n\r\nDown: api <b>down</b>\r\n--"),
            "{text}"
        );
    }

    #[test]
    fn resolved_only_is_not_sent_without_send_resolved() {
        let c = cfg("");
        let n = note(vec![alert(
            &[("alertname", "Down")],
            Some(1_577_836_800_500),
        )]);
        assert_eq!(email_message(&c, &n).unwrap(), None);
        let c = cfg("    send_resolved: true\n");
        let m = email_message(&c, &n).unwrap().unwrap();
        let text = String::from_utf8(m.data).unwrap();
        assert_eq!(header(&text, "Subject"), Some("[RESOLVED] Down "));
    }

    #[test]
    fn non_ascii_headers_are_q_encoded() {
        let c = cfg("    headers:\n      subject: '告警 {{ .Status }}: déjà vu'\n");
        let m = email_message(&c, &note(vec![alert(&[("alertname", "Down")], None)]))
            .unwrap()
            .unwrap();
        let text = String::from_utf8(m.data).unwrap();
        assert_eq!(
            header(&text, "Subject"),
            Some("=?utf-8?q?=E5=91=8A=E8=AD=A6_firing:_d=C3=A9j=C3=A0_vu?=")
        );
        assert_eq!(q_encode("plain text"), "plain text");
        assert_eq!(q_encode("a\r\nBcc: x@y"), "=?utf-8?q?a=0D=0ABcc:_x@y?=");
        let long = q_encode(&"é".repeat(40));
        for word in long.split(' ') {
            assert!(word.len() <= 75 && word.starts_with("=?utf-8?q?"), "{word}");
        }
        assert_eq!(long.matches("=C3=A9").count(), 40);
    }

    #[test]
    fn quoted_printable_rules() {
        assert_eq!(quoted_printable("a=b \nc\t\r\nd"), "a=3Db=20\r\nc=09\r\nd");
        assert_eq!(quoted_printable("é"), "=C3=A9");
        let long = quoted_printable(&"x".repeat(200));
        assert!(long.split("\r\n").all(|l| l.len() <= 76), "{long}");
        assert_eq!(long.replace("=\r\n", ""), "x".repeat(200));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address_list("a@b.c, B <b@c.d>,\"x, y\" <y@z>").unwrap(),
            vec!["a@b.c", "b@c.d", "y@z"]
        );
        for bad in [
            "",
            "a@b,",
            "nobody",
            "<a@b",
            "a b@c",
            "a@b\r\nRCPT TO:<x@y>",
        ] {
            assert!(parse_address_list(bad).is_err(), "{bad:?}");
        }
        let mut c = cfg("");
        c.from = "a@b, c@d".into();
        let e = email_message(&c, &note(vec![alert(&[("alertname", "Down")], None)])).unwrap_err();
        assert!(
            e.to_string()
                .contains("exactly one 'from' address (got: 2)"),
            "{e}"
        );
        assert!(!e.is_retryable());
        c.auth_password = Some(Secret("p".into()));
        assert!(!format!("{c:?}").contains("\"p\""));
    }
}
