//! Prometheus's query API over the daemon's store: `/api/v1/query`, `/api/v1/query_range`,
//! `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/<name>/values`, by GET or by POST
//! with a form body, with Prometheus's parameters, answers, error types and status codes. So
//! Grafana's Prometheus data source, `promtool query` and scripts written for Prometheus read
//! what `axi-alert run` holds (the scraped samples and the rules' output, as far back as the
//! retention).
//!
//! `limit` cuts an answer to that many series (queries), label names, values or series
//! (metadata), with Prometheus's warning `results truncated due to limit`; ours keeps the
//! first in label order, where Prometheus's index may keep others. `lookback_delta` sets a
//! query's own lookback (zero or negative: the server's `--query.lookback-delta`). Also
//! answered: `/api/v1/format_query` (promql-parser's port of Prometheus's formatter; it
//! writes `+Inf` as `Inf`), `/api/v1/query_exemplars` (always an empty list: no exemplars are
//! kept) and `/api/v1/status/buildinfo` (see `status_api`).
//!
//! Queries and the metadata look-ups are evaluated on blocking threads, at most
//! [`QueryLimits::max_concurrency`] at once (more wait for a turn within their timeout), each
//! within its timeout and sample limit. They take the store's read lock for each selection
//! only (the points are copied out), so scrapes and rule evaluations wait for one
//! selection at most, never for a whole query or for the answer to be written.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use promql_parser::parser::Expr;

use super::{QueryLimits, Shared, now_ms, read};
use crate::promql::{
    self, Engine, Labels, Matcher, MemStorage, Point, Series, Storage, Value, json,
};
use crate::promqltest::{parse_duration_param, parse_time};
use crate::template::gofmt;

/// What the query API shares: the engine (its compiled-regex cache outlives one query), the
/// limits and the turns.
pub(super) struct Queries {
    engine: Engine,
    limits: QueryLimits,
    turns: Arc<tokio::sync::Semaphore>,
    /// The step of subqueries written without one (ms): the global `evaluation_interval`, as
    /// Prometheus's engine takes it; set again by every reload.
    subquery_step_ms: std::sync::atomic::AtomicI64,
}

impl Queries {
    pub(super) fn new(limits: QueryLimits, evaluation_interval_ms: i64) -> Queries {
        Queries {
            engine: Engine::default()
                .max_samples(limits.max_samples)
                .lookback(limits.lookback_delta),
            turns: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrency.max(1))),
            limits,
            subquery_step_ms: std::sync::atomic::AtomicI64::new(evaluation_interval_ms),
        }
    }

    /// Takes the global `evaluation_interval` of a (re)loaded configuration.
    pub(super) fn set_evaluation_interval(&self, ms: i64) {
        self.subquery_step_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Queries {
    /// The server's query timeout (`--query.timeout`).
    pub(super) fn timeout(&self) -> Duration {
        self.limits.timeout
    }
}

/// The routes of the query API and of the rules and targets endpoints, to merge into the
/// daemon's router.
pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/federate", get(super::federate::federate))
        .route(
            "/api/v1/status/buildinfo",
            get(super::status_api::buildinfo),
        )
        .route(
            "/api/v1/rules",
            get(super::rules_api::rules).post(super::rules_api::rules),
        )
        .route("/api/v1/targets", get(super::targets_api::targets))
        .route("/api/v1/metadata", get(super::targets_api::metadata))
}

/// Prometheus's longest range answer: points per series.
const MAX_POINTS: i64 = 11_000;

/// The earliest and latest times the API takes (ms; about ±73 million years): times beyond
/// are taken as these, so no arithmetic on them can overflow.
const TIME_LIMIT: i64 = 1 << 61;

/// The store as queries see it: each selection takes the read lock for itself.
pub(super) struct SharedStore<'a>(pub(super) &'a std::sync::RwLock<MemStorage>);

impl Storage for SharedStore<'_> {
    fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<Series> {
        read(self.0).select(matchers, start, end)
    }

    fn select_latest(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<(Labels, Point)> {
        read(self.0).select_latest(matchers, start, end)
    }

    fn visit_windows(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        visit: &mut dyn FnMut(&Labels, &[Point]),
    ) {
        read(self.0).visit_windows(matchers, start, end, visit);
    }
}

