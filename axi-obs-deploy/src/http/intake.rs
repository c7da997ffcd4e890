//! `POST /api/deploy/events`: events from CI (the `axi-deploy` CLI) or any producer.

use std::sync::{Arc, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::Shared;
use super::params::ApiError;
use crate::event::Event;
use crate::names;

/// What the intake answers.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Events in the request.
    pub(crate) received: usize,
    /// Events new to the history (streamed and dispatched).
    pub(crate) stored: usize,
    /// Events whose id was already stored: nothing changed for them.
    pub(crate) duplicates: usize,
    /// Of the duplicates, those whose content differs from the stored event's (a sender that
    /// reused an id): not stored either, and logged. Left out when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) conflicts: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub(crate) async fn post_events(
    State(s): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Stored>, ApiError> {
    let events = match parse_events(&body, s.max_batch) {
        Ok(events) => events,
        Err(e) => {
            count("events", "invalid", 1);
            return Err(e);
        }
    };
    store(&s, events, "events").await.map(Json)
}

/// One event object or an array of them; the whole request is refused if one is invalid.
fn parse_events(body: &[u8], max_batch: usize) -> Result<Vec<Event>, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not JSON: {e}")))?;
    match value {
        serde_json::Value::Array(items) => {
            if items.len() > max_batch {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("{} events in one request; at most {max_batch}", items.len()),
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    Event::from_value(v)
                        .map_err(|e| ApiError::bad_request(format!("event [{i}]: {e}")))
                })
                .collect()
        }
        v @ serde_json::Value::Object(_) => Ok(vec![
            Event::from_value(v).map_err(|e| ApiError::bad_request(e.to_string()))?,
        ]),
        _ => Err(ApiError::bad_request(
            "request body must be a deploy event object or an array of them",
        )),
    }
}

/// Commits `events` to the history in one transaction; the new ones then go to the stream and
/// the dispatcher, in order, while the history is still locked (so the stream's order is the
/// history's).
pub(crate) async fn store(
    s: &Arc<Shared>,
    events: Vec<Event>,
    source: &'static str,
) -> Result<Stored, ApiError> {
    let received = events.len();
    if received == 0 {
        return Ok(Stored::default());
    }
    let shared = s.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let mut history = shared
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let new = history.insert_each(&events)?;
        let mut stored = 0;
        let mut conflicts = 0;
        for (event, new) in events.into_iter().zip(new) {
            if !new {
                // A retry sends the same event again; other content under a stored id is a
                // sender's bug, said so rather than passed off as a retry. (The batch is
                // committed: a failed look-up here must not keep the new events after this
                // one from the stream and the hooks, so it is logged, not returned.)
                let json = event.to_json();
                match history.event_json(&event.id) {
                    Ok(Some(stored)) if stored != json => {
                        conflicts += 1;
                        let (event_id, deployment_id) = (&event.id, &event.deployment.id);
                        tracing::warn!(
                            target: "axi_obs_deploy",
                            event_id = %event_id,
                            deployment_id = %deployment_id,
                            source,
                            "a deploy event reused a stored event id with other content; the stored one is kept"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        target: "axi_obs_deploy",
                        event_id = %event.id,
                        error = %e,
                        "cannot compare a duplicate deploy event with the stored one"
                    ),
                }
                continue;
            }
            stored += 1;
            shared.dispatcher.send(event.clone());
            shared.stream.publish(event);
        }
        Ok::<_, crate::store::StoreError>((stored, conflicts))
    })
    .await
    .map_err(|e| ApiError::internal("storing deploy events", &e))?
    .map_err(|e| match e {
        // The sender's mistake, refused for good (a retry would be refused again): said with
        // the event and the field, and nothing of the request stored.
        crate::store::StoreError::DeploymentMismatch { mismatch, .. } => {
            count(source, "conflict", received);
            tracing::warn!(
                target: "axi_obs_deploy",
                event_id = %mismatch.event_id,
                deployment_id = %mismatch.deploy_id,
                field = mismatch.field,
                source,
                "deploy events refused: a deployment id reused for another {}",
                mismatch.field
            );
            ApiError::new(StatusCode::CONFLICT, mismatch.to_string())
        }
        e => ApiError::internal("storing deploy events", &e),
    })?;
    let (stored, conflicts) = stored;
    count(source, "stored", stored);
    count(source, "duplicate", received - stored - conflicts);
    count(source, "conflict", conflicts);
    Ok(Stored {
        received,
        stored,
        duplicates: received - stored,
        conflicts,
    })
}

fn count(source: &'static str, result: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!(names::INTAKE_EVENTS_METRIC, "source" => source, "result" => result)
            .increment(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"schema":1,"id":"e1","deployment":{"id":"d","project":"p",
        "environment":"prod","version":"1","started_at":"2026-05-01T10:00:00Z"},"seq":0,
        "at":"2026-05-01T10:00:00Z","type":"succeeded"}"#;

    #[test]
    fn one_event_or_an_array_and_errors_name_the_event_and_field() {
        assert_eq!(parse_events(EVENT.as_bytes(), 10).unwrap().len(), 1);
        let two = format!("[{EVENT},{EVENT}]");
        assert_eq!(parse_events(two.as_bytes(), 10).unwrap().len(), 2);
        let e = parse_events(two.as_bytes(), 1).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let bad = format!(
            "[{EVENT},{}]",
            EVENT.replace(r#""project":"p""#, r#""project":"""#)
        );
        let e = parse_events(bad.as_bytes(), 10).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(
            e.message.starts_with("event [1]:") && e.message.contains("deployment.project"),
            "{}",
            e.message
        );
        let e = parse_events(
            EVENT.replace(r#""schema":1"#, r#""schema":2"#).as_bytes(),
            10,
        )
        .unwrap_err();
        assert!(e.message.contains("schema 2"), "{}", e.message);
        assert!(parse_events(b"42", 10).is_err());
        assert!(
            parse_events(b"{", 10)
                .unwrap_err()
                .message
                .contains("not JSON")
        );
    }
}
