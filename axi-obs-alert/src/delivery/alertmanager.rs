//! Sending alerts to real Alertmanagers the way Prometheus's notifier does:
//! `POST /api/v2/alerts` to every Alertmanager, batches of at most 256, a bounded queue
//! that drops the **oldest** alerts when full (counted), external labels added when absent,
//! over `http://` or `https://` (rustls, ring provider, Prometheus's `tls_config`), with basic
//! or bearer credentials.

use std::collections::VecDeque;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axi_obs_core::https::{Connector, HttpClient};
use axi_obs_core::tls::ClientTls;
use base64::Engine as _;
use rustls::pki_types::ServerName;
use serde::Serialize;
use serde::ser::SerializeMap;

use super::email_config::TlsConfig;
use super::integrations::USER_AGENT;
use super::model::{AmAlert, LabelSet, label_set, query_escape, rfc3339_millis};
use crate::rules::{Alert, AlertState, GroupState};

/// Prometheus's default notification queue capacity (`--alertmanager.notification-queue-capacity`).
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
/// Prometheus's batch size: at most this many alerts per request.
pub const MAX_BATCH: usize = 256;
/// Prometheus's default per-request timeout (`alertmanager_config.timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Prometheus's default `--rules.alert.resend-delay`.
pub const DEFAULT_RESEND_DELAY: Duration = Duration::from_secs(60);
/// The API path alerts are posted to.
pub const ALERTS_PATH: &str = "/api/v2/alerts";

/// One alert in a `POST /api/v2/alerts` body (`postableAlert`); times in ms since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostableAlert {
    /// Labels (required by the API).
    pub labels: LabelSet,
    /// Annotations.
    pub annotations: LabelSet,
    /// When it started firing.
    pub starts_at: Option<i64>,
    /// When it ended (resolved) or until when it is valid (firing).
    pub ends_at: Option<i64>,
    /// Link to the expression in the source's UI.
    pub generator_url: String,
}

impl PostableAlert {
    /// The alert as the built-in router takes it, with the defaults of Alertmanager's
    /// `POST /api/v2/alerts`: a missing start is the end when only the end is given, else
    /// `now_ms`; a missing end is left to the router's `resolve_timeout`.
    pub fn into_am_alert(self, now_ms: i64) -> AmAlert {
        AmAlert {
            starts_at: self.starts_at.or(self.ends_at).unwrap_or(now_ms),
            labels: self.labels,
            annotations: self.annotations,
            ends_at: self.ends_at,
            generator_url: self.generator_url,
        }
    }
}

impl Serialize for PostableAlert {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("labels", &self.labels)?;
        m.serialize_entry("annotations", &self.annotations)?;
        if let Some(t) = self.starts_at {
            m.serialize_entry("startsAt", &rfc3339_millis(t))?;
        }
        if let Some(t) = self.ends_at {
            m.serialize_entry("endsAt", &rfc3339_millis(t))?;
        }
        if !self.generator_url.is_empty() {
            m.serialize_entry("generatorURL", &self.generator_url)?;
        }
        m.end()
    }
}

/// Alerts dropped: queue overflow, or a batch no Alertmanager accepted (counter,
/// Prometheus's name).
pub const METRIC_SENDER_DROPPED_TOTAL: &str = "prometheus_notifications_dropped_total";
/// Alerts accepted, per Alertmanager (counter; label `alertmanager`: the configured base URL;
/// Prometheus's name).
pub const METRIC_SENDER_SENT_TOTAL: &str = "prometheus_notifications_sent_total";
/// Alerts in batches an Alertmanager refused or could not be reached for, per Alertmanager
/// (counter; label `alertmanager`, Prometheus's name).
pub const METRIC_SENDER_ERRORS_TOTAL: &str = "prometheus_notifications_errors_total";
/// Alerts waiting in the queue (gauge, Prometheus's name).
pub const METRIC_SENDER_QUEUE_LENGTH: &str = "prometheus_notifications_queue_length";

