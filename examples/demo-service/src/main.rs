//! `demo-service`: the demo shop API, instrumented with axi-obs.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;

/// A small shop API instrumented with axi-obs: JSON logs, Prometheus metrics on /metrics,
/// OTLP traces/logs/metrics when OTEL_EXPORTER_OTLP_ENDPOINT is set.
///
/// Everything works with no external service. Configuration comes from the standard
/// OpenTelemetry variables (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT, ...), RUST_LOG,
/// AXI_LOG_FORMAT (json, pretty, compact) and AXI_LOG_FILE.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Address to listen on (loopback by default; use 0.0.0.0:8080 to expose it).
    #[arg(long, default_value = "127.0.0.1:8080", env = "DEMO_LISTEN")]
    listen: SocketAddr,

    /// Also generate traffic against this service, so the metrics move.
    #[arg(long)]
    load: bool,

    /// Requests per second sent in --load mode.
    #[arg(long, default_value_t = 20, requires = "load")]
    load_rps: u32,

    /// Base URL of a second service whose catalogue /api/recommendations fetches (trace
    /// context propagated), e.g. http://127.0.0.1:8081.
    #[arg(long, env = "DEMO_DOWNSTREAM")]
    downstream: Option<String>,

    /// Serve without the axi-obs layer (only to measure what it costs).
    #[arg(long, hide = true)]
    no_obs: bool,

    /// Serve with the layer but without access-log lines (only to measure what they cost).
    #[arg(long, hide = true)]
    no_access_log: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = axi_obs_core::Telemetry::builder()
        .default_service_name("demo-service")
        .service_version(env!("CARGO_PKG_VERSION"))
        .try_install()
        .context("cannot start telemetry")?;
    demo_service::describe_metrics();
    let metrics = axi_obs_core::global_metrics().context("telemetry has no metrics handle")?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    tracing::info!(address = %addr, "listening");
    eprintln!(
        "demo-service listening on {base}\n  try: curl {base}/api/products\n  metrics: {base}/metrics   health: {base}/readyz   version: {base}/version\n{}",
        if args.load {
            format!(
                "  generating about {} requests per second (--load)",
                args.load_rps
            )
        } else {
            "  run with --load to generate traffic".to_owned()
        }
    );

    let load = args
        .load
        .then(|| tokio::spawn(demo_service::generate_load(base.clone(), args.load_rps)));

    let state = demo_service::AppState::new(metrics, args.downstream.clone());
    let layer =
        (!args.no_obs).then(|| axi_obs_axum::ObsLayer::new().access_log(!args.no_access_log));
    let app = demo_service::app_with(state, layer);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("server error")?;
    if let Some(load) = load {
        load.abort();
    }
    tracing::info!("shutting down");
    telemetry.shutdown().await.context("telemetry shutdown")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
