//! The query API of `axi-alert run` against a real Prometheus 3 given the same configuration
//! (one scrape job of constant gauges, one recording rule): the same instant and range queries
//! at the same times give the same answers, the metadata endpoints list the same series,
//! labels and values, bad requests get the same status, error type and (for parameter errors)
//! message, and `promtool query`, a Go client of the API, prints the same for both.
//!
//! Needs the `prometheus` and `promtool` peers (scripts/install-peers.sh); without them the
//! test prints a notice and skips, and fails when `AXI_REQUIRE_PEERS=1`.

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
      - alert: TooHot
        expr: room:temp:max > 25
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.room }} is at {{ $value }}"
      - alert: HotForAnHour
        expr: room:temp:max  >  25
        for: 1h
        keep_firing_for: 5m
      - record: sensor:renamed
        expr: label_replace(temp_celsius, "sensor", "x", "", "")
        labels:
          team: facilities
"#;

const TARGET: &str = "# HELP temp_celsius Room temperature \\\\ one sensor,\\nin degrees.\n# TYPE temp_celsius gauge\n# HELP doors_opened_total Doors opened.\ntemp_celsius{room=\"lab\",sensor=\"1\"} 31.5\ntemp_celsius{room=\"lab\",sensor=\"2\"} 30\ntemp_celsius{room=\"office\",sensor=\"3\"} 21\n# TYPE doors_opened_total counter\ndoors_opened_total{door=\"front\"} 7\n";

/// `(status, body)` of a GET on `port` with `params` (form-encoded into the query string).
async fn get(
    client: &reqwest::Client,
    port: u16,
    path: &str,
    params: &[(&str, &str)],
) -> (u16, Value) {
    let r = client
        .get(format!("http://127.0.0.1:{port}{path}?{}", encode(params)))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (status, body)
}

/// An instant vector's samples, and `/api/v1/series`'s label sets, in label order:
/// Prometheus leaves an aggregation's output in its groups' first-seen order (only `sort` and
/// range answers promise one) and the series of a single `match[]` in the order they were
/// created; ours sorts both.
fn unordered((status, mut body): (u16, Value)) -> (u16, Value) {
    if body["data"]["resultType"] == "vector"
        && let Some(items) = body["data"]["result"].as_array_mut()
    {
        items.sort_by_key(|s| s["metric"].to_string());
    }
    if let Some(items) = body.get_mut("data").and_then(Value::as_array_mut)
        && items.iter().all(Value::is_object)
    {
        items.sort_by_key(Value::to_string);
    }
    (status, body)
}

