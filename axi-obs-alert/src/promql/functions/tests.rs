//! Unit tests, with expectations from Prometheus's promqltest files.

use promql_parser::parser::{Call, Expr};

use super::*;
use crate::promql::value::Point;

const MIN: i64 = 60_000;

fn parse_call(q: &str) -> Call {
    match promql_parser::parser::parse(q).expect("query parses") {
        Expr::Call(c) => c,
        other => panic!("not a call: {other:?}"),
    }
}

fn run(q: &str, t: i64, args: Vec<Arg<'_>>) -> Result<Value> {
    let c = parse_call(q);
    call(&CallCtx { t, call: &c }, args)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// A series with `values` every `step` ms from time 0 (NaN placeholders skipped with `None`).
fn series(ls: &[(&str, &str)], step: i64, values: &[f64]) -> Series {
    Series {
        labels: labels(ls),
        points: values
            .iter()
            .enumerate()
            .map(|(i, &v)| Point {
                t: i as i64 * step,
                v,
            })
            .collect(),
    }
}

/// `a+bxn` as promqltest expands it: n+1 values.
fn seq(a: f64, b: f64, n: usize) -> Vec<f64> {
    (0..=n).map(|i| a + b * i as f64).collect()
}

/// The range argument `x[range]` at `t`: the points in `(t - range, t]`.
fn window(all: &[Series], t: i64, range: i64) -> Arg<'static> {
    let start = t - range;
    Arg::Range(RangeArg {
        series: Windows::Owned(
            all.iter()
                .map(|s| Series {
                    labels: s.labels.clone(),
                    points: s
                        .points
                        .iter()
                        .copied()
                        .filter(|p| p.t > start && p.t <= t)
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect(),
        ),
        start,
        end: t,
    })
}

/// The instant vector of `all` at `t` (latest point within 5 m).
fn instant(all: &[Series], t: i64) -> Arg<'static> {
    Arg::Vector(
        all.iter()
            .filter_map(|s| {
                let p = s
                    .points
                    .iter()
                    .rev()
                    .find(|p| p.t <= t && p.t > t - 5 * MIN)?;
                Some(Sample {
                    labels: s.labels.clone(),
                    t,
                    v: p.v,
                })
            })
            .collect(),
    )
}

fn samples(v: Result<Value>) -> Vec<(Labels, f64)> {
    match v.expect("evaluates") {
        Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
        other => panic!("not a vector: {other:?}"),
    }
}

fn value_of(v: &[(Labels, f64)], ls: &[(&str, &str)]) -> f64 {
    let want = labels(ls);
    v.iter()
        .find(|(l, _)| *l == want)
        .unwrap_or_else(|| panic!("no sample {want} in {v:?}"))
        .1
}

fn assert_close(got: f64, want: f64) {
    let ok = if want.is_nan() {
        got.is_nan()
    } else if want.is_infinite() || want == 0.0 {
        got == want
    } else {
        ((got - want) / want).abs() < 1e-9
    };
    assert!(ok, "got {got}, want {want}");
}

#[test]
fn increase_extrapolates_and_stops_at_zero() {
    let all = vec![
        series(&[("path", "/foo")], 5 * MIN, &seq(0.0, 10.0, 10)),
        series(
            &[("path", "/bar")],
            5 * MIN,
            &[seq(0.0, 18.0, 5), seq(0.0, 18.0, 5)].concat(),
        ),
        series(&[("path", "/dings")], 5 * MIN, &seq(10.0, 10.0, 10)),
        series(&[("path", "/bumms")], 5 * MIN, &seq(1.0, 10.0, 10)),
    ];
    let q = "increase(x[50m])";
    let v = samples(run(q, 50 * MIN, vec![window(&all, 50 * MIN, 50 * MIN)]));
    assert_close(value_of(&v, &[("path", "/foo")]), 100.0);
    assert_close(value_of(&v, &[("path", "/bar")]), 160.0);
    assert_close(value_of(&v, &[("path", "/dings")]), 100.0);
    assert_close(value_of(&v, &[("path", "/bumms")]), 100.0);

    let v = samples(run(q, 50 * MIN, vec![window(&all, 50 * MIN, 100 * MIN)]));
    assert_close(value_of(&v, &[("path", "/foo")]), 100.0);
    assert_close(value_of(&v, &[("path", "/bar")]), 162.0);
    assert_close(value_of(&v, &[("path", "/dings")]), 105.0);
    assert_close(value_of(&v, &[("path", "/bumms")]), 101.0);
}

#[test]
fn increase_corrects_counter_resets() {
    let all = vec![series(
        &[("__name__", "http_requests_total"), ("path", "/foo")],
        5 * MIN,
        &[0.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0],
    )];
    let v = samples(run(
        "increase(x[30m])",
        30 * MIN,
        vec![window(&all, 30 * MIN, 30 * MIN)],
    ));
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, labels(&[("path", "/foo")]), "name dropped");
    assert_close(v[0].1, 7.0);
}

#[test]
fn rate_resets_and_zero_cutoff() {
    let all = vec![series(
        &[],
        5 * MIN,
        &[seq(0.0, 27.0, 4), seq(0.0, 27.0, 5)].concat(),
    )];
    let v = samples(run(
        "rate(x[50m])",
        50 * MIN,
        vec![window(&all, 50 * MIN, 50 * MIN)],
    ));
    assert_close(v[0].1, 0.08);

    // Counter reset at the end of the range: one point in 5m gives nothing.
    let all = vec![series(
        &[],
        5 * MIN,
        &[seq(0.0, 10.0, 9), vec![0.0, 10.0]].concat(),
    )];
    assert!(
        samples(run(
            "rate(x[5m])",
            50 * MIN,
            vec![window(&all, 50 * MIN, 5 * MIN)]
        ))
        .is_empty()
    );
    let v = samples(run(
        "rate(x[6m])",
        50 * MIN,
        vec![window(&all, 50 * MIN, 6 * MIN)],
    ));
    assert_close(v[0].1, 0.0);

    let want = [0.5, 0.55, 0.6, 0.6, 0.6, 0.6];
    for (i, w) in want.iter().enumerate() {
        let start = 60.0 * i as f64;
        let all = vec![series(&[], 4 * MIN, &seq(start, 240.0, 10))];
        let v = samples(run(
            "rate(x[20m])",
            10 * MIN,
            vec![window(&all, 10 * MIN, 20 * MIN)],
        ));
        assert_close(v[0].1, *w);
        let v = samples(run(
            "rate(x[20m])",
            50 * MIN,
            vec![window(&all, 50 * MIN, 20 * MIN)],
        ));
        assert_close(v[0].1, 0.6);
    }
}

