//! `/federate` of `axi-alert run` against real Prometheus 3 servers: one given the same
//! configuration (a scrape job, a recording rule, `external_labels`) serves the same
//! federation page, timestamps aside; another federates from ours with `honor_labels: true`,
//! as a central Prometheus would, and answers queries over what it pulled. Also checks that
//! `--query.lookback-delta` is the queries' lookback.
//!
//! Needs the `prometheus` peer (scripts/install-peers.sh); without it the test prints a
//! notice and skips, and fails when `AXI_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;

mod common;

use common::{free_port, now_ms, poll, serve_metrics, start_prometheus, start_run};

const RULES: &str = r#"groups:
  - name: rooms
    interval: 1s
    rules:
      - record: room:temp:max
        expr: max by (room) (temp_celsius)
      - record: room:region
        expr: label_replace(room:temp:max, "region", "plant", "", "")
"#;

const TARGET: &str = "# TYPE temp_celsius gauge\ntemp_celsius{room=\"lab\",sensor=\"1\",note=\"a \\\"quoted\\\" \\\\ value\"} 31.5\ntemp_celsius{room=\"lab\",sensor=\"2\"} 1.5e-7\ntemp_celsius{room=\"office\",sensor=\"3\"} -21\n";

const MATCH: &str = "{__name__=~\"temp_celsius|room:.*\"}";

async fn text(client: &reqwest::Client, url: &str) -> (u16, String, String) {
    try_text(client, url).await.unwrap()
}

/// `(status, content type, body)`, or `None` while nothing answers.
async fn try_text(client: &reqwest::Client, url: &str) -> Option<(u16, String, String)> {
    let r = client.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Some((status, ctype, r.text().await.ok()?))
}

/// A federation page with each sample's timestamp removed, and the timestamps.
fn without_timestamps(page: &str) -> (Vec<String>, Vec<i64>) {
    let mut lines = Vec::new();
    let mut stamps = Vec::new();
    for line in page.lines() {
        if line.starts_with('#') {
            lines.push(line.to_owned());
        } else {
            let (rest, t) = line.rsplit_once(' ').unwrap();
            stamps.push(t.parse().unwrap());
            lines.push(rest.to_owned());
        }
    }
    (lines, stamps)
}

