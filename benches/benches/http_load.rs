//! Throughput under load of the demo's simplest route behind each HTTP layer, side by side in
//! one run: no layer, an empty layer, axi-obs-axum's `ObsLayer` in three configurations,
//! axum-prometheus 0.10, tower-http's `TraceLayer` and opentelemetry-instrumentation-tower 0.19.
//!
//! Every variant serves the demo service's router (`demo_service::app_wrapping`, the same
//! handlers and operational routes as the `demo-service` binary) with the layer around its API
//! routes, under the telemetry the demo installs with no collector configured (JSON logs to
//! standard output, which goes to `/dev/null`; spans created and sampled out). wrk (the Debian
//! package) drives `GET /api/products` on loopback with 32 connections, the server pinned to
//! CPU 0 and wrk to CPU 1; the variants alternate within each round (each round starting one
//! variant later), and the best and median requests per second of each are printed with the
//! loss against no layer, next to the server's CPU time (user and system, from
//! `/proc/PID/stat`) per request served: the server is CPU-bound on its core, and its CPU per
//! request moves less than the throughput when something else on the machine takes a share.
//!
//! ```text
//! cargo bench -p axi-obs-benches --bench http_load [-- FILTER...]
//! AXI_LOAD_SECS=8 AXI_LOAD_ROUNDS=3 (the defaults)
//! ```
//!
//! A FILTER keeps the variants whose name contains it (`none` is always run: it is the
//! baseline). Without `wrk` or `taskset` on `PATH`, or with fewer than two CPUs, the bench
//! prints why and does nothing.
//! The process runs each server itself: `http_load --serve VARIANT ADDRESS`.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http::Request;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

/// The variants, in run order: name and what it measures.
const VARIANTS: &[(&str, &str)] = &[
    ("none", "no layer (the baseline)"),
    (
        "no-op",
        "an identity `MapRequestLayer` (what any `Router::layer` costs)",
    ),
    ("axi-obs-metrics", "axi-obs: metrics + request id"),
    (
        "axi-obs-no-access-log",
        "axi-obs: metrics, span (sampled out), request id",
    ),
    (
        "axi-obs-full",
        "axi-obs: full layer (+ access log), the demo's default",
    ),
    ("axum-prometheus", "axum-prometheus 0.10: metrics"),
    (
        "tower-http-trace",
        "tower-http TraceLayer: span + response event (INFO)",
    ),
    (
        "otel-tower",
        "opentelemetry-instrumentation-tower 0.19: metrics + span (sampled out)",
    ),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let (Some(variant), Some(addr)) = (args.get(i + 1), args.get(i + 2)) else {
            eprintln!("usage: http_load --serve VARIANT ADDRESS");
            std::process::exit(2);
        };
        if let Err(e) = serve(variant, addr) {
            eprintln!("http_load --serve {variant}: {e}");
            std::process::exit(1);
        }
        return;
    }
    // `cargo bench` passes `--bench`; anything else not starting with `-` is a filter.
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let missing: Vec<&str> = ["wrk", "taskset"]
        .into_iter()
        .filter(|t| axi_obs_benches::peer(t).is_none())
        .collect();
    if !missing.is_empty() {
        println!(
            "http_load: skipped, {} not on PATH (apt-get install -y wrk util-linux)",
            missing.join(" and ")
        );
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if cpus < 2 {
        println!("http_load: skipped, it pins the server and wrk to CPUs 0 and 1; {cpus} here");
        return;
    }
    let secs = env_number("AXI_LOAD_SECS", 8);
    let rounds = env_number("AXI_LOAD_ROUNDS", 3);
    let variants: Vec<(&str, &str)> = VARIANTS
        .iter()
        .copied()
        .filter(|(name, _)| {
            *name == "none" || filters.is_empty() || filters.iter().any(|f| name.contains(f))
        })
        .collect();
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        // Each round starts one variant later: no variant always runs first (on a machine
        // just idle) or always after the same one.
        let n = variants.len();
        for i in (0..n).map(|k| (k + round as usize) % n) {
            let name = variants[i].0;
            match measure(name, secs) {
                Ok(run) => {
                    eprintln!(
                        "round {}: {name}: {:.0} requests/s, {:.2} µs of server CPU per request",
                        round + 1,
                        run.rps,
                        run.cpu_us
                    );
                    results[i].push(run);
                }
                Err(e) => {
                    eprintln!("http_load: {name}: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    report(&variants, &results, secs);
}

/// One measured run of a variant.
#[derive(Clone, Copy)]
struct Run {
    /// wrk's requests per second.
    rps: f64,
    /// The server process's CPU time (user and system) per request served, in µs.
    cpu_us: f64,
}

/// A positive whole number from the environment, or `default`.
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => match v.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("http_load: {name}={v}: expected a whole number of at least 1");
                std::process::exit(2);
            }
        },
        Err(_) => default,
    }
}

