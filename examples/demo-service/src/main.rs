//! `demo-service`: the demo shop API, instrumented with axi-obs.

use std::net::SocketAddr;
use std::path::PathBuf;

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

    /// The SQLite file of the deploy history (created if missing). Deploys are recorded with
    /// `axi-deploy run --endpoint http://THIS-ADDRESS ...`. Defaults to
    /// $XDG_DATA_HOME/demo-service/deploys.db (~/.local/share/...; the temporary directory
    /// without a home).
    #[arg(long, env = "DEMO_DEPLOY_DB", value_name = "PATH")]
    deploy_db: Option<PathBuf>,

    /// Accept GitHub webhooks on /api/deploy/github, verified with this secret.
    #[arg(long, env = "DEMO_GITHUB_SECRET", hide_env_values = true)]
    github_secret: Option<String>,

    /// The project name deploys of this service are recorded under (`axi-deploy --project`);
    /// the in-process alerts carry it as the `project` label.
    #[arg(long, default_value = "demo-service", env = "DEMO_PROJECT")]
    project: String,

    /// The environment this instance runs in (`axi-deploy --env`), the alerts' `environment`
    /// label.
    #[arg(long, default_value = "dev", env = "DEMO_ENVIRONMENT")]
    environment: String,

    /// How often the in-process alert rules are evaluated.
    #[arg(long, default_value = "15s", value_parser = parse_interval, hide = true)]
    rules_interval: std::time::Duration,

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
    let telemetry = demo_service::telemetry()
        .try_install()
        .context("cannot start telemetry")?;
    demo_service::describe_metrics();
    let metrics = axi_obs_core::global_metrics().context("telemetry has no metrics handle")?;

    let db = args
        .deploy_db
        .clone()
        .unwrap_or_else(demo_service::deploys::default_db_path);
    let mut deploys = demo_service::Deploys::open(&db)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("cannot open the deploy history {}", db.display()))?;
    if let Some(secret) = &args.github_secret {
        deploys = deploys.github_secret(secret.as_bytes());
    }
    tracing::info!(path = %db.display(), "deploy history");
    let _rules = demo_service::alerts::start(
        &demo_service::alerts::AlertsConfig {
            project: args.project.clone(),
            environment: args.environment.clone(),
            interval: args.rules_interval,
        },
        Some(&deploys),
    )
    .map_err(|e| anyhow::anyhow!(e))
    .context("cannot start the alert rules")?;

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

    let state =
        demo_service::AppState::new(metrics, args.downstream.clone()).deploys(deploys.clone());
    let layer =
        (!args.no_obs).then(|| axi_obs_axum::ObsLayer::new().access_log(!args.no_access_log));
    let app = demo_service::app_with(state, layer);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown({
        let deploys = deploys.clone();
        async move {
            shutdown_signal().await;
            // Live streams end, so the server can stop; the hooks handle what arrived.
            deploys.shutdown(std::time::Duration::from_secs(5));
        }
    })
    .await
    .context("server error")?;
    if let Some(load) = load {
        load.abort();
    }
    tracing::info!("shutting down");
    telemetry.shutdown().await.context("telemetry shutdown")?;
    Ok(())
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}`: expected e.g. 15s or 500ms"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" | "" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n * 60)),
        _ => Err(format!("`{s}`: expected e.g. 15s or 500ms")),
    }
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
