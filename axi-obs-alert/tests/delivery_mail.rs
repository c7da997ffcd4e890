//! Mail through a real SMTP server: aiosmtpd (PyPI, installed by `scripts/install-peers.sh`
//! as the `aiosmtpd-python` peer) runs `tests/py/smtp_sink.py`, which parses every message it
//! accepts with Python's own `email` package. The router's [`Dispatcher`] sends a firing and
//! then a resolved notification of an `email_configs` receiver; a [`Notifier`] logs in with
//! AUTH, and a wrong password or a missing login fail without retries. Differential: a real
//! Alertmanager 0.33 and our router mail the same alerts with the same configuration, and the
//! two mails are equal (envelope, headers but `Date` and `Message-Id`, both decoded parts).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use axi_obs_alert::delivery::{
    AmAlert, Config, Delivered, DeliveryError, Dispatcher, DispatcherOptions, Integration,
    LabelSet, Notification, NotificationReason, Notifier, RetryPolicy, SmtpError,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

mod common;

use common::start_alertmanager;

/// 2026-01-01T00:00:00Z in ms.
const T0: i64 = 1_767_225_600_000;
const S: i64 = 1000;
const MIN: i64 = 60 * S;

/// The SMTP sink process and the folder it writes the messages to.
struct Sink {
    port: u16,
    dir: tempfile::TempDir,
    // Killed when dropped.
    _child: tokio::process::Child,
}

impl Sink {
    async fn start(python: &Path, login: Option<&str>) -> Sink {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/smtp_sink.py");
        let mut cmd = tokio::process::Command::new(python);
        cmd.arg(script).arg(dir.path());
        if let Some(l) = login {
            cmd.arg(l);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start smtp_sink.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("smtp_sink.py did not start within 30 s")
        .expect("read smtp_sink.py");
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("smtp_sink.py said {line:?}"));
        Sink {
            port,
            dir,
            _child: child,
        }
    }

    /// The first `n` messages received, waiting for them up to 30 s.
    async fn messages(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found: Vec<Value> = (1..=n)
                .map_while(|i| std::fs::read(self.dir.path().join(format!("{i}.json"))).ok())
                .map(|b| serde_json::from_slice(&b).expect("sink json"))
                .collect();
            if found.len() == n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} messages arrived",
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many messages were received so far.
    fn count(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .expect("read sink dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .count()
    }
}

fn notifier() -> Notifier {
    Notifier::new(
        axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
        RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            max_attempts: 3,
        },
    )
    .with_smtp_timeout(Duration::from_secs(30))
}

fn alert(instance: &str, ends_at: i64) -> AmAlert {
    AmAlert {
        labels: [
            ("alertname", "DiskFull"),
            ("instance", instance),
            ("severity", "critical"),
            ("team", "storage"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        annotations: LabelSet::from([(
            "summary".to_string(),
            format!("disk 95% full on {instance} — 磁盘告警"),
        )]),
        starts_at: T0,
        ends_at: Some(ends_at),
        generator_url: "http://prom:9090/graph?g0.expr=disk&g0.tab=1".into(),
    }
}

fn header<'a>(m: &'a Value, name: &str) -> &'a str {
    m["headers"][name].as_str().unwrap_or_default()
}

fn part<'a>(m: &'a Value, content_type: &str) -> &'a Value {
    m["parts"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["content_type"] == content_type))
        .unwrap_or_else(|| panic!("no {content_type} part in {m}"))
}

