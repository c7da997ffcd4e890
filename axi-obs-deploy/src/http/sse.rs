//! `GET /api/deploy/stream`: the live stream as Server-Sent Events.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::params::{ApiError, Params};
use crate::stream::{Received, Replay};

/// The SSE `event:` name of the notice sent when a client fell out of the replay window.
pub(crate) const MISSED_EVENT: &str = "missed";

pub(crate) async fn stream(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    params.only(&["last_event_id", "replay"])?;
    let header = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("Last-Event-ID is not text"))
        })
        .transpose()?;
    // An id that is not one of ours (another server's, a mangled one) replays everything kept,
    // after a `missed` notice when the window has moved on. Not a 400: an `EventSource` that
    // gets an error answer never reconnects again.
    let last_id = match header.or(params.one("last_event_id")?) {
        Some(v) if !v.trim().is_empty() => Some(v.trim().parse::<u64>().unwrap_or_else(|_| {
            tracing::debug!(
                last_event_id = v,
                "not a sequence number of this stream; replaying what is kept"
            );
            0
        })),
        _ => None,
    };
    let replay = match last_id {
        Some(seq) => Replay::After(seq),
        None => Replay::Last(
            params
                .number::<usize>("replay")?
                .unwrap_or(s.replay_on_connect),
        ),
    };
    // Subscribed before the answer's headers go out: nothing published after this is missed.
    let subscription = s.stream.subscribe(replay);
    let events = futures_util::stream::unfold(subscription, |mut sub| async move {
        let event = match sub.recv().await? {
            // Digits only: `id` cannot contain a line break. The JSON is one line.
            Received::Event(item) => SseEvent::default()
                .id(item.seq().to_string())
                .data(item.json()),
            Received::Missed { count } => SseEvent::default()
                .event(MISSED_EVENT)
                .data(format!("{{\"missed\":{count}}}")),
        };
        Some((Ok::<_, Infallible>(event), sub))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(s.keep_alive))
        .into_response();
    // nginx (a common front) would otherwise buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