#[test]
fn delta_irate_idelta() {
    let all = vec![
        series(
            &[("path", "/foo")],
            5 * MIN,
            &[0.0, 50.0, 100.0, 150.0, 200.0],
        ),
        series(
            &[("path", "/bar")],
            5 * MIN,
            &[200.0, 150.0, 100.0, 50.0, 0.0],
        ),
    ];
    let v = samples(run(
        "delta(x[20m])",
        20 * MIN,
        vec![window(&all, 20 * MIN, 20 * MIN)],
    ));
    assert_close(value_of(&v, &[("path", "/foo")]), 200.0);
    assert_close(value_of(&v, &[("path", "/bar")]), -200.0);

    let all = vec![
        series(&[("path", "/foo")], 5 * MIN, &seq(0.0, 10.0, 10)),
        series(
            &[("path", "/bar")],
            5 * MIN,
            &[seq(0.0, 10.0, 5), seq(0.0, 10.0, 5)].concat(),
        ),
    ];
    let v = samples(run(
        "irate(x[50m])",
        30 * MIN,
        vec![window(&all, 30 * MIN, 50 * MIN)],
    ));
    assert_close(value_of(&v, &[("path", "/foo")]), 1.0 / 30.0);
    assert_close(value_of(&v, &[("path", "/bar")]), 0.0);

    let all = vec![series(&[], 5 * MIN, &[0.0, 50.0, 100.0, 50.0])];
    let v = samples(run(
        "idelta(x[20m])",
        20 * MIN,
        vec![window(&all, 20 * MIN, 20 * MIN)],
    ));
    assert_close(v[0].1, -50.0);

    // irate over NaN values: NaN, then (11 - 5) / 300.
    let all = vec![series(&[], 5 * MIN, &[1.0, f64::NAN, f64::NAN, 5.0, 11.0])];
    let v = samples(run(
        "irate(x[15m1s])",
        15 * MIN,
        vec![window(&all, 15 * MIN, 15 * MIN + 1000)],
    ));
    assert!(v[0].1.is_nan());
    let v = samples(run(
        "irate(x[15m1s])",
        20 * MIN,
        vec![window(&all, 20 * MIN, 15 * MIN + 1000)],
    ));
    assert_close(v[0].1, 0.02);
}

#[test]
fn deriv_and_predict_linear() {
    let all = vec![series(
        &[],
        5 * MIN,
        &[seq(0.0, 10.0, 4), seq(0.0, 10.0, 5)].concat(),
    )];
    let v = samples(run(
        "deriv(x[100m])",
        50 * MIN,
        vec![window(&all, 50 * MIN, 100 * MIN)],
    ));
    assert_close(v[0].1, 0.010606060606060607);
    let v = samples(run(
        "predict_linear(x[50m], 3600)",
        50 * MIN,
        vec![window(&all, 50 * MIN, 50 * MIN), Arg::Scalar(3600.0)],
    ));
    assert_close(v[0].1, 70.0);
    // x[55m] @ 3000 evaluated at 10m: the window ends at 3000 s, the intercept is at 10m.
    let Arg::Range(mut r) = window(&all, 50 * MIN, 55 * MIN) else {
        unreachable!()
    };
    r.start = 50 * MIN - 55 * MIN;
    let v = samples(run(
        "predict_linear(x[55m] @ 3000, 3600)",
        10 * MIN,
        vec![Arg::Range(r), Arg::Scalar(3600.0)],
    ));
    assert_close(v[0].1, 51.36363636363637);

    let mut inf = vec![f64::NEG_INFINITY];
    inf.extend(seq(0.0, 80.0, 10));
    inf.push(f64::INFINITY);
    let all = vec![series(&[], 5 * MIN, &inf)];
    let v = samples(run(
        "deriv(x[100m])",
        100 * MIN,
        vec![window(&all, 100 * MIN, 100 * MIN)],
    ));
    assert!(v[0].1.is_nan());
}

#[test]
fn resets_and_changes() {
    let all = vec![
        series(
            &[("path", "/foo")],
            5 * MIN,
            &[1., 2., 3., 0., 1., 0., 0., 1., 2., 0.],
        ),
        series(
            &[("path", "/bar")],
            5 * MIN,
            &[1., 2., 3., 4., 5., 1., 2., 3., 4., 5.],
        ),
        series(
            &[("path", "/biz")],
            5 * MIN,
            &[0., 0., 0., 0., 0., 1., 1., 1., 1., 1.],
        ),
    ];
    let v = samples(run(
        "resets(x[32m])",
        50 * MIN,
        vec![window(&all, 50 * MIN, 32 * MIN)],
    ));
    assert_close(value_of(&v, &[("path", "/foo")]), 2.0);
    assert_close(value_of(&v, &[("path", "/bar")]), 1.0);
    assert_close(value_of(&v, &[("path", "/biz")]), 0.0);
    let v = samples(run(
        "changes(x[50m])",
        50 * MIN,
        vec![window(&all, 50 * MIN, 50 * MIN)],
    ));
    assert_close(value_of(&v, &[("path", "/foo")]), 7.0);
    assert_close(value_of(&v, &[("path", "/bar")]), 8.0);
    assert_close(value_of(&v, &[("path", "/biz")]), 1.0);

    let nan = f64::NAN;
    let all = vec![
        series(&[("a", "b")], 5 * MIN, &[nan, nan, nan]),
        series(&[("a", "c")], 5 * MIN, &[0.0, nan, 0.0]),
    ];
    let v = samples(run(
        "changes(x[20m])",
        15 * MIN,
        vec![window(&all, 15 * MIN, 20 * MIN)],
    ));
    assert_close(value_of(&v, &[("a", "b")]), 0.0);
    assert_close(value_of(&v, &[("a", "c")]), 2.0);
}

