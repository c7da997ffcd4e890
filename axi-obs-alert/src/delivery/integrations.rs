//! Sending one notification through one integration: webhook (version 4), DingTalk robot
//! (signed markdown), WeCom group robot (markdown). Mail is in [`super::email`].

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

/// WeCom's limit for a markdown message, in bytes.
pub const WECOM_MARKDOWN_MAX_BYTES: usize = 4096;

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The request could not be made or timed out.
    #[error("request failed: {0}")]
    Http(#[source] reqwest::Error),
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
const MAX_REPLY_BYTES: usize = 64 * 1024;

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, DeliveryError> {
    let resp = client
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, USER_AGENT)
        .body(body)
        .send()
        .await
        .map_err(|e| DeliveryError::Http(e.without_url()))?;
    let status = resp.status();
    // What a receiver answers is read up to a bound (an error text, a robot's small JSON
    // reply): a receiver answering without end cannot grow our memory.
    let mut resp = resp;
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| DeliveryError::Http(e.without_url()))?
    {
        let room = MAX_REPLY_BYTES - bytes.len();
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() == MAX_REPLY_BYTES {
            break;
        }
    }
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
    client: &reqwest::Client,
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
    Ok(Some(json!({
        "msgtype": "markdown",
        "markdown": {"title": title, "text": text},
        "at": {"atMobiles": cfg.at_mobiles, "isAtAll": cfg.at_all},
    })))
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
    client: &reqwest::Client,
    cfg: &DingTalkConfig,
    n: &Notification,
) -> Result<Delivered, DeliveryError> {
    let Some(body) = dingtalk_body(cfg, n)? else {
        return Ok(Delivered::NothingToSend);
    };
    post_robot(client, &dingtalk_url(cfg, n.now_ms), &body).await
}

/// The WeCom request body: a markdown message cut to [`WECOM_MARKDOWN_MAX_BYTES`] on a
/// character boundary, mentions appended as `<@userid>` after the cut (kept whole).
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
    // The mentions go after the text and must survive the cut: the text is cut to what
    // they leave of the limit (whole mentions only, should they alone exceed it).
    let mut mentions = String::new();
    for id in &cfg.mentioned_list {
        let tag = format!("<@{id}>");
        if mentions.len() + tag.len() > WECOM_MARKDOWN_MAX_BYTES {
            break;
        }
        mentions.push_str(&tag);
    }
    cut_on_char_boundary(&mut content, WECOM_MARKDOWN_MAX_BYTES - mentions.len());
    content.push_str(&mentions);
    Ok(Some(
        json!({"msgtype": "markdown", "markdown": {"content": content}}),
    ))
}

/// Cuts a WeCom markdown content to [`WECOM_MARKDOWN_MAX_BYTES`] on a character boundary.
pub(crate) fn cut_to_wecom_limit(content: &mut String) {
    cut_on_char_boundary(content, WECOM_MARKDOWN_MAX_BYTES);
}

/// Cuts `content` to at most `max` bytes on a character boundary.
fn cut_on_char_boundary(content: &mut String, max: usize) {
    if content.len() > max {
        let mut cut = max;
        while !content.is_char_boundary(cut) {
            cut -= 1;
        }
        content.truncate(cut);
    }
}

/// Posts a robot message body and checks the robot's `errcode`.
pub(crate) async fn post_robot(
    client: &reqwest::Client,
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
    client: &reqwest::Client,
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
        // The text is cut (on a boundary of the two-byte characters), the mention kept.
        assert!(content.ends_with("é<@u1>"), "{content}");
        assert!(
            (WECOM_MARKDOWN_MAX_BYTES - 1..=WECOM_MARKDOWN_MAX_BYTES).contains(&content.len()),
            "{}",
            content.len()
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
