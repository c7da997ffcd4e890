//! Outbound HTTP with reqwest: W3C `traceparent` / `tracestate` / `baggage` injected into
//! every request, a client span per request, and `http.client.request.duration`. A failed call
//! has `error.type`: the status code (4xx, 5xx), `timeout`, `connect`, `_OTHER`, or `cancelled`
//! when the future was dropped before the answer (a `tokio::time::timeout` around it).
//! Attributes (span) and labels (metric): `http.request.method`, `server.address`,
//! `server.port`, `http.response.status_code`, `network.protocol.version` (of the answer),
//! `error.type`; the span also has `url.full`, with credentials as `REDACTED:REDACTED` and the
//! values of credential-like query keys as `REDACTED`, as on the server side. `traceparent` and
//! `tracestate` replace any the caller set (the client span is the parent); `baggage` is added
//! to the caller's own. Redirects that reqwest follows are one span and one sample.
//!
//! ```no_run
//! # async fn demo() -> Result<(), reqwest::Error> {
//! let client = axi_obs_axum::client::TracedClient::new(reqwest::Client::new());
//! // Inside a request handler, this continues the handler's trace in the callee.
//! let body = client.send(client.inner().get("http://inventory:8080/api/stock")).await?.text().await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Instant;

use axi_obs_core::MetricsRecorder;
use metrics::{Key, Label, Metadata, SharedString, Unit};
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::http::{Sink, env_known_methods, method_label};
use crate::names::{self, attr};

static META: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// A reqwest client that propagates trace context and records client spans and metrics.
#[derive(Clone, Debug)]
pub struct TracedClient {
    inner: reqwest::Client,
    sink: Sink,
    /// Set once `http.client.request.duration` is described to a recorder that keeps it.
    described: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Whether `url.full` keeps the (redacted) query.
    record_query: bool,
}

/// Writes W3C context headers for the OpenTelemetry propagator.
struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl opentelemetry::propagation::Injector for HeaderInjector<'_> {
    /// `traceparent` and `tracestate` replace what the caller set (the client span is the
    /// parent now); `baggage` is added to the caller's own (W3C lets it span several fields);
    /// an empty value (a `tracestate` with no entries) is not sent.
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            // Nothing to send; a caller's own value (a stale `tracestate`) must not go out
            // next to the new `traceparent` either.
            if key != "baggage"
                && let Ok(k) = http::HeaderName::from_bytes(key.as_bytes())
            {
                self.0.remove(k);
            }
            return;
        }
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            if k == "baggage" {
                if !self.0.get_all(&k).iter().any(|old| *old == v) {
                    self.0.append(k, v);
                }
            } else {
                self.0.insert(k, v);
            }
        }
    }
}

/// Injects the current OpenTelemetry context (`traceparent`, `tracestate`, `baggage`, as the
/// global propagator is configured) into `headers`: inside a request observed by
/// [`ObsLayer`](crate::ObsLayer), or an entered `tracing` span, that is the current span. For
/// clients other than reqwest.
pub fn inject_context(headers: &mut http::HeaderMap) {
    let cx = opentelemetry::Context::current();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

impl TracedClient {
    /// Wraps `client`; metrics go to the global recorder.
    pub fn new(client: reqwest::Client) -> Self {
        Self {
            inner: client,
            sink: Sink::Global,
            described: std::sync::Arc::default(),
            record_query: true,
        }
    }

    /// Keeps the query string in the client span's `url.full`, with the values of
    /// credential-like keys `REDACTED` (as the server side's `url.query`). Defaults to on; off
    /// leaves queries out of client spans entirely (for queries that carry personal data
    /// under ordinary names).
    pub fn record_query(mut self, on: bool) -> Self {
        self.record_query = on;
        self
    }

    /// Records metrics into `recorder` instead of the global one.
    pub fn recorder(mut self, recorder: MetricsRecorder) -> Self {
        self.sink = Sink::Explicit(recorder);
        self.described = std::sync::Arc::default();
        self
    }

    /// The wrapped client, to start request builders.
    pub fn inner(&self) -> &reqwest::Client {
        &self.inner
    }

    /// Builds and sends `request` (from [`inner`](Self::inner)`.get(..)` etc.).
    ///
    /// # Errors
    ///
    /// As `reqwest::RequestBuilder::send`.
    pub fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send + '_ {
        let built = request.build();
        async move { self.execute(built?).await }
    }

    /// Sends `request` with trace context, a client span and the duration metric.
    ///
    /// # Errors
    ///
    /// As `reqwest::Client::execute`.
    pub async fn execute(
        &self,
        mut request: reqwest::Request,
    ) -> reqwest::Result<reqwest::Response> {
        let method = method_label(request.method(), env_known_methods());
        let url = request.url();
        // `server.address` is the host without the brackets of an IPv6 literal.
        let host = url.host_str().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host: SharedString = SharedString::from(host.to_owned());
        let port = url.port_or_known_default().unwrap_or_default();
        let full = scrub_url(url, self.record_query);
        let span = tracing::info_span!(
            target: "axi_obs_axum::client",
            "HTTP client request",
            otel.name = if method == "_OTHER" { "HTTP" } else { method },
            otel.kind = "client",
            otel.status_code = Empty,
            http.request.method = method,
            network.protocol.version = Empty,
            http.request.method_original = Empty,
            server.address = &*host,
            server.port = port,
            url.full = %full,
            http.response.status_code = Empty,
            error.type = Empty,
        );
        if method == "_OTHER" {
            span.record("http.request.method_original", request.method().as_str());
        }
        // A span filtered out (RUST_LOG=warn), or seen by no OpenTelemetry layer, has no
        // context of its own: propagate the current one (the server span ObsLayer attached),
        // never nothing.
        let own = span.context();
        let cx = if own.span().span_context().is_valid() {
            own
        } else {
            opentelemetry::Context::current()
        };
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut HeaderInjector(request.headers_mut()))
        });
        // Recorded when the request ends, or as `cancelled` if the future is dropped first
        // (a `timeout` around the call, a `select!`): the slowest calls are not left out.
        let mut in_flight = InFlight {
            client: self,
            span: span.clone(),
            method,
            host,
            port,
            version: None,
            start: Instant::now(),
            done: false,
        };
        let result = self.inner.execute(request).instrument(span).await;
        let (status, error_type): (Option<u16>, Option<SharedString>) = match &result {
            Ok(r) => {
                let s = r.status().as_u16();
                in_flight.version = Some(crate::http::version_label(r.version()));
                (
                    Some(s),
                    (s >= 400).then(|| SharedString::from(s.to_string())),
                )
            }
            Err(e) => (
                e.status().map(|s| s.as_u16()),
                Some(SharedString::const_str(if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "_OTHER"
                })),
            ),
        };
        in_flight.finish(status, error_type);
        result
    }
}