#[test]
fn aggregations_over_time() {
    let s = 10_000;
    let avg = |values: &[f64]| {
        let all = vec![series(&[], s, values)];
        samples(run(
            "avg_over_time(x[1m])",
            55_000,
            vec![window(&all, 55_000, MIN)],
        ))[0]
            .1
    };
    assert_close(avg(&[1., 2., 3., 4., 5.]), 3.0);
    assert_close(avg(&[1., 2., 3., 4., f64::INFINITY]), f64::INFINITY);
    assert!(avg(&[1., 2., 3., f64::INFINITY, f64::NEG_INFINITY]).is_nan());
    assert_close(avg(&[f64::INFINITY, 0.0, f64::INFINITY]), f64::INFINITY);
    assert_close(
        avg(&[9.988_465_674_311_58e307, 9.988_465_674_311_58e307]),
        9.988_465_674_311_58e307,
    );
    assert_close(
        avg(&[-9.988_465_674_311_58e307, 9.988_465_674_311_58e307]),
        0.0,
    );
    let big = [
        -2.258e220,
        -1.78264e219,
        0.76342771,
        1.9592258,
        2.3757689e217,
    ];
    let big2 = [
        -2.3757689e217,
        2.258e220,
        7.69805412,
        1.78264e219,
        -458.90154,
    ];
    let all = vec![series(
        &[],
        5_000,
        &[big.as_slice(), big2.as_slice()].concat(),
    )];
    let v = samples(run(
        "avg_over_time(x[1m])",
        55_000,
        vec![window(&all, 55_000, MIN)],
    ));
    assert_close(v[0].1, 0.0);
    let all = vec![series(&[], 5_000, &[1e10, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6])];
    let v = samples(run(
        "avg_over_time(x[1m])",
        55_000,
        vec![window(&all, 55_000, MIN)],
    ));
    assert_close(v[0].1, 1.6666666666666675e9);

    let all = vec![series(&[], s, &[1.0, 1e100, 1.0, -1e100])];
    let v = samples(run(
        "sum_over_time(x[2m])",
        MIN,
        vec![window(&all, MIN, 2 * MIN)],
    ));
    assert_close(v[0].1, 2.0);
    let v = samples(run(
        "avg_over_time(x[2m])",
        MIN,
        vec![window(&all, MIN, 2 * MIN)],
    ));
    assert_close(v[0].1, 0.5);

    let all = vec![series(&[("__name__", "m")], s, &[0., 8., 8., 2., 3.])];
    let v = samples(run(
        "stdvar_over_time(x[2m])",
        MIN,
        vec![window(&all, MIN, 2 * MIN)],
    ));
    assert_close(v[0].1, 10.56);
    assert!(v[0].0.is_empty());
    let v = samples(run(
        "stddev_over_time(x[2m])",
        MIN,
        vec![window(&all, MIN, 2 * MIN)],
    ));
    assert!((v[0].1 - 3.249615).abs() < 1e-6);
    let all = vec![series(&[], s, &[1.5990505637277868; 3])];
    let v = samples(run(
        "stdvar_over_time(x[1m])",
        55_000,
        vec![window(&all, 55_000, MIN)],
    ));
    assert_close(v[0].1, 0.0);

    let nan = f64::NAN;
    let all = vec![
        series(&[("type", "numbers")], s, &[2., 0., 3.]),
        series(&[("type", "some_nan")], s, &[2., 0., nan]),
        series(&[("type", "some_nan2")], s, &[2., nan, 1.]),
        series(&[("type", "some_nan3")], s, &[nan, 0., 1.]),
        series(&[("type", "only_nan")], s, &[nan, nan, nan]),
    ];
    let w = || vec![window(&all, MIN, 2 * MIN)];
    let v = samples(run("min_over_time(x[2m])", MIN, w()));
    assert_close(value_of(&v, &[("type", "numbers")]), 0.0);
    assert_close(value_of(&v, &[("type", "some_nan")]), 0.0);
    assert_close(value_of(&v, &[("type", "some_nan2")]), 1.0);
    assert_close(value_of(&v, &[("type", "some_nan3")]), 0.0);
    assert!(value_of(&v, &[("type", "only_nan")]).is_nan());
    let v = samples(run("max_over_time(x[2m])", MIN, w()));
    assert_close(value_of(&v, &[("type", "numbers")]), 3.0);
    assert_close(value_of(&v, &[("type", "some_nan")]), 2.0);
    assert_close(value_of(&v, &[("type", "some_nan2")]), 2.0);
    assert_close(value_of(&v, &[("type", "some_nan3")]), 1.0);
    let v = samples(run("count_over_time(x[2m])", MIN, w()));
    assert_close(value_of(&v, &[("type", "only_nan")]), 3.0);
    let v = samples(run("first_over_time(x[2m])", MIN, w()));
    assert!(value_of(&v, &[("type", "some_nan3")]).is_nan());
    assert_close(value_of(&v, &[("type", "some_nan2")]), 2.0);
}

#[test]
fn last_and_first_over_time_keep_the_name() {
    let all = vec![series(
        &[("__name__", "m"), ("env", "1")],
        5 * MIN,
        &[0.0, 60.0, 120.0],
    )];
    let v = samples(run(
        "last_over_time(x[10m])",
        10 * MIN,
        vec![window(&all, 10 * MIN, 10 * MIN)],
    ));
    assert_eq!(v, vec![(labels(&[("__name__", "m"), ("env", "1")]), 120.0)]);
    let v = samples(run(
        "first_over_time(x[10m])",
        10 * MIN,
        vec![window(&all, 10 * MIN, 10 * MIN)],
    ));
    assert_eq!(v, vec![(labels(&[("__name__", "m"), ("env", "1")]), 60.0)]);
    let v = samples(run(
        "max_over_time(x[10m])",
        10 * MIN,
        vec![window(&all, 10 * MIN, 10 * MIN)],
    ));
    assert_eq!(v, vec![(labels(&[("env", "1")]), 120.0)]);
}

