//! One layer for axum: HTTP metrics with OpenTelemetry semantic-convention names, a server
//! span continuing the caller's W3C trace, a request id, and one access-log line per request;
//! plus the `/metrics`, `/healthz`, `/readyz` and `/version` routes.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! #[tokio::main]
//! async fn main() {
//!     let _telemetry = axi_obs_core::Telemetry::builder().service_name("shop-api").install();
//!     let app = Router::new()
//!         .route("/api/products/{id}", get(|| async { "a product" }))
//!         .merge(axi_obs_axum::ObsRoutes::new().version(axi_obs_axum::version_info!()).into_router())
//!         .layer(axi_obs_axum::ObsLayer::new()); // last: after every route and merge
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//!     axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
//!         .await
//!         .unwrap();
//! }
//! ```
//!
//! # What one request produces
//!
//! | signal | what |
//! |---|---|
//! | metrics | `http.server.request.duration` (Prometheus `http_server_request_duration_seconds`, buckets `0.005 … 10`) with `http_request_method` (unknown methods `_OTHER`; the known ones overridable: [`ObsLayer::known_methods`], `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`), `http_route` (the matched template; `unmatched` otherwise, never the raw path), `http_response_status_code`, `url_scheme`, `network_protocol_version`, `error_type` on 5xx; `http.server.active_requests`; optionally body sizes; optionally [`Naming::AxumPrometheus`] names |
//! | span | `"{method} {route}"`, kind server, parent from `traceparent` / `tracestate` / `baggage`; semconv attributes: `http.request.method` (and `_original`), `url.path`, `url.query` (credential-like values `REDACTED`; [`ObsLayer::span_query`]), `url.scheme`, `http.route`, `network.protocol.version`, `server.address` / `server.port` (trusted forwarded host, else `:authority`, else `Host`), `client.address`, `network.peer.address` / `.port` (with `ConnectInfo`), `user_agent.original`, `http.request.id`, `http.response.status_code`, `error.type`; to the sampler too with [`ObsLayer::sampler_attributes`]; status error only for 5xx and panics; optionally `traceparent` on the response |
//! | request id | a valid incoming `x-request-id` (1–128 of `A-Za-z0-9-_.:@/+=`) or a new random one; echoed on the response, to the handler as the [`RequestId`] extractor (and [`RequestId::current`]; in the request's extensions with [`ObsLayer::request_id_extension`]), on the span and every log line inside it (`http.request.id`) |
//! | access log | one event (target `axi_obs_axum::access`): method, route, path without query, status, `event.duration` (ns), request id, trace id (from the span, or the caller's `traceparent` with spans off), client address, user agent; INFO, 5xx at ERROR, 2xx sampling optional. No header but `User-Agent` is ever logged: `Authorization`, `Cookie`, `Set-Cookie`, API keys and query strings (by default) never reach a log |
//! | panics | a handler panic becomes a `500`, counted and logged with the request id; the server keeps running |
//!
//! `/metrics`, `/healthz` and `/readyz` are excluded from all of it by default
//! ([`ObsLayer::exclude_paths`]).
//!
//! A request is timed, and counted in `http.server.active_requests`, from the moment it
//! reaches the layer until its response head is ready: the time a streamed body takes to
//! reach the client, a WebSocket's or server-sent events' lifetime, is not in the duration. A request dropped before its response
//! (the client went away, an outer timeout) is still recorded, with `error.type="cancelled"`
//! on the metric, the log line and the span; the span's status stays unset (not a server
//! error).
//!
//! # Where to put the layer
//!
//! ```text
//!            request
//!               │
//!   Router ─────┼── matches a route, inserts MatchedPath
//!               ▼
//!   ┌──────────────────────────────┐   Router::layer(ObsLayer): wraps every route added
//!   │ ObsLayer                      │   *before* the call, and the fallback. Sees
//!   │  ┌────────────────────────┐   │   MatchedPath, so `http.route` is the template.
//!   │  │ layers added earlier   │   │   Unmatched requests (404 fallback) are observed
//!   │  │  ┌──────────────────┐  │   │   with http_route="unmatched".
//!   │  │  │ handler          │  │   │
//!   │  │  └──────────────────┘  │   │   Layers added *after* ObsLayer run outside it: their
//!   │  └────────────────────────┘   │   time is not in the metric, and responses they
//!   └──────────────────────────────┘   produce themselves (timeouts, auth rejections) are
//!               │                        not observed.
//!               ▼ response
//! ```
//!
//! * `Router::layer(ObsLayer::new())` last, after every `route`, `nest` and `merge`: the
//!   normal place. Routes added after the call are not observed (axum applies a layer to the
//!   routes it already has).
//! * `Router::merge` after the layer loses the 404s: axum keeps the merged router's default
//!   fallback, which the layer does not wrap, so unmatched requests go unobserved. Merge
//!   [`ObsRoutes`] (and any other router) first; they are excluded by default
//!   ([`ObsLayer::exclude_paths`]), so the layer costs them a path comparison.
//! * `Router::route_layer(...)`: only matched routes are observed; 404s pass unobserved.
//! * Nested routers: `Router::nest("/api", api)` with the layer on the outer router gives the
//!   full template (`/api/users/{id}`); a layer on the inner router sees the same full
//!   template, and logs and excludes by the full path the client sent (axum's `OriginalUri`),
//!   not the path without the prefix that the inner router sees.
//! * `Router::nest_service("/static", ServeDir::new("assets"))`: axum 0.8 gives requests to
//!   a nested *service* no `MatchedPath` (it keeps their route in a private type), so they are
//!   recorded as `unmatched` with the fallback's 404s (the layer warns once when such a
//!   request gets a success). Mount the service as a route of a nested router instead, which
//!   strips the prefix the same way and has a template:
//!   `Router::new().nest("/static", Router::new().route_service("/{*path}", ServeDir::new("assets")))`
//!   is recorded as `http_route="/static/{*path}"`.
//! * Wrapping the whole `Router` from outside (`tower::ServiceBuilder` around it) runs before
//!   routing: no `MatchedPath` yet, so every request would be `unmatched`. Don't.
//! * Client addresses need `into_make_service_with_connect_info::<SocketAddr>()`, or
//!   [`ObsLayer::trust_forwarded_headers`] behind a proxy.
//!
//! # Outbound
//!
//! [`client::TracedClient`] wraps a `reqwest::Client`: it injects the current trace context,
//! makes a client span and records `http.client.request.duration`.

mod headers;
mod http;
pub mod names;
mod request_id;
mod routes;

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;

pub use crate::http::{
    CUSTOM_LABEL_OVERFLOW, DEFAULT_EXCLUDED, KNOWN_METHODS_ENV, Naming, Obs, ObsLayer, RequestView,
    ResponseFuture,
};
pub use request_id::{MissingRequestId, RequestId};
pub use routes::{ObsRoutes, VersionInfo};
