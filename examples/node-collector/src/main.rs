//! `axi-node-collector`: system metrics with node_exporter's names on `/metrics`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Parser;
use node_collector::{Node, Paths};

/// System metrics with node_exporter's names, types, labels and HELP text, read from /proc and
/// /sys at each scrape, so node_exporter dashboards work unchanged.
///
/// GET /metrics returns the node metrics followed by the collector's own (process, HTTP);
/// /healthz, /readyz and /version come from axi-obs-axum. Logs go to standard output: JSON
/// lines, or compact text when it is a terminal (AXI_LOG_FORMAT chooses; RUST_LOG and the
/// OTEL_* variables apply).
#[derive(Debug, Parser)]
#[command(name = "axi-node-collector", version, about, long_about)]
struct Args {
    /// Address to listen on (loopback by default; node_exporter's port).
    #[arg(long, default_value = "127.0.0.1:9100", env = "AXI_NODE_LISTEN")]
    listen: SocketAddr,

    /// Scrapes gathered at once, at most (node_exporter's --web.max-requests); more are
    /// answered 503 at once, so hung reads cannot pile threads up without bound. 0: no limit.
    #[arg(long = "web.max-requests", default_value_t = 40)]
    max_requests: usize,

    /// Where /proc is (node_exporter's --path.procfs), e.g. /host/proc in a container.
    #[arg(long, default_value = "/proc")]
    procfs: PathBuf,

    /// Where /sys is (--path.sysfs).
    #[arg(long, default_value = "/sys")]
    sysfs: PathBuf,

    /// The root filesystem, for /etc/os-release and statvfs of mounts (--path.rootfs).
    #[arg(long, default_value = "/")]
    rootfs: PathBuf,

    /// Only these collectors (comma-separated); default all, or the config file's list.
    /// `--collectors list` prints the names.
    #[arg(long, value_delimiter = ',')]
    collectors: Vec<String>,

    /// YAML file with process and port checks, probes and the collector list (see the crate
    /// documentation for its format). Without it: every collector, no checks.
    #[arg(long, env = "AXI_NODE_CONFIG")]
    config: Option<PathBuf>,

    /// Mount points the filesystem collector leaves out: a regular expression, matched
    /// anywhere (anchor it). Replaces node_exporter's default,
    /// ^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/).
    #[arg(long = "collector.filesystem.mount-points-exclude", value_name = "REGEX", value_parser = regex::Regex::new)]
    mount_points_exclude: Option<regex::Regex>,

    /// Filesystem types the filesystem collector leaves out. Replaces node_exporter's default
    /// (the pseudo filesystems: autofs, bpf, cgroup, overlay, proc, sysfs, tracefs ...).
    #[arg(long = "collector.filesystem.fs-types-exclude", value_name = "REGEX", value_parser = regex::Regex::new)]
    fs_types_exclude: Option<regex::Regex>,

    /// Block devices the diskstats collector leaves out. Replaces node_exporter's default,
    /// ^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$ (partitions and virtual devices).
    #[arg(long = "collector.diskstats.device-exclude", value_name = "REGEX", value_parser = regex::Regex::new)]
    disk_devices_exclude: Option<regex::Regex>,

    /// Network interfaces the netdev collector leaves out (default: none), such as
    /// containers' ^(veth|cali).* interfaces, which come and go with every container.
    #[arg(long = "collector.netdev.device-exclude", value_name = "REGEX", value_parser = regex::Regex::new)]
    netdev_exclude: Option<regex::Regex>,

    /// Network interfaces the netclass collector leaves out (default: none).
    #[arg(long = "collector.netclass.ignored-devices", value_name = "REGEX", value_parser = regex::Regex::new)]
    netclass_ignored: Option<regex::Regex>,
}