#[test]
fn quantile_over_time_interpolates() {
    let all = vec![
        series(&[("test", "two")], 10_000, &[0., 1.]),
        series(&[("test", "three")], 10_000, &[0., 1., 2.]),
        series(&[("test", "uneven")], 10_000, &[0., 1., 4.]),
    ];
    let cases: [(f64, [f64; 3]); 7] = [
        (0.0, [0.0, 0.0, 0.0]),
        (0.5, [0.5, 1.0, 1.0]),
        (0.75, [0.75, 1.5, 2.5]),
        (0.8, [0.8, 1.6, 2.8]),
        (1.0, [1.0, 2.0, 4.0]),
        (-1.0, [f64::NEG_INFINITY; 3]),
        (2.0, [f64::INFINITY; 3]),
    ];
    for (q, want) in cases {
        let v = samples(run(
            "quantile_over_time(0.5, x[2m])",
            MIN,
            vec![Arg::Scalar(q), window(&all, MIN, 2 * MIN)],
        ));
        assert_close(value_of(&v, &[("test", "two")]), want[0]);
        assert_close(value_of(&v, &[("test", "three")]), want[1]);
        assert_close(value_of(&v, &[("test", "uneven")]), want[2]);
    }
    let v = samples(run(
        "quantile_over_time(0.5, x[2m])",
        MIN,
        vec![Arg::Scalar(f64::NAN), window(&all, MIN, 2 * MIN)],
    ));
    assert!(v.iter().all(|(_, v)| v.is_nan()));
}

#[test]
fn present_and_absent_over_time() {
    let all = vec![series(&[("__name__", "m"), ("job", "a")], MIN, &[1.0])];
    let v = samples(run(
        "present_over_time(x[30s])",
        0,
        vec![window(&all, 0, 30_000)],
    ));
    assert_eq!(v, vec![(labels(&[("job", "a")]), 1.0)]);
    let v = samples(run(
        "absent_over_time(m[30s])",
        0,
        vec![window(&all, 0, 30_000)],
    ));
    assert!(v.is_empty());
    let v = samples(run(
        r#"absent_over_time(m{handler="/foo", handler="/bar", instance="127.0.0.1"}[30s])"#,
        MIN,
        vec![window(&all, MIN, 30_000)],
    ));
    assert_eq!(v, vec![(labels(&[("instance", "127.0.0.1")]), 1.0)]);
    let v = samples(run(
        r#"absent_over_time(rate(m{job="x"}[5m])[5m:])"#,
        MIN,
        vec![window(&all, MIN, 30_000)],
    ));
    assert_eq!(v, vec![(Labels::new(), 1.0)]);
}

