//! Sending one notification through one integration: webhook (version 4), DingTalk robot
//! (signed markdown), WeCom group robot (markdown). Mail is in [`super::email`].

use axi_obs_core::https::HttpClient;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::config::{DingTalkConfig, WeComConfig, WebhookConfig};
use super::model::query_escape;
use super::notification::{Notification, TemplateData, WebhookMessage};
use super::smtp::SmtpError;
use crate::template::{Env, Template};

/// The default markdown title of robot messages.
pub const DEFAULT_TITLE: &str = r#"[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ len .Alerts }}{{ end }}] {{ .CommonLabels.alertname }}"#;

/// The default markdown body of robot messages: one section per alert with its labels and
/// summary.
pub const DEFAULT_MESSAGE: &str = r#"{{ range .Alerts }}### [{{ .Status | toUpper }}] {{ .Labels.alertname }}
{{ with .Annotations.summary }}> {{ . }}

{{ end }}{{ range $k, $v := .Labels }}- {{ $k }}: {{ $v }}
{{ end }}- startsAt: {{ .StartsAt }}
{{ end }}"#;

/// The User-Agent of our requests.
pub const USER_AGENT: &str = concat!("axi-obs-alert/", env!("CARGO_PKG_VERSION"));

/// WeCom's limit for a markdown message's content, in bytes: a longer one is refused with
/// `errcode` 40058 ("markdown.content exceed max length 4096").
pub const WECOM_MARKDOWN_MAX_BYTES: usize = 4096;

/// DingTalk's limit for a whole robot request body, in bytes: a longer one is refused ("body
/// 大小不合法 … 请保持大小在 20000bytes 以内").
pub const DINGTALK_BODY_MAX_BYTES: usize = 20_000;

/// What a cut message text ends with, before the mentions it keeps (as Alertmanager ends
/// the texts it truncates).
const CUT_MARK: &str = "…";

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The request could not be made or timed out (the text never holds the URL, which may
    /// carry a robot's access token).
    #[error("request failed: {0}")]
    Http(String),
    /// The server answered with a non-2xx status.
    #[error("unexpected status {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// A robot answered 200 with a non-zero `errcode`.
    #[error("robot error {errcode}: {errmsg}")]
    Robot {
        /// The error code (DingTalk 310000: security check failed; WeCom 45009: rate limit).
        errcode: i64,
        /// The message.
        errmsg: String,
    },
    /// The robot's answer was not `{"errcode":..}` JSON.
    #[error("unreadable robot response: {0}")]
    BadResponse(String),
    /// A message template failed.
    #[error("template: {0}")]
    Template(String),
    /// The SMTP dialogue failed.
    #[error("smtp: {0}")]
    Smtp(#[source] SmtpError),
    /// The mail could not be made: `to` or `from` are not addresses, the password file
    /// cannot be read.
    #[error("mail: {0}")]
    Mail(String),
    /// The notification went out batched with others (a robot's message limit was reached)
    /// and that message failed.
    #[error("batched robot message: {message}")]
    Batched {
        /// Whether the batch's error could be retried.
        retryable: bool,
        /// The batch's error.
        message: String,
    },
}

impl DeliveryError {
    /// Whether trying again may help: network errors, 5xx, 429 and the WeCom rate limit
    /// (errcode 45009) are retried; other statuses, robot errors and template errors are not
    /// (Alertmanager's rule: 4xx fails at once). For mail, network errors and SMTP 4xx
    /// replies are retried, 5xx replies are not ([`SmtpError::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Http(_) => true,
            DeliveryError::Status { status, .. } => *status >= 500 || *status == 429,
            DeliveryError::Robot { errcode, .. } => *errcode == 45009,
            DeliveryError::Smtp(e) => e.is_retryable(),
            DeliveryError::Batched { retryable, .. } => *retryable,
            DeliveryError::BadResponse(_) | DeliveryError::Template(_) | DeliveryError::Mail(_) => {
                false
            }
        }
    }
}

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// One request was sent and accepted.
    Sent,
    /// Nothing to send: only resolved alerts and `send_resolved: false`.
    NothingToSend,
}

