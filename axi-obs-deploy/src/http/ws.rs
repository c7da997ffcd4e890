//! `GET /api/deploy/ws`: the live stream over WebSocket (RFC 6455), one JSON text frame per
//! event.
//!
//! The upgrade is answered here (`Sec-WebSocket-Accept` from the key, version 13 only) and the
//! connection is then framed by `tungstenite` (no handshake code of its own, so no second
//! SHA-1 crate in the build). Frames sent:
//!
//! | frame | when |
//! |---|---|
//! | `{"seq":12,"event":{...}}` | an event: its [sequence number](crate::stream) and its JSON (schema 1) |
//! | `{"missed":5}` | the client fell out of the replay window: 5 events are gone; the next frame is the oldest one kept |
//!
//! Where it starts, as the SSE stream: `?after=SEQ` replays the events after that sequence
//! number (the SSE `Last-Event-ID`), else `?replay=N` the last N, else the routes'
//! [`replay_on_connect`](super::DeployRoutes::replay_on_connect); then live. Each client has
//! no queue of its own beyond a bounded write buffer ([`MAX_WRITE_BUFFER`]): a client that
//! reads slowly falls behind in the [`Subscription`], is caught up
//! from the ring, or told what it missed, and never slows the intake. A ping goes out every
//! [`keep_alive`](super::DeployRoutes::keep_alive); pings from the client are answered; what the
//! client sends otherwise is ignored. The connection closes (status 1001, going away) when the
//! stream is [closed](crate::stream::LiveStream::close), and when the client has sent nothing,
//! not even a pong, for three keep-alive intervals. A client that stops reading is dropped once
//! one write has waited two keep-alive intervals (at least 10 s): a dead or stuck peer holds
//! neither a task nor a socket for long.

use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use sha1::{Digest as _, Sha1};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::Shared;
use super::params::{ApiError, Params};
use crate::stream::{Received, Replay, Subscription};

/// Most bytes buffered for one client before a write waits for the socket.
pub const MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// The GUID RFC 6455 appends to the key.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
///
/// ```
/// use axi_obs_deploy::http::ws::accept_key;
///
/// // The example of RFC 6455, section 1.3.
/// assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether a browser page of this `Origin` may open the stream: no `Origin` (not a browser),
/// the service's own host (`Origin`'s host and port equal to `Host`, or to `X-Forwarded-Host`
/// or `Forwarded: host=` behind a proxy: a page cannot set these on a WebSocket handshake), or
/// one of `allowed` (`"*"`: any).
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if allowed.iter().any(|a| a == "*" || *a == origin) {
        return true;
    }
    let host = origin.split_once("://").map_or(origin.as_str(), |(_, h)| h);
    let same = |h: &str| h.trim().trim_matches('"').eq_ignore_ascii_case(host);
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>()
    };
    values("host").into_iter().any(same)
        || values("x-forwarded-host").into_iter().any(same)
        || values("forwarded").into_iter().any(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .any(|(k, v)| k.trim().eq_ignore_ascii_case("host") && same(v))
        })
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

pub(crate) async fn websocket(
    State(s): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    mut req: Request,
) -> Result<Response, ApiError> {
    let params = Params::parse(query.as_deref());
    params.only(&["after", "replay"])?;
    let headers = req.headers();
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "this route is a WebSocket: send Connection: Upgrade and Upgrade: websocket",
        ));
    }
    if !origin_allowed(headers, &s.ws_origins) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this page's origin may not open the deploy stream (see DeployRoutes::websocket_origins)",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut response = ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is supported",
        )
        .into_response();
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Ok(response);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .is_ok_and(|b| b.len() == 16)
        })
        .ok_or_else(|| ApiError::bad_request("missing or malformed Sec-WebSocket-Key"))?;
    let accept = HeaderValue::from_str(&accept_key(key))
        .map_err(|e| ApiError::internal("building Sec-WebSocket-Accept", &e))?;
    let replay = match params.number::<u64>("after")? {
        Some(seq) => Replay::After(seq),
        None => Replay::Last(
            params
                .number::<usize>("replay")?
                .unwrap_or(s.replay_on_connect),
        ),
    };
    let upgrade = req
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| {
            ApiError::bad_request("this connection cannot be upgraded (HTTP/1.1 is required)")
        })?;
    // Subscribed before the answer goes out: nothing published after this is missed.
    let subscription = s.stream.subscribe(replay);
    let keep_alive = s.keep_alive;
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_write_buffer_size(MAX_WRITE_BUFFER)
                    .max_message_size(Some(64 * 1024))
                    .max_frame_size(Some(64 * 1024));
                let ws = WebSocketStream::from_raw_socket(
                    hyper_util::rt::TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                serve(ws, subscription, keep_alive).await;
            }
            Err(e) => {
                tracing::debug!(target: "axi_obs_deploy", error = %e, "deploy WebSocket upgrade failed");
            }
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