fn encode(params: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_api_answers_as_prometheus_does() {
    let Some(prometheus) = axi_obs_core::testing::peer("prometheus") else {
        return;
    };
    let Some(promtool_bin) = axi_obs_core::testing::peer("promtool") else {
        return;
    };
    let target = serve_metrics(TARGET).await;
    // A second job whose target does not answer (nothing listens on its port).
    let nobody = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: sensors\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n        labels: {{site: plant-1, instance: lab-sensors, __param_module: basic}}\n  - job_name: gone\n    scrape_interval: 2s\n    scrape_timeout: 1500ms\n    metrics_path: /probe\n    static_configs:\n      - targets: ['localhost:{nobody}']\n"
    );
    let (dir, config_path) = common::run_dir(&[("rules.yml", RULES)], &config);
    let (_prom, prom) = start_prometheus(&prometheus, &config_path, dir.path());
    let ours = free_port();
    let _ours = start_run(&config_path, ours, ["--retention", "1h"]);
    let client = reqwest::Client::new();

    // Both are ready (Prometheus answers 503 in plain text until then), have scraped both
    // targets and have evaluated the rule.
    for (who, port) in [("Prometheus", prom), ("axi-alert run", ours)] {
        poll(who, Duration::from_secs(60), async || {
            let r = client
                .get(format!("http://127.0.0.1:{port}/-/ready"))
                .send()
                .await
                .ok()?;
            if !r.status().is_success() {
                return None;
            }
            let (status, body) = get(
                &client,
                port,
                "/api/v1/query",
                &[(
                    "query",
                    "count(room:temp:max) + count(temp_celsius) + count(up)",
                )],
            )
            .await;
            (status == 200 && body["data"]["result"][0]["value"][1] == "7").then_some(())
        })
        .await;
    }
    let first = now_ms();
    // A few more scrapes, so that a range from `first` on is covered on both sides.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let t = secs(now_ms() - 500);
    let start = secs(first);

    // Instant queries at one time: the same answers, timestamps included.
    for q in [
        "temp_celsius",
        "max by (room) (temp_celsius)",
        "temp_celsius > 25",
        "sum(temp_celsius) / count(temp_celsius)",
        "room:temp:max",
        "up",
        "count by (__name__) ({job=\"sensors\"})",
        "doors_opened_total",
        "absent(nothing_here)",
        "1 + 1",
        "\"text\"",
        "nothing_here",
    ] {
        let params = [("query", q), ("time", t.as_str())];
        let theirs = unordered(get(&client, prom, "/api/v1/query", &params).await);
        let mine = unordered(get(&client, ours, "/api/v1/query", &params).await);
        assert_eq!(theirs.0, 200, "{q}: {theirs:?}");
        assert_eq!(mine, theirs, "instant query {q}");
    }
    // By POST with a form body, as Grafana sends them (the media type in any case).
    for (path, form) in [
        (
            "/api/v1/query",
            vec![
                ("query", "max by (room) (temp_celsius)"),
                ("time", t.as_str()),
            ],
        ),
        (
            "/api/v1/series",
            vec![("match[]", "temp_celsius"), ("match[]", "up")],
        ),
    ] {
        let mut posted = Vec::new();
        for port in [prom, ours] {
            let r = client
                .post(format!("http://127.0.0.1:{port}{path}"))
                .header("content-type", "Application/X-WWW-Form-Urlencoded")
                .body(encode(&form))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            posted.push(unordered((status, body)));
        }
        assert_eq!(posted[0].0, 200, "{path}: {:?}", posted[0]);
        assert_eq!(posted[1], posted[0], "POST {path}");
    }

    // Range queries over a window both have data for.
    for q in [
        "max by (room) (temp_celsius)",
        "room:temp:max",
        "sum(temp_celsius)",
        "up",
        "time() - time()",
    ] {
        let params = [
            ("query", q),
            ("start", start.as_str()),
            ("end", t.as_str()),
            ("step", "1"),
        ];
        let theirs = get(&client, prom, "/api/v1/query_range", &params).await;
        let mine = get(&client, ours, "/api/v1/query_range", &params).await;
        assert_eq!(theirs.0, 200, "{q}: {theirs:?}");
        assert_eq!(mine, theirs, "range query {q}");
    }

    // The metadata endpoints.
    let window = [("start", start.as_str()), ("end", t.as_str())];
    for (path, params) in [
        ("/api/v1/series", vec![("match[]", "temp_celsius")]),
        (
            "/api/v1/series",
            vec![("match[]", "{room=\"lab\"}"), ("match[]", "up")],
        ),
        ("/api/v1/labels", vec![]),
        ("/api/v1/labels", vec![("match[]", "doors_opened_total")]),
        ("/api/v1/label/__name__/values", vec![]),
        ("/api/v1/label/room/values", vec![]),
        (
            "/api/v1/label/sensor/values",
            vec![("match[]", "temp_celsius{room=\"lab\"}")],
        ),
        ("/api/v1/label/nobody/values", vec![]),
        // Without `start` and `end`: all time.
        ("/api/v1/label/room/values", vec![("start", "")]),
        ("/api/v1/series", vec![("match[]", "up"), ("start", "")]),
    ] {
        let mut params = params;
        if params.iter().any(|(k, _)| *k == "start") {
            params.retain(|(k, _)| *k != "start");
        } else {
            params.extend(window);
        }
        let theirs = unordered(get(&client, prom, path, &params).await);
        let mine = unordered(get(&client, ours, path, &params).await);
        assert_eq!(theirs.0, 200, "{path} {params:?}: {theirs:?}");
        assert_eq!(mine, theirs, "{path} {params:?}");
    }

    // Bad requests: the same status and error type; for parameter errors the same message.
    let (a, b) = (start.as_str(), t.as_str());
    // (path, parameters, whether the message is Prometheus's too: parse errors word
    // differently, promql-parser's against Prometheus's own parser).
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, bool);
    let cases: Vec<Case<'_>> = vec![
        (
            "/api/v1/query",
            vec![("query", "up"), ("time", "yesterday")],
            true,
        ),
        (
            "/api/v1/query",
            vec![("query", "up"), ("timeout", "soon")],
            true,
        ),
        ("/api/v1/query", vec![("query", "rate(up[5m]")], false),
        ("/api/v1/query", vec![], false),
        (
            "/api/v1/query",
            vec![
                (
                    "query",
                    "label_replace(temp_celsius, \"sensor\", \"x\", \"\", \"\")",
                ),
                ("time", b),
            ],
            true,
        ),
        (
            "/api/v1/query_range",
            vec![("query", "up"), ("end", b), ("step", "1")],
            true,
        ),
        (
            "/api/v1/query_range",
            vec![("query", "up"), ("start", b), ("end", a), ("step", "1")],
            true,
        ),
        (
            "/api/v1/query_range",
            vec![("query", "up"), ("start", a), ("end", b), ("step", "0")],
            true,
        ),
        (
            "/api/v1/query_range",
            vec![("query", "up"), ("start", a), ("end", b), ("step", "later")],
            true,
        ),
        (
            "/api/v1/query_range",
            vec![("query", "up"), ("start", "0"), ("end", b), ("step", "1")],
            true,
        ),
        ("/api/v1/series", vec![], true),
        ("/api/v1/series", vec![("match[]", "{job=~\".*\"}")], true),
        ("/api/v1/series", vec![("match[]", "up{")], false),
        ("/api/v1/labels", vec![("start", "never")], true),
    ];
    for (path, params, same_message) in cases {
        let theirs = get(&client, prom, path, &params).await;
        let mine = get(&client, ours, path, &params).await;
        assert_ne!(theirs.0, 200, "{path} {params:?}: {theirs:?}");
        assert_eq!(
            (mine.0, &mine.1["status"], &mine.1["errorType"]),
            (theirs.0, &theirs.1["status"], &theirs.1["errorType"]),
            "{path} {params:?}: ours {mine:?}, Prometheus {theirs:?}"
        );
        if same_message {
            assert_eq!(mine.1["error"], theirs.1["error"], "{path} {params:?}");
        } else {
            let text = mine.1["error"].as_str().unwrap();
            let param = if path == "/api/v1/series" {
                "match[]"
            } else {
                "query"
            };
            assert!(
                text.starts_with(&format!("invalid parameter \"{param}\": ")),
                "{path} {params:?}: {text}"
            );
        }
    }

    // `limit` (series, label names or values past it left out, with Prometheus's warning;
    // scalars untouched), a query's own `lookback_delta`, exemplars (none on either side),
    // the query formatter, and their parameter errors.
    let far_later = secs(now_ms() + 20 * 60_000);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        // Prometheus keeps the first series in its storage's order, the order they were
        // created in: the target exposes them in label order, so both keep the same two.
        (
            "/api/v1/query",
            vec![("query", "temp_celsius"), ("time", b), ("limit", "2")],
        ),
        (
            "/api/v1/query",
            vec![("query", "temp_celsius"), ("time", b), ("limit", "3")],
        ),
        (
            "/api/v1/query",
            vec![("query", "temp_celsius"), ("time", b), ("limit", "0")],
        ),
        (
            "/api/v1/query",
            vec![("query", "1 + 1"), ("time", b), ("limit", "1")],
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "temp_celsius"),
                ("start", a),
                ("end", b),
                ("step", "1"),
                ("limit", "1"),
            ],
        ),
        // 20 minutes on, the default 5-minute lookback finds nothing; an hour's finds the
        // latest samples. Zero or negative: the server's.
        (
            "/api/v1/query",
            vec![("query", "temp_celsius"), ("time", &far_later)],
        ),
        (
            "/api/v1/query",
            vec![
                ("query", "temp_celsius"),
                ("time", &far_later),
                ("lookback_delta", "1h"),
            ],
        ),
        (
            "/api/v1/query",
            vec![("query", "up"), ("time", b), ("lookback_delta", "-5")],
        ),
        (
            "/api/v1/query_exemplars",
            vec![("query", "temp_celsius"), ("start", a), ("end", b)],
        ),
        ("/api/v1/query_exemplars", vec![("query", "up")]),
        // Prometheus's own text of its earliest and latest times, which clients send for
        // "all time".
        (
            "/api/v1/labels",
            vec![
                ("start", "-292273086-05-16T16:47:06Z"),
                ("end", "292277025-08-18T07:12:54.999999999Z"),
            ],
        ),
        (
            "/api/v1/query",
            vec![
                ("query", "temp_celsius"),
                ("time", "292277025-08-18T07:12:54.999999999Z"),
            ],
        ),
        // Formatted though this engine does not evaluate native histograms.
        (
            "/api/v1/format_query",
            vec![("query", "histogram_count(rate(x[5m]))")],
        ),
        ("/api/v1/format_query", vec![("query", "sum(up)by(job)")]),
        (
            "/api/v1/format_query",
            vec![(
                "query",
                "sum without(instance)(rate(node_cpu_seconds_total{mode!=\"idle\",instance=~\"web-.*\"}[5m])) / on(job) group_left(team) count by(job,team)(node_cpu_seconds_total{mode=\"idle\"}) * 100 > 80",
            )],
        ),
        (
            "/api/v1/format_query",
            vec![(
                "query",
                "max_over_time((rate(x[1m]) > bool 0)[10m:] offset 5m)",
            )],
        ),
    ];
    for (path, params) in cases {
        let theirs = unordered(get(&client, prom, path, &params).await);
        let mine = unordered(get(&client, ours, path, &params).await);
        assert_eq!(theirs.0, 200, "{path} {params:?}: {theirs:?}");
        assert_eq!(mine, theirs, "{path} {params:?}");
    }
    // The metadata endpoints under a limit: Prometheus's index hands out a limited list in
    // its own order (label values in map order), so which ones are kept differs; the count
    // and the warning do not. Ours keeps the first of its sorted answer.
    for (path, params) in [
        ("/api/v1/labels", vec![("limit", "2")]),
        ("/api/v1/label/__name__/values", vec![("limit", "1")]),
        (
            "/api/v1/series",
            vec![
                ("match[]", "temp_celsius"),
                ("match[]", "up"),
                ("limit", "+2"),
            ],
        ),
    ] {
        let theirs = get(&client, prom, path, &params).await;
        let mine = get(&client, ours, path, &params).await;
        assert_eq!(theirs.0, 200, "{path} {params:?}: {theirs:?}");
        let count = |v: &Value| v["data"].as_array().map(Vec::len);
        assert_eq!(
            (mine.0, count(&mine.1), &mine.1["warnings"]),
            (theirs.0, count(&theirs.1), &theirs.1["warnings"]),
            "{path} {params:?}: ours {mine:?}, Prometheus {theirs:?}"
        );
        let unlimited: Vec<(&str, &str)> = params
            .iter()
            .copied()
            .filter(|(k, _)| *k != "limit")
            .collect();
        let all = get(&client, ours, path, &unlimited).await;
        let n = count(&mine.1).unwrap();
        assert_eq!(
            mine.1["data"].as_array().unwrap()[..],
            all.1["data"].as_array().unwrap()[..n],
            "{path} {params:?}"
        );
    }
    for (path, params, same_message) in [
        (
            "/api/v1/query",
            vec![("query", "up"), ("limit", "-1")],
            true,
        ),
        ("/api/v1/labels", vec![("limit", "ten")], true),
        (
            "/api/v1/label/room/values",
            vec![("limit", "99999999999999999999")],
            true,
        ),
        (
            "/api/v1/query",
            vec![("query", "up"), ("lookback_delta", "soon")],
            true,
        ),
        (
            "/api/v1/query_exemplars",
            vec![("query", "up"), ("start", b), ("end", a)],
            true,
        ),
        (
            "/api/v1/query_exemplars",
            vec![("query", "up"), ("start", "never")],
            true,
        ),
        ("/api/v1/query_exemplars", vec![("query", "up{")], false),
        ("/api/v1/format_query", vec![("query", "up{")], false),
        // Refused by Prometheus without feature flags, though only formatted.
        (
            "/api/v1/format_query",
            vec![("query", "up{a=\"b\" or c=\"d\"}")],
            false,
        ),
        // Several bad parameters: the same one named, as Prometheus checks them in order.
        (
            "/api/v1/query",
            vec![("query", "up{"), ("time", "never"), ("limit", "-1")],
            true,
        ),
        (
            "/api/v1/query",
            vec![("query", "up{"), ("lookback_delta", "soon")],
            true,
        ),
        (
            "/api/v1/query_range",
            vec![("query", "up"), ("start", "never"), ("limit", "x")],
            true,
        ),
        (
            "/api/v1/labels",
            vec![("start", "never"), ("match[]", "up{"), ("limit", "-2")],
            true,
        ),
    ] {
        let theirs = get(&client, prom, path, &params).await;
        let mine = get(&client, ours, path, &params).await;
        assert_eq!(theirs.0, 400, "{path} {params:?}: {theirs:?}");
        assert_eq!(
            (mine.0, &mine.1["errorType"]),
            (theirs.0, &theirs.1["errorType"]),
            "{path} {params:?}: ours {mine:?}, Prometheus {theirs:?}"
        );
        if same_message {
            assert_eq!(mine.1["error"], theirs.1["error"], "{path} {params:?}");
        }
    }
    // Forms Go cannot decode (a bad escape, a `;`): the pair is left out, and the request
    // refused where Prometheus refuses it (series, rules), with the same words.
    for (raw, same_body) in [
        (format!("/api/v1/query?query=up&time={b}&x=%zz"), true),
        (format!("/api/v1/query?query=up&time={b}&x=1;y=2"), true),
        ("/api/v1/query?query=up%zz".to_owned(), false),
        ("/api/v1/series?match[]=up&x=%zz".to_owned(), true),
        ("/api/v1/series?match[]=up&x=%z".to_owned(), true),
        ("/api/v1/rules?type=alert&x=%g0".to_owned(), true),
        ("/api/v1/labels?x=%zz".to_owned(), true),
    ] {
        let mut answers = Vec::new();
        for port in [prom, ours] {
            let r = client
                .get(format!("http://127.0.0.1:{port}{raw}"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            // `up` of two targets: Prometheus answers in the order their series were made.
            answers.push(unordered((status, body)));
        }
        let (theirs, mine) = (&answers[0], &answers[1]);
        if same_body {
            if raw.starts_with("/api/v1/rules") {
                assert_eq!(theirs.0, 400, "{raw}: {theirs:?}");
            }
            if theirs.0 == 200 && raw.starts_with("/api/v1/labels") {
                // Label names over all time: compared above; here the status.
                assert_eq!(mine.0, 200, "{raw}: {mine:?}");
            } else {
                assert_eq!(mine, theirs, "{raw}");
            }
        } else {
            assert_eq!(
                (mine.0, &mine.1["errorType"]),
                (theirs.0, &theirs.1["errorType"]),
                "{raw}: ours {mine:?}, Prometheus {theirs:?}"
            );
        }
    }

    // Exemplars of a query without a selector: 204 No Content from both.
    for port in [prom, ours] {
        let r = client
            .get(format!(
                "http://127.0.0.1:{port}/api/v1/query_exemplars?query=vector(1)"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204, "port {port}");
        assert_eq!(r.text().await.unwrap(), "", "port {port}");
    }
    // Build information: Prometheus's fields, the API's release, and who answers.
    let theirs = get(&client, prom, "/api/v1/status/buildinfo", &[]).await;
    let mine = get(&client, ours, "/api/v1/status/buildinfo", &[]).await;
    let keys = |v: &Value| {
        let mut k: Vec<String> = v["data"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!((mine.0, keys(&mine.1)), (theirs.0, keys(&theirs.1)));
    assert!(
        theirs.1["data"]["version"]
            .as_str()
            .unwrap()
            .starts_with("3."),
        "{theirs:?}"
    );
    assert_eq!(mine.1["data"]["version"], "3.5.0");

    // The rules, their health, last errors, states and alerts; the times of evaluation
    // differ between the two and are checked for their shape only.
    for params in [
        vec![],
        vec![("type", "alert")],
        vec![("type", "record"), ("match[]", "{team=\"facilities\"}")],
        vec![("rule_name[]", "TooHot"), ("exclude_alerts", "true")],
        vec![("rule_group[]", "elsewhere")],
    ] {
        let theirs = get(&client, prom, "/api/v1/rules", &params).await;
        let mine = get(&client, ours, "/api/v1/rules", &params).await;
        assert_eq!(theirs.0, 200, "{params:?}: {theirs:?}");
        assert_eq!(
            rules_without_times(mine),
            rules_without_times(theirs),
            "/api/v1/rules {params:?}"
        );
    }
    for params in [vec![("type", "alerts")], vec![("exclude_alerts", "maybe")]] {
        let theirs = get(&client, prom, "/api/v1/rules", &params).await;
        let mine = get(&client, ours, "/api/v1/rules", &params).await;
        assert_eq!(theirs.0, 400, "{params:?}: {theirs:?}");
        assert_eq!(mine, theirs, "/api/v1/rules {params:?}");
    }

    // The targets (a static `instance` renaming one, a `__param_` in its URL), their labels,
    // URLs and health; when and how long the last scrape took
    // differ between the two and are checked for their shape, the last error of the target
    // that does not answer for being there (the words are Go's or reqwest's).
    for params in [
        vec![],
        vec![("state", "active")],
        vec![("state", "dropped")],
        vec![("scrapePool", "gone")],
    ] {
        let theirs = targets_without_times(get(&client, prom, "/api/v1/targets", &params).await);
        let mine = targets_without_times(get(&client, ours, "/api/v1/targets", &params).await);
        assert_eq!(theirs.0, 200, "{params:?}: {theirs:?}");
        assert_eq!(mine, theirs, "/api/v1/targets {params:?}");
    }

    // A reload that leaves the scrape configuration alone leaves the targets alone: their
    // health, last scrape and metadata are still there right after it.
    common::reload(&client, ours).await;
    let after = get(&client, ours, "/api/v1/targets", &[]).await;
    for t in after.1["data"]["activeTargets"].as_array().unwrap() {
        assert_ne!(t["health"], "unknown", "{t}");
        assert_ne!(t["lastScrape"], "0001-01-01T00:00:00Z", "{t}");
    }
    let meta = get(&client, ours, "/api/v1/metadata", &[]).await;
    assert!(meta.1["data"]["temp_celsius"].is_array(), "{meta:?}");

    // The metric families' TYPE and HELP (Prometheus keeps no more than one list per
    // family here, so `limit` gives the same family count, not necessarily the same one).
    for params in [
        vec![],
        vec![("metric", "temp_celsius")],
        vec![("metric", "nothing_here")],
        vec![("limit_per_metric", "1")],
    ] {
        let theirs = get(&client, prom, "/api/v1/metadata", &params).await;
        let mine = get(&client, ours, "/api/v1/metadata", &params).await;
        assert_eq!(theirs.0, 200, "{params:?}: {theirs:?}");
        if params.is_empty() {
            assert_eq!(
                theirs.1["data"]["temp_celsius"][0]["help"],
                "Room temperature \\ one sensor,\nin degrees.",
                "{theirs:?}"
            );
        }
        assert_eq!(mine, theirs, "/api/v1/metadata {params:?}");
    }
    let theirs = get(&client, prom, "/api/v1/metadata", &[("limit", "1")]).await;
    let mine = get(&client, ours, "/api/v1/metadata", &[("limit", "1")]).await;
    assert_eq!(
        mine.1["data"].as_object().unwrap().len(),
        theirs.1["data"].as_object().unwrap().len()
    );
    for bad in [("limit", "x"), ("limit_per_metric", "y")] {
        let theirs = get(&client, prom, "/api/v1/metadata", &[bad]).await;
        let mine = get(&client, ours, "/api/v1/metadata", &[bad]).await;
        assert_eq!(theirs.0, 400, "{bad:?}: {theirs:?}");
        assert_eq!(mine, theirs, "/api/v1/metadata {bad:?}");
    }

    // Ours alone (Prometheus's answers there are its own edge cases: its time arithmetic
    // overflows and a range from -1e300 to 1e300 gets one point at 0). Times far outside
    // any range are taken as the API's limits, so nothing overflows; a time far in the
    // future is answered; a query that would run for long stops at its timeout.
    let wide = get(
        &client,
        ours,
        "/api/v1/query_range",
        &[
            ("query", "1"),
            ("start", "-1e300"),
            ("end", "1e300"),
            ("step", "1e9"),
        ],
    )
    .await;
    assert_eq!(wide.0, 400, "{wide:?}");
    assert!(
        wide.1["error"]
            .as_str()
            .unwrap()
            .starts_with("exceeded maximum resolution of 11,000 points"),
        "{wide:?}"
    );
    let far = get(
        &client,
        ours,
        "/api/v1/query",
        &[
            ("query", "count_over_time(vector(1)[1m:1s])"),
            ("time", "1e300"),
        ],
    )
    .await;
    assert_eq!(far.0, 200, "{far:?}");
    assert_eq!(far.1["data"]["result"][0]["value"][1], "60", "{far:?}");
    let started = std::time::Instant::now();
    let long = get(
        &client,
        ours,
        "/api/v1/query",
        &[
            ("query", "count_over_time(vector(1)[3y:1ms])"),
            ("timeout", "200ms"),
        ],
    )
    .await;
    assert_eq!(
        (long.0, &long.1["errorType"]),
        (503, &Value::from("timeout")),
        "{long:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // promtool, a Go client of the API, reads both alike.
    let time_arg = format!("--time={t}");
    let (start_arg, end_arg) = (format!("--start={start}"), format!("--end={t}"));
    let series_match = "--match=temp_celsius{room=\"lab\"}";
    let mut calls: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
    for expr in ["max by (room) (temp_celsius)", "scalar(sum(up))"] {
        calls.push((vec!["instant", &time_arg], vec![expr]));
        calls.push((vec!["range", &start_arg, &end_arg, "--step=2s"], vec![expr]));
    }
    calls.push((vec!["series", series_match, &start_arg, &end_arg], vec![]));
    calls.push((vec!["labels", &start_arg, &end_arg], vec!["room"]));
    for (flags, args) in calls {
        let theirs = promtool(&promtool_bin, prom, &flags, &args);
        let mine = promtool(&promtool_bin, ours, &flags, &args);
        assert!(!theirs.trim().is_empty(), "{flags:?} {args:?}");
        assert_eq!(mine, theirs, "promtool query {flags:?} {args:?}");
    }
}

/// An `/api/v1/rules` answer with each `evaluationTime`, `lastEvaluation` and `activeAt`
/// checked for its type and removed, and alerts in label order.
fn rules_without_times((status, mut body): (u16, Value)) -> (u16, Value) {
    fn strip(obj: &mut Value, keys: &[&str]) {
        for k in keys {
            let v = obj
                .as_object_mut()
                .and_then(|o| o.remove(*k))
                .unwrap_or_else(|| panic!("no {k} in {obj}"));
            match *k {
                "evaluationTime" => assert!(v.is_f64() || v.is_u64(), "{k}: {v}"),
                _ => assert!(
                    v.as_str()
                        .is_some_and(|s| s.len() >= 20 && s.ends_with('Z')),
                    "{k}: {v}"
                ),
            }
        }
    }
    let times = ["evaluationTime", "lastEvaluation"];
    let groups = body
        .pointer_mut("/data/groups")
        .and_then(Value::as_array_mut);
    for g in groups.into_iter().flatten() {
        strip(g, &times);
        let rules = g.get_mut("rules").and_then(Value::as_array_mut);
        for r in rules.into_iter().flatten() {
            strip(r, &times);
            if let Some(alerts) = r.get_mut("alerts").and_then(Value::as_array_mut) {
                for a in alerts.iter_mut() {
                    strip(a, &["activeAt"]);
                }
                alerts.sort_by_key(|a| a["labels"].to_string());
            }
        }
    }
    (status, body)
}

/// An `/api/v1/targets` answer with `lastScrape` and `lastScrapeDuration` checked for their
/// type and removed, and `lastError` replaced by whether there is one.
fn targets_without_times((status, mut body): (u16, Value)) -> (u16, Value) {
    let targets = body
        .pointer_mut("/data/activeTargets")
        .and_then(Value::as_array_mut);
    for t in targets.into_iter().flatten() {
        let o = t.as_object_mut().unwrap();
        let last = o.remove("lastScrape").unwrap();
        assert!(last.as_str().is_some_and(|s| s.ends_with('Z')), "{last}");
        assert!(o.remove("lastScrapeDuration").unwrap().is_number());
        let error = o.remove("lastError").unwrap();
        o.insert(
            "lastError".into(),
            Value::from(!error.as_str().unwrap().is_empty()),
        );
    }
    (status, body)
}

/// `promtool query SUBCOMMAND FLAGS... URL ARGS...` against `port`: its output.
fn promtool(bin: &std::path::Path, port: u16, flags: &[&str], args: &[&str]) -> String {
    let out = std::process::Command::new(bin)
        .arg("query")
        .args(flags)
        .arg(format!("http://127.0.0.1:{port}"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool query {flags:?} {args:?} on {port}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
