//! The operational routes: `/metrics`, `/healthz`, `/readyz`, `/version`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axi_obs_core::__private::{gzip_if_accepted, joined, media_ranges};
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

/// One run of a check, boxed.
type RunFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// One run of a check, shared by every `/readyz` request that arrives while it runs.
type CheckRun = futures_util::future::Shared<RunFuture>;

/// The last run of a check (weakly: the requests awaiting it hold it) and its task.
type LastRun = Option<(
    futures_util::future::WeakShared<RunFuture>,
    tokio::task::AbortHandle,
)>;

#[derive(Clone)]
struct Check {
    name: String,
    timeout: Duration,
    run: CheckFn,
    /// The last run (held by the requests awaiting it: dropped, and its task aborted, when
    /// they all are) and its task: at most one run per check, whatever the number of
    /// probers, and no new one while the last one's task has not returned.
    in_flight: Arc<std::sync::Mutex<LastRun>>,
}

/// How one run of a check ended.
#[derive(Clone, Debug)]
struct Outcome {
    status: &'static str,
    error: Option<String>,
    latency_ms: f64,
}

impl Check {
    /// The run in flight, or a new one: the check on a task of its own (a check that blocks
    /// its thread cannot hold up this request's timer on a runtime with more than one worker,
    /// and one that panics fails alone), bounded by its timeout, aborted at its next `.await`
    /// once the run is over or every prober gave up.
    fn run(&self) -> CheckRun {
        use futures_util::FutureExt;
        let mut slot = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((run, task)) = slot.as_ref() {
            if let Some(run) = run.upgrade() {
                return run;
            }
            if !task.is_finished() {
                // Timed out and still running (blocked in synchronous code, or not at an
                // `.await` yet): reported, not run again, so a blocked check holds one thread,
                // not one more per probe.
                let stuck: RunFuture = Box::pin(std::future::ready(Outcome {
                    status: "timeout",
                    error: Some(format!(
                        "its previous run, over its {:?}, has not returned yet",
                        self.timeout
                    )),
                    latency_ms: 0.0,
                }));
                return stuck.shared();
            }
        }
        let (check, timeout) = (self.run.clone(), self.timeout);
        let started = Instant::now();
        let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
            check().await
        }));
        let abort = task.abort_handle();
        let run: RunFuture = Box::pin(async move {
            let mut task = AbortOnDrop(task);
            let outcome = tokio::time::timeout(timeout, &mut task.0).await;
            let latency = started.elapsed();
            if outcome.is_err() {
                // Aborted now, and given a moment to end, so that the next probe finds it
                // finished (it was at an `.await`) rather than still running (blocked).
                task.0.abort();
                let _ = tokio::time::timeout(Duration::from_millis(100), &mut task.0).await;
            }
            let (status, error) = match outcome {
                // Answered, but after its timeout (its thread was blocked, and with it the
                // timer): a timeout all the same.
                Ok(_) if latency > timeout => (
                    "timeout",
                    Some(format!("answered after {latency:?}, over its {timeout:?}")),
                ),
                Ok(Ok(Ok(()))) => ("ok", None),
                Ok(Ok(Err(e))) => ("fail", Some(e)),
                Ok(Err(e)) if e.is_panic() => (
                    "fail",
                    Some(format!(
                        "the check panicked: {}",
                        crate::http::panic_message(e.into_panic())
                    )),
                ),
                Ok(Err(_)) => ("fail", Some("the check was cancelled".to_owned())),
                Err(_) => ("timeout", Some(format!("no answer within {timeout:?}"))),
            };
            Outcome {
                status,
                error,
                latency_ms: latency.as_secs_f64() * 1000.0,
            }
        });
        let run = run.shared();
        if let Some(weak) = run.downgrade() {
            *slot = Some((weak, abort));
        }
        run
    }
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
/// | `GET /metrics` | Prometheus text 0.0.4, or OpenMetrics 1.0 when the `Accept` header prefers it (highest `q`; versions `1.0.0` and `0.0.1`); gzip when accepted; `401` without the bearer token when one is set |
/// | `GET /healthz` | liveness: `200 {"status":"ok"}` while the process serves |
/// | `GET /readyz` | readiness: every check runs concurrently under its timeout; `200` when all pass, else `503`; the JSON body lists each check, its status (`ok`, `fail`, `timeout`; a check that panics fails) and latency |
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

    /// Requires `Authorization: Bearer <token>` on `/metrics` (the scheme in any case).
    /// Defaults to no token. Whitespace around `token` is dropped (a token read from a file
    /// ends in a newline that Prometheus's `credentials_file` does not send). An empty token
    /// matches nothing: every request gets `401`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(Arc::from(token.into().trim()));
        self
    }

    /// Adds a readiness check: `/readyz` fails while `check` returns `Err`, panics, or takes
    /// longer than `timeout`. Each check runs as its own task, all at once, so a slow one
    /// delays none of the others and `/readyz` answers within the longest timeout even when a
    /// check blocks its thread (a synchronous database ping: on a runtime with more than one
    /// worker thread; make checks async all the same). At most one run of a check is in
    /// flight: requests that arrive while it runs share its outcome, so many probers during a
    /// slow database make one ping, not one each. A run that times out is aborted at its next
    /// `.await`; one that answers after its timeout (its thread was blocked) counts as timed
    /// out; one blocked in synchronous code cannot be interrupted and holds its thread until
    /// it returns, and requests meanwhile report it as timed out without running it again.
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
            in_flight: Arc::default(),
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
            .and_then(bearer_credentials)
            .unwrap_or_default();
        // An empty token is never a match: a token configured from an unset variable locks
        // the page instead of opening it.
        if given.is_empty() || !constant_time_eq(given.as_bytes(), token.as_bytes()) {
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
    let accept = joined(&headers, header::ACCEPT);
    let (body, content_type) = match negotiate(&accept) {
        Format::OpenMetrics => (handle.render_openmetrics(), OPENMETRICS_CONTENT_TYPE),
        Format::Text => (handle.render(), CONTENT_TYPE),
    };
    let mut response = match gzip_if_accepted(&headers, body.as_bytes()) {
        Some(bytes) => {
            let mut r = Response::new(Body::from(bytes));
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => Response::new(Body::from(body)),
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    response
}

/// The credentials of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, as every HTTP authentication scheme).
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// The exposition formats `/metrics` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Prometheus text 0.0.4 (also valid as text 1.0.0: every name we write is a legacy one).
    Text,
    /// OpenMetrics text 1.0.0 (what Prometheus asks for as `version=1.0.0` or `0.0.1`).
    OpenMetrics,
}

/// The format the client prefers among those we write. Each format's quality is that of the
/// most specific range that matches it (RFC 9110, section 12.5.1: `text/plain;q=0, */*`
/// refuses text and takes OpenMetrics); the highest non-zero quality wins, text on a tie.
/// OpenMetrics only for the versions we write; text when nothing we write was asked for.
fn negotiate(accept: &str) -> Format {
    // (specificity, quality) of the best-matching range so far, per format.
    let mut text: Option<(u8, f32)> = None;
    let mut open_metrics: Option<(u8, f32)> = None;
    let take = |slot: &mut Option<(u8, f32)>, specificity: u8, q: f32| match slot {
        Some((s, best)) if *s == specificity => *best = best.max(q),
        Some((s, _)) if *s > specificity => {}
        _ => *slot = Some((specificity, q)),
    };
    for (range, q, version) in media_ranges(accept) {
        if range.eq_ignore_ascii_case("application/openmetrics-text") {
            if matches!(version, None | Some("1.0.0" | "0.0.1")) {
                take(&mut open_metrics, 2, q);
            }
        } else if range.eq_ignore_ascii_case("text/plain") {
            take(&mut text, 2, q);
        } else if range.eq_ignore_ascii_case("text/*") {
            take(&mut text, 1, q);
        } else if range.eq_ignore_ascii_case("application/*") {
            take(&mut open_metrics, 1, q);
        } else if range == "*/*" {
            take(&mut text, 0, q);
            take(&mut open_metrics, 0, q);
        }
    }
    let q = |slot: Option<(u8, f32)>| slot.map_or(0.0, |(_, q)| q);
    if q(open_metrics) > q(text) {
        Format::OpenMetrics
    } else {
        Format::Text
    }
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

/// Aborts its task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    // Every check at once; probes that overlap share each check's run (fifty probers during
    // a slow database make one ping, not fifty).
    let results: Vec<CheckResult> =
        futures_util::future::join_all(s.checks.iter().map(|c| async move {
            let o = c.run().await;
            CheckResult {
                name: c.name.clone(),
                status: o.status,
                latency_ms: o.latency_ms,
                error: o.error,
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
        use Format::{OpenMetrics, Text};
        // What Prometheus 3 sends by default.
        assert_eq!(
            negotiate(
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            ),
            OpenMetrics
        );
        assert_eq!(negotiate(""), Text);
        assert_eq!(negotiate("text/plain;version=0.0.4"), Text);
        assert_eq!(negotiate("application/openmetrics-text;q=0"), Text);
        // The client's preference wins, not the order or the mere mention.
        assert_eq!(
            negotiate(
                "text/plain;version=0.0.4;q=1.0,application/openmetrics-text;version=1.0.0;q=0.1"
            ),
            Text
        );
        assert_eq!(
            negotiate("text/plain;q=0.5, application/openmetrics-text;q=0.9"),
            OpenMetrics
        );
        // Versions we do not write are not answered with another.
        assert_eq!(
            negotiate("application/openmetrics-text;version=2.0.0"),
            Text
        );
        assert_eq!(
            negotiate("application/openmetrics-text;version=0.0.1"),
            OpenMetrics
        );
        // Media types are case-insensitive; an unreadable quality is not acceptable.
        assert_eq!(
            negotiate("Application/OpenMetrics-Text; Version=1.0.0"),
            OpenMetrics
        );
        assert_eq!(negotiate("application/openmetrics-text;q=high"), Text);
        // Nothing we write asked for: text.
        assert_eq!(negotiate("application/json"), Text);
        // The most specific range sets a format's quality: text refused, or ranked lower,
        // by a range more specific than the wildcard that allows it.
        assert_eq!(negotiate("text/plain;q=0, */*"), OpenMetrics);
        assert_eq!(negotiate("text/*;q=0.1, */*;q=0.5"), OpenMetrics);
        assert_eq!(negotiate("*/*"), Text);
        assert_eq!(negotiate("application/*"), OpenMetrics);
        assert_eq!(
            negotiate("text/plain;q=0.5, application/openmetrics-text;q=0.5"),
            Text
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_credentials("Bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer_credentials("bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer_credentials("BEARER  s3cret"), Some("s3cret"));
        assert_eq!(bearer_credentials("Basic czNjcmV0"), None);
        assert_eq!(bearer_credentials("Bearer"), None);
    }
}