#[tokio::test]
async fn dispatcher_mails_firing_then_resolved_to_aiosmtpd() {
    let Some(python) = axi_obs_core::testing::peer("aiosmtpd-python") else {
        return;
    };
    let sink = Sink::start(&python, None).await;
    let yaml = format!(
        r#"
global:
  smtp_smarthost: 127.0.0.1:{port}
  smtp_from: 'Alertmanager <am@example.org>'
  smtp_hello: axi.test
  smtp_require_tls: false
route:
  receiver: mail
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
receivers:
- name: mail
  email_configs:
  - to: 'ops@example.org, "Doe, J" <jd@example.org>'
    send_resolved: true
    headers:
      X-Team: 'sre-{{{{ .CommonLabels.team }}}}'
    text: |
      {{{{ range .Alerts }}}}{{{{ .Labels.alertname }}}} on {{{{ .Labels.instance }}}}: {{{{ .Annotations.summary }}}}
      {{{{ end }}}}
"#,
        port = sink.port
    );
    let cfg = Config::parse(&yaml, Path::new("am.yml")).expect("config");
    let n = notifier();
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("dispatcher");
    let far = T0 + 1000 * MIN;
    d.insert(alert("a", far), T0);
    d.insert(alert("b", far), T0);
    let report = d.tick(T0 + 30 * S, &n).await.expect("tick");
    assert_eq!((report.sent, report.failed), (1, 0), "{report:?}");

    let m = &sink.messages(1).await[0];
    assert_eq!(m["mail_from"], "am@example.org");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["ops@example.org", "jd@example.org"])
    );
    assert_eq!(header(m, "From"), "Alertmanager <am@example.org>");
    assert_eq!(
        header(m, "To"),
        r#"ops@example.org, "Doe, J" <jd@example.org>"#
    );
    // Alertmanager's default subject: group label values, then the other common ones.
    assert_eq!(
        header(m, "Subject"),
        "[FIRING:2] DiskFull (critical storage)"
    );
    assert_eq!(header(m, "X-Team"), "sre-storage");
    assert_eq!(header(m, "Date"), "Thu, 01 Jan 2026 00:00:30 +0000");
    assert!(header(m, "Message-Id").ends_with("@axi.test>"), "{m}");
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(m["parts"].as_array().map(Vec::len), Some(2), "{m}");

    let text = part(m, "text/plain");
    assert_eq!(text["charset"], "utf-8");
    assert_eq!(text["encoding"], "quoted-printable");
    assert_eq!(
        text["text"],
        // The block scalar's final newline follows `{{ end }}`.
        "DiskFull on a: disk 95% full on a — 磁盘告警\nDiskFull on b: disk 95% full on b — 磁盘告警\n\n"
            .replace('\n', "\r\n")
    );
    let html = part(m, "text/html");
    assert_eq!(html["encoding"], "quoted-printable");
    let html = html["text"].as_str().expect("html text");
    for want in [
        "[2] Firing",
        "instance = a",
        "instance = b",
        "summary = disk 95% full on b — 磁盘告警",
        "href=\"http://prom:9090/graph?g0.expr=disk&amp;g0.tab=1\"",
        "Sent by Alertmanager",
    ] {
        assert!(html.contains(want), "{want:?} not in {html}");
    }
    assert!(!html.contains("{{"), "{html}");

    // Both alerts resolve; the next flush (group_interval later) mails it.
    d.insert(alert("a", T0 + 2 * MIN), T0 + 2 * MIN);
    d.insert(alert("b", T0 + 2 * MIN), T0 + 2 * MIN);
    let report = d.tick(T0 + 30 * S + 5 * MIN, &n).await.expect("tick");
    assert_eq!((report.sent, report.failed), (1, 0), "{report:?}");
    let m = &sink.messages(2).await[1];
    assert_eq!(
        header(m, "Subject"),
        "[RESOLVED] DiskFull (critical storage)"
    );
    assert!(
        part(m, "text/html")["text"]
            .as_str()
            .is_some_and(|h| h.contains("[2] Resolved")),
        "{m}"
    );
    assert_eq!(sink.count(), 2);
}

fn email(port: u16, auth: &str) -> Integration {
    let yaml = format!(
        "route:\n  receiver: m\nreceivers:\n- name: m\n  email_configs:\n  - to: ops@example.org\n    from: am@example.org\n    smarthost: 127.0.0.1:{port}\n    require_tls: false\n{auth}"
    );
    let cfg = Config::parse(&yaml, Path::new("am.yml")).expect("config");
    Integration::Email(Box::new(cfg.receivers[0].email_configs[0].clone()))
}

fn note() -> Notification {
    Notification {
        receiver: "m".into(),
        group_key: "{}:{}".into(),
        group_labels: LabelSet::new(),
        alerts: vec![alert("a", T0 + 1000 * MIN)],
        reason: NotificationReason::FirstNotification,
        now_ms: T0,
        external_url: "http://am:9093".into(),
    }
}