// Feature `mimalloc` (off by default): see the crate's Cargo.toml.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread serves HTTP and the probes; the collectors read /proc on the blocking pool. A
// second worker thread bought no scrape time and cost resident memory (BENCHMARKS.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let paths = Paths {
        proc: args.procfs,
        sys: args.sysfs,
        root: args.rootfs,
    };
    let all = Node::new(paths.clone()).collector_names();
    if args.collectors.iter().any(|c| c == "list") {
        #[allow(clippy::print_stdout)]
        for c in &all {
            println!("{c}");
        }
        return Ok(());
    }
    let config = match &args.config {
        Some(file) => node_collector::config::Config::load(file, &all)?,
        None => node_collector::config::Config::default(),
    };
    let chosen: Vec<String> = if !args.collectors.is_empty() {
        if let Some(unknown) = args.collectors.iter().find(|c| !all.contains(&c.as_str())) {
            anyhow::bail!(
                "--collectors: unknown collector {unknown:?}; known: {}",
                all.join(", ")
            );
        }
        args.collectors.clone()
    } else {
        config
            .collectors
            .clone()
            .unwrap_or_else(|| all.iter().map(|s| (*s).to_owned()).collect())
    };
    let names: Vec<&str> = chosen.iter().map(String::as_str).collect();
    let exclusions = node_collector::collectors::Exclusions {
        mount_points: args.mount_points_exclude.clone(),
        fs_types: args.fs_types_exclude.clone(),
        disk_devices: args.disk_devices_exclude.clone(),
        netdev_devices: args.netdev_exclude.clone(),
        netclass_devices: args.netclass_ignored.clone(),
    };
    let mut node = Node::with_exclusions(paths.clone(), &names, &exclusions);
    let telemetry = axi_obs_core::Telemetry::builder()
        .default_service_name("axi-node-collector")
        .service_version(env!("CARGO_PKG_VERSION"))
        .try_install()
        .context("cannot start telemetry")?;

    if !config.processes.is_empty() {
        node.add(Box::new(node_collector::checks::Processes::new(
            config.processes.clone(),
        )));
    }
    if !config.ports.is_empty() {
        node.add(Box::new(node_collector::checks::Ports::new(
            config.ports.clone(),
        )));
    }
    if !config.probes.is_empty() {
        node.add(Box::new(node_collector::probes::Probes::start(
            config.probes.clone(),
        )));
    }
    let path = node_collector::command::env_path();
    if let Some(pm2) = node_collector::pm2::Pm2::start(&config.pm2, &path) {
        node.add(Box::new(pm2));
    }
    if let Some(systemd) = node_collector::systemd::Systemd::start(&config.systemd, &paths, &path) {
        node.add(Box::new(systemd));
    }
    let node = Arc::new(node);
    let limit = match args.max_requests {
        0 => tokio::sync::Semaphore::MAX_PERMITS,
        n => n,
    };
    let scrapes = Scrapes {
        node: node.clone(),
        slots: Arc::new(tokio::sync::Semaphore::new(limit)),
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(scrapes)
        .merge(
            axi_obs_axum::ObsRoutes::new()
                .without_metrics_route()
                .version(axi_obs_axum::version_info!())
                .into_router(),
        )
        .layer(axi_obs_axum::ObsLayer::new().exclude_paths(["/healthz", "/readyz"]));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(address = %addr, collectors = ?node.collector_names(), "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
    telemetry.shutdown().await.context("telemetry shutdown")?;
    Ok(())
}

/// What `/metrics` gathers from, and its slots for scrapes at once.
#[derive(Clone)]
struct Scrapes {
    node: Arc<Node>,
    slots: Arc<tokio::sync::Semaphore>,
}

/// Node metrics, gathered on a blocking thread (they read files), then the collector's own.
/// Beyond `--web.max-requests` scrapes at once, 503, as node_exporter answers.
async fn metrics(State(s): State<Scrapes>) -> axum::response::Response {
    let Ok(slot) = s.slots.clone().try_acquire_owned() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too many scrapes at once (--web.max-requests)\n",
        )
            .into_response();
    };
    let node = s.node;
    // The slot is held until the gathering thread is done, even if the scraper gave up.
    let gathered = tokio::task::spawn_blocking(move || {
        let body = node.render();
        drop(slot);
        body
    });
    let mut body = match gathered.await {
        Ok(body) => body,
        // A 500, not an empty page: Prometheus marks the target down (`up` 0) instead of
        // every node series going stale without a word.
        Err(e) => {
            tracing::error!(error = %e, "gathering the node metrics failed");
            return (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("gathering the node metrics failed: {e}\n"),
            )
                .into_response();
        }
    };
    if let Some(m) = axi_obs_core::global_metrics() {
        // Appended in place: the node metrics (about 50 kB) are not copied again.
        body.push_str(&m.render());
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axi_obs_core::metrics::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Past `--web.max-requests` scrapes at once, 503 at once; a slot free again, 200.
    #[tokio::test]
    async fn scrapes_beyond_the_limit_are_answered_503() {
        let node = Arc::new(Node::with_collectors(Paths::default(), &[]));
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let held = slots.clone().try_acquire_owned().unwrap();
        let scrapes = Scrapes { node, slots };
        let r = metrics(State(scrapes.clone())).await;
        assert_eq!(r.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        drop(held);
        let r = metrics(State(scrapes.clone())).await;
        assert_eq!(r.status(), axum::http::StatusCode::OK);
        assert_eq!(
            scrapes.slots.available_permits(),
            1,
            "the slot is given back"
        );
    }
}
