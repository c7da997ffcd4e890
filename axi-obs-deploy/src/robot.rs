//! DingTalk and WeCom deploy notifications (feature `alert`): [`RobotNotifyHook`] sends a
//! summary of each finished deployment through axi-obs-alert's robot integrations, the same
//! code its alert notifications use (DingTalk's signature, `errcode` checks, WeCom's size
//! limit, markdown templates).
//!
//! ```no_run
//! use axi_obs_alert::delivery::{Config, DingTalkConfig};
//! use axi_obs_deploy::dispatch::Dispatcher;
//! use axi_obs_deploy::robot::RobotNotifyHook;
//! use axi_obs_deploy::{Status, Tracker};
//!
//! // The same blocks as a `dingtalk_configs` / `wecom_configs` entry of an Alertmanager file.
//! let dingtalk: DingTalkConfig = serde_norway::from_str(
//!     "url: https://oapi.dingtalk.com/robot/send?access_token=XXX\nsecret: SEC000\n",
//! )?;
//! let hook = RobotNotifyHook::new()?
//!     .dingtalk(dingtalk)
//!     .statuses([Status::Failed, Status::RolledBack]); // default: every outcome
//! let tracker = Tracker::new(Dispatcher::builder().hook(hook).build()?);
//! tracker.start("shop-api", "prod", "1.4.2").fail("migration failed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The message
//!
//! Each finished deployment becomes one notification holding one alert whose labels are
//! `alertname="deployment"`, `project`, `environment`, `version` and `status`, and whose
//! annotations are `title` (`[FAILED] shop-api 1.4.2 → prod`), `summary` (the
//! [`Summary`] text: `shop-api 1.4.2 to prod failed after 5.5 s:
//! migration failed`) and `markdown` (title, summary, deployment id, commit and actor where
//! known). Without templates of its own in the robot's configuration, the DingTalk title is
//! [`DEFAULT_TITLE`] and the body (both robots) [`DEFAULT_MESSAGE`]; a configuration's own
//! `title` / `message` templates see the same labels and annotations as alert templates do.
//!
//! # Delivery
//!
//! On the dispatcher's thread like every hook (on a small Tokio runtime of the hook's own),
//! one attempt per robot, bounded by [`timeout`](RobotNotifyHook::timeout) (default
//! [`DEFAULT_TIMEOUT`]). A failure (connection, non-2xx, a robot's `errcode` other than 0)
//! is the hook's error, counted in `axi_deploy_hook_failures_total{hook="robot"}` and logged;
//! the other robots are still tried.

use std::time::Duration;

use axi_obs_alert::delivery::{
    AmAlert, DingTalkConfig, LabelSet, Notification, NotificationReason, WeComConfig,
    send_dingtalk, send_wecom,
};

use crate::event::{Event, EventKind, unix_ms};
use crate::hook::{Hook, HookError};
use crate::model::Status;
use crate::notify::Summary;

/// Default time for one robot request, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The DingTalk markdown title used when the robot's configuration has none.
pub const DEFAULT_TITLE: &str = "{{ range .Alerts }}{{ .Annotations.title }}{{ end }}";

/// The markdown body used when the robot's configuration has none.
pub const DEFAULT_MESSAGE: &str = "{{ range .Alerts }}{{ .Annotations.markdown }}{{ end }}";

/// The `alertname` label of deploy notifications.
pub const ALERTNAME: &str = "deployment";

