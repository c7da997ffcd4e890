//! The Elasticsearch `_bulk` output: the request body against golden files, and a local
//! receiver that answers 429, then per-item errors, then success.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use log_shipper::output::{Delivered, ElasticsearchBulk, ITEM_REFUSALS, Output, SendError};
use log_shipper::record::{FileKey, Level, Position, Record, Value};
use serde_json::{Value as J, json};

fn record(end: u64, time: Option<u64>, body: &str) -> Record {
    Record {
        input: "app".into(),
        service: "shop".into(),
        path: "/var/log/app/app.log".into(),
        position: Position {
            key: FileKey {
                dev: 2049,
                ino: 131_077,
                generation: 0,
            },
            end,
        },
        file_birth_unix_nano: None,
        time_unix_nano: time,
        // 2026-11-26T10:00:05Z.
        observed_unix_nano: 1_795_687_205_000_000_000,
        level: Some(Level::Info),
        body: body.into(),
        attributes: Vec::new(),
        trace_id: None,
        span_id: None,
        truncated: false,
    }
}

/// Three kinds of event: a text line with a level, a JSON line with trace context and fields,
/// an nginx access line; the last one without a time of its own, just before midnight.
fn golden_records() -> Vec<Record> {
    let mut text = record(
        58,
        Some(1_795_687_200_123_000_000),
        "2026-11-26 10:00:00 ERROR db: connection refused",
    );
    text.level = Some(Level::Error);
    let mut json = record(131, Some(1_795_687_201_000_000_000), "order placed");
    json.trace_id = Some([0x4b; 16]);
    json.span_id = Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    json.attributes = vec![
        ("order.id".into(), Value::Int(42)),
        ("order.total".into(), Value::Float(19.5)),
    ];
    let mut access = record(
        260,
        None,
        r#"203.0.113.9 - - [26/Nov/2026:23:59:59 +0000] "GET /docs/a.html HTTP/1.1" 404 153 "-" "curl/8.5""#,
    );
    access.input = "nginx".into();
    access.service = "docs-site".into();
    access.path = "/var/log/nginx/access.log".into();
    access.observed_unix_nano = 1_795_737_599_999_000_000;
    access.level = Some(Level::Warn);
    access.truncated = true;
    access.attributes = vec![
        ("client.address".into(), Value::Str("203.0.113.9".into())),
        ("http.request.method".into(), Value::Str("GET".into())),
        ("url.path".into(), Value::Str("/docs/a.html".into())),
        ("http.response.status_code".into(), Value::Int(404)),
        ("http.response.body.size".into(), Value::Int(153)),
        ("user_agent.original".into(), Value::Str("curl/8.5".into())),
    ];
    vec![text, json, access]
}

fn bulk(prefix: &str, endpoint: &str) -> ElasticsearchBulk {
    ElasticsearchBulk::new(
        endpoint,
        prefix,
        std::time::Duration::from_secs(5),
        Vec::new(),
    )
    .unwrap()
    .with_host_name("web-1")
}

