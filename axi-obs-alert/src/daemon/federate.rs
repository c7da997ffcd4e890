//! `GET /federate`: the latest sample of every series matching the `match[]` selectors, in
//! Prometheus's text format, as Prometheus's federation endpoint serves it. A central
//! Prometheus scrapes it with `honor_labels: true` to pull the rules' output (or anything
//! the daemon holds) into its own storage:
//!
//! ```yaml
//! - job_name: axi-alert-federate
//!   honor_labels: true
//!   metrics_path: /federate
//!   params:
//!     'match[]': ['{__name__=~"job:.*"}']
//!   static_configs:
//!     - targets: ['rules-host:9095']
//! ```
//!
//! As in Prometheus 3.5: a series' newest sample within the lookback (`--query.lookback-delta`)
//! is served with its own timestamp, unless it is a staleness marker; every family is
//! `untyped`; the configuration's `external_labels`, and an empty `instance`, are added to
//! each series that lacks them (after its own labels); labels with empty values are left
//! out; no `match[]` serves nothing. Names outside the classic character set are escaped to
//! underscores, as the `escaping=underscores` of the content type says. The page is gzipped
//! when the client accepts it, as Prometheus's is.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::query_api::{Params, SharedStore, evaluate};
use super::{Shared, lock, now_ms};
use crate::promql::value::is_stale;
use crate::promql::{self, Expr, Labels, Matcher, Point, Storage};
use crate::template::gofmt;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8; escaping=underscores";

