//! `axi-alert alertmanager`: the built-in router as a process that stands in for
//! Alertmanager: the same configuration file, Alertmanager's flags and HTTP API v2, the
//! notification log, silences and alerts persisted under the storage path.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::api::{ApiInfo, api_router};
use super::config::Config;
use super::dispatch::{Dispatcher, DispatcherOptions};
use super::notify::{Notifier, RetryPolicy};
use super::runner::{Clock, DEFAULT_RUNNER_CAPACITY, Runner, SystemClock};

/// The state file's name under [`ServeOptions::storage_path`].
pub const STATE_FILE: &str = "axi-router-state.json";

/// How [`serve`] runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Alertmanager's configuration file (`--config.file`).
    pub config_file: PathBuf,
    /// Where the API listens (`--web.listen-address`).
    pub listen: SocketAddr,
    /// The directory for the persisted state (`--storage.path`), created when missing.
    pub storage_path: PathBuf,
    /// This instance's URL in notifications (`--web.external-url`).
    pub external_url: String,
    /// How long expired silences and notification log entries are kept
    /// (`--data.retention`).
    pub retention: Duration,
}

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// The state could not be read or the storage directory created.
    #[error(transparent)]
    State(#[from] super::dispatch::DispatchError),
    /// The storage directory could not be created.
    #[error("storage path {path}: {source}")]
    Storage {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be bound, or serving failed.
    #[error("listen address {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the router until SIGINT or SIGTERM, then persists its state and returns.
///
/// # Errors
///
/// A bad configuration or state file, an unusable storage path or listen address.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let config = Config::load(&opts.config_file)?;
    let config_text = std::fs::read_to_string(&opts.config_file).unwrap_or_default();
    std::fs::create_dir_all(&opts.storage_path).map_err(|source| ServeError::Storage {
        path: opts.storage_path.clone(),
        source,
    })?;
    let now = SystemClock.now_ms();
    let dispatcher = Dispatcher::new(
        &config,
        DispatcherOptions {
            external_url: opts.external_url.clone(),
            retention: opts.retention,
            state_file: Some(opts.storage_path.join(STATE_FILE)),
            ..DispatcherOptions::default()
        },
        now,
    )?;
    let restored = dispatcher.alert_count();
    let notifier = Notifier::new(reqwest::Client::new(), RetryPolicy::default());
    let (runner, task) = Runner::spawn(dispatcher, notifier, SystemClock, DEFAULT_RUNNER_CAPACITY);
    let app = api_router(
        runner.clone(),
        ApiInfo {
            config_text,
            started_ms: now,
        },
    );
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: opts.listen,
            source,
        })?;
    tracing::info!(
        listen = %opts.listen,
        config = %opts.config_file.display(),
        restored_alerts = restored,
        "router listening"
    );
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    runner.shutdown().await;
    drop(runner);
    let _ = task.await;
    served.map_err(|source| ServeError::Listen {
        addr: opts.listen,
        source,
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
