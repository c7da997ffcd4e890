//! Notifications (feature `notify`): [`NotifyHook`] posts a JSON summary of each finished
//! deployment to a webhook.
//!
//! The hook runs on the dispatcher's thread like every hook, so the POST is off the deploying
//! thread. It is synchronous there: a slow webhook delays the other hooks by at most the
//! [timeout](NotifyHook::timeout) per finished deployment (events queue meanwhile, see
//! [`crate::dispatch`] for the when-full policy). A failed POST (connection error, timeout,
//! non-2xx) is not retried: it is returned as the hook's error, which the dispatcher counts
//! in `axi_deploy_hook_failures_total{hook="notify"}` and logs.
//!
//! ```no_run
//! use axi_obs_deploy::dispatch::Dispatcher;
//! use axi_obs_deploy::notify::NotifyHook;
//! use axi_obs_deploy::{Status, Tracker};
//!
//! let hook = NotifyHook::new("http://127.0.0.1:9000/deploys".parse()?)
//!     .statuses([Status::Failed, Status::RolledBack]); // default: every outcome
//! let tracker = Tracker::new(Dispatcher::builder().hook(hook).build()?);
//! tracker.start("shop-api", "prod", "1.4.2").fail("migration failed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The body ([`Summary`], `Content-Type: application/json`, `Idempotency-Key` = the terminal
//! event's id):
//!
//! ```json
//! {"schema":1,"text":"shop-api 1.4.2 to prod failed after 5.5 s: migration failed",
//!  "deployment":{"id":"d-42","project":"shop-api","environment":"prod","version":"1.4.2",
//!  "started_at":"2026-05-01T10:00:00Z"},"status":"failed","finished_at":"2026-05-01T10:00:05.5Z",
//!  "duration_seconds":5.5,"reason":"migration failed"}
//! ```

use std::time::Duration;

use axi_obs_core::https::{BlockingHttpClient, Connector};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::{DeploymentRef, Event, EventKind};
use crate::hook::{Hook, HookError};
use crate::model::Status;

/// The schema version of [`Summary`].
pub const SUMMARY_SCHEMA: u32 = 1;

/// Default time for one POST, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`NotifyHook`] posts for a finished deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// [`SUMMARY_SCHEMA`].
    pub schema: u32,
    /// One line for humans, e.g. `shop-api 1.4.2 to prod failed after 5.5 s: migration failed`.
    pub text: String,
    /// The deployment.
    pub deployment: DeploymentRef,
    /// How it ended.
    pub status: Status,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// Start to finish, in seconds.
    pub duration_seconds: f64,
    /// Why it failed, was rolled back or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a rollback, the version now running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<String>,
}

impl Summary {
    /// The summary of a terminal event; `None` for other events.
    pub fn from_event(e: &Event) -> Option<Self> {
        let status = e.kind.terminal_status()?;
        let (reason, rolled_back_to) = match &e.kind {
            EventKind::Failed { reason } => (Some(reason.clone()), None),
            EventKind::RolledBack { to_version, reason } => {
                (reason.clone(), Some(to_version.clone()))
            }
            EventKind::Cancelled { reason } => (reason.clone(), None),
            _ => (None, None),
        };
        let d = &e.deployment;
        let duration_seconds = (e.at - d.started_at).as_seconds_f64().max(0.0);
        let outcome = match &rolled_back_to {
            Some(v) => format!("rolled back to {v}"),
            None => status.as_str().replace('_', " "),
        };
        let mut text = format!(
            "{} {} to {} {outcome} after {duration_seconds:.1} s",
            d.project, d.version, d.environment
        );
        if let Some(r) = &reason {
            text.push_str(": ");
            text.push_str(r);
        }
        Some(Self {
            schema: SUMMARY_SCHEMA,
            text,
            deployment: d.clone(),
            status,
            finished_at: e.at,
            duration_seconds,
            reason,
            rolled_back_to,
        })
    }
}