/// The most of a receiver's answer that is read.
pub(crate) const MAX_REPLY_BYTES: usize = 64 * 1024;

/// POSTs `body` as JSON to `url` with our `User-Agent` (deliveries and remediation URLs);
/// `None` when `url` is no URL (never shown: it may hold a token; checked at load already).
pub(crate) async fn send_json(
    client: &HttpClient,
    url: &str,
    body: Vec<u8>,
) -> Option<Result<axi_obs_core::https::Reply, axi_obs_core::https::HttpError>> {
    let uri: http::Uri = url.parse().ok()?;
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    );
    Some(client.post(&uri, &headers, "application/json", body).await)
}

async fn post_json(
    client: &HttpClient,
    url: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, DeliveryError> {
    let reply = send_json(client, url, body)
        .await
        .ok_or_else(|| DeliveryError::Http("the receiver's URL is not a valid URL".into()))?
        .map_err(|e| DeliveryError::Http(e.to_string()))?;
    let status = reply.status;
    // What a receiver answers is read up to a bound (an error text, a robot's small JSON
    // reply; see `http_client`): a receiver answering without end cannot grow our memory.
    let bytes = reply.body[..reply.body.len().min(MAX_REPLY_BYTES)].to_vec();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        return Err(DeliveryError::Status {
            status: status.as_u16(),
            body: text.chars().take(200).collect(),
        });
    }
    Ok(bytes)
}

/// Sends `n` to a webhook: one POST of a [`WebhookMessage`].
///
/// # Errors
///
/// A [`DeliveryError`]; see [`DeliveryError::is_retryable`].
pub async fn send_webhook(
    client: &HttpClient,
    cfg: &WebhookConfig,
    n: &Notification,
) -> Result<Delivered, DeliveryError> {
    let alerts = n.alerts_for(cfg.send_resolved);
    if alerts.is_empty() {
        return Ok(Delivered::NothingToSend);
    }
    let msg = WebhookMessage::new(n, &alerts, cfg.max_alerts);
    // Serializing plain strings and maps cannot fail.
    let body = serde_json::to_vec(&msg).unwrap_or_default();
    post_json(client, &cfg.url.0, body).await?;
    Ok(Delivered::Sent)
}

fn render(
    name: &str,
    text: &str,
    data: &TemplateData,
    now_ms: i64,
) -> Result<String, DeliveryError> {
    let t = Template::parse(name, text).map_err(|e| DeliveryError::Template(e.to_string()))?;
    t.execute(&data.to_value(), &Env::new(&data.external_url, now_ms))
        .map_err(|e| DeliveryError::Template(e.to_string()))
}

/// DingTalk's signature: `urlencode(base64(HMAC-SHA256(secret, "{timestamp}\n{secret}")))`.
///
/// ```
/// use axi_obs_alert::delivery::dingtalk_sign;
///
/// assert_eq!(
///     dingtalk_sign(1577836800000, "SEC0123456789abcdef"),
///     "VIkrYXpqM66nY2agvTap17lAqEfAZw77OqD62%2BMh1G0%3D"
/// );
/// ```
pub fn dingtalk_sign(timestamp_ms: i64, secret: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length.
        Err(_) => return String::new(),
    };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    query_escape(&sig)
}

