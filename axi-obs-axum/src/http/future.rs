//! [`ResponseFuture`]: finishes the observation when the response is ready.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode};
use metrics::SharedString;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Status, TraceContextExt};

use super::clock::Instant;
use super::instruments::{Active, Labels};
use super::layer::Config;
use super::service::panic_message;
use crate::names::attr;
use crate::request_id::{RequestId, unit_random};

/// Per-request state carried from `call` to the response.
pub(crate) struct State {
    pub(crate) config: Arc<Config>,
    pub(crate) start: Instant,
    pub(crate) start_time: SystemTime,
    /// The request's context: the server span when spans are on (only its ids when it was
    /// sampled out) and the request id for log lines.
    pub(crate) cx: Option<opentelemetry::Context>,
    pub(crate) labels: Option<Labels>,
    /// The in-flight gauge's count, ended when the state is dropped, however the request
    /// ends (completed, failed, or dropped because the client went away).
    pub(crate) active: Active,
    pub(crate) request_id: RequestId,
    pub(crate) method: Option<http::Method>,
    /// The route label, for the access log.
    pub(crate) route: Option<SharedString>,
    pub(crate) uri: Option<http::Uri>,
    pub(crate) client: Option<super::service::ClientAddr>,
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) req_body: super::counted_body::ReqSize,
    /// axum gave the request no `MatchedPath`: a fallback, or a `nest_service` mount.
    pub(crate) unmatched: bool,
}

pin_project_lite::pin_project! {
    /// The response future of [`Obs`](super::Obs).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        // The panic message when the inner service panicked in `call`.
        call_panic: Option<String>,
        // Boxed: the future is moved several times on its way into axum's boxed route
        // future; one pointer moves cheaper than the whole state.
        state: Option<Box<State>>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before a response (the client went away, an outer timeout fired): the
            // request still counts, so the slowest requests are not missing from the latency
            // histogram and the logs.
            if let Some(state) = this.project().state.take() {
                state.abandoned(CANCELLED, "request cancelled before a response");
            }
        }
    }
}

/// Says once per process that a request with no `MatchedPath` was answered with a success:
/// axum 0.8 gives requests to a `nest_service` mount (`ServeDir`, say) no `MatchedPath` (it
/// keeps their route in a private type), so they are recorded as `unmatched` with the
/// fallback's 404s.
#[cold]
fn warn_unmatched_success(status: u16, uri: Option<&http::Uri>) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            http.response.status_code = status,
            url.path = uri.map(http::Uri::path),
            "a request axum matched to no route (no MatchedPath) was answered with a success: \
             probably a nest_service mount, which axum 0.8 gives no MatchedPath; it is recorded \
             as http.route=\"unmatched\". Mount the service as a route of a nested router \
             instead (see the axi-obs-axum docs, \"Where to put the layer\")"
        );
    }
}

/// `error.type` of a request dropped before its response (the client went away, or an outer
/// timeout fired).
const CANCELLED: &str = "cancelled";

