//! Errors returned while configuring and installing telemetry.

use std::path::PathBuf;
use std::time::Duration;

/// Where a configuration value came from, so an error can name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Set in code, through the named builder method.
    Code(&'static str),
    /// Read from the named environment variable.
    Env(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Code(method) => write!(f, "TelemetryBuilder::{method}"),
            Source::Env(var) => f.write_str(var),
        }
    }
}

/// A configuration value that cannot be used.
///
/// The message names the setting (builder method or environment variable), the value and why
/// it was refused, e.g. `OTEL_TRACES_SAMPLER_ARG="1.5": the sampling ratio must be within 0..=1`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{setting}={value:?}: {reason}")]
pub struct ConfigError {
    /// The builder method or environment variable that held the value.
    pub setting: Source,
    /// The value as given.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(
        setting: Source,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            setting,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Why telemetry could not be built or installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// A configuration value is invalid.
    #[error("invalid telemetry configuration: {0}")]
    Config(#[from] ConfigError),
    /// Telemetry was already installed in this process, or another crate set the named global.
    #[error("telemetry is already installed in this process: {0}")]
    AlreadyInstalled(&'static str),
    /// The log file (or its folder) cannot be created or written.
    #[error("cannot write the log file {path:?} (AXI_LOG_FILE / TelemetryBuilder::log_file)")]
    LogFile {
        /// The path that was configured.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A background thread or runtime for exporting could not be started.
    #[error("cannot start the telemetry export thread")]
    Runtime(#[source] std::io::Error),
}

/// Why a flush or shutdown did not complete cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// The deadline passed before everything was flushed; what was still queued is lost.
    #[error("telemetry shutdown did not finish within {0:?}")]
    Timeout(Duration),
    /// One or more exports failed while flushing.
    #[error("telemetry shutdown finished with errors: {0}")]
    Export(String),
    /// Shutdown already ran.
    #[error("telemetry was already shut down")]
    AlreadyShutdown,
}