/// The DingTalk request body: a markdown message with `at` mentions (each mobile is also
/// written into the text, as DingTalk requires).
///
/// # Errors
///
/// When a template fails.
pub fn dingtalk_body(
    cfg: &DingTalkConfig,
    n: &Notification,
) -> Result<Option<serde_json::Value>, DeliveryError> {
    let alerts = n.alerts_for(cfg.send_resolved);
    if alerts.is_empty() {
        return Ok(None);
    }
    let data = TemplateData::new(n, &alerts);
    let title = render(
        "title",
        cfg.title.as_deref().unwrap_or(DEFAULT_TITLE),
        &data,
        n.now_ms,
    )?;
    let mut text = render(
        "message",
        cfg.message.as_deref().unwrap_or(DEFAULT_MESSAGE),
        &data,
        n.now_ms,
    )?;
    if !cfg.at_mobiles.is_empty() {
        text.push('\n');
        for m in &cfg.at_mobiles {
            text.push_str(&format!("@{m} "));
        }
    }
    let mut body = json!({
        "msgtype": "markdown",
        "markdown": {"title": title, "text": text},
        "at": {"atMobiles": cfg.at_mobiles, "isAtAll": cfg.at_all},
    });
    fit_robot_body(&mut body);
    Ok(Some(body))
}

/// The robot URL with `timestamp` and `sign` appended when a secret is set.
pub fn dingtalk_url(cfg: &DingTalkConfig, now_ms: i64) -> String {
    let mut url = cfg.robot_url();
    if let Some(secret) = &cfg.secret {
        let sep = if url.contains('?') { '&' } else { '?' };
        url.push_str(&format!(
            "{sep}timestamp={now_ms}&sign={}",
            dingtalk_sign(now_ms, &secret.0)
        ));
    }
    url
}

fn check_robot_reply(body: &[u8]) -> Result<(), DeliveryError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        DeliveryError::BadResponse(String::from_utf8_lossy(body).chars().take(200).collect())
    })?;
    match v.get("errcode").and_then(serde_json::Value::as_i64) {
        Some(0) => Ok(()),
        Some(errcode) => Err(DeliveryError::Robot {
            errcode,
            errmsg: v
                .get("errmsg")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }),
        None => Err(DeliveryError::BadResponse(
            String::from_utf8_lossy(body).chars().take(200).collect(),
        )),
    }
}

/// Sends `n` to a DingTalk robot, signed with `n.now_ms` when a secret is set. An answer
/// with `errcode != 0` is a failure.
///
/// # Errors
///
/// A [`DeliveryError`].
pub async fn send_dingtalk(
    client: &HttpClient,
    cfg: &DingTalkConfig,
    n: &Notification,
) -> Result<Delivered, DeliveryError> {
    let Some(body) = dingtalk_body(cfg, n)? else {
        return Ok(Delivered::NothingToSend);
    };
    post_robot(client, &dingtalk_url(cfg, n.now_ms), &body).await
}

/// The WeCom request body: a markdown message with mentions appended as `<@userid>`, fitted
/// to [`WECOM_MARKDOWN_MAX_BYTES`] (see [`fit_robot_body`]).
///
/// # Errors
///
/// When the template fails.
pub fn wecom_body(
    cfg: &WeComConfig,
    n: &Notification,
) -> Result<Option<serde_json::Value>, DeliveryError> {
    let alerts = n.alerts_for(cfg.send_resolved);
    if alerts.is_empty() {
        return Ok(None);
    }
    let data = TemplateData::new(n, &alerts);
    let mut content = render(
        "message",
        cfg.message.as_deref().unwrap_or(DEFAULT_MESSAGE),
        &data,
        n.now_ms,
    )?;
    for id in &cfg.mentioned_list {
        content.push_str(&format!("<@{id}>"));
    }
    let mut body = json!({"msgtype": "markdown", "markdown": {"content": content}});
    fit_robot_body(&mut body);
    Ok(Some(body))
}

