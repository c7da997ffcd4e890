//! `histogram_quantile` and `histogram_fraction` over classic (`le`-labelled) buckets.

use std::collections::HashMap;

use crate::promql::value::{Labels, METRIC_NAME, Sample, Value};

/// The label holding a classic bucket's upper bound.
const BUCKET_LABEL: &str = "le";

/// Relative differences between bucket counts below this are taken as floating point noise.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// A classic bucket: its upper bound and cumulative count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bucket {
    pub(super) upper: f64,
    pub(super) count: f64,
}

/// One classic histogram: its output labels and buckets.
struct Histogram {
    labels: Labels,
    buckets: Vec<Bucket>,
}

/// Groups bucket samples into histograms by their labels without `le` (the metric name is
/// part of the grouping, as in Prometheus 3, and dropped from the output labels). Samples
/// without a parseable `le` are skipped (Prometheus warns about them).
fn group(v: Vec<Sample>) -> Vec<Histogram> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Histogram> = Vec::new();
    for s in v {
        let Some(upper) = s.labels.get(BUCKET_LABEL).and_then(parse_go_float) else {
            continue;
        };
        let bucket = Bucket { upper, count: s.v };
        let mut key = s.labels;
        key.remove(BUCKET_LABEL);
        if let Some(&i) = index.get(&key) {
            out[i].buckets.push(bucket);
        } else {
            let mut labels = key.clone();
            labels.remove(METRIC_NAME);
            index.insert(key, out.len());
            out.push(Histogram {
                labels,
                buckets: vec![bucket],
            });
        }
    }
    out
}

/// `histogram_quantile(q, buckets)`.
pub(super) fn quantile(q: f64, v: Vec<Sample>, t: i64) -> Value {
    Value::Vector(
        group(v)
            .into_iter()
            .map(|h| Sample {
                labels: h.labels,
                t,
                v: bucket_quantile(q, h.buckets),
            })
            .collect(),
    )
}

/// `histogram_fraction(lower, upper, buckets)`.
pub(super) fn fraction(lower: f64, upper: f64, v: Vec<Sample>, t: i64) -> Value {
    Value::Vector(
        group(v)
            .into_iter()
            .map(|h| Sample {
                labels: h.labels,
                t,
                v: bucket_fraction(lower, upper, h.buckets),
            })
            .collect(),
    )
}

/// Go's `strconv.ParseFloat(s, 64)` for what bucket labels hold: decimal floats, `Inf` and
/// `Infinity` with an optional sign, `NaN`; out-of-range values are errors.
pub(super) fn parse_go_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if unsigned.len() + 1 < lower.len() {
        return None;
    }
    match unsigned {
        "inf" | "infinity" => {
            return Some(if lower.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        // Go accepts "NaN" only without a sign.
        "nan" => return (unsigned.len() == lower.len()).then_some(f64::NAN),
        _ => {}
    }
    if !unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'))
    {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    // Go reports overflow as an error.
    (!v.is_infinite()).then_some(v)
}

/// Prometheus's `sort.Search`: the first index in `0..n` where `f` holds (binary search,
/// assuming `f` is monotonic), or `n`.
fn search(n: usize, f: impl Fn(usize) -> bool) -> usize {
    let (mut i, mut j) = (0, n);
    while i < j {
        let h = (i + j) / 2;
        if f(h) {
            j = h;
        } else {
            i = h + 1;
        }
    }
    i
}

fn sort_buckets(buckets: &mut [Bucket]) {
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// Merges buckets with the same upper bound (input sorted).
fn coalesce(buckets: Vec<Bucket>) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match out.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => out.push(b),
        }
    }
    out
}

/// Go's `util/almost.Equal`.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Silently evens out numerically insignificant differences between successive buckets,
/// then removes any decrease (Prometheus's `ensureMonotonicAndIgnoreSmallDeltas`).
fn ensure_monotonic(buckets: &mut [Bucket], tolerance: f64) {
    let Some(first) = buckets.first() else {
        return;
    };
    let mut prev = first.count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, tolerance) || curr < prev {
            b.count = prev;
            continue;
        }
        prev = curr;
    }
}

/// Prometheus's `BucketQuantile`: linear interpolation within the bucket holding the rank,
/// a lower bound of 0 for the first bucket when its upper bound is positive (else that upper
/// bound), the second-highest bound when the rank is in the +Inf bucket. NaN without a +Inf
/// bucket, with fewer than two buckets, or without observations; -Inf for q < 0, +Inf for
/// q > 1.
pub(super) fn bucket_quantile(q: f64, mut buckets: Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    sort_buckets(&mut buckets);
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return f64::NAN;
    }
    let mut buckets = coalesce(buckets);
    ensure_monotonic(&mut buckets, SMALL_DELTA_TOLERANCE);

    let n = buckets.len();
    if n < 2 {
        return f64::NAN;
    }
    let observations = buckets[n - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = search(n - 1, |i| buckets[i].count >= rank);
    if b == n - 1 {
        return buckets[n - 2].upper;
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return buckets[0].upper;
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].upper;
    let mut count = buckets[b].count;
    if b > 0 {
        bucket_start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

/// Prometheus's `BucketFraction`: the fraction of observations between `lower` and `upper`,
/// interpolating linearly within buckets (the first bucket starts at 0 when its upper bound
/// is positive, else at -Inf and then is not interpolated; nothing is interpolated in the
/// +Inf bucket). NaN without a +Inf bucket, without observations or for NaN bounds; 0 when
/// `lower >= upper`.
pub(super) fn bucket_fraction(lower: f64, upper: f64, mut buckets: Vec<Bucket>) -> f64 {
    sort_buckets(&mut buckets);
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return f64::NAN;
    }
    let buckets = coalesce(buckets);
    let count = buckets[buckets.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }

    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].upper <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].upper;
        }
        let upper_bound = b.upper;
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                b.count
            } else {
                rank + (b.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}
