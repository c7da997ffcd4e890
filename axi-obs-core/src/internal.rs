//! Self-telemetry: what axi-obs drops or fails to export is counted on `/metrics` and reported
//! in rate-limited log lines.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `axi_obs_export_items_total` | `signal` (traces, logs, metrics), `outcome` (exported, failed, dropped) | items handed to OTLP: sent, lost in a failed export or refused by the collector (partial success), or dropped because the bounded queue was full |
//! | `axi_obs_log_lines_dropped_total` | | local log lines dropped because the writer's bounded buffer was full |
//! | `axi_obs_metric_series_overflow_total` | `metric` | handles given out for label sets beyond a metric's cap, which record into its overflow series (with the `metrics` macros, one per call) |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Key, Label};

use crate::config::Signal;
use crate::metrics::MetricsRecorder;

/// Items handed to an OTLP exporter, by `signal` and `outcome`.
pub const EXPORT_ITEMS_METRIC: &str = "axi_obs_export_items_total";
/// Local log lines dropped because the writer's buffer was full.
pub const LOG_LINES_DROPPED_METRIC: &str = "axi_obs_log_lines_dropped_total";

pub(crate) fn describe_all(rec: &MetricsRecorder) {
    rec.describe(
        EXPORT_ITEMS_METRIC,
        None,
        "Telemetry items handed to OTLP export, by signal and outcome (exported, failed, dropped)",
    );
    rec.describe(
        LOG_LINES_DROPPED_METRIC,
        None,
        "Log lines dropped because the log writer's bounded buffer was full",
    );
}

/// Allows an action at most once per interval, across threads, without locks.
#[derive(Debug)]
pub(crate) struct RateLimit {
    interval_ms: u64,
    /// Milliseconds since [`anchor`] of the last allowed action, plus one (0: never).
    last: AtomicU64,
}

fn anchor() -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    *ANCHOR.get_or_init(Instant::now)
}

impl RateLimit {
    pub(crate) fn every_secs(secs: u64) -> Self {
        Self::every(Duration::from_secs(secs))
    }

    pub(crate) fn every(interval: Duration) -> Self {
        let _ = anchor();
        Self {
            interval_ms: interval.as_millis() as u64,
            last: AtomicU64::new(0),
        }
    }

    /// True if the caller may act now (and records that it did).
    pub(crate) fn allow(&self) -> bool {
        let now = anchor().elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.interval_ms {
            return false;
        }
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// Counters for one signal's export pipeline.
#[derive(Clone, Debug)]
pub(crate) struct ExportCounters {
    pub(crate) signal: Signal,
    pub(crate) exported: Arc<AtomicU64>,
    pub(crate) failed: Arc<AtomicU64>,
    pub(crate) dropped: Arc<AtomicU64>,
}

impl ExportCounters {
    pub(crate) fn new(rec: &MetricsRecorder, signal: Signal) -> Self {
        let counter = |outcome: &'static str| {
            rec.internal_counter(&Key::from_parts(
                EXPORT_ITEMS_METRIC,
                vec![
                    Label::new("signal", signal.as_str()),
                    Label::new("outcome", outcome),
                ],
            ))
        };
        Self {
            signal,
            exported: counter("exported"),
            failed: counter("failed"),
            dropped: counter("dropped"),
        }
    }

    /// Counters that are not registered anywhere (exports built without a recorder).
    pub(crate) fn detached(signal: Signal) -> Self {
        Self {
            signal,
            exported: Arc::default(),
            failed: Arc::default(),
            dropped: Arc::default(),
        }
    }
}

/// The log-writer drop counter, registered in the recorder.
pub(crate) fn log_lines_dropped(rec: &MetricsRecorder) -> Arc<AtomicU64> {
    rec.internal_counter(&Key::from_name(LOG_LINES_DROPPED_METRIC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_once_per_interval() {
        let r = RateLimit::every(Duration::from_secs(3600));
        assert!(r.allow());
        assert!(!r.allow());
        let r = RateLimit::every(Duration::ZERO);
        assert!(r.allow());
        assert!(r.allow());
    }
}
