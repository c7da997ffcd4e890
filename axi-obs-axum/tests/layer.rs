//! The layer driven in-process with `oneshot`: metrics, spans, request ids, access logs,
//! panics, exclusions, ordering with nested routers and `route_layer`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axi_obs_axum::{Naming, ObsLayer, RequestId};
use axi_obs_core::testing::Capture;
use axum::body::Body;
use axum::routing::{get, post};
use axum::{Extension, Router};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt};
use tower::ServiceExt;

fn propagator() {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry::propagation::TextMapCompositePropagator::new(vec![
            Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
            Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
        ]),
    );
}

/// The layer recording into `cap`'s recorder and tracer provider.
fn obs(cap: &Capture) -> ObsLayer {
    ObsLayer::new()
        .recorder(cap.recorder().clone())
        .tracer_provider(cap.tracer_provider())
}

fn routes() -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/orders",
            post(|| async { (StatusCode::CREATED, "created") }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/bad", get(|| async { StatusCode::BAD_REQUEST }))
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("boom in handler");
                }
                "unreachable"
            }),
        )
        .route("/id", get(|id: RequestId| async move { id.to_string() }))
        .route("/metrics", get(|| async { "metrics page" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                "slow"
            }),
        )
}

async fn send(app: &Router, req: Request<Body>) -> Response<Body> {
    app.clone().oneshot(req).await.unwrap()
}

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// The access-log lines `cap` holds, in order.
fn access_lines(cap: &Capture) -> Vec<serde_json::Value> {
    cap.logs()
        .into_iter()
        .filter(|l| l["log.logger"] == "axi_obs_axum::access")
        .collect()
}

/// The WARN lines `cap` holds whose message contains `text`.
fn warnings(cap: &Capture, text: &str) -> Vec<serde_json::Value> {
    cap.logs()
        .into_iter()
        .filter(|l| {
            l["log.level"] == "WARN" && l["message"].as_str().is_some_and(|m| m.contains(text))
        })
        .collect()
}

