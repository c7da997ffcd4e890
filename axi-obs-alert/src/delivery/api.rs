//! Alertmanager's HTTP API v2 over a running [`Runner`]: the endpoints and JSON shapes of
//! `api/v2/openapi.yaml` that `amtool`, Grafana's Alertmanager data source and Prometheus
//! use: alerts (list, post), alert groups, silences (list, get, post, delete), receivers
//! and status, plus `/-/healthy` and `/-/ready`.
//!
//! Errors are answered as Alertmanager answers them: status 400 (or 404, 500) with the
//! message as a JSON string.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::dispatch::{AlertStatus, GroupStatus};
use super::matcher::Matcher;
use super::model::{AmAlert, LabelSet, parse_rfc3339, rfc3339_millis};
use super::runner::{Runner, RunnerError};
use super::silence::{MatcherRecord, Silence, SilenceError, SilenceState};

/// The largest `POST /api/v2/alerts` body taken (32 MiB); a larger one is answered 413.
/// Alertmanager reads any size; Prometheus sends at most 256 alerts a request, which stays
/// far below this even with annotations of tens of kilobytes each (axum's own 2 MiB
/// default does not).
pub const MAX_POSTED_ALERTS_BYTES: usize = 32 << 20;

/// What `GET /api/v2/status` reports besides the runner's state.
#[derive(Debug, Clone, Default)]
pub struct ApiInfo {
    /// The configuration file's text (`config.original`).
    pub config_text: String,
    /// When the process started (ms since the epoch), reported as `uptime`.
    pub started_ms: i64,
}

#[derive(Clone)]
struct ApiState {
    runner: Runner,
    started_ms: i64,
    config_text: ConfigText,
}

/// The configuration text `GET /api/v2/status` shows, replaced on reload.
pub(crate) type ConfigText = std::sync::Arc<std::sync::RwLock<String>>;

/// The API's routes (`/api/v2/...`, `/-/healthy`, `/-/ready`) over `runner`.
///
/// ```no_run
/// # async fn demo(runner: axi_obs_alert::delivery::Runner) {
/// use axi_obs_alert::delivery::{ApiInfo, api_router};
///
/// let app = api_router(runner, ApiInfo::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9093").await.unwrap();
/// axum::serve(listener, app).await.unwrap();
/// # }
/// ```
pub fn api_router(runner: Runner, info: ApiInfo) -> Router {
    api_router_with(
        runner,
        info.started_ms,
        std::sync::Arc::new(info.config_text.into()),
    )
}

/// [`api_router`] with the configuration text shared with whoever reloads it.
pub(crate) fn api_router_with(runner: Runner, started_ms: i64, config_text: ConfigText) -> Router {
    describe_api_metrics();
    let state = ApiState {
        runner,
        started_ms,
        config_text,
    };
    Router::new()
        .route("/api/v2/status", get(status))
        .route("/api/v2/receivers", get(receivers))
        .route(
            "/api/v2/alerts",
            get(get_alerts)
                .post(post_alerts)
                .layer(DefaultBodyLimit::max(MAX_POSTED_ALERTS_BYTES)),
        )
        .route("/api/v2/alerts/groups", get(get_groups))
        .route("/api/v2/silences", get(get_silences).post(post_silence))
        .route(
            "/api/v2/silence/{id}",
            get(get_silence).delete(delete_silence),
        )
        .route("/-/healthy", get(|| async { "OK" }))
        .route("/-/ready", get(|| async { "OK" }))
        .with_state(state)
}

/// An error answered as Alertmanager does: the message as a JSON string.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(Value::String(self.1))).into_response()
    }
}

