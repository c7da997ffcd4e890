//! `axi-alert alertmanager`: the built-in router as a process that stands in for
//! Alertmanager: the same configuration file, Alertmanager's flags and HTTP API v2, the
//! notification log, silences and alerts persisted under the storage path.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::api::{ConfigText, api_router_with};
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
    /// This instance's URL in notifications (`--web.external-url`); empty: as Alertmanager,
    /// `http://<hostname>:<listen port>`. A trailing `/` is dropped, as Alertmanager drops it.
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
    /// The HTTPS client of the receivers could not be set up.
    #[error("the receivers' HTTPS client: {0}")]
    Tls(#[from] axi_obs_core::tls::TlsError),
    /// `--web.external-url` is not an http or https URL.
    #[error("external URL {0:?}: the scheme must be http or https")]
    ExternalUrl(String),
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
    let external_url = external_url(&opts.external_url, opts.listen, &hostname())?;
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
            external_url,
            retention: opts.retention,
            state_file: Some(opts.storage_path.join(STATE_FILE)),
            ..DispatcherOptions::default()
        },
        now,
    )?;
    let restored = dispatcher.alert_count();
    let notifier = Notifier::new(crate::delivery::http_client()?, RetryPolicy::default());
    let (runner, task) = Runner::spawn(dispatcher, notifier, SystemClock, DEFAULT_RUNNER_CAPACITY);
    let shared: ConfigText = std::sync::Arc::new(config_text.into());
    let reloader = Reloader {
        path: opts.config_file.clone(),
        runner: runner.clone(),
        text: shared.clone(),
    };
    let app = api_router_with(runner.clone(), now, shared)
        .route("/metrics", axum::routing::get(crate::exposition::metrics))
        .route(
            "/-/reload",
            axum::routing::post({
                let r = reloader.clone();
                move || {
                    let r = r.clone();
                    async move {
                        match r.reload().await {
                            Ok(()) => (axum::http::StatusCode::OK, String::new()),
                            Err(e) => (
                                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                                format!("failed to reload config: {e}"),
                            ),
                        }
                    }
                }
            }),
        );
    #[cfg(unix)]
    {
        let r = reloader.clone();
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    // The outcome is logged by `reload`.
                    let _ = r.reload().await;
                }
            });
        }
    }
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

/// Reads the configuration file again and hands it to the running dispatcher, as
/// Alertmanager does on SIGHUP or `POST /-/reload`; a bad file leaves the running
/// configuration in force.
#[derive(Clone)]
struct Reloader {
    path: PathBuf,
    runner: Runner,
    text: ConfigText,
}

impl Reloader {
    async fn reload(&self) -> Result<(), String> {
        let result = async {
            let config = Config::load(&self.path).map_err(|e| e.to_string())?;
            let text = std::fs::read_to_string(&self.path).map_err(|e| e.to_string())?;
            self.runner
                .update(move |d, now| d.reconfigure(&config, now))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            *self
                .text
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = text;
            Ok(())
        }
        .await;
        match &result {
            Ok(()) => tracing::info!(config = %self.path.display(), "configuration reloaded"),
            Err(e) => {
                tracing::error!(config = %self.path.display(), error = %e, "reload failed; the running configuration stays")
            }
        }
        result
    }
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

/// The URL notifications name, as Alertmanager's `extURL`: `given`, or
/// `http://<hostname>:<port>` when empty; an http or https URL; trailing `/` dropped.
fn external_url(given: &str, listen: SocketAddr, hostname: &str) -> Result<String, ServeError> {
    if given.is_empty() {
        return Ok(format!("http://{hostname}:{}", listen.port()));
    }
    let scheme_ok = ["http://", "https://"]
        .iter()
        .any(|p| given.len() > p.len() && given[..p.len()].eq_ignore_ascii_case(p));
    if !scheme_ok {
        return Err(ServeError::ExternalUrl(given.to_owned()));
    }
    Ok(given.trim_end_matches('/').to_owned())
}

/// This host's name (Go's `os.Hostname` reads the same file), `localhost` when unknown.
fn hostname() -> String {
    axi_obs_core::__private::host_name().unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_url_as_alertmanager_makes_it() {
        let listen: SocketAddr = "0.0.0.0:9093".parse().unwrap();
        assert_eq!(external_url("", listen, "box").unwrap(), "http://box:9093");
        assert_eq!(
            external_url("http://am.example:9093/", listen, "box").unwrap(),
            "http://am.example:9093"
        );
        assert_eq!(
            external_url("https://x/alertmanager/", listen, "box").unwrap(),
            "https://x/alertmanager"
        );
        assert!(external_url("am.example:9093", listen, "box").is_err());
    }
}
