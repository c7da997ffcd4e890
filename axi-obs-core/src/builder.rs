//! [`TelemetryBuilder`]: configure in code, then `install`, `try_install` or `build`.

use std::num::NonZeroUsize;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use crate::config::{
    self, Compression, Env, Exporter, LogFile, LogFormat, OtlpSettings, Propagator, Protocol,
    Sampler, Settings,
};
use crate::error::{ConfigError, InitError};
use crate::export::{self, ExportRuntime, LogQueue, SpanQueue};
use crate::guard::{self, TelemetryGuard};
use crate::logs::{self, BoxedLayer};
use crate::metrics::{Info, MetricsHandle, MetricsRecorder, RecorderOptions};

static INSTALLED: AtomicBool = AtomicBool::new(false);
static GLOBAL_METRICS: OnceLock<MetricsHandle> = OnceLock::new();

/// The metrics handle of the telemetry installed in this process, if any.
///
/// `axi-obs-axum`'s `/metrics` route uses this when no handle is passed explicitly.
pub fn global_metrics() -> Option<MetricsHandle> {
    GLOBAL_METRICS.get().cloned()
}

/// OTLP settings for all signals ([`TelemetryBuilder::otlp`]) or for one
/// ([`TelemetryBuilder::traces`], [`logs`](TelemetryBuilder::logs),
/// [`metrics_export`](TelemetryBuilder::metrics_export)).
///
/// Every field left unset falls back to the environment, then to the default.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct OtlpConfig {
    inner: OtlpSettings,
}

impl OtlpConfig {
    /// Empty settings: everything comes from the environment or defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The endpoint URL. For [`TelemetryBuilder::otlp`] it is a base URL to which HTTP adds
    /// `/v1/traces` etc. (like `OTEL_EXPORTER_OTLP_ENDPOINT`); for one signal it is used as
    /// given (like `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). No default: without an endpoint, or
    /// an explicit [`Exporter::Otlp`], nothing is exported.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.inner.endpoint = Some(url.into());
        self
    }

    /// The wire protocol. Defaults to [`Protocol::HttpProtobuf`].
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.inner.protocol = Some(protocol);
        self
    }

    /// Adds a header (gRPC metadata) sent with every export, e.g. an API key. Overrides the
    /// same key from the environment.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.headers.push((name.into(), value.into()));
        self
    }

    /// Compression of request bodies: [`Compression::Gzip`] or none (the default, or
    /// `OTEL_EXPORTER_OTLP_COMPRESSION`).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.inner.compression = Some(compression);
        self
    }

    /// Timeout of one export, retries included. Defaults to 10 s; zero or more than a year is
    /// an error at `build`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.inner.timeout = Some(timeout);
        self
    }

    /// Turns export on ([`Exporter::Otlp`], to the default endpoint if none is set) or off.
    pub fn exporter(mut self, exporter: Exporter) -> Self {
        self.inner.exporter = Some(exporter);
        self
    }
}

/// Builds telemetry: logs, traces and metrics from one configuration.
///
/// Every setter documents its default. Values set here win over environment variables (see
/// the [crate documentation](crate#configuration) for the table). Finish with
/// [`install`](Self::install) (sets the process globals, panics on error),
/// [`try_install`](Self::try_install) (the same, returning an error) or
/// [`build`](Self::build) (sets nothing global).
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct TelemetryBuilder {
    s: Settings,
}

