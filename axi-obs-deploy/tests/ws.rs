//! `GET /api/deploy/ws` with a real WebSocket implementation (tungstenite) as the client:
//! every event in order at 1,000 events/s, replay with `?after=` and `?replay=`, the missed
//! notice, the handshake's refusals, and closing from either side.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axi_obs_deploy::event::{DeploymentRef, StepRef, from_unix_ms};
use axi_obs_deploy::http::DeployRoutes;
use axi_obs_deploy::store::History;
use axi_obs_deploy::stream::LiveStream;
use axi_obs_deploy::{Event, EventKind};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// A safety net against a hung test, never an assertion about speed.
const DEADLINE: Duration = Duration::from_secs(60);

/// The key and accept value of RFC 6455's example.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

async fn start() -> (String, LiveStream, tempfile::TempDir) {
    start_with(|r| r).await
}

/// Serves the routes as `configure` leaves them.
async fn start_with(
    configure: impl FnOnce(DeployRoutes) -> DeployRoutes,
) -> (String, LiveStream, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    // Numbered from 1 (the default starts from the clock), for readable expectations.
    let stream = LiveStream::builder().first_seq(1).build();
    let router: axum::Router = configure(
        DeployRoutes::new(
            History::open(dir.path().join("deploys.db")).unwrap(),
            stream.clone(),
        )
        .unwrap(),
    )
    .into_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, stream, dir)
}

/// Sends `request`, returns the response head and the connection after it.
async fn handshake(addr: &str, request: &str) -> (String, TcpStream) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Byte by byte, so no frame after the head is read here.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(DEADLINE, tcp.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "connection closed during the handshake: {head:?}");
        head.push(b[0]);
    }
    (String::from_utf8(head).unwrap(), tcp)
}

async fn connect(addr: &str, query: &str) -> WebSocketStream<TcpStream> {
    let request = format!(
        "GET /api/deploy/ws{query} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    let (head, tcp) = handshake(addr, &request).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(
        head.contains(&format!("sec-websocket-accept: {ACCEPT}")),
        "{head}"
    );
    WebSocketStream::from_raw_socket(tcp, Role::Client, None).await
}

/// The next text frame as JSON (pings are answered by tungstenite and skipped).
async fn next_json(ws: &mut WebSocketStream<TcpStream>) -> Value {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("no frame in time")
            .expect("stream ended")
            .unwrap();
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn seqs(ws: &mut WebSocketStream<TcpStream>, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next_json(ws).await["seq"].as_u64().unwrap());
    }
    out
}

fn events(from: u32, n: u32) -> Vec<Event> {
    let d = DeploymentRef {
        id: "d-ws".into(),
        project: "shop-api".into(),
        environment: "prod".into(),
        version: "1.4.2".into(),
        started_at: from_unix_ms(0),
    };
    (from..from + n)
        .map(|i| {
            let step = StepRef {
                index: i,
                name: format!("s{i}"),
            };
            Event::new(
                d.clone(),
                i,
                from_unix_ms(i64::from(i)),
                EventKind::StepStarted { step },
            )
        })
        .collect()
}