/// Fits a robot's markdown message to what the robot accepts, so that a long message (a big
/// group, or a batch made while the robot's rate limit was reached) arrives cut instead of
/// being refused whole: DingTalk's text while the serialized body is over
/// [`DINGTALK_BODY_MAX_BYTES`], WeCom's content while over [`WECOM_MARKDOWN_MAX_BYTES`].
///
/// A cut text ends with `…` on a character boundary, followed by the mentions it lost (a
/// DingTalk `@mobile` of `at.atMobiles`, which must stand in the text to notify; a WeCom
/// `<@userid>`), whole mentions only should they alone exceed the limit. A DingTalk title is
/// cut too when it would take more than half of the room. A body that fits is left as it
/// is; one that is not a robot markdown message too.
pub fn fit_robot_body(body: &mut serde_json::Value) {
    if robot_body_fits(body) {
        return;
    }
    cut_robot_body(body);
}

/// Whether a robot markdown message is within its robot's limit as it is (DingTalk: the
/// whole body; WeCom: the content). Anything else counts as fitting.
pub(crate) fn robot_body_fits(body: &serde_json::Value) -> bool {
    let markdown = &body["markdown"];
    if markdown
        .get("text")
        .and_then(serde_json::Value::as_str)
        .is_some()
    {
        body.to_string().len() <= DINGTALK_BODY_MAX_BYTES
    } else if let Some(content) = markdown.get("content").and_then(serde_json::Value::as_str) {
        content.len() <= WECOM_MARKDOWN_MAX_BYTES
    } else {
        true
    }
}

fn cut_robot_body(body: &mut serde_json::Value) {
    let markdown = &body["markdown"];
    if let Some(text) = markdown.get("text").and_then(serde_json::Value::as_str) {
        let total = body.to_string().len();
        if total <= DINGTALK_BODY_MAX_BYTES {
            return;
        }
        let json_len = |s: &str| s.chars().map(json_char_len).sum::<usize>();
        let whole_title = markdown["title"].as_str().unwrap_or_default();
        // What the text and the title may take: everything but their own characters (their
        // quotes included) is kept.
        let room =
            DINGTALK_BODY_MAX_BYTES.saturating_sub(total - json_len(text) - json_len(whole_title));
        // The title is kept whole unless it would take more than half of that.
        let title = (json_len(whole_title) > room / 2)
            .then(|| cut_keeping_mentions(whole_title, room / 2, &[], json_char_len));
        let title_len = json_len(title.as_deref().unwrap_or(whole_title));
        let mentions: Vec<String> = body["at"]["atMobiles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .map(|m| format!("@{m} "))
            .collect();
        let cut = cut_keeping_mentions(text, room - title_len, &mentions, json_char_len);
        body["markdown"]["text"] = serde_json::Value::String(cut);
        if let Some(title) = title {
            body["markdown"]["title"] = serde_json::Value::String(title);
        }
        let now = body.to_string().len();
        if now > DINGTALK_BODY_MAX_BYTES {
            tracing::error!(
                integration = "dingtalk",
                bytes = now,
                limit = DINGTALK_BODY_MAX_BYTES,
                "robot message over the robot's limit even with no text: its mention list \
                 alone is too long"
            );
        } else {
            tracing::warn!(
                integration = "dingtalk",
                bytes = total,
                limit = DINGTALK_BODY_MAX_BYTES,
                "robot message cut to the robot's limit"
            );
        }
    } else if let Some(content) = markdown.get("content").and_then(serde_json::Value::as_str) {
        if content.len() <= WECOM_MARKDOWN_MAX_BYTES {
            return;
        }
        let cut = cut_keeping_mentions(
            content,
            WECOM_MARKDOWN_MAX_BYTES,
            &wecom_mentions(content),
            char::len_utf8,
        );
        tracing::warn!(
            integration = "wecom",
            bytes = content.len(),
            limit = WECOM_MARKDOWN_MAX_BYTES,
            "robot message cut to the robot's limit"
        );
        body["markdown"]["content"] = serde_json::Value::String(cut);
    }
}

/// The WeCom mentions in `content`, each once, in order: `<@userid>` with a user id of 1 to
/// 64 bytes without `<`, `>` or white space (an unclosed `<@` is text, not a mention).
fn wecom_mentions(content: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut from = 0;
    while let Some(at) = content[from..].find("<@") {
        let start = from + at;
        let id = &content[start + 2..];
        let end = id.find(|c: char| c == '>' || c == '<' || c.is_whitespace());
        match end {
            Some(n @ 1..=64) if id[n..].starts_with('>') => {
                let tag = &content[start..start + n + 3];
                if !out.iter().any(|m| m == tag) {
                    out.push(tag.to_string());
                }
                from = start + n + 3;
            }
            _ => from = start + 2,
        }
    }
    out
}

/// How many bytes `c` takes in a JSON string as serde_json writes it: `"`, `\` and the
/// control characters with a short escape take 2, the other control characters 6 (`\u00XX`),
/// everything else its UTF-8 length.
fn json_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        '\0'..='\u{1f}' => 6,
        _ => c.len_utf8(),
    }
}