#[test]
fn absent_labels_from_equality_matchers() {
    let empty = || vec![Arg::Vector(Vec::new())];
    let v = samples(run("absent(nonexistent)", 0, empty()));
    assert_eq!(v, vec![(Labels::new(), 1.0)]);
    let v = samples(run(
        r#"absent(nonexistent{job="testjob", instance="testinstance", method=~".x"})"#,
        0,
        empty(),
    ));
    assert_eq!(
        v,
        vec![(
            labels(&[("instance", "testinstance"), ("job", "testjob")]),
            1.0
        )]
    );
    for q in [
        r#"absent(nonexistent{job="testjob",job="testjob2",foo="bar"})"#,
        r#"absent(nonexistent{job="testjob",job="testjob2",job="three",foo="bar"})"#,
        r#"absent(nonexistent{job="testjob",job=~"testjob2",foo="bar"})"#,
        r#"absent((nonexistent{foo="bar"}))"#,
    ] {
        let v = samples(run(q, 0, empty()));
        assert_eq!(v, vec![(labels(&[("foo", "bar")]), 1.0)], "{q}");
    }
    let v = samples(run(r#"absent(sum(nonexistent{job="a"}))"#, 0, empty()));
    assert_eq!(v, vec![(Labels::new(), 1.0)]);
    let present = vec![Arg::Vector(vec![Sample {
        labels: Labels::new(),
        t: 0,
        v: 1.0,
    }])];
    assert!(samples(run("absent(x)", 0, present)).is_empty());
}

/// The test histograms of histograms.test at 50m.
fn test_histograms() -> Vec<Series> {
    let mut out = Vec::new();
    for (start, buckets) in [
        (
            "positive",
            [("0.1", 5.0), (".2", 7.0), ("1e0", 11.0), ("+Inf", 12.0)],
        ),
        (
            "negative",
            [("-.2", 1.0), ("-0.1", 2.0), ("0.3", 2.0), ("+Inf", 3.0)],
        ),
    ] {
        for (le, inc) in buckets {
            out.push(series(
                &[
                    ("__name__", "testhistogram_bucket"),
                    ("le", le),
                    ("start", start),
                ],
                5 * MIN,
                &seq(0.0, inc, 10),
            ));
        }
    }
    out
}

#[test]
fn histogram_quantile_classic() {
    let all = test_histograms();
    let cases = [
        (0.0, 0.0, -0.2),
        (0.2, 0.048, -0.2),
        (0.5, 0.15, -0.15),
        (0.8, 0.72, 0.3),
        (1.0, 1.0, 0.3),
        (-0.1, f64::NEG_INFINITY, f64::NEG_INFINITY),
        (1.01, f64::INFINITY, f64::INFINITY),
        (f64::NAN, f64::NAN, f64::NAN),
    ];
    for (q, pos, neg) in cases {
        let v = samples(run(
            "histogram_quantile(0.5, x)",
            50 * MIN,
            vec![Arg::Scalar(q), instant(&all, 50 * MIN)],
        ));
        assert_eq!(v.len(), 2);
        assert_close(value_of(&v, &[("start", "positive")]), pos);
        assert_close(value_of(&v, &[("start", "negative")]), neg);
    }

    // Over rates, still the same.
    let rates = samples(run(
        "rate(x[10m])",
        50 * MIN,
        vec![window(&all, 50 * MIN, 10 * MIN)],
    ));
    let rates: Vec<Sample> = rates
        .into_iter()
        .map(|(labels, v)| Sample { labels, t: 0, v })
        .collect();
    let v = samples(run(
        "histogram_quantile(0.5, x)",
        50 * MIN,
        vec![Arg::Scalar(0.8), Arg::Vector(rates)],
    ));
    assert_close(value_of(&v, &[("start", "positive")]), 0.72);
    assert_close(value_of(&v, &[("start", "negative")]), 0.3);

    // Exactly in the middle of buckets.
    let b2: Vec<Series> = [
        ("0", 0.0),
        ("2", 1.0),
        ("4", 2.0),
        ("6", 3.0),
        ("+Inf", 3.0),
    ]
    .into_iter()
    .map(|(le, inc)| series(&[("le", le)], 5 * MIN, &seq(0.0, inc, 10)))
    .collect();
    for (q, want) in [(1.0 / 6.0, 1.0), (0.5, 3.0), (5.0 / 6.0, 5.0)] {
        let v = samples(run(
            "histogram_quantile(0.5, x)",
            7 * MIN,
            vec![Arg::Scalar(q), instant(&b2, 7 * MIN)],
        ));
        assert_close(v[0].1, want);
    }
}

#[test]
fn histogram_quantile_edge_cases() {
    let h = |pairs: &[(&str, f64)], extra: &[(&str, &str)]| -> Vec<Sample> {
        pairs
            .iter()
            .map(|(le, v)| {
                let mut ls: Vec<(&str, &str)> = vec![("le", le)];
                ls.extend_from_slice(extra);
                Sample {
                    labels: labels(&ls),
                    t: 0,
                    v: *v,
                }
            })
            .collect()
    };
    let q = |q: f64, v: Vec<Sample>| {
        samples(run(
            "histogram_quantile(0.5, x)",
            0,
            vec![Arg::Scalar(q), Arg::Vector(v)],
        ))
    };

    // Non-monotonic buckets are fixed up.
    let nm = h(
        &[
            ("0.1", 20.0),
            ("1", 10.0),
            ("10", 50.0),
            ("100", 40.0),
            ("1000", 90.0),
            ("+Inf", 80.0),
        ],
        &[],
    );
    assert_close(q(0.01, nm.clone())[0].1, 0.0045);
    assert_close(q(0.5, nm.clone())[0].1, 8.5);
    assert_close(q(0.99, nm)[0].1, 979.75);

    // Different spellings of one bound are merged.
    let mixed = h(
        &[
            ("0.1", 0.1),
            ("0.2", 0.1),
            ("2e-1", 0.1),
            ("2.0e-1", 0.1),
            ("+Inf", 0.4),
        ],
        &[("instance", "ins1")],
    );
    let mut both = mixed;
    both.extend(h(&[("+inf", 0.0), ("+Inf", 0.0)], &[("instance", "ins2")]));
    let v = q(0.5, both.clone());
    assert_close(value_of(&v, &[("instance", "ins1")]), 0.15);
    assert!(value_of(&v, &[("instance", "ins2")]).is_nan());
    let v = q(0.75, both);
    assert_close(value_of(&v, &[("instance", "ins1")]), 0.2);

    // No +Inf bucket, no observations, a bad le.
    assert!(q(0.5, h(&[("1", 1.0), ("2", 2.0)], &[]))[0].1.is_nan());
    assert!(q(0.5, h(&[("1", 0.0), ("+Inf", 0.0)], &[]))[0].1.is_nan());
    assert!(q(0.5, h(&[("Hello World", 2.0)], &[])).is_empty());
    assert!(
        q(
            0.5,
            vec![Sample {
                labels: labels(&[("ale", "0.1")]),
                t: 0,
                v: 1.0
            }]
        )
        .is_empty()
    );

    // Groups include the metric name, which the output drops (the evaluator then sees the
    // duplicate label sets).
    let mut two = h(&[("0.1", 1.0), ("+Inf", 2.0)], &[("__name__", "a_bucket")]);
    two.extend(h(
        &[("0.1", 1.0), ("+Inf", 2.0)],
        &[("__name__", "b_bucket")],
    ));
    let v = q(0.5, two);
    assert_eq!(v.len(), 2);
    assert!(v.iter().all(|(l, _)| l.is_empty()));
}

#[test]
fn histogram_fraction_classic() {
    let h = |pairs: &[(&str, f64)]| -> Arg<'static> {
        Arg::Vector(
            pairs
                .iter()
                .map(|(le, v)| Sample {
                    labels: labels(&[("__name__", "x_bucket"), ("le", le)]),
                    t: 0,
                    v: *v,
                })
                .collect(),
        )
    };
    let f = |lower: f64, upper: f64, v: Arg<'_>| {
        let v = samples(run(
            "histogram_fraction(0, 1, x)",
            0,
            vec![Arg::Scalar(lower), Arg::Scalar(upper), v],
        ));
        assert_eq!(v.len(), 1);
        assert!(v[0].0.is_empty());
        v[0].1
    };
    let b2 = || {
        h(&[
            ("0", 0.0),
            ("2", 10.0),
            ("4", 20.0),
            ("6", 30.0),
            ("+Inf", 30.0),
        ])
    };
    assert_close(f(0.0, 4.0, b2()), 0.6666666666666666);
    assert_close(f(0.0, 6.0, b2()), 1.0);
    assert_close(f(0.0, 3.5, b2()), 0.5833333333333334);

    let pos = || h(&[("1", 1.0), ("2", 3.0), ("3", 6.0), ("+Inf", 100.0)]);
    let neg = || h(&[("-3", 10.0), ("-2", 12.0), ("-1", 15.0), ("+Inf", 100.0)]);
    let inf = f64::INFINITY;
    assert_close(f(0.0, 1.5, pos()), 0.02);
    assert_close(f(-4.0, -2.0, neg()), 0.02);
    assert_close(f(-inf, -1.5, neg()), 0.135);
    assert_close(f(-inf, inf, pos()), 1.0);
    assert_close(f(-inf, inf, neg()), 1.0);
    assert_close(f(4.0, 5.0, pos()), 0.0);
    assert_close(f(0.0, 1.0, neg()), 0.0);
    assert_close(f(2.0, 5.0, pos()), 0.03);
    assert_close(f(400.0, inf, pos()), 0.94);
    assert_close(f(2.0, 2.0, pos()), 0.0);
    assert_close(f(3.0, 2.0, pos()), 0.0);
    assert_close(f(0.0, 1.0, h(&[("+Inf", 100.0)])), 0.0);
    assert!(f(0.0, 5.0, h(&[("1", 0.0), ("+Inf", 0.0)])).is_nan());
    assert_close(f(2.0, 3.5, pos()), 0.03);
    assert_close(f(0.5, 2.0, pos()), 0.025);
    assert_close(f(1.0, 3.0, pos()), 0.05);
    assert_close(
        f(0.1, 0.75, h(&[("0.5", 2.5), ("1", 7.5), ("+Inf", 100.0)])),
        0.045,
    );
    assert_close(
        f(
            -1.0,
            1.0,
            h(&[
                ("-2", 5.0),
                ("-1", 10.0),
                ("0", 15.0),
                ("1", 20.0),
                ("+Inf", 100.0),
            ]),
        ),
        0.1,
    );
    assert!(f(f64::NAN, 1.0, pos()).is_nan());
    assert!(f(0.0, f64::NAN, pos()).is_nan());
    assert_close(
        f(-10.0, -5.0, h(&[("1", 1.0), ("2", 3.0), ("+Inf", 10.0)])),
        0.0,
    );
    assert_close(
        f(5.0, 10.0, h(&[("1", 1.0), ("2", 3.0), ("+Inf", 10.0)])),
        0.0,
    );
}