/// `GET /federate`; gzipped when the client takes it (Prometheus's scrapers do).
pub(super) async fn federate(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    p: Params,
) -> Response {
    // Plain text, a line each, as Go's `http.Error` writes them.
    let sets = match p.form_error().map_err(|e| e.message).and_then(|()| {
        p.all("match[]")
            .iter()
            .map(|s| selector(s))
            .collect::<Result<Vec<_>, _>>()
    }) {
        Ok(sets) => sets,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let lookback_ms = shared.options.query.lookback_ms();
    let timeout = shared.queries.timeout();
    let body = evaluate(shared, timeout, move |shared, _| {
        // On the blocking thread: a round of rule evaluation holds this lock throughout.
        let external = lock(&shared.rules).config.external_labels.clone();
        let latest = latest_samples(&SharedStore(&shared.store), &sets, now_ms(), lookback_ms);
        Ok(write_families(&latest, &external))
    })
    .await;
    match body {
        Ok(text) => crate::exposition::page(&headers, CONTENT_TYPE, text),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", e.message)).into_response(),
    }
}

/// A `match[]` selector as Prometheus's federation reads it (`ParseMetricSelector`): a
/// metric name and label matchers, nothing else (no offset, no `@`), and, unlike a query's
/// selector, matchers that all match the empty string are allowed (`{job=~".*"}`: every
/// series).
fn selector(text: &str) -> Result<Vec<Matcher>, String> {
    let parsed = match promql::parse_syntax(text) {
        Ok(e) => e,
        // promql-parser refuses a selector without a non-empty matcher as a query's; parse
        // it again with one (trailing commas are allowed) and take that one out.
        Err(e) if e.0.contains("at least one non-empty matcher") => {
            let inner = text.trim_start().strip_prefix('{').ok_or(e.0.clone())?;
            let padded = format!("{{{PAD}=\"x\",{inner}");
            promql::parse_syntax(&padded).map_err(|_| e.0)?
        }
        Err(e) => return Err(e.0),
    };
    let Expr::VectorSelector(vs) = parsed else {
        return Err(format!("{text:?} is not a series selector"));
    };
    if vs.offset.is_some() || vs.at.is_some() {
        return Err(format!(
            "{text:?} is not a series selector (no offset or @ here)"
        ));
    }
    let mut ms = Vec::new();
    if let Some(name) = &vs.name {
        ms.push(Matcher::equal("__name__", name));
    }
    for m in vs.matchers.matchers.iter().filter(|m| m.name != PAD) {
        ms.push(Matcher::from_ast(m)?);
    }
    Ok(ms)
}

/// The matcher [`selector`] adds to parse a selector of empty-matching matchers.
const PAD: &str = "__axi_federate_pad__";

/// Each series matching any of `sets` (once, however many match it) with its newest sample
/// in `[now - lookback, now]` unless that is a staleness marker, ordered by name, then
/// labels.
fn latest_samples(
    store: &dyn Storage,
    sets: &[Vec<Matcher>],
    now: i64,
    lookback_ms: i64,
) -> BTreeMap<(String, Labels), Point> {
    let mut latest = BTreeMap::new();
    // Closed at both ends, as Prometheus's querier's window (the store's is left-open).
    let start = now.saturating_sub(lookback_ms).saturating_sub(1);
    for ms in sets {
        for (labels, point) in store.select_latest(ms, start, now) {
            if !is_stale(point.v) {
                let name = labels.name().unwrap_or_default().to_owned();
                latest.insert((name, labels), point);
            }
        }
    }
    latest
}

/// The text exposition of `latest`, one `untyped` family per name.
fn write_families(
    latest: &BTreeMap<(String, Labels), Point>,
    external: &BTreeMap<String, String>,
) -> String {
    let mut external: Vec<(&str, &str)> = external
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if !external.iter().any(|(k, _)| *k == "instance") {
        external.push(("instance", ""));
        external.sort_unstable();
    }
    let mut out = String::new();
    let mut family = None;
    for ((name, labels), point) in latest {
        if name.is_empty() {
            // Prometheus ignores nameless series here too.
            continue;
        }
        let name = escape_name(name);
        if family.as_deref() != Some(name.as_str()) {
            let _ = writeln!(out, "# TYPE {name} untyped");
            family = Some(name.clone());
        }
        out.push_str(&name);
        let own: Vec<(&str, &str)> = labels
            .iter()
            .filter(|(k, v)| *k != "__name__" && !v.is_empty())
            .collect();
        let added = external
            .iter()
            .filter(|(k, _)| !own.iter().any(|(o, _)| o == k))
            .copied();
        let mut sep = '{';
        for (k, v) in own.iter().copied().chain(added) {
            out.push(sep);
            sep = ',';
            out.push_str(&escape_name(k));
            out.push_str("=\"");
            axi_obs_core::__private::escape_label_value(&mut out, v);
            out.push('"');
        }
        if sep == ',' {
            out.push('}');
        }
        let _ = writeln!(out, " {} {}", float(point.v), point.t);
    }
    out
}

/// Go's exposition of a float (`expfmt`'s `writeFloat`).
fn float(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else {
        gofmt::format_float(v, 'g', -1)
    }
}

/// A metric or label name under `escaping=underscores`: unchanged when it is a classic name,
/// else each character outside `[a-zA-Z_:]` (and digits after the first) becomes `_`.
fn escape_name(name: &str) -> String {
    let ok = |i: usize, c: char| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    };
    name.chars()
        .enumerate()
        .map(|(i, c)| if ok(i, c) { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::MemStorage;
    use crate::promql::value::stale_nan;

    #[test]
    fn window_is_closed_and_stale_series_are_left_out() {
        let mut store = MemStorage::new();
        let now = 1_000_000;
        let lookback = 300_000;
        let at = |name: &str| labels(&[("__name__", name), ("job", "j")]);
        store.add(&at("edge"), now - lookback, 1.0);
        store.add(&at("before"), now - lookback - 1, 1.0);
        store.add(&at("future"), now + 1, 1.0);
        store.add(&at("newest"), now - 10, 1.0);
        store.add(&at("newest"), now, 2.0);
        store.add(&at("gone"), now - 20, 1.0);
        store.add(&at("gone"), now - 10, stale_nan());
        let all = vec![selector("{job=\"j\"}").unwrap()];
        let got: Vec<(String, i64, f64)> = latest_samples(&store, &all, now, lookback)
            .into_iter()
            .map(|((name, _), p)| (name, p.t, p.v))
            .collect();
        assert_eq!(
            got,
            [
                ("edge".to_owned(), now - lookback, 1.0),
                ("newest".to_owned(), now, 2.0)
            ]
        );
        // Overlapping sets: each series once.
        let two = vec![
            selector("edge").unwrap(),
            selector("{job=~\".*\"}").unwrap(),
        ];
        assert_eq!(latest_samples(&store, &two, now, lookback).len(), 2);
    }

    #[test]
    fn selectors_as_federation_reads_them() {
        // Every matcher may match the empty string here.
        let ms = selector("{job=~\".*\"}").unwrap();
        assert_eq!(ms.len(), 1);
        assert!(ms[0].matches(""));
        assert_eq!(selector("{}").unwrap().len(), 0);
        assert_eq!(selector("up{job=\"a\",}").unwrap().len(), 2);
        for bad in [
            "up offset 5m",
            "up @ 10",
            "rate(up[5m])",
            "up{",
            "{x=~\".*\"",
            "1",
        ] {
            assert!(selector(bad).is_err(), "{bad}");
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn families_sorted_external_labels_appended_after_own() {
        let mut latest = BTreeMap::new();
        for (ls, v, t) in [
            (
                vec![("__name__", "up"), ("job", "b"), ("instance", "h:1")],
                1.0,
                5,
            ),
            (
                vec![("__name__", "up"), ("job", "a"), ("instance", "h:2")],
                0.0,
                6,
            ),
            (
                vec![("__name__", "job:up:sum"), ("job", "a"), ("empty", "")],
                1.5e-7,
                7,
            ),
            (
                vec![("__name__", "w"), ("region", "us"), ("q", "a\"b\\c\nd")],
                f64::NAN,
                8,
            ),
            (vec![("__name__", "na.me"), ("1x", "v")], f64::INFINITY, 9),
        ] {
            let l = labels(&ls);
            latest.insert((l.name().unwrap().to_owned(), l), Point { t, v });
        }
        let external = BTreeMap::from([("region".to_owned(), "eu".to_owned())]);
        assert_eq!(
            write_families(&latest, &external),
            "# TYPE job:up:sum untyped\n\
             job:up:sum{job=\"a\",instance=\"\",region=\"eu\"} 1.5e-07 7\n\
             # TYPE na_me untyped\n\
             na_me{_x=\"v\",instance=\"\",region=\"eu\"} +Inf 9\n\
             # TYPE up untyped\n\
             up{instance=\"h:1\",job=\"b\",region=\"eu\"} 1 5\n\
             up{instance=\"h:2\",job=\"a\",region=\"eu\"} 0 6\n\
             # TYPE w untyped\n\
             w{q=\"a\\\"b\\\\c\\nd\",region=\"us\",instance=\"\"} NaN 8\n"
        );
    }
}