/// The longest start of `text` that, with [`CUT_MARK`] and the `mentions` it does not hold
/// after it, costs at most `budget` (`cost` per character). Room is first kept for every
/// mention, then only for those that start lacks: a longer start lacks no more of them, so
/// the result never exceeds the budget.
fn cut_keeping_mentions(
    text: &str,
    budget: usize,
    mentions: &[String],
    cost: fn(char) -> usize,
) -> String {
    let str_cost = |s: &str| s.chars().map(cost).sum::<usize>();
    let Some(room) = budget.checked_sub(str_cost(CUT_MARK)) else {
        return String::new();
    };
    // Whole mentions only, as many as fit beside the mark.
    let mut fitting: Vec<&str> = Vec::new();
    let mut left = room;
    for m in mentions {
        let c = str_cost(m);
        if c > left {
            continue;
        }
        left -= c;
        fitting.push(m);
    }
    let start = |room: usize| {
        let (mut kept, mut spent) = (0, 0);
        for (i, c) in text.char_indices() {
            spent += cost(c);
            if spent > room {
                break;
            }
            kept = i + c.len_utf8();
        }
        &text[..kept]
    };
    let lacking = lacked(start(left), &fitting);
    let kept = start(room - lacking.iter().map(|m| str_cost(m)).sum::<usize>());
    let mut out = kept.to_string();
    out.push_str(CUT_MARK);
    for m in lacked(kept, &lacking) {
        out.push_str(m);
    }
    out
}

/// The mentions among `among` that `kept` does not hold.
fn lacked<'m>(kept: &str, among: &[&'m str]) -> Vec<&'m str> {
    among
        .iter()
        .copied()
        .filter(|m| !kept.contains(m.trim_end()))
        .collect()
}

/// Posts a robot message body and checks the robot's `errcode`.
pub(crate) async fn post_robot(
    client: &HttpClient,
    url: &str,
    body: &serde_json::Value,
) -> Result<Delivered, DeliveryError> {
    let reply = post_json(client, url, body.to_string().into_bytes()).await?;
    check_robot_reply(&reply)?;
    Ok(Delivered::Sent)
}

