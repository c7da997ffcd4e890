//! Sending one notification through one integration with retries and exponential backoff,
//! counted in Alertmanager's metric names.

use axi_obs_core::https::{Connector, HttpClient};
use std::time::{Duration, Instant};

use super::config::{DingTalkConfig, EmailConfig, WeComConfig, WebhookConfig};
use super::email::send_email;
use super::integrations::{
    Delivered, DeliveryError, dingtalk_body, dingtalk_url, send_webhook, wecom_body,
};
use super::notification::Notification;
use super::robot_limit::{DEFAULT_ROBOT_MESSAGES, DEFAULT_ROBOT_WINDOW, RobotLimits, send_limited};
use super::runner::{Clock as _, SystemClock};
use super::smtp::DEFAULT_SMTP_TIMEOUT;

/// Notifications attempted, per integration (counter; label `integration`).
pub const METRIC_NOTIFICATIONS_TOTAL: &str = "alertmanager_notifications_total";
/// Notifications that failed for good, per integration and reason (counter; labels
/// `integration`, `reason`: `clientError`, `serverError`, `other`).
pub const METRIC_NOTIFICATIONS_FAILED_TOTAL: &str = "alertmanager_notifications_failed_total";
/// Requests made, retries included, per integration (counter).
pub const METRIC_NOTIFICATION_REQUESTS_TOTAL: &str = "alertmanager_notification_requests_total";
/// Requests that failed, retries included, per integration (counter).
pub const METRIC_NOTIFICATION_REQUESTS_FAILED_TOTAL: &str =
    "alertmanager_notification_requests_failed_total";
/// Duration of each request in seconds, per integration (histogram).
pub const METRIC_NOTIFICATION_LATENCY_SECONDS: &str = "alertmanager_notification_latency_seconds";
/// Aggregation groups refused because the group limit was reached (counter).
pub const METRIC_GROUP_LIMIT_REACHED_TOTAL: &str =
    "alertmanager_dispatcher_aggregation_group_limit_reached_total";
/// Alerts refused because their aggregation group was full (counter; ours).
pub const METRIC_ALERT_LIMIT_REACHED_TOTAL: &str = "axi_alert_dispatcher_alert_limit_reached_total";
/// Alerts of a flush not notified, by why (counter; label `reason`: `inhibition`,
/// `silence`, `active_time_interval`, `mute_time_interval`).
pub const METRIC_NOTIFICATIONS_SUPPRESSED_TOTAL: &str =
    "alertmanager_notifications_suppressed_total";
/// The `reason` values of [`METRIC_NOTIFICATIONS_SUPPRESSED_TOTAL`], Alertmanager's.
pub const SUPPRESSED_REASONS: [&str; 4] = [
    "silence",
    "inhibition",
    "mute_time_interval",
    "active_time_interval",
];
/// Label key: the integration (`webhook`, `email`, `dingtalk`, `wecom`).
pub const LABEL_INTEGRATION: &str = "integration";
/// Label key: why a notification failed.
pub const LABEL_REASON: &str = "reason";

/// Gives the router's metrics their HELP text (Alertmanager's for the names it shares) in
/// the installed recorder; called by [`Notifier::new`] and
/// [`Dispatcher::new`](super::Dispatcher::new), so `/metrics` passes `promtool check
/// metrics`. Cheap, and harmless to repeat.
pub(crate) fn describe_metrics() {
    use super::remediation::{METRIC_REMEDIATIONS_SKIPPED_TOTAL, METRIC_REMEDIATIONS_TOTAL};
    metrics::describe_counter!(
        METRIC_NOTIFICATIONS_TOTAL,
        "The total number of attempted notifications."
    );
    metrics::describe_counter!(
        METRIC_NOTIFICATIONS_FAILED_TOTAL,
        "The total number of failed notifications."
    );
    metrics::describe_counter!(
        METRIC_NOTIFICATION_REQUESTS_TOTAL,
        "The total number of attempted notification requests."
    );
    metrics::describe_counter!(
        METRIC_NOTIFICATION_REQUESTS_FAILED_TOTAL,
        "The total number of failed notification requests."
    );
    metrics::describe_histogram!(
        METRIC_NOTIFICATION_LATENCY_SECONDS,
        metrics::Unit::Seconds,
        "The latency of notifications in seconds."
    );
    metrics::describe_counter!(
        METRIC_NOTIFICATIONS_SUPPRESSED_TOTAL,
        "The total number of notifications suppressed for being silenced, inhibited, outside of active time intervals or within muted time intervals."
    );
    // Every reason from the start, at 0, as Alertmanager shows them.
    for reason in SUPPRESSED_REASONS {
        metrics::counter!(METRIC_NOTIFICATIONS_SUPPRESSED_TOTAL, LABEL_REASON => reason)
            .increment(0);
    }
    metrics::describe_counter!(
        METRIC_GROUP_LIMIT_REACHED_TOTAL,
        "Number of times when dispatcher failed to create new aggregation group due to limit."
    );
    metrics::describe_counter!(
        METRIC_ALERT_LIMIT_REACHED_TOTAL,
        "Alerts refused because their aggregation group held the maximum number of alerts."
    );
    metrics::describe_counter!(
        METRIC_REMEDIATIONS_TOTAL,
        "Remediation runs executed, by action and outcome (success, failure, timeout)."
    );
    metrics::describe_counter!(
        METRIC_REMEDIATIONS_SKIPPED_TOTAL,
        "Remediation runs not started, by action and reason (cooldown, max_runs, queue_full)."
    );
}

