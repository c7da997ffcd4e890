//! Deploy monitoring in the demo: axi-obs-deploy's routes over a SQLite history.
//!
//! [`Deploys::open`] opens (or creates) the history and starts the hook thread; its
//! [`router`](Deploys::router) serves `POST /api/deploy/events` (what `axi-deploy run
//! --endpoint http://HOST` posts to), GitHub webhooks when a secret is given, the SSE stream,
//! history, stats and Grafana annotations. Every event that arrives is committed to the
//! history, published to the live stream, and handed to the metrics, log and trace hooks: a
//! deploy shows up in `/metrics` (`deploys_total`, `deploy_duration_seconds`, ...), as JSON
//! log lines, and as a trace (exported over OTLP when an endpoint is configured).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axi_obs_deploy::alert::LastDeployEnricher;
use axi_obs_deploy::dispatch::Dispatcher;
use axi_obs_deploy::http::{DeployRoutes, SharedHistory};
use axi_obs_deploy::store::History;
use axi_obs_deploy::stream::LiveStream;
use axum::Router;

/// Errors from [`Deploys::open`].
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The history file used when none is given: `$XDG_DATA_HOME/demo-service/deploys.db`
/// (`~/.local/share/...`), or under the system's temporary directory without a home.
pub fn default_db_path() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })
        .unwrap_or_else(std::env::temp_dir);
    data.join("demo-service").join("deploys.db")
}

/// The demo's deploy monitoring; clones share it.
#[derive(Clone, Debug)]
pub struct Deploys {
    path: PathBuf,
    history: SharedHistory,
    stream: LiveStream,
    hooks: Arc<Dispatcher>,
    github_secret: Option<Vec<u8>>,
}

impl Deploys {
    /// Opens the history at `path` (its directory is created) and starts the hooks: metrics,
    /// log and trace, through the process's installed telemetry.
    ///
    /// # Errors
    ///
    /// When the directory or the database cannot be created, or the hook thread not started.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let history = History::open(&path)?;
        let hooks = DeployRoutes::default_hooks().build()?;
        Ok(Self {
            path,
            history: Arc::new(Mutex::new(history)),
            stream: LiveStream::new(),
            hooks: Arc::new(hooks),
            github_secret: None,
        })
    }

    /// Also accepts GitHub webhooks on `/api/deploy/github`, verified with `secret`.
    /// Defaults to none (no route).
    pub fn github_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.github_secret = Some(secret.into());
        self
    }

    /// The history file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The live stream (close it on shutdown so SSE clients let the server stop).
    pub fn stream(&self) -> &LiveStream {
        &self.stream
    }

    /// The dispatcher running the hooks.
    pub fn hooks(&self) -> &Arc<Dispatcher> {
        &self.hooks
    }

    /// An alert enricher adding the last deployment of an alert's `project` / `environment`
    /// (see [`LastDeployEnricher`]), on its own connection to the history.
    ///
    /// # Errors
    ///
    /// When the history cannot be opened.
    pub fn last_deploy_enricher(&self) -> Result<LastDeployEnricher, Error> {
        Ok(LastDeployEnricher::new(History::open(&self.path)?))
    }

    /// The deploy routes.
    pub fn router(&self) -> Router {
        let mut routes = DeployRoutes::with_dispatcher(
            self.history.clone(),
            self.stream.clone(),
            self.hooks.clone(),
        );
        if let Some(secret) = &self.github_secret {
            routes = routes.github_secret(secret.clone());
        }
        routes.into_router()
    }

    /// For a graceful stop: ends the live streams and waits up to `timeout` for the hooks to
    /// handle what arrived (so the last deploy's spans are ended before telemetry flushes).
    pub fn shutdown(&self, timeout: Duration) {
        self.stream.close();
        self.hooks.flush(timeout);
    }
}
