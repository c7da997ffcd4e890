//! The operational routes and the outbound client.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axi_obs_axum::ObsRoutes;
use axi_obs_core::testing::Capture;
use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn get(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (
        status,
        headers,
        res.into_body().collect().await.unwrap().to_bytes().to_vec(),
    )
}

fn req(uri: &str) -> http::request::Builder {
    Request::get(uri)
}

#[tokio::test]
async fn metrics_route_negotiates_format_compression_and_token() {
    let cap = Capture::new();
    cap.run(|| metrics::counter!("hits_total").increment(3));
    let app: Router = ObsRoutes::new().metrics(cap.metrics_handle()).into_router();

    let (status, headers, body) = get(&app, req("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(String::from_utf8(body).unwrap().contains("hits_total 3"));

    let (_, headers, body) = get(
        &app,
        req("/metrics")
            .header(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("# TYPE hits counter\nhits_total 3\n") && text.ends_with("# EOF\n"),
        "{text}"
    );

    let (_, headers, body) = get(
        &app,
        req("/metrics")
            .header("accept-encoding", "gzip")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(headers["content-encoding"], "gzip");
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert!(plain.contains("hits_total 3"));

    let secured: Router = ObsRoutes::new()
        .metrics(cap.metrics_handle())
        // As read from a file: the newline is not part of the token.
        .bearer_token("s3cret\n")
        .into_router();
    let (status, headers, _) = get(&secured, req("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let (status, _, _) = get(
        &secured,
        req("/metrics")
            .header("authorization", "Bearer wrong")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get(
        &secured,
        req("/metrics")
            .header("authorization", "Bearer s3cret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The scheme is case-insensitive (RFC 9110).
    let (status, _, _) = get(
        &secured,
        req("/metrics")
            .header("authorization", "bearer s3cret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // An empty token (from an unset variable, say) locks the page rather than opening it.
    let empty: Router = ObsRoutes::new()
        .metrics(cap.metrics_handle())
        .bearer_token("")
        .into_router();
    for auth in [None, Some("Bearer "), Some("Bearer")] {
        let mut r = req("/metrics");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let (status, _, _) = get(&empty, r.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
    }
}

/// Readiness turns 503 when a check fails or times out, and back.
#[tokio::test]
async fn readiness_follows_its_checks() {
    // 0 = ok, 1 = failing, 2 = hanging
    let mode = Arc::new(AtomicU8::new(0));
    let m = mode.clone();
    let app: Router = ObsRoutes::new()
        .readiness_check("database", Duration::from_millis(200), move || {
            let m = m.clone();
            async move {
                match m.load(Ordering::SeqCst) {
                    0 => Ok(()),
                    1 => Err("connection refused".to_owned()),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(())
                    }
                }
            }
        })
        .readiness_check("cache", Duration::from_secs(1), || async { Ok(()) })
        .into_router();
    let ready = |app: Router| async move {
        let (status, _, body) = get(&app, req("/readyz").body(Body::empty()).unwrap()).await;
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        )
    };

    let (status, body) = ready(app.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"].as_array().unwrap().len(), 2);

    mode.store(1, Ordering::SeqCst);
    let (status, body) = ready(app.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "not_ready");
    let db = &body["checks"][0];
    assert_eq!(db["name"], "database");
    assert_eq!(db["status"], "fail");
    assert_eq!(db["error"], "connection refused");
    assert_eq!(body["checks"][1]["status"], "ok");
    assert!(db["latency_ms"].as_f64().is_some());

    mode.store(2, Ordering::SeqCst);
    let (status, body) = ready(app.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["checks"][0]["status"], "timeout");

    mode.store(0, Ordering::SeqCst);
    let (status, _) = ready(app).await;
    assert_eq!(status, StatusCode::OK);
}

/// A check that blocks its thread (a synchronous ping) cannot hold `/readyz` past its timeout:
/// the answer comes while the check is still blocked, and says `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_readiness_check_still_times_out() {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Arc::new(std::sync::Mutex::new(released));
    let blocked = Arc::new(AtomicU8::new(0));
    let b = blocked.clone();
    let app: Router = ObsRoutes::new()
        .readiness_check("sync-ping", Duration::from_millis(100), move || {
            let (released, b) = (released.clone(), b.clone());
            async move {
                b.store(1, Ordering::SeqCst);
                // Blocks the worker thread, as a synchronous client would.
                let _ = released
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
                b.store(2, Ordering::SeqCst);
                Ok(())
            }
        })
        .into_router();
    let (status, _, body) = get(&app, req("/readyz").body(Body::empty()).unwrap()).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        blocked.load(Ordering::SeqCst),
        1,
        "answered while the check was still blocked"
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["checks"][0]["status"], "timeout", "{body}");
    release.send(()).unwrap();
}

/// A prober that gives up (its own timeout, shorter than the check's) drops the answer: the
/// check's task is aborted with it, not left running to its own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_checks_end_with_a_dropped_request() {
    /// Sets the flag when the check's future is dropped (aborted).
    struct Dropped(Arc<AtomicU8>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicU8::new(0));
    let d = dropped.clone();
    let app: Router = ObsRoutes::new()
        .readiness_check("slow-db", Duration::from_secs(3600), move || {
            let guard = Dropped(d.clone());
            async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        })
        .into_router();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        get(&app, req("/readyz").body(Body::empty()).unwrap()),
    )
    .await;
    assert!(gave_up.is_err(), "the prober gave up");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while dropped.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the check still runs after its request was dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Probes that overlap share one run of each check: fifty probers during a slow database
/// make one ping, not fifty (each would take a connection the handlers need).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_probes_share_one_run_of_a_check() {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = runs.clone();
    let app: Router = ObsRoutes::new()
        .readiness_check("database", Duration::from_secs(5), move || {
            r.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(())
            }
        })
        .into_router();
    let probes = (0..50).map(|_| {
        let app = app.clone();
        tokio::spawn(async move {
            get(&app, req("/readyz").body(Body::empty()).unwrap())
                .await
                .0
        })
    });
    for status in futures_util::future::join_all(probes).await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // Once it has answered, the next probe runs it again.
    let (status, _, _) = get(&app, req("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// With one worker thread, a check that blocks it also blocks the timer: it answers late,
/// and that is a timeout, not "ok".
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_check_answering_after_its_timeout_is_a_timeout() {
    let app: Router = ObsRoutes::new()
        .readiness_check("sync-ping", Duration::from_millis(100), || async {
            // Blocks the only worker for 500 ms, as a synchronous client would.
            std::thread::sleep(Duration::from_millis(500));
            Ok(())
        })
        .into_router();
    let (_, _, body) =
        tokio::spawn(async move { get(&app, req("/readyz").body(Body::empty()).unwrap()).await })
            .await
            .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["checks"][0]["status"], "timeout", "{body}");
    assert!(
        body["checks"][0]["latency_ms"].as_f64().unwrap() >= 500.0,
        "{body}"
    );
}

/// While a timed-out run is still blocked, probes report it without running it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_check_is_not_run_again_until_it_returns() {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Arc::new(std::sync::Mutex::new(released));
    let r = runs.clone();
    let app: Router = ObsRoutes::new()
        .readiness_check("sync-ping", Duration::from_millis(100), move || {
            r.fetch_add(1, Ordering::SeqCst);
            let released = released.clone();
            async move {
                let _ = released
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
                Ok(())
            }
        })
        .into_router();
    let ready = |app: Router| async move {
        let (_, _, body) = get(&app, req("/readyz").body(Body::empty()).unwrap()).await;
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    let body = ready(app.clone()).await;
    assert_eq!(body["checks"][0]["status"], "timeout", "{body}");
    let body = ready(app.clone()).await;
    assert_eq!(body["checks"][0]["status"], "timeout", "{body}");
    assert!(
        body["checks"][0]["error"]
            .as_str()
            .unwrap()
            .contains("has not returned"),
        "{body}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // It returns: the next probe runs it again.
    release.send(()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while runs.load(Ordering::SeqCst) < 2 {
        assert!(std::time::Instant::now() < deadline, "never run again");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = ready(app.clone()).await;
    }
}

/// A check that panics fails alone: the answer is still a 503 listing every check.
#[tokio::test]
async fn a_panicking_readiness_check_fails_alone() {
    let app: Router = ObsRoutes::new()
        .readiness_check("explodes", Duration::from_secs(1), || async {
            panic!("pool poisoned")
        })
        .readiness_check(
            "sync-panic",
            Duration::from_secs(1),
            || -> std::future::Ready<Result<(), String>> { panic!("before the future") },
        )
        .readiness_check("cache", Duration::from_secs(1), || async { Ok(()) })
        .into_router();
    let (status, _, body) = get(&app, req("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["status"], "not_ready");
    let checks = body["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3);
    assert_eq!(checks[0]["status"], "fail");
    assert_eq!(checks[0]["error"], "the check panicked: pool poisoned");
    assert_eq!(checks[1]["status"], "fail");
    assert_eq!(checks[1]["error"], "the check panicked: before the future");
    assert_eq!(checks[2]["status"], "ok");
}

#[tokio::test]
async fn healthz_and_version() {
    let app: Router = ObsRoutes::new()
        .version(axi_obs_axum::VersionInfo {
            name: "shop".into(),
            version: "1.2.3".into(),
            git_sha: Some("abc123".into()),
            build_time: None,
        })
        .into_router();
    let (status, _, body) = get(&app, req("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["status"],
        "ok"
    );
    let (_, _, body) = get(&app, req("/version").body(Body::empty()).unwrap()).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"name": "shop", "version": "1.2.3", "git_sha": "abc123"})
    );
    let own = axi_obs_axum::version_info!();
    assert_eq!(own.name, "axi-obs-axum", "the calling package");
}

/// The reqwest integration continues the current trace into the callee and records
/// `http.client.request.duration`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_client_propagates_context_and_records_metrics() {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    // The callee echoes the traceparent it received.
    let callee = Router::new().route(
        "/echo",
        axum::routing::get(|headers: http::HeaderMap| async move {
            headers
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, callee).await.unwrap() });

    let cap = Capture::new();
    let client = axi_obs_axum::client::TracedClient::new(reqwest::Client::new())
        .recorder(cap.recorder().clone());
    let dispatch = cap.dispatch();
    let (echoed, parent_trace) = {
        use tracing::instrument::WithSubscriber;
        async {
            let parent = tracing::info_span!("handler");
            let trace = {
                use opentelemetry::trace::TraceContextExt;
                use tracing_opentelemetry::OpenTelemetrySpanExt;
                parent
                    .context()
                    .span()
                    .span_context()
                    .trace_id()
                    .to_string()
            };
            let echoed = tracing::Instrument::instrument(
                async {
                    client
                        .send(client.inner().get(format!(
                            "http://user:pw@{addr}/echo?token=SECRET&page=2#top"
                        )))
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap()
                },
                parent,
            )
            .await;
            (echoed, trace)
        }
        .with_subscriber(dispatch)
        .await
    };
    let spans = cap.spans();
    let client_span = spans.iter().find(|s| s.name == "GET").unwrap();
    assert_eq!(
        client_span.span_kind,
        opentelemetry::trace::SpanKind::Client
    );
    assert_eq!(
        client_span.span_context.trace_id().to_string(),
        parent_trace
    );
    assert_eq!(
        echoed,
        format!(
            "00-{}-{}-01",
            parent_trace,
            client_span.span_context.span_id()
        ),
        "the callee saw the client span as its parent"
    );
    let url = client_span
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "url.full")
        .unwrap();
    // As semantic conventions write it: credential-like query values replaced, the rest
    // kept, no fragment. (reqwest takes the URL's credentials out into an `Authorization`
    // header before the request reaches us; the unit tests cover their redaction.)
    assert_eq!(
        url.value.to_string(),
        format!("http://{addr}/echo?token=REDACTED&page=2")
    );
    let version = client_span
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "network.protocol.version")
        .unwrap();
    assert_eq!(version.value.to_string(), "1.1");
    let page = cap.metrics_handle().render();
    assert!(page.contains(&format!("http_client_request_duration_seconds_count{{http_request_method=\"GET\",http_response_status_code=\"200\",network_protocol_version=\"1.1\",server_address=\"127.0.0.1\",server_port=\"{}\"}} 1", addr.port())), "{page}");
}

/// Regression: with the client span filtered out (RUST_LOG=warn) the client used to send no
/// trace context at all; it must propagate the current one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_client_propagates_without_a_tracing_subscriber() {
    use opentelemetry::trace::{Span as _, TraceContextExt, Tracer, TracerProvider as _};
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let callee = Router::new().route(
        "/echo",
        axum::routing::get(|headers: http::HeaderMap| async move {
            headers
                .get("traceparent")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, callee).await.unwrap() });

    // No tracing subscriber at all: the client's tracing span is disabled. The current
    // OpenTelemetry context (what ObsLayer attaches for a request) holds the server span.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let server = provider.tracer("test").start("GET /x");
    let trace_id = server.span_context().trace_id().to_string();
    let cx = opentelemetry::Context::new().with_span(server);
    let client = axi_obs_axum::client::TracedClient::new(reqwest::Client::new())
        .recorder(Capture::new().recorder().clone());
    let echoed = {
        let _attached = cx.attach();
        client
            .send(client.inner().get(format!("http://{addr}/echo")))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert!(
        echoed.contains(&trace_id),
        "callee saw {echoed:?}, expected trace {trace_id}"
    );
}

/// An outbound call dropped before its answer (a `timeout` around it) is still recorded: one
/// `http.client.request.duration` sample with `error.type="cancelled"`, and an error span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_outbound_call_is_recorded() {
    let slow = Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            "late"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, slow).await.unwrap() });

    let cap = Capture::new();
    let client = axi_obs_axum::client::TracedClient::new(reqwest::Client::new())
        .recorder(cap.recorder().clone());
    let timed_out = {
        use tracing::instrument::WithSubscriber;
        tokio::time::timeout(
            std::time::Duration::from_millis(100),
            client.send(client.inner().get(format!("http://{addr}/slow"))),
        )
        .with_subscriber(cap.dispatch())
        .await
    };
    assert!(timed_out.is_err(), "the call must have been cut short");
    let snap = cap.metrics();
    let family = snap.family("http.client.request.duration").unwrap();
    let series = family
        .series
        .iter()
        .find(|s| {
            s.labels
                .iter()
                .any(|(k, v)| k == "error.type" && v == "cancelled")
        })
        .unwrap_or_else(|| panic!("{family:?}"));
    assert_eq!(series.value.as_histogram().unwrap().count, 1);
    // The span ends when its last handle goes: the connection task reqwest spawned under it
    // may drop its copy a moment later, on the other worker.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let span = loop {
        if let Some(s) = cap.spans().into_iter().find(|s| s.name == "GET") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no client span: {:?}",
            cap.spans()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(
        span.status,
        opentelemetry::trace::Status::error(""),
        "{span:?}"
    );
}

/// A method outside the known set is `_OTHER` with `http.request.method_original` on the client
/// span, and an IPv6 literal's `server.address` has no brackets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_attributes_for_other_methods_and_ipv6_hosts() {
    let app = Router::new().route("/x", axum::routing::any(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cap = Capture::new();
    let client = axi_obs_axum::client::TracedClient::new(reqwest::Client::new())
        .recorder(cap.recorder().clone());
    {
        use tracing::instrument::WithSubscriber;
        let purge = reqwest::Method::from_bytes(b"PURGE").unwrap();
        client
            .send(client.inner().request(purge, format!("http://{addr}/x")))
            .with_subscriber(cap.dispatch())
            .await
            .unwrap();
    }
    let span = cap
        .spans()
        .into_iter()
        .find(|s| s.name == "HTTP")
        .unwrap_or_else(|| panic!("{:?}", cap.spans()));
    let attr = |k: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr("http.request.method").as_deref(), Some("_OTHER"));
    assert_eq!(
        attr("http.request.method_original").as_deref(),
        Some("PURGE")
    );
    assert_eq!(attr("server.address").as_deref(), Some("::1"));
}

/// A client that makes calls before any recorder is installed (fetching configuration at
/// start-up) still describes its metric once one is: the unit, and so the `_seconds` suffix,
/// is not lost to `metrics`' no-op fallback.
#[tokio::test(flavor = "current_thread")]
async fn a_client_used_before_a_recorder_exists_still_describes_its_metric() {
    let callee = Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, callee).await.unwrap() });
    let client = axi_obs_axum::client::TracedClient::new(reqwest::Client::new());
    let url = format!("http://{addr}/ok");
    client.send(client.inner().get(&url)).await.unwrap();
    let cap = Capture::new();
    let _recorder = metrics::set_default_local_recorder(cap.recorder());
    client.send(client.inner().get(&url)).await.unwrap();
    let page = cap.metrics_handle().render();
    assert!(
        page.contains("# TYPE http_client_request_duration_seconds histogram"),
        "{page}"
    );
}
