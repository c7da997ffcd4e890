//! [`Obs`]: the per-request service.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath};
use http::{HeaderMap, Request, Response};
use tower_service::Service;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::future::{ActiveGuard, ResponseFuture, State};
use super::instruments::{Labels, method_label, version_label};
use super::layer::Config;
use crate::names::UNMATCHED_ROUTE;

/// The service [`ObsLayer`](super::ObsLayer) wraps around each route.
#[derive(Clone, Debug)]
pub struct Obs<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
}

/// A read-only view of a request, given to [`ObsLayer::custom_labels`](super::ObsLayer::custom_labels).
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestView<'a> {
    /// The method.
    pub method: &'a http::Method,
    /// The URI (path and query; never put raw paths into labels).
    pub uri: &'a http::Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (matched path, connect info, your own).
    pub extensions: &'a http::Extensions,
}

impl<S, ReqBody> Service<Request<ReqBody>> for Obs<S>
where
    S: Service<Request<ReqBody>, Response = Response<Body>>,
    ReqBody: http_body::Body,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let cfg = &self.config;
        if cfg.excluded.iter().any(|p| p == req.uri().path()) {
            return ResponseFuture::passthrough(call_catching(&mut self.inner, req));
        }
        let start = Instant::now();
        let request_id = cfg.request_id.resolve(req.headers());
        req.extensions_mut().insert(request_id.clone());

        let method = method_label(req.method());
        let matched = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let route = cfg.instruments.route(matched);
        let scheme = scheme(&req, cfg.trust_forwarded);
        let version = version_label(req.version());

        let (labels, active) = if cfg.metrics {
            let custom = match &cfg.custom {
                Some(c) => c.labels(&RequestView {
                    method: req.method(),
                    uri: req.uri(),
                    headers: req.headers(),
                    extensions: req.extensions(),
                }),
                None => Vec::new(),
            };
            let labels = Labels {
                method,
                route: route.clone(),
                scheme,
                version,
                custom,
            };
            let active = cfg.instruments.start(&labels);
            (Some(labels), ActiveGuard(Some(active)))
        } else {
            (None, ActiveGuard(None))
        };
        let req_body = if cfg.instruments.body_sizes {
            content_length(req.headers()).or_else(|| http_body::Body::size_hint(req.body()).exact())
        } else {
            None
        };

        let needs_client = cfg.access_log || cfg.spans;
        let client = needs_client
            .then(|| client_address(&req, cfg.trust_forwarded))
            .flatten();
        let user_agent = needs_client
            .then(|| req.headers().get(http::header::USER_AGENT).cloned())
            .flatten();

        let span = if cfg.spans {
            let route_str: &str = &route;
            let unmatched = route_str == UNMATCHED_ROUTE;
            let name_method = if method == "_OTHER" { "HTTP" } else { method };
            let span = tracing::info_span!(
                target: "axi_obs_axum::http",
                "HTTP request",
                otel.name = %SpanName(name_method, (!unmatched).then_some(route_str)),
                otel.kind = "server",
                otel.status_code = Empty,
                http.request.method = method,
                http.request.method_original = Empty,
                http.route = Empty,
                url.path = req.uri().path(),
                url.scheme = scheme,
                network.protocol.version = version,
                http.response.status_code = Empty,
                error.type = Empty,
                client.address = Empty,
                user_agent.original = Empty,
                http.request.id = request_id.as_str(),
            );
            if !span.is_disabled() {
                if !unmatched {
                    span.record("http.route", route_str);
                }
                if method == "_OTHER" {
                    span.record("http.request.method_original", req.method().as_str());
                }
                if let Some(c) = &client {
                    span.record("client.address", c.as_str());
                }
                if let Some(ua) = user_agent.as_ref().and_then(|v| v.to_str().ok()) {
                    span.record("user_agent.original", ua);
                }
                if has_context(req.headers()) {
                    let parent = opentelemetry::global::get_text_map_propagator(|p| {
                        p.extract(&HeaderExtractor(req.headers()))
                    });
                    let _ = span.set_parent(parent);
                }
            }
            span
        } else {
            tracing::Span::none()
        };

        let state = State {
            config: self.config.clone(),
            start,
            span,
            labels,
            active,
            request_id,
            method: cfg.access_log.then(|| req.method().clone()),
            route,
            uri: cfg.access_log.then(|| req.uri().clone()),
            client,
            user_agent,
            req_body,
        };
        let future = {
            let _enter = state.span.enter();
            call_catching(&mut self.inner, req)
        };
        ResponseFuture::observed(future, state)
    }
}

fn call_catching<S, R>(inner: &mut S, req: R) -> Result<S::Future, String>
where
    S: Service<R>,
{
    std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req))).map_err(panic_message)
}

pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

struct SpanName<'a>(&'a str, Option<&'a str>);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(route) => write!(f, "{} {}", self.0, route),
            None => f.write_str(self.0),
        }
    }
}

fn has_context(headers: &HeaderMap) -> bool {
    headers.contains_key("traceparent") || headers.contains_key("baggage")
}

/// Reads W3C context headers for the OpenTelemetry propagator.
pub(crate) struct HeaderExtractor<'a>(pub(crate) &'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn scheme<B>(req: &Request<B>, trust_forwarded: bool) -> &'static str {
    if trust_forwarded
        && let Some(proto) = req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
    {
        return if proto.eq_ignore_ascii_case("https") {
            "https"
        } else {
            "http"
        };
    }
    match req.uri().scheme_str() {
        Some("https") => "https",
        _ => "http",
    }
}

/// The client address: the first `X-Forwarded-For` / `Forwarded: for=` entry when trusted,
/// else the socket peer (`ConnectInfo`, when the app is served with connect info).
fn client_address<B>(req: &Request<B>, trust_forwarded: bool) -> Option<String> {
    if trust_forwarded {
        if let Some(xff) = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            return Some(xff.to_owned());
        }
        if let Some(fwd) = req.headers().get("forwarded").and_then(|v| v.to_str().ok()) {
            let first = fwd.split(',').next().unwrap_or_default();
            for part in first.split(';') {
                let part = part.trim();
                if part.len() > 4 && part[..4].eq_ignore_ascii_case("for=") {
                    return Some(part[4..].trim_matches('"').to_owned());
                }
            }
        }
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
}
