//! Delivery over TLS to a real Alertmanager 0.33 serving HTTPS (`--web.config.file` with
//! `tls_server_config`, a CA and server certificate made here with rcgen) and asking for
//! basic auth (`basic_auth_users`, a bcrypt hash): with `ca_file`, `server_name` and the
//! credentials the alerts arrive and Alertmanager's own API lists them; without the CA, with
//! a name the certificate does not hold, or without credentials, the batch fails, is counted
//! and reported with the reason, and nothing panics.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axi_obs_alert::delivery::{
    AlertmanagerAuth, AlertmanagerSender, LabelSet, PostableAlert, SenderOptions, TlsConfig,
};
use axi_obs_core::https::{Connector, HttpClient};
use axi_obs_core::testing::peer;
use axi_obs_core::tls::{ClientTls, read_certs};
use base64::Engine as _;
use serde_json::Value;

mod common;

use common::{free_port, now_ms, poll, start_alertmanager_with};

const ALERTNAME: &str = "AxiTlsDeliveryTest";
/// The name in the server certificate; the tests connect to 127.0.0.1 and verify this name.
const SERVER_NAME: &str = "alertmanager.test";
const USER: &str = "prom";
const PASSWORD: &str = "s3cret";
/// bcrypt of `s3cret`, cost 4 (Go's minimum), as `basic_auth_users` wants; made with
/// `perl -e 'print crypt("s3cret", q($2b$04$axiobsalerttestsaltxyu))'` (libxcrypt).
const PASSWORD_BCRYPT: &str = "$2b$04$axiobsalerttestsaltxyuiAj63OkVm2yBhvfoN08V808dPKyPkqC";

/// A CA and a server certificate for [`SERVER_NAME`] signed by it, as PEM files in `dir`:
/// (ca.pem, server.pem, server-key.pem).
fn pki(dir: &std::path::Path) -> (String, String, String) {
    let pki = axi_obs_core::testing::TestPki::new(&[SERVER_NAME]);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    (
        write("ca.pem", &pki.ca_pem),
        write("server.pem", &pki.cert_pem),
        write("server-key.pem", &pki.key_pem),
    )
}

fn alert(instance: &str) -> PostableAlert {
    let now = now_ms();
    PostableAlert {
        labels: LabelSet::from([
            ("alertname".to_string(), ALERTNAME.to_string()),
            ("instance".to_string(), instance.to_string()),
        ]),
        annotations: LabelSet::from([("summary".to_string(), format!("{instance} is down"))]),
        starts_at: Some(now - 10_000),
        ends_at: Some(now + 240_000),
        generator_url: String::new(),
    }
}

fn options(base: &str, tls: Option<TlsConfig>, auth: bool) -> SenderOptions {
    let mut opts = SenderOptions::new(vec![base.to_string()]);
    opts.timeout = Duration::from_secs(5);
    opts.external_labels = LabelSet::from([("cluster".to_string(), "tls".to_string())]);
    opts.tls = tls;
    if auth {
        opts.auth = Some(AlertmanagerAuth::Basic {
            username: USER.into(),
            password: PASSWORD.into(),
        });
    }
    opts
}