/// The frame for one item of the subscription.
fn frame(received: Received) -> String {
    match received {
        Received::Event(item) => format!("{{\"seq\":{},\"event\":{}}}", item.seq(), item.json()),
        Received::Missed { count } => format!("{{\"missed\":{count}}}"),
    }
}

/// How long the closing handshake may take.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Keep-alive intervals without a frame from the client (browsers answer every ping with a
/// pong) after which the connection is taken for dead and closed.
const SILENT_INTERVALS: u32 = 3;

/// How long one write may wait for the client to read: the longer of two keep-alive
/// intervals and 10 s. A client that stops reading is let go, not waited for.
fn write_timeout(keep_alive: std::time::Duration) -> std::time::Duration {
    keep_alive
        .saturating_mul(2)
        .max(std::time::Duration::from_secs(10))
}

async fn serve<S>(
    mut ws: WebSocketStream<S>,
    mut sub: Subscription,
    keep_alive: std::time::Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut ping = tokio::time::interval(keep_alive);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await; // the first tick is immediate
    let write_timeout = write_timeout(keep_alive);
    // When a frame last came from the client (its pongs included).
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            received = sub.recv() => match received {
                Some(r) => {
                    let sent = tokio::time::timeout(write_timeout, ws.send(Message::text(frame(r))));
                    if !matches!(sent.await, Ok(Ok(()))) {
                        tracing::debug!(target: "axi_obs_deploy", "deploy WebSocket client does not read; closing");
                        return;
                    }
                }
                None => {
                    let _ = ws
                        .close(Some(CloseFrame {
                            code: CloseCode::Away,
                            reason: "deploy stream closed".into(),
                        }))
                        .await;
                    // The closing handshake: the client's Close answers ours (or the
                    // connection ends); bounded, a client that never answers is let go.
                    let _ = tokio::time::timeout(CLOSE_WAIT, async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                    return;
                }
            },
            incoming = ws.next() => match incoming {
                // Pings are answered by tungstenite on the next write or flush.
                Some(Ok(Message::Ping(_))) => {
                    heard = tokio::time::Instant::now();
                    if !matches!(tokio::time::timeout(write_timeout, ws.flush()).await, Ok(Ok(()))) {
                        return;
                    }
                }
                // tungstenite queues the Close reply; it goes out on a flush (the closing
                // handshake: without it the client sees the connection drop, 1006).
                Some(Ok(Message::Close(_))) => {
                    let _ = tokio::time::timeout(CLOSE_WAIT, ws.flush()).await;
                    return;
                }
                None | Some(Err(_)) => return,
                Some(Ok(_)) => heard = tokio::time::Instant::now(),
            },
            _ = ping.tick() => {
                if heard.elapsed() > keep_alive.saturating_mul(SILENT_INTERVALS) {
                    tracing::debug!(target: "axi_obs_deploy", "deploy WebSocket client answers no pings; closing");
                    let _ = tokio::time::timeout(
                        CLOSE_WAIT,
                        ws.close(Some(CloseFrame {
                            code: CloseCode::Away,
                            reason: "no answer to pings".into(),
                        })),
                    )
                    .await;
                    return;
                }
                let sent = tokio::time::timeout(write_timeout, ws.send(Message::Ping(Default::default())));
                if !matches!(sent.await, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
}