/// Starts the server of `variant` on CPU 0, warms it up, runs wrk on CPU 1 and returns its
/// requests per second with the server's CPU time per request.
fn measure(variant: &str, secs: u64) -> Result<Run, String> {
    let port = axi_obs_benches::free_port();
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let server = Command::new("taskset")
        .args(["-c", "0"])
        .arg(exe)
        .args(["--serve", variant, &format!("127.0.0.1:{port}")])
        .env("AXI_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let server = axi_obs_benches::KillOnDrop(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while axi_obs_benches::http_get(port, "/healthz").is_none() {
        if Instant::now() > deadline {
            return Err("the server did not answer /healthz within 10 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{port}/api/products");
    wrk(&url, 2)?;
    let pid = server.0.id();
    let before = cpu_ticks(pid)?;
    let (rps, requests) = wrk(&url, secs)?;
    let ticks = cpu_ticks(pid)? - before;
    drop(server);
    Ok(Run {
        rps,
        cpu_us: ticks as f64 / clock_ticks_per_second() * 1e6 / requests as f64,
    })
}

/// The CPU time process `pid` has used (user and system), in clock ticks: fields 14 and 15 of
/// `/proc/PID/stat`, counted after the command, which ends in `)`.
fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    match (fields.get(11), fields.get(12)) {
        (Some(u), Some(s)) => Ok(u.parse::<u64>().unwrap_or(0) + s.parse::<u64>().unwrap_or(0)),
        _ => Err(format!("/proc/{pid}/stat: unexpected format: {stat}")),
    }
}

/// `getconf CLK_TCK` (100 on Linux's common architectures).
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Runs wrk (one thread, 32 connections) on CPU 1; its requests per second and the requests
/// it completed.
fn wrk(url: &str, secs: u64) -> Result<(f64, u64), String> {
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1", "-c32", &format!("-d{secs}s"), url])
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") {
        return Err(format!(
            "wrk failed or got error responses:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    // "  812345 requests in 8.00s, 190.47MB read"
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("no request count in wrk's output:\n{text}"))?;
    Ok((rps, requests))
}

fn report(variants: &[(&str, &str)], results: &[Vec<Run>], secs: u64) {
    // The best (highest throughput, least CPU) and the median of a list.
    let stats = |v: Vec<f64>, higher_is_better: bool| {
        let mut v = v;
        v.sort_by(f64::total_cmp);
        let best = if higher_is_better {
            v[v.len() - 1]
        } else {
            v[0]
        };
        (best, v[(v.len() - 1) / 2])
    };
    let rps = |r: &[Run]| stats(r.iter().map(|r| r.rps).collect(), true);
    let cpu = |r: &[Run]| stats(r.iter().map(|r| r.cpu_us).collect(), false);
    let (base_best, base_median) = rps(&results[0]);
    let (cpu_base_best, cpu_base_median) = cpu(&results[0]);
    println!(
        "\nGET /api/products, wrk -t1 -c32 -d{secs}s, {} rounds; loss against no layer; \
         server CPU (user + system) per request served\n",
        results[0].len()
    );
    println!(
        "| variant | best req/s | median req/s | best / median vs none | paired: median of rounds vs that round's none | CPU per request, best / median | CPU added, best / median |"
    );
    println!("|---|---|---|---|---|---|---|");
    for ((_, what), r) in variants.iter().zip(results) {
        let (best, median) = rps(r);
        let (cpu_best, cpu_median) = cpu(r);
        let loss = |x: f64, base: f64| (x / base - 1.0) * 100.0;
        // Each round's run against the baseline of the same round, which ran minutes (not a
        // quarter of an hour) apart: slow drifts of the machine's speed cancel.
        let (_, paired) = stats(
            r.iter()
                .zip(&results[0])
                .map(|(v, base)| loss(v.rps, base.rps))
                .collect(),
            true,
        );
        println!(
            "| {what} | {best:.0} | {median:.0} | {:+.0} % / {:+.0} % | {paired:+.0} % | {cpu_best:.2} / {cpu_median:.2} µs | {:+.2} / {:+.2} µs |",
            loss(best, base_best),
            loss(median, base_median),
            cpu_best - cpu_base_best,
            cpu_median - cpu_base_median,
        );
    }
}

/// Serves the demo's router behind `variant`'s layer until killed.
fn serve(variant: &str, addr: &str) -> Result<(), String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    // As `#[tokio::main]` in the demo: a worker per core (the process is pinned to one).
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        // The telemetry the demo installs, in parts: axum-prometheus installs its own global
        // metrics recorder, so ours is installed only for the other variants.
        let parts = demo_service::telemetry()
            .build()
            .map_err(|e| e.to_string())?;
        let metrics = parts.recorder.handle();
        if variant != "axum-prometheus" {
            metrics::set_global_recorder(parts.recorder.clone()).map_err(|e| e.to_string())?;
        }
        {
            use tracing_subscriber::layer::SubscriberExt;
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(parts.layer),
            )
            .map_err(|e| e.to_string())?;
        }
        if let Some(p) = parts.tracer_provider {
            opentelemetry::global::set_tracer_provider(p);
        }
        opentelemetry::global::set_text_map_propagator(parts.propagator);
        let _guard = parts.guard;
        // opentelemetry-instrumentation-tower records through the global meter provider:
        // give it an SDK one (read by nobody), as an application exporting metrics would.
        let _meters = (variant == "otel-tower").then(|| {
            let p = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
                .with_reader(opentelemetry_sdk::metrics::ManualReader::builder().build())
                .build();
            opentelemetry::global::set_meter_provider(p.clone());
            p
        });

        let state = demo_service::AppState::new(metrics, None);
        let app = match variant {
            "none" => demo_service::app_wrapping(state, |api| api),
            "no-op" => demo_service::app_wrapping(state, |api| {
                api.layer(tower::util::MapRequestLayer::new(|r: Request<Body>| r))
            }),
            "axi-obs-metrics" => demo_service::app_wrapping(state, |api| {
                api.layer(axi_obs_axum::ObsLayer::new().spans(false).access_log(false))
            }),
            "axi-obs-no-access-log" => demo_service::app_wrapping(state, |api| {
                api.layer(axi_obs_axum::ObsLayer::new().access_log(false))
            }),
            "axi-obs-full" => {
                demo_service::app_wrapping(state, |api| api.layer(axi_obs_axum::ObsLayer::new()))
            }
            "axum-prometheus" => {
                let (layer, _handle) = axum_prometheus::PrometheusMetricLayer::pair();
                demo_service::app_wrapping(state, |api| api.layer(layer))
            }
            "tower-http-trace" => demo_service::app_wrapping(state, |api| {
                api.layer(
                    TraceLayer::new_for_http()
                        .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
            }),
            "otel-tower" => demo_service::app_wrapping(state, |api| {
                api.layer(opentelemetry_instrumentation_tower::http::server::Layer::new())
            }),
            other => {
                return Err(format!(
                    "unknown variant `{other}`; one of: {}",
                    VARIANTS.iter().map(|v| v.0).collect::<Vec<_>>().join(", ")
                ));
            }
        };
        serve_app(app, addr).await
    })
}

async fn serve_app(app: Router, addr: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .map_err(|e| e.to_string())
}
