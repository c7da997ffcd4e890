//! Webhook, DingTalk and WeCom deliveries to local HTTP receivers that check what the real
//! services check: the DingTalk signature (computed here independently), the WeCom key,
//! and the body shapes; `errcode != 0` and non-2xx answers are failures.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axi_obs_alert::delivery::{
    AmAlert, Config, Delivered, DeliveryError, LabelSet, Notification, NotificationReason,
    Receiver, WebhookMessage, send_dingtalk, send_webhook, send_wecom,
};
use axum::extract::Query;
use axum::http::StatusCode;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "SEC0123456789abcdef+/=";
const TOKEN: &str = "tok123";
const WECOM_KEY: &str = "key-456";

#[derive(Debug, Clone)]
struct Received {
    path: String,
    query: HashMap<String, String>,
    body: Value,
}

type Log = Arc<Mutex<Vec<Received>>>;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// DingTalk's check, written from its documentation, not from our code.
fn dingtalk_accepts(q: &HashMap<String, String>) -> bool {
    let (Some(ts), Some(sign)) = (q.get("timestamp"), q.get("sign")) else {
        return false;
    };
    let Ok(ts_ms) = ts.parse::<i64>() else {
        return false;
    };
    if (now_ms() - ts_ms).abs() > 3_600_000
        || q.get("access_token").map(String::as_str) != Some(TOKEN)
    {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{ts}\n{SECRET}").as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    // The query is already URL-decoded here, as DingTalk's server sees it.
    *sign == want
}

async fn receiver() -> (String, Log) {
    let log: Log = Arc::default();
    let (l1, l2, l3, l4) = (log.clone(), log.clone(), log.clone(), log.clone());
    let app = axum::Router::new()
        .route(
            "/dingtalk",
            axum::routing::post(
                move |Query(q): Query<HashMap<String, String>>, raw: axum::body::Bytes| {
                    let ok = dingtalk_accepts(&q);
                    // DingTalk refuses a body over 20,000 bytes ("body 大小不合法"); its
                    // errcode for that is not in what we could read, and any non-zero one
                    // is a failure.
                    let fits = raw.len() <= 20_000;
                    let body: Value = serde_json::from_slice(&raw).expect("JSON body");
                    l1.lock().expect("lock").push(Received {
                        path: "/dingtalk".into(),
                        query: q,
                        body,
                    });
                    async move {
                        if !ok {
                            axum::Json(json!({"errcode": 310000, "errmsg": "sign not match"}))
                        } else if !fits {
                            axum::Json(json!({"errcode": 1, "errmsg": "body 大小不合法"}))
                        } else {
                            axum::Json(json!({"errcode": 0, "errmsg": "ok"}))
                        }
                    }
                },
            ),
        )
        .route(
            "/wecom",
            axum::routing::post(
                move |Query(q): Query<HashMap<String, String>>,
                      axum::Json(body): axum::Json<Value>| {
                    let ok = q.get("key").map(String::as_str) == Some(WECOM_KEY);
                    let fits = body["markdown"]["content"]
                        .as_str()
                        .is_some_and(|c| c.len() <= 4096);
                    l2.lock().expect("lock").push(Received {
                        path: "/wecom".into(),
                        query: q,
                        body,
                    });
                    async move {
                        if !ok {
                            axum::Json(json!({"errcode": 93000, "errmsg": "invalid webhook url"}))
                        } else if !fits {
                            axum::Json(
                                json!({"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"}),
                            )
                        } else {
                            axum::Json(json!({"errcode": 0, "errmsg": "ok"}))
                        }
                    }
                },
            ),
        )
        .route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                l3.lock().expect("lock").push(Received {
                    path: "/hook".into(),
                    query: HashMap::new(),
                    body,
                });
                async { StatusCode::OK }
            }),
        )
        .route(
            "/broken",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                l4.lock().expect("lock").push(Received {
                    path: "/broken".into(),
                    query: HashMap::new(),
                    body,
                });
                async { (StatusCode::INTERNAL_SERVER_ERROR, "down for maintenance") }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), log)
}