/// Sends `n` to a WeCom group robot. An answer with `errcode != 0` is a failure.
///
/// # Errors
///
/// A [`DeliveryError`].
pub async fn send_wecom(
    client: &HttpClient,
    cfg: &WeComConfig,
    n: &Notification,
) -> Result<Delivered, DeliveryError> {
    let Some(body) = wecom_body(cfg, n)? else {
        return Ok(Delivered::NothingToSend);
    };
    post_robot(client, &cfg.robot_url(), &body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::model::{AmAlert, LabelSet};
    use crate::delivery::notification::NotificationReason;

    #[test]
    fn sign_vector_from_reference() {
        assert_eq!(
            dingtalk_sign(1_577_836_800_000, "SEC0123456789abcdef"),
            "VIkrYXpqM66nY2agvTap17lAqEfAZw77OqD62%2BMh1G0%3D"
        );
    }

    fn note() -> Notification {
        let labels: LabelSet = [("alertname", "Down"), ("job", "api")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Notification {
            receiver: "r".into(),
            group_key: "{}:{}".into(),
            group_labels: LabelSet::new(),
            alerts: vec![AmAlert {
                labels,
                annotations: [("summary".to_string(), "api is down".to_string())].into(),
                starts_at: 1_577_836_800_000,
                ends_at: None,
                generator_url: String::new(),
            }],
            reason: NotificationReason::FirstNotification,
            now_ms: 1_577_836_801_000,
            external_url: "http://am".into(),
        }
    }

    #[test]
    fn default_markdown() {
        let cfg: DingTalkConfig =
            serde_norway::from_str("access_token: t\nat_mobiles: ['138']\n").unwrap();
        let body = dingtalk_body(&cfg, &note()).unwrap().unwrap();
        assert_eq!(body["markdown"]["title"], "[FIRING:1] Down");
        assert_eq!(
            body["markdown"]["text"],
            "### [FIRING] Down\n> api is down\n\n- alertname: Down\n- job: api\n- startsAt: 2020-01-01 00:00:00 +0000 UTC\n\n@138 "
        );
        assert_eq!(body["at"]["atMobiles"][0], "138");
        assert_eq!(
            dingtalk_url(&cfg, 1),
            "https://oapi.dingtalk.com/robot/send?access_token=t"
        );
    }

    #[test]
    fn wecom_truncates_on_char_boundary() {
        let cfg: WeComConfig =
            serde_norway::from_str("key: k\nmessage: '{{ range .Alerts }}{{ .Labels.job }}{{ end }}告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告警告'\nmentioned_list: [u1]\n").unwrap();
        let body = wecom_body(&cfg, &note()).unwrap().unwrap();
        let content = body["markdown"]["content"].as_str().unwrap();
        assert!(content.starts_with("api告警"));
        assert!(content.ends_with("<@u1>"));
        let mut long = cfg.clone();
        long.message = Some("é".repeat(3000));
        let body = wecom_body(&long, &note()).unwrap().unwrap();
        let content = body["markdown"]["content"].as_str().unwrap();
        // The text is cut (on a boundary of the two-byte characters) and marked, the mention
        // kept.
        assert!(content.ends_with("é…<@u1>"), "{content}");
        assert!(
            (WECOM_MARKDOWN_MAX_BYTES - 1..=WECOM_MARKDOWN_MAX_BYTES).contains(&content.len()),
            "{}",
            content.len()
        );
    }

    #[test]
    fn a_long_dingtalk_body_is_cut_to_the_limit_keeping_its_mentions() {
        let mut cfg: DingTalkConfig =
            serde_norway::from_str("access_token: t\nat_mobiles: ['13800000000', '13900000000']\n")
                .unwrap();
        // Quotes and newlines take two bytes each once serialized; the limit is on the body.
        cfg.message = Some("告警 \"disk\"\n".repeat(2000));
        let body = dingtalk_body(&cfg, &note()).unwrap().unwrap();
        let len = body.to_string().len();
        assert!(
            (DINGTALK_BODY_MAX_BYTES - 6..=DINGTALK_BODY_MAX_BYTES).contains(&len),
            "{len}"
        );
        let text = body["markdown"]["text"].as_str().unwrap();
        assert!(text.starts_with("告警 \"disk\"\n告警"), "{text}");
        assert!(text.ends_with("…@13800000000 @13900000000 "), "{text}");
        assert_eq!(body["at"]["atMobiles"][1], "13900000000");
        // A body that fits is left alone.
        cfg.message = Some("short".into());
        let body = dingtalk_body(&cfg, &note()).unwrap().unwrap();
        assert_eq!(
            body["markdown"]["text"],
            "short\n@13800000000 @13900000000 "
        );
    }

    #[test]
    fn fitting_keeps_the_mentions_a_cut_would_lose_and_only_those() {
        // A WeCom batch: the first section's mention survives the cut, the second's is
        // appended after the mark.
        let content = format!("a<@u1>{}<@u2>", "x".repeat(5000));
        let mut body = json!({"msgtype": "markdown", "markdown": {"content": content}});
        fit_robot_body(&mut body);
        let content = body["markdown"]["content"].as_str().unwrap();
        assert_eq!(content.len(), WECOM_MARKDOWN_MAX_BYTES);
        assert!(content.starts_with("a<@u1>xxx"));
        assert!(content.ends_with("x…<@u2>"), "{content}");
        assert_eq!(content.matches("<@u1>").count(), 1);
        // Mentions that alone exceed the limit: as many whole ones as fit.
        let many: String = (0..1000).map(|i| format!("<@user{i:04}>")).collect();
        let mut body = json!({"msgtype": "markdown", "markdown": {"content": many}});
        fit_robot_body(&mut body);
        let content = body["markdown"]["content"].as_str().unwrap();
        assert!(
            content.len() <= WECOM_MARKDOWN_MAX_BYTES,
            "{}",
            content.len()
        );
        assert!(content.contains("…<@user0000><@user0001>"), "{content}");
        assert!(content.ends_with('>'), "{content}");
        // An unclosed `<@` is text: the real mentions after it are still found and kept.
        let content = format!("<@oops {} <@u3>{}", "y".repeat(100), "z".repeat(5000));
        let mut body = json!({"msgtype": "markdown", "markdown": {"content": content}});
        fit_robot_body(&mut body);
        let content = body["markdown"]["content"].as_str().unwrap();
        assert!(content.ends_with("z…"), "{content}");
        assert_eq!(content.matches("<@u3>").count(), 1);
        assert_eq!(
            wecom_mentions("<@a><@b c> <@> <@a> <@d"),
            vec!["<@a>".to_string()]
        );
        // A DingTalk title that would take most of the room is cut to half of it.
        let mut body = json!({"msgtype": "markdown",
            "markdown": {"title": "t".repeat(30_000), "text": "x".repeat(30_000)},
            "at": {"atMobiles": ["138"], "isAtAll": false}});
        fit_robot_body(&mut body);
        let len = body.to_string().len();
        assert!(
            (DINGTALK_BODY_MAX_BYTES - 6..=DINGTALK_BODY_MAX_BYTES).contains(&len),
            "{len}"
        );
        let title = body["markdown"]["title"].as_str().unwrap();
        let text = body["markdown"]["text"].as_str().unwrap();
        assert!(
            title.ends_with('…') && title.len() < 10_000,
            "{}",
            title.len()
        );
        assert!(
            text.ends_with("…@138 ") && text.len() > 9_000,
            "{}",
            text.len()
        );
        // Not a robot markdown message: untouched.
        let mut other = json!({"text": "x".repeat(30_000)});
        let before = other.clone();
        fit_robot_body(&mut other);
        assert_eq!(other, before);
    }

    #[test]
    fn json_lengths_are_serde_jsons() {
        let s: String = (0u32..0x90)
            .filter_map(char::from_u32)
            .chain(['é', '告', '😀'])
            .collect();
        let serialized = serde_json::Value::String(s.clone()).to_string();
        assert_eq!(
            s.chars().map(json_char_len).sum::<usize>() + 2,
            serialized.len()
        );
    }

    #[test]
    fn robot_replies() {
        assert!(check_robot_reply(br#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        let e = check_robot_reply(br#"{"errcode":310000,"errmsg":"sign not match"}"#).unwrap_err();
        assert!(matches!(
            e,
            DeliveryError::Robot {
                errcode: 310000,
                ..
            }
        ));
        assert!(!e.is_retryable());
        assert!(check_robot_reply(b"<html>").is_err());
    }
}
