//! GitHub webhooks: signature verification and the mapping of `workflow_run`, `deployment`
//! and `deployment_status` to deploy events (`POST /api/deploy/github`).
//!
//! # Verification
//!
//! Every request must carry `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw
//! body keyed with the configured secret; it is compared in constant time. Missing, malformed
//! or wrong signatures get `401` and nothing is read. Then `X-GitHub-Delivery` (required) is
//! looked up in a bounded memory of recent delivery ids (default
//! [`DEFAULT_DELIVERY_MEMORY`], oldest forgotten first): a replayed delivery gets `200`
//! `{"duplicate_delivery": true}` and adds nothing. Beyond that memory (or after a restart) a
//! replay is still harmless: the event ids below are derived from GitHub's own ids, and the
//! history stores an event id once. Payloads may be sent as `application/json` or
//! `application/x-www-form-urlencoded` (`payload=`).
//!
//! ```
//! use axi_obs_deploy::http::github::{sign, verify};
//!
//! let body = br#"{"zen":"Keep it logically awesome."}"#;
//! let header = sign(b"secret", body);
//! assert!(header.starts_with("sha256="));
//! assert!(verify(b"secret", body, Some(&header)).is_ok());
//! assert!(verify(b"other", body, Some(&header)).is_err());
//! assert!(verify(b"secret", body, None).is_err());
//! ```
//!
//! # Mapping
//!
//! `project` is the repository's `name`. Event ids are `<deployment id>-started` for the start
//! and `<deployment id>-...` as below for the end, so every source of the same start (say
//! `requested` and `in_progress`) is stored once.
//!
//! | GitHub event | action / state | deploy events |
//! |---|---|---|
//! | `workflow_run` | `requested`, `in_progress` | `started` |
//! | `workflow_run` | `completed` | `started` (if not seen) and, by `conclusion`: `success` → `succeeded`; `failure`, `timed_out`, `startup_failure`, `action_required` → `failed` (reason = conclusion); `cancelled`, `skipped`, `stale`, `neutral` → `cancelled` (reason = conclusion); anything else → `failed` |
//! | `deployment` | `created` | `started` |
//! | `deployment_status` | `queued`, `pending`, `in_progress`, `waiting` | `started` (if not seen) |
//! | `deployment_status` | `success` | `started` (if not seen), `succeeded` |
//! | `deployment_status` | `failure`, `error` | `started` (if not seen), `failed` (reason = the status description, else the state) |
//! | `deployment_status` | `inactive` (superseded) and others | nothing |
//! | `ping` | | nothing, `200` |
//! | other events and actions | | nothing, `200 {"ignored": ...}` |
//!
//! | field | `workflow_run` | `deployment`, `deployment_status` |
//! |---|---|---|
//! | deployment id | `github-run-<run id>-<run_attempt>` | `github-deployment-<deployment id>` |
//! | environment | `head_branch` | `deployment.environment` |
//! | version | the first 7 characters of `head_sha` | `deployment.ref` (the short sha when empty) |
//! | started at | `run_started_at`, else `created_at` | `deployment.created_at` |
//! | commit, commit time | `head_sha`, `head_commit.timestamp` | `deployment.sha`, unknown |
//! | actor | `triggering_actor`, `actor`, else `sender` login | `deployment.creator` login |
//! | trigger | `event` (`push`, `workflow_dispatch`, ...) | `deployment.task` |
//! | terminal event time | `updated_at` | `deployment_status.created_at` |
//!
//! With [`GithubConfig::workflows`], only runs of the named workflows (`workflow.name`, else
//! `workflow_run.name`) count; others are ignored, so a test workflow is not a deploy.

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use time::OffsetDateTime;

use super::Shared;
use super::intake::store;
use super::params::ApiError;
use crate::event::{DeploymentRef, Event, EventKind, SCHEMA_VERSION};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The event name header.
pub const EVENT_HEADER: &str = "x-github-event";
/// The delivery id header.
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// Default number of delivery ids remembered.
pub const DEFAULT_DELIVERY_MEMORY: usize = 10_000;

/// Longest accepted delivery id, in bytes (GitHub's are 36-character GUIDs).
const MAX_DELIVERY_LEN: usize = 128;

