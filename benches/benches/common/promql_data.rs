//! The PromQL benches' data set, shared by `promql.rs` (query times) and `promql_memory.rs`
//! (memory per sample): 10,000 `http_requests_total` counters (10 jobs × 100 instances × 2
//! methods × 5 statuses), 1,200 `http_request_duration_seconds_bucket` series (100 instances ×
//! 12 buckets) and 2 × 1,000 memory gauges; 240 samples each, 15 s apart (1 h).

use axi_obs_alert::promql::Labels;

pub(crate) const STEP_MS: i64 = 15_000;
pub(crate) const SAMPLES: i64 = 240; // 1 h at 15 s
pub(crate) const T0: i64 = 1_700_000_000_000;
pub(crate) const EVAL_MS: i64 = T0 + (SAMPLES - 1) * STEP_MS;

/// A series: its labels and its value at sample i.
pub(crate) type SeriesGen = (Labels, Box<dyn Fn(i64) -> f64>);

/// Every series.
pub(crate) fn dataset() -> Vec<SeriesGen> {
    let mut out: Vec<SeriesGen> = Vec::new();
    for job in 0..10 {
        for instance in 0..100 {
            for (m, method) in ["GET", "POST"].iter().enumerate() {
                for (s, status) in ["200", "201", "400", "404", "500"].iter().enumerate() {
                    let labels = Labels::from_pairs([
                        ("__name__", "http_requests_total".to_owned()),
                        ("job", format!("job-{job}")),
                        ("instance", format!("10.0.{job}.{instance}:8080")),
                        ("method", (*method).to_owned()),
                        ("status", (*status).to_owned()),
                    ]);
                    let rate = (1 + job + instance % 7 + m + s) as f64;
                    out.push((labels, Box::new(move |i| (i as f64) * rate * 15.0)));
                }
            }
        }
    }
    let les = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    for instance in 0..100 {
        for (k, le) in les.iter().enumerate() {
            let labels = Labels::from_pairs([
                (
                    "__name__",
                    "http_request_duration_seconds_bucket".to_owned(),
                ),
                ("job", "api".to_owned()),
                ("instance", format!("10.1.0.{instance}:8080")),
                ("le", (*le).to_owned()),
            ]);
            let per_step = (10 * (k + 1) + instance % 5) as f64;
            out.push((labels, Box::new(move |i| (i as f64) * per_step)));
        }
    }
    for instance in 0..1000 {
        for (name, base) in [
            ("node_memory_MemAvailable_bytes", 1.0e9),
            ("node_memory_MemTotal_bytes", 8.0e9),
        ] {
            let labels = Labels::from_pairs([
                ("__name__", name.to_owned()),
                ("job", "node".to_owned()),
                (
                    "instance",
                    format!("10.2.{}.{}:9100", instance / 250, instance % 250),
                ),
            ]);
            let skew = (instance % 13) as f64 * 1.0e8;
            out.push((
                labels,
                Box::new(move |i| base + skew + (i % 10) as f64 * 1.0e6),
            ));
        }
    }
    out
}

/// A series as the text exposition writes it before the value: `name{label="value",...}`.
pub(crate) fn series_text(labels: &Labels) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!(
        "{}{{{}}}",
        labels.name().unwrap_or_default(),
        pairs.join(",")
    )
}
