//! Property tests: the rule loader, the PromQL parser and evaluator, and the sample-file
//! reader never panic, whatever they are given. Errors are fine; panics are bugs.

use std::path::Path;

use axi_obs_alert::promql::{Engine, Labels, MemStorage, parse};
use proptest::prelude::*;

fn store() -> MemStorage {
    let mut s = MemStorage::new();
    for (i, job) in ["a", "b", "c"].iter().enumerate() {
        for inst in 0..3 {
            let ls = Labels::from_pairs([
                ("__name__", "m".to_owned()),
                ("job", (*job).to_owned()),
                ("instance", inst.to_string()),
            ]);
            let hs = Labels::from_pairs([
                ("__name__", "h_bucket".to_owned()),
                ("job", (*job).to_owned()),
                ("le", ["0.1", "1", "+Inf"][inst].to_owned()),
            ]);
            for t in 0..40 {
                let v = match (t + i) % 7 {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    2 => -0.0,
                    3 => axi_obs_alert::promql::value::stale_nan(),
                    _ => (t * (inst + 1)) as f64,
                };
                s.add(&ls, t as i64 * 15_000, v);
                s.add(&hs, t as i64 * 15_000, (t * (inst + 1)) as f64);
            }
        }
    }
    s
}

/// Expressions from a small grammar that reaches every node type, with hostile numbers.
fn expr() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("1e308".to_owned()),
        Just("-1e308".to_owned()),
        Just("NaN".to_owned()),
        Just("Inf".to_owned()),
        Just("0.5".to_owned()),
        Just("9223372036854775807".to_owned()),
        (0u32..1000).prop_map(|n| n.to_string()),
    ];
    let selector = prop_oneof![
        Just("m".to_owned()),
        Just("m{job=\"a\"}".to_owned()),
        Just("m{job=~\"a|b\",instance!=\"1\"}".to_owned()),
        Just("h_bucket".to_owned()),
        Just("{__name__=~\".+\"}".to_owned()),
        Just("nothing".to_owned()),
        Just("m offset 1m".to_owned()),
        Just("m offset -5m".to_owned()),
        Just("m @ 100".to_owned()),
        Just("m @ 9999999999".to_owned()),
        Just("m @ -9999999999".to_owned()),
    ];
    let range = prop_oneof![
        Just("[1m]".to_owned()),
        Just("[5m]".to_owned()),
        Just("[1ms]".to_owned()),
        Just("[100y]".to_owned()),
        Just("[5m:1m]".to_owned()),
        Just("[1h:]".to_owned()),
        Just("[1m:1ms]".to_owned()),
    ];
    let leaf = prop_oneof![number.clone(), selector.clone()];
    leaf.prop_recursive(4, 32, 3, move |inner| {
        let range = range.clone();
        let number = number.clone();
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec![
                    "+", "-", "*", "/", "%", "^", "atan2", "==", "!=", ">", "<", ">=", "<=",
                    "> bool", "and", "or", "unless"
                ]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a}) {op} ({b})")),
            (
                inner.clone(),
                prop::sample::select(vec![
                    "on(job)",
                    "ignoring(instance)",
                    "on(job) group_left(instance)",
                    "on() group_right"
                ]),
                inner.clone()
            )
                .prop_map(|(a, m, b)| format!("({a}) * {m} ({b})")),
            (
                prop::sample::select(vec![
                    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group"
                ]),
                inner.clone()
            )
                .prop_map(|(agg, a)| format!("{agg} by (job) ({a})")),
            (
                prop::sample::select(vec!["topk", "bottomk", "quantile"]),
                number.clone(),
                inner.clone()
            )
                .prop_map(|(agg, k, a)| format!("{agg}({k}, {a})")),
            inner
                .clone()
                .prop_map(|a| format!("count_values(\"v\", {a})")),
            (
                prop::sample::select(vec![
                    "abs",
                    "ceil",
                    "floor",
                    "exp",
                    "ln",
                    "sqrt",
                    "sgn",
                    "round",
                    "timestamp",
                    "absent",
                    "sort",
                    "sort_desc",
                    "hour",
                    "month",
                    "year",
                    "days_in_month",
                    "deg",
                    "acosh",
                    "scalar",
                    "-"
                ]),
                inner.clone()
            )
                .prop_map(|(f, a)| if f == "-" {
                    format!("-({a})")
                } else {
                    format!("{f}({a})")
                }),
            (
                prop::sample::select(vec![
                    "rate",
                    "irate",
                    "increase",
                    "delta",
                    "idelta",
                    "deriv",
                    "resets",
                    "changes",
                    "avg_over_time",
                    "sum_over_time",
                    "count_over_time",
                    "stddev_over_time",
                    "last_over_time",
                    "present_over_time",
                    "absent_over_time",
                    "max_over_time"
                ]),
                selector.clone(),
                range.clone()
            )
                .prop_map(|(f, s, r)| format!("{f}({s}{r})")),
            (selector.clone(), range).prop_map(|(s, r)| format!("quantile_over_time(0.9, {s}{r})")),
            (number.clone(), inner.clone())
                .prop_map(|(q, a)| format!("histogram_quantile({q}, {a})")),
            (number.clone(), inner.clone())
                .prop_map(|(n, a)| format!("predict_linear(m[5m], {n}) + ({a})")),
            (number.clone(), number, inner.clone())
                .prop_map(|(a, b, x)| format!("clamp({x}, {a}, {b})")),
            inner.clone().prop_map(|a| format!(
                "label_replace({a}, \"dst\", \"$1-$2\", \"job\", \"(.)(.*)\")"
            )),
            inner
                .clone()
                .prop_map(|a| format!("label_join({a}, \"dst\", \",\", \"job\", \"instance\")")),
            inner.clone().prop_map(|a| format!("vector(scalar({a}))")),
            inner.prop_map(|a| format!("max_over_time(({a})[10m:1m])")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_evaluator_never_panics(q in expr(), t in prop_oneof![Just(0i64), Just(300_000), Just(599_000), Just(-1), Just(i64::MAX / 4)]) {
        let s = store();
        let engine = Engine::default().max_samples(200_000);
        if let Ok(e) = parse(&q) {
            let _ = engine.instant(&s, &e, t);
            let _ = engine.range(&s, &e, 0, 600_000, 60_000);
        }
    }

    #[test]
    fn the_parser_never_panics(q in "\\PC{0,60}") {
        let _ = parse(&q);
    }

    #[test]
    fn the_rule_loader_never_panics(text in "(groups:|  - name: g|    rules:|      - alert: A|        expr: [a-z( )+*]{0,12}|        for: [0-9a-z]{0,4}|        labels: \\{a: b\\}|        annotations: \\{s: '\\{\\{ [$.a-z]{0,8} \\}\\}'\\}|      - record: r|\\PC{0,10})(\n(groups:|  - name: g|    rules:|      - alert: A|        expr: [a-z( )+*]{0,12}|        for: [0-9a-z]{0,4}|        labels: \\{a: b\\}|        annotations: \\{s: '\\{\\{ [$.a-z]{0,8} \\}\\}'\\}|      - record: r|\\PC{0,10})){0,10}") {
        let _ = axi_obs_alert::rules::parse(&text, Path::new("fuzz.yml"));
    }

    #[test]
    fn the_sample_file_reader_never_panics(text in "(load [0-9a-z]{0,3}|  [a-z{}=\", ]{0,12} [0-9+x_ -]{0,12}|eval instant at [0-9a-z]{0,3} [a-z()]{0,8}|\\PC{0,20})(\n(load [0-9a-z]{0,3}|  [a-z{}=\", ]{0,12} [0-9+x_ -]{0,12}|\\PC{0,20})){0,8}") {
        let _ = axi_obs_alert::promqltest::load_storage(&text);
        let _ = axi_obs_alert::promqltest::run_str("fuzz.test", &text);
    }

    #[test]
    fn templates_never_panic(text in "(\\{\\{|\\}\\}|\\{\\{-|-\\}\\}| |\\$labels|\\$value|\\.|\\||printf|\"%d\"|range|end|if|else|humanize|[a-z]{1,4}|\\(|\\)|:=|\\$x){0,24}") {
        let _ = axi_obs_alert::template::check("__alert_fuzz", &text);
        let labels = std::collections::BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        let env = axi_obs_alert::template::Env::new("http://x", 0);
        let _ = axi_obs_alert::template::expand_alert("__alert_fuzz", &text, &labels, &labels, "http://x", 1.5, &env);
    }
}
