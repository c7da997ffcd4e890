//! Metric names, in one place.
//!
//! Deploy metrics (recorded by [`MetricsHook`](crate::hook::MetricsHook)) and the
//! dispatcher's own:
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `deploys_total` | `project`, `environment`, `status` | finished deployments |
//! | `deploy_duration_seconds` | `project`, `environment`, `status` | start to finish |
//! | `deploy_last_success_timestamp_seconds` | `project`, `environment` | Unix time of the last success |
//! | `deploys_in_progress` | `project`, `environment` | started, not finished |
//! | `deploy_step_duration_seconds` | `project`, `environment`, `step`, `status` | step start to finish |
//! | `axi_deploy_hook_events_dropped_total` | | events not queued for the hooks because the queue was full |
//! | `axi_deploy_hook_failures_total` | `hook` | hook calls that returned an error or panicked |
//! | `axi_deploy_stream_events_missed_total` | | live-stream events subscribers missed by falling behind the replay window (feature `stream`) |
//! | `axi_deploy_intake_events_total` | `source`, `result` | events received over HTTP (feature `http`): `source` is `events` or `github`, `result` is `stored`, `duplicate`, `conflict` (a stored id with other content) or `invalid` |
//! | `axi_deploy_trace_events_dropped_total` | | events [`TraceHook`](crate::trace::TraceHook) left out because too many deployments or steps were open |
//!
//! Span attributes (recorded by [`TraceHook`](crate::trace::TraceHook)) are the `SPAN_*`
//! constants; the semantic-convention names where one exists (`deployment.id`,
//! `deployment.environment.name`, `deployment.status`).

use axi_obs_core::otel::semconv::attribute as semconv;

/// Finished deployments, by `project`, `environment`, `status`.
pub const DEPLOYS_TOTAL: &str = "deploys_total";
/// Deployment duration, start to finish, in seconds.
pub const DEPLOY_DURATION: &str = "deploy_duration_seconds";
/// Unix time (seconds) of the last successful deployment.
pub const DEPLOY_LAST_SUCCESS: &str = "deploy_last_success_timestamp_seconds";
/// Deployments started and not finished.
pub const DEPLOYS_IN_PROGRESS: &str = "deploys_in_progress";
/// Step duration, in seconds.
pub const STEP_DURATION: &str = "deploy_step_duration_seconds";
/// Events dropped because the hook queue was full.
pub const HOOK_EVENTS_DROPPED_METRIC: &str = "axi_deploy_hook_events_dropped_total";
/// Hook calls that failed (error or panic), by `hook`.
pub const HOOK_FAILURES_METRIC: &str = "axi_deploy_hook_failures_total";

/// Live-stream events a subscriber missed because it fell behind the replay window.
pub const STREAM_EVENTS_MISSED_METRIC: &str = "axi_deploy_stream_events_missed_total";
/// Events received over HTTP, by `source` and `result`.
pub const INTAKE_EVENTS_METRIC: &str = "axi_deploy_intake_events_total";

/// Events the trace hook left out because too many deployments or steps were open.
pub const TRACE_EVENTS_DROPPED_METRIC: &str = "axi_deploy_trace_events_dropped_total";

/// Span attribute: the deployment id (semantic conventions).
pub const SPAN_DEPLOYMENT_ID: &str = semconv::DEPLOYMENT_ID;
/// Span attribute: the project deployed.
pub const SPAN_DEPLOYMENT_PROJECT: &str = "deployment.project";
/// Span attribute: the target environment (semantic conventions).
pub const SPAN_DEPLOYMENT_ENVIRONMENT: &str = semconv::DEPLOYMENT_ENVIRONMENT_NAME;
/// Span attribute: the version deployed.
pub const SPAN_DEPLOYMENT_VERSION: &str = "deployment.version";
/// Span attribute: the commit deployed.
pub const SPAN_DEPLOYMENT_COMMIT: &str = "deployment.commit";
/// Span attribute: who started the deployment.
pub const SPAN_DEPLOYMENT_ACTOR: &str = "deployment.actor";
/// Span attribute: why the deployment started.
pub const SPAN_DEPLOYMENT_TRIGGER: &str = "deployment.trigger";
/// Span attribute: how the deployment ended (`succeeded`, `failed`, `rolled_back`,
/// `cancelled`; semantic conventions).
pub const SPAN_DEPLOYMENT_STATUS: &str = semconv::DEPLOYMENT_STATUS;
/// Span attribute: the version a rolled-back deployment went back to.
pub const SPAN_DEPLOYMENT_ROLLED_BACK_TO: &str = "deployment.rolled_back_to";
/// Span attribute of a step span: its position, from 0.
pub const SPAN_STEP_INDEX: &str = "deployment.step.index";
/// Span attribute of a step span: its name.
pub const SPAN_STEP_NAME: &str = "deployment.step.name";

/// Describes every metric above to the current recorder.
pub(crate) fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(DEPLOYS_TOTAL, "Finished deployments, by status");
    metrics::describe_histogram!(
        DEPLOY_DURATION,
        Unit::Seconds,
        "Deployment duration from start to finish"
    );
    metrics::describe_gauge!(
        DEPLOY_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful deployment"
    );
    metrics::describe_gauge!(DEPLOYS_IN_PROGRESS, "Deployments started and not finished");
    metrics::describe_histogram!(
        STEP_DURATION,
        Unit::Seconds,
        "Deployment step duration from start to finish"
    );
    describe_dispatcher();
}

pub(crate) fn describe_dispatcher() {
    metrics::describe_counter!(
        HOOK_EVENTS_DROPPED_METRIC,
        "Deploy events not handed to hooks because the bounded hook queue was full"
    );
    metrics::describe_counter!(
        HOOK_FAILURES_METRIC,
        "Deploy hook calls that returned an error or panicked"
    );
}
