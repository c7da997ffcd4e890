//! Alert delivery: to real Alertmanagers as Prometheus sends, and a built-in router that
//! reads Alertmanager's own configuration and behaves like Alertmanager 0.33.
//!
//! Present in this slice:
//!
//! - [`Config`]: Alertmanager's YAML (`global` with `resolve_timeout` and `smtp_*`, the
//!   `route` tree, `inhibit_rules`, `time_intervals`, `receivers` with `webhook_configs`,
//!   `email_configs` and our `dingtalk_configs` / `wecom_configs`), read strictly: every
//!   other field or receiver type is an error naming it with `file:line:column`.
//! - [`timeinterval`]: Alertmanager's time intervals; a route's `mute_time_intervals` and
//!   `active_time_intervals` (its own, not inherited) decide at each flush whether it sends
//!   (a real Alertmanager 0.33 given the same intervals notifies the same groups, in
//!   `tests/delivery_api.rs`), counted in `alertmanager_notifications_suppressed_total` by
//!   reason (with inhibitions and silences); a muted route runs no remediation action.
//!   `/api/v2/alerts/groups` shows the intervals that muted a group at its last flush
//!   (`mutedBy`, state `suppressed`) and `muted=false` leaves such groups out, as in
//!   Alertmanager.
//! - [`Route`]: routing as `dispatch/route.go` (matchers in Alertmanager's syntax and the
//!   legacy `match` / `match_re`, `continue`, inherited `group_by` and timers with the
//!   defaults 30 s / 5 m / 4 h), route keys and group keys (`{}/{env="prod"}:{alertname="X"}`).
//! - [`Fingerprint`]: Alertmanager's alert identity (FNV-1a 64 over the sorted labels).
//! - [`WebhookMessage`]: the webhook payload version 4, field for field as Alertmanager
//!   0.33.1 sends it, and [`send_webhook`]; [`send_dingtalk`] (signed markdown, `errcode`
//!   checked) and [`send_wecom`] (markdown), rendered with the crate's Go
//!   [`template`](crate::template) engine over Alertmanager's template data. A robot message
//!   over the robot's size limit (DingTalk's 20,000-byte body, WeCom's 4,096-byte content)
//!   is cut with `…`, keeping its mentions ([`fit_robot_body`]), instead of being refused.
//! - Mail ([`EmailConfig`], [`send_email`]): Alertmanager 0.33's `email_configs` with its
//!   defaults (`send_resolved: false`, `require_tls: true`, `hello: localhost`, the
//!   `email.default.html` body (our own compact HTML) and Alertmanager's
//!   `email.default.subject` line, [`DEFAULT_EMAIL_TEMPLATES`]) and its inheritance of
//!   `global.smtp_*`, checked
//!   at load (missing `to`, no smarthost or sender anywhere, password and password file both
//!   set, duplicate headers). The message ([`email_message`]) is Alertmanager's: headers
//!   rendered and RFC 2047 Q-encoded, `Message-Id` and `Date`, a `multipart/alternative`
//!   body with quoted-printable text (when `text` is set) and HTML parts; HTML bodies see
//!   HTML-escaped data and lose the template's comments, standing in for Go's
//!   `html/template` (a real Alertmanager 0.33 and this router, given the same `text` and
//!   `html` templates, send equal mails, envelope, headers and decoded parts, in
//!   `tests/delivery_mail.rs`). Our own SMTP client on Tokio
//!   and rustls (ring) sends it: EHLO (HELO as fallback), STARTTLS when `require_tls` (a
//!   server without it is refused; without `require_tls` no STARTTLS, as Alertmanager),
//!   implicit TLS on port 465 or with `force_implicit_tls`, `tls_config` (`ca_file`,
//!   `cert_file` / `key_file`, `server_name`, `insecure_skip_verify`), AUTH PLAIN or LOGIN
//!   when `auth_username` is set and the server offers AUTH (credentials only over TLS or to
//!   a loopback host), several recipients, dot-stuffing, a timeout on every step. SMTP 4xx
//!   replies and network errors are retried, 5xx replies are not ([`SmtpError`]).
//! - [`AlertmanagerSender`]: Prometheus's notifier: `POST /api/v2/alerts` to every
//!   Alertmanager, batches of at most 256, a bounded queue dropping the oldest alerts
//!   (counted), timeouts, external labels, basic or bearer credentials
//!   ([`AlertmanagerAuth`]), `http://` or `https://` with Prometheus's `tls_config`
//!   ([`TlsConfig`]: `ca_file`, client certificate, `server_name`, `insecure_skip_verify`;
//!   rustls with the ring provider, through axi-obs-core's `https-client`, tested against a
//!   real Alertmanager serving TLS); [`alerts_to_send`] picks what a rule sends after an
//!   evaluation, with Prometheus's `endsAt`. `axi-alert run` sends through it to the
//!   Alertmanagers of its `alerting:` section.
//!
//! - [`Dispatcher`]: the router's runtime, as `dispatch/dispatch.go` and the notify
//!   pipeline, driven by an explicit clock ([`Dispatcher::insert`] and
//!   [`Dispatcher::tick`] take `now` in ms): aggregation groups per route and group labels
//!   with `group_wait` (at once for an alert older than it), `group_interval` and
//!   `repeat_interval`; alerts without an end get `now + resolve_timeout`; resolved alerts
//!   are notified once and then leave their group, empty groups go; caps on groups and on
//!   alerts per group, refusals counted. A flush mutes alerts ([`Inhibitor`], as
//!   `inhibit.go`, and [`Silences`], as `silence.go`: create, list, expire, retention),
//!   applies [`needs_update`] (`DedupStage`) per integration against the
//!   [`NotificationLog`] and sets `notification_reason` from it; the log and the silences
//!   are persisted atomically (temporary file, fsync, rename) to
//!   [`DispatcherOptions::state_file`] and read back on start, expired entries dropped
//!   (log entries after `min(retention, 2 × repeat_interval)`).
//! - [`Notifier`]: delivery through the webhook, email, DingTalk and WeCom integrations with
//!   retries and exponential backoff ([`RetryPolicy`]: network errors, 5xx, 429 and the
//!   robot rate limit retried; 4xx fails at once and is logged), counted as Alertmanager
//!   counts ([`METRIC_NOTIFICATIONS_TOTAL`], [`METRIC_NOTIFICATIONS_FAILED_TOTAL`] with
//!   `reason` `clientError` / `serverError` / `other`, [`METRIC_NOTIFICATION_REQUESTS_TOTAL`],
//!   [`METRIC_NOTIFICATION_LATENCY_SECONDS`]) through the `metrics` facade.
//!
//! - Robot limits: at most 20 messages per minute to each DingTalk or WeCom robot
//!   ([`Notifier::with_robot_limit`]); while a robot's window is full its notifications wait
//!   and then go out together as one message (sections joined, mentions merged), each
//!   delivery getting that message's outcome.
//! - [`Runner`]: a Tokio task driving a [`Dispatcher`] on a [`Clock`] ([`SystemClock`]):
//!   alerts and silence changes through a bounded channel (senders wait when it is full),
//!   each flushed group delivered in a task of its own (a slow or failing receiver holds up
//!   neither other groups nor the API, and a group is not flushed again while its delivery
//!   is in flight), the state persisted at most every `persist_interval` (500 ms) after a
//!   change, deliveries (and remediation runs) in flight given
//!   5 s at shutdown, the dispatcher handed back.
//! - Durability: the state file holds the notification log, the silences and the alerts
//!   the groups hold. After a restart, even after `kill -9`, the alerts are back in their
//!   groups and the restored log decides what is sent: a notification that was not
//!   delivered (firing or resolved) is sent, one that was logged is not sent again. An
//!   alert that was firing when last received and whose `endsAt` passed during the
//!   downtime is not taken as resolved: it gets `resolve_timeout` from the restart, time
//!   for its sender to re-send it or its resolution.
//! - `api_router` (feature `api`, on by default): Alertmanager's HTTP API v2
//!   (`/api/v2/alerts` GET and POST, `/alerts/groups`, `/silences` GET and POST,
//!   `/silence/{id}` GET and DELETE, `/receivers`, `/status`, `/-/healthy`, `/-/ready`)
//!   (`POST /api/v2/alerts` bodies up to [`MAX_POSTED_ALERTS_BYTES`], 32 MiB)
//!   in Alertmanager 0.33's JSON shapes and error statuses, so the real `amtool` lists
//!   alerts and manages silences against it; `serve` runs it all as
//!   `axi-alert alertmanager`, with Alertmanager's flags and its own `/metrics` (the
//!   counters above, with Alertmanager's HELP texts), reloading its configuration on
//!   SIGHUP or `POST /-/reload` ([`Dispatcher::reconfigure`]: silences, the log and the
//!   alerts kept).
//! - Remediation actions (ours, off by default): the top-level `remediations` list
//!   ([`RemediationConfig`]) names programs (an argv list, run without a shell, the alert
//!   as JSON on stdin, output bounded, killed at `timeout`) and `http://` URLs (the alert
//!   POSTed as JSON, 2xx is success); a route's `remediations: [name, ...]` (inherited by
//!   child routes, `[]` turns them off) runs them when [`Dispatcher::insert`] takes a
//!   firing alert that no silence or inhibition mutes, at most once per `cooldown` for the
//!   same alert and `max_runs` times per `window` for the action. The dispatcher only
//!   decides and queues ([`Dispatcher::take_remediations`], bounded, overflow counted); the
//!   [`Runner`] executes ([`RemediationRun::execute`], at most
//!   [`MAX_CONCURRENT_REMEDIATIONS`] at once) and reports back
//!   ([`Dispatcher::remediation_done`]): the outcome is logged, counted
//!   ([`METRIC_REMEDIATIONS_TOTAL`], [`METRIC_REMEDIATIONS_SKIPPED_TOTAL`]) and attached to
//!   the alert's next notification as the annotation `remediation`
//!   (`restart-api: succeeded (exit status 0) in 1.2s at 2026-11-26T07:30:00Z`). The run
//!   history is in the state file, so a restart, even `kill -9`, keeps cooldowns and
//!   `max_runs`.
//!
//! Not there yet: Alertmanager's alert hashes are replaced by label fingerprints in the
//! log (the file format is ours, not Alertmanager's protobuf); two sibling routes with
//! identical matchers and receiver share groups; for mail, CRAM-MD5 (`auth_secret` and
//! `auth_secret_file` are refused at load), `threading`, `html/template`'s contextual
//! escaping beyond HTML-escaping the data (URL and CSS contexts), and Alertmanager's
//! template functions other than `join` (`stringSlice`, `date`, `tz`, `since`, `toJson`,
//! ...); YAML merge keys, `templates:` files, clustering; for remediation actions,
//! `https://` URLs and killing the children a program leaves behind (only the program
//! itself is killed at its timeout).
//!
//! ```
//! use std::path::Path;
//! use axi_obs_alert::delivery::{
//!     AmAlert, Config, LabelSet, Notification, NotificationReason, Route, WebhookMessage,
//! };
//!
//! let cfg = Config::parse(
//!     r#"
//! route:
//!   receiver: hook
//!   group_by: [alertname]
//! receivers:
//! - name: hook
//!   webhook_configs:
//!   - url: http://127.0.0.1:5001/
//! "#,
//!     Path::new("alertmanager.yml"),
//! )
//! .unwrap();
//! let tree = Route::from_config(cfg.route.as_ref().unwrap());
//! let labels = LabelSet::from([("alertname".to_string(), "Down".to_string())]);
//! let route = tree.matches(&labels)[0];
//! let n = Notification {
//!     receiver: route.opts.receiver.clone(),
//!     group_key: route.group_key(&labels),
//!     group_labels: route.group_labels(&labels),
//!     alerts: vec![AmAlert {
//!         labels,
//!         annotations: LabelSet::new(),
//!         starts_at: 1_700_000_000_000,
//!         ends_at: None,
//!         generator_url: String::new(),
//!     }],
//!     reason: NotificationReason::FirstNotification,
//!     now_ms: 1_700_000_030_000,
//!     external_url: "http://am:9093".into(),
//! };
//! let msg = WebhookMessage::new(&n, &n.alerts, 0);
//! assert_eq!(msg.group_key, r#"{}:{alertname="Down"}"#);
//! assert_eq!(msg.alerts[0].ends_at, "0001-01-01T00:00:00Z");
//! ```

