//! Time added per request by HTTP instrumentation over a bare axum router, driven in-process,
//! side by side in one run with axum-prometheus 0.10, tower-http's `TraceLayer` and
//! opentelemetry-instrumentation-tower 0.19.
//!
//! Every row serves `GET /users/{id}` (path `/users/42`) through `Router::oneshot` (routes built
//! once with `with_state(())`, as `axum::serve` builds them) on a
//! current-thread runtime, 256 requests per timed batch. The tracing subscriber is what
//! `axi_obs_core::Telemetry::build()` installs (JSON logs to a sink, OpenTelemetry span layer)
//! with the `always_off` sampler: spans are created and sampled out, for every row alike.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use opentelemetry::trace::TracerProvider as _;
use tower::ServiceExt;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

fn base() -> Router {
    Router::new().route("/users/{id}", get(|| async { "user" }))
}

fn run(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    app: Router,
) {
    run_with(c, name, app, false);
}

/// `connect_info`: each request carries the peer address, as `axum::serve` adds it for
/// `into_make_service_with_connect_info` (how apps that log client addresses are served).
fn run_with(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    app: Router,
    connect_info: bool,
) {
    let peer = axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 50_000)));
    // As `axum::serve` does (through `into_make_service`): turn every handler into its route,
    // layers applied, once. Without it, a `Router<()>` driven by `oneshot` builds each route
    // and its layers again on every request, which no server does.
    let app = app.with_state(());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut req = Request::get("/users/42").body(Body::empty()).unwrap();
                    if connect_info {
                        req.extensions_mut().insert(peer);
                    }
                    black_box(app.clone().oneshot(req).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
}

/// The layer with metrics and request ids only.
fn metrics_only(recorder: &axi_obs_core::MetricsRecorder) -> axi_obs_axum::ObsLayer {
    axi_obs_axum::ObsLayer::new()
        .recorder(recorder.clone())
        .spans(false)
        .access_log(false)
}

fn layers(c: &mut Criterion) {
    // The subscriber and OpenTelemetry providers every row runs under.
    let parts = axi_obs_core::Telemetry::builder()
        .env(axi_obs_core::Env::empty())
        .service_name("bench")
        .sampler(axi_obs_core::Sampler::AlwaysOff)
        .log_format(axi_obs_core::LogFormat::Json)
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let recorder = parts.recorder.clone();
    let subscriber = {
        use tracing_subscriber::layer::SubscriberExt;
        tracing_subscriber::registry().with(parts.layer)
    };
    tracing::subscriber::set_global_default(subscriber).unwrap();
    opentelemetry::global::set_tracer_provider(
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
            .build(),
    );
    let meter_provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(opentelemetry_sdk::metrics::ManualReader::builder().build())
        .build();
    opentelemetry::global::set_meter_provider(meter_provider.clone());
    let _ = parts.tracer_provider.as_ref().map(|p| p.tracer("bench"));

    let mut g = c.benchmark_group("http_request_in_process");
    g.measurement_time(Duration::from_secs(4));

    run(&mut g, "bare router", base());
    // What any `Router::layer` costs before doing anything: axum boxes one more service and
    // future per route.
    run(
        &mut g,
        "no-op layer (calibration)",
        base().layer(tower::util::MapRequestLayer::new(|r: Request<Body>| r)),
    );
    run(
        &mut g,
        "axi-obs: metrics + request id",
        base().layer(metrics_only(&recorder)),
    );
    // The id also in the request's extensions (opt-in: the map grows on its fourth entry).
    run(
        &mut g,
        "axi-obs: metrics + request id in extensions",
        base().layer(metrics_only(&recorder).request_id_extension(true)),
    );
    // A label from the request (a tenant, say) on the duration metric, through the hook.
    run(
        &mut g,
        "axi-obs: metrics + request id + one custom label",
        base().layer(metrics_only(&recorder).custom_labels(100, |req| {
            let tenant = req.uri.path().split('/').nth(1).unwrap_or_default();
            vec![("tenant", tenant.to_owned())]
        })),
    );
    // The optional request and response body size histograms.
    run(
        &mut g,
        "axi-obs: metrics + request id + body sizes",
        base().layer(metrics_only(&recorder).body_size_metrics(true)),
    );
    // The same two, with requests carrying `ConnectInfo` (axum's router then holds four
    // extensions before the layer adds the request id, so the map has already grown).
    run_with(&mut g, "connect info: bare router", base(), true);
    run_with(
        &mut g,
        "connect info: axi-obs: metrics + request id",
        base().layer(metrics_only(&recorder)),
        true,
    );
    run(
        &mut g,
        "axi-obs: span (sampled out) + access log + request id",
        base().layer(
            axi_obs_axum::ObsLayer::new()
                .recorder(recorder.clone())
                .metrics(false),
        ),
    );
    run(
        &mut g,
        "axi-obs: full layer (metrics, span sampled out, access log, request id)",
        base().layer(axi_obs_axum::ObsLayer::new().recorder(recorder.clone())),
    );
    // With connect info the access log also carries the client address.
    run_with(
        &mut g,
        "connect info: axi-obs: full layer",
        base().layer(axi_obs_axum::ObsLayer::new().recorder(recorder.clone())),
        true,
    );
    // axum-prometheus spawns its upkeep task on the current runtime.
    let prom_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (prom_layer, _prom_handle) = {
        let _enter = prom_rt.enter();
        axum_prometheus::PrometheusMetricLayer::pair()
    };
    run(
        &mut g,
        "axum-prometheus 0.10: metrics",
        base().layer(prom_layer),
    );
    run(
        &mut g,
        "tower-http TraceLayer: span + response event (INFO)",
        base().layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        ),
    );
    run(
        &mut g,
        "opentelemetry-instrumentation-tower 0.19: metrics + span (sampled out)",
        base().layer(opentelemetry_instrumentation_tower::http::server::Layer::new()),
    );
    g.finish();
    drop(meter_provider);
}

criterion_group!(benches, layers);
criterion_main!(benches);