/// Alerts queued in every sender of the process: [`METRIC_SENDER_QUEUE_LENGTH`] is their
/// sum, as Prometheus's one queue holds the alerts for all its Alertmanager sets.
static QUEUED: QueueTally = QueueTally(std::sync::atomic::AtomicI64::new(0));

/// A count of queued alerts over senders.
#[derive(Debug)]
struct QueueTally(std::sync::atomic::AtomicI64);

impl QueueTally {
    /// A sender's queue grew (or shrank) by `delta`: the gauge follows, after each change.
    fn changed(&self, delta: i64) {
        if delta != 0 {
            let now = self.0.fetch_add(delta, Ordering::Relaxed) + delta;
            metrics::gauge!(METRIC_SENDER_QUEUE_LENGTH).set(now.max(0) as f64);
        }
    }
}

fn describe_sender_metrics() {
    metrics::describe_counter!(
        METRIC_SENDER_DROPPED_TOTAL,
        "Total number of alerts dropped due to errors when sending to Alertmanager."
    );
    metrics::describe_counter!(METRIC_SENDER_SENT_TOTAL, "Total number of alerts sent.");
    metrics::describe_counter!(
        METRIC_SENDER_ERRORS_TOTAL,
        "Total number of sent alerts affected by errors."
    );
    metrics::describe_gauge!(
        METRIC_SENDER_QUEUE_LENGTH,
        "The number of alert notifications in the queue."
    );
}

/// Prometheus's generator URL: `<external URL>/graph?g0.expr=<expr>&g0.tab=1`.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    format!(
        "{}/graph?g0.expr={}&g0.tab=1",
        external_url.trim_end_matches('/'),
        query_escape(expr)
    )
}

/// [`alerts_to_send`] over every alerting rule of a group evaluated at `ts_ms` whose
/// evaluation succeeded (Prometheus sends nothing for a failed rule), each alert's
/// `generatorURL` built from `external_url` and the rule's expression (empty when
/// `external_url` is).
pub fn group_alerts_to_send(
    group: &mut GroupState,
    ts_ms: i64,
    eval_interval: Duration,
    resend_delay: Duration,
    external_url: &str,
) -> Vec<PostableAlert> {
    let mut out = Vec::new();
    for (a, rule) in group.sendable() {
        let url = if external_url.is_empty() {
            String::new()
        } else {
            generator_url(external_url, &rule.expr_text)
        };
        out.extend(alerts_to_send(
            a.active.values_mut(),
            ts_ms,
            eval_interval,
            resend_delay,
            &url,
        ));
    }
    out
}