/// GET over HTTPS with our client (the test CA, [`SERVER_NAME`], basic auth); the body as
/// JSON when the status is 2xx.
async fn get_json(client: &HttpClient, url: &str) -> Option<Value> {
    let mut req = http::Request::new(bytes::Bytes::new());
    *req.uri_mut() = url.parse().unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    req.headers_mut().insert(
        http::header::AUTHORIZATION,
        format!("Basic {basic}").parse().unwrap(),
    );
    let reply = client.request(req).await.ok()?;
    if !reply.status.is_success() {
        return None;
    }
    serde_json::from_slice(&reply.body)
        .ok()
        .or(Some(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_alertmanager_with_ca_file_server_name_and_basic_auth() {
    let Some(am_bin) = peer("alertmanager") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, cert_file, key_file) = pki(dir.path());
    let web_config = dir.path().join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "tls_server_config:\n  cert_file: {cert_file}\n  key_file: {key_file}\nbasic_auth_users:\n  {USER}: {PASSWORD_BCRYPT}\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: none\nreceivers:\n- name: none\n",
    )
    .unwrap();
    let port = free_port();
    let base = format!("https://127.0.0.1:{port}");
    let _am = start_alertmanager_with(
        &am_bin,
        &config,
        &dir.path().join("data"),
        port,
        "",
        &[format!("--web.config.file={}", web_config.display())],
    );

    // Our HTTPS client, trusting the test CA only, reads Alertmanager's API.
    let reader_tls = ClientTls::new()
        .roots(read_certs(ca_file.as_ref()).unwrap())
        .client_config()
        .unwrap();
    let reader = HttpClient::new(
        Connector::new(reader_tls)
            .server_name(SERVER_NAME.try_into().unwrap())
            .build(),
        Duration::from_secs(5),
    );
    poll(
        "Alertmanager ready over HTTPS",
        Duration::from_secs(30),
        async || get_json(&reader, &format!("{base}/-/ready")).await,
    )
    .await;

    let verified = TlsConfig {
        ca_file: Some(ca_file.clone()),
        server_name: Some(SERVER_NAME.into()),
        ..TlsConfig::default()
    };

    // The CA, the name and the credentials: delivered.
    let sender = AlertmanagerSender::new(options(&base, Some(verified.clone()), true)).unwrap();
    sender.send(vec![alert("a:80"), alert("b:80")]);
    let report = sender.flush().await;
    assert_eq!(
        (report.batches, report.alerts, report.failed_batches),
        (1, 2, 0),
        "{report:?}"
    );
    assert_eq!((sender.sent(), sender.errors()), (2, 0));
    let listed = poll(
        "alerts listed over HTTPS",
        Duration::from_secs(10),
        async || {
            let v = get_json(
                &reader,
                &format!("{base}/api/v2/alerts?filter=alertname%3D{ALERTNAME}"),
            )
            .await?;
            let a = v.as_array()?.clone();
            (a.len() == 2).then_some(a)
        },
    )
    .await;
    let mut instances: Vec<&str> = listed
        .iter()
        .map(|a| a["labels"]["instance"].as_str().unwrap())
        .collect();
    instances.sort_unstable();
    assert_eq!(instances, ["a:80", "b:80"]);
    for a in &listed {
        assert_eq!(a["labels"]["cluster"], "tls");
        assert_eq!(a["status"]["state"], "active");
    }

    // Each failure is one failed batch, counted, with the reason; nothing panics.
    let fails = async |opts: SenderOptions| {
        let sender = AlertmanagerSender::new(opts).unwrap();
        sender.send(vec![alert("c:80")]);
        let report = sender.flush().await;
        assert_eq!(
            (
                report.batches,
                report.failed_batches,
                sender.sent(),
                sender.errors()
            ),
            (1, 1, 0, 1),
            "{report:?}"
        );
        assert_eq!(report.errors.len(), 1, "{report:?}");
        assert_eq!(report.errors[0].0, base);
        report.errors[0].1.clone()
    };
    // The system trust store does not know the test CA.
    let e = fails(options(&base, None, true)).await;
    assert!(
        e.contains("invalid peer certificate") && e.contains("UnknownIssuer"),
        "{e}"
    );
    // The CA alone: the certificate is for alertmanager.test, not 127.0.0.1.
    let ca_only = TlsConfig {
        ca_file: Some(ca_file.clone()),
        ..TlsConfig::default()
    };
    let e = fails(options(&base, Some(ca_only), true)).await;
    assert!(
        e.contains("invalid peer certificate: certificate not valid for name"),
        "{e}"
    );
    // Verified, but no credentials: Alertmanager answers 401.
    let e = fails(options(&base, Some(verified), false)).await;
    assert!(e.starts_with("bad response status 401"), "{e}");
    // `insecure_skip_verify` with the credentials: accepted (real TLS, no verification).
    let skip = TlsConfig {
        insecure_skip_verify: true,
        ..TlsConfig::default()
    };
    let sender = AlertmanagerSender::new(options(&base, Some(skip), true)).unwrap();
    sender.send(vec![alert("d:80")]);
    assert_eq!(sender.flush().await.failed_batches, 0);

    // Nothing else reached Alertmanager.
    let v = get_json(
        &reader,
        &format!("{base}/api/v2/alerts?filter=alertname%3D{ALERTNAME}"),
    )
    .await
    .unwrap();
    let mut instances: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["instance"].as_str().unwrap())
        .collect();
    instances.sort_unstable();
    assert_eq!(instances, ["a:80", "b:80", "d:80"]);
}

#[test]
fn bad_urls_and_tls_files_are_refused_at_construction() {
    let e = AlertmanagerSender::new(SenderOptions::new(vec!["ftp://am:9093".into()])).unwrap_err();
    assert!(e.to_string().contains("\"ftp://am:9093\""), "{e}");
    let e = AlertmanagerSender::new(SenderOptions::new(vec!["am:9093".into()])).unwrap_err();
    assert!(
        e.to_string().starts_with("alertmanager URL \"am:9093\""),
        "{e}"
    );
    let mut opts = SenderOptions::new(vec!["https://am:9093".into()]);
    opts.tls = Some(TlsConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..TlsConfig::default()
    });
    let e = AlertmanagerSender::new(opts).unwrap_err().to_string();
    assert!(
        e.starts_with("tls_config: ca_file /nonexistent/ca.pem"),
        "{e}"
    );
}