#[test]
fn label_replace_expands_like_go() {
    let v = || {
        Arg::Vector(vec![
            Sample {
                labels: labels(&[
                    ("__name__", "testmetric"),
                    ("src", "source-value-10"),
                    ("dst", "original-destination-value"),
                ]),
                t: 0,
                v: 0.0,
            },
            Sample {
                labels: labels(&[
                    ("__name__", "testmetric"),
                    ("src", "source-value-20"),
                    ("dst", "original-destination-value"),
                ]),
                t: 0,
                v: 1.0,
            },
        ])
    };
    let lr = |dst: &str, repl: &str, src: &str, re: &str| {
        run(
            "label_replace(x, \"a\", \"b\", \"c\", \"d\")",
            0,
            vec![
                v(),
                Arg::String(dst.into()),
                Arg::String(repl.into()),
                Arg::String(src.into()),
                Arg::String(re.into()),
            ],
        )
    };
    let dsts = |r: Result<Value>| -> Vec<Option<String>> {
        samples(r)
            .into_iter()
            .map(|(l, _)| l.get("dst").map(str::to_owned))
            .collect()
    };
    let some = |a: &str, b: &str| vec![Some(a.to_owned()), Some(b.to_owned())];
    assert_eq!(
        dsts(lr(
            "dst",
            "destination-value-$1",
            "src",
            "source-value-(.*)"
        )),
        some("destination-value-10", "destination-value-20")
    );
    let orig = some("original-destination-value", "original-destination-value");
    assert_eq!(
        dsts(lr("dst", "destination-value-$1", "src", "value-(.*)")),
        orig
    );
    assert_eq!(
        dsts(lr("dst", "$1-value-$2", "src", "(.*)-value-(.*)")),
        some("source-value-10", "source-value-20")
    );
    assert_eq!(
        dsts(lr(
            "dst",
            "value-$1",
            "nonexistent-src",
            "source-value-(.*)"
        )),
        orig
    );
    assert_eq!(
        dsts(lr("dst", "value-$1", "nonexistent-src", "(.*)")),
        some("value-", "value-")
    );
    assert_eq!(
        dsts(lr("dst", "value-$1", "src", "non-matching-regex")),
        orig
    );
    assert_eq!(dsts(lr("dst", "", "dst", ".*")), vec![None, None]);
    // Go's expansion: `$1x` names group "1x" (unknown: empty), `${1}x` is group 1, `$$` is `$`,
    // named groups, a malformed reference stays literal.
    assert_eq!(
        dsts(lr("dst", "$1x", "src", "source-value-(.*)")),
        vec![None, None]
    );
    assert_eq!(
        dsts(lr("dst", "${1}x", "src", "source-value-(.*)")),
        some("10x", "20x")
    );
    assert_eq!(
        dsts(lr("dst", "$$1-$", "src", "source-value-(.*)")),
        some("$1-$", "$1-$")
    );
    assert_eq!(
        dsts(lr("dst", "${num}-$num", "src", "source-value-(?P<num>.*)")),
        some("10-10", "20-20")
    );
    assert_eq!(
        dsts(lr("dst", "${1", "src", "source-value-(.*)")),
        some("${1", "${1")
    );
    assert_eq!(
        dsts(lr("dst", "a$01", "src", "source-value-(.*)")),
        some("a", "a")
    );
    // Names are kept.
    let r = samples(lr("dst", "x", "src", ".*"));
    assert_eq!(r[0].0.name(), Some("testmetric"));
    // Errors.
    let err = lr("dst", "value-$1", "src", "(.*").expect_err("invalid regex");
    assert_eq!(err.0, "invalid regular expression in label_replace(): (.*");
    let err = lr("", "x", "src", ".*").expect_err("invalid label name");
    assert_eq!(err.0, "invalid destination label name in label_replace(): ");
    // The regex is anchored and `.` matches newlines.
    let nl = Arg::Vector(vec![Sample {
        labels: labels(&[("src", "a\nb")]),
        t: 0,
        v: 0.0,
    }]);
    let r = run(
        "label_replace(x, \"a\", \"b\", \"c\", \"d\")",
        0,
        vec![nl, "dst".into(), "$1".into(), "src".into(), "a(.)b".into()],
    );
    assert_eq!(dsts(r), vec![Some("\n".to_owned())]);
}

impl From<&str> for Arg<'_> {
    fn from(s: &str) -> Self {
        Arg::String(s.to_owned())
    }
}