fn receivers(base: &str, secret: &str, key: &str) -> Vec<Receiver> {
    let yaml = format!(
        r#"
route:
  receiver: robots
receivers:
- name: robots
  webhook_configs:
  - url: {base}/hook
  - url: {base}/broken
  - url: {base}/hook
    send_resolved: false
  dingtalk_configs:
  - url: {base}/dingtalk?access_token={TOKEN}
    secret: '{secret}'
    at_mobiles: ['13800000000']
  wecom_configs:
  - url: {base}/wecom?key={key}
    mentioned_list: [zhangsan]
"#
    );
    Config::parse(&yaml, Path::new("robots.yml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .receivers
}

fn notification(resolved: bool) -> Notification {
    let now = now_ms();
    let labels: LabelSet = [
        ("alertname", "DiskFull"),
        ("instance", "db1:9100"),
        ("severity", "warning"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Notification {
        receiver: "robots".into(),
        group_key: "{}:{alertname=\"DiskFull\"}".into(),
        group_labels: [("alertname".to_string(), "DiskFull".to_string())].into(),
        alerts: vec![AmAlert {
            labels,
            annotations: [("summary".to_string(), "磁盘使用率 95%".to_string())].into(),
            starts_at: now - 60_000,
            ends_at: Some(if resolved { now - 1000 } else { now + 300_000 }),
            generator_url: "http://prom/graph".into(),
        }],
        reason: if resolved {
            NotificationReason::AllAlertsResolved
        } else {
            NotificationReason::FirstNotification
        },
        now_ms: now,
        external_url: "http://am:9093".into(),
    }
}

fn last(log: &Log, path: &str) -> Option<Received> {
    log.lock()
        .expect("lock")
        .iter()
        .rev()
        .find(|r| r.path == path)
        .cloned()
}

#[tokio::test]
async fn dingtalk_markdown_is_signed_and_accepted() {
    let (base, log) = receiver().await;
    let rcv = receivers(&base, SECRET, WECOM_KEY);
    let client = axi_obs_alert::delivery::http_client().expect("the delivery HTTP client");
    let n = notification(false);
    let out = send_dingtalk(&client, &rcv[0].dingtalk_configs[0], &n)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, Delivered::Sent);
    let got = last(&log, "/dingtalk").expect("a request");
    assert_eq!(got.query["timestamp"], n.now_ms.to_string());
    assert_eq!(got.body["msgtype"], "markdown");
    assert_eq!(got.body["markdown"]["title"], "[FIRING:1] DiskFull");
    let text = got.body["markdown"]["text"].as_str().expect("text");
    assert!(
        text.starts_with("### [FIRING] DiskFull\n> 磁盘使用率 95%\n"),
        "{text}"
    );
    assert!(text.contains("- instance: db1:9100\n"), "{text}");
    // DingTalk only mentions a mobile that also appears in the text.
    assert!(text.contains("@13800000000"), "{text}");
    assert_eq!(
        got.body["at"],
        json!({"atMobiles": ["13800000000"], "isAtAll": false})
    );
}

#[tokio::test]
async fn dingtalk_errcode_is_a_failure() {
    let (base, log) = receiver().await;
    let rcv = receivers(&base, "SECwrong", WECOM_KEY);
    let err = send_dingtalk(
        &axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
        &rcv[0].dingtalk_configs[0],
        &notification(false),
    )
    .await
    .expect_err("a wrong signature must fail");
    assert!(
        matches!(&err, DeliveryError::Robot { errcode: 310000, errmsg } if errmsg == "sign not match"),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(last(&log, "/dingtalk").is_some());
}

#[tokio::test]
async fn wecom_markdown_with_mentions() {
    let (base, log) = receiver().await;
    let client = axi_obs_alert::delivery::http_client().expect("the delivery HTTP client");
    let rcv = receivers(&base, SECRET, WECOM_KEY);
    let n = notification(true);
    assert_eq!(
        send_wecom(&client, &rcv[0].wecom_configs[0], &n)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Delivered::Sent
    );
    let got = last(&log, "/wecom").expect("a request");
    assert_eq!(got.body["msgtype"], "markdown");
    let content = got.body["markdown"]["content"].as_str().expect("content");
    assert!(
        content.starts_with("### [RESOLVED] DiskFull\n"),
        "{content}"
    );
    assert!(content.ends_with("<@zhangsan>"), "{content}");

    let bad = receivers(&base, SECRET, "nope");
    let err = send_wecom(&client, &bad[0].wecom_configs[0], &n)
        .await
        .expect_err("invalid key");
    assert!(
        matches!(err, DeliveryError::Robot { errcode: 93000, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn webhook_posts_v4_and_reports_failures() {
    let (base, log) = receiver().await;
    let client = axi_obs_alert::delivery::http_client().expect("the delivery HTTP client");
    let rcv = receivers(&base, SECRET, WECOM_KEY);
    let hooks = &rcv[0].webhook_configs;

    let n = notification(false);
    assert_eq!(
        send_webhook(&client, &hooks[0], &n).await.expect("sent"),
        Delivered::Sent
    );
    let got = last(&log, "/hook").expect("a request");
    assert_eq!(
        got.body,
        serde_json::to_value(WebhookMessage::new(&n, &n.alerts, 0)).expect("json")
    );
    assert_eq!(got.body["version"], "4");
    assert_eq!(got.body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");

    let err = send_webhook(&client, &hooks[1], &n).await.expect_err("500");
    assert!(
        matches!(&err, DeliveryError::Status { status: 500, body } if body == "down for maintenance"),
        "{err}"
    );
    assert!(err.is_retryable());

    // send_resolved: false and only resolved alerts: no request at all.
    let before = log.lock().expect("lock").len();
    let resolved = notification(true);
    assert_eq!(
        send_webhook(&client, &hooks[2], &resolved)
            .await
            .expect("ok"),
        Delivered::NothingToSend
    );
    assert_eq!(log.lock().expect("lock").len(), before);
    // With send_resolved (the default) the resolved alert goes out with its end time.
    send_webhook(&client, &hooks[0], &resolved)
        .await
        .expect("sent");
    let got = last(&log, "/hook").expect("a request");
    assert_eq!(got.body["status"], "resolved");
    assert_ne!(got.body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
}

/// A receiver whose answer never ends: the delivery reads a bounded part of it and is done
/// (the status decides), instead of reading without end.
#[tokio::test]
async fn an_endless_answer_is_read_only_in_part() {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            let chunk = bytes::Bytes::from(vec![b' '; 16 * 1024]);
            let endless =
                futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            axum::body::Body::from_stream(endless)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let rcv = receivers(&format!("http://127.0.0.1:{port}"), SECRET, WECOM_KEY);
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        send_webhook(
            &axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
            &rcv[0].webhook_configs[0],
            &notification(false),
        ),
    )
    .await
    .expect("the delivery ended");
    assert_eq!(sent.expect("sent"), Delivered::Sent);
}

#[tokio::test]
async fn network_errors_are_retryable() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let rcv = receivers(&format!("http://127.0.0.1:{port}"), SECRET, WECOM_KEY);
    let err = send_webhook(
        &axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
        &rcv[0].webhook_configs[0],
        &notification(false),
    )
    .await
    .expect_err("connection refused");
    assert!(matches!(err, DeliveryError::Http(_)), "{err}");
    assert!(err.is_retryable());
}

/// Five notifications at once to a robot allowed two messages per window: two go out at
/// once, the other three wait and go out together as one signed message, each delivery
/// reporting success; nothing is lost and the robot sees three requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_robot_limit_is_kept_by_batching() {
    use axi_obs_alert::delivery::{Integration, Notifier, RetryPolicy};
    let (base, log) = receiver().await;
    let rs = receivers(&base, SECRET, WECOM_KEY);
    let ding = rs[0].dingtalk_configs[0].clone();
    let notifier = Notifier::new(
        axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
        RetryPolicy::default(),
    )
    .with_robot_limit(2, std::time::Duration::from_millis(500));
    let integration = Integration::DingTalk(ding);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..5 {
        let mut n = notification(false);
        n.alerts[0]
            .labels
            .insert("alertname".into(), format!("Batch{i}"));
        let (notifier, integration) = (notifier.clone(), integration.clone());
        tasks.spawn(async move { notifier.deliver(&integration, &n).await });
    }
    while let Some(done) = tasks.join_next().await {
        let r = done.expect("task");
        assert!(matches!(r, Ok(Delivered::Sent)), "{r:?}");
    }
    let got: Vec<Received> = log
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.path == "/dingtalk")
        .cloned()
        .collect();
    assert_eq!(got.len(), 3, "{got:#?}");
    // Every request was signed (the batch with the time it was sent) and accepted.
    assert!(got.iter().all(|r| dingtalk_accepts(&r.query)));
    let texts: Vec<&str> = got
        .iter()
        .map(|r| r.body["markdown"]["text"].as_str().expect("text"))
        .collect();
    for i in 0..5 {
        let n = texts
            .iter()
            .filter(|t| t.contains(&format!("Batch{i}")))
            .count();
        assert_eq!(n, 1, "Batch{i} in {texts:#?}");
    }
    let batched = got
        .iter()
        .find(|r| {
            r.body["markdown"]["title"]
                .as_str()
                .is_some_and(|t| t.ends_with("(+2 more)"))
        })
        .unwrap_or_else(|| panic!("no batched message in {got:#?}"));
    assert_eq!(
        batched.body["markdown"]["text"]
            .as_str()
            .map(|t| t.matches("\n\n---\n\n").count()),
        Some(2)
    );
}

/// An alert storm on a rate-limited robot: the waiting notifications are more than one
/// message can hold. A batch takes as many as fit whole; the others are retried into the
/// next slot's message. Every delivery succeeds, nothing is cut away (the receivers refuse
/// what the real robots refuse), and each notification arrives exactly once, mentions kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_over_the_size_limit_is_split_over_slots_not_cut() {
    use axi_obs_alert::delivery::{Integration, Notifier, RetryPolicy};
    let (base, log) = receiver().await;
    let rs = receivers(&base, SECRET, WECOM_KEY);
    let mut ding = rs[0].dingtalk_configs[0].clone();
    let mut wecom = rs[0].wecom_configs[0].clone();
    // Each message alone fits (about 4,100 bytes for DingTalk, 1,300 for WeCom); five
    // together do not.
    ding.message = Some("- {{ .CommonLabels.alertname }} 磁盘 \"/data\" 使用率 95%\n".repeat(100));
    wecom.message = Some("{{ .CommonLabels.alertname }} 磁盘".repeat(100));
    // The last notification to each robot mentions someone else: its mention must reach
    // the robot with its section.
    let mut ding_other = ding.clone();
    ding_other.at_mobiles = vec!["13900000000".into()];
    let mut wecom_other = wecom.clone();
    wecom_other.mentioned_list = vec!["lisi".into()];
    // A window long enough for every waiting delivery to join the batch on a busy machine.
    let notifier = Notifier::new(
        axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
        RetryPolicy::default(),
    )
    .with_robot_limit(1, std::time::Duration::from_secs(2));
    let deliver = |tasks: &mut tokio::task::JoinSet<_>, integration: &Integration, i: usize| {
        let mut n = notification(false);
        n.alerts[0]
            .labels
            .insert("alertname".into(), format!("Storm{i}"));
        let (notifier, integration) = (notifier.clone(), integration.clone());
        tasks.spawn(async move { notifier.deliver(&integration, &n).await });
    };
    let mut tasks = tokio::task::JoinSet::new();
    for integration in [Integration::DingTalk(ding), Integration::WeCom(wecom)] {
        for i in 0..5 {
            deliver(&mut tasks, &integration, i);
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    deliver(&mut tasks, &Integration::DingTalk(ding_other), 5);
    deliver(&mut tasks, &Integration::WeCom(wecom_other), 5);
    while let Some(done) = tasks.join_next().await {
        let r = done.expect("task");
        assert!(matches!(r, Ok(Delivered::Sent)), "{r:?}");
    }
    let got = log.lock().expect("lock").clone();
    let text_of = |r: &Received| -> String {
        r.body["markdown"]["text"]
            .as_str()
            .or(r.body["markdown"]["content"].as_str())
            .expect("markdown")
            .to_owned()
    };
    for (path, limit) in [("/dingtalk", 20_000), ("/wecom", 4_096)] {
        let msgs: Vec<&Received> = got.iter().filter(|r| r.path == path).collect();
        // One alone, a batch of what fits, then the rest in a later slot.
        assert!(msgs.len() >= 3, "{path}: {} messages", msgs.len());
        for m in &msgs {
            let size = if path == "/dingtalk" {
                m.body.to_string().len()
            } else {
                text_of(m).len()
            };
            assert!(size <= limit, "{path}: {size} bytes");
            assert!(!text_of(m).contains('…'), "{path}: a message was cut");
        }
        assert!(
            msgs.iter().any(|m| text_of(m).contains("\n\n---\n\n")),
            "{path}: no batch"
        );
        for i in 0..6 {
            let storm = format!("Storm{i} ");
            let holding = msgs.iter().filter(|m| text_of(m).contains(&storm)).count();
            assert_eq!(holding, 1, "{path}: Storm{i} in {holding} messages");
        }
    }
    // The mentions travel with their notifications.
    let last_ding = got
        .iter()
        .find(|r| r.path == "/dingtalk" && text_of(r).contains("Storm5 "))
        .expect("Storm5 to DingTalk");
    assert!(
        text_of(last_ding).contains("@13900000000"),
        "{}",
        text_of(last_ding)
    );
    assert!(
        last_ding.body["at"]["atMobiles"]
            .as_array()
            .expect("atMobiles")
            .contains(&json!("13900000000"))
    );
    let last_wecom = got
        .iter()
        .find(|r| r.path == "/wecom" && text_of(r).contains("Storm5 "))
        .expect("Storm5 to WeCom");
    assert!(
        text_of(last_wecom).contains("<@lisi>"),
        "{}",
        text_of(last_wecom)
    );
}
