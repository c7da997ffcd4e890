//! `axi-log-shipper`: tails log files, parses nginx and JSON logs, derives access metrics,
//! ships OTLP logs.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use log_shipper::config::{Config, OtlpProtocol, TlsOptions};
use log_shipper::output::{ElasticsearchBulk, JsonLines, OtlpGrpc, OtlpHttp, Output};
use log_shipper::pipeline;
use log_shipper::registry::Registry;

/// Tails log files without losing a line, parses nginx access logs (any `log_format`), JSON
/// lines and plain text, derives access metrics, and ships the events as OTLP logs (HTTP or
/// gRPC), into Elasticsearch (`_bulk`) or as JSON lines on standard output.
///
/// Files are found by globs polled every `poll_interval` and followed across rotation (rename
/// and create, copytruncate, deletion) by device, inode and a fingerprint of their first bytes.
/// Offsets are kept in a registry file, written atomically and advanced only after the output
/// acknowledged the events: a restart or `kill -9` loses nothing, and re-sends at most the
/// batch that was in flight.
///
/// GET /metrics on --listen serves the access metrics (nginx_http_requests_total{vhost,
/// method,status_class}, nginx_http_path_requests_total, nginx_http_response_bytes_total,
/// nginx_http_request_duration_seconds, nginx_http_unique_visitors{vhost,window}) and the shipper's own (log_shipper_*, process_*);
/// /healthz, /readyz and /version too. The shipper's own logs are JSON lines on standard
/// error (standard output may carry the events); RUST_LOG and AXI_LOG_FORMAT apply.
///
/// The configuration file's format is in the README next to the source
/// (examples/log-shipper/README.md). Exit status: 0 after a clean shutdown (SIGTERM, SIGINT),
/// 1 on any error, 2 on bad arguments.
#[derive(Debug, Parser)]
#[command(name = "axi-log-shipper", version, about, long_about)]
struct Args {
    /// The YAML configuration file (inputs, output, registry, batching).
    #[arg(long, env = "AXI_LOG_SHIPPER_CONFIG")]
    config: PathBuf,

    /// Address for /metrics, /healthz, /readyz and /version (loopback by default).
    #[arg(long, default_value = "127.0.0.1:9280", env = "AXI_LOG_SHIPPER_LISTEN")]
    listen: SocketAddr,

    /// Check the configuration file and exit (0 when valid).
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    if args.check_config {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{}: ok ({} inputs)",
            args.config.display(),
            config.inputs.len()
        )?;
        return Ok(());
    }
    let telemetry = axi_obs_core::Telemetry::builder()
        .default_service_name("axi-log-shipper")
        .service_version(env!("CARGO_PKG_VERSION"))
        .log_writer(std::io::stderr())
        .try_install()
        .context("cannot start telemetry")?;
    log_shipper::names::describe();
    raise_open_file_limit();

    let inputs = pipeline::input_specs(&config).map_err(anyhow::Error::msg)?;
    let registry = Registry::load(&config.registry)?;
    let no_tls = TlsOptions::default();
    let tls = config.output.otlp.as_ref().and_then(|o| o.tls.as_ref());
    let tls = tls.or(config
        .output
        .elasticsearch
        .as_ref()
        .and_then(|e| e.tls.as_ref()));
    if tls.is_some_and(|t| t.insecure_skip_verify) {
        tracing::warn!(
            "output.tls.insecure_skip_verify is set: the server's certificate is not verified"
        );
    }
    let output: Box<dyn Output> = match (&config.output.otlp, &config.output.elasticsearch) {
        (Some(o), _) if o.protocol == OtlpProtocol::Grpc => Box::new(OtlpGrpc::with_tls(
            &o.endpoint,
            o.timeout,
            o.headers.clone(),
            o.tls.as_ref().unwrap_or(&no_tls),
        )?),
        (Some(o), _) => Box::new(OtlpHttp::with_tls(
            &o.endpoint,
            o.timeout,
            o.headers.clone(),
            o.tls.as_ref().unwrap_or(&no_tls),
        )?),
        (None, Some(e)) => Box::new(ElasticsearchBulk::with_tls(
            &e.endpoint,
            &e.index_prefix,
            e.timeout,
            e.headers.clone(),
            e.tls.as_ref().unwrap_or(&no_tls),
        )?),
        (None, None) => Box::new(JsonLines::stdout()),
    };

    let app = axi_obs_axum::ObsRoutes::new()
        .version(axi_obs_axum::version_info!())
        .into_router()
        .layer(axi_obs_axum::ObsLayer::new().exclude_paths(["/healthz", "/readyz"]));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(address = %addr, inputs = config.inputs.len(), registry = %config.registry.display(), "listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(wait(stop_rx.clone()))
            .into_future(),
    );
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let result = pipeline::run(
        pipeline::Settings::from(&config),
        inputs,
        registry,
        output,
        wait(stop_rx),
    )
    .await;
    signals.abort();
    server.abort();
    let _ = server.await;
    result?;
    telemetry.shutdown().await.context("telemetry shutdown")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Raises the soft limit on open files to the hard one, as Go programs such as Filebeat do
/// at start: every tailed file stays open until `close_inactive`, and systemd's default soft
/// limit (1024) would otherwise stop a server with many logs (EMFILE for files, the registry
/// and connections alike).
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited: never the hard limit of open files on Linux; elsewhere a soft limit
    // cannot be made unlimited, so it is left as it is.
    let below = match (limit.current, limit.maximum) {
        (Some(soft), Some(hard)) => soft < hard,
        _ => false,
    };
    if !below {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = ?limit.current, to = ?limit.maximum, "open-file limit raised")
        }
        Err(e) => {
            tracing::warn!(error = %e, soft = ?limit.current, "cannot raise the open-file limit")
        }
    }
}