async fn query(client: &reqwest::Client, port: u16, params: &[(&str, &str)]) -> Value {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let url = format!("http://127.0.0.1:{port}/api/v1/query?{query}");
    let r = client.get(url).send().await.unwrap();
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_reads_as_prometheus_and_feeds_one() {
    let Some(prometheus) = axi_obs_core::testing::peer("prometheus") else {
        return;
    };
    let target = serve_metrics(TARGET).await;
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels: {{region: eu, dc: one}}\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: sensors\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
    );
    let (dir, config_path) = common::run_dir(&[("rules.yml", RULES)], &config);
    let (_prom, prom) = start_prometheus(&prometheus, &config_path, dir.path());
    let ours = free_port();
    let _ours = start_run(&config_path, ours, ["--query.lookback-delta", "1m"]);

    // A central Prometheus federating from ours.
    let central_config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: federate\n    honor_labels: true\n    metrics_path: /federate\n    params:\n      'match[]': ['{MATCH}']\n    static_configs:\n      - targets: ['127.0.0.1:{ours}']\n"
    );
    let central_dir = tempfile::tempdir().unwrap();
    let central_path = central_dir.path().join("prometheus.yml");
    std::fs::write(&central_path, central_config).unwrap();
    let (_central, central) = start_prometheus(&prometheus, &central_path, central_dir.path());
    let client = reqwest::Client::new();

    // Both have scraped the target and evaluated both rules.
    let page = |port: u16| format!("http://127.0.0.1:{port}/federate?match[]={MATCH}");
    for (who, port) in [("Prometheus", prom), ("axi-alert run", ours)] {
        poll(who, Duration::from_secs(60), async || {
            let (status, _, body) = try_text(&client, &page(port)).await?;
            (status == 200 && body.lines().filter(|l| !l.starts_with('#')).count() == 7)
                .then_some(())
        })
        .await;
    }

    // The same page, timestamps aside: families and series in the same order, the external
    // labels and an empty `instance` after a series' own labels where it lacks them, Go's
    // float text, the same content type.
    let theirs = text(&client, &page(prom)).await;
    let mine = text(&client, &page(ours)).await;
    assert_eq!((mine.0, &mine.1), (theirs.0, &theirs.1));
    let (their_lines, _) = without_timestamps(&theirs.2);
    let (my_lines, my_stamps) = without_timestamps(&mine.2);
    assert_eq!(
        my_lines, their_lines,
        "ours:\n{}\nPrometheus:\n{}",
        mine.2, theirs.2
    );
    // Each sample's own time: recent, in milliseconds.
    let now = now_ms();
    assert!(
        my_stamps.iter().all(|t| (now - 10_000..=now).contains(t)),
        "{my_stamps:?}"
    );
    // Gzipped when asked, as Prometheus's scrapers ask: the same page once unpacked.
    let mut unpacked = Vec::new();
    for port in [prom, ours] {
        let r = client
            .get(page(port))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            Some("gzip"),
            "port {port}"
        );
        let bytes = r.bytes().await.unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
            .unwrap();
        unpacked.push(without_timestamps(&text).0);
    }
    assert_eq!(unpacked[1], unpacked[0]);
    assert_eq!(unpacked[1], my_lines);
    // Several `match[]`, overlapping: each series once.
    let both =
        format!("http://127.0.0.1:{ours}/federate?match[]=temp_celsius&match[]={{room=\"lab\"}}");
    let theirs_both = text(&client, &both.replace(&ours.to_string(), &prom.to_string())).await;
    let mine_both = text(&client, &both).await;
    assert_eq!(
        without_timestamps(&mine_both.2).0,
        without_timestamps(&theirs_both.2).0
    );
    // A selector whose matchers all match the empty string (refused by queries, taken here):
    // the same series, values and times aside (the scrape durations differ).
    let empty_matching = format!("http://127.0.0.1:{ours}/federate?match[]={{sensor=~\"2|\"}}");
    // As sets: past a dozen series Go's unstable sort by name may reorder a family's.
    let series_of = |page: &str| -> Vec<String> {
        let mut lines: Vec<String> = page
            .lines()
            .map(|l| match l.starts_with('#') {
                true => l.to_owned(),
                false => l.rsplitn(3, ' ').nth(2).unwrap().to_owned(),
            })
            .collect();
        lines.sort();
        lines
    };
    let theirs_all = text(
        &client,
        &empty_matching.replace(&ours.to_string(), &prom.to_string()),
    )
    .await;
    let mine_all = text(&client, &empty_matching).await;
    assert_eq!((mine_all.0, theirs_all.0), (200, 200), "{theirs_all:?}");
    assert_eq!(series_of(&mine_all.2), series_of(&theirs_all.2));
    assert!(
        mine_all.2.contains("room:temp:max{room=\"lab\""),
        "{}",
        mine_all.2
    );

    // No `match[]`: nothing; a bad one: 400 (the words are the parsers' own).
    for url in [
        "http://127.0.0.1:{}/federate",
        "http://127.0.0.1:{}/federate?match[]=up{",
        "http://127.0.0.1:{}/federate?match[]=up%20offset%205m",
        "http://127.0.0.1:{}/federate?match[]=up&x=%zz",
    ] {
        let theirs = text(&client, &url.replace("{}", &prom.to_string())).await;
        let mine = text(&client, &url.replace("{}", &ours.to_string())).await;
        assert_eq!(
            mine.0, theirs.0,
            "{url}: ours {mine:?}, Prometheus {theirs:?}"
        );
        if theirs.0 == 200 || url.contains("%zz") {
            assert_eq!(mine.2, theirs.2, "{url}");
        }
    }

    // The central Prometheus holds what it federated: the rule's output with ours' external
    // labels and no `instance` (the empty one kept it from taking the scrape target's), the
    // raw series with their own job and instance.
    let pulled = poll(
        "the federated series",
        Duration::from_secs(60),
        async || {
            let body = query(&client, central, &[("query", "room:temp:max")]).await;
            let result = body["data"]["result"].as_array()?.clone();
            (result.len() == 2).then_some(result)
        },
    )
    .await;
    let mut metrics: Vec<String> = pulled.iter().map(|s| s["metric"].to_string()).collect();
    metrics.sort();
    assert_eq!(
        metrics,
        [
            r#"{"__name__":"room:temp:max","dc":"one","job":"federate","region":"eu","room":"lab"}"#,
            r#"{"__name__":"room:temp:max","dc":"one","job":"federate","region":"eu","room":"office"}"#,
        ]
    );
    let raw = query(&client, central, &[("query", "temp_celsius{sensor=\"2\"}")]).await;
    assert_eq!(
        raw["data"]["result"][0]["metric"]["instance"],
        format!("127.0.0.1:{target}")
    );
    let v: f64 = raw["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(v, 1.5e-7);
    // A series' own `region` stays its own.
    let own = query(&client, central, &[("query", "room:region")]).await;
    assert_eq!(own["data"]["result"][0]["metric"]["region"], "plant");

    // `--query.lookback-delta 1m`: two minutes on, a query finds nothing; with its own
    // `lookback_delta` of five minutes, it finds the samples.
    let later = format!("{}", (now_ms() + 120_000) / 1000);
    let plain = query(
        &client,
        ours,
        &[("query", "temp_celsius"), ("time", &later)],
    )
    .await;
    assert_eq!(plain["data"]["result"], serde_json::json!([]), "{plain}");
    let wider = query(
        &client,
        ours,
        &[
            ("query", "temp_celsius"),
            ("time", &later),
            ("lookback_delta", "5m"),
        ],
    )
    .await;
    assert_eq!(
        wider["data"]["result"].as_array().unwrap().len(),
        3,
        "{wider}"
    );
}
