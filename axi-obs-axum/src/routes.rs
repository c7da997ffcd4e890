//! The operational routes: `/metrics`, `/healthz`, `/readyz`, `/version`.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axi_obs_core::MetricsHandle;
use axi_obs_core::metrics::{CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;

type CheckFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

#[derive(Clone)]
struct Check {
    name: String,
    timeout: Duration,
    run: CheckFn,
}

/// What `/version` answers; build it with [`version_info!`](crate::version_info).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct VersionInfo {
    /// The service (crate) name.
    pub name: String,
    /// The version.
    pub version: String,
    /// The source revision, when known at build time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_sha: Option<String>,
    /// The build time, when known at build time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_time: Option<String>,
}

/// The [`VersionInfo`] of the calling crate: `CARGO_PKG_NAME`, `CARGO_PKG_VERSION`, and the
/// build-time environment variables `AXI_GIT_SHA` (or `GIT_SHA`) and `AXI_BUILD_TIME` when set
/// (e.g. `AXI_GIT_SHA=$(git rev-parse HEAD) cargo build`).
#[macro_export]
macro_rules! version_info {
    () => {
        $crate::VersionInfo {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            git_sha: option_env!("AXI_GIT_SHA")
                .or(option_env!("GIT_SHA"))
                .map(str::to_owned),
            build_time: option_env!("AXI_BUILD_TIME").map(str::to_owned),
        }
    };
}

/// Builds the operational routes.
///
/// ```
/// use std::time::Duration;
/// let routes: axum::Router = axi_obs_axum::ObsRoutes::new()
///     .version(axi_obs_axum::version_info!())
///     .readiness_check("database", Duration::from_secs(1), || async { Ok(()) })
///     .into_router();
/// ```
///
/// | route | answer |
/// |---|---|
/// | `GET /metrics` | Prometheus text 0.0.4, or OpenMetrics 1.0 when the `Accept` header asks for it; gzip when accepted; `401` without the bearer token when one is set |
/// | `GET /healthz` | liveness: `200 {"status":"ok"}` while the process serves |
/// | `GET /readyz` | readiness: every check runs concurrently under its timeout; `200` when all pass, else `503`; the JSON body lists each check, its status and latency |
/// | `GET /version` | `{"name", "version", "git_sha", "build_time"}` |
#[derive(Clone, Default)]
#[must_use]
pub struct ObsRoutes {
    metrics: Option<MetricsHandle>,
    no_metrics_route: bool,
    bearer: Option<Arc<str>>,
    checks: Vec<Check>,
    version: Option<VersionInfo>,
}

impl std::fmt::Debug for ObsRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObsRoutes")
            .field(
                "checks",
                &self.checks.iter().map(|c| &c.name).collect::<Vec<_>>(),
            )
            .field("bearer", &self.bearer.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Option<MetricsHandle>,
    bearer: Option<Arc<str>>,
    checks: Arc<[Check]>,
    version: Arc<VersionInfo>,
}

impl ObsRoutes {
    /// The four routes with defaults: the global metrics handle, no token, no checks, and
    /// this crate's own version (set yours with [`version`](Self::version)).
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `/metrics` from `handle`. Defaults to the globally installed telemetry's.
    pub fn metrics(mut self, handle: MetricsHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Leaves `/metrics` out, for applications that serve their own page (a collector that
    /// combines its readings with its own metrics). Defaults to serving it.
    pub fn without_metrics_route(mut self) -> Self {
        self.no_metrics_route = true;
        self
    }

    /// Requires `Authorization: Bearer <token>` on `/metrics`. Defaults to no token.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(Arc::from(token.into()));
        self
    }

    /// Adds a readiness check: `/readyz` fails while `check` returns `Err` or takes longer
    /// than `timeout`.
    pub fn readiness_check<F, Fut>(
        mut self,
        name: impl Into<String>,
        timeout: Duration,
        check: F,
    ) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push(Check {
            name: name.into(),
            timeout,
            run: Arc::new(move || Box::pin(check())),
        });
        self
    }

    /// What `/version` answers. Defaults to axi-obs-axum's own name and version; use
    /// [`version_info!`](crate::version_info) for yours.
    pub fn version(mut self, version: VersionInfo) -> Self {
        self.version = Some(version);
        self
    }

    /// The router, to `merge` into the application's.
    pub fn into_router<S>(self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let shared = Shared {
            metrics: self.metrics,
            bearer: self.bearer,
            checks: self.checks.into(),
            version: Arc::new(self.version.unwrap_or_else(|| crate::version_info!())),
        };
        let router = if self.no_metrics_route {
            Router::new()
        } else {
            Router::new().route("/metrics", get(metrics))
        };
        router
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/version", get(version))
            .with_state(shared)
    }
}

async fn metrics(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(token) = &s.bearer {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a bearer token is required\n",
            )
                .into_response();
        }
    }
    let Some(handle) = s.metrics.clone().or_else(axi_obs_core::global_metrics) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no metrics recorder is installed (axi_obs_core::Telemetry::builder().install())\n",
        )
            .into_response();
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (body, content_type) = if accepts_openmetrics(accept) {
        (handle.render_openmetrics(), OPENMETRICS_CONTENT_TYPE)
    } else {
        (handle.render(), CONTENT_TYPE)
    };
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let mut response = if gzip {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        match enc.write_all(body.as_bytes()).and_then(|()| enc.finish()) {
            Ok(bytes) => {
                let mut r = Response::new(Body::from(bytes));
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            Err(_) => Response::new(Body::from(body)),
        }
    } else {
        Response::new(Body::from(body))
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    response
}

/// True when `Accept` names OpenMetrics text with a non-zero quality, as Prometheus 3 sends it.
fn accepts_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let mut params = part.split(';').map(str::trim);
        params.next() == Some("application/openmetrics-text")
            && params.all(|p| !matches!(p.strip_prefix("q="), Some(q) if q.parse::<f32>().unwrap_or(1.0) <= 0.0))
    })
}

fn accepts_gzip(enc: &str) -> bool {
    enc.split(',').any(|part| {
        let mut params = part.split(';').map(str::trim);
        params.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip"))
            && params.all(|p| !matches!(p.strip_prefix("q="), Some(q) if q.parse::<f32>().unwrap_or(1.0) <= 0.0))
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

#[derive(Serialize)]
struct CheckResult {
    name: String,
    status: &'static str,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    let results: Vec<CheckResult> =
        futures_util::future::join_all(s.checks.iter().map(|c| async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(c.timeout, (c.run)()).await;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            let (status, error) = match outcome {
                Ok(Ok(())) => ("ok", None),
                Ok(Err(e)) => ("fail", Some(e)),
                Err(_) => ("timeout", Some(format!("no answer within {:?}", c.timeout))),
            };
            CheckResult {
                name: c.name.clone(),
                status,
                latency_ms,
                error,
            }
        }))
        .await;
    let ready = results.iter().all(|r| r.status == "ok");
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(serde_json::json!({
            "status": if ready { "ready" } else { "not_ready" },
            "checks": results,
        })),
    )
}

async fn version(State(s): State<Shared>) -> impl IntoResponse {
    axum::Json((*s.version).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert!(accepts_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!accepts_openmetrics("text/plain;version=0.0.4"));
        assert!(!accepts_openmetrics("application/openmetrics-text;q=0"));
        assert!(accepts_gzip("gzip, deflate"));
        assert!(accepts_gzip("br;q=1.0, gzip;q=0.8"));
        assert!(!accepts_gzip("gzip;q=0, identity"));
        assert!(!accepts_gzip("identity"));
    }
}