#[tokio::test]
async fn auth_against_aiosmtpd_and_refusals_are_not_retried() {
    let Some(python) = axi_obs_core::testing::peer("aiosmtpd-python") else {
        return;
    };
    let sink = Sink::start(&python, Some("alert:s3cret")).await;
    let n = notifier();

    let good = email(
        sink.port,
        "    auth_username: alert\n    auth_password: s3cret\n",
    );
    assert_eq!(
        n.deliver(&good, &note()).await.expect("deliver"),
        Delivered::Sent
    );
    let m = &sink.messages(1).await[0];
    assert_eq!(m["auth_login"], "alert");
    // aiosmtpd offers `LOGIN PLAIN`: the first we support is used, as Alertmanager picks.
    assert_eq!(m["auth_mechanism"], "LOGIN");
    assert_eq!(
        header(m, "Subject"),
        "[FIRING:1]  (DiskFull a critical storage)"
    );

    // A wrong password: 535, permanent, one attempt.
    let bad = email(
        sink.port,
        "    auth_username: alert\n    auth_password: wrong\n",
    );
    let e = n.deliver(&bad, &note()).await.expect_err("wrong password");
    assert!(
        matches!(
            &e,
            DeliveryError::Smtp(SmtpError::Reply {
                step: "AUTH",
                code: 535,
                ..
            })
        ),
        "{e}"
    );
    assert!(!e.is_retryable());

    // No login where the server requires one: MAIL is refused with 530.
    let anonymous = email(sink.port, "");
    let e = n.deliver(&anonymous, &note()).await.expect_err("no auth");
    assert!(
        matches!(
            &e,
            DeliveryError::Smtp(SmtpError::Reply {
                step: "MAIL",
                code: 530,
                ..
            })
        ),
        "{e}"
    );
    assert_eq!(sink.count(), 1);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

const DIFF_CONFIG: &str = r#"global:
  smtp_smarthost: 127.0.0.1:PORT
  smtp_from: 'Alertmanager <am@example.org>'
  smtp_require_tls: false
route:
  receiver: mail
  group_by: [alertname]
  group_wait: 1s
receivers:
- name: mail
  email_configs:
  - to: 'ops@example.org, "Doe, J" <jd@example.org>'
    text: '{{ range .Alerts }}{{ .Labels.instance }}: {{ .Annotations.summary }} ({{ .Status }})
      {{ end }}'
    html: '<!-- dropped by html/template --><p>[{{ .Alerts.Firing | len }}] Firing</p>{{ range .Alerts.Firing }}<p>{{ range .Labels.SortedPairs }}{{ .Name }} = {{ .Value }}<br>{{ end }}<a href="{{ .GeneratorURL }}">source</a></p>{{ end }}'
"#;

/// What is compared between the two mails: everything but `Date` and `Message-Id`.
fn comparable(m: &Value) -> Value {
    let mut m = m.clone();
    if let Some(h) = m["headers"].as_object_mut() {
        h.remove("Date");
        h.remove("Message-Id");
        // Alertmanager's boundary is random.
        h.remove("Content-Type");
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_and_our_router_send_the_same_mail() {
    let (Some(am_bin), Some(python)) = (
        axi_obs_core::testing::peer("alertmanager"),
        axi_obs_core::testing::peer("aiosmtpd-python"),
    ) else {
        return;
    };
    let (am_sink, our_sink) = (
        Sink::start(&python, None).await,
        Sink::start(&python, None).await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let config_path = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config_path,
        DIFF_CONFIG.replace("PORT", &am_sink.port.to_string()),
    )
    .expect("write config");
    let _am = start_alertmanager(&am_bin, &config_path, &dir.path().join("data"), port, &base);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/-/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "Alertmanager not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let t = now_ms();
    let alerts = [alert("a", t + 3_600_000), alert("b+c", t + 3_600_000)];
    let posted: Vec<Value> = alerts
        .iter()
        .map(|a| {
            serde_json::json!({
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": axi_obs_alert::delivery::rfc3339_nano(t),
                "endsAt": axi_obs_alert::delivery::rfc3339_nano(t + 3_600_000),
                "generatorURL": a.generator_url,
            })
        })
        .collect();
    let r = http
        .post(format!("{base}/api/v2/alerts"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&posted).expect("json"))
        .send()
        .await
        .expect("post alerts");
    assert!(r.status().is_success(), "{}", r.status());
    let theirs = &am_sink.messages(1).await[0];

    let cfg = Config::parse(
        &DIFF_CONFIG.replace("PORT", &our_sink.port.to_string()),
        Path::new("ours.yml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut d = Dispatcher::new(
        &cfg,
        DispatcherOptions {
            external_url: base.clone(),
            ..DispatcherOptions::default()
        },
        t,
    )
    .expect("dispatcher");
    for mut a in alerts {
        a.starts_at = t;
        d.insert(a, t);
    }
    let report = d.tick(t + 1000, &notifier()).await.expect("tick");
    assert_eq!((report.sent, report.failed), (1, 0), "{report:?}");
    let ours = &our_sink.messages(1).await[0];

    assert_eq!(comparable(ours), comparable(theirs));
    // The comparison covered real content: both parts, html/template's escaping of `+`.
    let html = part(theirs, "text/html")["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        html.contains("instance = b&#43;c") && html.contains("[2] Firing"),
        "{html}"
    );
    assert!(!html.contains("<!--"), "{html}");
    assert_eq!(
        part(theirs, "text/plain")["text"],
        // The quoted YAML scalar folds its line break into a space.
        "a: disk 95% full on a — 磁盘告警 (firing) b+c: disk 95% full on b+c — 磁盘告警 (firing) "
    );
    assert!(
        header(theirs, "Subject").starts_with("[FIRING:2] DiskFull"),
        "{theirs}"
    );
}
