//! [`ObsLayer`]: the configuration, and the tower `Layer`.

use std::sync::{Arc, OnceLock};

use axi_obs_core::MetricsRecorder;
use http::HeaderName;
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::TracerProvider;

use super::instruments::{CustomLabels, Instruments, Naming, Sink};
use super::methods::{KnownMethods, env_known_methods, known_methods};
use super::route_table::RouteTable;
use super::service::Obs;
use crate::request_id::RequestIdConfig;

/// Observes every request of an axum `Router`: HTTP metrics, a server span, a request id and an
/// access-log line. See the [crate documentation](crate) for what is recorded and where to put
/// the layer.
///
/// Every setter documents its default. Cheap to clone (an `Arc`).
#[derive(Clone, Debug)]
#[must_use]
pub struct ObsLayer {
    pub(crate) config: Arc<Config>,
}

/// The resolved configuration shared by every request.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Times requests (see the `clock` module).
    pub(crate) clock: quanta::Clock,
    pub(crate) instruments: Instruments,
    /// Interned route labels and span names.
    pub(crate) routes: RouteTable,
    pub(crate) tracer: TracerSource,
    pub(crate) metrics: bool,
    pub(crate) spans: bool,
    pub(crate) access_log: bool,
    pub(crate) level: tracing::Level,
    pub(crate) client_error_level: tracing::Level,
    pub(crate) server_error_level: tracing::Level,
    pub(crate) success_sample: f64,
    pub(crate) request_id: RequestIdConfig,
    pub(crate) excluded: Vec<String>,
    pub(crate) trust_forwarded: bool,
    /// The service terminates TLS itself: a request without a scheme is `https`.
    pub(crate) tls: bool,
    /// How many proxies append to the forwarded headers (at least 1).
    pub(crate) forwarded_hops: usize,
    pub(crate) traceparent_response: bool,
    pub(crate) log_query: bool,
    pub(crate) span_query: bool,
    pub(crate) sampler_attributes: bool,
    pub(crate) custom: Option<Arc<CustomLabels>>,
    /// A known-methods override (`None`: the default list).
    pub(crate) known_methods: Option<KnownMethods>,
}

/// Where server spans come from: the global tracer provider (resolved at the first request, so
/// telemetry may be installed after the layer is built), or an explicit one.
#[derive(Clone)]
pub(crate) enum TracerSource {
    Global(Arc<OnceLock<BoxedTracer>>),
    Explicit(Arc<BoxedTracer>),
}

impl std::fmt::Debug for TracerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TracerSource::Global(_) => "TracerSource::Global",
            TracerSource::Explicit(_) => "TracerSource::Explicit",
        })
    }
}