impl From<RunnerError> for ApiError {
    fn from(e: RunnerError) -> Self {
        match e {
            RunnerError::Silence(SilenceError::NotFound(_)) => {
                ApiError(StatusCode::NOT_FOUND, "silence not found".to_string())
            }
            // Alertmanager's wording for a silence that would mute everything (no prefix).
            RunnerError::Silence(e @ SilenceError::MatchesEverything) => ApiError(
                StatusCode::BAD_REQUEST,
                format!("invalid silence: matcher set 0: {e}"),
            ),
            RunnerError::Silence(e) => ApiError(
                StatusCode::BAD_REQUEST,
                format!("Failed to create silence: {e}"),
            ),
            RunnerError::Stopped => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

/// Where the configuration holds secrets (its `Secret` fields): `global` SMTP credentials,
/// fields of the receivers' `*_configs` (webhook, DingTalk and WeCom URLs carry tokens) and
/// remediation URLs. Only there: a label named `url` in a matcher is no secret.
const GLOBAL_SECRETS: [&str; 2] = ["smtp_auth_password", "smtp_auth_secret"];
const RECEIVER_SECRETS: [&str; 6] = [
    "url",
    "access_token",
    "secret",
    "key",
    "auth_password",
    "auth_secret",
];

/// The configuration as `/api/v2/status` shows it: written back out as YAML with every secret
/// as `<secret>`, as Alertmanager marshals its `Secret` and `SecretURL` fields (the status
/// endpoint has no authentication). Nothing when the text does not parse (it was loaded, so
/// it does; a guess at redacting unparsed text could leak).
fn redact_secrets(text: &str) -> String {
    use serde_norway::Value as Y;
    fn hide(m: &mut serde_norway::Mapping, keys: &[&str]) {
        for (k, v) in m.iter_mut() {
            if k.as_str().is_some_and(|k| keys.contains(&k)) && !v.is_null() {
                *v = Y::String("<secret>".into());
            }
        }
    }
    fn each_mapping(v: &mut Y, f: &mut dyn FnMut(&mut serde_norway::Mapping)) {
        if let Y::Sequence(items) = v {
            for item in items {
                if let Y::Mapping(m) = item {
                    f(m);
                }
            }
        }
    }
    let Ok(mut doc) = serde_norway::from_str::<Y>(text) else {
        return String::new();
    };
    if let Y::Mapping(top) = &mut doc {
        if let Some(Y::Mapping(global)) = top.get_mut("global") {
            hide(global, &GLOBAL_SECRETS);
        }
        if let Some(receivers) = top.get_mut("receivers") {
            each_mapping(receivers, &mut |receiver| {
                for (k, configs) in receiver.iter_mut() {
                    if k.as_str().is_some_and(|k| k.ends_with("_configs")) {
                        each_mapping(configs, &mut |c| hide(c, &RECEIVER_SECRETS));
                    }
                }
            });
        }
        if let Some(remediations) = top.get_mut("remediations") {
            each_mapping(remediations, &mut |r| hide(r, &["url"]));
        }
    }
    serde_norway::to_string(&doc).unwrap_or_default()
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

async fn status(State(s): State<ApiState>) -> axum::Json<Value> {
    let config = redact_secrets(
        &s.config_text
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    axum::Json(json!({
        "cluster": {"status": "disabled", "peers": []},
        "config": {"original": config},
        "uptime": rfc3339_millis(s.started_ms),
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": concat!("rust", env!("CARGO_PKG_RUST_VERSION")),
        },
    }))
}

async fn receivers(State(s): State<ApiState>) -> Result<axum::Json<Value>, ApiError> {
    let names = s.runner.inspect(|d, _| d.receiver_names().to_vec()).await?;
    Ok(axum::Json(Value::Array(
        names.into_iter().map(|n| json!({"name": n})).collect(),
    )))
}

/// The query parameters of `GET /alerts` and `GET /alerts/groups`.
struct AlertFilter {
    active: bool,
    silenced: bool,
    inhibited: bool,
    matchers: Vec<Matcher>,
    receiver: Option<regex::Regex>,
}

/// Go's `strconv.ParseBool`.
/// A boolean query parameter; an empty value is `default`, as in Alertmanager.
fn parse_bool(name: &str, v: &str, default: bool) -> Result<bool, ApiError> {
    if v.is_empty() {
        return Ok(default);
    }
    crate::template::gofmt::parse_bool(v)
        .ok_or_else(|| bad(format!("{name} in query must be of type boolean: {v:?}")))
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn parse_filter_matchers(values: &[String]) -> Result<Vec<Matcher>, ApiError> {
    let mut out = Vec::new();
    for v in values {
        out.extend(Matcher::parse_list(v).map_err(bad)?);
    }
    Ok(out)
}

impl AlertFilter {
    fn parse(q: Option<&str>) -> Result<AlertFilter, ApiError> {
        let mut f = AlertFilter {
            active: true,
            silenced: true,
            inhibited: true,
            matchers: Vec::new(),
            receiver: None,
        };
        let mut filters = Vec::new();
        for (k, v) in query_pairs(q) {
            match k.as_str() {
                "active" => f.active = parse_bool(&k, &v, true)?,
                "silenced" => f.silenced = parse_bool(&k, &v, true)?,
                "inhibited" => f.inhibited = parse_bool(&k, &v, true)?,
                // Nothing is ever unprocessed here: the state is computed when asked.
                "unprocessed" => {
                    parse_bool(&k, &v, true)?;
                }
                "filter" => filters.push(v),
                "receiver" if !v.is_empty() => {
                    f.receiver = Some(
                        regex::Regex::new(&format!("^(?:{})$", crate::goregex::go_syntax(&v)))
                            .map_err(|e| bad(format!("failed to parse receiver param: {e}")))?,
                    );
                }
                _ => {}
            }
        }
        f.matchers = parse_filter_matchers(&filters)?;
        Ok(f)
    }

    /// Alertmanager's `alertFilter`, with the receiver filter of `getAlertsHandler`.
    fn keeps(&self, a: &AlertStatus) -> bool {
        if let Some(re) = &self.receiver
            && !a.receivers.iter().any(|r| re.is_match(r))
        {
            return false;
        }
        if !self.matchers.iter().all(|m| m.matches(&a.alert.labels)) {
            return false;
        }
        let silenced = !a.silenced_by.is_empty();
        let inhibited = !a.inhibited_by.is_empty();
        if !self.active && !silenced && !inhibited {
            return false;
        }
        if !self.silenced && silenced {
            return false;
        }
        if !self.inhibited && inhibited {
            return false;
        }
        true
    }
}

/// An alert as the API shows it; `muted_by`: the time intervals muting its group (only the
/// groups endpoint shows them, as Alertmanager's does).
fn alert_json(a: &AlertStatus, muted_by: &[String]) -> Value {
    let mut v = json!({
        "annotations": a.alert.annotations,
        "endsAt": rfc3339_millis(a.alert.ends_at.unwrap_or(0)),
        "fingerprint": a.fingerprint.to_string(),
        "receivers": a.receivers.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
        "startsAt": rfc3339_millis(a.alert.starts_at),
        "status": {
            "inhibitedBy": a.inhibited_by.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "mutedBy": muted_by,
            "silencedBy": a.silenced_by,
            "state": if muted_by.is_empty() { a.state() } else { "suppressed" },
        },
        "updatedAt": rfc3339_millis(a.updated_at),
        "labels": a.alert.labels,
    });
    if !a.alert.generator_url.is_empty() {
        v["generatorURL"] = Value::String(a.alert.generator_url.clone());
    }
    v
}

async fn get_alerts(
    State(s): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    let filter = AlertFilter::parse(q.as_deref())?;
    let alerts = s.runner.inspect(|d, now| d.alerts(now)).await?;
    Ok(axum::Json(Value::Array(
        alerts
            .iter()
            .filter(|a| filter.keeps(a))
            .map(|a| alert_json(a, &[]))
            .collect(),
    )))
}

async fn get_groups(
    State(s): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    let filter = AlertFilter::parse(q.as_deref())?;
    // `muted=false` leaves out the groups muted by time intervals.
    let mut muted = true;
    for (k, v) in query_pairs(q.as_deref()) {
        if k == "muted" {
            muted = parse_bool(&k, &v, true)?;
        }
    }
    let groups: Vec<GroupStatus> = s.runner.inspect(|d, now| d.groups(now)).await?;
    let out = groups
        .iter()
        .filter(|g| muted || g.muted_by.is_empty())
        .filter(|g| {
            filter
                .receiver
                .as_ref()
                .is_none_or(|re| re.is_match(&g.receiver))
        })
        .filter_map(|g| {
            let alerts: Vec<Value> = g
                .alerts
                .iter()
                .filter(|a| filter.keeps(a))
                .map(|a| alert_json(a, &g.muted_by))
                .collect();
            (!alerts.is_empty()).then(|| {
                json!({
                    "alerts": alerts,
                    "labels": g.labels,
                    "receiver": {"name": g.receiver},
                })
            })
        })
        .collect();
    Ok(axum::Json(Value::Array(out)))
}

/// Alerts received through `POST /api/v2/alerts`, by `status` (`firing`, `resolved`)
/// (counter, Alertmanager's name).
pub const METRIC_ALERTS_RECEIVED_TOTAL: &str = "alertmanager_alerts_received_total";
/// Alerts refused by `POST /api/v2/alerts` as invalid (counter, Alertmanager's name).
pub const METRIC_ALERTS_INVALID_TOTAL: &str = "alertmanager_alerts_invalid_total";

fn describe_api_metrics() {
    metrics::describe_counter!(
        METRIC_ALERTS_RECEIVED_TOTAL,
        "The total number of received alerts."
    );
    metrics::describe_counter!(
        METRIC_ALERTS_INVALID_TOTAL,
        "The total number of received alerts that were invalid."
    );
}

/// `postableAlert`.
/// Fields beyond these are ignored, as Alertmanager's decoder ignores them.
#[derive(Deserialize)]
struct PostedAlert {
    labels: Option<LabelSet>,
    #[serde(default)]
    annotations: LabelSet,
    #[serde(rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(rename = "endsAt")]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL", default)]
    generator_url: String,
}

fn time_field(i: usize, name: &str, v: Option<&str>) -> Result<Option<i64>, String> {
    match v {
        None | Some("") => Ok(None),
        Some(t) => parse_rfc3339(t).map_err(|e| format!("alerts[{i}].{name}: {e}")),
    }
}

/// `POST /api/v2/alerts`: the defaults of Alertmanager's `postAlertsHandler` (a missing
/// start is now, or the end when only the end is given; a missing end is left to the
/// dispatcher's `resolve_timeout`), then its validation. Valid alerts are taken even when
/// others are refused; the refusals are answered with 400, one line each.
async fn post_alerts(State(s): State<ApiState>, body: Bytes) -> Result<StatusCode, ApiError> {
    let posted: Vec<PostedAlert> = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "body: line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let now = s.runner.now_ms();
    let mut alerts = Vec::with_capacity(posted.len());
    let mut errors = Vec::new();
    for (i, p) in posted.into_iter().enumerate() {
        match validate(i, p, now) {
            Ok(a) => alerts.push(a),
            Err(e) => errors.push(e),
        }
    }
    let resolved = alerts.iter().filter(|a| a.resolved_at(now)).count() as u64;
    metrics::counter!(METRIC_ALERTS_RECEIVED_TOTAL, "status" => "firing")
        .increment(alerts.len() as u64 - resolved);
    metrics::counter!(METRIC_ALERTS_RECEIVED_TOTAL, "status" => "resolved").increment(resolved);
    metrics::counter!(METRIC_ALERTS_INVALID_TOTAL).increment(errors.len() as u64);
    if !alerts.is_empty() && !s.runner.send(alerts).await {
        return Err(RunnerError::Stopped.into());
    }
    if errors.is_empty() {
        Ok(StatusCode::OK)
    } else {
        Err(bad(errors.join("\n")))
    }
}

fn validate(i: usize, p: PostedAlert, now: i64) -> Result<AmAlert, String> {
    // An empty value is no label at all, as in Prometheus.
    let mut labels = p.labels.unwrap_or_default();
    labels.retain(|_, v| !v.is_empty());
    if labels.is_empty() {
        return Err(format!("alerts[{i}]: at least one label pair required"));
    }
    for (k, v) in &labels {
        if k.is_empty() {
            return Err(format!(
                "alerts[{i}]: invalid label name {k:?} (value {v:?})"
            ));
        }
    }
    let ends_at = time_field(i, "endsAt", p.ends_at.as_deref())?;
    let starts_at = match time_field(i, "startsAt", p.starts_at.as_deref())? {
        Some(t) => t,
        None => ends_at.unwrap_or(now),
    };
    if let Some(e) = ends_at
        && e < starts_at
    {
        return Err(format!("alerts[{i}]: start time must be before end time"));
    }
    Ok(AmAlert {
        labels,
        annotations: p.annotations,
        starts_at,
        ends_at,
        generator_url: p.generator_url,
    })
}

fn silence_json(s: &Silence, now: i64) -> Value {
    json!({
        "id": s.id,
        "status": {"state": s.state(now).as_str()},
        "updatedAt": rfc3339_millis(s.updated_at),
        "comment": s.comment,
        "createdBy": s.created_by,
        "endsAt": rfc3339_millis(s.ends_at),
        "matchers": s.matchers.iter().map(MatcherRecord::from).collect::<Vec<_>>(),
        "startsAt": rfc3339_millis(s.starts_at),
    })
}

/// Alertmanager's `SortSilences`: active ones by end, then pending ones by start, then
/// expired ones, the latest end first.
fn silence_order(a: &Silence, b: &Silence, now: i64) -> std::cmp::Ordering {
    let rank = |s: &Silence| match s.state(now) {
        SilenceState::Active => 0,
        SilenceState::Pending => 1,
        SilenceState::Expired => 2,
    };
    rank(a).cmp(&rank(b)).then_with(|| match a.state(now) {
        SilenceState::Active => a.ends_at.cmp(&b.ends_at),
        SilenceState::Pending => a.starts_at.cmp(&b.starts_at),
        SilenceState::Expired => b.ends_at.cmp(&a.ends_at),
    })
}

/// Whether a silence passes the `filter` matchers of `GET /silences`: each filter names
/// a label the silence has a matcher for, and matches that matcher's value.
fn silence_matches_filter(s: &Silence, filter: &[Matcher]) -> bool {
    filter.iter().all(|f| {
        s.matchers.iter().any(|m| {
            m.name == f.name && f.matches(&LabelSet::from([(m.name.clone(), m.value.clone())]))
        })
    })
}

async fn get_silences(
    State(s): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    let pairs = query_pairs(q.as_deref());
    let filters: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "filter")
        .map(|(_, v)| v.clone())
        .collect();
    let creators: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "creator")
        .map(|(_, v)| v.clone())
        .collect();
    let filter = parse_filter_matchers(&filters)?;
    let out = s
        .runner
        .inspect(move |d, now| {
            let mut list: Vec<&Silence> = d
                .silences()
                .list()
                .into_iter()
                .filter(|s| silence_matches_filter(s, &filter))
                .filter(|s| creators.is_empty() || creators.contains(&s.created_by))
                .collect();
            list.sort_by(|a, b| silence_order(a, b, now));
            list.iter()
                .map(|s| silence_json(s, now))
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(axum::Json(Value::Array(out)))
}

async fn get_silence(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let found = s
        .runner
        .inspect(move |d, now| d.silences().get(&id).map(|s| silence_json(s, now)))
        .await?;
    found
        .map(axum::Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, String::new()))
}

async fn delete_silence(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match s.runner.expire_silence(id).await {
        // Expiring an expired silence is no error to Alertmanager 0.33: 200.
        Ok(()) | Err(RunnerError::Silence(SilenceError::AlreadyExpired(_))) => Ok(StatusCode::OK),
        Err(e) => Err(e.into()),
    }
}

/// `postableSilence`; other fields (a GET answer's `status`, `updatedAt`) are ignored, as
/// Alertmanager ignores them.
#[derive(Deserialize)]
struct PostedSilence {
    #[serde(default)]
    id: String,
    matchers: Vec<MatcherRecord>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "createdBy")]
    created_by: String,
    comment: String,
}

async fn post_silence(
    State(s): State<ApiState>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let p: PostedSilence = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "body: line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    if p.matchers.is_empty() {
        return Err(bad("matchers: at least one matcher is required"));
    }
    let matchers = p
        .matchers
        .iter()
        .map(MatcherRecord::to_matcher)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("matchers: {e}")))?;
    let time = |name: &str, v: &str| -> Result<i64, ApiError> {
        parse_rfc3339(v)
            .map_err(|e| bad(format!("{name}: {e}")))?
            .ok_or_else(|| bad(format!("{name}: required")))
    };
    let starts_at = time("startsAt", &p.starts_at)?;
    let ends_at = time("endsAt", &p.ends_at)?;
    if starts_at > ends_at {
        return Err(bad(
            "Failed to create silence: start time must be before end time",
        ));
    }
    let (id, created_by, comment) = (p.id, p.created_by, p.comment);
    let new_id = s
        .runner
        .update(move |d, now| {
            if ends_at < now {
                return Err(SilenceError::EndInPast);
            }
            let silences = d.silences_mut();
            if id.is_empty() {
                silences.create(matchers, starts_at, ends_at, &created_by, &comment, now)
            } else {
                silences.update(
                    &id,
                    matchers,
                    starts_at,
                    ends_at,
                    &created_by,
                    &comment,
                    now,
                )
            }
        })
        .await?
        .map_err(RunnerError::Silence)?;
    Ok(axum::Json(json!({"silenceID": new_id})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_boolean_is_the_default() {
        let Ok(f) = AlertFilter::parse(Some("active=&silenced=false&inhibited=")) else {
            panic!("refused");
        };
        assert!(f.active && !f.silenced && f.inhibited);
        assert!(matches!(super::parse_bool("muted", "", true), Ok(true)));
        assert!(matches!(
            super::parse_bool("muted", "false", true),
            Ok(false)
        ));
        assert!(super::parse_bool("muted", "maybe", true).is_err());
    }

    #[test]
    fn status_shows_no_secret() {
        let text = "global:\n  smtp_auth_password: hunter2\n  smtp_from: a@b\nroute:\n  receiver: r\n  routes:\n  - matchers: ['url=\"/health\"']\n    match: {key: k1, secret: s1}\ninhibit_rules:\n- source_match: {url: u1}\nreceivers:\n- name: r\n  webhook_configs: [{url: 'http://x/?token=T0K'}]\n  dingtalk_configs: [{access_token: AT, secret: SEC}]\n  wecom_configs: [{key: K3Y}]\n  email_configs: [{to: ops@x, auth_password: PW, auth_secret: AS, headers: {key: h1}}]\nremediations:\n- name: fix\n  url: http://fixer/?token=REM\n";
        let shown = redact_secrets(text);
        for secret in ["hunter2", "T0K", "AT", "SEC", "K3Y", "PW", "AS", "REM"] {
            assert!(!shown.contains(secret), "{secret} in\n{shown}");
        }
        assert_eq!(shown.matches("<secret>").count(), 8, "{shown}");
        // What is not secret stays, labels named like secrets included.
        for kept in [
            "smtp_from: a@b",
            "to: ops@x",
            "/health",
            "k1",
            "s1",
            "u1",
            "h1",
        ] {
            assert!(shown.contains(kept), "{kept} missing from\n{shown}");
        }
        assert_eq!(redact_secrets("route: ["), "");
    }
}