/// Picks the alerts of one rule to send after an evaluation at `ts_ms`, as Prometheus's
/// `AlertingRule.sendAlerts`: not pending, and resolved since the last send or last sent
/// more than `resend_delay` ago. Marks them sent (`last_sent_at = ts_ms`). `endsAt` is the
/// resolution time for resolved alerts, else `ts + 4 × max(eval_interval, resend_delay)`.
pub fn alerts_to_send<'a>(
    alerts: impl IntoIterator<Item = &'a mut Alert>,
    ts_ms: i64,
    eval_interval: Duration,
    resend_delay: Duration,
    generator_url: &str,
) -> Vec<PostableAlert> {
    let delta = i64::try_from(eval_interval.max(resend_delay).as_millis()).unwrap_or(i64::MAX / 8);
    let resend = i64::try_from(resend_delay.as_millis()).unwrap_or(i64::MAX / 8);
    let mut out = Vec::new();
    for a in alerts {
        if a.state == AlertState::Pending {
            continue;
        }
        let resolved_since_sent = match (a.resolved_at, a.last_sent_at) {
            (Some(r), Some(s)) => r > s,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let due = a.last_sent_at.is_none_or(|s| s + resend < ts_ms);
        if !(resolved_since_sent || due) {
            continue;
        }
        a.last_sent_at = Some(ts_ms);
        out.push(PostableAlert {
            labels: label_set(&a.labels),
            annotations: a.annotations.clone(),
            starts_at: a.fired_at,
            ends_at: Some(a.resolved_at.unwrap_or(ts_ms + 4 * delta)),
            generator_url: generator_url.to_string(),
        });
    }
    out
}

/// How an [`AlertmanagerSender`] is set up.
#[derive(Debug, Clone)]
pub struct SenderOptions {
    /// Base URLs of the Alertmanagers (`http://host:9093` or `https://host:9093`, a path
    /// prefix allowed); every batch goes to all of them.
    pub alertmanagers: Vec<String>,
    /// Labels added to every alert that does not have them. Defaults to none.
    pub external_labels: LabelSet,
    /// The most alerts queued; when full, the oldest are dropped. Defaults to 10,000.
    pub queue_capacity: NonZeroUsize,
    /// The most alerts per request. Defaults to 256.
    pub max_batch: NonZeroUsize,
    /// Per-request timeout. Defaults to 10 s.
    pub timeout: Duration,
    /// Credentials sent to every Alertmanager (Prometheus's `basic_auth` or
    /// `authorization`). Defaults to none.
    pub auth: Option<AlertmanagerAuth>,
    /// How `https://` Alertmanagers are verified and whom the sender presents itself as
    /// (Prometheus's `tls_config`: `ca_file`, `cert_file` + `key_file`, `server_name`,
    /// `insecure_skip_verify`). Defaults to none: servers verified against the system trust
    /// store, no client certificate.
    pub tls: Option<TlsConfig>,
}

/// Why an [`AlertmanagerSender`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SenderError {
    /// An Alertmanager URL that is not an `http://` or `https://` URL.
    #[error("alertmanager URL {url:?}: {detail}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The TLS settings cannot be used (a file that cannot be read, a key that does not fit
    /// the certificate, a `server_name` that is not a DNS name or IP address ...).
    #[error("tls_config: {0}")]
    Tls(String),
    /// A user name, password or token with a byte an HTTP header cannot carry (a newline
    /// ...).
    #[error("credentials: not valid in an Authorization header")]
    Credentials,
}

/// How the sender authenticates to the Alertmanagers, as Prometheus's `alertmanagers`
/// configuration does. Secrets are not shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum AlertmanagerAuth {
    /// `Authorization: Basic base64(username:password)` (`basic_auth`).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// `Authorization: Bearer TOKEN` (`authorization` with the default type).
    Bearer(String),
}

impl std::fmt::Debug for AlertmanagerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AlertmanagerAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<secret>")
                .finish(),
            AlertmanagerAuth::Bearer(_) => f.debug_tuple("Bearer").field(&"<secret>").finish(),
        }
    }
}

impl SenderOptions {
    /// Options for `alertmanagers` with Prometheus's defaults.
    pub fn new(alertmanagers: Vec<String>) -> SenderOptions {
        SenderOptions {
            alertmanagers,
            external_labels: LabelSet::new(),
            queue_capacity: NonZeroUsize::new(DEFAULT_QUEUE_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            max_batch: NonZeroUsize::new(MAX_BATCH).unwrap_or(NonZeroUsize::MIN),
            timeout: DEFAULT_TIMEOUT,
            auth: None,
            tls: None,
        }
    }
}

/// What one [`AlertmanagerSender::flush`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Batches sent.
    pub batches: usize,
    /// Alerts in them.
    pub alerts: usize,
    /// Batches no Alertmanager accepted (dropped, as Prometheus does).
    pub failed_batches: usize,
    /// Each failed request: the Alertmanager's base URL and what went wrong.
    pub errors: Vec<(String, String)>,
}

