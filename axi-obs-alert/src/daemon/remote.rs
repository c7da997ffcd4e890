//! Rules answered by a remote Prometheus (`/api/v1/query` at the evaluation time): the
//! scale-out path, where Prometheus holds the data and `axi-alert run` the rules.

use std::time::Duration;

use crate::promql::{EvalError, Labels, Sample, Value};

/// A Prometheus HTTP API client for instant queries, used from the evaluation thread.
pub(crate) struct RemotePrometheus {
    base: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
}

impl RemotePrometheus {
    pub(crate) fn new(base: &str, timeout: Duration) -> Result<Self, String> {
        if !base.starts_with("http://") {
            return Err(format!(
                "--query-url {base:?}: only http:// URLs are supported"
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the query runtime: {e}"))?;
        Ok(RemotePrometheus {
            base: base.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            runtime,
            timeout,
        })
    }

    /// `expr` at `t` (ms), as a vector or scalar.
    pub(crate) fn instant(&self, expr: &str, t: i64) -> Result<Value, EvalError> {
        let time = format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000));
        let url = format!("{}/api/v1/query", self.base);
        let body = self.runtime.block_on(async {
            let resp = self
                .client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "query={}&time={time}",
                    crate::delivery::query_escape(expr)
                ))
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| format!("querying {}: {}", shown(&url), e.without_url()))?;
            resp.text()
                .await
                .map_err(|e| format!("reading {}: {}", shown(&url), e.without_url()))
        });
        let body = body.map_err(EvalError)?;
        parse_answer(&body, t).map_err(EvalError)
    }
}

/// `url` as errors show it: without the user and password it may carry (`--query-url
/// http://user:pass@prometheus:9090`), which rule errors would otherwise publish on
/// `/api/v1/rules`.
fn shown(url: &str) -> String {
    axi_obs_core::__private::redact_url(url)
}

/// Reads an `/api/v1/query` answer.
pub(crate) fn parse_answer(body: &str, t: i64) -> Result<Value, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not a Prometheus answer: {e}"))?;
    if v["status"] != "success" {
        return Err(format!(
            "remote query failed: {}",
            v["error"].as_str().unwrap_or("unknown error")
        ));
    }
    let data = &v["data"];
    let number = |p: &serde_json::Value| -> Result<f64, String> {
        let s = p[1].as_str().ok_or("a value is not a string")?;
        crate::promqltest::parse_number(s)
    };
    match data["resultType"].as_str() {
        Some("vector") => {
            let mut out = Vec::new();
            for item in data["result"].as_array().ok_or("no result")? {
                let labels = Labels::from_pairs(
                    item["metric"]
                        .as_object()
                        .ok_or("no metric")?
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned())),
                );
                out.push(Sample {
                    labels,
                    t,
                    v: number(&item["value"])?,
                });
            }
            Ok(Value::Vector(out))
        }
        Some("scalar") => Ok(Value::Scalar {
            t,
            v: number(&data["result"])?,
        }),
        other => Err(format!("unexpected result type {other:?} for a rule")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_form_encoded() {
        assert_eq!(
            crate::delivery::query_escape("rate(x{a=\"b c\"}[5m]) > 1"),
            "rate%28x%7Ba%3D%22b+c%22%7D%5B5m%5D%29+%3E+1"
        );
    }

    #[test]
    fn an_unreachable_prometheus_is_named_without_its_credentials() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let remote = RemotePrometheus::new(
            &format!("http://ruler:s3cret@127.0.0.1:{port}"),
            Duration::from_secs(2),
        )
        .unwrap();
        let EvalError(e) = remote.instant("up", 0).unwrap_err();
        assert!(e.contains(&format!("127.0.0.1:{port}/api/v1/query")), "{e}");
        assert!(!e.contains("s3cret") && !e.contains("ruler"), "{e}");
    }

    #[test]
    fn answers_are_read() {
        let v = parse_answer(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1.5,"+Inf"]}]}}"#,
            1500,
        )
        .unwrap();
        let Value::Vector(v) = v else { panic!() };
        assert_eq!(v[0].labels.get("job"), Some("a"));
        assert_eq!(v[0].v, f64::INFINITY);
        let e = parse_answer(
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
            0,
        )
        .unwrap_err();
        assert_eq!(e, "remote query failed: parse error");
    }
}
