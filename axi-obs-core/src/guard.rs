//! The guard that flushes and shuts every provider down, within a deadline.

use std::time::{Duration, Instant};

use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::error::ShutdownError;
use crate::export::{ControlHandle, ExportRuntime, all_at_once};
use crate::logs::WriterWorker;

/// Flushes and shuts down telemetry when dropped or on [`shutdown`](Self::shutdown).
///
/// Keep it alive for the life of `main`: dropping it ends export. Both paths are bounded by the
/// shutdown timeout (default 5 s): whatever cannot be delivered by then is dropped, and the
/// call returns. Safe on any runtime flavour and on one core, because every export runs on
/// axi-obs's own thread.
#[must_use = "dropping the guard shuts telemetry down at once; bind it: `let _telemetry = ...`"]
#[derive(Debug)]
pub struct TelemetryGuard {
    inner: Option<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) tracer_provider: Option<SdkTracerProvider>,
    pub(crate) logger_provider: Option<SdkLoggerProvider>,
    /// The export tasks (spans, logs, metric push), flushed directly so each flush carries the
    /// one shared deadline.
    pub(crate) exports: Vec<ControlHandle>,
    pub(crate) runtime: Option<ExportRuntime>,
    pub(crate) writer: Option<WriterWorker>,
    pub(crate) timeout: Duration,
}

/// Local log lines get this long (at most a quarter of the timeout) to reach their file or
/// pipe after the exports: the exports' deadline is that much earlier than the timeout's, so
/// the lines that explain a failed export are written and the whole stays within the timeout.
const LOCAL_LOG_MINIMUM: Duration = Duration::from_millis(250);

/// The exports' deadline within `deadline` (`timeout` from now): the local log's share kept.
fn exports_deadline(deadline: Instant, timeout: Duration) -> Instant {
    deadline - LOCAL_LOG_MINIMUM.min(timeout / 4)
}

impl TelemetryGuard {
    pub(crate) fn new(inner: Inner) -> Self {
        Self { inner: Some(inner) }
    }

    /// Exports everything recorded so far, waiting at most the shutdown timeout.
    ///
    /// # Errors
    ///
    /// [`ShutdownError::Timeout`] when the deadline passed, [`ShutdownError::Export`] when an
    /// export failed, [`ShutdownError::AlreadyShutdown`] after shutdown.
    pub fn force_flush(&self) -> Result<(), ShutdownError> {
        let inner = self.inner.as_ref().ok_or(ShutdownError::AlreadyShutdown)?;
        let deadline = Instant::now() + inner.timeout;
        let exports_by = exports_deadline(deadline, inner.timeout);
        let errors = all_at_once(&inner.exports, |e| e.begin_flush(exports_by));
        if let Some(w) = &inner.writer
            && !w.flush(deadline)
        {
            return Err(ShutdownError::Timeout(inner.timeout));
        }
        finish(errors, inner.timeout)
    }

    /// Flushes and shuts down every provider, blocking the calling thread at most the shutdown
    /// timeout. Dropping the guard does the same.
    ///
    /// # Errors
    ///
    /// As [`force_flush`](Self::force_flush).
    pub fn shutdown_blocking(&mut self) -> Result<(), ShutdownError> {
        let inner = self.inner.take().ok_or(ShutdownError::AlreadyShutdown)?;
        inner.shutdown()
    }

    /// Flushes and shuts down every provider without blocking the async runtime; completes
    /// within the shutdown timeout.
    ///
    /// # Errors
    ///
    /// As [`force_flush`](Self::force_flush).
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
        let inner = self.inner.take().ok_or(ShutdownError::AlreadyShutdown)?;
        let timeout = inner.timeout;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A plain thread, not spawn_blocking: works on any executor, and the blocking work is
        // itself bounded by the deadline.
        let spawned = std::thread::Builder::new()
            .name("axi-obs-shutdown".into())
            .spawn(move || {
                let _ = tx.send(inner.shutdown());
            });
        match spawned {
            Ok(_) => rx.await.unwrap_or(Err(ShutdownError::Timeout(timeout))),
            Err(e) => Err(ShutdownError::Export(format!(
                "cannot start the shutdown thread: {e}"
            ))),
        }
    }
}

impl Inner {
    fn shutdown(mut self) -> Result<(), ShutdownError> {
        let deadline = Instant::now() + self.timeout;
        // Local lines first: whatever happens to the exports below, what the service logged
        // before shutting down reaches its file or pipe.
        if let Some(w) = &self.writer {
            let _ = w.flush(Instant::now() + LOCAL_LOG_MINIMUM.min(self.timeout));
        }
        let exports_by = exports_deadline(deadline, self.timeout);
        let errors = all_at_once(&std::mem::take(&mut self.exports), |e| {
            e.begin_shutdown(exports_by)
        });
        // The providers' processors are the export tasks just stopped: this only marks the
        // providers shut down (their requests find the tasks gone and return at once).
        if let Some(p) = self.tracer_provider.take() {
            let _ = p.shutdown_with_timeout(left(deadline));
        }
        if let Some(p) = self.logger_provider.take() {
            let _ = p.shutdown_with_timeout(left(deadline));
        }
        if let Some(mut rt) = self.runtime.take() {
            rt.stop();
        }
        let mut timed_out = errors.iter().any(|e| e.contains("timed out"));
        // Export warnings logged during shutdown: the local log's share of the timeout.
        if let Some(mut w) = self.writer.take()
            && !w.shutdown(deadline)
        {
            timed_out = true;
        }
        if timed_out {
            return Err(ShutdownError::Timeout(self.timeout));
        }
        finish(errors, self.timeout)
    }
}

fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn finish(errors: Vec<String>, timeout: Duration) -> Result<(), ShutdownError> {
    if errors.is_empty() {
        Ok(())
    } else if errors.iter().any(|e| e.contains("timed out")) {
        Err(ShutdownError::Timeout(timeout))
    } else {
        Err(ShutdownError::Export(errors.join("; ")))
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && let Err(e) = inner.shutdown()
        {
            // Logging is being shut down; standard error is what is left. Not `eprintln!`,
            // which panics when standard error is gone (a closed pipe), here in `Drop`.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "axi-obs: {e}");
        }
    }
}