/// Prometheus's earliest and latest times as it formats them (Go's `time.Time` text of
/// years beyond four digits, which its parser cannot read back): clients send them for "all
/// time", and Prometheus takes these two strings as its limits.
const MIN_TIME_TEXT: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_TEXT: &str = "292277025-08-18T07:12:54.999999999Z";

/// A time parameter as the API takes it (see [`TIME_LIMIT`]).
fn api_time(v: &str) -> Result<i64, String> {
    match v {
        MIN_TIME_TEXT => Ok(-TIME_LIMIT),
        MAX_TIME_TEXT => Ok(TIME_LIMIT),
        v => parse_time(v).map(|t| t.clamp(-TIME_LIMIT, TIME_LIMIT)),
    }
}

/// An error answer: Prometheus's `errorType` and its HTTP status.
#[derive(Debug)]
pub(super) struct ApiError {
    kind: &'static str,
    pub(super) message: String,
}

impl ApiError {
    /// A failure of the server itself (a task that panicked).
    pub(super) fn internal(e: impl std::fmt::Display) -> Self {
        ApiError {
            kind: "internal",
            message: e.to_string(),
        }
    }

    pub(super) fn bad_data(message: impl Into<String>) -> Self {
        ApiError {
            kind: "bad_data",
            message: message.into(),
        }
    }

    /// Prometheus's `invalidParamError`.
    pub(super) fn param(name: &str, e: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {name:?}: {e}"))
    }

