//! Capture metrics, spans and log lines inside one test, without touching process globals.
//!
//! ```
//! use axi_obs_core::testing::Capture;
//!
//! let cap = Capture::new();
//! cap.run(|| {
//!     let span = tracing::info_span!("checkout", order_id = 7);
//!     let _g = span.enter();
//!     tracing::info!(amount = 5, "paid");
//!     metrics::counter!("payments_total").increment(1);
//! });
//! assert_eq!(cap.spans()[0].name, "checkout");
//! let line = &cap.logs()[0];
//! assert_eq!(line["message"], "paid");
//! assert_eq!(line["trace.id"], cap.spans()[0].span_context.trace_id().to_string());
//! assert_eq!(cap.metrics().family("payments_total").unwrap().series[0].value.as_counter(), Some(1));
//! ```
//!
//! Tests run in parallel threads; each `Capture` sees only what runs inside its own
//! [`run`](Capture::run) (the subscriber and recorder are thread-scoped defaults).

mod otlp;
mod pki;

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use crate::logs::JsonLayer;
use crate::metrics::{Info, MetricsHandle, MetricsRecorder, RecorderOptions, Snapshot};

pub use opentelemetry_sdk::trace::SpanData as CapturedSpan;
pub use otlp::{
    OtlpReceiver, ReceivedLog, ReceivedMetric, ReceivedSpan, attr, hex, proto, value_string,
};
pub use pki::TestPki;

/// Collects what code under test emits. See the [module documentation](self).
#[derive(Debug)]
pub struct Capture {
    recorder: MetricsRecorder,
    spans: Arc<Mutex<Vec<SpanData>>>,
    logs: Buffer,
    dispatch: tracing::Dispatch,
    provider: SdkTracerProvider,
}

#[derive(Clone, Debug, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[derive(Debug)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanProcessor for Collect {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
    fn on_end(&self, span: SpanData) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

impl Default for Capture {
    fn default() -> Self {
        Self::new()
    }
}

impl Capture {
    /// A capture with every span recorded (`AlwaysOn`), `trace` level logs, and a recorder
    /// with the default series cap and no process metrics.
    pub fn new() -> Self {
        let recorder = MetricsRecorder::new(RecorderOptions {
            series_cap: crate::config::DEFAULT_SERIES_CAP,
            histogram_buckets: Vec::new(),
            info: Info::default(),
        });
        let spans = Arc::new(Mutex::new(Vec::new()));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Collect(spans.clone()))
            .build();
        let logs = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(JsonLayer::new(logs.clone(), [("service.name", "test")]))
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("axi-obs-test"))
                    .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
            );
        Self {
            recorder,
            spans,
            logs,
            dispatch: tracing::Dispatch::new(subscriber),
            provider,
        }
    }

    /// Runs `f` with this capture as the thread's tracing subscriber and metrics recorder.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, || {
            metrics::with_local_recorder(&self.recorder, f)
        })
    }

    /// The tracing dispatcher, for `WithSubscriber::with_subscriber` on futures.
    pub fn dispatch(&self) -> tracing::Dispatch {
        self.dispatch.clone()
    }

    /// The tracer provider whose spans this capture collects, for code that creates
    /// OpenTelemetry spans directly (the axum layer's server span).
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// The recorder, for code that takes explicit handles or `with_local_recorder`.
    pub fn recorder(&self) -> &MetricsRecorder {
        &self.recorder
    }

    /// A render handle for the captured metrics.
    pub fn metrics_handle(&self) -> MetricsHandle {
        self.recorder.handle()
    }

    /// A snapshot of the metrics recorded so far.
    pub fn metrics(&self) -> Snapshot {
        self.recorder.handle().snapshot()
    }

    /// The spans ended so far, in end order.
    pub fn spans(&self) -> Vec<CapturedSpan> {
        let _ = self.provider.force_flush();
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The log lines written so far, parsed as JSON objects.
    ///
    /// # Panics
    ///
    /// If a line is not valid JSON (which would be a bug in the JSON layer).
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .map(|l| match serde_json::from_str(l) {
                Ok(v) => v,
                Err(e) => panic!("log line is not JSON ({e}): {l}"),
            })
            .collect()
    }

    /// The raw log output.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.logs.0.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }
}

/// Environment variable naming the folder that holds the peer binaries tests run against
/// (`prometheus`, `promtool`, ...); set by `scripts/install-peers.sh`.
pub const PEERS_BIN_ENV: &str = "AXI_PEERS_BIN";
/// Environment variable that, set to `1`, makes a missing peer a test failure instead of a skip.
pub const REQUIRE_PEERS_ENV: &str = "AXI_REQUIRE_PEERS";

/// Locates the external tool `name` a test runs against, in `$AXI_PEERS_BIN`, then `PATH`.
///
/// When it is missing: with `AXI_REQUIRE_PEERS=1` (as `scripts/test.sh` and CI set it) this
/// panics; otherwise it prints a notice and returns `None`, so the test can skip.
///
/// # Panics
///
/// If the tool is missing and peers are required.
pub fn peer(name: &str) -> Option<std::path::PathBuf> {
    let dirs = std::env::var_os(PEERS_BIN_ENV)
        .into_iter()
        .chain(std::env::var_os("PATH"))
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    if std::env::var(REQUIRE_PEERS_ENV).as_deref() == Ok("1") {
        panic!(
            "peer `{name}` not found in ${PEERS_BIN_ENV} or PATH, and {REQUIRE_PEERS_ENV}=1; \
             run scripts/install-peers.sh"
        );
    }
    eprintln!(
        "SKIPPED: peer `{name}` not found (set {PEERS_BIN_ENV}, or run scripts/test.sh, which \
         installs it)"
    );
    None
}