/// Why a notification was not delivered (the hook's error). The message includes the cause,
/// since the dispatcher logs only the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The HTTP client could not be built (its runtime or its TLS configuration).
    #[error("cannot build the notification HTTP client: {0}")]
    Client(String),
    /// The request failed (connection, TLS, timeout).
    #[error("POST {url}: {source}")]
    Send {
        /// The webhook as logs may show it: without the credentials and query (tokens) its
        /// URL may carry.
        url: String,
        /// What failed (without the URL).
        #[source]
        source: axi_obs_core::https::HttpError,
    },
    /// The webhook answered with a status other than 2xx.
    #[error("POST {url}: HTTP {status}")]
    Status {
        /// The webhook as logs may show it (see [`NotifyError::Send`]).
        url: String,
        /// Its answer.
        status: http::StatusCode,
    },
}

/// Posts a [`Summary`] of each finished deployment to a webhook. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct NotifyHook {
    url: http::Uri,
    timeout: Duration,
    statuses: Vec<Status>,
    /// Built at the first notification, on the dispatcher's thread: a blocking client must
    /// not be created or dropped inside an async runtime, where hooks are often built.
    client: Option<BlockingHttpClient>,
    /// Deployments already notified of (or filtered out) by their first outcome.
    ended: crate::hook::RecentlyEnded,
}

impl NotifyHook {
    /// A hook posting to `url` (`http://` or `https://`, the host's trust store) for every
    /// outcome (succeeded, failed, rolled back, cancelled), with a [`DEFAULT_TIMEOUT`] per
    /// POST.
    pub fn new(url: http::Uri) -> Self {
        Self {
            url,
            timeout: DEFAULT_TIMEOUT,
            statuses: Status::ALL
                .into_iter()
                .filter(|s| s.is_terminal())
                .collect(),
            client: None,
            ended: Default::default(),
        }
    }

    /// Time for one POST, connecting included. Defaults to [`DEFAULT_TIMEOUT`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Which outcomes are posted. Defaults to every terminal one.
    #[must_use]
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = Status>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    fn post(&mut self, id: &str, summary: &Summary) -> Result<(), NotifyError> {
        let client = match self.client.take() {
            Some(client) => client,
            None => {
                let tls = axi_obs_core::tls::ClientTls::new()
                    .client_config()
                    .map_err(|e| NotifyError::Client(e.to_string()))?;
                let timeout = self.timeout;
                BlockingHttpClient::new(
                    Connector::new(tls).connect_timeout(timeout).build(),
                    timeout,
                )
                .map_err(|e| NotifyError::Client(e.to_string()))?
                // Only the status matters.
                .max_body(4096)
            }
        };
        let client = self.client.insert(client);
        // A struct of strings, numbers and a formatted timestamp always serializes.
        let body = serde_json::to_string(summary).unwrap_or_default();
        let mut headers = http::HeaderMap::new();
        if let Ok(id) = http::HeaderValue::from_str(id) {
            headers.insert("idempotency-key", id);
        }
        // The client's errors never hold the URL.
        let reply = client
            .post(&self.url, &headers, "application/json", body.into_bytes())
            .map_err(|source| NotifyError::Send {
                url: shown(&self.url),
                source,
            })?;
        if !reply.status.is_success() {
            return Err(NotifyError::Status {
                url: shown(&self.url),
                status: reply.status,
            });
        }
        Ok(())
    }
}

/// `url` as errors show it: webhook URLs carry tokens (in the path of some, the query of
/// most), so the query and any credentials are hidden.
fn shown(url: &http::Uri) -> String {
    axi_obs_core::__private::redact_url(&url.to_string())
}

impl Hook for NotifyHook {
    fn name(&self) -> &str {
        "notify"
    }

    fn on_event(&mut self, e: &Event) -> Result<(), HookError> {
        let Some(summary) = Summary::from_event(e) else {
            return Ok(());
        };
        // The first outcome only, as the history keeps it: a second terminal event (a GitHub
        // `error` then `success`) would announce what the history contradicts.
        if !self.ended.insert(&e.deployment.id) || !self.statuses.contains(&summary.status) {
            return Ok(());
        }
        Ok(self.post(&e.id, &summary)?)
    }
}
