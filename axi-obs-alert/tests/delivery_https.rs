//! Webhook, DingTalk and WeCom receivers over `https://` (the robots are HTTPS only): the
//! notifier's client speaks TLS with the host's trust store. The test trusts a CA made here
//! through `SSL_CERT_FILE`, which names the bundle trusted instead of the system's (read by
//! `rustls-native-certs` as by OpenSSL); the store is read once per process, so the test runs
//! itself again as a child with that variable set. A receiver whose certificate the store does not vouch for is a failure.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use axi_obs_alert::delivery::{
    AmAlert, Config, Delivered, LabelSet, Notification, NotificationReason, http_client,
    send_dingtalk, send_webhook, send_wecom,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Set in the child: the folder holding the test CA and the server's certificate and key.
const CHILD_ENV: &str = "AXI_HTTPS_TEST_DIR";

/// The test CA and the server's certificate, in `dir`.
fn pki(dir: &Path) {
    let pki = axi_obs_core::testing::TestPki::new(&["localhost"]);
    for (name, text) in [
        ("ca.pem", &pki.ca_pem),
        ("server.pem", &pki.cert_pem),
        ("server-key.pem", &pki.key_pem),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

type Seen = Arc<Mutex<Vec<String>>>;

/// An HTTPS server on 127.0.0.1 answering every request `200 {"errcode":0}` (what a robot
/// answers when it takes a message) and keeping each request line.
async fn https_receiver(dir: &Path) -> (u16, Seen) {
    let certs = axi_obs_core::tls::read_certs(&dir.join("server.pem")).unwrap();
    let key = axi_obs_core::tls::read_key(&dir.join("server-key.pem")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(axi_obs_core::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Seen::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // One request per connection: the head, then `Content-Length` bytes of body.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, length) = loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&buf[..head_end])
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                log.lock().unwrap().push(line);
                let body = br#"{"errcode":0,"errmsg":"ok"}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, seen)
}

fn notification() -> Notification {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let labels: LabelSet = [("alertname", "DiskFull"), ("instance", "db1:9100")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Notification {
        receiver: "robots".into(),
        group_key: "{}:{alertname=\"DiskFull\"}".into(),
        group_labels: [("alertname".to_string(), "DiskFull".to_string())].into(),
        alerts: vec![AmAlert {
            labels,
            annotations: [("summary".to_string(), "disk 95% full".to_string())].into(),
            starts_at: now - 60_000,
            ends_at: Some(now + 300_000),
            generator_url: String::new(),
        }],
        reason: NotificationReason::FirstNotification,
        now_ms: now,
        external_url: "http://am:9093".into(),
    }
}

async fn deliver_all(base: &str) -> Vec<Result<Delivered, String>> {
    let yaml = format!(
        "route:\n  receiver: robots\nreceivers:\n- name: robots\n  webhook_configs:\n  - url: {base}/hook\n  dingtalk_configs:\n  - url: {base}/dingtalk?access_token=tok\n    secret: SEC123\n  wecom_configs:\n  - url: {base}/wecom?key=k\n"
    );
    let r = &Config::parse(&yaml, Path::new("https.yml"))
        .unwrap()
        .receivers[0];
    let client = http_client().expect("the delivery HTTP client");
    let n = notification();
    vec![
        send_webhook(&client, &r.webhook_configs[0], &n)
            .await
            .map_err(|e| e.to_string()),
        send_dingtalk(&client, &r.dingtalk_configs[0], &n)
            .await
            .map_err(|e| e.to_string()),
        send_wecom(&client, &r.wecom_configs[0], &n)
            .await
            .map_err(|e| e.to_string()),
    ]
}

#[test]
fn https_receivers_get_their_notifications() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        let dir = tempfile::tempdir().unwrap();
        pki(dir.path());
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "https_receivers_get_their_notifications",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir.path())
            .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
            .env_remove("SSL_CERT_DIR")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "the child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (port, seen) = https_receiver(&dir).await;
        let sent = deliver_all(&format!("https://localhost:{port}")).await;
        assert!(
            sent.iter().all(|r| matches!(r, Ok(Delivered::Sent))),
            "{sent:?}"
        );
        let mut lines = seen.lock().unwrap().clone();
        lines.sort();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("POST /dingtalk?access_token=tok&timestamp="),
            "{lines:?}"
        );
        assert_eq!(lines[1], "POST /hook HTTP/1.1");
        assert_eq!(lines[2], "POST /wecom?key=k HTTP/1.1");

        // A certificate the trust store does not vouch for (the CA's own name does not match
        // `127.0.0.1`): refused, retryable, and the message says why without the URL.
        let refused = deliver_all(&format!("https://127.0.0.1:{port}")).await;
        for r in &refused {
            let e = r.as_ref().unwrap_err();
            assert!(e.contains("certificate"), "{e}");
            assert!(!e.contains("access_token"), "{e}");
        }
    });
}