impl TelemetryBuilder {
    /// `service.name`. Defaults to `OTEL_SERVICE_NAME`, then `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`, then `unknown_service:<executable>`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.s.service_name = Some(name.into());
        self
    }

    /// `service.name` used only when neither `OTEL_SERVICE_NAME` nor `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES` is set: a default that deployments can override (binaries
    /// pass their crate name here). Loses to [`service_name`](Self::service_name).
    pub fn default_service_name(mut self, name: impl Into<String>) -> Self {
        self.s.default_service_name = Some(name.into());
        self
    }

    /// `service.version`. Defaults to `OTEL_RESOURCE_ATTRIBUTES`, else unset.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.s.service_version = Some(version.into());
        self
    }

    /// `service.namespace` (a team or product grouping). Defaults to unset.
    pub fn service_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.s.service_namespace = Some(namespace.into());
        self
    }

    /// `service.instance.id`. Defaults to unset.
    pub fn service_instance_id(mut self, id: impl Into<String>) -> Self {
        self.s.service_instance_id = Some(id.into());
        self
    }

    /// `deployment.environment.name` (`production`, `staging` ...). Defaults to unset.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.s.environment = Some(environment.into());
        self
    }

    /// Adds a resource attribute; wins over the same key from `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.s.resource_attributes.push((key.into(), value.into()));
        self
    }

    /// The source revision (git sha) shown in `service_build_info`. Defaults to unset.
    pub fn vcs_revision(mut self, revision: impl Into<String>) -> Self {
        self.s.vcs_revision = Some(revision.into());
        self
    }

    /// Local log format. Defaults to `AXI_LOG_FORMAT`, else [`LogFormat::Compact`] on a
    /// terminal and [`LogFormat::Json`] otherwise (always JSON for a log file).
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.s.log_format = Some(format);
        self
    }

    /// Log filter in `EnvFilter` syntax (`info,my_crate=debug`); wins over `RUST_LOG`.
    /// To let `RUST_LOG` override your default, use
    /// [`default_log_filter`](Self::default_log_filter).
    pub fn log_filter(mut self, directives: impl Into<String>) -> Self {
        self.s.log_filter = Some(directives.into());
        self
    }

    /// Log filter used when neither [`log_filter`](Self::log_filter) nor `RUST_LOG` is set.
    /// Defaults to `info`.
    pub fn default_log_filter(mut self, directives: impl Into<String>) -> Self {
        self.s.default_log_filter = Some(directives.into());
        self
    }

    /// Write logs to a rotating file instead of standard output. Defaults to `AXI_LOG_FILE`
    /// (daily rotation, 7 files kept), else standard output.
    pub fn log_file(mut self, file: LogFile) -> Self {
        self.s.log_file = Some(file);
        self
    }

    /// Bound of the local log buffer, in lines; beyond it lines are dropped and counted.
    /// Defaults to 65,536.
    pub fn log_buffer_lines(mut self, lines: NonZeroUsize) -> Self {
        self.s.log_buffer_lines = Some(lines.get());
        self
    }

    /// Write local log lines to `writer` (through the same bounded background writer) instead
    /// of standard output or a log file; e.g. `std::io::stderr()`, or `std::io::sink()` to
    /// keep only OTLP logs.
    pub fn log_writer(mut self, writer: impl std::io::Write + Send + 'static) -> Self {
        self.s.log_writer = Some(config::WriterSlot(std::sync::Arc::new(
            std::sync::Mutex::new(Some(Box::new(writer))),
        )));
        self
    }

    /// OTLP settings for every signal. See [`OtlpConfig`].
    pub fn otlp(mut self, config: OtlpConfig) -> Self {
        self.s.otlp = config.inner;
        self
    }

    /// OTLP settings for traces only; win over [`otlp`](Self::otlp).
    pub fn traces(mut self, config: OtlpConfig) -> Self {
        self.s.traces = config.inner;
        self
    }

    /// OTLP settings for logs only; win over [`otlp`](Self::otlp).
    pub fn logs(mut self, config: OtlpConfig) -> Self {
        self.s.logs = config.inner;
        self
    }

    /// OTLP settings for the metric push only; win over [`otlp`](Self::otlp). The Prometheus
    /// rendering is always available regardless.
    pub fn metrics_export(mut self, config: OtlpConfig) -> Self {
        self.s.metrics = config.inner;
        self
    }

    /// The root sampler. Defaults to `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, else
    /// `ParentBased(AlwaysOn)`.
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.s.sampler = Some(sampler);
        self
    }

    /// Context propagators. Defaults to `OTEL_PROPAGATORS`, else trace context and baggage.
    pub fn propagators(mut self, propagators: impl IntoIterator<Item = Propagator>) -> Self {
        self.s.propagators = Some(propagators.into_iter().collect());
        self
    }

    /// Turns every OpenTelemetry export off (`true`) or on regardless of `OTEL_SDK_DISABLED`.
    /// Local logs and Prometheus metrics keep working. Defaults to `OTEL_SDK_DISABLED`, else
    /// `false`.
    pub fn sdk_disabled(mut self, disabled: bool) -> Self {
        self.s.sdk_disabled = Some(disabled);
        self
    }

    /// OTLP metric push interval. Defaults to `OTEL_METRIC_EXPORT_INTERVAL`, else 60 s; zero
    /// or more than a year is an error at `build`.
    pub fn metric_export_interval(mut self, interval: Duration) -> Self {
        self.s.metric_export_interval = Some(interval);
        self
    }

    /// Most label sets one metric may hold before further ones fold into its overflow series.
    /// Defaults to 2000.
    pub fn series_cap(mut self, cap: NonZeroUsize) -> Self {
        self.s.series_cap = Some(cap.get());
        self
    }

    /// Whether to render the `process_*` metrics. Defaults to `true`.
    pub fn process_metrics(mut self, enabled: bool) -> Self {
        self.s.process_metrics = Some(enabled);
        self
    }

    /// Explicit bucket bounds for the histogram recorded as `name` (strictly increasing,
    /// finite; `+Inf` is implicit). Defaults: the semantic-convention duration bounds
    /// `0.005 … 10` for seconds, the OpenTelemetry default bounds otherwise.
    pub fn histogram_buckets(
        mut self,
        name: impl Into<String>,
        bounds: impl Into<Vec<f64>>,
    ) -> Self {
        self.s.histogram_buckets.push((name.into(), bounds.into()));
        self
    }

    /// Bound of each OTLP export queue (spans, log records); beyond it items are dropped and
    /// counted. Defaults to 2048; more than 16,777,216 is an error at `build`.
    pub fn export_queue_size(mut self, items: NonZeroUsize) -> Self {
        self.s.queue_size = Some(items.get());
        self
    }

    /// Deadline for flushing and shutting down. Defaults to 5 s; more than a year is an
    /// error at `build`.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.s.shutdown_timeout = Some(timeout);
        self
    }

    /// Where environment variables are read from. Defaults to [`Env::process`]; tests use
    /// [`Env::from_pairs`] or [`Env::empty`].
    pub fn env(mut self, env: Env) -> Self {
        self.s.env = env;
        self
    }

    /// Builds everything without touching any process global: no global subscriber, recorder,
    /// tracer provider or propagator is set. Export threads start only for configured
    /// endpoints.
    ///
    /// # Errors
    ///
    /// [`InitError::Config`] for an invalid value set in code, naming the method and the value
    /// (an environment variable whose value cannot be used is ignored: see
    /// [`Telemetry::env_warnings`]); [`InitError::LogFile`] if the log file cannot be written;
    /// [`InitError::Runtime`] if a thread cannot start.
    pub fn build(self) -> Result<Telemetry, InitError> {
        let r = config::resolve(&self.s)?;

        let recorder = MetricsRecorder::new(RecorderOptions {
            series_cap: r.series_cap,
            histogram_buckets: r.histogram_buckets.clone(),
            info: Info {
                resource: r.resource.clone(),
                vcs_revision: r.vcs_revision.clone(),
                process: r.process_metrics,
            },
        });

        let local = logs::local(&r, crate::internal::log_lines_dropped(&recorder))?;

        let runtime = if r.traces.is_some() || r.logs.is_some() || r.metrics.is_some() {
            Some(ExportRuntime::start().map_err(InitError::Runtime)?)
        } else {
            None
        };
        let transport = |target: &config::OtlpTarget| {
            // Only reached with a runtime: a target implies one was started.
            let rt = runtime.as_ref().ok_or_else(|| {
                InitError::Runtime(std::io::Error::other("export runtime missing"))
            })?;
            export::transport(rt, target).map_err(|e| {
                InitError::Config(ConfigError::new(
                    target.endpoint_source.clone(),
                    config::redact_userinfo(&target.endpoint),
                    e.to_string(),
                ))
            })
        };

        // Spans exist (and carry W3C ids into logs and outgoing requests) whenever the SDK is
        // enabled; they are exported only when a traces endpoint is configured.
        let mut controls = Vec::new();
        let span_queue = match (&r.traces, &runtime) {
            (Some(target), Some(rt)) => {
                let t = transport(target)?;
                let q = SpanQueue::start(rt, t, &r.resource, &r, Some(&recorder));
                controls.push(q.control());
                Some(q)
            }
            _ => None,
        };
        // Without a traces exporter and without an explicit sampler, new root traces are not
        // sampled (nothing would receive them): spans still carry ids for logs, and a caller's
        // sampled flag is still honoured and propagated, but nothing is recorded for nobody.
        let sampler = if span_queue.is_none() && !r.sampler_explicit {
            Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
        } else {
            r.sampler.clone()
        };
        let tracer_provider: Option<SdkTracerProvider> = (!r.sdk_disabled)
            .then(|| crate::traces::provider(&sampler, &r.resource, r.span_limits, span_queue));
        let logger_provider: Option<SdkLoggerProvider> = match (&r.logs, &runtime) {
            (Some(target), Some(rt)) => {
                let t = transport(target)?;
                let q = LogQueue::start(rt, t, &r.resource, &r, Some(&recorder));
                controls.push(q.control());
                Some(
                    SdkLoggerProvider::builder()
                        .with_resource(crate::traces::sdk_resource(&r.resource))
                        .with_log_processor(q)
                        .build(),
                )
            }
            _ => None,
        };
        if let (Some(target), Some(rt)) = (&r.metrics, &runtime) {
            let t = transport(target)?;
            controls.push(export::metrics::start(
                rt.handle(),
                t,
                recorder.handle(),
                r.resource.clone(),
                r.metric_export_interval,
                export::metric_counters(&recorder),
            ));
        }

        let mut layers: Vec<BoxedLayer> = vec![local.layer];
        if let Some(p) = &tracer_provider {
            let tracer = p.tracer("axi-obs");
            layers.push(Box::new(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(logs::not_export_feedback()),
            ));
        }
        if let Some(p) = &logger_provider {
            layers.push(Box::new(
                // An event from a thread-local's `Drop` must not abort through the SDK's
                // context read (see `Teardown`).
                logs::Teardown(OpenTelemetryTracingBridge::new(p))
                    .with_filter(logs::not_export_feedback()),
            ));
        }
        let layer: BoxedLayer = Box::new(layers.with_filter(logs::log_filter(&r.log_filter)));

        let propagator = crate::traces::propagator(&r.propagators);
        let guard = TelemetryGuard::new(guard::Inner {
            tracer_provider: tracer_provider.clone(),
            logger_provider: logger_provider.clone(),
            exports: controls,
            runtime,
            writer: Some(local.worker),
            timeout: r.shutdown_timeout,
        });
        Ok(Telemetry {
            layer,
            recorder,
            propagator,
            tracer_provider,
            logger_provider,
            guard,
            env_warnings: r.env_warnings,
        })
    }

    /// Builds and installs as the process globals: the `tracing` subscriber (and the `log`
    /// bridge), the `metrics` recorder, the OpenTelemetry tracer provider and propagator.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), plus [`InitError::AlreadyInstalled`] when telemetry (or
    /// another global subscriber or recorder) is already installed in this process.
    pub fn try_install(self) -> Result<TelemetryGuard, InitError> {
        if INSTALLED.swap(true, Ordering::SeqCst) {
            return Err(InitError::AlreadyInstalled("axi-obs telemetry"));
        }
        let result = self.build().and_then(Telemetry::install);
        if result.is_err() {
            INSTALLED.store(false, Ordering::SeqCst);
        }
        result
    }

    /// Like [`try_install`](Self::try_install), panicking with the error's message on failure
    /// (as `tracing_subscriber`'s `init` does). Use it at the top of `main`.
    ///
    /// # Panics
    ///
    /// If a value set in code is invalid, the log file cannot be opened, or telemetry is already
    /// installed. An environment value that cannot be used is logged and ignored instead.
    pub fn install(self) -> TelemetryGuard {
        match self.try_install() {
            Ok(guard) => guard,
            Err(e) => panic!(
                "axi-obs: cannot install telemetry: {}",
                crate::error_chain(&e)
            ),
        }
    }
}