/// Why a signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    #[error("missing X-Hub-Signature-256")]
    Missing,
    /// Not `sha256=` and 64 hex digits.
    #[error("malformed X-Hub-Signature-256 (expected sha256=<64 hex digits>)")]
    Malformed,
    /// Does not match the body and secret.
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; the error case cannot happen.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// The `X-Hub-Signature-256` value GitHub sends for `body` with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    let digest = m.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest.iter() {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Checks `header` (the `X-Hub-Signature-256` value) against `body` and `secret`, in
/// constant time.
///
/// # Errors
///
/// [`SignatureError`] saying what is wrong.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let mut expected = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16).ok_or(SignatureError::Malformed);
        expected[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    let mut m = mac(secret);
    m.update(body);
    m.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The GitHub webhook's configuration.
#[derive(Clone, Default)]
#[must_use]
pub struct GithubConfig {
    secret: Vec<u8>,
    workflows: Option<HashSet<String>>,
    delivery_memory: Option<NonZeroUsize>,
}

impl std::fmt::Debug for GithubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubConfig")
            .field("secret", &"<redacted>")
            .field("workflows", &self.workflows)
            .field("delivery_memory", &self.delivery_memory)
            .finish()
    }
}

impl GithubConfig {
    /// A configuration with `secret` (the webhook's "Secret" field).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self::default().secret(secret)
    }

    /// The shared secret. An empty secret refuses every request.
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = secret.into();
        self
    }

    /// Only `workflow_run` events of these workflows (by name) are deploys. Defaults to
    /// every workflow.
    pub fn workflows<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.workflows = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// How many delivery ids are remembered to answer replays. Defaults to
    /// [`DEFAULT_DELIVERY_MEMORY`].
    pub fn delivery_memory(mut self, ids: NonZeroUsize) -> Self {
        self.delivery_memory = Some(ids);
        self
    }
}

/// The webhook's state: configuration and the delivery ids seen.
#[derive(Debug)]
pub(crate) struct Webhook {
    config: GithubConfig,
    seen: Mutex<Deliveries>,
}

#[derive(Debug)]
struct Deliveries {
    ids: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
    capacity: usize,
}

impl Deliveries {
    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: &str) {
        let id: Arc<str> = id.into();
        if !self.ids.insert(id.clone()) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }
}