async fn text(r: Response<Body>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn metrics_use_semantic_convention_names_and_route_templates() {
    let cap = Capture::new();
    let app = routes().layer(obs(&cap));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    for uri in ["/users/1", "/users/2", "/nope/1"] {
        send(&app, get_req(uri)).await;
    }
    send(&app, Request::post("/orders").body(Body::empty()).unwrap()).await;
    send(
        &app,
        Request::builder()
            .method("BREW")
            .uri("/users/3")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    send(&app, get_req("/fail")).await;

    let page = cap.metrics_handle().render();
    let count = |labels: &str| -> u64 {
        let line = format!("http_server_request_duration_seconds_count{{{labels}}} ");
        page.lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no series {labels} in\n{page}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        count(
            "http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/users/{id}\",network_protocol_version=\"1.1\",url_scheme=\"http\""
        ),
        2
    );
    assert_eq!(
        count(
            "http_request_method=\"GET\",http_response_status_code=\"404\",http_route=\"unmatched\",network_protocol_version=\"1.1\",url_scheme=\"http\""
        ),
        1
    );
    assert_eq!(
        count(
            "http_request_method=\"POST\",http_response_status_code=\"201\",http_route=\"/orders\",network_protocol_version=\"1.1\",url_scheme=\"http\""
        ),
        1
    );
    // Unknown methods are `_OTHER`; axum answers 405 for them on a GET route.
    assert!(page.contains("http_request_method=\"_OTHER\""), "{page}");
    assert_eq!(
        count(
            "error_type=\"503\",http_request_method=\"GET\",http_response_status_code=\"503\",http_route=\"/fail\",network_protocol_version=\"1.1\",url_scheme=\"http\""
        ),
        1
    );
    // Buckets are the semantic-convention ones.
    assert!(page.contains("http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/users/{id}\",network_protocol_version=\"1.1\",url_scheme=\"http\",le=\"0.075\"} 2"), "{page}");
    assert!(
        page.contains(
            "# HELP http_server_request_duration_seconds Duration of HTTP server requests."
        )
    );
    // Nothing in flight any more.
    assert!(
        page.contains(
            "http_server_active_requests{http_request_method=\"GET\",url_scheme=\"http\"} 0"
        ),
        "{page}"
    );
    assert!(
        !page.contains("/nope"),
        "raw paths must never become labels"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn server_span_continues_the_callers_trace() {
    propagator();
    let cap = Capture::new();
    let app = routes().layer(obs(&cap).traceparent_response(true));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let res = send(
        &app,
        Request::get("/users/7?secret=1")
            .header("traceparent", format!("00-{trace_id}-{parent}-01"))
            .header("baggage", "tenant=acme")
            .header("user-agent", "test-agent/1.0")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let echoed = res
        .headers()
        .get("traceparent")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(echoed.starts_with(&format!("00-{trace_id}-")), "{echoed}");
    send(&app, get_req("/fail")).await;
    send(&app, get_req("/bad")).await;

    let spans = cap.spans();
    let s = spans.iter().find(|s| s.name == "GET /users/{id}").unwrap();
    assert_eq!(s.span_kind, SpanKind::Server);
    assert_eq!(s.span_context.trace_id().to_string(), trace_id);
    assert_eq!(s.parent_span_id.to_string(), parent);
    assert!(echoed.contains(&s.span_context.span_id().to_string()));
    let attr = |span: &opentelemetry_sdk::trace::SpanData, k: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr(s, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(s, "http.route").as_deref(), Some("/users/{id}"));
    assert_eq!(attr(s, "url.path").as_deref(), Some("/users/7"));
    assert_eq!(attr(s, "url.scheme").as_deref(), Some("http"));
    assert_eq!(attr(s, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(
        attr(s, "user_agent.original").as_deref(),
        Some("test-agent/1.0")
    );
    assert_eq!(s.status, Status::Unset);
    let fail = spans.iter().find(|s| s.name == "GET /fail").unwrap();
    assert!(
        matches!(fail.status, Status::Error { .. }),
        "{:?}",
        fail.status
    );
    assert_eq!(attr(fail, "error.type").as_deref(), Some("503"));
    let bad = spans.iter().find(|s| s.name == "GET /bad").unwrap();
    assert_eq!(bad.status, Status::Unset, "4xx leaves server spans unset");
}

#[tokio::test(flavor = "current_thread")]
async fn a_sampled_out_server_span_still_carries_the_trace() {
    propagator();
    let cap = Capture::new();
    let app = Router::new()
        .route(
            "/ctx",
            get(|| async {
                tracing::info!("inside the handler");
                let cx = opentelemetry::Context::current();
                let sc = cx.span().span_context().clone();
                format!("{} {} {}", sc.trace_id(), sc.span_id(), sc.is_sampled())
            }),
        )
        .layer(obs(&cap).traceparent_response(true));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    // The caller did not sample: the parent-based sampler drops the server span.
    let res = send(
        &app,
        Request::get("/ctx")
            .header("traceparent", format!("00-{trace_id}-{parent}-00"))
            .header("x-request-id", "s-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let echoed = res.headers()["traceparent"].to_str().unwrap().to_owned();
    let body = text(res).await;
    let seen: Vec<&str> = body.split(' ').collect();
    let [seen_trace, span_id, sampled] = seen[..] else {
        panic!("{body}")
    };
    assert_eq!(
        seen_trace, trace_id,
        "the handler runs in the caller's trace"
    );
    assert_ne!(span_id, parent, "under a server span of its own");
    assert_ne!(span_id, "0000000000000000");
    assert_eq!(sampled, "false");
    assert_eq!(echoed, format!("00-{trace_id}-{span_id}-00"));
    assert!(cap.spans().is_empty(), "a sampled-out span is not exported");
    let logs = cap.logs();
    assert_eq!(logs.len(), 2, "{logs:#?}");
    for line in &logs {
        assert_eq!(line["trace.id"], trace_id, "{line}");
        assert_eq!(line["span.id"], span_id, "{line}");
        assert_eq!(line["http.request.id"], "s-1", "{line}");
    }
}

/// Notes, for each span that ends, whether the thread's current context then has a span.
#[derive(Debug, Default, Clone)]
struct ContextAtEnd(std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>);

impl opentelemetry_sdk::trace::SpanProcessor for ContextAtEnd {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        let in_a_span = opentelemetry::Context::map_current(|cx| cx.has_active_span());
        self.0
            .lock()
            .unwrap()
            .push((span.name.into_owned(), in_a_span));
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_server_span_ends_outside_the_requests_context() {
    // A processor that exports as spans end (the SDK's simple processor) must not do so as
    // part of the request: its own log lines would carry the request's trace and request ids.
    let ends = ContextAtEnd::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(ends.clone())
        .build();
    let cap = Capture::new();
    let app = routes().layer(obs(&cap).tracer_provider(&provider));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    send(&app, get_req("/users/1")).await;
    send(&app, get_req("/panic")).await;
    // A request dropped before its response (an outer timeout) too.
    let cancelled =
        tokio::time::timeout(Duration::from_millis(5), send(&app, get_req("/slow"))).await;
    assert!(cancelled.is_err());
    let ends = ends.0.lock().unwrap().clone();
    assert_eq!(
        ends,
        [
            ("GET /users/{id}".to_owned(), false),
            ("GET /panic".to_owned(), false),
            ("GET /slow".to_owned(), false)
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn request_ids_are_kept_or_generated_and_echoed() {
    let cap = Capture::new();
    let app = routes().layer(obs(&cap));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    let res = send(
        &app,
        Request::get("/id")
            .header("x-request-id", "abc-123")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    assert_eq!(text(res).await, "abc-123", "the handler sees the same id");
    let res = send(
        &app,
        Request::get("/id")
            .header("x-request-id", "bad id with spaces")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32);
    assert_eq!(text(res).await, generated);

    let custom = routes()
        .layer(obs(&cap).request_id_header(http::HeaderName::from_static("x-correlation-id")));
    let res = send(
        &custom,
        Request::get("/id")
            .header("x-correlation-id", "corr-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.headers()["x-correlation-id"], "corr-1");
}

/// A handler (and a layer inside `ObsLayer`) gets the id through the extractor and
/// `RequestId::current`, across `.await`s, with no extension unless asked for one.
#[tokio::test(flavor = "current_thread")]
async fn handlers_and_inner_layers_get_the_request_id() {
    let cap = Capture::new();
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    let app = || {
        Router::new()
            .route(
                "/seen",
                get(
                    |id: RequestId, ext: Option<Extension<RequestId>>| async move {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        let after_await = RequestId::current().map(|c| c.to_string());
                        format!(
                            "{id} {} {}",
                            after_await.as_deref().unwrap_or("none"),
                            ext.map_or("no-extension".to_owned(), |e| e.0.to_string())
                        )
                    },
                ),
            )
            .route(
                "/metrics",
                get(|id: Option<RequestId>| async move { format!("{id:?}") }),
            )
            .route("/healthz", get(|_id: RequestId| async { "unreachable" }))
            // Inside the observing layer (added before it): sees the id too.
            .layer(axum::middleware::from_fn(
                |req: axum::extract::Request, next: axum::middleware::Next| async move {
                    let id = RequestId::current();
                    let mut res = next.run(req).await;
                    if let Some(id) = id {
                        res.headers_mut()
                            .insert("x-inner-saw", id.header_value().clone());
                    }
                    res
                },
            ))
    };
    let plain = app().layer(obs(&cap));
    let res = send(
        &plain,
        Request::get("/seen")
            .header("x-request-id", "r-7")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.headers()["x-inner-saw"], "r-7");
    assert_eq!(text(res).await, "r-7 r-7 no-extension");
    let res = send(&plain, get_req("/seen")).await;
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(res.headers()["x-inner-saw"], generated.as_str());
    assert_eq!(
        text(res).await,
        format!("{generated} {generated} no-extension")
    );
    // Only inside a request.
    assert_eq!(RequestId::current(), None);

    // Not observed (excluded): `Option<RequestId>` is `None`, `RequestId` a 500 that says why.
    let res = send(&plain, get_req("/metrics")).await;
    assert_eq!(text(res).await, "None");
    let res = send(&plain, get_req("/healthz")).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = text(res).await;
    assert!(body.contains("not behind axi_obs_axum::ObsLayer"), "{body}");

    // On request, in the extensions too.
    let with_extension = app().layer(obs(&cap).request_id_extension(true));
    let res = send(
        &with_extension,
        Request::get("/seen")
            .header("x-request-id", "r-8")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(text(res).await, "r-8 r-8 r-8");
}

/// A middleware that runs the rest of the request on a task of its own takes the handler out
/// of the layer's poll: the extractor then finds the id only in the extensions, when asked for.
#[tokio::test(flavor = "current_thread")]
async fn a_handler_on_another_task_reads_the_id_from_the_extension() {
    let cap = Capture::new();
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    let app = || {
        Router::new()
            .route(
                "/spawned",
                get(|id: Option<RequestId>| async move {
                    id.map_or("none".to_owned(), |id| id.to_string())
                }),
            )
            .layer(axum::middleware::from_fn(
                |req: axum::extract::Request, next: axum::middleware::Next| async move {
                    tokio::spawn(next.run(req)).await.unwrap()
                },
            ))
    };
    let req = || {
        Request::get("/spawned")
            .header("x-request-id", "t-1")
            .body(Body::empty())
            .unwrap()
    };
    let res = send(&app().layer(obs(&cap)), req()).await;
    assert_eq!(text(res).await, "none");
    let res = send(&app().layer(obs(&cap).request_id_extension(true)), req()).await;
    assert_eq!(text(res).await, "t-1");
}

/// Two layers, each with its own id: the inner one's is current inside it, the outer one's
/// again once the inner layer's poll returns, and none after a panicking handler.
#[tokio::test(flavor = "current_thread")]
async fn nested_layers_each_make_their_own_id_current() {
    let cap = Capture::new();
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    let inner = obs(&cap).request_id_header(http::HeaderName::from_static("x-inner-id"));
    let app = routes()
        .route(
            "/nested",
            get(|id: RequestId| async move { id.to_string() }),
        )
        .layer(inner)
        // Between the two layers: sees the outer id before and after the inner layer ran.
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| async move {
                let before = RequestId::current().map(|i| i.to_string());
                let mut res = next.run(req).await;
                let after = RequestId::current().map(|i| i.to_string());
                res.headers_mut().insert(
                    "x-between",
                    format!("{before:?} {after:?}").parse().unwrap(),
                );
                res
            },
        ))
        .layer(obs(&cap));
    let res = send(
        &app,
        Request::get("/nested")
            .header("x-request-id", "outer-1")
            .header("x-inner-id", "inner-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        res.headers()["x-between"],
        "Some(\"outer-1\") Some(\"outer-1\")"
    );
    assert_eq!(text(res).await, "inner-1");
    let res = send(&app, get_req("/panic")).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(RequestId::current(), None);
}

/// Many requests at once on a multi-threaded runtime, each handler suspended several times
/// (and possibly resumed on another worker): each sees its own id, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_each_see_their_own_id() {
    let cap = Capture::new();
    let app = Router::new()
        .route(
            "/own",
            get(|id: RequestId| async move {
                let mut seen = vec![id.to_string()];
                for _ in 0..5 {
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    seen.push(RequestId::current().map_or("none".to_owned(), |i| i.to_string()));
                }
                seen.join(",")
            }),
        )
        .layer(obs(&cap));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let app = app.clone();
        tasks.spawn(async move {
            let id = format!("req-{i}");
            let res = send(
                &app,
                Request::get("/own")
                    .header("x-request-id", id.as_str())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            (id, text(res).await)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (id, body) = done.unwrap();
        assert_eq!(body, [id.as_str(); 6].join(","));
    }
}

/// Wrapping a service directly: code its `call` runs (before its future) sees the id too.
#[tokio::test(flavor = "current_thread")]
async fn a_wrapped_services_call_sees_the_request_id() {
    use tower::Layer as _;
    let cap = Capture::new();
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    let svc = obs(&cap).layer(tower::service_fn(|_req: Request<Body>| {
        let in_call = RequestId::current().map(|id| id.to_string());
        async move {
            Ok::<_, std::convert::Infallible>(Response::new(Body::from(
                in_call.unwrap_or_else(|| "none".to_owned()),
            )))
        }
    }));
    let res = svc
        .oneshot(
            Request::get("/x")
                .header("x-request-id", "c-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(text(res).await, "c-1");
}

#[tokio::test(flavor = "current_thread")]
async fn one_access_log_line_per_request_without_credentials() {
    let cap = Capture::new();
    let app = routes().layer(obs(&cap));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    send(
        &app,
        Request::get("/users/9?access_token=SECRET-QUERY")
            .header("authorization", "Bearer SECRET-AUTH")
            .header("cookie", "session=SECRET-COOKIE")
            .header("x-api-key", "SECRET-KEY")
            .header("x-request-id", "req-9")
            .header("user-agent", "curl/8")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    send(&app, get_req("/fail")).await;
    let raw = cap.log_text();
    for secret in [
        "SECRET-QUERY",
        "SECRET-AUTH",
        "SECRET-COOKIE",
        "SECRET-KEY",
        "access_token",
    ] {
        assert!(
            !raw.contains(secret),
            "{secret} leaked into the log:\n{raw}"
        );
    }
    let logs = cap.logs();
    let access = access_lines(&cap);
    assert_eq!(access.len(), 2, "{logs:#?}");
    let a = &access[0];
    assert_eq!(a["log.level"], "INFO");
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["http.route"], "/users/{id}");
    assert_eq!(a["url.path"], "/users/9");
    assert_eq!(a["http.response.status_code"], 200);
    assert_eq!(a["http.request.id"], "req-9");
    assert_eq!(a["user_agent.original"], "curl/8");
    assert!(a["event.duration"].as_u64().unwrap() > 0);
    assert_eq!(
        a["trace.id"].as_str().unwrap().len(),
        32,
        "inside the server span: {a}"
    );
    assert_eq!(
        access[1]["log.level"], "ERROR",
        "5xx logs at a higher level"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_handler_becomes_a_counted_logged_500() {
    let cap = Capture::new();
    let app = routes().layer(obs(&cap));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    let res = send(
        &app,
        Request::get("/panic")
            .header("x-request-id", "p-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()["x-request-id"], "p-1");
    // The service is still alive.
    assert_eq!(
        send(&app, get_req("/users/1")).await.status(),
        StatusCode::OK
    );
    let page = cap.metrics_handle().render();
    assert!(page.contains("error_type=\"500\",http_request_method=\"GET\",http_response_status_code=\"500\",http_route=\"/panic\""), "{page}");
    let logs = cap.logs();
    let panic_line = logs
        .iter()
        .find(|l| l["message"] == "handler panicked; answered 500")
        .unwrap();
    assert_eq!(panic_line["panic"], "boom in handler");
    assert_eq!(panic_line["http.request.id"], "p-1");
    assert_eq!(panic_line["log.level"], "ERROR");
    let span = cap
        .spans()
        .into_iter()
        .find(|s| s.name == "GET /panic")
        .unwrap();
    assert!(matches!(span.status, Status::Error { .. }));
}

#[tokio::test(flavor = "current_thread")]
async fn excluded_paths_are_not_observed() {
    let cap = Capture::new();
    let app = routes().layer(obs(&cap));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    assert_eq!(
        text(send(&app, get_req("/metrics")).await).await,
        "metrics page"
    );
    assert!(
        !cap.metrics_handle()
            .render()
            .contains("http_server_request_duration")
    );
    assert!(cap.logs().is_empty());
    assert!(cap.spans().is_empty());
    let all = routes().layer(obs(&cap).exclude_paths(Vec::<String>::new()));
    send(&all, get_req("/metrics")).await;
    assert!(
        cap.metrics_handle()
            .render()
            .contains("http_route=\"/metrics\"")
    );
}

/// The documented setup: the application's routes and the operational routes merged, then
/// the layer. Unmatched requests are observed (a router merged in *after* the layer would
/// bring its own, unwrapped 404: axum keeps the merged router's default fallback), and the
/// operational routes are excluded.
#[tokio::test(flavor = "current_thread")]
async fn the_documented_setup_observes_unmatched_requests() {
    let cap = Capture::new();
    let app: Router = Router::new()
        .route("/api/items/{id}", get(|| async { "item" }))
        .merge(
            axi_obs_axum::ObsRoutes::new()
                .metrics(cap.metrics_handle())
                .into_router(),
        )
        .layer(obs(&cap));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    assert_eq!(send(&app, get_req("/nope")).await.status(), 404);
    send(&app, get_req("/api/items/1")).await;
    send(&app, get_req("/metrics")).await;
    send(&app, get_req("/healthz")).await;
    let page = cap.metrics_handle().render();
    assert!(
        page.contains("http_route=\"unmatched\""),
        "404 observed: {page}"
    );
    assert!(page.contains("http_route=\"/api/items/{id}\""), "{page}");
    assert!(!page.contains("http_route=\"/metrics\""), "{page}");
    assert!(!page.contains("http_route=\"/healthz\""), "{page}");
    assert_eq!(access_lines(&cap).len(), 2);

    // What the docs warn about: merging after the layer loses the 404s.
    let late: Router = Router::new()
        .route("/api/items/{id}", get(|| async { "item" }))
        .layer(obs(&cap).exclude_paths(["/never"]))
        .merge(axi_obs_axum::ObsRoutes::new().into_router());
    let before = cap.metrics_handle().render();
    send(&late, get_req("/nope-late")).await;
    assert_eq!(before, cap.metrics_handle().render());
}

/// With spans off, the access-log line still carries the caller's trace id.
#[tokio::test(flavor = "current_thread")]
async fn without_spans_the_log_line_carries_the_callers_trace() {
    propagator();
    let cap = Capture::new();
    let app = routes().layer(obs(&cap).spans(false));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    send(
        &app,
        Request::get("/users/3")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(cap.spans().is_empty());
    let access = access_lines(&cap);
    assert_eq!(access[0]["trace.id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

/// axum 0.8 gives a `nest_service` mount no `MatchedPath`: its requests are `unmatched`, and
/// the layer says so once. The documented alternative, the service as a route of a nested
/// router, gets the prefix stripped just the same and a template.
#[tokio::test(flavor = "current_thread")]
async fn a_nested_service_is_unmatched_and_a_nested_route_service_has_its_template() {
    let cap = Capture::new();
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    // What `ServeDir` sees: the path without the prefix.
    let files = || {
        tower::service_fn(|req: Request<Body>| async move {
            Ok::<_, std::convert::Infallible>(Response::new(Body::from(
                req.uri().path().to_owned(),
            )))
        })
    };
    let app = Router::new()
        .nest_service("/static", files())
        .nest("/files", Router::new().route_service("/{*path}", files()))
        .layer(obs(&cap).spans(false));
    for uri in ["/static/app.js", "/static/app.css"] {
        let r = send(&app, get_req(uri)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(text(r).await, &uri["/static".len()..]);
    }
    let r = send(&app, get_req("/files/css/site.css")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text(r).await, "/css/site.css");

    let page = cap.metrics_handle().render();
    assert!(
        page.contains("http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"unmatched\",network_protocol_version=\"1.1\",url_scheme=\"http\"} 2"),
        "{page}"
    );
    assert!(
        page.contains("http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/files/{*path}\",network_protocol_version=\"1.1\",url_scheme=\"http\"} 1"),
        "{page}"
    );
    let warnings = warnings(&cap, "nest_service");
    // Once per process (the static flag may already be set by another test in this binary:
    // none other answers an unmatched request with a success).
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0]["url.path"], "/static/app.js");
}

#[tokio::test(flavor = "current_thread")]
async fn ordering_with_nested_routers_and_route_layer() {
    let cap = Capture::new();
    let layer = || obs(&cap).spans(false).access_log(false);
    // Layer on the outer router: nested routes get their full template.
    let api = Router::new().route("/items/{id}", get(|| async { "item" }));
    let outer = Router::new().nest("/api", api.clone()).layer(layer());
    send(&outer, get_req("/api/items/5")).await;
    // Layer on the inner router, before nesting: same full template.
    let inner = Router::new().nest("/v2", api.clone().layer(layer()));
    send(&inner, get_req("/v2/items/5")).await;
    // ... and the full path: the inner router sees `/items/5`, the log says `/v2/items/5`.
    let logged = Router::new().nest(
        "/v2",
        api.clone()
            .route("/metrics", get(|| async { "an API route" }))
            .layer(obs(&cap).spans(false)),
    );
    {
        let _g = tracing::dispatcher::set_default(&cap.dispatch());
        send(&logged, get_req("/v2/items/7")).await;
        // Exclusions match the path the client sent: `/v2/metrics` is not `/metrics`.
        send(&logged, get_req("/v2/metrics")).await;
    }
    let access = access_lines(&cap);
    assert_eq!(access.len(), 2, "{access:#?}");
    assert_eq!(access[0]["url.path"], "/v2/items/7");
    assert_eq!(access[0]["http.route"], "/v2/items/{id}");
    assert_eq!(access[1]["url.path"], "/v2/metrics");
    // route_layer: matched routes observed, unmatched (404) not.
    let rl = api.route_layer(layer());
    send(&rl, get_req("/items/1")).await;
    send(&rl, get_req("/missing")).await;
    // Routes added after `layer` are not observed.
    let late = Router::new()
        .route("/early", get(|| async { "" }))
        .layer(layer())
        .route("/late", get(|| async { "" }));
    send(&late, get_req("/early")).await;
    send(&late, get_req("/late")).await;

    let page = cap.metrics_handle().render();
    assert!(page.contains("http_route=\"/api/items/{id}\""), "{page}");
    assert!(page.contains("http_route=\"/v2/items/{id}\""), "{page}");
    assert!(page.contains("http_route=\"/v2/metrics\""), "{page}");
    assert!(page.contains("http_route=\"/items/{id}\""), "{page}");
    assert!(page.contains("http_route=\"/early\""), "{page}");
    assert!(!page.contains("http_route=\"/late\""), "{page}");
    assert!(
        !page.contains("unmatched"),
        "route_layer does not see 404s: {page}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn axum_prometheus_naming_mode() {
    let cap = Capture::new();
    let app = routes().layer(obs(&cap).naming(Naming::AxumPrometheus));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    send(&app, get_req("/users/1")).await;
    send(&app, get_req("/random/path")).await;
    let page = cap.metrics_handle().render();
    assert!(
        page.contains(
            "axum_http_requests_total{endpoint=\"/users/{id}\",method=\"GET\",status=\"200\"} 1"
        ),
        "{page}"
    );
    assert!(page.contains("axum_http_requests_duration_seconds_bucket{endpoint=\"/users/{id}\",method=\"GET\",status=\"200\",le=\"0.1\"} 1"), "{page}");
    assert!(
        !page.contains("le=\"0.075\""),
        "axum-prometheus buckets, not semconv: {page}"
    );
    assert!(
        page.contains("axum_http_requests_pending{endpoint=\"/users/{id}\",method=\"GET\"} 0"),
        "{page}"
    );
    assert!(page.contains("endpoint=\"unmatched\""));
    assert!(!page.contains("/random/path"));
}

#[tokio::test(flavor = "current_thread")]
async fn custom_labels_are_capped() {
    let cap = Capture::new();
    let app = routes().layer(
        obs(&cap)
            .spans(false)
            .access_log(false)
            .custom_labels(2, |req| {
                req.headers
                    .get("x-tenant")
                    .and_then(|v| v.to_str().ok())
                    .map(|t| vec![("tenant", t.to_owned())])
                    .unwrap_or_default()
            }),
    );
    for t in ["a", "b", "c", "d", "a"] {
        send(
            &app,
            Request::get("/users/1")
                .header("x-tenant", t)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    }
    let page = cap.metrics_handle().render();
    let tenants: Vec<&str> = ["a", "b", "c", "d", "_other"]
        .into_iter()
        .filter(|t| page.contains(&format!("tenant=\"{t}\"")))
        .collect();
    assert_eq!(tenants, ["a", "b", "_other"], "{page}");
    // Repeated label sets land in the same series (recorded through cached handles).
    let count = |tenant: &str| {
        page.lines()
            .find(|l| {
                l.starts_with("http_server_request_duration_seconds_count{")
                    && l.contains(&format!("tenant=\"{tenant}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no count for {tenant} in\n{page}"))
            .to_owned()
    };
    assert_eq!(
        [count("a"), count("b"), count("_other")],
        ["2", "1", "2"],
        "{page}"
    );
    // Without the header the hook gives no label: the series without `tenant`.
    send(&app, get_req("/users/1")).await;
    send(&app, get_req("/users/1")).await;
    let page = cap.metrics_handle().render();
    assert!(
        page.contains("http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/users/{id}\",network_protocol_version=\"1.1\",url_scheme=\"http\"} 2"),
        "{page}"
    );
}

/// `url.scheme` of an HTTP/1.1 request (no scheme in its target): `http`, or `https` when
/// the service terminates TLS itself; an absolute target's or a trusted proxy's wins.
#[tokio::test(flavor = "current_thread")]
async fn the_scheme_of_a_request_without_one_follows_the_listener() {
    let cap = Capture::new();
    let plain = routes().layer(obs(&cap).access_log(false));
    let tls = routes().layer(obs(&cap).access_log(false).served_over_tls(true));
    let trusting = routes().layer(
        obs(&cap)
            .access_log(false)
            .served_over_tls(true)
            .trust_forwarded_headers(true),
    );
    send(&plain, get_req("/users/1")).await;
    send(&tls, get_req("/users/2")).await;
    send(&tls, get_req("http://h2c.example/users/3")).await;
    send(
        &trusting,
        Request::get("/users/4")
            .header("x-forwarded-proto", "http")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let spans = cap.spans();
    let scheme = |path: &str| {
        let s = spans
            .iter()
            .find(|s| span_attr(s, "url.path").as_deref() == Some(path))
            .unwrap_or_else(|| panic!("no span for {path}"));
        span_attr(s, "url.scheme").unwrap()
    };
    assert_eq!(
        [
            scheme("/users/1"),
            scheme("/users/2"),
            scheme("/users/3"),
            scheme("/users/4")
        ],
        ["http", "https", "http", "http"]
    );
    let page = cap.metrics_handle().render();
    assert!(
        page.contains("http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/users/{id}\",network_protocol_version=\"1.1\",url_scheme=\"https\"} 1"),
        "{page}"
    );
}

/// Semantic conventions' known-methods override: the methods named are recorded as
/// themselves, each its own series, span name and in-flight gauge; every other one, default
/// methods included, is `_OTHER`.
#[tokio::test(flavor = "current_thread")]
async fn the_known_methods_can_be_overridden() {
    let cap = Capture::new();
    let method = |m: &str| http::Method::from_bytes(m.as_bytes()).unwrap();
    let app = Router::new()
        .route("/dav/{*path}", axum::routing::any(|| async { "dav" }))
        .layer(obs(&cap).access_log(false).known_methods([
            http::Method::GET,
            method("PROPFIND"),
            method("REPORT"),
        ]));
    for (m, n) in [
        ("PROPFIND", 3),
        ("REPORT", 2),
        ("GET", 1),
        ("POST", 1),
        ("MKCOL", 1),
    ] {
        for _ in 0..n {
            let r = send(
                &app,
                Request::builder()
                    .method(method(m))
                    .uri("/dav/a/b")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
    let page = cap.metrics_handle().render();
    let count = |m: &str| {
        let prefix = format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"{m}\",http_response_status_code=\"200\",http_route=\"/dav/{{*path}}\""
        );
        page.lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {m} series in\n{page}"))
            .to_owned()
    };
    assert_eq!(
        [
            count("PROPFIND"),
            count("REPORT"),
            count("GET"),
            count("_OTHER")
        ],
        ["3", "2", "1", "2"],
        "{page}"
    );
    assert!(
        !page.contains("\"POST\""),
        "POST is not in this list: {page}"
    );
    for m in ["PROPFIND", "REPORT", "_OTHER"] {
        assert!(
            page.contains(&format!(
                "http_server_active_requests{{http_request_method=\"{m}\",url_scheme=\"http\"}} 0"
            )),
            "{m}: {page}"
        );
    }
    let spans = cap.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "PROPFIND /dav/{*path}")
            .count(),
        3,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "HTTP /dav/{*path}").count(),
        2,
        "{names:?}"
    );
    let mkcol = spans
        .iter()
        .find(|s| span_attr(s, "http.request.method_original").as_deref() == Some("MKCOL"))
        .unwrap();
    assert_eq!(
        span_attr(mkcol, "http.request.method").as_deref(),
        Some("_OTHER")
    );
}

/// A panic in the custom-label hook stays in the layer: the request is served by its handler,
/// counted without custom labels, logged with its request id, and the panic is reported.
#[tokio::test(flavor = "current_thread")]
async fn a_panic_in_the_custom_label_hook_is_caught() {
    let cap = Capture::new();
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    let app = routes().layer(obs(&cap).custom_labels(4, |req| {
        // Indexing a header that is not there panics.
        vec![(
            "tenant",
            req.headers["x-tenant"].to_str().unwrap().to_owned(),
        )]
    }));
    let r = send(
        &app,
        Request::get("/users/1")
            .header("x-request-id", "hook-panic-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text(r).await, "user");
    send(&app, get_req("/users/1")).await;
    send(
        &app,
        Request::get("/users/1")
            .header("x-tenant", "t1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let page = cap.metrics_handle().render();
    assert!(
        page.contains("http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/users/{id}\",network_protocol_version=\"1.1\",url_scheme=\"http\"} 2"),
        "{page}"
    );
    assert!(page.contains("tenant=\"t1\""), "{page}");
    let lines = access_lines(&cap);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["http.request.id"], "hook-panic-1", "{lines:?}");
    let warnings = warnings(&cap, "custom_labels hook panicked");
    // Warned at the first and the second panic.
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0]["panic"].as_str().unwrap().contains("x-tenant")
            || warnings[0]["panic"].as_str().unwrap().contains("header"),
        "{warnings:?}"
    );
}

/// Two custom labels, axum-prometheus names: the counter and the histogram carry both, each
/// label set counted apart however often it repeats.
#[tokio::test(flavor = "current_thread")]
async fn custom_labels_with_axum_prometheus_names() {
    let cap = Capture::new();
    let app = routes().layer(
        obs(&cap)
            .spans(false)
            .access_log(false)
            .naming(Naming::AxumPrometheus)
            .custom_labels(10, |req| {
                let h = |n| {
                    req.headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_owned()
                };
                vec![("tenant", h("x-tenant")), ("plan", h("x-plan"))]
            }),
    );
    for (tenant, plan) in [("a", "free"), ("a", "pro"), ("a", "free"), ("b", "free")] {
        send(
            &app,
            Request::get("/users/1")
                .header("x-tenant", tenant)
                .header("x-plan", plan)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    }
    let page = cap.metrics_handle().render();
    for (labels, n) in [
        ("plan=\"free\",status=\"200\",tenant=\"a\"", 2),
        ("plan=\"pro\",status=\"200\",tenant=\"a\"", 1),
        ("plan=\"free\",status=\"200\",tenant=\"b\"", 1),
    ] {
        // Rendered with labels sorted by name.
        let line = format!(
            "axum_http_requests_total{{endpoint=\"/users/{{id}}\",method=\"GET\",{labels}}} {n}"
        );
        assert!(page.contains(&line), "{line} missing in\n{page}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn span_duration_matches_the_recorded_metric() {
    let cap = Capture::new();
    let app = routes().layer(obs(&cap));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    send(&app, get_req("/slow")).await;
    let span = cap
        .spans()
        .into_iter()
        .find(|s| s.name == "GET /slow")
        .unwrap();
    let span_secs = span
        .end_time
        .duration_since(span.start_time)
        .unwrap()
        .as_secs_f64();
    let snap = cap.metrics();
    let h = snap.family("http.server.request.duration").unwrap().series[0]
        .value
        .as_histogram()
        .unwrap()
        .clone();
    assert_eq!(h.count, 1);
    // Both clocks read around the same instants (span start/end vs the layer's Instant):
    // they agree to well under a millisecond on a 30 ms request.
    assert!(
        (span_secs - h.sum).abs() < 0.002,
        "span {span_secs} s vs metric {} s",
        h.sum
    );
}

/// 100,000 requests to random unmatched paths with random methods leave the series count
/// where the first such request put it.
#[tokio::test(flavor = "current_thread")]
async fn random_unmatched_requests_cannot_grow_the_series_count() {
    let cap = Capture::new();
    let app = routes().layer(obs(&cap).spans(false).access_log(false));
    let series = |page: &str| {
        page.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count()
    };
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Random method tokens (never a known method, so all are `_OTHER`) and random paths.
    let known = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "QUERY",
    ];
    let mut after_first = None;
    for i in 0..100_000 {
        let mut method = String::new();
        for _ in 0..(3 + next() % 6) {
            method.push((b'A' + (next() % 26) as u8) as char);
        }
        if known.contains(&method.as_str()) {
            method.push('X');
        }
        let uri = format!("/scan/{:x}/{:x}?q={}", next(), next(), next());
        send(
            &app,
            Request::builder()
                .method(method.as_str())
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        if i == 0 {
            after_first = Some(series(&cap.metrics_handle().render()));
        }
    }
    let end = series(&cap.metrics_handle().render());
    println!(
        "series after the first round: {}, after 100,000 requests: {end}",
        after_first.unwrap()
    );
    assert_eq!(Some(end), after_first);
}

/// Regression: a request whose future was dropped (client gone, outer timeout) used to vanish
/// from the latency histogram and the logs.
#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_request_is_still_counted_and_logged() {
    let cap = Capture::new();
    let app = routes().layer(obs(&cap));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    let outcome =
        tokio::time::timeout(Duration::from_millis(5), send(&app, get_req("/slow"))).await;
    assert!(outcome.is_err(), "the outer timeout fires first");
    let page = cap.metrics_handle().render();
    assert!(
        page.contains("http_server_request_duration_seconds_count{error_type=\"cancelled\",http_request_method=\"GET\",http_route=\"/slow\",network_protocol_version=\"1.1\",url_scheme=\"http\"} 1"),
        "{page}"
    );
    assert!(
        page.contains(
            "http_server_active_requests{http_request_method=\"GET\",url_scheme=\"http\"} 0"
        ),
        "{page}"
    );
    let logs = cap.logs();
    let line = logs
        .iter()
        .find(|l| l["message"] == "request cancelled before a response")
        .unwrap_or_else(|| panic!("{logs:#?}"));
    assert_eq!(line["url.path"], "/slow");
    assert_eq!(line["error.type"], "cancelled");
    let span = cap
        .spans()
        .into_iter()
        .find(|s| s.name == "GET /slow")
        .unwrap();
    // The client went away: `error.type`, but no error status (only 5xx and panics).
    assert_eq!(span.status, Status::Unset);
    assert!(
        span.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "error.type" && kv.value.as_str() == "cancelled"),
        "{span:#?}"
    );
}

/// `tracestate` split over two header fields is joined, as W3C Trace Context says.
/// W3C's test suite: two `traceparent` fields, or one not in the exact shape, start a new
/// trace (with its `tracestate`); the baggage still counts.
#[tokio::test(flavor = "current_thread")]
async fn duplicated_or_malformed_traceparents_start_a_new_trace() {
    propagator();
    let cap = Capture::new();
    let app = routes().layer(obs(&cap));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let good = format!("00-{trace}-00f067aa0ba902b7-01");
    let cases: Vec<Vec<String>> = vec![
        vec![good.clone(), format!("00-{trace}-00f067aa0ba902b8-01")],
        vec!["00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01".into()],
        vec!["00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01".into()],
        vec![format!("00-{trace}-00f067aa0ba902b-01")],
        vec![format!("00-{trace}-00f067aa0ba902b7-1")],
        vec![format!("0-{trace}-00f067aa0ba902b7-01")],
        vec![format!("000-{trace}-00f067aa0ba902b7-01")],
        vec![format!("00-{trace}-00f067aa0ba902b7-01-")],
        vec![format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase())],
        vec![format!("ff-{trace}-00f067aa0ba902b7-01")],
        vec![format!("00-{trace}-0000000000000000-01")],
        vec![format!("+0-{trace}-00f067aa0ba902b7-01")],
    ];
    for parents in &cases {
        let mut req = Request::get("/users/1");
        for p in parents {
            req = req.header("traceparent", p);
        }
        let req = req
            .header("tracestate", "vendor=x")
            .header("baggage", "tenant=acme")
            .body(Body::empty())
            .unwrap();
        send(&app, req).await;
    }
    // A later version may carry more after a dash: continued.
    let later = format!("cc-{trace}-00f067aa0ba902b7-01-what-the-future-holds");
    send(
        &app,
        Request::get("/users/2")
            .header("traceparent", &later)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let spans: Vec<_> = cap
        .spans()
        .into_iter()
        .filter(|s| s.name == "GET /users/{id}")
        .collect();
    assert_eq!(spans.len(), cases.len() + 1);
    for (s, parents) in spans.iter().zip(&cases) {
        assert_ne!(
            s.span_context.trace_id().to_string(),
            trace,
            "continued {parents:?}"
        );
        assert!(
            s.span_context.trace_state().header().is_empty(),
            "{parents:?}"
        );
    }
    assert_eq!(
        spans[cases.len()].span_context.trace_id().to_string(),
        trace
    );
}

#[tokio::test(flavor = "current_thread")]
async fn split_tracestate_headers_are_combined() {
    propagator();
    let cap = Capture::new();
    let app = routes().layer(obs(&cap));
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    send(
        &app,
        Request::get("/users/1")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("tracestate", "a=1")
            .header("tracestate", "b=2")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let span = cap
        .spans()
        .into_iter()
        .find(|s| s.name == "GET /users/{id}")
        .unwrap();
    let state = span.span_context.trace_state().header();
    assert!(state.contains("a=1") && state.contains("b=2"), "{state}");
}

#[tokio::test(flavor = "current_thread")]
async fn body_sizes_sampling_and_forwarded_headers() {
    let cap = Capture::new();
    let app = Router::new()
        .route("/echo", post(|body: String| async move { body }))
        .route("/users/{id}", get(|| async { "user" }))
        .layer(
            obs(&cap)
                .body_size_metrics(true)
                .sample_successes(0.0)
                .trust_forwarded_headers(true),
        );
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    send(
        &app,
        Request::post("/echo")
            .header("content-length", "5")
            .body(Body::from("hello"))
            .unwrap(),
    )
    .await;
    send(
        &app,
        Request::get("/nope")
            .header("x-forwarded-for", "203.0.113.7, 10.0.0.1")
            .header("x-forwarded-proto", "https")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    // HEAD: no body goes out, whatever Content-Length the handler's GET response had.
    send(
        &app,
        Request::head("/users/1")
            .header("x-forwarded-for", "6.6.6.6, [2001:db8::1]:4711")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let page = cap.metrics_handle().render();
    assert!(page.contains("http_server_request_body_size_bytes_sum{http_request_method=\"POST\",http_response_status_code=\"200\",http_route=\"/echo\",network_protocol_version=\"1.1\",url_scheme=\"http\"} 5"), "{page}");
    assert!(page.contains("http_server_response_body_size_bytes_sum{http_request_method=\"POST\",http_response_status_code=\"200\",http_route=\"/echo\",network_protocol_version=\"1.1\",url_scheme=\"http\"} 5"), "{page}");
    assert!(
        page.contains("url_scheme=\"https\""),
        "trusted X-Forwarded-Proto: {page}"
    );
    assert!(page.contains("http_server_response_body_size_bytes_sum{http_request_method=\"HEAD\",http_response_status_code=\"200\",http_route=\"/users/{id}\",network_protocol_version=\"1.1\",url_scheme=\"http\"} 0"), "{page}");
    let logs = cap.logs();
    let access = access_lines(&cap);
    // The 200s were sampled out (ratio 0); the 404 is always logged. The address is the one
    // the (one) proxy appended, not what the client put in front of it.
    assert_eq!(access.len(), 1, "{logs:#?}");
    assert_eq!(access[0]["http.response.status_code"], 404);
    assert_eq!(access[0]["client.address"], "10.0.0.1");
}

/// Behind two proxies (a load balancer, then nginx) the client is the second entry from the
/// end; a `Forwarded` address loses its brackets and port.
#[tokio::test(flavor = "current_thread")]
async fn forwarded_hops_and_the_forwarded_header() {
    let cap = Capture::new();
    let app = routes().layer(
        obs(&cap)
            .spans(false)
            .trust_forwarded_headers(true)
            .forwarded_hops(2),
    );
    let _g = tracing::dispatcher::set_default(&cap.dispatch());
    send(
        &app,
        Request::get("/users/1")
            .header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    send(
        &app,
        Request::get("/users/2")
            .header(
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.1;proto=http",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let access = access_lines(&cap);
    assert_eq!(access[0]["client.address"], "203.0.113.7");
    assert_eq!(access[1]["client.address"], "2001:db8::1");
    let page = cap.metrics_handle().render();
    assert!(
        page.contains(
            "http_route=\"/users/{id}\",network_protocol_version=\"1.1\",url_scheme=\"https\""
        ),
        "Forwarded proto=: {page}"
    );
}

/// A streamed response of unknown size is counted as it is sent and recorded when it ends, or
/// when the client drops it (the bytes sent until then); its duration is recorded at once.
#[tokio::test(flavor = "current_thread")]
async fn streamed_response_bodies_are_counted_as_they_are_sent() {
    let cap = Capture::new();
    let app = Router::new()
        .route(
            "/stream",
            post(|| async {
                let chunks = ["a", "bc"].map(|c| Ok::<_, std::io::Error>(c.to_owned()));
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .layer(obs(&cap).body_size_metrics(true));
    let request = || {
        Request::post("/stream")
            .header("content-length", "3")
            .body(Body::from("abc"))
            .unwrap()
    };
    for _ in 0..2 {
        let r = send(&app, request()).await;
        assert_eq!(text(r).await, "abc");
    }
    let page = cap.metrics_handle().render();
    let labels = "{http_request_method=\"POST\",http_response_status_code=\"200\",http_route=\"/stream\",network_protocol_version=\"1.1\",url_scheme=\"http\"}";
    let series = |page: &str, series: &str, value: &str| {
        let line = format!("{series}{labels} {value}");
        assert!(page.contains(&line), "{line} missing in\n{page}");
    };
    // The size is not known when the response starts: nothing is recorded until the body has
    // been sent.
    for (name, value) in [
        ("http_server_request_duration_seconds_count", "2"),
        ("http_server_request_body_size_bytes_count", "2"),
        ("http_server_request_body_size_bytes_sum", "6"),
        ("http_server_response_body_size_bytes_count", "2"),
        ("http_server_response_body_size_bytes_sum", "6"),
    ] {
        series(&page, name, value);
    }
    // A client that goes away after the first chunk: what was sent counts.
    let r = send(&app, request()).await;
    let mut body = r.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"a");
    let page = cap.metrics_handle().render();
    series(&page, "http_server_response_body_size_bytes_count", "2");
    drop(body);
    let page = cap.metrics_handle().render();
    series(&page, "http_server_response_body_size_bytes_count", "3");
    series(&page, "http_server_response_body_size_bytes_sum", "7");
    series(&page, "http_server_request_duration_seconds_count", "3");
}

/// A request body without `Content-Length` (chunked, or HTTP/2) is counted as the handler
/// reads it; one the handler leaves unread counts as 0 bytes.
#[tokio::test(flavor = "current_thread")]
async fn streamed_request_bodies_are_counted_as_they_are_read() {
    let cap = Capture::new();
    let app = Router::new()
        .route(
            "/upload",
            post(|body: String| async move { body.len().to_string() }),
        )
        .route("/ignore", post(|| async { "not read" }))
        .layer(obs(&cap).body_size_metrics(true));
    let streamed = || {
        let chunks = ["ab", "cde"].map(|c| Ok::<_, std::io::Error>(c.to_owned()));
        Body::from_stream(futures_util::stream::iter(chunks))
    };
    for path in ["/upload", "/upload", "/ignore"] {
        let r = send(&app, Request::post(path).body(streamed()).unwrap()).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let page = cap.metrics_handle().render();
    for (route, count, sum) in [("/upload", "2", "10"), ("/ignore", "1", "0")] {
        let labels = format!(
            "{{http_request_method=\"POST\",http_response_status_code=\"200\",http_route=\"{route}\",network_protocol_version=\"1.1\",url_scheme=\"http\"}}"
        );
        for (series, value) in [
            ("http_server_request_body_size_bytes_count", count),
            ("http_server_request_body_size_bytes_sum", sum),
        ] {
            let line = format!("{series}{labels} {value}");
            assert!(page.contains(&line), "{line} missing in\n{page}");
        }
    }
}

/// The in-flight gauge counts requests while their handlers run and drops back to zero when
/// they end, with either naming (the OpenTelemetry one is found by index, axum-prometheus's by
/// route).
#[tokio::test(flavor = "current_thread")]
async fn the_in_flight_gauge_counts_running_requests() {
    for (naming, series) in [
        (
            Naming::OpenTelemetry,
            "http_server_active_requests{http_request_method=\"GET\",url_scheme=\"http\"}",
        ),
        (
            Naming::AxumPrometheus,
            "axum_http_requests_pending{endpoint=\"/slow\",method=\"GET\"}",
        ),
    ] {
        let cap = Capture::new();
        let app = routes().layer(obs(&cap).naming(naming));
        let _g = tracing::dispatcher::set_default(&cap.dispatch());
        let value = || {
            let page = cap.metrics_handle().render();
            page.lines()
                .find_map(|l| l.strip_prefix(series))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("{series} missing in\n{page}"))
        };
        let mut running = Vec::new();
        for _ in 0..3 {
            let mut fut = Box::pin(send(&app, get_req("/slow")));
            // Polled once: the layer has counted it, the handler sleeps.
            let pending = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(fut.as_mut().poll(cx).is_pending())
            })
            .await;
            assert!(pending);
            running.push(fut);
        }
        assert_eq!(value(), "3", "{naming:?}");
        drop(running.pop());
        assert_eq!(value(), "2", "{naming:?}: a dropped request ends its count");
        for fut in running {
            assert_eq!(fut.await.status(), StatusCode::OK);
        }
        assert_eq!(value(), "0", "{naming:?}");
    }
}

/// The attributes of `span` as `key → value` text.
fn span_attrs(span: &opentelemetry_sdk::trace::SpanData) -> Vec<(String, String)> {
    span.attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn span_attr(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
    let found: Vec<_> = span_attrs(span)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect();
    assert!(found.len() <= 1, "{key} set twice: {found:?}");
    found.into_iter().next()
}

#[tokio::test(flavor = "current_thread")]
async fn server_spans_carry_query_server_and_peer_attributes() {
    let cap = Capture::new();
    let app = routes().layer(obs(&cap));
    let trusting = routes().layer(obs(&cap).trust_forwarded_headers(true).span_query(false));
    let peer = axum::extract::ConnectInfo(std::net::SocketAddr::from(([10, 1, 2, 3], 54_321)));
    let with_peer = |mut req: Request<Body>| {
        req.extensions_mut().insert(peer);
        req
    };
    // Origin form with a `Host` header, as HTTP/1.1 sends it.
    send(
        &app,
        with_peer(
            Request::get("/users/1?q=rust&sig=abc&access_token=t")
                .header("host", "example.com:8080")
                .body(Body::empty())
                .unwrap(),
        ),
    )
    .await;
    // Absolute form (and HTTP/2's `:authority`): the target's authority wins over `Host`.
    send(
        &app,
        Request::get("http://[2001:db8::1]:9000/users/2")
            .header("host", "ignored.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    // Behind a trusted proxy: the host the client addressed, and the client it saw.
    send(
        &trusting,
        with_peer(
            Request::get("/users/3?q=hidden")
                .header("host", "backend:3000")
                .header("x-forwarded-host", "public.example")
                .header("x-forwarded-for", "203.0.113.9")
                .body(Body::empty())
                .unwrap(),
        ),
    )
    .await;
    // `Forwarded: host=` too, and a `Host` without a port.
    send(
        &trusting,
        Request::get("/users/4")
            .header("host", "backend")
            .header("forwarded", "for=198.51.100.7;host=\"shop.example:8443\"")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    // Both proxy headers: `X-Forwarded-Host` wins, as `X-Forwarded-For` and `-Proto` do (a
    // proxy that sets those passes the client's own `Forwarded` through). An unusable one:
    // the next source.
    send(
        &trusting,
        Request::get("/users/6")
            .header("host", "backend")
            .header("forwarded", "host=fwd.example")
            .header("x-forwarded-host", "xfh.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    send(
        &trusting,
        Request::get("/users/7")
            .header("host", "backend:3000")
            .header("forwarded", "host=\"\"")
            .header("x-forwarded-host", "[bad")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    send(
        &app,
        Request::get("/users/5")
            .header("host", "plain.example")
            .header("x-forwarded-host", "forged.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;

    let spans = cap.spans();
    let by_path = |path: &str| {
        spans
            .iter()
            .find(|s| span_attr(s, "url.path").as_deref() == Some(path))
            .unwrap_or_else(|| panic!("no span for {path}: {spans:#?}"))
    };
    let s = by_path("/users/1");
    assert_eq!(
        span_attr(s, "url.query").as_deref(),
        Some("q=rust&sig=REDACTED&access_token=REDACTED")
    );
    assert_eq!(
        span_attr(s, "server.address").as_deref(),
        Some("example.com")
    );
    assert_eq!(span_attr(s, "server.port").as_deref(), Some("8080"));
    assert_eq!(span_attr(s, "client.address").as_deref(), Some("10.1.2.3"));
    assert_eq!(
        span_attr(s, "network.peer.address").as_deref(),
        Some("10.1.2.3")
    );
    assert_eq!(span_attr(s, "network.peer.port").as_deref(), Some("54321"));

    let s = by_path("/users/2");
    assert_eq!(span_attr(s, "url.query"), None, "no query, no attribute");
    assert_eq!(
        span_attr(s, "server.address").as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(span_attr(s, "server.port").as_deref(), Some("9000"));
    assert_eq!(span_attr(s, "client.address"), None, "no connect info");
    assert_eq!(span_attr(s, "network.peer.address"), None);

    let s = by_path("/users/3");
    assert_eq!(span_attr(s, "url.query"), None, "span_query(false)");
    assert_eq!(
        span_attr(s, "server.address").as_deref(),
        Some("public.example")
    );
    assert_eq!(span_attr(s, "server.port"), None);
    assert_eq!(
        span_attr(s, "client.address").as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(
        span_attr(s, "network.peer.address").as_deref(),
        Some("10.1.2.3"),
        "the peer is the socket's, whatever the proxy says"
    );

    let s = by_path("/users/4");
    assert_eq!(
        span_attr(s, "server.address").as_deref(),
        Some("shop.example")
    );
    assert_eq!(span_attr(s, "server.port").as_deref(), Some("8443"));
    assert_eq!(
        span_attr(s, "client.address").as_deref(),
        Some("198.51.100.7")
    );

    let s = by_path("/users/6");
    assert_eq!(
        span_attr(s, "server.address").as_deref(),
        Some("xfh.example")
    );
    let s = by_path("/users/7");
    assert_eq!(span_attr(s, "server.address").as_deref(), Some("backend"));
    assert_eq!(span_attr(s, "server.port").as_deref(), Some("3000"));

    let s = by_path("/users/5");
    assert_eq!(
        span_attr(s, "server.address").as_deref(),
        Some("plain.example"),
        "forwarded headers are not trusted by default"
    );
    assert_eq!(span_attr(s, "server.port"), None);
}

/// The attributes a sampler was given, one list per span.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<Vec<(String, String)>>>>;

/// A sampler that notes the attributes it is given and drops spans of one route.
#[derive(Debug, Clone, Default)]
struct RouteSampler(Seen);

impl opentelemetry_sdk::trace::ShouldSample for RouteSampler {
    fn should_sample(
        &self,
        _parent: Option<&opentelemetry::Context>,
        _trace_id: opentelemetry::trace::TraceId,
        _name: &str,
        _kind: &SpanKind,
        attributes: &[opentelemetry::KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        let seen: Vec<(String, String)> = attributes
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        let drop = seen.iter().any(|(k, v)| k == "http.route" && v == "/bad");
        self.0.lock().unwrap().push(seen);
        opentelemetry_sdk::trace::SamplingResult {
            decision: if drop {
                opentelemetry_sdk::trace::SamplingDecision::Drop
            } else {
                opentelemetry_sdk::trace::SamplingDecision::RecordAndSample
            },
            attributes: Vec::new(),
            trace_state: Default::default(),
        }
    }
}

/// Collects ended spans.
#[derive(Debug, Clone, Default)]
struct Ended(std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

impl opentelemetry_sdk::trace::SpanProcessor for Ended {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        self.0.lock().unwrap().push(span);
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn samplers_see_request_attributes_when_asked() {
    for at_start in [false, true] {
        let sampler = RouteSampler::default();
        let ended = Ended::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_sampler(sampler.clone())
            .with_span_processor(ended.clone())
            .build();
        let cap = Capture::new();
        let app = routes().layer(
            obs(&cap)
                .tracer_provider(&provider)
                .sampler_attributes(at_start),
        );
        for path in ["/users/1?page=2", "/bad"] {
            send(
                &app,
                Request::get(path)
                    .header("host", "api.example:8080")
                    .header("user-agent", "probe/1")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        }
        let seen = sampler.0.lock().unwrap().clone();
        let ended = ended.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        if !at_start {
            assert!(seen.iter().all(Vec::is_empty), "off by default: {seen:?}");
            // Nothing to drop by, so both are recorded.
            assert_eq!(ended.len(), 2);
            continue;
        }
        let get = |i: usize, k: &str| {
            seen[i]
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        for (k, v) in [
            ("http.request.method", "GET"),
            ("url.path", "/users/1"),
            ("url.query", "page=2"),
            ("url.scheme", "http"),
            ("http.route", "/users/{id}"),
            ("server.address", "api.example"),
            ("server.port", "8080"),
            ("user_agent.original", "probe/1"),
            ("network.protocol.version", "1.1"),
        ] {
            assert_eq!(get(0, k).as_deref(), Some(v), "{k}: {:?}", seen[0]);
        }
        assert_eq!(get(1, "http.route").as_deref(), Some("/bad"));
        // The sampler dropped `/bad` by its route; the recorded span has each attribute once,
        // plus what only the response tells.
        assert_eq!(ended.len(), 1, "{ended:#?}");
        let s = &ended[0];
        assert_eq!(s.name, "GET /users/{id}");
        assert_eq!(span_attr(s, "http.route").as_deref(), Some("/users/{id}"));
        assert_eq!(span_attr(s, "url.query").as_deref(), Some("page=2"));
        assert_eq!(
            span_attr(s, "http.response.status_code").as_deref(),
            Some("200")
        );
    }
}

/// Requests served before any recorder is installed leave nothing behind that outlives it:
/// once one is, requests of the same label set are counted, under the described name.
#[tokio::test(flavor = "current_thread")]
async fn requests_before_a_recorder_exists_do_not_blind_the_layer() {
    // The layer's default: the global recorder, of which this test binary installs none.
    let app = routes().layer(ObsLayer::new().spans(false).access_log(false));
    send(&app, get_req("/users/1")).await;
    let cap = Capture::new();
    let _recorder = metrics::set_default_local_recorder(cap.recorder());
    send(&app, get_req("/users/2")).await;
    let page = cap.metrics_handle().render();
    assert!(
        page.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{page}"
    );
    let line = "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/users/{id}\",network_protocol_version=\"1.1\",url_scheme=\"http\"} 1";
    assert!(page.contains(line), "{line} missing in\n{page}");
}