/// Compares with `tests/fixtures/<name>`; `UPDATE_GOLDEN=1` rewrites the file instead.
fn golden(name: &str, actual: &[u8]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read(&path).unwrap();
    assert_eq!(
        String::from_utf8_lossy(actual),
        String::from_utf8_lossy(&expected),
        "{} differs (UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
}

#[test]
fn bulk_body_matches_the_golden_file() {
    let out = bulk("logs", "http://127.0.0.1:9200");
    let body = out.encode(&golden_records());
    golden("bulk_request.ndjson", &body);
    // Elasticsearch's format, checked apart from the golden bytes: action and source lines
    // alternate, every line (the last too) ends with a newline, each is one JSON object.
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<J> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for pair in lines.chunks(2) {
        let create = pair[0]["create"].as_object().unwrap();
        assert_eq!(create.len(), 2, "{create:?}");
        assert_eq!(create["_id"].as_str().unwrap().len(), 32);
        assert!(pair[1]["@timestamp"].is_string() && pair[1]["message"].is_string());
    }
    // The index is the UTC day of the event's time, else of the time it was read.
    assert_eq!(lines[0]["create"]["_index"], "logs-2026.11.26");
    assert_eq!(lines[4]["create"]["_index"], "logs-2026.11.26");
    let mut next_day = golden_records().pop().unwrap();
    next_day.observed_unix_nano += 1_000_000;
    assert_eq!(out.index(&next_day), "logs-2026.11.27");
}

/// Elasticsearch maps dotted names to objects: no field of a document may be a value and
/// also hold fields (`log` beside `log.file.path` is a mapping error for the whole event).
#[test]
fn parsed_fields_never_clash_with_the_shippers_own() {
    let mut r = record(10, None, "hello");
    r.attributes = vec![
        ("log".into(), Value::Str("docker".into())),
        ("service".into(), Value::Str("checkout".into())),
        ("event".into(), Value::Str("structlog".into())),
        ("log.file".into(), Value::Str("x".into())),
        ("a".into(), Value::Int(1)),
        ("a.b".into(), Value::Int(2)),
        ("http.request.method".into(), Value::Str("GET".into())),
    ];
    let doc = bulk("logs", "http://127.0.0.1:9200").document(&r);
    let keys: Vec<&String> = doc.keys().collect();
    for k in &keys {
        for j in &keys {
            assert!(
                !(j.len() > k.len() && j.starts_with(k.as_str()) && j.as_bytes()[k.len()] == b'.'),
                "{k} is a value and {j} is under it: {doc:?}"
            );
        }
    }
    // Those clashing with the shipper's fields moved under `json.`, values holding fields
    // became `.value`, nothing lost; the others stay as they are.
    for (k, v) in [
        ("json.log.value", json!("docker")),
        ("json.service", json!("checkout")),
        ("json.event", json!("structlog")),
        ("json.log.file", json!("x")),
        ("a.value", json!(1)),
        ("a.b", json!(2)),
        ("http.request.method", json!("GET")),
        ("log.file.path", json!("/var/log/app/app.log")),
        ("event.dataset", json!("app")),
    ] {
        assert_eq!(doc.get(k), Some(&v), "{k} in {doc:?}");
    }
}

#[test]
fn ids_depend_on_file_birth_offset_text_and_parsed_time_only() {
    let a = record(100, Some(1), "x");
    let mut again = a.clone();
    // Read again after a restart: another observation time and generation.
    again.observed_unix_nano += 60_000_000_000;
    again.position.key.generation = 3;
    assert_eq!(ElasticsearchBulk::id(&a), ElasticsearchBulk::id(&again));
    let mut other_offset = a.clone();
    other_offset.position.end = 101;
    let mut other_text = a.clone();
    other_text.body = "y".into();
    let mut other_inode = a.clone();
    other_inode.position.key.ino += 1;
    // A file created again on the same inode (deleted, then a new one): its birth time.
    let mut born = a.clone();
    born.file_birth_unix_nano = Some(1_795_687_000_000_000_000);
    let mut reborn = born.clone();
    reborn.file_birth_unix_nano = Some(1_795_687_100_000_000_000);
    assert_ne!(ElasticsearchBulk::id(&born), ElasticsearchBulk::id(&reborn));
    assert_ne!(ElasticsearchBulk::id(&a), ElasticsearchBulk::id(&born));
    // The same message at the same offset of a file refilled after copytruncate: its time.
    let mut other_time = a.clone();
    other_time.time_unix_nano = Some(2);
    for r in [other_offset, other_text, other_inode, other_time] {
        assert_ne!(ElasticsearchBulk::id(&a), ElasticsearchBulk::id(&r));
    }
}

/// A `_bulk` endpoint as Elasticsearch behaves: `create` of an existing `_id` is 409. The first
/// request is answered 429; a document whose message contains `mapping` is refused (400,
/// mapper_parsing_exception) every time; `busy` and `broken` ones are answered 429 and 503
/// the first time they are seen.
#[derive(Default)]
struct Receiver {
    requests: usize,
    content_types: Vec<String>,
    /// Actions per request.
    actions: Vec<usize>,
    stored: BTreeMap<String, J>,
    failed_once: std::collections::HashSet<String>,
    refused: usize,
}

async fn bulk_handler(
    State(state): State<Arc<Mutex<Receiver>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut s = state.lock().unwrap();
    s.requests += 1;
    s.content_types.push(
        headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
    );
    let lines: Vec<J> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    s.actions.push(lines.len() / 2);
    if s.requests == 1 {
        return (StatusCode::TOO_MANY_REQUESTS, "rejected execution").into_response();
    }
    let mut items = Vec::new();
    let mut errors = false;
    for pair in lines.chunks(2) {
        let create = &pair[0]["create"];
        let id = create["_id"].as_str().unwrap().to_owned();
        let message = pair[1]["message"].as_str().unwrap();
        let (status, error) = if message.contains("mapping") {
            s.refused += 1;
            (
                400,
                Some(
                    json!({"type": "mapper_parsing_exception", "reason": "failed to parse field [order.id]"}),
                ),
            )
        } else if s.stored.contains_key(&id) {
            (
                409,
                Some(
                    json!({"type": "version_conflict_engine_exception", "reason": "document already exists"}),
                ),
            )
        } else if message.contains("busy") && s.failed_once.insert(id.clone()) {
            (
                429,
                Some(json!({"type": "es_rejected_execution_exception", "reason": "queue full"})),
            )
        } else if message.contains("broken") && s.failed_once.insert(id.clone()) {
            (
                503,
                Some(
                    json!({"type": "unavailable_shards_exception", "reason": "primary shard is not active"}),
                ),
            )
        } else {
            s.stored.insert(id.clone(), pair[1].clone());
            (201, None)
        };
        errors |= status >= 300;
        let mut item = json!({"_index": create["_index"], "_id": id, "status": status});
        if let Some(e) = error {
            item["error"] = e;
        } else {
            item["result"] = json!("created");
        }
        items.push(json!({ "create": item }));
    }
    axum::Json(json!({"took": 3, "errors": errors, "items": items})).into_response()
}

async fn receiver() -> (String, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(Receiver::default()));
    let app = axum::Router::new()
        .route("/_bulk", axum::routing::post(bulk_handler))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn batch() -> Vec<Record> {
    [
        "first",
        "busy one",
        "bad mapping",
        "broken one",
        "fifth",
        "sixth",
    ]
    .iter()
    .enumerate()
    .map(|(i, m)| record(100 * (i as u64 + 1), Some(1_795_687_200_000_000_000), m))
    .collect()
}

#[tokio::test]
async fn backpressure_and_item_errors_store_every_event_exactly_once() {
    let (endpoint, state) = receiver().await;
    let mut out = bulk("logs", &endpoint);
    let batch = batch();

    // 1: HTTP 429 for the whole request: retryable.
    let e = out.send(&batch).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    // 2: per-item errors: 429 and 503 items are to be retried; the mapping error is settled.
    let e = out.send(&batch).await.unwrap_err();
    assert!(
        matches!(&e, SendError::Retryable { message, .. } if message.starts_with("2 of 6")),
        "{e:?}"
    );
    // 3: only the two items left are sent; done, one event dropped.
    assert_eq!(out.send(&batch).await.unwrap(), Delivered { dropped: 1 });
    {
        let s = state.lock().unwrap();
        assert_eq!(s.actions, [6, 6, 2]);
        assert!(s.content_types.iter().all(|c| c == "application/x-ndjson"));
        assert_eq!(s.refused, 1, "the mapping error is never retried");
        let mut messages: Vec<&str> = s
            .stored
            .values()
            .map(|d| d["message"].as_str().unwrap())
            .collect();
        messages.sort_unstable();
        assert_eq!(
            messages,
            ["broken one", "busy one", "fifth", "first", "sixth"]
        );
    }

    // A crash before the registry moved: a new process sends the same batch again. Every
    // stored event answers 409 (already stored), nothing is indexed twice.
    let mut restarted = bulk("logs", &endpoint);
    assert_eq!(
        restarted.send(&batch).await.unwrap(),
        Delivered { dropped: 1 }
    );
    let s = state.lock().unwrap();
    assert_eq!(s.stored.len(), 5);
    assert_eq!(s.requests, 4);
}

/// Serves `/_bulk` with `answer` on a loopback port; returns the endpoint.
async fn bulk_server<F, Fut>(answer: F) -> String
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = (StatusCode, String)> + Send + 'static,
{
    let app = axum::Router::new().route(
        "/_bulk",
        axum::routing::post(move |body: String| {
            let answer = answer.clone();
            async move { answer(body).await }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn whole_request_answers_keep_or_refuse_the_batch() {
    // A credential, permission or routing problem: kept and retried, never dropped.
    for status in [
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::NOT_FOUND,
    ] {
        let endpoint = bulk_server(move |_| async move { (status, "no".to_owned()) }).await;
        let e = bulk("logs", &endpoint).send(&batch()).await.unwrap_err();
        assert!(
            matches!(&e, SendError::Retryable { message, .. } if message.contains(status.as_str())),
            "{status}: {e:?}"
        );
    }
    // The same problems on each item of a 200 answer (no right on this index, an index that
    // may not be created): kept and retried too, not dropped as a bad event would be.
    for (status, kind) in [
        (401, "security_exception"),
        (403, "security_exception"),
        (404, "index_not_found_exception"),
    ] {
        let endpoint = bulk_server(move |body: String| async move {
            let items: Vec<J> = body
                .lines()
                .step_by(2)
                .map(|_| json!({"create": {"status": status, "error": {"type": kind, "reason": "no"}}}))
                .collect();
            let reply = json!({"took": 1, "errors": true, "items": items});
            (StatusCode::OK, reply.to_string())
        })
        .await;
        let mut out = bulk("logs", &endpoint);
        for _ in 1..ITEM_REFUSALS {
            let e = out.send(&batch()).await.unwrap_err();
            assert!(
                matches!(&e, SendError::Retryable { message, .. } if message.starts_with("6 of 6")),
                "{status}: {e:?}"
            );
        }
        // Not forever: an event no one may store must not stop every input.
        assert_eq!(out.send(&batch()).await.unwrap(), Delivered { dropped: 6 });
    }
    // Malformed, as far as the server is concerned: refused for good.
    let endpoint = bulk_server(|_| async { (StatusCode::BAD_REQUEST, "bad".to_owned()) }).await;
    let e = bulk("logs", &endpoint).send(&batch()).await.unwrap_err();
    assert!(
        matches!(&e, SendError::Rejected { message } if message.contains("400")),
        "{e:?}"
    );
}

/// `413`: the batch goes again in halves; an event too large alone is dropped, the others
/// are stored.
#[tokio::test]
async fn a_request_too_large_is_split_down_to_single_events() {
    let stored = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = stored.clone();
    let endpoint = bulk_server(move |body: String| {
        let s = s.clone();
        async move {
            let docs: Vec<&str> = body.lines().skip(1).step_by(2).collect();
            // More than one event, or the one event that is too large: 413.
            if docs.len() > 1 || docs.iter().any(|d| d.contains("huge")) {
                return (StatusCode::PAYLOAD_TOO_LARGE, String::new());
            }
            s.lock()
                .unwrap()
                .extend(docs.iter().map(|d| (*d).to_owned()));
            let items: Vec<String> = docs
                .iter()
                .map(|_| r#"{"create":{"status":201}}"#.to_owned())
                .collect();
            (
                StatusCode::OK,
                format!(r#"{{"errors":false,"items":[{}]}}"#, items.join(",")),
            )
        }
    })
    .await;
    let mut records = batch();
    records[1].body = "a huge line".into();
    let delivered = bulk("logs", &endpoint).send(&records).await.unwrap();
    assert_eq!(delivered.dropped, 1);
    assert_eq!(stored.lock().unwrap().len(), records.len() - 1);
}

/// A 413 split, then a refusal for good of the later half: only that half counts as dropped.
#[tokio::test]
async fn a_refusal_after_a_split_drops_only_what_is_left() {
    let endpoint = bulk_server(|body: String| async move {
        let docs: Vec<&str> = body.lines().skip(1).step_by(2).collect();
        if docs.len() > 3 {
            return (StatusCode::PAYLOAD_TOO_LARGE, String::new());
        }
        if docs.iter().any(|d| d.contains("fifth")) {
            return (StatusCode::BAD_REQUEST, "bad".to_owned());
        }
        let items = vec![r#"{"create":{"status":201}}"#; docs.len()].join(",");
        (
            StatusCode::OK,
            format!(r#"{{"errors":false,"items":[{items}]}}"#),
        )
    })
    .await;
    let records = batch();
    let delivered = bulk("logs", &endpoint).send(&records).await.unwrap();
    // Six events: three stored in the first half, the other three refused.
    assert_eq!(delivered.dropped, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_ships_a_file_through_bulk_retries_exactly_once() {
    let (endpoint, state) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let mut text = String::new();
    for i in 0..200 {
        let kind = match i % 50 {
            7 => "busy",
            13 => "broken",
            21 => "mapping",
            _ => "plain",
        };
        text.push_str(&format!("line {i} {kind}\n"));
    }
    common::append(&log, &text);
    let yaml = common::yaml(dir.path(), &log.display().to_string(), "").replace(
        "  stdout: {}",
        &format!("  elasticsearch: {{ endpoint: '{endpoint}', index_prefix: app }}"),
    );
    let running = common::start_with(&yaml, Box::new(bulk("app", &endpoint)));
    assert!(
        common::wait_until(|| state.lock().unwrap().stored.len() == 196).await,
        "{}",
        state.lock().unwrap().stored.len()
    );
    running.stop().await;
    let s = state.lock().unwrap();
    let mut messages: Vec<String> = s
        .stored
        .values()
        .map(|d| d["message"].as_str().unwrap().to_owned())
        .collect();
    messages.sort_unstable();
    messages.dedup();
    assert_eq!(messages.len(), 196, "each stored once, under its own _id");
    assert!(messages.iter().all(|m| !m.contains("mapping")));
    assert_eq!(s.refused, 4, "each mapping error sent once");
    assert!(
        s.stored
            .values()
            .all(|d| d["service.name"] == "app" && d["host.name"] == "web-1")
    );
}