/// A Prometheus-style notifier: [`send`](Self::send) queues without waiting,
/// [`flush`](Self::flush) or [`run`](Self::run) deliver.
///
/// ```no_run
/// # async fn demo() -> Result<(), axi_obs_alert::delivery::SenderError> {
/// use axi_obs_alert::delivery::{AlertmanagerSender, PostableAlert, SenderOptions};
///
/// let sender = AlertmanagerSender::new(SenderOptions::new(vec!["http://127.0.0.1:9093".into()]))?;
/// sender.send(vec![PostableAlert {
///     labels: [("alertname".to_string(), "Down".to_string())].into(),
///     annotations: Default::default(),
///     starts_at: Some(1_700_000_000_000),
///     ends_at: Some(1_700_000_240_000),
///     generator_url: String::new(),
/// }]);
/// let report = sender.flush().await;
/// assert_eq!(report.failed_batches, 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AlertmanagerSender {
    opts: SenderOptions,
    client: HttpClient,
    /// Each Alertmanager's base URL (as given) and the URL alerts are posted to.
    targets: Vec<(String, http::Uri)>,
    /// The `Authorization` header of [`SenderOptions::auth`], marked sensitive.
    authorization: Option<http::HeaderValue>,
    queue: Mutex<VecDeque<PostableAlert>>,
    dropped: AtomicU64,
    sent: AtomicU64,
    errors: AtomicU64,
    wake: tokio::sync::Notify,
    /// Where its queue's length is summed with the other senders'.
    tally: &'static QueueTally,
}

impl Drop for AlertmanagerSender {
    /// What it still held leaves the queue-length gauge with it.
    fn drop(&mut self) {
        let left = self.queue.get_mut().map_or(0, |q| q.len());
        self.tally.changed(-(left as i64));
    }
}

impl AlertmanagerSender {
    /// A sender; nothing is started and nothing dials out until a flush. Reads the files of
    /// [`SenderOptions::tls`] (and, for `https://` Alertmanagers without a `ca_file`, the
    /// system trust store, once per process): build it off the runtime's threads, or accept
    /// that short blocking read.
    ///
    /// # Errors
    ///
    /// When an Alertmanager URL is not `http://` or `https://`, the TLS settings cannot be
    /// used, or the credentials cannot go in a header.
    pub fn new(opts: SenderOptions) -> Result<AlertmanagerSender, SenderError> {
        let mut targets = Vec::with_capacity(opts.alertmanagers.len());
        for am in &opts.alertmanagers {
            let url = format!("{}{ALERTS_PATH}", am.trim_end_matches('/'));
            let bad = |detail: String| SenderError::Url {
                url: am.clone(),
                detail,
            };
            let uri: http::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
            match uri.scheme_str() {
                Some("http" | "https") if uri.host().is_some() => {}
                _ => return Err(bad("not an http:// or https:// URL with a host".into())),
            }
            targets.push((am.clone(), uri));
        }
        let client = client(&opts, &targets)?;
        describe_sender_metrics();
        let authorization = opts.auth.as_ref().map(authorization).transpose()?;
        Ok(AlertmanagerSender {
            opts,
            client,
            targets,
            authorization,
            queue: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
            tally: &QUEUED,
        })
    }

    /// Queues alerts (external labels added where absent) and wakes [`run`](Self::run).
    /// Never waits. When the queue would exceed its capacity, the oldest alerts are
    /// dropped and counted in [`dropped`](Self::dropped).
    pub fn send(&self, alerts: Vec<PostableAlert>) {
        let cap = self.opts.queue_capacity.get();
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let before = q.len();
        for mut a in alerts {
            for (k, v) in &self.opts.external_labels {
                if a.labels.get(k).is_none_or(String::is_empty) {
                    a.labels.insert(k.clone(), v.clone());
                }
            }
            if q.len() == cap {
                q.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(METRIC_SENDER_DROPPED_TOTAL).increment(1);
            }
            q.push_back(a);
        }
        self.tally.changed(q.len() as i64 - before as i64);
        drop(q);
        self.wake.notify_one();
    }

    /// Alerts waiting to be sent.
    pub fn queue_len(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Alerts dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Alerts accepted by at least one Alertmanager.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Failed requests (per Alertmanager).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Takes the alerts still waiting to be sent (not a batch already on its way), leaving
    /// the queue empty: for a sender that replaces this one when the Alertmanagers change, as
    /// Prometheus's single notification queue sends what it holds to the new Alertmanagers.
    pub fn take_queued(&self) -> Vec<PostableAlert> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let taken: Vec<PostableAlert> = q.drain(..).collect();
        self.tally.changed(-(taken.len() as i64));
        taken
    }