/// The parts built by [`TelemetryBuilder::build`], for composing your own subscriber or for
/// tests. Nothing here is global until you make it so.
///
/// ```
/// use axi_obs_core::{Env, Telemetry};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let parts = Telemetry::builder().env(Env::empty()).build()?;
/// let metrics = parts.recorder.handle();
/// let subscriber = tracing_subscriber::registry().with(parts.layer);
/// tracing::subscriber::with_default(subscriber, || {
///     metrics::with_local_recorder(&parts.recorder, || {
///         metrics::counter!("jobs_total").increment(1);
///         tracing::info!("job done");
///     });
/// });
/// assert!(metrics.render().contains("jobs_total 1"));
/// # Ok::<(), axi_obs_core::InitError>(())
/// ```
#[non_exhaustive]
pub struct Telemetry {
    /// Every tracing layer (local output, spans, OTLP logs) with the log filter, for
    /// `tracing_subscriber::registry().with(layer)`.
    pub layer: BoxedLayer,
    /// The metrics recorder (`metrics::set_global_recorder` or `with_local_recorder`).
    pub recorder: MetricsRecorder,
    /// The configured W3C propagators.
    pub propagator: TextMapCompositePropagator,
    /// The tracer provider; `None` only when the SDK is disabled. Spans are exported only
    /// when a traces endpoint is configured, but always get W3C ids (for logs and propagation).
    pub tracer_provider: Option<SdkTracerProvider>,
    /// The logger provider, when logs are exported.
    pub logger_provider: Option<SdkLoggerProvider>,
    /// Flushes and shuts everything down.
    pub guard: TelemetryGuard,
    /// The environment variables that were ignored because their values could not be used
    /// (each naming the variable, its value and why), as the OpenTelemetry specification
    /// asks: a bad `OTEL_*` value does not stop the service. `install` logs each as a
    /// warning once the subscriber is set; with `build`, log them yourself.
    pub env_warnings: Vec<ConfigError>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("recorder", &self.recorder)
            .field("tracer_provider", &self.tracer_provider.is_some())
            .field("logger_provider", &self.logger_provider.is_some())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Starts a builder. See [`TelemetryBuilder`].
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }

    /// A handle to render `/metrics`.
    pub fn metrics(&self) -> MetricsHandle {
        self.recorder.handle()
    }

    fn install(self) -> Result<TelemetryGuard, InitError> {
        let handle = self.recorder.handle();
        // The recorder first: if it fails nothing irreversible has happened. If the subscriber
        // then fails, the recorder installed is ours and keeps working without the guard.
        metrics::set_global_recorder(self.recorder)
            .map_err(|_| InitError::AlreadyInstalled("another global metrics recorder is set"))?;
        let subscriber = tracing_subscriber::registry().with(self.layer);
        tracing::subscriber::set_global_default(subscriber)
            .map_err(|_| InitError::AlreadyInstalled("another global tracing subscriber is set"))?;
        // Route `log` records into tracing; another logger may already own `log`.
        let _ = tracing_log::LogTracer::init();
        for w in &self.env_warnings {
            tracing::warn!(
                setting = %w.setting,
                value = %w.value,
                reason = %w.reason,
                "axi-obs: environment variable ignored: its value cannot be used"
            );
        }
        if let Some(p) = self.tracer_provider {
            opentelemetry::global::set_tracer_provider(p);
        }
        opentelemetry::global::set_text_map_propagator(self.propagator);
        let _ = GLOBAL_METRICS.set(handle);
        Ok(self.guard)
    }
}

