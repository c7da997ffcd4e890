//! End to end with a real nginx: a static site on loopback, N requests with a known mix of
//! statuses, the access log rotated mid-run (rename, then `nginx -s reopen`, as logrotate
//! does). A local OTLP receiver must get exactly N records, and the shipper's /metrics totals
//! must equal the counts by status.
//!
//! nginx comes from `scripts/install-peers.sh` (Debian's nginx-light); without it the test
//! skips, unless AXI_REQUIRE_PEERS=1.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use axi_obs_core::Protocol;
use axi_obs_core::testing::{OtlpReceiver, attr, peer, value_string};
use common::{ChildGuard, free_port, sum_by, wait_until};

const FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time $host"#;

fn nginx_conf(prefix: &Path, port: u16) -> String {
    let p = prefix.display();
    format!(
        r#"worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/logs/error.log;
events {{ worker_connections 256; }}
http {{
  client_body_temp_path {p}/tmp/body;
  proxy_temp_path {p}/tmp/proxy;
  fastcgi_temp_path {p}/tmp/fastcgi;
  uwsgi_temp_path {p}/tmp/uwsgi;
  scgi_temp_path {p}/tmp/scgi;
  types {{ text/html html; text/css css; }}
  log_format shipper '{FORMAT}';
  access_log {p}/logs/access.log shipper;
  server {{
    listen 127.0.0.1:{port};
    server_name docs.test;
    root {p}/html;
  }}
}}
"#
    )
}

fn nginx(bin: &Path, prefix: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .arg("-e")
        .arg(prefix.join("logs/error.log"))
        .args(args);
    c
}

/// Stops nginx with SIGTERM (its fast shutdown, which ends the workers too; SIGKILL would
/// leave them running) and reaps it.
struct NginxGuard {
    child: std::process::Child,
}

impl Drop for NginxGuard {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nginx_with_rotation_mid_run_ships_exactly_n_records_and_metrics_match() {
    let Some(nginx_bin) = peer("nginx") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix: PathBuf = dir.path().join("nginx");
    for d in ["html/docs", "logs", "tmp"] {
        std::fs::create_dir_all(prefix.join(d)).unwrap();
    }
    std::fs::write(prefix.join("html/index.html"), "<h1>docs</h1>").unwrap();
    std::fs::write(prefix.join("html/docs/guide.html"), "guide ".repeat(100)).unwrap();
    std::fs::write(prefix.join("html/style.css"), "body{}").unwrap();
    let port = free_port();
    std::fs::write(prefix.join("nginx.conf"), nginx_conf(&prefix, port)).unwrap();
    let _nginx = NginxGuard {
        child: nginx(&nginx_bin, &prefix, &["-g", "daemon off;"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    };

    let receiver = OtlpReceiver::start(Protocol::HttpProtobuf).await.unwrap();
    let metrics_port = free_port();
    let config = dir.path().join("shipper.yml");
    std::fs::write(
        &config,
        format!(
            "registry: {reg}\npoll_interval: 20ms\ninputs:\n  - name: nginx\n    service: docs-site\n    paths: ['{logs}/access.log*']\n    format: nginx\n    log_format: '{FORMAT}'\naccess_metrics:\n  path_patterns: ['/docs/**']\noutput:\n  otlp: {{ endpoint: '{endpoint}' }}\nbatch: {{ max_events: 100, max_wait: 20ms }}\n",
            reg = dir.path().join("registry.json").display(),
            logs = prefix.join("logs").display(),
            endpoint = receiver.endpoint(),
        ),
    )
    .unwrap();
    let _shipper = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_axi-log-shipper"))
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await,
        "nginx did not start"
    );
    let n = 400;
    let mut by_class: BTreeMap<String, f64> = BTreeMap::new();
    for i in 0..n {
        let (method, path) = match i % 8 {
            0 | 1 => ("GET", "/missing.html"),
            2 => ("GET", "/docs/guide.html"),
            3 => ("POST", "/index.html"), // nginx: 405 for POST to a static file
            4 => ("HEAD", "/style.css"),
            _ => ("GET", "/index.html"),
        };
        let url = format!("{base}{path}?i={i}");
        let req = match method {
            "POST" => client.post(&url),
            "HEAD" => client.head(&url),
            _ => client.get(&url),
        };
        // A name-based virtual host, as behind a real domain: the `vhost` label.
        let status = req
            .header(reqwest::header::HOST, "docs.test")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        *by_class.entry(format!("{}xx", status / 100)).or_insert(0.0) += 1.0;
        if i == n / 2 {
            // logrotate's way: rename, then tell nginx to reopen its logs.
            std::fs::rename(
                prefix.join("logs/access.log"),
                prefix.join("logs/access.log.1"),
            )
            .unwrap();
            let st = nginx(&nginx_bin, &prefix, &["-s", "reopen"])
                .status()
                .unwrap();
            assert!(st.success());
        }
    }
    assert!(by_class.get("2xx") >= Some(&1.0) && by_class.get("4xx") >= Some(&1.0));
    assert!(
        prefix.join("logs/access.log").exists(),
        "nginx reopened its log"
    );

    let scrape = || async {
        reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        text = scrape().await.unwrap_or_default();
        let total: f64 = sum_by(&text, "nginx_http_requests_total", "status_class")
            .values()
            .sum();
        if receiver.logs().len() >= n && total >= n as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let logs = receiver.logs();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for l in &logs {
        let q = attr(&l.record.attributes, "url.query").unwrap_or_default();
        *seen.entry(q).or_insert(0) += 1;
    }
    for i in 0..n {
        assert_eq!(seen.get(&format!("i={i}")), Some(&1), "request {i}");
    }
    assert_eq!(logs.len(), n, "exactly N records");
    let sample = &logs[0];
    assert!(
        sample
            .resource
            .contains(&("service.name".into(), "docs-site".into()))
    );
    assert!(value_string(sample.record.body.as_ref()).contains("HTTP/1.1"));
    assert!(attr(&sample.record.attributes, "http.response.status_code").is_some());
    assert!(sample.record.time_unix_nano > 0);

    assert_eq!(
        sum_by(&text, "nginx_http_requests_total", "status_class"),
        by_class,
        "{text}"
    );
    let count = sum_by(&text, "nginx_http_request_duration_seconds_count", "vhost");
    assert_eq!(count.get("docs.test"), Some(&(n as f64)), "{text}");
    let docs = sum_by(&text, "nginx_http_path_requests_total", "path");
    assert_eq!(docs.get("/docs/**"), Some(&((n / 8) as f64)), "{text}");
    let methods = sum_by(&text, "nginx_http_requests_total", "method");
    assert_eq!(methods.get("POST"), Some(&((n / 8) as f64)));
    assert_eq!(methods.get("HEAD"), Some(&((n / 8) as f64)));
    let lines = sum_by(&text, "log_shipper_lines_read_total", "input");
    assert_eq!(lines.get("nginx"), Some(&(n as f64)), "{text}");
}
