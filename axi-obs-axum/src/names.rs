//! Metric names, attribute keys and constants, in one place.

/// `http.server.request.duration` (seconds, histogram): OpenTelemetry semantic conventions.
/// Prometheus: `http_server_request_duration_seconds`.
pub const SERVER_REQUEST_DURATION: &str = "http.server.request.duration";
/// `http.server.active_requests` (requests in flight, up-down counter).
/// Prometheus: `http_server_active_requests`.
pub const SERVER_ACTIVE_REQUESTS: &str = "http.server.active_requests";
/// `http.server.request.body.size` (bytes, histogram, opt-in).
pub const SERVER_REQUEST_BODY_SIZE: &str = "http.server.request.body.size";
/// `http.server.response.body.size` (bytes, histogram, opt-in).
pub const SERVER_RESPONSE_BODY_SIZE: &str = "http.server.response.body.size";
/// `http.client.request.duration` (seconds, histogram), recorded by the reqwest integration.
pub const CLIENT_REQUEST_DURATION: &str = "http.client.request.duration";

/// axum-prometheus 0.10 compatible names ([`Naming::AxumPrometheus`](crate::Naming)).
pub mod axum_prometheus {
    /// Counter of requests by `method`, `endpoint`, `status`.
    pub const REQUESTS_TOTAL: &str = "axum_http_requests_total";
    /// Histogram of durations by `method`, `endpoint`, `status`.
    pub const REQUESTS_DURATION_SECONDS: &str = "axum_http_requests_duration_seconds";
    /// Gauge of in-flight requests by `method`, `endpoint`.
    pub const REQUESTS_PENDING: &str = "axum_http_requests_pending";
    /// axum-prometheus's default buckets.
    pub const BUCKETS: &[f64] = &[
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
}

/// Attribute / label keys (OpenTelemetry semantic conventions).
pub mod attr {
    /// `http.request.method`: a known method, or `_OTHER`.
    pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
    /// `http.request.method_original`: the method as sent, on spans when it was `_OTHER`.
    pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
    /// `http.route`: the matched route template.
    pub const HTTP_ROUTE: &str = "http.route";
    /// `http.response.status_code`.
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    /// `url.scheme`.
    pub const URL_SCHEME: &str = "url.scheme";
    /// `error.type`: the status code for 5xx, `_OTHER` otherwise.
    pub const ERROR_TYPE: &str = "error.type";
    /// `network.protocol.version`: `1.0`, `1.1`, `2`, `3`.
    pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
    /// `server.address`: the host the client addressed (client metrics, server spans).
    pub const SERVER_ADDRESS: &str = "server.address";
    /// `server.port`: the port the client addressed (client metrics, server spans).
    pub const SERVER_PORT: &str = "server.port";
    /// `url.path` (server spans).
    pub const URL_PATH: &str = "url.path";
    /// `url.query`, credential-like values redacted (server spans).
    pub const URL_QUERY: &str = "url.query";
    /// `client.address`: the socket peer, or a trusted proxy's forwarded client (server spans).
    pub const CLIENT_ADDRESS: &str = "client.address";
    /// `network.peer.address`: the socket peer's IP (server spans, with `ConnectInfo`).
    pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
    /// `network.peer.port`: the socket peer's port (server spans, with `ConnectInfo`).
    pub const NETWORK_PEER_PORT: &str = "network.peer.port";
    /// `user_agent.original` (server spans).
    pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
}

/// The `http.route` value for requests that matched no route. Never the raw path: a scanner
/// sending random URLs cannot create series.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Semantic-convention bucket bounds for `http.server.request.duration`.
pub const DURATION_BUCKETS: &[f64] = axi_obs_core::metrics::SEMCONV_DURATION_BUCKETS;