/// Why the hook could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RobotError {
    /// The hook's Tokio runtime could not start.
    #[error("cannot start the robot hook's runtime")]
    Runtime(#[source] std::io::Error),
    /// The HTTPS client could not be built.
    #[error("cannot build the robot hook's HTTPS client")]
    Client(#[source] axi_obs_core::tls::TlsError),
}

/// Why a notification was not delivered (the hook's error).
#[derive(Debug, thiserror::Error)]
#[error("{robot}: {message}")]
pub struct RobotSendError {
    robot: &'static str,
    message: String,
}

enum Robot {
    DingTalk(DingTalkConfig),
    WeCom(WeComConfig),
}

/// Sends finished deployments to DingTalk and WeCom robots. See the
/// [module documentation](self).
pub struct RobotNotifyHook {
    robots: Vec<Robot>,
    statuses: Vec<Status>,
    timeout: Duration,
    client: axi_obs_core::https::HttpClient,
    runtime: tokio::runtime::Runtime,
    /// Deployments already announced (or filtered out) by their first outcome.
    ended: crate::hook::RecentlyEnded,
}

impl std::fmt::Debug for RobotNotifyHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobotNotifyHook")
            .field("robots", &self.robots.len())
            .field("statuses", &self.statuses)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RobotNotifyHook {
    /// A hook with no robot yet, notifying every outcome.
    ///
    /// # Errors
    ///
    /// When its runtime or HTTP client cannot be built.
    pub fn new() -> Result<Self, RobotError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RobotError::Runtime)?;
        // The robots are `https://` only.
        let client = axi_obs_alert::delivery::http_client().map_err(RobotError::Client)?;
        Ok(Self {
            robots: Vec::new(),
            statuses: vec![
                Status::Succeeded,
                Status::Failed,
                Status::RolledBack,
                Status::Cancelled,
            ],
            timeout: DEFAULT_TIMEOUT,
            client,
            runtime,
            ended: Default::default(),
        })
    }

    /// Adds a DingTalk robot (signed when its `secret` is set).
    pub fn dingtalk(mut self, config: DingTalkConfig) -> Self {
        self.robots.push(Robot::DingTalk(config));
        self
    }

    /// Adds a WeCom group robot.
    pub fn wecom(mut self, config: WeComConfig) -> Self {
        self.robots.push(Robot::WeCom(config));
        self
    }

    /// The outcomes notified. Defaults to all four.
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = Status>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// Time for one robot request, connection included. Defaults to [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The notification for a finished deployment, as the robots' templates see it.
pub fn notification(summary: &Summary, event: &Event) -> Notification {
    let d = &summary.deployment;
    let status = summary.status.as_str();
    let title = format!(
        "[{}] {} {} → {}",
        status.to_uppercase(),
        d.project,
        d.version,
        d.environment
    );
    let mut markdown = format!(
        "### {title}\n\n> {}\n\n- deployment: {}\n",
        summary.text, d.id
    );
    if let EventKind::RolledBack { to_version, .. } = &event.kind {
        markdown.push_str(&format!("- now running: {to_version}\n"));
    }
    let labels = LabelSet::from([
        ("alertname".to_owned(), ALERTNAME.to_owned()),
        ("project".to_owned(), d.project.clone()),
        ("environment".to_owned(), d.environment.clone()),
        ("version".to_owned(), d.version.clone()),
        ("status".to_owned(), status.to_owned()),
    ]);
    let annotations = LabelSet::from([
        ("title".to_owned(), title),
        ("summary".to_owned(), summary.text.clone()),
        ("markdown".to_owned(), markdown),
    ]);
    let now_ms = unix_ms(time::OffsetDateTime::now_utc());
    Notification {
        receiver: "deploy".to_owned(),
        group_key: format!("{{}}:{{deployment=\"{}\"}}", d.id),
        group_labels: LabelSet::from([("deployment".to_owned(), d.id.clone())]),
        alerts: vec![AmAlert {
            labels,
            annotations,
            starts_at: unix_ms(d.started_at),
            // Open-ended, so the message reads as news rather than a resolution.
            ends_at: None,
            generator_url: String::new(),
        }],
        reason: NotificationReason::FirstNotification,
        now_ms,
        external_url: String::new(),
    }
}

impl Hook for RobotNotifyHook {
    fn name(&self) -> &str {
        "robot"
    }

    fn on_event(&mut self, event: &Event) -> Result<(), HookError> {
        let Some(summary) = Summary::from_event(event) else {
            return Ok(());
        };
        // The first outcome only, as the history keeps it (see `NotifyHook`).
        if !self.ended.insert(&event.deployment.id) || !self.statuses.contains(&summary.status) {
            return Ok(());
        }
        let n = notification(&summary, event);
        let timeout = self.timeout;
        let mut errors = Vec::new();
        for robot in &self.robots {
            let (name, result) = match robot {
                Robot::DingTalk(cfg) => {
                    let mut cfg = cfg.clone();
                    cfg.title.get_or_insert_with(|| DEFAULT_TITLE.to_owned());
                    cfg.message
                        .get_or_insert_with(|| DEFAULT_MESSAGE.to_owned());
                    let send = send_dingtalk(&self.client, &cfg, &n);
                    (
                        "dingtalk",
                        self.runtime
                            .block_on(async { tokio::time::timeout(timeout, send).await }),
                    )
                }
                Robot::WeCom(cfg) => {
                    let mut cfg = cfg.clone();
                    cfg.message
                        .get_or_insert_with(|| DEFAULT_MESSAGE.to_owned());
                    let send = send_wecom(&self.client, &cfg, &n);
                    (
                        "wecom",
                        self.runtime
                            .block_on(async { tokio::time::timeout(timeout, send).await }),
                    )
                }
            };
            let message = match result {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {:?}", self.timeout),
            };
            errors.push(RobotSendError {
                robot: name,
                message,
            });
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(Box::new(errors.remove(0))),
            _ => Err(errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
                .into()),
        }
    }
}