fn scope() -> opentelemetry::InstrumentationScope {
    opentelemetry::InstrumentationScope::builder("axi-obs-axum")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

impl TracerSource {
    pub(crate) fn tracer(&self) -> &BoxedTracer {
        match self {
            TracerSource::Global(cell) => {
                cell.get_or_init(|| opentelemetry::global::tracer_with_scope(scope()))
            }
            TracerSource::Explicit(t) => t,
        }
    }
}

/// Paths excluded from metrics, spans and access logs by default.
pub const DEFAULT_EXCLUDED: &[&str] = &["/metrics", "/healthz", "/readyz"];

impl Default for ObsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ObsLayer {
    /// Everything on: metrics to the global recorder with OpenTelemetry names, server spans,
    /// `x-request-id`, an access-log line per request; `/metrics`, `/healthz`, `/readyz`
    /// excluded.
    ///
    /// The first layer built in a process calibrates the clock requests are timed with (the
    /// CPU's time-stamp counter against the OS clock: under a millisecond on most machines, at
    /// most 200 ms), so that no request waits for it.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                clock: quanta::Clock::new(),
                instruments: Instruments::new(Sink::Global, Naming::OpenTelemetry, false),
                routes: RouteTable::default(),
                tracer: TracerSource::Global(Arc::default()),
                metrics: true,
                spans: true,
                access_log: true,
                level: tracing::Level::INFO,
                client_error_level: tracing::Level::INFO,
                server_error_level: tracing::Level::ERROR,
                success_sample: 1.0,
                request_id: RequestIdConfig::default(),
                excluded: DEFAULT_EXCLUDED.iter().map(|s| (*s).to_owned()).collect(),
                trust_forwarded: false,
                tls: false,
                forwarded_hops: 1,
                traceparent_response: false,
                log_query: false,
                span_query: true,
                sampler_attributes: false,
                custom: None,
                known_methods: env_known_methods().cloned(),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Records into `recorder` instead of the global `metrics` recorder (tests, or several
    /// registries in one process). Defaults to the global recorder.
    pub fn recorder(self, recorder: MetricsRecorder) -> Self {
        self.edit(|c| {
            c.instruments = Instruments::new(
                Sink::Explicit(recorder),
                c.instruments.naming,
                c.instruments.body_sizes,
            )
        })
    }

    /// Creates server spans with `provider` instead of the global tracer provider (tests, or
    /// several providers in one process). Defaults to the global provider, which
    /// `axi_obs_core`'s `install()` sets.
    pub fn tracer_provider<P>(self, provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as opentelemetry::trace::Tracer>::Span: Send + Sync + 'static,
    {
        let tracer = BoxedTracer::new(Box::new(provider.tracer_with_scope(scope())));
        self.edit(|c| c.tracer = TracerSource::Explicit(Arc::new(tracer)))
    }

    /// Metric names: [`Naming::OpenTelemetry`] (default) or [`Naming::AxumPrometheus`].
    pub fn naming(self, naming: Naming) -> Self {
        self.edit(|c| {
            c.instruments =
                Instruments::new(c.instruments.sink.clone(), naming, c.instruments.body_sizes)
        })
    }

    /// Records `http.server.request.body.size` and `http.server.response.body.size`, with the
    /// duration's labels. Sizes come from `Content-Length` or an exact body size; a response
    /// streamed without either is counted as it is sent and recorded when it ends (or when the
    /// client goes away: the bytes sent until then), which costs one allocation for such
    /// responses. A request body of unknown size (chunked, or HTTP/2 without
    /// `Content-Length`) is counted as the handler reads it, and what it has read when the
    /// response is recorded is its size (0 when the handler never reads it; under
    /// `Router::layer`, where the body is axum's `Body`). Both histograms of a label set exist from its first request. With
    /// [`Naming::OpenTelemetry`] only (axum-prometheus has no such metrics). Defaults to off
    /// (opt-in in the conventions).
    pub fn body_size_metrics(self, on: bool) -> Self {
        self.edit(|c| {
            c.instruments = Instruments::new(c.instruments.sink.clone(), c.instruments.naming, on)
        })
    }

    /// Records metrics at all. Defaults to on.
    pub fn metrics(self, on: bool) -> Self {
        self.edit(|c| c.metrics = on)
    }

    /// Creates an OpenTelemetry server span per request (sampled by the tracer provider's
    /// sampler; a sampled-out span costs an id and a context, nothing more). Defaults to on.
    pub fn spans(self, on: bool) -> Self {
        self.edit(|c| c.spans = on)
    }

    /// Emits one access-log event per request (target `axi_obs_axum::access`). Defaults to on.
    pub fn access_log(self, on: bool) -> Self {
        self.edit(|c| c.access_log = on)
    }

    /// Level of access-log events for 1xx–3xx responses. Defaults to INFO.
    pub fn access_log_level(self, level: tracing::Level) -> Self {
        self.edit(|c| c.level = level)
    }

    /// Level for 4xx responses. Defaults to INFO.
    pub fn client_error_level(self, level: tracing::Level) -> Self {
        self.edit(|c| c.client_error_level = level)
    }

    /// Level for 5xx responses and panics. Defaults to ERROR.
    pub fn server_error_level(self, level: tracing::Level) -> Self {
        self.edit(|c| c.server_error_level = level)
    }

    /// Logs only this fraction (0..=1) of successful (1xx–3xx) requests; errors are always
    /// logged. Defaults to 1 (all).
    pub fn sample_successes(self, ratio: f64) -> Self {
        self.edit(|c| c.success_sample = ratio.clamp(0.0, 1.0))
    }

    /// The request-id header. Defaults to `x-request-id`.
    pub fn request_id_header(self, header: HeaderName) -> Self {
        self.edit(|c| c.request_id.header = header)
    }

    /// Also puts the [`RequestId`](crate::RequestId) into each request's extensions, for code
    /// that reads `Extension<RequestId>` or `request.extensions()`, and for services inside the
    /// layer that move the request to a task of their own (tower's `Buffer`). Defaults to off:
    /// the `RequestId` extractor and [`RequestId::current`](crate::RequestId::current) find the
    /// id without it, and the entry costs about 0.1 µs a request (axum's extension map already
    /// holds three entries when the layer runs, so the fourth grows it).
    pub fn request_id_extension(self, on: bool) -> Self {
        self.edit(|c| c.request_id.extension = on)
    }

    /// Longest incoming request id accepted (longer ones are replaced). Defaults to 128.
    pub fn request_id_max_len(self, len: usize) -> Self {
        self.edit(|c| c.request_id.max_len = len.max(1))
    }

    /// Paths (exact, without query, as the client sent them) excluded from metrics, spans and
    /// logs. Defaults to `/metrics`, `/healthz`, `/readyz`; pass an empty list to observe
    /// everything. An excluded request passes through untouched: this layer gives it no request id
    /// (a handler there extracting [`RequestId`](crate::RequestId) is answered `500`, unless
    /// an outer `ObsLayer` observes the request), but a panic
    /// in its handler still becomes a `500`.
    pub fn exclude_paths<I, S>(self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let paths: Vec<String> = paths.into_iter().map(Into::into).collect();
        self.edit(|c| c.excluded = paths)
    }

    /// Trusts `X-Forwarded-For` / `X-Forwarded-Proto` / `X-Forwarded-Host` (else
    /// `Forwarded: for=` / `proto=` / `host=`) for the client address, the scheme and the
    /// span's `server.address`. The `X-Forwarded-*` headers win when both kinds are present: a
    /// proxy that sets them passes a client's own `Forwarded` through. Only turn on behind a
    /// proxy that sets them (nginx); otherwise clients can forge them. Defaults to off: the
    /// socket peer address is used.
    ///
    /// The entry used is the one your proxy added: the last one, or the
    /// [`forwarded_hops`](Self::forwarded_hops)-th from the end behind a chain of proxies.
    /// Entries further left are what the client sent (nginx's `$proxy_add_x_forwarded_for`
    /// appends the address it saw to them), so anyone can forge them. Addresses are logged
    /// without quotes, IPv6 brackets or ports.
    pub fn trust_forwarded_headers(self, on: bool) -> Self {
        self.edit(|c| c.trust_forwarded = on)
    }

    /// The service terminates TLS itself (axum-server with rustls, say): `url.scheme` is
    /// `https` for requests whose target carries no scheme, which is every HTTP/1.1 request
    /// (hyper fills it in from HTTP/2's `:scheme`, not for HTTP/1.1). Trusted forwarded
    /// headers still win. Defaults to off: such requests are `http`, right for a plain
    /// listener behind a proxy that terminates TLS.
    pub fn served_over_tls(self, on: bool) -> Self {
        self.edit(|c| c.tls = on)
    }

    /// How many proxies in front of the service append to the forwarded headers (a load
    /// balancer, then nginx: 2). The client is the `hops`-th entry from the end (the first
    /// entry when there are fewer). Only read with
    /// [`trust_forwarded_headers`](Self::trust_forwarded_headers). Defaults to 1; 0 counts
    /// as 1.
    pub fn forwarded_hops(self, hops: usize) -> Self {
        self.edit(|c| c.forwarded_hops = hops.max(1))
    }

    /// Adds a `traceparent` header to responses, so clients can find the trace. Defaults to
    /// off.
    pub fn traceparent_response(self, on: bool) -> Self {
        self.edit(|c| c.traceparent_response = on)
    }

    /// Logs the query string, with the values of credential-like keys redacted: every key
    /// containing (case-insensitive) `token`, `key`, `password`, `passwd`, `pwd`, `secret`,
    /// `signature`, `sig`, `auth`, `session`, `code`, `credential`, `jwt`, `bearer`, `cookie`,
    /// `private` or `otp`. Defaults to off.
    pub fn log_query(self, on: bool) -> Self {
        self.edit(|c| c.log_query = on)
    }

    /// Records the query string on server spans as `url.query` (semantic conventions require
    /// it when the request has one), with the values of the same credential-like keys as
    /// [`log_query`](Self::log_query) replaced by `REDACTED`; the keys stay. Defaults to on;
    /// off leaves queries out of spans entirely.
    pub fn span_query(self, on: bool) -> Self {
        self.edit(|c| c.span_query = on)
    }

    /// Gives the server span's request attributes (method, path, query, scheme, route,
    /// server address and port, client and peer address, user agent, request id) to the
    /// sampler, at span creation, as semantic conventions recommend, so that a sampler can
    /// decide by them (drop a noisy route, keep one tenant's host). Defaults to off: the
    /// attributes are then made only for spans that are recorded, and a sampled-out request
    /// pays nothing for them. The SDK's own samplers (`always_on`, `always_off`,
    /// `traceidratio`, `parentbased_*`) do not read attributes; turn this on for one that does.
    pub fn sampler_attributes(self, on: bool) -> Self {
        self.edit(|c| c.sampler_attributes = on)
    }

    /// The HTTP methods recorded as themselves in `http.request.method` (metrics, span
    /// attributes, span names); any other is `_OTHER`, with `http.request.method_original` on
    /// the span. A full override of the default list (`GET`, `HEAD`, `POST`, `PUT`,
    /// `DELETE`, `CONNECT`, `OPTIONS`, `TRACE`, `PATCH`, `QUERY`), as semantic conventions
    /// require, not an addition to it: a WebDAV service names the standard methods it serves
    /// and `PROPFIND`, `REPORT`... The list bounds the label's values.
    ///
    /// Defaults to [`OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`](crate::KNOWN_METHODS_ENV)
    /// when it is set (a comma-separated, case-sensitive list; a value with an entry that is
    /// not a method token is ignored with a warning), else the default list; the outbound
    /// `client::TracedClient` follows the variable too. A process keeps at most 32
    /// methods outside the default list; further ones stay `_OTHER` (with a warning).
    pub fn known_methods<I>(self, methods: I) -> Self
    where
        I: IntoIterator<Item = http::Method>,
    {
        let list = known_methods(methods);
        self.edit(|c| c.known_methods = Some(list))
    }

    /// Adds labels computed from the request (a tenant, say) to the duration metric. Each
    /// label key keeps at most `cap` distinct values; further values become `_other`.
    /// A panic in `hook` is caught and logged (at the 1st, 2nd, 4th, 8th... panic): the
    /// request is served and recorded as usual, without custom labels.
    pub fn custom_labels<F>(self, cap: usize, hook: F) -> Self
    where
        F: Fn(&crate::RequestView<'_>) -> Vec<(&'static str, String)> + Send + Sync + 'static,
    {
        self.edit(|c| c.custom = Some(Arc::new(CustomLabels::new(Box::new(hook), cap.max(1)))))
    }
}

impl<S> tower_layer::Layer<S> for ObsLayer {
    type Service = Obs<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Obs {
            inner,
            config: self.config.clone(),
        }
    }
}