    fn status(&self) -> StatusCode {
        match self.kind {
            "bad_data" => StatusCode::BAD_REQUEST,
            "execution" => StatusCode::UNPROCESSABLE_ENTITY,
            "timeout" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// What a successful request answers: the JSON of `data` (none: 204 No Content), and
/// warnings (Prometheus's `warnings`: the answer stands, but is not all there is).
pub(super) struct Data {
    json: String,
    warnings: Vec<&'static str>,
}

impl Data {
    /// A success without `data` (answered 204 No Content).
    fn none() -> Data {
        Data {
            json: String::new(),
            warnings: Vec::new(),
        }
    }
}

impl From<String> for Data {
    fn from(json: String) -> Data {
        Data {
            json,
            warnings: Vec::new(),
        }
    }
}

/// The warning of an answer cut to the request's `limit`, in Prometheus's words.
const TRUNCATED: &str = "results truncated due to limit";

pub(super) fn answer(result: Result<impl Into<Data>, ApiError>) -> Response {
    let (status, body) = match result.map(Into::into) {
        // Prometheus's answer to a success without data: no content at all.
        Ok(data) if data.json.is_empty() => return StatusCode::NO_CONTENT.into_response(),
        Ok(data) => (
            StatusCode::OK,
            json::success_with_warnings(&data.json, &data.warnings),
        ),
        Err(e) => (e.status(), json::error(e.kind, &e.message)),
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A request's parameters as Go's `Request.ParseForm` reads them: a form body (POST) first,
/// then the URL's query string. A pair Go cannot decode (a bad `%` escape, a `;` in it) is
/// left out, and the first such error kept: most of Prometheus's endpoints ignore it (Go's
/// `FormValue`), a few refuse the request for it ([`Params::form_error`]).
pub(super) struct Params {
    pairs: Vec<(String, String)>,
    form_error: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let query = req.uri().query().map(str::to_owned);
        let mut headers = req.headers().clone();
        // As Go's `ParseForm`: a body is read for these methods only.
        if !matches!(
            *req.method(),
            axum::http::Method::POST | axum::http::Method::PUT | axum::http::Method::PATCH
        ) {
            headers.remove(header::CONTENT_TYPE);
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Params::new(query.as_deref(), &headers, &body))
    }
}

impl Params {
    fn new(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Params {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';').next().is_some_and(|t| {
                    t.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        let mut pairs: Vec<(String, String)> = Vec::new();
        let body_error = if form {
            go_parse_query(body, &mut pairs)
        } else {
            None
        };
        let query_error = go_parse_query(query.unwrap_or("").as_bytes(), &mut pairs);
        Params {
            pairs,
            form_error: body_error.or(query_error),
        }
    }

    #[cfg(test)]
    pub(super) fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Params {
        Params {
            pairs: pairs.into_iter().collect(),
            form_error: None,
        }
    }

    /// Prometheus's refusal of a request whose form Go could not decode (`/api/v1/series`,
    /// `/api/v1/rules`; `/federate` says the same in plain text).
    pub(super) fn form_error(&self) -> Result<(), ApiError> {
        match &self.form_error {
            Some(e) => Err(ApiError::bad_data(format!(
                "error parsing form values: {e}"
            ))),
            None => Ok(()),
        }
    }

    /// The first value of `name`, or "" (Go's `FormValue`).
    pub(super) fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub(super) fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A time parameter, or `default` when absent (Prometheus's `parseTimeParam`, whose
    /// errors name the parameter twice).
    fn time(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            "" => Ok(default),
            v => api_time(v).map_err(|e| {
                ApiError::param(name, format!("invalid time value for '{name}': {e}"))
            }),
        }
    }

    /// The `limit` parameter: at most this many series, label names or values in the answer
    /// (0, the default: no limit).
    fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            "" => Ok(0),
            v => {
                let n = gofmt::atoi(v).map_err(|e| ApiError::param("limit", e))?;
                usize::try_from(n)
                    .map_err(|_| ApiError::param("limit", "limit must be non-negative"))
            }
        }
    }

    /// The `lookback_delta` parameter: the query's own lookback, `None` for the server's
    /// (also when it is zero or negative, as in Prometheus).
    fn lookback(&self) -> Result<Option<Duration>, ApiError> {
        match self.get("lookback_delta") {
            "" => Ok(None),
            v => {
                let ms = parse_duration_param(v).map_err(|e| {
                    ApiError::bad_data(format!("error parsing lookback delta duration: {e}"))
                })?;
                // In nanoseconds, as Go holds it: any positive duration is the query's own,
                // even one under a millisecond (whose window then holds nothing).
                let ns = match v.parse::<f64>() {
                    Ok(secs) if secs.is_finite() => (secs * 1e9) as i64,
                    _ => ms.saturating_mul(1_000_000),
                };
                Ok(u64::try_from(ns)
                    .ok()
                    .filter(|ns| *ns > 0)
                    .map(Duration::from_nanos))
            }
        }
    }

    /// The query's time limit: the server's, shortened by a `timeout` parameter.
    fn timeout(&self, limits: &QueryLimits) -> Result<Duration, ApiError> {
        match self.get("timeout") {
            "" => Ok(limits.timeout),
            v => {
                let ms = parse_duration_param(v).map_err(|e| ApiError::param("timeout", e))?;
                Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(limits.timeout))
            }
        }
    }
}

/// Go's `url.ParseQuery` into `pairs`: `&`-separated `key=value`, `+` a space, `%XX` a
/// byte. A pair with a `;` or a bad escape is skipped; returns the error Go returns (the
/// first bad escape; a `;` after it replaces it, as in Go).
fn go_parse_query(s: &[u8], pairs: &mut Vec<(String, String)>) -> Option<String> {
    let mut error = None;
    for pair in s.split(|b| *b == b'&') {
        if pair.contains(&b';') {
            error = Some("invalid semicolon separator in query".to_owned());
            continue;
        }
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        match (go_unescape(k), go_unescape(v)) {
            (Ok(k), Ok(v)) => pairs.push((k, v)),
            (Err(e), _) | (_, Err(e)) => {
                error.get_or_insert(e);
            }
        }
    }
    error
}

/// Go's `url.QueryUnescape`.
fn go_unescape(s: &[u8]) -> Result<String, String> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => match (
                s.get(i + 1).and_then(|b| hex(*b)),
                s.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    let bad = String::from_utf8_lossy(&s[i..(i + 3).min(s.len())]).into_owned();
                    return Err(format!("invalid URL escape {}", gofmt::quote(&bad)));
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Evaluates on a blocking thread once a turn is free, within `timeout` (waiting included).
pub(super) async fn evaluate<T: Send + 'static>(
    shared: Arc<Shared>,
    timeout: Duration,
    work: impl FnOnce(&Shared, Engine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let timed_out = || ApiError {
        kind: "timeout",
        message: "query timed out in query execution".to_owned(),
    };
    let started = std::time::Instant::now();
    let turn = tokio::time::timeout(timeout, shared.queries.turns.clone().acquire_owned())
        .await
        .map_err(|_| ApiError {
            kind: "timeout",
            message: "query timed out in query queue".to_owned(),
        })?
        .map_err(|_| ApiError {
            kind: "internal",
            message: "the query API is shutting down".to_owned(),
        })?;
    let left = timeout.saturating_sub(started.elapsed());
    if left.is_zero() {
        return Err(timed_out());
    }
    let step = shared
        .queries
        .subquery_step_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let engine = shared
        .queries
        .engine
        .clone()
        .default_subquery_step(Duration::from_millis(step.max(1) as u64))
        .timeout(left);
    let task = tokio::task::spawn_blocking(move || {
        // The turn is held until the evaluation ends, even if the client went away.
        let _turn = turn;
        work(&shared, engine)
    });
    // The engine stops itself at the deadline; this bounds the answer's wait all the same
    // (the JSON writing, a selection that takes long).
    match tokio::time::timeout(left + Duration::from_secs(1), task).await {
        Err(_) => Err(timed_out()),
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ApiError::internal(format!("query evaluation failed: {e}"))),
    }
}

fn parse_query(text: &str) -> Result<Expr, ApiError> {
    promql::parse(text).map_err(|e| ApiError::param("query", e))
}

/// An evaluation error as Prometheus classifies it.
fn exec_error(e: promql::EvalError) -> ApiError {
    let kind = if e.0.starts_with("query timed out") {
        "timeout"
    } else {
        "execution"
    };
    ApiError { kind, message: e.0 }
}

/// When a query is evaluated: at one time, or at every step of a range.
enum When {
    At(i64),
    Range { start: i64, end: i64, step: i64 },
}

/// Parses `timeout`, `lookback_delta` and `query` (in Prometheus's order, so a request with
/// several bad parameters names the same one), evaluates, writes the `data` of the answer
/// cut to `limit`.
async fn run_query(
    shared: Arc<Shared>,
    p: &Params,
    limit: usize,
    when: When,
) -> Result<Data, ApiError> {
    let timeout = p.timeout(&shared.queries.limits)?;
    let lookback = p.lookback()?;
    let expr = parse_query(p.get("query"))?;
    evaluate(shared, timeout, move |shared, engine| {
        let engine = match lookback {
            Some(d) => engine.lookback(d),
            None => engine,
        };
        let store = SharedStore(&shared.store);
        let (value, t) = match when {
            When::At(t) => (engine.instant(&store, &expr, t), t),
            When::Range { start, end, step } => (
                engine
                    .range(&store, &expr, start, end, step)
                    .map(Value::Matrix),
                end,
            ),
        };
        let mut value = value.map_err(exec_error)?;
        // Series past the limit are left out (in the answer's order: by labels); scalars and
        // strings are not series.
        let truncated = limit > 0
            && match &mut value {
                Value::Vector(v) if v.len() > limit => {
                    v.truncate(limit);
                    true
                }
                Value::Matrix(m) if m.len() > limit => {
                    m.truncate(limit);
                    true
                }
                _ => false,
            };
        Ok(Data {
            json: json::value(&value, t),
            warnings: truncated.then_some(TRUNCATED).into_iter().collect(),
        })
    })
    .await
}

/// `/api/v1/query`: `query`, `time` (default now), `timeout`.
async fn query(State(shared): State<Arc<Shared>>, p: Params) -> Response {
    answer(
        async {
            let limit = p.limit()?;
            let t = p.time("time", now_ms())?;
            run_query(shared, &p, limit, When::At(t)).await
        }
        .await,
    )
}

/// `/api/v1/query_range`: `query`, `start`, `end`, `step`, `timeout`.
async fn query_range(State(shared): State<Arc<Shared>>, p: Params) -> Response {
    answer(
        async {
            let limit = p.limit()?;
            let start = api_time(p.get("start")).map_err(|e| ApiError::param("start", e))?;
            let end = api_time(p.get("end")).map_err(|e| ApiError::param("end", e))?;
            if end < start {
                return Err(ApiError::param(
                    "end",
                    "end timestamp must not be before start time",
                ));
            }
            let step = parse_duration_param(p.get("step")).map_err(|e| ApiError::param("step", e))?;
            if step <= 0 {
                return Err(ApiError::param(
                    "step",
                    "zero or negative query resolution step widths are not accepted. Try a positive integer",
                ));
            }
            if (end - start) / step > MAX_POINTS {
                return Err(ApiError::bad_data(
                    "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
                ));
            }
            run_query(shared, &p, limit, When::Range { start, end, step }).await
        }
        .await,
    )
}

/// `/api/v1/query_exemplars`: `query`, `start`, `end`. Always an empty list once the
/// parameters are valid: the scraper keeps no exemplars (a Prometheus without
/// `--enable-feature=exemplar-storage` answers the same), so Grafana's exemplar toggle shows
/// none instead of failing.
async fn query_exemplars(p: Params) -> Response {
    answer((|| {
        let start = p.time("start", -TIME_LIMIT)?;
        let end = p.time("end", TIME_LIMIT)?;
        if end < start {
            return Err(ApiError::bad_data(
                "end timestamp must not be before start timestamp",
            ));
        }
        // Prometheus words this parse error without naming the parameter, and answers a
        // query without selectors with 204 No Content.
        let expr = promql::parse_syntax(p.get("query")).map_err(|e| ApiError::bad_data(e.0))?;
        let mut selectors = Vec::new();
        crate::promqltest::collect_selectors(&expr, &mut selectors);
        Ok(if selectors.is_empty() {
            Data::none()
        } else {
            Data::from("[]".to_owned())
        })
    })())
}

/// `/api/v1/format_query`: `query` laid out as Prometheus's formatter does (one line when it
/// fits in 100 characters, otherwise split and indented by nesting).
async fn format_query(p: Params) -> Response {
    // Only read, not evaluated: anything Prometheus parses is formatted.
    answer(
        promql::parse_syntax(p.get("query"))
            .map(|e| json::string(&e.prettify()))
            .map_err(|e| ApiError::param("query", e)),
    )
}

const NON_EMPTY: &str = "match[] must contain at least one non-empty matcher";

/// The matcher sets of `match[]` values (series selectors), each with at least one matcher
/// that does not match the empty string, as Prometheus requires.
pub(super) fn match_sets(values: &[&str]) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut sets = Vec::with_capacity(values.len());
    for v in values {
        // The parser refuses a selector of empty-matching matchers as a query would; say it
        // as Prometheus's metadata endpoints do.
        let parsed = promql::parse(v).map_err(|e| {
            if e.0.contains("must contain at least one non-empty matcher") {
                ApiError::param("match[]", NON_EMPTY)
            } else {
                ApiError::param("match[]", e)
            }
        })?;
        let Expr::VectorSelector(vs) = parsed else {
            return Err(ApiError::param(
                "match[]",
                format!("{v:?} is not a series selector"),
            ));
        };
        let mut ms = Vec::new();
        if let Some(name) = &vs.name {
            ms.push(Matcher::equal("__name__", name));
        }
        for m in &vs.matchers.matchers {
            ms.push(Matcher::from_ast(m).map_err(|e| ApiError::param("match[]", e))?);
        }
        if ms.iter().all(|m| m.matches("")) {
            return Err(ApiError::param("match[]", NON_EMPTY));
        }
        sets.push(ms);
    }
    Ok(sets)
}

/// The label sets of the series with a sample in `[start, end]` matching any of `sets` (all
/// series when `sets` is empty), sorted and without repeats. Only each series' newest sample
/// in the window is looked at (no decoding when the window ends after it).
fn matching_series(
    shared: &Shared,
    sets: &[Vec<Matcher>],
    start: i64,
    end: i64,
) -> std::collections::BTreeSet<Labels> {
    let store = SharedStore(&shared.store);
    let mut out = std::collections::BTreeSet::new();
    let all = [Vec::new()];
    let sets = if sets.is_empty() { &all[..] } else { sets };
    for ms in sets {
        // The store's windows are left-open; the API's are closed.
        for (labels, _) in store.select_latest(ms, start - 1, end) {
            out.insert(labels);
        }
    }
    out
}

/// A metadata request: `start` and `end` (default: all time), the `match[]` sets and the
/// `limit`.
struct Metadata {
    start: i64,
    end: i64,
    sets: Vec<Vec<Matcher>>,
    limit: usize,
}

impl Metadata {
    fn parse(p: &Params) -> Result<Metadata, ApiError> {
        // In Prometheus's order: a request with several bad parameters names the same one.
        let limit = p.limit()?;
        Ok(Metadata {
            start: p.time("start", -TIME_LIMIT)?,
            end: p.time("end", TIME_LIMIT)?,
            sets: match_sets(&p.all("match[]"))?,
            limit,
        })
    }

    /// Finds the matching series on a blocking thread, with the queries' turns and
    /// timeout; `items` turns them into the answer's list (each item as JSON, in order),
    /// which is cut to the limit.
    async fn answer(
        self,
        shared: Arc<Shared>,
        items: impl FnOnce(&std::collections::BTreeSet<Labels>) -> Vec<String> + Send + 'static,
    ) -> Result<Data, ApiError> {
        let timeout = shared.queries.limits.timeout;
        evaluate(shared, timeout, move |shared, _| {
            let mut items = items(&matching_series(shared, &self.sets, self.start, self.end));
            let truncated = self.limit > 0 && items.len() > self.limit;
            items.truncate(if truncated { self.limit } else { items.len() });
            Ok(Data {
                json: format!("[{}]", items.join(",")),
                warnings: truncated.then_some(TRUNCATED).into_iter().collect(),
            })
        })
        .await
    }
}

/// `/api/v1/series`: `match[]` (required, repeated), `start`, `end`.
async fn series(State(shared): State<Arc<Shared>>, p: Params) -> Response {
    answer(
        async {
            p.form_error()?;
            if p.all("match[]").is_empty() {
                return Err(ApiError::bad_data("no match[] parameter provided"));
            }
            Metadata::parse(&p)?
                .answer(shared, |found| found.iter().map(json::labels).collect())
                .await
        }
        .await,
    )
}

/// `/api/v1/labels`: the label names of the matching series (all series without `match[]`).
async fn labels(State(shared): State<Arc<Shared>>, p: Params) -> Response {
    answer(
        async {
            Metadata::parse(&p)?
                .answer(shared, |found| {
                    let names: std::collections::BTreeSet<&str> = found
                        .iter()
                        .flat_map(|ls| ls.iter().map(|(k, _)| k))
                        .collect();
                    names.into_iter().map(json::string).collect()
                })
                .await
        }
        .await,
    )
}

/// `/api/v1/label/<name>/values`: the values of one label over the matching series.
async fn label_values(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    p: Params,
) -> Response {
    answer(
        async {
            if name.is_empty() {
                return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
            }
            Metadata::parse(&p)?
                .answer(shared, move |found| {
                    let values: std::collections::BTreeSet<&str> =
                        found.iter().filter_map(|ls| ls.get(&name)).collect();
                    values.into_iter().map(json::string).collect()
                })
                .await
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_body_comes_before_the_query_string() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        let p = Params::new(Some("query=b&match[]=x"), &h, b"query=a+1&match%5B%5D=y");
        assert_eq!(p.get("query"), "a 1");
        assert_eq!(p.all("match[]"), ["y", "x"]);
        // Not a form: the body is not read.
        let p = Params::new(Some("query=b"), &HeaderMap::new(), b"query=a");
        assert_eq!(p.get("query"), "b");
        assert_eq!(p.get("time"), "");
    }

    #[test]
    fn forms_are_read_as_go_reads_them() {
        let mut pairs = Vec::new();
        assert_eq!(
            go_parse_query(b"a=1&b=%zz&c=x+y%21&&d&e=%4", &mut pairs),
            Some("invalid URL escape \"%zz\"".to_owned())
        );
        let want = [("a", "1"), ("c", "x y!"), ("d", "")];
        let got: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
        // A `;` makes the pair wrong and is the error Go reports, even after a bad escape.
        let mut pairs = Vec::new();
        assert_eq!(
            go_parse_query(b"q=%zz&a=1;b=2&k=v", &mut pairs),
            Some("invalid semicolon separator in query".to_owned())
        );
        assert_eq!(pairs, [("k".to_owned(), "v".to_owned())]);
        let p = Params::new(Some("match[]=up&x=%zz"), &HeaderMap::new(), b"");
        assert_eq!(p.get("match[]"), "up");
        assert_eq!(
            p.form_error().unwrap_err().message,
            "error parsing form values: invalid URL escape \"%zz\""
        );
    }

    #[test]
    fn match_sets_need_a_non_empty_matcher() {
        assert_eq!(match_sets(&["up", "{job=\"a\"}"]).unwrap().len(), 2);
        for bad in ["{job=~\".*\"}", "rate(up[5m])", "up{"] {
            let e = match_sets(&[bad]).unwrap_err();
            assert_eq!(e.kind, "bad_data");
            assert!(
                e.message.starts_with("invalid parameter \"match[]\": "),
                "{e:?}"
            );
        }
    }

    #[test]
    fn errors_get_prometheus_status_codes() {
        let timeout = exec_error(promql::EvalError(
            "query timed out in query execution".into(),
        ));
        assert_eq!(
            (timeout.kind, timeout.status()),
            ("timeout", StatusCode::SERVICE_UNAVAILABLE)
        );
        let exec = exec_error(promql::EvalError(
            "vector cannot contain metrics with the same labelset".into(),
        ));
        assert_eq!(
            (exec.kind, exec.status()),
            ("execution", StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(ApiError::bad_data("x").status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn limit_and_lookback_parameters() {
        let p = |k: &str, v: &str| Params::from_pairs(vec![(k.into(), v.into())]);
        assert_eq!(Params::from_pairs(vec![]).limit().unwrap(), 0);
        assert_eq!(p("limit", "+3").limit().unwrap(), 3);
        assert_eq!(
            p("limit", "-1").limit().unwrap_err().message,
            "invalid parameter \"limit\": limit must be non-negative"
        );
        assert_eq!(
            p("limit", "1.5").limit().unwrap_err().message,
            "invalid parameter \"limit\": strconv.Atoi: parsing \"1.5\": invalid syntax"
        );
        assert_eq!(Params::from_pairs(vec![]).lookback().unwrap(), None);
        assert_eq!(
            p("lookback_delta", "90s").lookback().unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            p("lookback_delta", "0.25").lookback().unwrap(),
            Some(Duration::from_millis(250))
        );
        // Under a millisecond: its own all the same (a window that holds nothing), as in Go.
        assert_eq!(
            p("lookback_delta", "0.0004").lookback().unwrap(),
            Some(Duration::from_micros(400))
        );
        // Zero or negative: the server's own.
        assert_eq!(p("lookback_delta", "0").lookback().unwrap(), None);
        assert_eq!(p("lookback_delta", "-5").lookback().unwrap(), None);
        assert_eq!(
            p("lookback_delta", "-1s").lookback().unwrap_err().message,
            "error parsing lookback delta duration: cannot parse \"-1s\" to a valid duration"
        );
    }

    #[test]
    fn timeouts_only_shorten_the_servers() {
        let limits = QueryLimits::default();
        let p = Params::from_pairs(vec![("timeout".into(), "5s".into())]);
        assert_eq!(p.timeout(&limits).unwrap(), Duration::from_secs(5));
        let p = Params::from_pairs(vec![("timeout".into(), "1h".into())]);
        assert_eq!(p.timeout(&limits).unwrap(), limits.timeout);
        let p = Params::from_pairs(vec![("timeout".into(), "soon".into())]);
        assert_eq!(
            p.timeout(&limits).unwrap_err().message,
            "invalid parameter \"timeout\": cannot parse \"soon\" to a valid duration"
        );
    }
}
