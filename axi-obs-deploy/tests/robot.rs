//! DingTalk and WeCom deploy notifications through axi-obs-alert's robot integrations, against
//! local receivers that check the signature and the body as the robots' servers do.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axi_obs_alert::delivery::{DingTalkConfig, Secret, WeComConfig};
use axi_obs_deploy::dispatch::Dispatcher;
use axi_obs_deploy::robot::RobotNotifyHook;
use axi_obs_deploy::{Status, Tracker};
use axum::extract::{RawQuery, State};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const DEADLINE: Duration = Duration::from_secs(30);
const SECRET: &str = "SEC0123456789abcdef";

/// One request a receiver got: its query pairs and JSON body.
type Got = Arc<Mutex<Vec<(Vec<(String, String)>, Value)>>>;

/// A robot endpoint on a loopback port answering `reply`; returns its base URL and requests.
fn receiver(reply: Value) -> (String, Got) {
    let got: Got = Arc::default();
    let state = (got.clone(), reply);
    let router = axum::Router::new()
        .route(
            "/{*path}",
            axum::routing::post(
                |State((got, reply)): State<(Got, Value)>,
                 RawQuery(q): RawQuery,
                 body: axum::body::Bytes| async move {
                    let query = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                        .into_owned()
                        .collect();
                    got.lock()
                        .unwrap()
                        .push((query, serde_json::from_slice(&body).unwrap()));
                    axum::Json(reply)
                },
            ),
        )
        .with_state(state);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), got)
}

fn dingtalk(url: String) -> DingTalkConfig {
    serde_norway::from_str(&format!("url: {url}\nsecret: {SECRET}\n")).unwrap()
}

fn wecom(url: String) -> WeComConfig {
    WeComConfig {
        send_resolved: true,
        url: Some(Secret(url)),
        key: None,
        mentioned_list: vec!["ops".into()],
        message: None,
    }
}

/// DingTalk's signature, computed here independently of the code under test.
fn expected_sign(timestamp: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}\n{SECRET}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn query<'a>(q: &'a [(String, String)], name: &str) -> &'a str {
    q.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no `{name}` in {q:?}"))
}

#[test]
fn a_failed_deploy_reaches_a_signed_dingtalk_robot_and_a_wecom_robot() {
    let (ding, ding_got) = receiver(json!({"errcode": 0, "errmsg": "ok"}));
    let (wc, wc_got) = receiver(json!({"errcode": 0, "errmsg": "ok"}));
    let hook = RobotNotifyHook::new()
        .unwrap()
        .dingtalk(dingtalk(format!("{ding}/robot/send?access_token=T0K")))
        .wecom(wecom(format!("{wc}/cgi-bin/webhook/send?key=K3Y")));
    let tracker = Tracker::new(Dispatcher::builder().hook(hook).build().unwrap());
    let deploy = tracker.start("shop-api", "prod", "1.4.2");
    let id = deploy.id().to_owned();
    let dref = deploy.deployment().clone();
    deploy.fail("migration failed");
    // A second outcome for the same deployment (another event id): the history keeps the
    // first, and so do the robots.
    assert!(tracker.dispatcher().send(axi_obs_deploy::Event::new(
        dref.clone(),
        9,
        dref.started_at,
        axi_obs_deploy::EventKind::Succeeded
    )));
    assert!(tracker.dispatcher().flush(DEADLINE));
    assert_eq!(tracker.dispatcher().stats().failures, 0);

    let ding_got = ding_got.lock().unwrap();
    assert_eq!(ding_got.len(), 1, "the first outcome only");
    let (q, body) = &ding_got[0];
    assert_eq!(query(q, "access_token"), "T0K");
    let timestamp = query(q, "timestamp");
    assert_eq!(query(q, "sign"), expected_sign(timestamp));
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(body["markdown"]["title"], "[FAILED] shop-api 1.4.2 → prod");
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "### [FAILED] shop-api 1.4.2 → prod\n\n> shop-api 1.4.2 to prod failed after "
        ),
        "{text}"
    );
    assert!(text.contains(": migration failed\n"), "{text}");
    assert!(text.contains(&format!("- deployment: {id}\n")), "{text}");

    let wc_got = wc_got.lock().unwrap();
    assert_eq!(wc_got.len(), 1);
    let (q, body) = &wc_got[0];
    assert_eq!(query(q, "key"), "K3Y");
    assert_eq!(body["msgtype"], "markdown");
    let content = body["markdown"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("### [FAILED] shop-api 1.4.2 → prod\n"),
        "{content}"
    );
    assert!(content.ends_with("<@ops>"), "{content}");
}

#[test]
fn robot_errors_are_hook_failures_and_unlisted_outcomes_send_nothing() {
    // DingTalk's answer to a bad signature: HTTP 200 with errcode 310000.
    let (ding, ding_got) = receiver(json!({"errcode": 310000, "errmsg": "sign not match"}));
    let hook = RobotNotifyHook::new()
        .unwrap()
        .dingtalk(dingtalk(format!("{ding}/robot/send?access_token=T")))
        .statuses([Status::Failed, Status::RolledBack]);
    let tracker = Tracker::new(Dispatcher::builder().hook(hook).build().unwrap());
    tracker.start("shop-api", "prod", "1.4.3").succeed();
    assert!(tracker.dispatcher().flush(DEADLINE));
    assert_eq!(ding_got.lock().unwrap().len(), 0, "succeeded is not listed");
    tracker
        .start("shop-api", "prod", "1.4.4")
        .roll_back("1.4.3", Some("5xx after deploy".into()));
    assert!(tracker.dispatcher().flush(DEADLINE));
    assert_eq!(ding_got.lock().unwrap().len(), 1);
    let body = &ding_got.lock().unwrap()[0].1;
    assert_eq!(
        body["markdown"]["title"],
        "[ROLLED_BACK] shop-api 1.4.4 → prod"
    );
    assert!(
        body["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("- now running: 1.4.3\n"),
        "{body}"
    );
    assert_eq!(
        tracker.dispatcher().stats().failures,
        1,
        "errcode 310000 is a failure"
    );
}