    fn next_batch(&self) -> Vec<PostableAlert> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let n = q.len().min(self.opts.max_batch.get());
        self.tally.changed(-(n as i64));
        q.drain(..n).collect()
    }

    /// Sends everything queued, batch by batch, each batch to every Alertmanager at once.
    /// A batch counts as sent when at least one Alertmanager accepted it (2xx); otherwise it
    /// is dropped, as Prometheus does (firing alerts are re-sent after the resend delay).
    pub async fn flush(&self) -> FlushReport {
        let mut report = FlushReport::default();
        loop {
            let batch = self.next_batch();
            if batch.is_empty() {
                return report;
            }
            // Serializing plain strings and maps cannot fail.
            let body = bytes::Bytes::from(bytes_of(&batch));
            let mut tasks = tokio::task::JoinSet::new();
            for (am, uri) in &self.targets {
                let client = self.client.clone();
                let request = request(uri, self.authorization.as_ref(), body.clone());
                let am = am.clone();
                tasks.spawn(async move { (am, post(&client, request).await) });
            }
            let mut ok = false;
            let n = batch.len() as u64;
            while let Some(res) = tasks.join_next().await {
                match res {
                    Ok((am, Ok(()))) => {
                        ok = true;
                        metrics::counter!(METRIC_SENDER_SENT_TOTAL, "alertmanager" => am)
                            .increment(n);
                    }
                    Ok((am, Err(e))) => {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(METRIC_SENDER_ERRORS_TOTAL, "alertmanager" => am.clone())
                            .increment(n);
                        report.errors.push((am, e));
                    }
                    Err(e) => {
                        self.errors.fetch_add(1, Ordering::Relaxed);
                        report.errors.push((String::new(), e.to_string()));
                    }
                }
            }
            report.batches += 1;
            report.alerts += batch.len();
            if ok {
                self.sent.fetch_add(n, Ordering::Relaxed);
            } else {
                report.failed_batches += 1;
                metrics::counter!(METRIC_SENDER_DROPPED_TOTAL).increment(n);
            }
        }
    }

    /// Delivers queued alerts whenever [`send`](Self::send) adds some, until `shutdown`
    /// completes; then sends what is still queued once and returns.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {
                    self.flush().await;
                }
            }
        }
        self.flush().await;
    }
}

fn bytes_of(batch: &[PostableAlert]) -> Vec<u8> {
    serde_json::to_vec(batch).unwrap_or_default()
}

/// One client for every Alertmanager of a sender: `tls` for `https://`. Without `tls` and
/// without an `https://` Alertmanager, TLS is never used, so the system trust store is not
/// read.
fn client(
    opts: &SenderOptions,
    targets: &[(String, http::Uri)],
) -> Result<HttpClient, SenderError> {
    let any_https = targets.iter().any(|(_, u)| u.scheme_str() == Some("https"));
    let config = match &opts.tls {
        Some(tls) => tls.client_config().map_err(SenderError::Tls)?,
        None if any_https => ClientTls::new()
            .client_config()
            .map_err(|e| SenderError::Tls(e.to_string()))?,
        None => ClientTls::new()
            .roots(Vec::new())
            .client_config()
            .map_err(|e| SenderError::Tls(e.to_string()))?,
    };
    let mut connector = Connector::new(config).connect_timeout(opts.timeout);
    if let Some(name) = opts.tls.as_ref().and_then(|t| t.server_name.as_deref()) {
        let server = ServerName::try_from(name.to_string())
            .map_err(|e| SenderError::Tls(format!("server_name {name:?}: {e}")))?;
        connector = connector.server_name(server);
    }
    Ok(HttpClient::new(connector.build(), opts.timeout))
}

/// The `Authorization` header value of `auth`, marked sensitive (hyper keeps it out of its
/// logs and HPACK tables).
fn authorization(auth: &AlertmanagerAuth) -> Result<http::HeaderValue, SenderError> {
    let text = match auth {
        AlertmanagerAuth::Basic { username, password } => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        ),
        AlertmanagerAuth::Bearer(token) => format!("Bearer {token}"),
    };
    let mut value = http::HeaderValue::try_from(text).map_err(|_| SenderError::Credentials)?;
    value.set_sensitive(true);
    Ok(value)
}