/// One configured integration of a receiver.
#[derive(Debug, Clone)]
pub enum Integration {
    /// `webhook_configs[]`.
    Webhook(WebhookConfig),
    /// `dingtalk_configs[]`.
    DingTalk(DingTalkConfig),
    /// `wecom_configs[]`.
    WeCom(WeComConfig),
    /// `email_configs[]` (boxed: it is much larger than the others).
    Email(Box<EmailConfig>),
}

impl Integration {
    /// Its name in the notification log and in metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Integration::Webhook(_) => "webhook",
            Integration::DingTalk(_) => "dingtalk",
            Integration::WeCom(_) => "wecom",
            Integration::Email(_) => "email",
        }
    }

    /// Whether it notifies resolved alerts.
    pub fn send_resolved(&self) -> bool {
        match self {
            Integration::Webhook(c) => c.send_resolved,
            Integration::DingTalk(c) => c.send_resolved,
            Integration::WeCom(c) => c.send_resolved,
            Integration::Email(c) => c.send_resolved,
        }
    }

    async fn send_once(
        &self,
        notifier: &Notifier,
        n: &Notification,
    ) -> Result<Delivered, DeliveryError> {
        let client = &notifier.client;
        match self {
            Integration::Webhook(c) => send_webhook(client, c, n).await,
            Integration::DingTalk(c) => {
                let Some(body) = dingtalk_body(c, n)? else {
                    return Ok(Delivered::NothingToSend);
                };
                let url = || dingtalk_url(c, SystemClock.now_ms());
                send_limited(&notifier.robots, client, &c.robot_url(), body, url).await
            }
            Integration::WeCom(c) => {
                let Some(body) = wecom_body(c, n)? else {
                    return Ok(Delivered::NothingToSend);
                };
                let url = || c.robot_url();
                send_limited(&notifier.robots, client, &c.robot_url(), body, url).await
            }
            Integration::Email(c) => send_email(c, n, notifier.smtp_timeout).await,
        }
    }
}

/// How failed requests are retried: exponential backoff from `initial_backoff`, doubling up
/// to `max_backoff`, at most `max_attempts` requests in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failure. Defaults to 500 ms.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts. Defaults to 60 s.
    pub max_backoff: Duration,
    /// Requests per notification, the first included (at least 1). Defaults to 10.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_attempts: 10,
        }
    }
}

fn failure_reason(e: &DeliveryError) -> &'static str {
    match e {
        DeliveryError::Status { status, .. } if (400..500).contains(status) => "clientError",
        DeliveryError::Status { status, .. } if *status >= 500 => "serverError",
        _ => "other",
    }
}

