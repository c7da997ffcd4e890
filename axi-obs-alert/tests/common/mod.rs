//! Helpers shared by the tests: processes (`axi-alert`, the peers), local servers, alerts and
//! captured metrics.

#![allow(dead_code, clippy::unwrap_used)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

/// A child process killed (SIGKILL) and reaped when dropped.
pub(crate) struct Kill(pub(crate) Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Serves `app` on a free loopback port in the background; returns the port.
pub(crate) async fn serve(app: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// A directory holding rule files (`(name, text)`) and a `prometheus.yml` with `config`;
/// returns it (removed when dropped) and the configuration's path.
#[allow(dead_code)]
pub(crate) fn run_dir(rules: &[(&str, &str)], config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in rules {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

/// The alerts `axi-alert run` (or Prometheus) on `port` answers `/api/v1/alerts` with, or
/// `None` while it does not answer.
#[allow(dead_code)]
pub(crate) async fn api_alerts(
    client: &reqwest::Client,
    port: u16,
) -> Option<Vec<serde_json::Value>> {
    let body = get_json(client, port, "/api/v1/alerts").await?;
    body["data"]["alerts"].as_array().cloned()
}

/// The JSON that a server on loopback `port` answers `GET path` (with its query) with, or
/// `None` while it does not answer with JSON.
pub(crate) async fn get_json(
    client: &reqwest::Client,
    port: u16,
    path: &str,
) -> Option<serde_json::Value> {
    serde_json::from_str(&get_text(client, port, path).await?).ok()
}

/// `POST /-/reload` to `axi-alert run` (or Prometheus) on `port`; panics unless it answers 200.
#[allow(dead_code)]
pub(crate) async fn reload(client: &reqwest::Client, port: u16) {
    let reload = client
        .post(format!("http://127.0.0.1:{port}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
}

/// The body a server on loopback `port` answers `GET path` with, or `None` while it does not
/// answer.
pub(crate) async fn get_text(client: &reqwest::Client, port: u16, path: &str) -> Option<String> {
    client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// Serves `body` as `/metrics` on a loopback port; returns the port.
pub(crate) async fn serve_metrics(body: &'static str) -> u16 {
    serve(Router::new().route("/metrics", get(move || async move { body }))).await
}

/// Starts Alertmanager with `config`, its data under `data`, on loopback `port`, telling it
/// its `external_url` (none when empty); no clustering.
pub(crate) fn start_alertmanager(
    bin: &Path,
    config: &Path,
    data: &Path,
    port: u16,
    external_url: &str,
) -> Kill {
    start_alertmanager_with(bin, config, data, port, external_url, &[])
}

/// As [`start_alertmanager`], with more arguments (`--web.config.file=...`).
pub(crate) fn start_alertmanager_with(
    bin: &Path,
    config: &Path,
    data: &Path,
    port: u16,
    external_url: &str,
    extra: &[String],
) -> Kill {
    let mut cmd = Command::new(bin);
    cmd.args(extra);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !external_url.is_empty() {
        cmd.arg(format!("--web.external-url={external_url}"));
    }
    Kill(cmd.spawn().expect("alertmanager starts"))
}

/// Starts Prometheus with `config`, its data under `dir`, on a free loopback port.
pub(crate) fn start_prometheus(prometheus: &Path, config: &Path, dir: &Path) -> (Kill, u16) {
    let port = free_port();
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Kill(child), port)
}

/// Starts `axi-alert run --config CONFIG --listen 127.0.0.1:PORT` with `extra` arguments.
pub(crate) fn start_run(
    config: &Path,
    port: u16,
    extra: impl IntoIterator<Item = impl AsRef<OsStr>>,
) -> Kill {
    Kill(
        Command::new(env!("CARGO_BIN_EXE_axi-alert"))
            .arg("run")
            .args(extra)
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Polls `f` every 100 ms until it gives a value or `limit` passes.
pub(crate) async fn poll<T>(
    what: &str,
    limit: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `promtool check metrics` over `text` (promtool from the peers, required: it is installed
/// with Alertmanager): panics with promtool's findings when it complains.
#[allow(dead_code)]
pub(crate) fn promtool_check_metrics(text: &str) {
    let promtool =
        axi_obs_core::testing::peer("promtool").expect("promtool (scripts/install-peers.sh)");
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut check.stdin.take().expect("stdin"), text.as_bytes())
        .expect("write");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An alert with these labels, a `summary` annotation and a generator URL, from `starts_at`
/// to `ends_at` (ms).
pub(crate) fn alert(
    pairs: &[(&str, &str)],
    starts_at: i64,
    ends_at: i64,
) -> axi_obs_alert::delivery::AmAlert {
    axi_obs_alert::delivery::AmAlert {
        labels: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: axi_obs_alert::delivery::LabelSet::from([(
            "summary".to_string(),
            "s".to_string(),
        )]),
        starts_at,
        ends_at: Some(ends_at),
        generator_url: "http://prom/graph".into(),
    }
}

/// The sum of the counter `name` over the captured series carrying all of `labels`.
pub(crate) fn counter(
    cap: &axi_obs_core::testing::Capture,
    name: &str,
    labels: &[(&str, &str)],
) -> u64 {
    let snap = cap.metrics();
    let Some(f) = snap.family(name) else { return 0 };
    f.series
        .iter()
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .filter_map(|s| s.value.as_counter())
        .sum()
}