mod alertmanager;
#[cfg(feature = "api")]
mod api;
mod config;
mod dispatch;
mod email;
mod email_config;
mod inhibit;
mod integrations;
mod matcher;
mod model;
mod nflog;
mod notification;
mod notify;
mod remediation;
mod robot_limit;
mod route;
mod runner;
#[cfg(feature = "api")]
mod server;
mod silence;
mod smtp;
mod state;
pub mod timeinterval;

pub use alertmanager::{
    ALERTS_PATH, AlertmanagerAuth, AlertmanagerSender, DEFAULT_QUEUE_CAPACITY,
    DEFAULT_RESEND_DELAY, DEFAULT_TIMEOUT, FlushReport, MAX_BATCH, METRIC_SENDER_DROPPED_TOTAL,
    METRIC_SENDER_ERRORS_TOTAL, METRIC_SENDER_QUEUE_LENGTH, METRIC_SENDER_SENT_TOTAL,
    PostableAlert, SenderError, SenderOptions, alerts_to_send, generator_url, group_alerts_to_send,
};
#[cfg(feature = "api")]
pub use api::{
    ApiInfo, MAX_POSTED_ALERTS_BYTES, METRIC_ALERTS_INVALID_TOTAL, METRIC_ALERTS_RECEIVED_TOTAL,
    api_router,
};
pub use config::{
    Config, ConfigError, DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL,
    DEFAULT_RESOLVE_TIMEOUT, DINGTALK_ROBOT_URL, DingTalkConfig, EmailConfig, GlobalConfig,
    InhibitRule, MatcherList, ModelDuration, Receiver, RegexMap, RouteConfig, Secret, TlsConfig,
    WECOM_ROBOT_URL, WeComConfig, WebhookConfig,
};
pub use dispatch::{
    AlertStatus, DEFAULT_MAX_ALERTS_PER_GROUP, DEFAULT_MAX_GROUPS, DEFAULT_PERSIST_INTERVAL,
    DispatchError, Dispatcher, DispatcherOptions, Flush, GroupStatus, Inserted, Job, TickReport,
};
pub use email::{
    DEFAULT_EMAIL_TEMPLATES, EmailMessage, email_message, parse_address_list, q_encode,
    quoted_printable, send_email,
};
pub use email_config::{DEFAULT_EMAIL_HTML, DEFAULT_EMAIL_SUBJECT, DEFAULT_SMTP_HELLO};
pub use inhibit::Inhibitor;
pub use integrations::{
    DEFAULT_MESSAGE, DEFAULT_TITLE, DINGTALK_BODY_MAX_BYTES, Delivered, DeliveryError, USER_AGENT,
    WECOM_MARKDOWN_MAX_BYTES, dingtalk_body, dingtalk_sign, dingtalk_url, fit_robot_body,
    send_dingtalk, send_webhook, send_wecom, wecom_body,
};
pub use matcher::{MatchOp, Matcher, matchers_string, sort_matchers};
pub use model::{
    AmAlert, Fingerprint, LabelSet, ZERO_TIME, label_set, label_set_before, parse_rfc3339,
    query_escape, rfc3339_millis, rfc3339_nano, sort_for_notification,
};
pub use nflog::{DEFAULT_RETENTION, IntegrationKey, NflogEntry, NotificationLog, needs_update};
pub use notification::{AlertData, Notification, NotificationReason, TemplateData, WebhookMessage};
pub use notify::{
    HTTP_CLIENT_TIMEOUT, Integration, LABEL_INTEGRATION, LABEL_REASON,
    METRIC_ALERT_LIMIT_REACHED_TOTAL, METRIC_GROUP_LIMIT_REACHED_TOTAL,
    METRIC_NOTIFICATION_LATENCY_SECONDS, METRIC_NOTIFICATION_REQUESTS_FAILED_TOTAL,
    METRIC_NOTIFICATION_REQUESTS_TOTAL, METRIC_NOTIFICATIONS_FAILED_TOTAL,
    METRIC_NOTIFICATIONS_SUPPRESSED_TOTAL, METRIC_NOTIFICATIONS_TOTAL, Notifier, RetryPolicy,
    SUPPRESSED_REASONS, http_client,
};
pub use remediation::{
    ANNOTATION_REMEDIATION, DEFAULT_REMEDIATION_COOLDOWN, DEFAULT_REMEDIATION_MAX_RUNS,
    DEFAULT_REMEDIATION_TIMEOUT, DEFAULT_REMEDIATION_WINDOW, LABEL_ACTION, LABEL_OUTCOME,
    MAX_CONCURRENT_REMEDIATIONS, METRIC_REMEDIATIONS_SKIPPED_TOTAL, METRIC_REMEDIATIONS_TOTAL,
    REMEDIATION_OUTPUT_LIMIT, REMEDIATION_QUEUE_CAPACITY, RemediationConfig, RemediationOutcome,
    RemediationResult, RemediationRun, Remediations, SkipReason,
};
pub use robot_limit::{DEFAULT_ROBOT_MESSAGES, DEFAULT_ROBOT_WINDOW};
pub use route::{Route, RouteOpts, label_set_string};
pub use runner::{Clock, DEFAULT_RUNNER_CAPACITY, Runner, RunnerError, SystemClock};
#[cfg(feature = "api")]
pub use server::{STATE_FILE, ServeError, ServeOptions, serve};
pub use silence::{Silence, SilenceError, SilenceState, Silences};
pub use smtp::{DEFAULT_SMTP_TIMEOUT, ProtocolDetail, SmtpError};