impl Webhook {
    pub(crate) fn new(config: GithubConfig) -> Self {
        let capacity = config
            .delivery_memory
            .map_or(DEFAULT_DELIVERY_MEMORY, NonZeroUsize::get);
        Self {
            config,
            seen: Mutex::new(Deliveries {
                ids: HashSet::new(),
                order: VecDeque::new(),
                capacity,
            }),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Deliveries> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a webhook delivery maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mapped {
    /// These deploy events (stored idempotently by id).
    Events(Vec<Event>),
    /// Nothing: the event, action or state is not a deploy transition (the reason says which).
    Ignored(String),
}

/// Why a payload could not be mapped.
#[derive(Debug, thiserror::Error)]
#[error("GitHub `{event}` payload: {source}")]
pub struct MapError {
    /// The `X-GitHub-Event` name.
    pub event: String,
    /// serde's message names the missing or mistyped field.
    #[source]
    pub source: serde_json::Error,
}

#[derive(Deserialize)]
struct Repo {
    name: String,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct HeadCommit {
    #[serde(default, with = "time::serde::rfc3339::option")]
    timestamp: Option<OffsetDateTime>,
}

#[derive(Deserialize)]
struct WorkflowRun {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    head_branch: Option<String>,
    head_sha: String,
    #[serde(default)]
    run_attempt: Option<u32>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    conclusion: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    run_started_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    updated_at: Option<OffsetDateTime>,
    #[serde(default)]
    actor: Option<User>,
    #[serde(default)]
    triggering_actor: Option<User>,
    #[serde(default)]
    head_commit: Option<HeadCommit>,
}

#[derive(Deserialize)]
struct WorkflowRunPayload {
    action: String,
    workflow_run: WorkflowRun,
    #[serde(default)]
    workflow: Option<Named>,
    repository: Repo,
    #[serde(default)]
    sender: Option<User>,
}

#[derive(Deserialize)]
struct GhDeployment {
    id: u64,
    sha: String,
    #[serde(rename = "ref", default)]
    git_ref: String,
    #[serde(default)]
    task: Option<String>,
    environment: String,
    #[serde(default)]
    creator: Option<User>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

#[derive(Deserialize)]
struct DeploymentPayload {
    action: String,
    deployment: GhDeployment,
    repository: Repo,
}

#[derive(Deserialize)]
struct GhDeploymentStatus {
    id: u64,
    state: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

#[derive(Deserialize)]
struct DeploymentStatusPayload {
    action: String,
    deployment_status: GhDeploymentStatus,
    deployment: GhDeployment,
    repository: Repo,
}

fn event(dref: &DeploymentRef, id: String, seq: u32, at: OffsetDateTime, kind: EventKind) -> Event {
    Event {
        schema: SCHEMA_VERSION,
        id,
        deployment: dref.clone(),
        seq,
        at,
        kind,
    }
}

fn short(sha: &str) -> String {
    sha.chars().take(7).collect()
}

/// Maps one webhook delivery (`X-GitHub-Event` name and JSON body) to deploy events. See the
/// [module documentation](self) for the mapping. `workflows` restricts `workflow_run` to those
/// workflow names.
///
/// # Errors
///
/// [`MapError`] when a payload of a mapped event lacks a field the mapping needs.
pub fn map(
    event_name: &str,
    payload: &[u8],
    workflows: Option<&HashSet<String>>,
) -> Result<Mapped, MapError> {
    let err = |source| MapError {
        event: event_name.to_owned(),
        source,
    };
    match event_name {
        "workflow_run" => {
            map_workflow_run(serde_json::from_slice(payload).map_err(err)?, workflows)
        }
        "deployment" => Ok(map_deployment(
            serde_json::from_slice(payload).map_err(err)?,
        )),
        "deployment_status" => Ok(map_deployment_status(
            serde_json::from_slice(payload).map_err(err)?,
        )),
        "ping" => Ok(Mapped::Ignored("ping".into())),
        other => Ok(Mapped::Ignored(format!("event `{other}`"))),
    }
}

fn map_workflow_run(
    p: WorkflowRunPayload,
    workflows: Option<&HashSet<String>>,
) -> Result<Mapped, MapError> {
    let run = p.workflow_run;
    let workflow = p
        .workflow
        .and_then(|w| w.name)
        .filter(|n| !n.is_empty())
        .or(run.name.clone())
        .unwrap_or_default();
    if let Some(allowed) = workflows
        && !allowed.contains(&workflow)
    {
        return Ok(Mapped::Ignored(format!("workflow `{workflow}`")));
    }
    let deploy_id = format!("github-run-{}-{}", run.id, run.run_attempt.unwrap_or(1));
    let dref = DeploymentRef {
        id: deploy_id.clone(),
        project: p.repository.name,
        environment: run
            .head_branch
            .clone()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "unknown".into()),
        version: short(&run.head_sha),
        started_at: run.run_started_at.unwrap_or(run.created_at),
    };
    let actor = run
        .triggering_actor
        .or(run.actor)
        .or(p.sender)
        .map(|u| u.login);
    let started = event(
        &dref,
        format!("{deploy_id}-started"),
        0,
        dref.started_at,
        EventKind::Started {
            commit: Some(run.head_sha.clone()),
            commit_time: run.head_commit.and_then(|c| c.timestamp),
            actor,
            trigger: run.event.clone(),
        },
    );
    let kind = match p.action.as_str() {
        "requested" | "in_progress" => return Ok(Mapped::Events(vec![started])),
        "completed" => match run.conclusion.as_deref() {
            Some("success") => EventKind::Succeeded,
            Some(c @ ("cancelled" | "skipped" | "stale" | "neutral")) => EventKind::Cancelled {
                reason: Some(c.to_owned()),
            },
            Some(c) => EventKind::Failed {
                reason: c.to_owned(),
            },
            None => EventKind::Failed {
                reason: "completed without a conclusion".into(),
            },
        },
        other => return Ok(Mapped::Ignored(format!("workflow_run action `{other}`"))),
    };
    let at = run
        .updated_at
        .unwrap_or(dref.started_at)
        .max(dref.started_at);
    let done = event(&dref, format!("{deploy_id}-completed"), 1, at, kind);
    Ok(Mapped::Events(vec![started, done]))
}

fn deployment_started(d: &GhDeployment, repo: String) -> (DeploymentRef, Event) {
    let deploy_id = format!("github-deployment-{}", d.id);
    let dref = DeploymentRef {
        id: deploy_id.clone(),
        project: repo,
        environment: d.environment.clone(),
        version: if d.git_ref.is_empty() {
            short(&d.sha)
        } else {
            d.git_ref.clone()
        },
        started_at: d.created_at,
    };
    let started = event(
        &dref,
        format!("{deploy_id}-started"),
        0,
        d.created_at,
        EventKind::Started {
            commit: Some(d.sha.clone()),
            commit_time: None,
            actor: d.creator.as_ref().map(|u| u.login.clone()),
            trigger: d.task.clone(),
        },
    );
    (dref, started)
}

fn map_deployment(p: DeploymentPayload) -> Mapped {
    if p.action != "created" {
        return Mapped::Ignored(format!("deployment action `{}`", p.action));
    }
    Mapped::Events(vec![deployment_started(&p.deployment, p.repository.name).1])
}

fn map_deployment_status(p: DeploymentStatusPayload) -> Mapped {
    if p.action != "created" {
        return Mapped::Ignored(format!("deployment_status action `{}`", p.action));
    }
    let (dref, started) = deployment_started(&p.deployment, p.repository.name);
    let st = p.deployment_status;
    let kind = match st.state.as_str() {
        "queued" | "pending" | "in_progress" | "waiting" => {
            return Mapped::Events(vec![started]);
        }
        "success" => EventKind::Succeeded,
        "failure" | "error" => EventKind::Failed {
            reason: st
                .description
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| st.state.clone()),
        },
        other => return Mapped::Ignored(format!("deployment_status state `{other}`")),
    };
    let at = st.created_at.max(dref.started_at);
    let done = event(&dref, format!("{}-status-{}", dref.id, st.id), 1, at, kind);
    Mapped::Events(vec![started, done])
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The JSON payload: the body itself, or the `payload` field of a form-encoded body.
fn payload(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let form = header_str(headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Ok(body.to_vec());
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned().into_bytes())
        .ok_or_else(|| ApiError::bad_request("form-encoded webhook without a `payload` field"))
}

pub(crate) async fn post_webhook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(hook) = s.github.clone() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no GitHub webhook"));
    };
    let secret = &hook.config.secret;
    if secret.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no webhook secret configured",
        ));
    }
    if let Err(e) = verify(secret, &body, header_str(&headers, SIGNATURE_HEADER)) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()));
    }
    let delivery = header_str(&headers, DELIVERY_HEADER)
        .filter(|d| !d.is_empty() && d.len() <= MAX_DELIVERY_LEN)
        .ok_or_else(|| ApiError::bad_request("missing or invalid X-GitHub-Delivery"))?
        .to_owned();
    let event_name = header_str(&headers, EVENT_HEADER)
        .ok_or_else(|| ApiError::bad_request("missing X-GitHub-Event"))?
        .to_owned();
    if hook.seen().contains(&delivery) {
        return Ok(Json(serde_json::json!({
            "delivery": delivery,
            "duplicate_delivery": true,
        }))
        .into_response());
    }
    let json = payload(&headers, &body)?;
    let mapped = map(&event_name, &json, hook.config.workflows.as_ref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let answer = match mapped {
        Mapped::Events(events) => {
            // Checked as intake checks posted events: a repository or branch name longer
            // than the history keeps is a 400 naming the field, not a stored event that
            // breaks later reads.
            for e in &events {
                e.validate()
                    .map_err(|err| ApiError::bad_request(err.to_string()))?;
            }
            let stored = store(&s, events, "github").await?;
            serde_json::json!({
                "delivery": delivery,
                "event": event_name,
                "received": stored.received,
                "stored": stored.stored,
                "duplicates": stored.duplicates,
            })
        }
        Mapped::Ignored(reason) => serde_json::json!({
            "delivery": delivery,
            "event": event_name,
            "ignored": reason,
        }),
    };
    // Remembered only once handled: a delivery that failed may be redelivered.
    hook.seen().insert(&delivery);
    Ok((StatusCode::OK, Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_example_signature() {
        // From GitHub's "Validating webhook deliveries".
        let header = sign(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            header,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(
            verify(
                b"It's a Secret to Everybody",
                b"Hello, World!",
                Some(&header)
            ),
            Ok(())
        );
        assert_eq!(
            verify(b"x", b"Hello, World!", Some(&header)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"x", b"Hello, World!", Some("sha1=abc")),
            Err(SignatureError::Malformed)
        );
        let bad_hex = format!("sha256={}", "zz".repeat(32));
        assert_eq!(
            verify(b"x", b"", Some(&bad_hex)),
            Err(SignatureError::Malformed)
        );
        assert_eq!(verify(b"x", b"", None), Err(SignatureError::Missing));
    }

    #[test]
    fn delivery_memory_is_bounded_oldest_first() {
        let mut d = Deliveries {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity: 2,
        };
        d.insert("a");
        d.insert("b");
        d.insert("b");
        d.insert("c");
        assert!(!d.contains("a"));
        assert!(d.contains("b") && d.contains("c"));
        assert_eq!(d.order.len(), 2);
    }
}
