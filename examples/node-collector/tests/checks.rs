//! Service checks and probes against real local servers and processes.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use node_collector::checks::{Ports, Processes};
use node_collector::probes::Probes;
use node_collector::{Node, Paths};

mod common;

use common::{config, value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_against_local_servers() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/ok", get(|| async { "status ok" }))
        .route(
            "/fail",
            get(|| async { (http::StatusCode::INTERNAL_SERVER_ERROR, "broken") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    drop(std::net::TcpListener::bind(closed));

    let yaml = format!(
        "probes:
  - name: healthy
    interval: 1h
    http: {{ url: 'http://{addr}/ok', body_pattern: 'status ok' }}
  - name: regex-miss
    interval: 1h
    http: {{ url: 'http://{addr}/ok', body_pattern: 'nope' }}
  - name: server-error
    interval: 1h
    http: {{ url: 'http://{addr}/fail' }}
  - name: expected-500
    interval: 1h
    http: {{ url: 'http://{addr}/fail', expect_status: [500] }}
  - name: slow
    interval: 1h
    http: {{ url: 'http://{addr}/slow', timeout: 300ms }}
  - name: tcp-open
    interval: 1h
    tcp: {{ address: '{addr}' }}
  - name: tcp-closed
    interval: 1h
    tcp: {{ address: '{closed}', timeout: 1s }}
  - name: http-unresolvable
    interval: 1h
    http: {{ url: 'http://no-such-host.invalid/', timeout: 2s }}
  - name: tcp-unresolvable
    interval: 1h
    tcp: {{ address: 'no-such-host.invalid:80', timeout: 2s }}
"
    );
    let probes = Probes::start(config(&yaml).probes);
    let names = [
        "healthy",
        "regex-miss",
        "server-error",
        "expected-500",
        "slow",
        "tcp-open",
        "tcp-closed",
        "http-unresolvable",
        "tcp-unresolvable",
    ];
    assert!(probes.wait_for(&names, Duration::from_secs(10)).await);
    let mut node = Node::with_collectors(Paths::default(), &[]);
    node.add(Box::new(probes));
    let f = node.gather();
    let success = |p: &str| value(&f, "probe_success", &[("probe", p)]).unwrap();
    assert_eq!(success("healthy"), 1.0);
    assert_eq!(
        value(&f, "probe_http_status_code", &[("probe", "healthy")]),
        Some(200.0)
    );
    assert_eq!(
        value(&f, "probe_http_content_length", &[("probe", "healthy")]),
        Some(9.0)
    );
    assert_eq!(
        value(
            &f,
            "probe_http_uncompressed_body_length",
            &[("probe", "healthy")]
        ),
        Some(9.0)
    );
    assert_eq!(success("regex-miss"), 0.0);
    assert_eq!(
        value(&f, "probe_failed_due_to_regex", &[("probe", "regex-miss")]),
        Some(1.0)
    );
    assert_eq!(success("server-error"), 0.0);
    assert_eq!(
        value(&f, "probe_http_status_code", &[("probe", "server-error")]),
        Some(500.0)
    );
    assert_eq!(
        value(&f, "probe_http_redirects", &[("probe", "healthy")]),
        Some(0.0)
    );
    assert_eq!(success("expected-500"), 1.0);
    assert_eq!(success("slow"), 0.0);
    assert_eq!(
        value(&f, "probe_http_status_code", &[("probe", "slow")]),
        Some(0.0)
    );
    assert!(
        value(&f, "probe_duration_seconds", &[("probe", "slow")]).unwrap() < 5.0,
        "the timeout cut it"
    );
    assert_eq!(success("tcp-open"), 1.0);
    assert_eq!(success("tcp-closed"), 0.0);
    // A lookup that failed (or hung until the timeout) still reports the time it took, as
    // blackbox_exporter does: a resolver that is slow to say no shows on the dashboard.
    for p in ["http-unresolvable", "tcp-unresolvable"] {
        assert_eq!(success(p), 0.0, "{p}");
        let dns = value(&f, "probe_dns_lookup_time_seconds", &[("probe", p)]).unwrap();
        assert!(dns > 0.0 && dns <= 2.5, "{p}: dns lookup {dns} s");
    }
    let phases: Vec<&str> = ["resolve", "connect", "tls", "processing", "transfer"].to_vec();
    for phase in phases {
        assert!(
            value(
                &f,
                "probe_http_duration_seconds",
                &[("probe", "healthy"), ("phase", phase)]
            )
            .is_some(),
            "{phase}"
        );
    }
    // A scrape never waits on the network: the slow endpoint is still slow, the gather is not.
    let started = std::time::Instant::now();
    let _ = node.gather();
    println!("gather with 9 probes took {:?}", started.elapsed());
}

/// A body is counted as it streams, not held: a probe of a URL answering 20 MiB counts it all;
/// with a `body_pattern` it is kept to be matched, up to 16 MiB, and a larger one fails the
/// probe instead of growing the collector's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_counted_and_only_kept_to_be_matched_within_a_limit() {
    use axum::routing::get;
    const SIZE: usize = 20 << 20;
    let big = || async {
        let chunk = bytes::Bytes::from(vec![b'x'; 64 << 10]);
        let chunks = (0..SIZE / (64 << 10)).map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
        axum::body::Body::from_stream(futures_util::stream::iter(chunks))
    };
    let app = axum::Router::new().route("/big", get(big));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let yaml = format!(
        "probes:
  - name: counted
    interval: 1h
    http: {{ url: 'http://{addr}/big', timeout: 20s }}
  - name: matched
    interval: 1h
    http: {{ url: 'http://{addr}/big', body_pattern: 'x', timeout: 20s }}
"
    );
    let probes = Probes::start(config(&yaml).probes);
    assert!(
        probes
            .wait_for(&["counted", "matched"], Duration::from_secs(30))
            .await
    );
    let mut node = Node::with_collectors(Paths::default(), &[]);
    node.add(Box::new(probes));
    let f = node.gather();
    assert_eq!(
        value(&f, "probe_success", &[("probe", "counted")]),
        Some(1.0)
    );
    // Streamed (chunked): no Content-Length, as blackbox_exporter reports it; the bytes read.
    assert_eq!(
        value(&f, "probe_http_content_length", &[("probe", "counted")]),
        Some(-1.0)
    );
    assert_eq!(
        value(
            &f,
            "probe_http_uncompressed_body_length",
            &[("probe", "counted")]
        ),
        Some(SIZE as f64)
    );
    assert_eq!(
        value(&f, "probe_success", &[("probe", "matched")]),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_as_blackbox_exporter_follows_them() {
    use axum::response::Redirect;
    use axum::routing::get;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let loop_hits = Arc::new(AtomicUsize::new(0));
    let hits = loop_hits.clone();
    let app = axum::Router::new()
        .route("/ok", get(|| async { "status ok" }))
        // A chain of two: a 303 to an absolute path, then a 301 to a relative reference with a
        // fragment.
        .route("/chain/a", get(|| async { Redirect::to("/chain/b") }))
        .route(
            "/chain/b",
            get(|| async {
                (
                    http::StatusCode::MOVED_PERMANENTLY,
                    [(http::header::LOCATION, "../ok#top")],
                )
            }),
        )
        .route(
            "/loop",
            get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                async { Redirect::to("/loop") }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let yaml = format!(
        "probes:
  - name: chain
    interval: 1h
    http: {{ url: 'http://{addr}/chain/a', body_pattern: 'status ok' }}
  - name: loop
    interval: 1h
    http: {{ url: 'http://{addr}/loop' }}
  - name: not-followed
    interval: 1h
    http: {{ url: 'http://{addr}/chain/a', follow_redirects: false }}
  - name: not-followed-303-expected
    interval: 1h
    http: {{ url: 'http://{addr}/chain/a', follow_redirects: false, expect_status: [303] }}
"
    );
    let probes = Probes::start(config(&yaml).probes);
    let names = ["chain", "loop", "not-followed", "not-followed-303-expected"];
    assert!(probes.wait_for(&names, Duration::from_secs(10)).await);
    let mut node = Node::with_collectors(Paths::default(), &[]);
    node.add(Box::new(probes));
    let f = node.gather();
    let get = |name: &str, probe: &str| value(&f, name, &[("probe", probe)]).unwrap();

    assert_eq!(get("probe_success", "chain"), 1.0);
    assert_eq!(get("probe_http_redirects", "chain"), 2.0);
    assert_eq!(get("probe_http_status_code", "chain"), 200.0);
    assert_eq!(get("probe_failed_due_to_regex", "chain"), 0.0);
    assert_eq!(get("probe_http_content_length", "chain"), 9.0);
    // As blackbox_exporter: the DNS lookup time is the target's alone; the resolve phase sums
    // the three requests' lookups.
    let resolve = value(
        &f,
        "probe_http_duration_seconds",
        &[("probe", "chain"), ("phase", "resolve")],
    )
    .unwrap();
    let dns = get("probe_dns_lookup_time_seconds", "chain");
    assert!(
        dns > 0.0 && dns < resolve,
        "dns {dns}, resolve phase {resolve}"
    );
    // The target label stays the configured URL.
    assert!(
        value(
            &f,
            "probe_success",
            &[
                ("probe", "chain"),
                ("target", &format!("http://{addr}/chain/a"))
            ]
        )
        .is_some()
    );

    // blackbox_exporter gives up at the eleventh redirect response: 11 requests, 11 counted.
    assert_eq!(get("probe_success", "loop"), 0.0);
    assert_eq!(get("probe_http_redirects", "loop"), 11.0);
    assert_eq!(get("probe_http_status_code", "loop"), 303.0);
    assert_eq!(loop_hits.load(Ordering::SeqCst), 11);

    // Not followed: the first redirect is the final response (axum's Redirect::to is a 303).
    assert_eq!(get("probe_success", "not-followed"), 0.0);
    assert_eq!(get("probe_http_redirects", "not-followed"), 1.0);
    assert_eq!(get("probe_http_status_code", "not-followed"), 303.0);
    assert_eq!(get("probe_success", "not-followed-303-expected"), 1.0);
}

#[test]
fn a_watched_process_goes_down_and_comes_back_with_a_restart_counted() {
    // A process with a unique command line: `sleep` with a fractional, recognizable argument.
    let marker = format!("9{}.25", std::process::id());
    let spawn = || {
        Command::new("sleep")
            .arg(&marker)
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let yaml = format!(
        "processes:\n  - name: sleeper\n    match: {{ cmdline: '^sleep {}$' }}\n",
        marker.replace('.', "\\.")
    );
    let mut node = Node::with_collectors(Paths::default(), &[]);
    node.add(Box::new(Processes::new(config(&yaml).processes)));
    let up = |node: &Node| value(&node.gather(), "axi_process_up", &[("name", "sleeper")]).unwrap();
    // A freshly spawned child shows the parent's command line until it has exec'd: poll.
    let wait_up = |node: &Node, want: f64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while up(node) != want {
            assert!(
                std::time::Instant::now() < deadline,
                "axi_process_up never became {want}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let restarts = |node: &Node| {
        value(
            &node.gather(),
            "axi_process_restarts_total",
            &[("name", "sleeper")],
        )
        .unwrap()
    };

    assert_eq!(up(&node), 0.0, "not started yet");
    let mut child = spawn();
    wait_up(&node, 1.0);
    assert_eq!(restarts(&node), 0.0, "a first start is not a restart");
    // A process seen the instant it appears can still show an RSS of 0 (seen once with the tests
    // running in parallel; most likely caught inside `execve`, before its first page fault):
    // poll until it is non-zero, with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let f = loop {
        let f = node.gather();
        let rss = value(
            &f,
            "axi_process_resident_memory_bytes",
            &[("name", "sleeper")],
        )
        .unwrap();
        if rss > 0.0 {
            break f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "axi_process_resident_memory_bytes stayed 0"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(value(&f, "axi_process_start_time_seconds", &[("name", "sleeper")]).unwrap() > 1.0e9);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(up(&node), 0.0, "down after kill");
    let mut again = spawn();
    wait_up(&node, 1.0);
    assert_eq!(restarts(&node), 1.0);
    again.kill().unwrap();
    again.wait().unwrap();
}

#[test]
fn listening_ports() {
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let yaml = format!(
        "ports:\n  - name: open\n    port: {open_port}\n  - name: closed\n    port: {closed_port}\n"
    );
    let mut node = Node::with_collectors(Paths::default(), &[]);
    node.add(Box::new(Ports::new(config(&yaml).ports)));
    let f = node.gather();
    assert_eq!(
        value(&f, "axi_port_listening", &[("name", "open")]),
        Some(1.0)
    );
    assert_eq!(
        value(&f, "axi_port_listening", &[("name", "closed")]),
        Some(0.0)
    );
    drop(open);
}

/// The binary reads `--config` and reports configuration errors with file and line.
#[test]
fn a_bad_exclusion_expression_is_refused_naming_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_axi-node-collector"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--collector.netdev.device-exclude",
            "^(veth",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--collector.netdev.device-exclude") && err.contains("regex parse error"),
        "{err}"
    );
}

#[test]
fn binary_reports_config_errors_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.yml");
    std::fs::write(
        &file,
        "probes:\n  - name: x\n    tcp: { address: 'nohostport' }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_axi-node-collector"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2", file.display())) && err.contains("host:port"),
        "{err}"
    );
}

/// A TLS server on loopback answering every request with `200 ok`, presenting `cert`.
async fn tls_server(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake: nothing to answer.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// A self-signed certificate for 127.0.0.1 valid for two days, with its NotAfter in Unix
/// seconds.
fn short_lived_certificate() -> (rcgen::Certificate, rcgen::KeyPair, i64) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(2);
    let cert = params.self_signed(&key).unwrap();
    (cert, key, params.not_after.unix_timestamp())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_probes_report_certificate_expiry_and_verify_the_chain() {
    let (cert, key, not_after) = short_lived_certificate();
    let addr = tls_server(
        cert.der().clone(),
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    // Another self-signed certificate: trusting only it must not trust the server.
    let (other, _, _) = short_lived_certificate();
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, other.pem()).unwrap();

    let yaml = format!(
        "probes:
  - name: trusted
    interval: 1h
    http: {{ url: 'https://{addr}/health', ca_file: '{ca}', body_pattern: '^ok$' }}
  - name: system-roots
    interval: 1h
    http: {{ url: 'https://{addr}/health' }}
  - name: wrong-ca
    interval: 1h
    http: {{ url: 'https://{addr}/health', ca_file: '{other}' }}
  - name: insecure
    interval: 1h
    http: {{ url: 'https://{addr}/health', insecure_skip_verify: true }}
",
        ca = ca.display(),
        other = other_ca.display(),
    );
    let probes = Probes::start(config(&yaml).probes);
    let names = ["trusted", "system-roots", "wrong-ca", "insecure"];
    assert!(probes.wait_for(&names, Duration::from_secs(10)).await);
    let mut node = Node::with_collectors(Paths::default(), &[]);
    node.add(Box::new(probes));
    let f = node.gather();
    let get = |metric: &str, probe: &str| value(&f, metric, &[("probe", probe)]);

    assert_eq!(get("probe_success", "trusted"), Some(1.0));
    assert_eq!(get("probe_http_status_code", "trusted"), Some(200.0));
    assert_eq!(get("probe_http_ssl", "trusted"), Some(1.0));
    assert_eq!(
        get("probe_ssl_earliest_cert_expiry", "trusted"),
        Some(not_after as f64),
        "the certificate's NotAfter"
    );
    assert_eq!(
        value(
            &f,
            "probe_tls_version_info",
            &[("probe", "trusted"), ("version", "TLS 1.3")]
        ),
        Some(1.0)
    );
    assert!(
        value(
            &f,
            "probe_http_duration_seconds",
            &[("probe", "trusted"), ("phase", "tls")]
        )
        .unwrap()
            > 0.0,
        "a handshake took place"
    );

    for untrusted in ["system-roots", "wrong-ca"] {
        assert_eq!(get("probe_success", untrusted), Some(0.0), "{untrusted}");
        assert_eq!(get("probe_http_ssl", untrusted), Some(0.0), "{untrusted}");
        assert_eq!(get("probe_http_status_code", untrusted), Some(0.0));
        assert_eq!(get("probe_ssl_earliest_cert_expiry", untrusted), None);
    }

    assert_eq!(get("probe_success", "insecure"), Some(1.0));
    assert_eq!(
        get("probe_ssl_earliest_cert_expiry", "insecure"),
        Some(not_after as f64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_http_to_https_uses_the_probes_tls_settings() {
    let (cert, key, not_after) = short_lived_certificate();
    let tls = tls_server(
        cert.der().clone(),
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .await;
    let target = format!("https://{tls}/health");
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let target = target.clone();
            async move { axum::response::Redirect::to(&target) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let yaml = format!(
        "probes:
  - name: upgraded
    interval: 1h
    http: {{ url: 'http://{plain}/', ca_file: '{ca}' }}
  - name: upgraded-untrusted
    interval: 1h
    http: {{ url: 'http://{plain}/' }}
",
        ca = ca.display(),
    );
    let probes = Probes::start(config(&yaml).probes);
    let names = ["upgraded", "upgraded-untrusted"];
    assert!(probes.wait_for(&names, Duration::from_secs(10)).await);
    let mut node = Node::with_collectors(Paths::default(), &[]);
    node.add(Box::new(probes));
    let f = node.gather();
    let get = |metric: &str, probe: &str| value(&f, metric, &[("probe", probe)]);

    // The final response came over TLS, verified against `ca_file`.
    assert_eq!(get("probe_success", "upgraded"), Some(1.0));
    assert_eq!(get("probe_http_redirects", "upgraded"), Some(1.0));
    assert_eq!(get("probe_http_status_code", "upgraded"), Some(200.0));
    assert_eq!(get("probe_http_ssl", "upgraded"), Some(1.0));
    assert_eq!(
        get("probe_ssl_earliest_cert_expiry", "upgraded"),
        Some(not_after as f64)
    );
    // Without it the system trust store rejects the certificate: the redirect was received,
    // the https:// request failed.
    assert_eq!(get("probe_success", "upgraded-untrusted"), Some(0.0));
    assert_eq!(get("probe_http_redirects", "upgraded-untrusted"), Some(1.0));
    assert_eq!(get("probe_http_ssl", "upgraded-untrusted"), Some(0.0));
    assert_eq!(
        get("probe_ssl_earliest_cert_expiry", "upgraded-untrusted"),
        None
    );
}
