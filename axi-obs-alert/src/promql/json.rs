//! Query answers as Prometheus's HTTP API writes them (`/api/v1/query`, `/api/v1/query_range`):
//! the shared writer of `axi-alert query` and the query API of `axi-alert run`.
//!
//! ```
//! use axi_obs_alert::promql::{Labels, Sample, Value, json};
//!
//! let v = Value::Vector(vec![Sample {
//!     labels: Labels::from_pairs([("__name__", "up"), ("job", "api")]),
//!     t: 1_500,
//!     v: 1.0,
//! }]);
//! assert_eq!(
//!     json::success(&json::value(&v, 1_500)),
//!     r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"api"},"value":[1.500,"1"]}]}}"#
//! );
//! ```

use super::{Labels, Value, format_go_float};

/// A JSON string literal.
pub fn string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Prometheus's `jsonutil.MarshalTimestamp`: seconds with up to three decimals.
pub fn timestamp(t: i64) -> String {
    let sign = if t < 0 { "-" } else { "" };
    let a = t.unsigned_abs();
    let frac = a % 1000;
    if frac == 0 {
        format!("{sign}{}", a / 1000)
    } else {
        format!("{sign}{}.{frac:03}", a / 1000)
    }
}

/// `[t, "v"]`.
fn point(t: i64, v: f64) -> String {
    format!("[{},\"{}\"]", timestamp(t), format_go_float(v))
}

/// A label set as a JSON object.
pub fn labels(ls: &Labels) -> String {
    let items: Vec<String> = ls
        .iter()
        .map(|(k, v)| format!("{}:{}", string(k), string(v)))
        .collect();
    format!("{{{}}}", items.join(","))
}

/// The `data` object of a query answer; `t` (the evaluation time) stamps string results.
pub fn value(v: &Value, t: i64) -> String {
    let (kind, result) = match v {
        Value::Scalar { t, v } => ("scalar", point(*t, *v)),
        Value::String(s) => ("string", format!("[{},{}]", timestamp(t), string(s))),
        Value::Vector(samples) => {
            let items: Vec<String> = samples
                .iter()
                .map(|s| {
                    format!(
                        r#"{{"metric":{},"value":{}}}"#,
                        labels(&s.labels),
                        point(s.t, s.v)
                    )
                })
                .collect();
            ("vector", format!("[{}]", items.join(",")))
        }
        Value::Matrix(series) => {
            let items: Vec<String> = series
                .iter()
                .map(|s| {
                    let pts: Vec<String> = s.points.iter().map(|p| point(p.t, p.v)).collect();
                    format!(
                        r#"{{"metric":{},"values":[{}]}}"#,
                        labels(&s.labels),
                        pts.join(",")
                    )
                })
                .collect();
            ("matrix", format!("[{}]", items.join(",")))
        }
    };
    format!(r#"{{"resultType":"{kind}","result":{result}}}"#)
}

/// `{"status":"success","data":DATA}` around a `data` value already written as JSON.
pub fn success(data: &str) -> String {
    format!(r#"{{"status":"success","data":{data}}}"#)
}

/// `{"status":"success","data":DATA,"warnings":[...]}`, without `warnings` when there are
/// none.
pub fn success_with_warnings(data: &str, warnings: &[&str]) -> String {
    if warnings.is_empty() {
        return success(data);
    }
    let warnings: Vec<String> = warnings.iter().map(|w| string(w)).collect();
    format!(
        r#"{{"status":"success","data":{data},"warnings":[{}]}}"#,
        warnings.join(",")
    )
}

/// `{"status":"error","errorType":KIND,"error":MESSAGE}`.
pub fn error(kind: &str, message: &str) -> String {
    format!(
        r#"{{"status":"error","errorType":{},"error":{}}}"#,
        string(kind),
        string(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::{Point, Sample, Series};

    #[test]
    fn formats_like_prometheus() {
        assert_eq!(format_go_float(2.0), "2");
        assert_eq!(format_go_float(0.1), "0.1");
        assert_eq!(format_go_float(1e21), "1000000000000000000000");
        assert_eq!(format_go_float(1e-7), "0.0000001");
        assert_eq!(format_go_float(-1.5), "-1.5");
        assert_eq!(format_go_float(f64::NAN), "NaN");
        assert_eq!(format_go_float(f64::INFINITY), "+Inf");
        assert_eq!(format_go_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(timestamp(1500), "1.500");
        assert_eq!(timestamp(1_435_781_451_781), "1435781451.781");
        assert_eq!(timestamp(60_000), "60");
        assert_eq!(timestamp(-1005), "-1.005");
        let v = Value::Vector(vec![Sample {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            t: 1500,
            v: 2.0,
        }]);
        assert_eq!(
            value(&v, 1500),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1.500,"2"]}]}"#
        );
        assert_eq!(
            value(&Value::Scalar { t: 0, v: 1.0 }, 0),
            r#"{"resultType":"scalar","result":[0,"1"]}"#
        );
        assert_eq!(
            value(&Value::String("a\"b".into()), 2000),
            r#"{"resultType":"string","result":[2,"a\"b"]}"#
        );
        let m = Value::Matrix(vec![Series {
            labels: Labels::from_pairs([("job", "a")]),
            points: vec![Point { t: 0, v: 1.0 }, Point { t: 15_000, v: 2.5 }],
        }]);
        assert_eq!(
            value(&m, 15_000),
            r#"{"resultType":"matrix","result":[{"metric":{"job":"a"},"values":[[0,"1"],[15,"2.5"]]}]}"#
        );
        assert_eq!(
            error("bad_data", "x \"y\""),
            r#"{"status":"error","errorType":"bad_data","error":"x \"y\""}"#
        );
    }
}
