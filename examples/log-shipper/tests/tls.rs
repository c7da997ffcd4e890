//! HTTPS endpoints: a local TLS server (rustls, a certificate signed by a test CA made with
//! rcgen) acting as OTLP/HTTP receiver, Elasticsearch `_bulk` receiver and OTLP/gRPC receiver.
//! With `ca_file` the records arrive; without it (system trust store) or with another CA the
//! shipper refuses the server, counts and retries, and loses nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use bytes::Bytes;
use common::{ChildGuard, append, counts, free_port, start_with, sum_by, wait_until};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use log_shipper::output::{ElasticsearchBulk, OtlpGrpc, OtlpHttp, Output, SendError, TlsOptions};
use log_shipper::record::Record;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;

/// A test CA and a server certificate for 127.0.0.1 and localhost signed by it.
struct Pki {
    ca_pem: String,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn make_ca(name: &str) -> (rcgen::CertificateParams, rcgen::KeyPair, rcgen::Certificate) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (params, key, cert)
}

fn pki() -> Pki {
    let (ca_params, ca_key, ca_cert) = make_ca("axi-obs test CA");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server_chain: vec![cert.der().clone()],
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// What the TLS server received, per protocol.
#[derive(Clone, Default)]
struct Received {
    otlp_http: Arc<Mutex<Vec<String>>>,
    bulk: Arc<Mutex<Vec<String>>>,
    grpc: Arc<Mutex<Vec<String>>>,
    /// Connections whose TLS handshake failed (the client refused the certificate ...).
    handshake_failures: Arc<AtomicUsize>,
}

fn bodies(request: &ExportLogsServiceRequest) -> Vec<String> {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .map(|l| match l.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[derive(Clone)]
struct Grpc(Received);

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let b = bodies(request.get_ref());
        self.0.grpc.lock().unwrap().extend(b);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// Serves OTLP/HTTP (`/v1/logs`), `_bulk` and OTLP/gRPC over TLS (ALPN h2 and http/1.1) on
/// 127.0.0.1; returns the address.
async fn tls_server(pki: &Pki, received: Received) -> SocketAddr {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let r1 = received.clone();
    let r2 = received.clone();
    let app = axum::Router::new()
        .route(
            "/v1/logs",
            post(move |body: Bytes| async move {
                let request = ExportLogsServiceRequest::decode(body).unwrap();
                r1.otlp_http.lock().unwrap().extend(bodies(&request));
                (
                    [("content-type", "application/x-protobuf")],
                    ExportLogsServiceResponse::default().encode_to_vec(),
                )
            }),
        )
        .route(
            "/_bulk",
            post(move |body: String| async move {
                // Action and document lines alternate; keep the documents' messages.
                for (i, line) in body.lines().enumerate() {
                    if i % 2 == 1 {
                        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
                        r2.bulk
                            .lock()
                            .unwrap()
                            .push(doc["message"].as_str().unwrap().to_owned());
                    }
                }
                (
                    [("content-type", "application/json")],
                    r#"{"took":1,"errors":false,"items":[]}"#,
                )
            }),
        )
        .route_service(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            LogsServiceServer::new(Grpc(received.clone())),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            let failures = received.handshake_failures.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    failures.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    addr
}

fn write_ca(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

fn with_ca(path: &Path) -> TlsOptions {
    TlsOptions {
        ca_file: Some(path.to_owned()),
        ..TlsOptions::default()
    }
}

fn record(body: &str, end: u64) -> Record {
    let mut r = common::record(body);
    r.position.end = end;
    r
}

fn shipper_yaml(dir: &Path, log: &Path, endpoint: &str, tls: &str) -> String {
    format!(
        "registry: {}\npoll_interval: 10ms\ninputs:\n  - name: app\n    paths: ['{}']\noutput:\n  otlp:\n    endpoint: '{endpoint}'\n    timeout: 5s\n{tls}batch: {{ max_events: 40, max_wait: 10ms, queue_events: 100 }}\nretry: {{ initial_backoff: 20ms, max_backoff: 100ms }}\n",
        dir.join("registry.json").display(),
        log.display(),
    )
}

fn spawn_shipper(config: &Path, listen: u16) -> ChildGuard {
    ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_axi-log-shipper"))
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{listen}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn metrics_text(port: u16) -> Option<String> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?;
    r.text().await.ok()
}

/// The binary without the CA refuses the server (counted retries, nothing accepted), and
/// after a restart with `ca_file` every line arrives exactly once: nothing was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_over_tls_refused_without_the_ca_then_everything_arrives_with_it() {
    let pki = pki();
    let received = Received::default();
    let addr = tls_server(&pki, received.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path(), "ca.pem", &pki.ca_pem);
    let log = dir.path().join("app.log");
    let n = 300;
    append(
        &log,
        &(0..n)
            .map(|i| format!("tls line {i}\n"))
            .collect::<String>(),
    );
    let endpoint = format!("https://127.0.0.1:{}", addr.port());
    let config = dir.path().join("shipper.yml");

    // 1. System trust store only: the test CA is unknown, every attempt fails and is retried.
    std::fs::write(&config, shipper_yaml(dir.path(), &log, &endpoint, "")).unwrap();
    let port = free_port();
    let child = spawn_shipper(&config, port);
    let mut retries = 0.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while retries < 3.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(text) = metrics_text(port).await {
            retries = sum_by(&text, "log_shipper_send_retries_total", "output")
                .get("otlp")
                .copied()
                .unwrap_or(0.0);
        }
    }
    let refused = retries >= 3.0;
    assert!(refused, "retries counted: {retries}");
    assert!(received.handshake_failures.load(Ordering::SeqCst) >= 3);
    assert!(received.otlp_http.lock().unwrap().is_empty());
    drop(child); // kill -9: the registry never moved past the unsent lines

    // 2. With ca_file: every line, once.
    std::fs::write(
        &config,
        shipper_yaml(
            dir.path(),
            &log,
            &endpoint,
            &format!("    tls: {{ ca_file: '{}' }}\n", ca.display()),
        ),
    )
    .unwrap();
    let _child = spawn_shipper(&config, free_port());
    assert!(
        wait_until(|| received.otlp_http.lock().unwrap().len() >= n).await,
        "{} of {n}",
        received.otlp_http.lock().unwrap().len()
    );
    let got = received.otlp_http.lock().unwrap().clone();
    let c = counts(&got);
    assert_eq!(c.len(), n);
    assert!(c.values().all(|k| *k == 1), "duplicates");
    assert!(c.contains_key("tls line 0") && c.contains_key(&format!("tls line {}", n - 1)));
}

/// The Elasticsearch output through the whole pipeline over TLS with `ca_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_bulk_over_tls_with_ca_file() {
    let pki = pki();
    let received = Received::default();
    let addr = tls_server(&pki, received.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path(), "ca.pem", &pki.ca_pem);
    let log = dir.path().join("app.log");
    let n = 120;
    append(
        &log,
        &(0..n)
            .map(|i| format!("bulk line {i}\n"))
            .collect::<String>(),
    );
    let output = ElasticsearchBulk::with_tls(
        &format!("https://localhost:{}", addr.port()),
        "logs",
        Duration::from_secs(5),
        Vec::new(),
        &with_ca(&ca),
    )
    .unwrap();
    let running = start_with(
        &common::yaml(dir.path(), &log.display().to_string(), ""),
        Box::new(output),
    );
    assert!(
        wait_until(|| received.bulk.lock().unwrap().len() >= n).await,
        "{} of {n}",
        received.bulk.lock().unwrap().len()
    );
    running.stop().await;
    let got = received.bulk.lock().unwrap().clone();
    assert_eq!(got.len(), n);
    assert_eq!(counts(&got).len(), n);
}

/// OTLP/gRPC over TLS (ALPN h2) with `ca_file`; another CA is refused, retryably.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_over_tls_with_ca_file_and_refused_with_another_ca() {
    let pki = pki();
    let received = Received::default();
    let addr = tls_server(&pki, received.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(dir.path(), "ca.pem", &pki.ca_pem);
    let other = write_ca(dir.path(), "other.pem", &make_ca("another CA").2.pem());
    let endpoint = format!("https://127.0.0.1:{}", addr.port());
    let batch: Vec<Record> = (0..25)
        .map(|i| record(&format!("grpc {i}"), i + 1))
        .collect();

    let mut wrong = OtlpGrpc::with_tls(
        &endpoint,
        Duration::from_secs(5),
        Vec::new(),
        &with_ca(&other),
    )
    .unwrap();
    let e = wrong.send(&batch).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(received.grpc.lock().unwrap().is_empty());

    let mut out =
        OtlpGrpc::with_tls(&endpoint, Duration::from_secs(5), Vec::new(), &with_ca(&ca)).unwrap();
    out.send(&batch).await.unwrap();
    let got = received.grpc.lock().unwrap().clone();
    assert_eq!(got.len(), 25);
    assert_eq!(got[24], "grpc 24");
}

/// OTLP/HTTP: another CA is refused with the certificate error in the message;
/// `insecure_skip_verify` accepts the server.
#[tokio::test]
async fn otlp_http_another_ca_is_refused_and_insecure_skip_verify_accepts() {
    let pki = pki();
    let received = Received::default();
    let addr = tls_server(&pki, received.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let other = write_ca(dir.path(), "other.pem", &make_ca("another CA").2.pem());
    let endpoint = format!("https://127.0.0.1:{}", addr.port());
    let batch = [record("one", 4), record("two", 8)];

    let mut wrong = OtlpHttp::with_tls(
        &endpoint,
        Duration::from_secs(5),
        Vec::new(),
        &with_ca(&other),
    )
    .unwrap();
    let e = wrong.send(&batch).await.unwrap_err();
    match &e {
        SendError::Retryable { message, .. } => {
            assert!(message.contains("certificate"), "{message}");
        }
        SendError::Rejected { .. } | SendError::TooLarge { .. } => panic!("{e:?}"),
    }
    assert!(received.otlp_http.lock().unwrap().is_empty());

    let insecure = TlsOptions {
        insecure_skip_verify: true,
        ..TlsOptions::default()
    };
    let mut out =
        OtlpHttp::with_tls(&endpoint, Duration::from_secs(5), Vec::new(), &insecure).unwrap();
    out.send(&batch).await.unwrap();
    assert_eq!(*received.otlp_http.lock().unwrap(), ["one", "two"]);
}