#[test]
fn label_join_joins_in_order() {
    let v = vec![Sample {
        labels: labels(&[
            ("__name__", "m"),
            ("src", "a"),
            ("src1", "b"),
            ("src2", "c"),
            ("dst", "x"),
        ]),
        t: 0,
        v: 0.0,
    }];
    let r = samples(run(
        "label_join(x, \"dst\", \"-\", \"src\", \"src3\", \"src1\")",
        0,
        vec![
            Arg::Vector(v.clone()),
            "dst".into(),
            "-".into(),
            "src".into(),
            "src3".into(),
            "src1".into(),
        ],
    ));
    assert_eq!(r[0].0.get("dst"), Some("a--b"));
    assert_eq!(r[0].0.name(), Some("m"));
    let r = samples(run(
        "label_join(x, \"dst\", \", \")",
        0,
        vec![Arg::Vector(v.clone()), "dst".into(), ", ".into()],
    ));
    assert_eq!(r[0].0.get("dst"), None);
    let r = samples(run(
        "label_join(x, \"__name__\", \"_\", \"__name__\", \"src\")",
        0,
        vec![
            Arg::Vector(v),
            "__name__".into(),
            "_".into(),
            "__name__".into(),
            "src".into(),
        ],
    ));
    assert_eq!(r[0].0.name(), Some("m_a"));
}

#[test]
fn date_functions() {
    let d = |name: &str, v: Option<f64>, t: i64| -> f64 {
        let q = match v {
            Some(_) => format!("{name}(vector(1))"),
            None => format!("{name}()"),
        };
        let args = v
            .map(|v| {
                vec![Arg::Vector(vec![Sample {
                    labels: labels(&[("__name__", "m")]),
                    t,
                    v,
                }])]
            })
            .unwrap_or_default();
        let out = samples(run(&q, t, args));
        assert_eq!(out.len(), 1);
        assert!(out[0].0.is_empty());
        out[0].1
    };
    assert_eq!(d("year", None, 0), 1970.0);
    assert_eq!(d("month", None, 0), 1.0);
    assert_eq!(d("day_of_month", None, 0), 1.0);
    assert_eq!(d("day_of_year", None, 0), 1.0);
    assert_eq!(d("day_of_week", None, 0), 4.0);
    assert_eq!(d("hour", None, 0), 0.0);
    assert_eq!(d("minute", None, 0), 0.0);
    let ts = Some(1136239445.0);
    assert_eq!(d("year", ts, 0), 2006.0);
    assert_eq!(d("month", ts, 0), 1.0);
    assert_eq!(d("day_of_month", ts, 0), 2.0);
    assert_eq!(d("day_of_year", ts, 0), 2.0);
    assert_eq!(d("day_of_week", ts, 0), 1.0);
    assert_eq!(d("hour", ts, 0), 22.0);
    assert_eq!(d("minute", ts, 0), 4.0);
    assert_eq!(d("year", Some(1230767999.0), 0), 2008.0);
    assert_eq!(d("year", Some(1230768000.0), 0), 2009.0);
    assert_eq!(d("month", Some(1456790399.0), 0), 2.0);
    assert_eq!(d("day_of_month", Some(1456790399.0), 0), 29.0);
    assert_eq!(d("month", Some(1456790400.0), 0), 3.0);
    assert_eq!(d("day_of_month", Some(1456790400.0), 0), 1.0);
    assert_eq!(d("day_of_year", Some(1483191420.0), 0), 366.0);
    assert_eq!(d("day_of_year", Some(1672493820.0), 0), 365.0);
    assert_eq!(d("days_in_month", Some(1454284800.0), 0), 29.0);
    assert_eq!(d("days_in_month", Some(1485907200.0), 0), 28.0);
    // 2000 is a leap year, 1900 is not; before the epoch.
    assert_eq!(d("days_in_month", Some(951782400.0), 0), 29.0);
    assert_eq!(d("days_in_month", Some(-2206310400.0), 0), 28.0);
    assert_eq!(d("year", Some(-1.0), 0), 1969.0);
    assert_eq!(d("hour", Some(-1.0), 0), 23.0);
    assert_eq!(d("day_of_week", Some(-1.0), 0), 3.0);
    // Fractions are truncated toward zero, as Go's int64().
    assert_eq!(d("minute", Some(59.9), 0), 0.0);
    // The evaluation time when there is no argument.
    assert_eq!(d("hour", None, 1_136_239_445_000), 22.0);
    // Every day of a few years round-trips.
    for days in -800_000..800_000i64 {
        let dt = date::DateTime::from_unix(days * 86_400);
        assert!(dt.day >= 1 && dt.day <= date::days_in_month(dt.year, dt.month));
        if dt.month == 1 && dt.day == 1 {
            assert_eq!(dt.day_of_year, 1);
        }
    }
}

