//! `axi-alert alertmanager` as a stand-in for Alertmanager: the real `amtool` 0.33 runs the
//! same commands against a real Alertmanager 0.33 and against ours, with the same
//! configuration, and must print the same (apart from silence ids and the times each side
//! takes from its own clock). The API's alert groups, receivers and status are compared
//! the same way.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axi_obs_core::testing::peer;
use serde_json::Value;

mod common;

use common::{Kill, free_port, serve, start_alertmanager};

const CONFIG: &str = r#"route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  routes:
  - matchers: [severity="page"]
    receiver: pager
inhibit_rules:
- source_matchers: [severity="page"]
  target_matchers: [severity="warn"]
  equal: [alertname]
receivers:
- name: hook
  webhook_configs: [{url: "URL"}]
- name: pager
  webhook_configs: [{url: "URL"}]
"#;

/// A webhook receiver answering 200 to everything; returns its port.
async fn sink() -> u16 {
    serve(axum::Router::new().fallback(|| async { "ok" })).await
}

pub(crate) fn start_ours(config: &Path, storage: &Path) -> (Kill, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_axi-alert"))
        .arg("alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", storage.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start axi-alert alertmanager");
    (Kill(child), port)
}

pub(crate) async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/-/ready")).await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "port {port} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs amtool against `port`; returns stdout, failing on a non-zero exit.
fn amtool(bin: &Path, port: u16, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg(format!("--alertmanager.url=http://127.0.0.1:{port}"))
        .arg("--no-version-check")
        .args(args)
        .output()
        .expect("run amtool");
    assert!(
        out.status.success(),
        "amtool {args:?} against port {port}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Drops `updatedAt` everywhere, replaces silence ids by their position in `ids`, and drops
/// the times a side takes from its own clock (a silence's start, an expired silence's end).
fn normalize(v: &mut Value, ids: &[String]) {
    match v {
        Value::Object(m) => {
            m.remove("updatedAt");
            let silence = m.contains_key("createdBy");
            if silence {
                m.remove("startsAt");
                if m["status"]["state"] == "expired" {
                    m.remove("endsAt");
                }
            }
            for (_, x) in m.iter_mut() {
                normalize(x, ids);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalize(x, ids)),
        Value::String(s) => {
            if let Some(i) = ids.iter().position(|id| id == s) {
                *s = format!("silence-{i}");
            }
        }
        _ => {}
    }
}

fn json(text: &str, ids: &[String]) -> Value {
    let mut v: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    normalize(&mut v, ids);
    v
}

async fn get_json(port: u16, path: &str, ids: &[String]) -> Value {
    let text = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    json(&text, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_sees_our_router_as_it_sees_alertmanager() {
    let (Some(am_bin), Some(amtool_bin)) = (peer("alertmanager"), peer("amtool")) else {
        return;
    };
    let hook = sink().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        CONFIG.replace("URL", &format!("http://127.0.0.1:{hook}/")),
    )
    .expect("config");
    let am = free_port();
    let _am = start_alertmanager(&am_bin, &config, &dir.path().join("am"), am, "");
    let (_ours, ours) = start_ours(&config, &dir.path().join("ours"));
    wait_ready(am).await;
    wait_ready(ours).await;

    // Fixed times, so both sides hold the same alerts.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let at = |s: i64| axi_obs_alert::delivery::rfc3339_millis(s * 1000).replace(".000", "");
    let (start, end) = (at(now - 60), at(now + 3600));
    let silence_end = at(now + 7200);
    let mut ids: Vec<String> = Vec::new();
    for port in [am, ours] {
        let run = |args: &[&str]| amtool(&amtool_bin, port, args);
        let time = [
            format!("--start={start}"),
            format!("--end={end}"),
            "--generator-url=http://prometheus:9090/graph".to_string(),
        ];
        let time: Vec<&str> = time.iter().map(String::as_str).collect();
        run(&[
            &[
                "alert",
                "add",
                "alertname=Disk",
                "severity=page",
                "--annotation=summary=full",
            ],
            &time[..],
        ]
        .concat());
        run(&[
            &["alert", "add", "alertname=Disk", "severity=warn"],
            &time[..],
        ]
        .concat());
        run(&[&["alert", "add", "alertname=Cpu", "instance=a"], &time[..]].concat());
        run(&[&["alert", "add", "alertname=Cpu", "instance=b"], &time[..]].concat());
        let id = run(&[
            "silence",
            "add",
            "alertname=Cpu",
            "instance=~a|c",
            "--author=tester",
            "--comment=maintenance",
            &format!("--end={silence_end}"),
        ]);
        ids.push(id.trim().to_string());
        // A second silence, expired at once.
        let gone = run(&[
            "silence",
            "add",
            "alertname=Gone",
            "-a",
            "tester",
            "-c",
            "x",
        ]);
        run(&["silence", "expire", gone.trim()]);
        ids.push(gone.trim().to_string());
    }
    // Ids pair up across sides: position i on Alertmanager, i + 2 on ours.
    let norm_ids = |side: usize| -> Vec<String> { ids[side * 2..side * 2 + 2].to_vec() };

    let queries: &[&[&str]] = &[
        &["alert", "query", "-o", "json"],
        &["alert", "query", "-o", "json", "--silenced", "--inhibited"],
        &["alert", "query", "-o", "json", "--inhibited"],
        &[
            "alert",
            "query",
            "-o",
            "json",
            "--silenced",
            "alertname=Cpu",
        ],
        &["alert", "query", "-o", "json", "-r", "pag.*", "--inhibited"],
        &[
            "alert",
            "query",
            "-o",
            "simple",
            "--silenced",
            "--inhibited",
        ],
        &["silence", "query", "-o", "json"],
        &["silence", "query", "-o", "json", "--expired"],
        &["silence", "query", "-o", "json", "alertname=Cpu"],
    ];
    for q in queries {
        let a = amtool(&amtool_bin, am, q);
        let o = amtool(&amtool_bin, ours, q);
        if q.contains(&"simple") {
            assert_eq!(a, o, "amtool {q:?}");
            continue;
        }
        let (a, o) = (json(&a, &norm_ids(0)), json(&o, &norm_ids(1)));
        assert_eq!(a, o, "amtool {q:?}\nAlertmanager: {a:#}\nours: {o:#}");
    }
    // The inhibited and the silenced alert are really muted on our side.
    let all = json(
        &amtool(
            &amtool_bin,
            ours,
            &["alert", "query", "-o", "json", "--silenced", "--inhibited"],
        ),
        &norm_ids(1),
    );
    let states: Vec<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["status"]["state"].as_str().expect("state"))
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "suppressed").count(),
        2,
        "{all:#}"
    );

    for path in ["/api/v2/alerts/groups", "/api/v2/receivers"] {
        let mut a = get_json(am, path, &norm_ids(0)).await;
        let o = get_json(ours, path, &norm_ids(1)).await;
        if path.ends_with("receivers") {
            // Alertmanager 0.33 adds receiver labels, which we do not have.
            for r in a.as_array_mut().expect("array") {
                r.as_object_mut().expect("object").remove("labels");
            }
        }
        assert_eq!(a, o, "{path}\nAlertmanager: {a:#}\nours: {o:#}");
    }
    let status = get_json(ours, "/api/v2/status", &[]).await;
    assert_eq!(status["cluster"]["status"], "disabled");
    // The configuration as shown: the webhook URLs (tokens live in them) are `<secret>` on
    // both sides, never the URL itself.
    let hook_url = format!("http://127.0.0.1:{hook}/");
    for (who, port) in [("Alertmanager", am), ("ours", ours)] {
        let original = get_json(port, "/api/v2/status", &[]).await["config"]["original"]
            .as_str()
            .expect("original")
            .to_owned();
        assert!(
            !original.contains(&hook_url) && original.contains("url: <secret>"),
            "{who}: {original}"
        );
    }

    // Both sides ignore fields they do not know in a posted alert and silence, and answer
    // 200 to expiring a silence that already expired.
    let http = reqwest::Client::new();
    for port in [am, ours] {
        let base = format!("http://127.0.0.1:{port}/api/v2");
        // POSTs `body` to `path`, expecting 200.
        let post_ok = |path: &'static str, body: String| {
            let req = http
                .post(format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(body);
            async move {
                let r = req.send().await.expect("post");
                assert_eq!(r.status(), 200, "port {port} {path}");
                r
            }
        };
        post_ok(
            "/alerts",
            r#"[{"labels":{"alertname":"Extra"},"status":"firing","fingerprint":"x"}]"#.into(),
        )
        .await;
        let r = post_ok("/silences", format!(r#"{{"matchers":[{{"name":"alertname","value":"Extra","isRegex":false}}],"startsAt":"{start}","endsAt":"{silence_end}","createdBy":"t","comment":"c","status":{{"state":"active"}},"updatedAt":"{start}"}}"#)).await;
        let id = body_json(r).await["silenceID"]
            .as_str()
            .expect("id")
            .to_owned();
        for _ in 0..2 {
            let r = http
                .delete(format!("{base}/silence/{id}"))
                .send()
                .await
                .expect("delete");
            assert_eq!(r.status(), 200, "port {port}");
        }
        let r = http
            .post(format!("{base}/silences"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"matchers":[{{"name":"a","value":".*","isRegex":true}}],"startsAt":"{start}","endsAt":"{silence_end}","createdBy":"t","comment":"c"}}"#))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 400, "port {port}");
        assert_eq!(
            body_json(r).await,
            "invalid silence: matcher set 0: at least one matcher must not match the empty string",
            "port {port}"
        );
    }

    // Expiring through amtool takes effect: the silenced alert is active again.
    amtool(&amtool_bin, ours, &["silence", "expire", &ids[2]]);
    let active = amtool(
        &amtool_bin,
        ours,
        &["alert", "query", "-o", "json", "alertname=Cpu"],
    );
    assert_eq!(
        json(&active, &[]).as_array().expect("array").len(),
        2,
        "{active}"
    );
}

async fn body_json(r: reqwest::Response) -> Value {
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_alertmanagers_statuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, CONFIG.replace("URL", "http://127.0.0.1:9/")).expect("config");
    let (_ours, port) = start_ours(&config, &dir.path().join("ours"));
    wait_ready(port).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/api/v2");
    let post = |path: &str, body: &str| {
        http.post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    // An empty value is no label: this alert has none.
    let r = post("/alerts", "[{\"labels\":{\"a\":\"\"}}]")
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let msg = body_json(r).await;
    assert_eq!(msg, "alerts[0]: at least one label pair required");
    let r = post("/alerts", "[{\"labels\":{\"a\":\"b\"}},")
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert!(r.text().await.expect("body").contains("line 1, column"));
    // One bad alert does not cost the good one.
    let r = post(
        "/alerts",
        r#"[{"labels":{"alertname":"Ok"}},{"labels":{"alertname":"Bad"},"startsAt":"2030-01-01T00:00:00Z","endsAt":"2029-01-01T00:00:00Z"}]"#,
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 400);
    let alerts = body_json(
        http.get(format!("{base}/alerts"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(alerts.as_array().expect("array").len(), 1, "{alerts:#}");
    assert_eq!(alerts[0]["labels"]["alertname"], "Ok");
    // A batch bigger than axum's 2 MiB default is taken whole: 256 alerts (Prometheus's
    // batch) with 12 KiB of annotations each.
    let batch: Vec<Value> = (0..256)
        .map(|i| {
            serde_json::json!({
                "labels": {"alertname": "Big", "i": i.to_string()},
                "annotations": {"description": "x".repeat(12 << 10)},
            })
        })
        .collect();
    let body = serde_json::to_string(&batch).expect("json");
    assert!(body.len() > 3 << 20);
    let r = post("/alerts", &body).await.expect("post");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    let r = http
        .get(format!("{base}/alerts?active=maybe"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
    let r = http
        .get(format!("{base}/alerts?filter=alertname%3D~%22%28%22"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
    let r = post(
        "/silences",
        r#"{"matchers":[{"name":"a","value":".*","isRegex":true}],"startsAt":"2020-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"t","comment":"c"}"#,
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 400);
    let r = post(
        "/silences",
        r#"{"matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"2020-01-01T00:00:00Z","endsAt":"2021-01-01T00:00:00Z","createdBy":"t","comment":"c"}"#,
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(
        body_json(r).await,
        "Failed to create silence: end time can't be in the past"
    );
    let r = post(
        "/silences",
        r#"{"id":"00000000-0000-4000-8000-000000000000","matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"2020-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"t","comment":"c"}"#,
    )
    .await
    .expect("post");
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!(
            "{base}/silence/00000000-0000-4000-8000-000000000000"
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let r = http
        .delete(format!(
            "{base}/silence/00000000-0000-4000-8000-000000000000"
        ))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 404);
}

/// A receiver recording the alert names of each request, by path.
async fn recording_sink() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, axum::Json(v): axum::Json<Value>| {
            let s = s.clone();
            async move {
                for a in v["alerts"].as_array().into_iter().flatten() {
                    let name = a["labels"]["alertname"].as_str().unwrap_or("").to_string();
                    s.lock().expect("lock").push((uri.path().to_string(), name));
                }
                "ok"
            }
        },
    );
    (serve(app).await, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_post_and_sighup_keeps_alerts_silences_and_the_log() {
    let (hook, seen) = recording_sink().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("alertmanager.yml");
    let text = |path: &str| {
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n- name: hook\n  webhook_configs: [{{url: \"http://127.0.0.1:{hook}/{path}\"}}]\n- name: spare-{path}\n"
        )
    };
    // Which file `/api/v2/status` shows: the URL is `<secret>` there, the spare receiver's
    // name tells the versions apart.
    let shows = |original: &Value, path: &str| {
        original
            .as_str()
            .is_some_and(|o| o.contains(&format!("spare-{path}")) && !o.contains("127.0.0.1"))
    };
    std::fs::write(&config, text("a")).expect("config");
    let (ours, port) = start_ours(&config, &dir.path().join("ours"));
    wait_ready(port).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let post_alert = |name: &str| {
        http.post(format!("{base}/api/v2/alerts"))
            .header("content-type", "application/json")
            .body(format!("[{{\"labels\":{{\"alertname\":\"{name}\"}}}}]"))
            .send()
    };
    let wait_for = |path: &'static str, name: &'static str| {
        let seen = seen.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !seen
                .lock()
                .expect("lock")
                .contains(&(path.to_string(), name.to_string()))
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name} never reached {path}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let status = || async {
        let t = reqwest::get(format!("{base}/api/v2/status"))
            .await
            .expect("status")
            .text()
            .await
            .expect("body");
        serde_json::from_str::<Value>(&t).expect("json")["config"]["original"].clone()
    };
    assert!(post_alert("X").await.expect("post").status().is_success());
    wait_for("/a", "X").await;
    let silence = http
        .post(format!("{base}/api/v2/silences"))
        .header("content-type", "application/json")
        .body(r#"{"matchers":[{"name":"alertname","value":"Quiet","isRegex":false}],"startsAt":"2020-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"t","comment":"c"}"#)
        .send()
        .await
        .expect("silence");
    assert!(silence.status().is_success());

    // POST /-/reload: the new receiver URL takes over; X, already notified, is not sent again.
    std::fs::write(&config, text("b")).expect("config");
    let r = http
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    assert!(shows(&status().await, "b"));
    assert!(post_alert("Y").await.expect("post").status().is_success());
    wait_for("/b", "Y").await;

    // A bad file is refused and the running configuration stays.
    std::fs::write(&config, "route: [").expect("config");
    let r = http
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 500);
    assert!(r.text().await.expect("body").contains("alertmanager.yml"));
    assert!(shows(&status().await, "b"));

    // SIGHUP does the same.
    std::fs::write(&config, text("c")).expect("config");
    let hup = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(ours.0.id().to_string())
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !shows(&status().await, "c") {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(post_alert("Z").await.expect("post").status().is_success());
    wait_for("/c", "Z").await;

    // The silence and the alerts survived both reloads; nothing was sent twice.
    let silences = http
        .get(format!("{base}/api/v2/silences"))
        .send()
        .await
        .expect("silences")
        .text()
        .await
        .expect("body");
    assert!(silences.contains("Quiet"), "{silences}");
    let alerts = body_json(
        http.get(format!("{base}/api/v2/alerts"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(alerts.as_array().expect("array").len(), 3, "{alerts:#}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = seen.lock().expect("lock").clone();
    for name in ["X", "Y", "Z"] {
        assert_eq!(
            seen.iter().filter(|(_, n)| n == name).count(),
            1,
            "{name} in {seen:?}"
        );
    }

    // Its own metrics, as Alertmanager exposes them: the three notifications counted.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"alertmanager_notifications_total{integration="webhook"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"alertmanager_alerts_received_total{status="firing"} 3"#),
        "{metrics}"
    );
    if peer("promtool").is_some() || std::env::var_os("AXI_REQUIRE_PEERS").is_some() {
        common::promtool_check_metrics(&metrics);
    } else {
        println!("promtool not found: /metrics not checked by promtool");
    }
    // Gzipped for a scraper that takes it.
    let r = http
        .get(format!("{base}/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("metrics");
    assert_eq!(
        r.headers()
            .get("content-encoding")
            .map(|v| v.to_str().expect("ascii")),
        Some("gzip")
    );
    let bytes = r.bytes().await.expect("body");
    let mut unpacked = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut unpacked)
        .expect("gzip");
    assert!(
        unpacked
            .lines()
            .any(|l| l == r#"alertmanager_notifications_total{integration="webhook"} 3"#),
        "{unpacked}"
    );
}

/// Routes muted or activated by time intervals: always in one (a spec without fields), never
/// in the other (a past year), one in a zone's weekday of today. Written for both sides.
const TIME_CONFIG: &str = r#"route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  routes:
  - matchers: [team="muted"]
    mute_time_intervals: [always]
    routes:
    - matchers: [tier="child"]
  - matchers: [team="inactive"]
    active_time_intervals: [never]
  - matchers: [team="active"]
    active_time_intervals: [never, always]
  - matchers: [team="unmuted"]
    mute_time_intervals: [never]
  - matchers: [team="today"]
    active_time_intervals: [today-in-shanghai]
  - matchers: [team="not-today"]
    active_time_intervals: [other-days-in-shanghai]
receivers:
- name: hook
  webhook_configs: [{url: "URL"}]
time_intervals:
- name: always
  time_intervals: [{}]
- name: never
  time_intervals:
  - years: ['1999']
    months: ['january:december']
    days_of_month: ['1:31']
- name: today-in-shanghai
  time_intervals:
  - weekdays: [TODAY]
    location: Asia/Shanghai
- name: other-days-in-shanghai
  time_intervals:
  - weekdays: [OTHERS]
    location: Asia/Shanghai
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_intervals_mute_and_activate_routes_as_in_alertmanager() {
    let (Some(am_bin), Some(amtool_bin)) = (peer("alertmanager"), peer("amtool")) else {
        return;
    };
    // A receiver keeping what each side delivers, by path.
    type Got = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;
    let got: Got = Got::default();
    let g = got.clone();
    let hook = serve(axum::Router::new().route(
        "/{side}",
        axum::routing::post(
            move |axum::extract::Path(side): axum::extract::Path<String>,
                  axum::Json(v): axum::Json<Value>| {
                let g = g.clone();
                async move {
                    let name = v["groupLabels"]["alertname"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned();
                    g.lock().expect("lock").push((side, name));
                    "ok"
                }
            },
        ),
    ))
    .await;
    // The weekday in Shanghai for the next seconds, in which both sides decide: within 30 s
    // of its midnight, wait until the new day has begun.
    let days = axi_obs_alert::delivery::timeinterval::WEEKDAYS;
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").expect("zone");
    let now = jiff::Timestamp::now().to_zoned(zone.clone());
    let left = 86_400
        - (i64::from(now.hour()) * 3600 + i64::from(now.minute()) * 60 + i64::from(now.second()));
    if left < 30 {
        tokio::time::sleep(Duration::from_secs(left.unsigned_abs() + 1)).await;
    }
    let shanghai = jiff::Timestamp::now().to_zoned(zone);
    let today = usize::try_from(shanghai.weekday().to_sunday_zero_offset()).expect("day");
    let others: Vec<&str> = (0..7).filter(|d| *d != today).map(|d| days[d]).collect();
    let text = TIME_CONFIG
        .replace("TODAY", days[today])
        .replace("OTHERS", &others.join(", "));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ports = Vec::new();
    let mut kills = Vec::new();
    for side in ["am", "ours"] {
        let config = dir.path().join(format!("{side}.yml"));
        std::fs::write(
            &config,
            text.replace("URL", &format!("http://127.0.0.1:{hook}/{side}")),
        )
        .expect("config");
        if side == "am" {
            // Alertmanager's own check takes it.
            let out = Command::new(&amtool_bin)
                .arg("check-config")
                .arg(&config)
                .output()
                .expect("amtool");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            let port = free_port();
            kills.push(start_alertmanager(
                &am_bin,
                &config,
                &dir.path().join("am"),
                port,
                "",
            ));
            ports.push(port);
        } else {
            let (kill, port) = start_ours(&config, &dir.path().join("ours"));
            kills.push(kill);
            ports.push(port);
        }
    }
    let http = reqwest::Client::new();
    let alerts: Vec<Value> = [
        ("Muted", "muted", ""),
        ("MutedChild", "muted", "child"),
        ("Inactive", "inactive", ""),
        ("Active", "active", ""),
        ("Unmuted", "unmuted", ""),
        ("Today", "today", ""),
        ("NotToday", "not-today", ""),
    ]
    .iter()
    .map(|(name, team, tier)| {
        let mut labels = serde_json::json!({"alertname": name, "team": team});
        if !tier.is_empty() {
            labels["tier"] = (*tier).into();
        }
        serde_json::json!({"labels": labels})
    })
    .collect();
    for port in &ports {
        wait_ready(*port).await;
        let r = http
            .post(format!("http://127.0.0.1:{port}/api/v2/alerts"))
            .header("content-type", "application/json")
            .body(Value::from(alerts.clone()).to_string())
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    // group_wait is 1 s; give both time to flush every group.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = got.lock().expect("lock").clone();
    let names = |side: &str| {
        let mut v: Vec<String> = got
            .iter()
            .filter(|(s, _)| s == side)
            .map(|(_, n)| n.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("ours"), names("am"), "all: {got:?}");
    // The API shows what muted each group at its last flush (`mutedBy`, state
    // `suppressed`; `muted=false` leaves those groups out), and nothing of it on the alerts
    // themselves, as Alertmanager does; the times each side took aside.
    fn timeless(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in ["startsAt", "endsAt", "updatedAt"] {
                    m.remove(k);
                }
                m.values_mut().for_each(timeless);
            }
            Value::Array(a) => a.iter_mut().for_each(timeless),
            _ => {}
        }
    }
    for path in [
        "/api/v2/alerts/groups",
        "/api/v2/alerts/groups?muted=false",
        "/api/v2/alerts?filter=team%3D%22muted%22",
    ] {
        let mut answers = Vec::new();
        for port in &ports {
            let mut v = get_json(*port, path, &[]).await;
            timeless(&mut v);
            answers.push(v);
        }
        assert_eq!(answers[1], answers[0], "{path}: ours, then Alertmanager's");
    }
    let groups = get_json(ports[1], "/api/v2/alerts/groups", &[])
        .await
        .to_string();
    assert!(groups.contains(r#""mutedBy":["always"]"#), "{groups}");
    assert!(groups.contains(r#""mutedBy":["never"]"#), "{groups}");
    // A child route does not take its parent's intervals.
    assert_eq!(
        names("am"),
        ["Active", "MutedChild", "Today", "Unmuted"],
        "{got:?}"
    );
    drop(kills);
}