async fn post(client: &reqwest::Client, addr: &str, batch: &[Event]) {
    let resp = client
        .post(format!("http://{addr}/api/deploy/events"))
        .header("content-type", "application/json")
        .body(serde_json::to_string(batch).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_receives_every_event_in_order_at_1000_events_per_second() {
    let (addr, stream, _dir) = start().await;
    let mut live = connect(&addr, "?replay=0").await;

    // 1,000 events: a batch of 10 every 10 ms.
    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let mut posted = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for b in 0..100 {
        tick.tick().await;
        let batch = events(b * 10, 10);
        post(&client, &addr, &batch).await;
        posted.extend(batch.into_iter().map(|e| e.id));
    }
    let mut got = Vec::new();
    for _ in 0..1000 {
        let f = next_json(&mut live).await;
        got.push((
            f["seq"].as_u64().unwrap(),
            f["event"]["id"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=1000).collect::<Vec<_>>()
    );
    assert_eq!(
        got.into_iter().map(|(_, id)| id).collect::<Vec<_>>(),
        posted
    );

    // Replay on connect.
    let mut after = connect(&addr, "?after=990").await;
    assert_eq!(seqs(&mut after, 10).await, (991..=1000).collect::<Vec<_>>());
    let mut last = connect(&addr, "?replay=3").await;
    assert_eq!(seqs(&mut last, 3).await, [998, 999, 1000]);

    // The ring keeps 1,000: after 10 more, a client asking for what followed 5 is told that
    // 5 are gone (6..=10), then gets the oldest kept.
    post(&client, &addr, &events(1000, 10)).await;
    let mut behind = connect(&addr, "?after=5").await;
    assert_eq!(
        next_json(&mut behind).await,
        serde_json::json!({"missed": 5})
    );
    assert_eq!(next_json(&mut behind).await["seq"], 11);
    assert_eq!(seqs(&mut live, 10).await, (1001..=1010).collect::<Vec<_>>());

    // A client that closes is unsubscribed; closing the stream closes the others (1001).
    let before = stream.stats().subscribers;
    live.close(None).await.unwrap();
    // The server answers our Close (the closing handshake) rather than dropping the
    // connection (which the client would see as 1006).
    let answered = loop {
        match tokio::time::timeout(DEADLINE, live.next()).await.unwrap() {
            Some(Ok(Message::Close(_))) => break Ok(()),
            Some(Ok(_)) => {}
            other => break Err(format!("{other:?}")),
        }
    };
    assert_eq!(answered, Ok(()), "no Close in answer to ours");
    let deadline = std::time::Instant::now() + DEADLINE;
    while stream.stats().subscribers != before - 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server kept the closed client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stream.close();
    assert_eq!(seqs(&mut last, 10).await, (1001..=1010).collect::<Vec<_>>());
    let close = loop {
        match tokio::time::timeout(DEADLINE, last.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(Message::Ping(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.unwrap().code), 1001);
    let _ = after.send(Message::Close(None)).await;
}

#[tokio::test]
async fn requests_that_are_not_websocket_version_13_upgrades_are_refused() {
    let (addr, _stream, _dir) = start().await;
    let plain = format!("GET /api/deploy/ws HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let (head, _) = handshake(&addr, &plain).await;
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    let old = format!(
        "GET /api/deploy/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    let (head, _) = handshake(&addr, &old).await;
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{head}"
    );
    let no_key = format!(
        "GET /api/deploy/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n"
    );
    let (head, _) = handshake(&addr, &no_key).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let bad_param = format!(
        "GET /api/deploy/ws?after=x HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    let (head, _) = handshake(&addr, &bad_param).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

/// A client that completes the upgrade and then neither reads nor answers pings is let go:
/// its subscription ends (a dead peer holds no task and no socket for long).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_no_pings_is_let_go() {
    let (addr, stream, _dir) = start_with(|r| r.keep_alive(Duration::from_millis(50))).await;
    let request = format!(
        "GET /api/deploy/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    // Held open, never read from or written to.
    let (head, _silent) = handshake(&addr, &request).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while stream.stats().subscribers == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A client that answers keeps its connection meanwhile.
    let mut live = connect(&addr, "").await;
    while stream.stats().subscribers != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silent client was never let go: {:?}",
            stream.stats()
        );
        // Reading answers the server's pings (tungstenite replies on the next flush).
        let _ = tokio::time::timeout(Duration::from_millis(20), live.next()).await;
        let _ = live.flush().await;
    }
    stream.publish(events(0, 1).remove(0));
    assert_eq!(next_json(&mut live).await["seq"], 1);
}

/// A page of another site cannot open the stream through a visitor's browser: an upgrade whose
/// `Origin` is not the service's own host (nor one allowed) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_other_origins_cannot_open_the_stream() {
    let (addr, _stream, _dir) =
        start_with(|r| r.websocket_origins(["https://portal.example.com/"])).await;
    let upgrade = |host: &str, extra: &str| {
        format!(
            "GET /api/deploy/ws HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        )
    };
    for (host, extra, status) in [
        // Not a browser.
        (addr.as_str(), "", "101"),
        // The service's own page.
        (addr.as_str(), &*format!("Origin: http://{addr}\r\n"), "101"),
        (
            "deploy.example.com",
            "Origin: https://DEPLOY.example.com\r\n",
            "101",
        ),
        // Behind a proxy that does not pass Host on.
        (
            addr.as_str(),
            "Origin: https://deploy.example.com\r\nX-Forwarded-Host: deploy.example.com\r\n",
            "101",
        ),
        (
            addr.as_str(),
            "Origin: https://shop.example\r\nForwarded: for=192.0.2.1;host=shop.example\r\n",
            "101",
        ),
        // Behind a proxy that passes no host on: the service cannot tell.
        (addr.as_str(), "Origin: https://shop.example\r\n", "403"),
        // Allowed by configuration.
        (
            addr.as_str(),
            "Origin: https://portal.example.com\r\n",
            "101",
        ),
        // Another site.
        (addr.as_str(), "Origin: https://evil.example\r\n", "403"),
        (addr.as_str(), "Origin: null\r\n", "403"),
    ] {
        let (head, _) = handshake(&addr, &upgrade(host, extra)).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{extra:?}: {head}"
        );
    }
}