impl<F> ResponseFuture<F> {
    /// The inner service's future, or the panic its `call` raised, and the request's state
    /// (`None` for an excluded path). Each arm builds the future in place: the inner future (a
    /// few hundred bytes) is moved once, not through another `Result` or a tuple first.
    pub(crate) fn new(inner: std::thread::Result<F>, state: Option<Box<State>>) -> Self {
        match inner {
            Ok(f) => Self {
                inner: Some(f),
                call_panic: None,
                state,
            },
            Err(p) => Self {
                inner: None,
                call_panic: Some(panic_message(p)),
                state,
            },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The request's context is current while the inner future runs and, once it is ready,
        // while the request is finished (its log lines carry the trace and request ids).
        let _attached = this
            .state
            .as_ref()
            .and_then(|s| s.cx.clone())
            .map(opentelemetry::Context::attach);
        // And its id, for the `RequestId` extractor and `RequestId::current`.
        let _id = this
            .state
            .as_ref()
            .map(|s| crate::request_id::enter(&s.request_id));
        let polled = match this.inner.as_pin_mut() {
            Some(f) => match std::panic::catch_unwind(AssertUnwindSafe(|| f.poll(cx))) {
                Ok(p) => Ok(ready!(p)),
                Err(payload) => Err(panic_message(payload)),
            },
            None => Err(this
                .call_panic
                .take()
                .unwrap_or_else(|| "polled after completion".to_owned())),
        };
        let Some(state) = this.state.take() else {
            // Excluded path: no observation, but a panic still becomes a 500.
            return Poll::Ready(match polled {
                Ok(r) => r,
                Err(msg) => {
                    tracing::error!(target: "axi_obs_axum::http", panic = %msg, "handler panicked");
                    Ok(internal_error())
                }
            });
        };
        Poll::Ready(match polled {
            Ok(Ok(response)) => Ok(state.finish(response, None)),
            Ok(Err(e)) => {
                state.abandoned(
                    "_OTHER",
                    "the service returned an error instead of a response",
                );
                Err(e)
            }
            Err(msg) => Ok(state.finish(internal_error(), Some(msg))),
        })
    }
}

fn internal_error() -> Response<Body> {
    let mut r = Response::new(Body::from("internal server error"));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `tracing::event!` at a level chosen at run time.
macro_rules! event_at {
    ($level:expr, $target:literal, { $($fields:tt)* }) => {
        match $level {
            tracing::Level::ERROR => tracing::event!(target: $target, tracing::Level::ERROR, { $($fields)* }),
            tracing::Level::WARN => tracing::event!(target: $target, tracing::Level::WARN, { $($fields)* }),
            tracing::Level::INFO => tracing::event!(target: $target, tracing::Level::INFO, { $($fields)* }),
            tracing::Level::DEBUG => tracing::event!(target: $target, tracing::Level::DEBUG, { $($fields)* }),
            tracing::Level::TRACE => tracing::event!(target: $target, tracing::Level::TRACE, { $($fields)* }),
        }
    };
    ($level:expr, $target:literal, { $($fields:tt)* }, $($msg:tt)+) => {
        match $level {
            tracing::Level::ERROR => tracing::event!(target: $target, tracing::Level::ERROR, { $($fields)* }, $($msg)+),
            tracing::Level::WARN => tracing::event!(target: $target, tracing::Level::WARN, { $($fields)* }, $($msg)+),
            tracing::Level::INFO => tracing::event!(target: $target, tracing::Level::INFO, { $($fields)* }, $($msg)+),
            tracing::Level::DEBUG => tracing::event!(target: $target, tracing::Level::DEBUG, { $($fields)* }, $($msg)+),
            tracing::Level::TRACE => tracing::event!(target: $target, tracing::Level::TRACE, { $($fields)* }, $($msg)+),
        }
    };
}

impl State {
    /// The time since the request started, by the layer's clock.
    fn elapsed(&self) -> std::time::Duration {
        self.config
            .clock
            .now()
            .saturating_duration_since(self.start)
    }

    /// Records metrics, span fields and the access log; echoes the request id. Called by
    /// `poll` with the request's context attached.
    fn finish(
        self: Box<Self>,
        mut response: Response<Body>,
        panic: Option<String>,
    ) -> Response<Body> {
        self.finish_inner(&mut response, panic);
        response
    }

    /// Works on the boxed state in place (moving 400-odd bytes out of the box costs a copy).
    fn finish_inner(mut self: Box<Self>, response: &mut Response<Body>, panic: Option<String>) {
        let cfg = &*self.config;
        let status = response.status().as_u16();
        let elapsed = self.elapsed();
        if self.unmatched && status < 400 {
            warn_unmatched_success(status, self.uri.as_ref());
        }
        let server_error = status >= 500;
        let error_type: Option<SharedString> =
            server_error.then(|| SharedString::from(status.to_string()));

        if let Some(cx) = &self.cx {
            let span = cx.span();
            if cfg.spans && span.is_recording() {
                span.set_attribute(KeyValue::new(
                    attr::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(status),
                ));
                if let Some(e) = &error_type {
                    span.set_attribute(KeyValue::new(attr::ERROR_TYPE, e.to_string()));
                    span.set_status(Status::error(""));
                }
                if let Some(msg) = &panic {
                    span.add_event(
                        "exception",
                        vec![
                            KeyValue::new("exception.type", "panic"),
                            KeyValue::new("exception.message", msg.clone()),
                        ],
                    );
                }
            }
            if cfg.traceparent_response {
                let sc = span.span_context();
                if sc.is_valid()
                    && let Ok(v) = HeaderValue::from_str(&format!(
                        "00-{}-{}-{:02x}",
                        sc.trace_id(),
                        sc.span_id(),
                        sc.trace_flags().to_u8()
                    ))
                {
                    response.headers_mut().insert("traceparent", v);
                }
            }
            if cfg.spans && span.is_recording() {
                // The span ends at exactly the duration the metric recorded. Its id stays
                // readable for the log lines below. It ends outside the request's context (which
                // `poll` keeps attached): a span processor that exports on end does so as it
                // would for any span, not as part of this request (its log lines would carry the
                // request's ids). A sampled-out span is only ids here; there is nothing to end.
                let _outside = opentelemetry::Context::new().attach();
                span.end_with_timestamp(self.start_time + elapsed);
            }
        }

        // From here on the request's context is current (attached by `poll`, the only
        // caller): metrics are recorded inside it, for recorders that take exemplars from it,
        // and the log lines below take the trace id and request id from it.
        if let Some(labels) = self.labels.take() {
            let resp_body = if !cfg.instruments.body_sizes {
                None
            } else if labels.method == "HEAD" {
                // No body is sent, whatever `Content-Length` says (axum drops it outside us).
                Some(0)
            } else {
                response
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .or_else(|| http_body::Body::size_hint(response.body()).exact())
            };
            let unsized_body = cfg.instruments.finish(
                labels,
                Some(status),
                error_type.clone(),
                elapsed.as_secs_f64(),
                (self.req_body.bytes(), resp_body),
            );
            if let Some(histogram) = unsized_body {
                // A streamed body: counted as it is sent, recorded when it ends.
                let body = std::mem::take(response.body_mut());
                *response.body_mut() =
                    Body::new(super::counted_body::CountedBody::response(body, histogram));
            }
        }
        if let Some(msg) = &panic {
            event_at!(cfg.server_error_level, "axi_obs_axum::http", {
                panic = %msg,
                http.request.id = self.request_id.as_str()
            }, "handler panicked; answered 500");
        }
        if cfg.access_log {
            let level = if server_error {
                Some(cfg.server_error_level)
            } else if status >= 400 {
                Some(cfg.client_error_level)
            } else if cfg.success_sample >= 1.0 || unit_random() < cfg.success_sample {
                Some(cfg.level)
            } else {
                None
            };
            if let Some(level) = level {
                let path = self.uri.as_ref().map(http::Uri::path).unwrap_or_default();
                let query = if cfg.log_query {
                    self.uri
                        .as_ref()
                        .and_then(http::Uri::query)
                        .map(redact_query)
                } else {
                    None
                };
                let method = self
                    .method
                    .as_ref()
                    .map(http::Method::as_str)
                    .unwrap_or_default();
                let route: &str = self.route.as_deref().unwrap_or_default();
                let ua = self.user_agent.as_ref().and_then(|v| v.to_str().ok());
                let log = |client: Option<&str>| {
                    // The message as a plain `&str` field: written as is, without a pass
                    // through `fmt::Arguments` (every subscriber treats a `message` field as
                    // the message).
                    event_at!(level, "axi_obs_axum::access", {
                        message = "request completed",
                        http.request.method = method,
                        http.route = route,
                        url.path = path,
                        url.query = query.as_deref(),
                        http.response.status_code = status,
                        event.duration = elapsed.as_nanos() as u64,
                        http.request.id = self.request_id.as_str(),
                        client.address = client,
                        user_agent.original = ua
                    });
                };
                match &self.client {
                    Some(c) => c.with_str(|c| log(Some(c))),
                    None => log(None),
                }
            }
        }
        // The id's last use: moved, not cloned.
        let id = std::mem::replace(&mut self.request_id.0, HeaderValue::from_static(""));
        response
            .headers_mut()
            .insert(cfg.request_id.header.clone(), id);
    }

    /// Ends a request that got no response: the inner service failed (never for axum routes,
    /// which are infallible) or the future was dropped.
    fn abandoned(mut self: Box<Self>, error_type: &'static str, message: &'static str) {
        let this = &mut *self;
        let cfg = &*this.config;
        let elapsed = this.elapsed();
        // As in `finish`: metrics and the log line inside the request's context, the span
        // ended outside it.
        let _attached = this.cx.clone().map(opentelemetry::Context::attach);
        if let Some(labels) = this.labels.take() {
            cfg.instruments.finish(
                labels,
                None,
                Some(SharedString::const_str(error_type)),
                elapsed.as_secs_f64(),
                (this.req_body.bytes(), None),
            );
        }
        if cfg.access_log {
            let path = this.uri.as_ref().map(http::Uri::path).unwrap_or_default();
            let method = this
                .method
                .as_ref()
                .map(http::Method::as_str)
                .unwrap_or_default();
            let route: &str = this.route.as_deref().unwrap_or_default();
            event_at!(cfg.client_error_level, "axi_obs_axum::access", {
                http.request.method = method,
                http.route = route,
                url.path = path,
                error.type = error_type,
                event.duration = elapsed.as_nanos() as u64,
                http.request.id = this.request_id.as_str()
            }, "{message}");
        }
        if cfg.spans
            && let Some(cx) = &this.cx
        {
            let span = cx.span();
            span.set_attribute(KeyValue::new(attr::ERROR_TYPE, error_type));
            // Error status only for what the server failed at (the spec: 5xx and panics; an
            // inner service's error stands for a 5xx). A request the client gave up on keeps
            // its `error.type`, not an error status: disconnects would count as failures.
            if error_type != CANCELLED {
                span.set_status(Status::error(""));
            }
            let _outside = opentelemetry::Context::new().attach();
            span.end_with_timestamp(this.start_time + elapsed);
        }
    }
}

impl Drop for State {
    /// Ends the in-flight count, however the request ended.
    fn drop(&mut self) {
        let active = std::mem::replace(&mut self.active, Active::Off);
        self.config.instruments.end(active);
    }
}

/// `s` with `%XX` escapes decoded (invalid ones kept as they are), `+` as a space.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string with the values of credential-like keys replaced by `REDACTED`.
pub(crate) fn redact_query(q: &str) -> String {
    const SENSITIVE: &[&str] = &[
        "token",
        "key",
        "password",
        "passwd",
        "secret",
        "signature",
        "sig",
        "auth",
        "session",
        "code",
        "credential",
        "pwd",
        "jwt",
        "bearer",
        "cookie",
        "private",
        "otp",
    ];
    q.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            // Matched as decoded (`%74oken` is `token`).
            let lower = percent_decoded(k).to_ascii_lowercase();
            if !v.is_empty() && SENSITIVE.iter().any(|s| lower.contains(s)) {
                format!("{k}=REDACTED")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    #[test]
    fn credential_like_query_values_are_redacted() {
        assert_eq!(
            super::redact_query("page=2&access_token=abc&apiKey=k&q=rust&password="),
            "page=2&access_token=REDACTED&apiKey=REDACTED&q=rust&password="
        );
        assert_eq!(
            super::redact_query("pwd=hunter2&jwt=eyJ&id_token=x&SESSIONID=1&sort=asc"),
            "pwd=REDACTED&jwt=REDACTED&id_token=REDACTED&SESSIONID=REDACTED&sort=asc"
        );
        // Keys are matched decoded.
        assert_eq!(
            super::redact_query("%74oken=abc&api%5Fkey=k&q=a%20b"),
            "%74oken=REDACTED&api%5Fkey=REDACTED&q=a%20b"
        );
    }
}