#[test]
fn round_and_simple_functions() {
    let input = |vals: &[f64]| {
        Arg::Vector(
            vals.iter()
                .enumerate()
                .map(|(i, &v)| Sample {
                    labels: labels(&[("__name__", "m"), ("i", &i.to_string())]),
                    t: 0,
                    v,
                })
                .collect(),
        )
    };
    let vals = [
        2.5,
        2.0,
        -2.5,
        -2.0,
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    let values =
        |r: Result<Value>| -> Vec<f64> { samples(r).into_iter().map(|(_, v)| v).collect() };
    let got = values(run("round(x)", 0, vec![input(&vals)]));
    let want = [
        3.0,
        2.0,
        -2.0,
        -2.0,
        0.0,
        0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    for (g, w) in got.iter().zip(want) {
        assert_close(*g, w);
    }
    let got = values(run(
        "round(x, 0.1)",
        0,
        vec![input(&[12.345, 1.25, -1.25]), Arg::Scalar(0.1)],
    ));
    assert_eq!(got, vec![12.3, 1.3, -1.2]);
    let got = values(run(
        "round(x, 5)",
        0,
        vec![input(&[12.5, 7.4]), Arg::Scalar(5.0)],
    ));
    assert_eq!(got, vec![15.0, 5.0]);
    let got = values(run("ceil(x)", 0, vec![input(&vals)]));
    assert_eq!(&got[..6], &[3.0, 2.0, -2.0, -2.0, 0.0, 0.0]);
    let got = values(run("sgn(x)", 0, vec![input(&vals)]));
    assert_eq!(&got[..8], &[1.0, 1.0, -1.0, -1.0, 0.0, 0.0, 1.0, -1.0]);
    assert!(got[8].is_nan());
    let out = samples(run("abs(x)", 0, vec![input(&[-1.0])]));
    assert_eq!(out[0].0, labels(&[("i", "0")]));

    let clampv = [-50.0, 0.0, 100.0];
    let got = values(run(
        "clamp(x, -25, 75)",
        0,
        vec![input(&clampv), Arg::Scalar(-25.0), Arg::Scalar(75.0)],
    ));
    assert_eq!(got, vec![-25.0, 0.0, 75.0]);
    let got = values(run(
        "clamp_max(x, 75)",
        0,
        vec![input(&clampv), Arg::Scalar(75.0)],
    ));
    assert_eq!(got, vec![-50.0, 0.0, 75.0]);
    let got = values(run(
        "clamp_min(x, -25)",
        0,
        vec![input(&clampv), Arg::Scalar(-25.0)],
    ));
    assert_eq!(got, vec![-25.0, 0.0, 100.0]);
    let got = values(run(
        "clamp(x, 0, NaN)",
        0,
        vec![input(&clampv), Arg::Scalar(0.0), Arg::Scalar(f64::NAN)],
    ));
    assert!(got.iter().all(|v| v.is_nan()));
    let got = values(run(
        "clamp(x, NaN, 0)",
        0,
        vec![input(&clampv), Arg::Scalar(f64::NAN), Arg::Scalar(0.0)],
    ));
    assert!(got.iter().all(|v| v.is_nan()));
    let got = values(run(
        "clamp(x, 5, -5)",
        0,
        vec![input(&clampv), Arg::Scalar(5.0), Arg::Scalar(-5.0)],
    ));
    assert!(got.is_empty());

    let got = values(run("exp(x)", 0, vec![input(&[10.0])]));
    assert_close(got[0], 22026.465794806718);
    let got = values(run("ln(x)", 0, vec![input(&[0.0, -10.0])]));
    assert_eq!(got[0], f64::NEG_INFINITY);
    assert!(got[1].is_nan());
    let got = values(run("log10(x)", 0, vec![input(&[10.0, 20.0])]));
    assert_close(got[0], 1.0);
    assert_close(got[1], 1.301029995663981);
    let got = values(run("deg(x)", 0, vec![input(&[std::f64::consts::PI])]));
    assert_close(got[0], 180.0);
    let got = values(run("asin(x)", 0, vec![input(&[-0.1, 9.9])]));
    assert_close(got[0], -0.10016742116155944);
    assert!(got[1].is_nan());
}

#[test]
fn scalars_vector_time_timestamp_sort() {
    let one = |v: f64| Sample {
        labels: labels(&[("__name__", "m"), ("l", &v.to_string())]),
        t: 10_000,
        v,
    };
    assert_eq!(
        run("time()", 3_000_000, vec![]).expect("ok"),
        Value::Scalar {
            t: 3_000_000,
            v: 3000.0
        }
    );
    assert_eq!(
        run("pi()", 5, vec![]).expect("ok"),
        Value::Scalar {
            t: 5,
            v: std::f64::consts::PI
        }
    );
    assert_eq!(
        run("scalar(x)", 5, vec![Arg::Vector(vec![one(1.0)])]).expect("ok"),
        Value::Scalar { t: 5, v: 1.0 }
    );
    let Value::Scalar { v, .. } =
        run("scalar(x)", 5, vec![Arg::Vector(vec![one(1.0), one(2.0)])]).expect("ok")
    else {
        panic!()
    };
    assert!(v.is_nan());
    let Value::Scalar { v, .. } = run("scalar(x)", 5, vec![Arg::Vector(vec![])]).expect("ok")
    else {
        panic!()
    };
    assert!(v.is_nan());
    assert_eq!(
        samples(run("vector(1)", 5, vec![Arg::Scalar(1.0)])),
        vec![(Labels::new(), 1.0)]
    );

    let v = samples(run(
        "timestamp(x)",
        15_000,
        vec![Arg::Vector(vec![one(1.0)])],
    ));
    assert_eq!(v, vec![(labels(&[("l", "1")]), 10.0)]);

    let input = || Arg::Vector(vec![one(3.0), one(f64::NAN), one(1.0), one(2.0)]);
    let r = run("sort(x)", 7, vec![input()]).expect("ok");
    let Value::Vector(r) = r else { panic!() };
    assert!(r.iter().all(|s| s.t == 7 && s.labels.name() == Some("m")));
    let got: Vec<f64> = r.iter().map(|s| s.v).collect();
    assert_eq!(&got[..3], &[1.0, 2.0, 3.0]);
    assert!(got[3].is_nan());
    let got: Vec<f64> = samples(run("sort_desc(x)", 7, vec![input()]))
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(&got[..3], &[3.0, 2.0, 1.0]);
    assert!(got[3].is_nan());
}

#[test]
fn argument_errors_and_unsupported() {
    let err = run("abs(x)", 0, vec![Arg::Scalar(1.0)]).expect_err("wrong type");
    assert!(err.0.contains("instant vector"), "{}", err.0);
    let err = run("abs(x)", 0, vec![]).expect_err("missing");
    assert!(err.0.contains("missing"), "{}", err.0);
    let err = run("mad_over_time(x[1m])", 0, vec![window(&[], 0, MIN)]).expect_err("experimental");
    assert!(err.0.starts_with("unsupported:"), "{}", err.0);
    // Native-histogram functions see no native histograms here.
    let v = samples(run("histogram_count(x)", 0, vec![Arg::Vector(vec![])]));
    assert!(v.is_empty());
}

#[test]
fn go_min_max_semantics() {
    assert!(go_max(0.0, f64::NAN).is_nan());
    assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
    assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
    assert!(go_max(-0.0, 0.0).is_sign_positive());
    assert!(go_min(0.0, -0.0).is_sign_negative());
}