/// One outbound request between sending and its answer.
struct InFlight<'a> {
    client: &'a TracedClient,
    span: tracing::Span,
    method: &'static str,
    host: SharedString,
    port: u16,
    /// `network.protocol.version` of the answer (none without one).
    version: Option<&'static str>,
    start: Instant,
    done: bool,
}

impl InFlight<'_> {
    /// Records the outcome on the span and in `http.client.request.duration`, once.
    fn finish(&mut self, status: Option<u16>, error_type: Option<SharedString>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let seconds = self.start.elapsed().as_secs_f64();
        if let Some(s) = status {
            self.span.record("http.response.status_code", s);
        }
        if let Some(v) = self.version {
            self.span.record("network.protocol.version", v);
        }
        if let Some(e) = &error_type {
            self.span.record("error.type", &**e);
            self.span.record("otel.status_code", "error");
        }
        let mut labels = vec![
            Label::from_static_parts(attr::HTTP_REQUEST_METHOD, self.method),
            Label::new(attr::SERVER_ADDRESS, self.host.clone()),
            Label::new(attr::SERVER_PORT, self.port.to_string()),
        ];
        if let Some(s) = status {
            labels.push(Label::new(attr::HTTP_RESPONSE_STATUS_CODE, s.to_string()));
        }
        if let Some(v) = self.version {
            labels.push(Label::from_static_parts(attr::NETWORK_PROTOCOL_VERSION, v));
        }
        if let Some(e) = error_type {
            labels.push(Label::new(attr::ERROR_TYPE, e));
        }
        let key = Key::from_parts(names::CLIENT_REQUEST_DURATION, labels);
        let described = &self.client.described;
        let describe = |r: &dyn metrics::Recorder| {
            // Not before a recorder is installed: `metrics`' no-op fallback would swallow the
            // description, and the unit (`_seconds`) with it, for good.
            if !described.load(std::sync::atomic::Ordering::Relaxed)
                && crate::http::keeps_metrics(r)
            {
                r.describe_histogram(
                    names::CLIENT_REQUEST_DURATION.into(),
                    Some(Unit::Seconds),
                    "Duration of HTTP client requests.".into(),
                );
                described.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            r.register_histogram(&key, &META).record(seconds);
        };
        match &self.client.sink {
            Sink::Global => metrics::with_recorder(describe),
            Sink::Explicit(r) => describe(r),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.finish(None, Some(SharedString::const_str("cancelled")));
    }
}

/// The URL as semantic conventions record `url.full`: credentials as `REDACTED:REDACTED`,
/// the values of credential-like query keys as `REDACTED` (as the server side's `url.query`),
/// no fragment.
fn scrub_url(url: &reqwest::Url, query: bool) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("REDACTED");
        let _ = u.set_password(Some("REDACTED"));
    }
    if !query {
        u.set_query(None);
    } else if let Some(q) = url.query() {
        u.set_query(Some(&crate::http::redact_query(q)));
    }
    u.set_fragment(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use opentelemetry::propagation::Injector as _;

    use super::HeaderInjector;

    #[test]
    fn injected_headers_replace_the_parent_and_add_to_baggage() {
        let mut h = http::HeaderMap::new();
        h.insert("traceparent", "00-old".parse().unwrap());
        h.insert("baggage", "tenant=a".parse().unwrap());
        h.insert("tracestate", "stale=1".parse().unwrap());
        let mut inj = HeaderInjector(&mut h);
        inj.set("traceparent", "00-new".to_owned());
        inj.set("tracestate", String::new());
        inj.set("baggage", "user=b".to_owned());
        // Injected twice (a retry with the same headers): not added again.
        inj.set("baggage", "user=b".to_owned());
        assert_eq!(h["traceparent"], "00-new");
        assert!(
            !h.contains_key("tracestate"),
            "an empty tracestate is not sent, nor the caller's stale one"
        );
        let baggage: Vec<_> = h.get_all("baggage").iter().collect();
        assert_eq!(baggage, ["tenant=a", "user=b"]);
    }

    #[test]
    fn full_urls_are_redacted_as_semantic_conventions_say() {
        for (url, want) in [
            (
                "https://u:p@example.com:8443/a?sig=x&q=1#frag",
                "https://REDACTED:REDACTED@example.com:8443/a?sig=REDACTED&q=1",
            ),
            ("http://example.com/a", "http://example.com/a"),
            (
                "http://u@example.com/",
                "http://REDACTED:REDACTED@example.com/",
            ),
        ] {
            let u = reqwest::Url::parse(url).unwrap();
            assert_eq!(super::scrub_url(&u, true), want, "{url}");
            assert!(!super::scrub_url(&u, false).contains('?'), "{url}");
        }
    }
}
