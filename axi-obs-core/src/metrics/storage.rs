//! Metric cells: what one series stores.
//!
//! Counters and gauges are one atomic each (the `metrics` crate's own `AtomicU64` impls).
//! Histograms keep a fixed set of cumulative-free bucket counters plus a sum: memory per series
//! is constant, nothing accumulates between scrapes, and no upkeep task is needed (the
//! unbounded-growth trap of sample-keeping histograms does not exist here).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use metrics::HistogramFn;

/// Bucket bounds recommended by the OpenTelemetry semantic conventions for
/// `http.server.request.duration` and other durations in seconds.
pub const SEMCONV_DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The OpenTelemetry SDK's default explicit bucket bounds, used for histograms that are not
/// durations in seconds.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

/// A histogram series with explicit bucket bounds (upper bounds, inclusive, as Prometheus `le`).
#[derive(Debug)]
pub(crate) struct HistogramCell {
    bounds: Arc<[f64]>,
    /// One counter per bound plus the `+Inf` bucket; not cumulative.
    buckets: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
    /// Whether a negative value was recorded: then the sum says nothing about the
    /// distribution, and OTLP and OpenMetrics leave it out.
    negative: AtomicBool,
}

impl HistogramCell {
    pub(crate) fn new(bounds: Arc<[f64]>) -> Self {
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            bounds,
            buckets,
            sum: AtomicU64::new(0f64.to_bits()),
            negative: AtomicBool::new(false),
        }
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            bounds: self.bounds.clone(),
            count: counts.iter().sum(),
            counts,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
            negative: self.negative.load(Ordering::Relaxed),
        }
    }
}

impl HistogramFn for HistogramCell {
    #[inline]
    fn record(&self, value: f64) {
        self.record_many(value, 1);
    }

    #[inline]
    fn record_many(&self, value: f64, count: usize) {
        if value.is_nan() || count == 0 {
            // NaN has no bucket; ignoring it keeps _count equal to the +Inf bucket.
            return;
        }
        // First bound >= value: Prometheus buckets are `le` (less than or equal). A branch-free
        // count beats a binary search on the 10-20 bounds histograms have.
        let idx = self.bounds.iter().filter(|b| **b < value).count();
        if value < 0.0 {
            self.negative.store(true, Ordering::Relaxed);
        }
        self.buckets[idx].fetch_add(count as u64, Ordering::Relaxed);
        let add = value * count as f64;
        let mut current = self.sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(current) + add).to_bits();
            match self
                .sum
                .compare_exchange_weak(current, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
    }
}

/// A point-in-time copy of a histogram series.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the finite buckets.
    pub bounds: Arc<[f64]>,
    /// Per-bucket (not cumulative) counts, `bounds.len() + 1` entries, the last one `+Inf`.
    pub counts: Vec<u64>,
    /// Number of observations (the sum of `counts`, so always equal to the `+Inf` bucket).
    pub count: u64,
    /// Sum of observations.
    pub sum: f64,
    /// Whether a negative value was recorded (the sum is then left out of OTLP and
    /// OpenMetrics, as both say).
    pub negative: bool,
}

impl HistogramSnapshot {
    /// Whether the sum may be exported: no negative value recorded and the sum finite (OTLP's
    /// `HistogramDataPoint.sum` "should not be filled out" otherwise; OpenMetrics allows no
    /// negative or NaN sum).
    pub fn sum_is_meaningful(&self) -> bool {
        !self.negative && self.sum.is_finite()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_le_and_count_matches() {
        let h = HistogramCell::new(Arc::from(vec![0.1, 1.0]));
        for v in [0.05, 0.1, 0.5, 1.0, 3.0, f64::NAN] {
            h.record(v);
        }
        h.record_many(2.0, 3);
        let s = h.snapshot();
        assert_eq!(s.counts, vec![2, 2, 4]);
        assert_eq!(s.count, 8);
        assert!((s.sum - (0.05 + 0.1 + 0.5 + 1.0 + 3.0 + 6.0)).abs() < 1e-9);
        assert!(s.sum_is_meaningful());
        // One negative value: the sum (still 2 here) is no longer a counter.
        let h = HistogramCell::new(Arc::from(vec![0.1, 1.0]));
        h.record(-3.0);
        h.record(5.0);
        let s = h.snapshot();
        assert_eq!(
            (s.sum, s.negative, s.sum_is_meaningful()),
            (2.0, true, false)
        );
        let h = HistogramCell::new(Arc::from(vec![0.1, 1.0]));
        h.record(f64::INFINITY);
        assert!(!h.snapshot().sum_is_meaningful());
    }
}