/// `POST uri` with the JSON `body` and the credentials.
fn request(
    uri: &http::Uri,
    authorization: Option<&http::HeaderValue>,
    body: bytes::Bytes,
) -> http::Request<bytes::Bytes> {
    let mut req = http::Request::new(body);
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri.clone();
    let h = req.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    );
    if let Some(value) = authorization {
        h.insert(http::header::AUTHORIZATION, value.clone());
    }
    req
}

async fn post(client: &HttpClient, request: http::Request<bytes::Bytes>) -> Result<(), String> {
    let reply = client.request(request).await.map_err(|e| e.to_string())?;
    if reply.status.is_success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&reply.body);
    Err(format!(
        "bad response status {}: {}",
        reply.status,
        text.chars().take(200).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::Labels;
    use std::collections::BTreeMap;

    fn pa(name: &str) -> PostableAlert {
        PostableAlert {
            labels: [("alertname".to_string(), name.to_string())].into(),
            annotations: LabelSet::new(),
            starts_at: None,
            ends_at: None,
            generator_url: String::new(),
        }
    }

    /// `prometheus_notifications_queue_length` is what every sender holds, after each change:
    /// a drained queue does not leave its last length behind, nor a sender replaced by another.
    #[test]
    fn the_queue_length_follows_every_sender() {
        let tally: &'static QueueTally =
            Box::leak(Box::new(QueueTally(std::sync::atomic::AtomicI64::new(0))));
        let sender = |cap: usize, batch: usize| {
            let mut o = SenderOptions::new(vec![]);
            o.queue_capacity = NonZeroUsize::new(cap).unwrap();
            o.max_batch = NonZeroUsize::new(batch).unwrap();
            let mut s = AlertmanagerSender::new(o).unwrap();
            s.tally = tally;
            s
        };
        let total = || tally.0.load(Ordering::Relaxed);
        let a = sender(3, 2);
        let b = sender(10, 10);
        a.send((0..5).map(|i| pa(&i.to_string())).collect());
        b.send((0..4).map(|i| pa(&i.to_string())).collect());
        assert_eq!(total(), 3 + 4);
        assert_eq!(a.next_batch().len(), 2);
        assert_eq!(total(), 1 + 4);
        assert_eq!(b.take_queued().len(), 4);
        assert_eq!(total(), 1);
        b.send(vec![pa("x")]);
        drop(b);
        assert_eq!(total(), 1);
        drop(a);
        assert_eq!(total(), 0);
    }

    #[test]
    fn queue_drops_oldest_and_counts() {
        let mut o = SenderOptions::new(vec![]);
        o.queue_capacity = NonZeroUsize::new(3).unwrap();
        o.external_labels = [("cluster".to_string(), "c1".to_string())].into();
        let s = AlertmanagerSender::new(o).unwrap();
        s.send((0..5).map(|i| pa(&i.to_string())).collect());
        assert_eq!(s.queue_len(), 3);
        assert_eq!(s.dropped(), 2);
        let batch = s.next_batch();
        let names: Vec<_> = batch
            .iter()
            .map(|a| a.labels["alertname"].clone())
            .collect();
        assert_eq!(names, ["2", "3", "4"]);
        assert_eq!(batch[0].labels["cluster"], "c1");
    }

    #[test]
    fn external_labels_do_not_override() {
        let mut o = SenderOptions::new(vec![]);
        o.external_labels = [("alertname".to_string(), "ext".to_string())].into();
        let s = AlertmanagerSender::new(o).unwrap();
        s.send(vec![pa("own")]);
        assert_eq!(s.next_batch()[0].labels["alertname"], "own");
    }

    #[test]
    fn batches_are_at_most_256() {
        let s = AlertmanagerSender::new(SenderOptions::new(vec![])).unwrap();
        s.send((0..600).map(|i| pa(&i.to_string())).collect());
        assert_eq!(s.next_batch().len(), 256);
        assert_eq!(s.next_batch().len(), 256);
        assert_eq!(s.next_batch().len(), 88);
    }

    #[test]
    fn body_shape() {
        let a = PostableAlert {
            starts_at: Some(1_500),
            ends_at: Some(61_500),
            generator_url: generator_url("http://p:9090/", "up == 0"),
            ..pa("X")
        };
        assert_eq!(
            serde_json::to_string(&[a]).unwrap(),
            r#"[{"labels":{"alertname":"X"},"annotations":{},"startsAt":"1970-01-01T00:00:01.500Z","endsAt":"1970-01-01T00:01:01.500Z","generatorURL":"http://p:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1"}]"#
        );
    }

    fn alert(state: AlertState) -> Alert {
        Alert {
            labels: Labels::from_pairs([("alertname", "A")]),
            annotations: BTreeMap::new(),
            state,
            value: 1.0,
            active_at: 0,
            fired_at: Some(60_000),
            resolved_at: None,
            last_sent_at: None,
            keep_firing_since: None,
        }
    }

    #[test]
    fn prometheus_send_rules() {
        let (iv, rd) = (Duration::from_secs(15), Duration::from_secs(60));
        let mut pending = alert(AlertState::Pending);
        assert!(alerts_to_send([&mut pending], 60_000, iv, rd, "").is_empty());

        let mut a = alert(AlertState::Firing);
        let sent = alerts_to_send([&mut a], 60_000, iv, rd, "g");
        // ValidUntil = ts + 4 × max(15 s, 60 s).
        assert_eq!(sent[0].ends_at, Some(60_000 + 240_000));
        assert_eq!(sent[0].starts_at, Some(60_000));
        assert_eq!(a.last_sent_at, Some(60_000));
        // Not again until the resend delay has passed (strictly).
        assert!(alerts_to_send([&mut a], 120_000, iv, rd, "g").is_empty());
        assert_eq!(alerts_to_send([&mut a], 120_001, iv, rd, "g").len(), 1);
        // Resolved since the last send: at once, with endsAt = resolvedAt.
        a.state = AlertState::Inactive;
        a.resolved_at = Some(130_000);
        let sent = alerts_to_send([&mut a], 130_000, iv, rd, "g");
        assert_eq!(sent[0].ends_at, Some(130_000));
        assert!(alerts_to_send([&mut a], 135_000, iv, rd, "g").is_empty());
    }

    #[tokio::test]
    async fn basic_and_bearer_credentials_reach_every_alertmanager() {
        use std::sync::{Arc, Mutex};
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let s = seen.clone();
        let app = axum::Router::new().route(
            ALERTS_PATH,
            axum::routing::post(move |headers: http::HeaderMap| {
                let s = s.clone();
                async move {
                    let auth = headers
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_string();
                    s.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(auth);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        for auth in [
            None,
            Some(AlertmanagerAuth::Basic {
                username: "prom".into(),
                password: "s3cret".into(),
            }),
            Some(AlertmanagerAuth::Bearer("tok-123".into())),
        ] {
            let mut opts = SenderOptions::new(vec![base.clone()]);
            opts.auth = auth;
            let sender = AlertmanagerSender::new(opts).expect("sender");
            sender.send(vec![pa("A")]);
            let report = sender.flush().await;
            assert_eq!(
                (report.batches, report.failed_batches),
                (1, 0),
                "{report:?}"
            );
        }
        let seen = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // base64("prom:s3cret") = cHJvbTpzM2NyZXQ=
        assert_eq!(seen, ["none", "Basic cHJvbTpzM2NyZXQ=", "Bearer tok-123"]);
        let shown = format!(
            "{:?}",
            AlertmanagerAuth::Basic {
                username: "prom".into(),
                password: "s3cret".into()
            }
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        let mut opts = SenderOptions::new(vec![base]);
        opts.auth = Some(AlertmanagerAuth::Bearer("tok\nX-Injected: 1".into()));
        assert!(matches!(
            AlertmanagerSender::new(opts),
            Err(SenderError::Credentials)
        ));
    }
}