/// Installs telemetry configured entirely from the environment (see the
/// [configuration table](crate#configuration)).
///
/// # Panics
///
/// If telemetry is already installed (an environment value that cannot be used is ignored
/// with a warning, not a panic); use
/// [`try_init`] to handle that.
pub fn init() -> TelemetryGuard {
    Telemetry::builder().install()
}

/// Like [`init`], returning the error instead of panicking.
///
/// # Errors
///
/// As [`TelemetryBuilder::try_install`].
pub fn try_init() -> Result<TelemetryGuard, InitError> {
    Telemetry::builder().try_install()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_sets_no_global_and_starts_no_export_thread_without_endpoints() {
        let t = Telemetry::builder().env(Env::empty()).build().unwrap();
        assert!(t.logger_provider.is_none());
        let disabled = Telemetry::builder()
            .env(Env::from_pairs([("OTEL_SDK_DISABLED", "true")]))
            .build()
            .unwrap();
        assert!(disabled.tracer_provider.is_none());
        assert!(tracing::dispatcher::get_default(|d| {
            d.is::<tracing::subscriber::NoSubscriber>()
        }));
        assert!(global_metrics().is_none());
    }

    #[test]
    fn bad_configuration_is_an_error_not_a_panic() {
        // From code: an error naming the method.
        let e = Telemetry::builder()
            .env(Env::empty())
            .shutdown_timeout(Duration::MAX)
            .build()
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("shutdown_timeout"), "{msg}");
        // From the environment: ignored, and said.
        let t = Telemetry::builder()
            .env(Env::from_pairs([
                (config::OTEL_EXPORTER_OTLP_PROTOCOL, "carrier-pigeon"),
                (config::OTEL_EXPORTER_OTLP_ENDPOINT, "http://localhost:1"),
            ]))
            .build()
            .unwrap();
        let msg = t.env_warnings[0].to_string();
        assert!(
            msg.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && msg.contains("carrier-pigeon"),
            "{msg}"
        );
        assert!(t.tracer_provider.is_some());
    }
}