/// How long one request of [`http_client`] may take at most. Deliveries are bounded more
/// tightly by their flush (Alertmanager's: the group interval, at least 10 s), and remediation
/// URLs by their action's `timeout`; this only ends what nothing else would.
pub const HTTP_CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The HTTP client of deliveries and remediation URLs: `http://` and `https://` (rustls with
/// the ring provider, the host's trust store), answers read up to 64 KiB (a receiver's error
/// text, a robot's reply), each request at most [`HTTP_CLIENT_TIMEOUT`]. DingTalk and WeCom
/// robots are `https://` only.
///
/// # Errors
///
/// When rustls refuses the configuration (never with the system trust store alone).
pub fn http_client() -> Result<HttpClient, axi_obs_core::tls::TlsError> {
    let tls = axi_obs_core::tls::ClientTls::new().client_config()?;
    Ok(HttpClient::new(
        Connector::new(tls)
            .connect_timeout(Duration::from_secs(10))
            .build(),
        HTTP_CLIENT_TIMEOUT,
    )
    .max_body(super::integrations::MAX_REPLY_BYTES))
}

/// Sends notifications with retries (`RetryStage`): network errors, 5xx, 429 and robot rate
/// limits are retried with backoff; 4xx and other errors fail at once and are logged.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: HttpClient,
    retry: RetryPolicy,
    smtp_timeout: Duration,
    robots: RobotLimits,
}

impl Notifier {
    /// A notifier using `client` (see [`http_client`]; its timeout applies to each request)
    /// and `retry`.
    pub fn new(client: HttpClient, retry: RetryPolicy) -> Notifier {
        describe_metrics();
        Notifier {
            client,
            retry,
            smtp_timeout: DEFAULT_SMTP_TIMEOUT,
            robots: RobotLimits::new(DEFAULT_ROBOT_MESSAGES, DEFAULT_ROBOT_WINDOW),
        }
    }

    /// At most `messages` messages per `window` to each DingTalk or WeCom robot (shared by
    /// the clones of this notifier). While a robot's window is full, its notifications wait
    /// and then go out together as one message, sections joined and mentions merged.
    /// Defaults to the robots' documented limit, 20 per minute.
    pub fn with_robot_limit(mut self, messages: usize, window: Duration) -> Notifier {
        self.robots = RobotLimits::new(messages, window);
        self
    }

    /// Limits each SMTP step of mail deliveries (connect, TLS handshake, each command, the
    /// message). Defaults to [`DEFAULT_SMTP_TIMEOUT`] (30 s).
    pub fn with_smtp_timeout(mut self, timeout: Duration) -> Notifier {
        self.smtp_timeout = timeout;
        self
    }

    /// The HTTP client (remediation URLs use it too).
    pub(crate) fn client(&self) -> &HttpClient {
        &self.client
    }

    /// Delivers `n` through `integration`, retrying as the policy says.
    ///
    /// # Errors
    ///
    /// The last [`DeliveryError`] when the notification could not be delivered.
    pub async fn deliver(
        &self,
        integration: &Integration,
        n: &Notification,
    ) -> Result<Delivered, DeliveryError> {
        let name = integration.name();
        metrics::counter!(METRIC_NOTIFICATIONS_TOTAL, LABEL_INTEGRATION => name).increment(1);
        let mut backoff = self.retry.initial_backoff;
        let mut attempt = 1;
        loop {
            let start = Instant::now();
            let result = integration.send_once(self, n).await;
            if !matches!(result, Ok(Delivered::NothingToSend)) {
                metrics::counter!(METRIC_NOTIFICATION_REQUESTS_TOTAL, LABEL_INTEGRATION => name)
                    .increment(1);
                metrics::histogram!(METRIC_NOTIFICATION_LATENCY_SECONDS, LABEL_INTEGRATION => name)
                    .record(start.elapsed().as_secs_f64());
            }
            let err = match result {
                Ok(d) => return Ok(d),
                Err(e) => e,
            };
            metrics::counter!(METRIC_NOTIFICATION_REQUESTS_FAILED_TOTAL, LABEL_INTEGRATION => name)
                .increment(1);
            if !err.is_retryable() || attempt >= self.retry.max_attempts.max(1) {
                metrics::counter!(
                    METRIC_NOTIFICATIONS_FAILED_TOTAL,
                    LABEL_INTEGRATION => name,
                    LABEL_REASON => failure_reason(&err)
                )
                .increment(1);
                tracing::warn!(
                    integration = name,
                    receiver = %n.receiver,
                    group_key = %n.group_key,
                    attempts = attempt,
                    error = %err,
                    "notify failed"
                );
                return Err(err);
            }
            tracing::debug!(integration = name, attempt, error = %err, "notify retry");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
            attempt += 1;
        }
    }
}
