//! Functions over range vectors: `rate` and friends, `deriv`, `predict_linear`, `resets`,
//! `changes` and the `*_over_time` aggregations.

pub(super) use crate::promql::numeric::quantile;

use super::{RangeArg, Result, kahan_inc};
use crate::promql::value::{Point, Sample, Value};

/// One output sample per series with points, its value from `f` (`None`: no sample). The
/// metric name is dropped unless `keep_name`.
fn per_series(
    r: RangeArg<'_>,
    t: i64,
    keep_name: bool,
    mut f: impl FnMut(&[Point]) -> Option<f64>,
) -> Result<Value> {
    let mut out = Vec::new();
    r.series.for_each(&mut |labels, points| {
        if let Some(v) = f(points) {
            let labels = if keep_name {
                labels.clone()
            } else {
                labels.without_name()
            };
            out.push(Sample { labels, t, v });
        }
    })?;
    Ok(Value::Vector(out))
}

/// An aggregation over every series' points (never empty when `f` is called).
pub(super) fn aggregate(
    r: RangeArg<'_>,
    t: i64,
    keep_name: bool,
    f: impl Fn(&[Point]) -> f64,
) -> Result<Value> {
    per_series(r, t, keep_name, |p| Some(f(p)))
}

/// `rate`, `increase` and `delta`: Prometheus's `extrapolatedRate`.
pub(super) fn rate(r: RangeArg<'_>, t: i64, is_counter: bool, is_rate: bool) -> Result<Value> {
    let (start, end) = (r.start, r.end);
    per_series(r, t, false, |p| {
        extrapolated_rate(p, start, end, is_counter, is_rate)
    })
}

/// The increase over the window `(range_start, range_end]`, extrapolated to the window's
/// boundaries when the first and last samples are close enough to them (within 1.1 average
/// sample intervals), else by half an average interval; counters are corrected for resets
/// and never extrapolated below zero. Per second when `is_rate`.
pub(super) fn extrapolated_rate(
    points: &[Point],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let first = points[0];
    let last = points[points.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        for w in points.windows(2) {
            if w[1].v < w[0].v {
                result += w[0].v;
            }
        }
    }
    let mut duration_to_start = (first.t - range_start) as f64 / 1000.0;
    let mut duration_to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled_interval = (last.t - first.t) as f64 / 1000.0;
    let average_between_samples = sampled_interval / (points.len() - 1) as f64;

    let threshold = average_between_samples * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average_between_samples / 2.0;
    }
    if is_counter {
        // Counters cannot be negative: don't extrapolate past the zero point.
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && first.v >= 0.0 {
            duration_to_zero = sampled_interval * (first.v / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average_between_samples / 2.0;
    }
    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if is_rate {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` (`is_rate`) and `idelta`: from the last two points.
pub(super) fn instant_rate(r: RangeArg<'_>, t: i64, is_rate: bool) -> Result<Value> {
    per_series(r, t, false, |p| instant_value(p, is_rate))
}

fn instant_value(points: &[Point], is_rate: bool) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let prev = points[points.len() - 2];
    let last = points[points.len() - 1];
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    let mut v = last.v;
    // A counter reset leaves the last value as the increase.
    if !is_rate || last.v >= prev.v || last.v.is_nan() || prev.v.is_nan() {
        v = last.v - prev.v;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares regression with Kahan summation: the slope (per second) and the intercept
/// at `intercept_time` (Prometheus's `linearRegression`).
pub(super) fn linear_regression(points: &[Point], intercept_time: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    let init_y = points[0].v;
    let mut const_y = true;
    for (i, p) in points.iter().enumerate() {
        if const_y && i > 0 && p.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(p.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * p.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;

    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// `deriv`: the regression slope, needing two points.
pub(super) fn deriv(r: RangeArg<'_>, t: i64) -> Result<Value> {
    per_series(r, t, false, |p| {
        // An arbitrary time near the samples avoids floating point accuracy issues.
        (p.len() >= 2).then(|| linear_regression(p, p[0].t).0)
    })
}

/// `predict_linear`: the regression line at the evaluation time plus `duration` seconds.
pub(super) fn predict_linear(r: RangeArg<'_>, duration: f64, t: i64) -> Result<Value> {
    per_series(r, t, false, |p| {
        (p.len() >= 2).then(|| {
            let (slope, intercept) = linear_regression(p, t);
            slope * duration + intercept
        })
    })
}

/// `resets`: how often a value is below its predecessor.
pub(super) fn resets(r: RangeArg<'_>, t: i64) -> Result<Value> {
    aggregate(r, t, false, |p| {
        p.windows(2).filter(|w| w[1].v < w[0].v).count() as f64
    })
}

/// `changes`: how often a value differs from its predecessor (NaN to NaN is no change).
pub(super) fn changes(r: RangeArg<'_>, t: i64) -> Result<Value> {
    aggregate(r, t, false, |p| {
        p.windows(2)
            .filter(|w| w[1].v != w[0].v && !(w[1].v.is_nan() && w[0].v.is_nan()))
            .count() as f64
    })
}

/// `sum_over_time`: a Kahan sum.
pub(super) fn sum(points: &[Point]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for p in points {
        (sum, c) = kahan_inc(p.v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

/// `avg_over_time`: a Kahan sum divided by the count, switching to an incremental mean once
/// the sum would overflow.
pub(super) fn avg(points: &[Point]) -> f64 {
    let (mut sum, mut count) = (points[0].v, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, p) in points[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (new_sum, new_c) = kahan_inc(p.v, sum, c);
            if !new_sum.is_infinite() {
                (sum, c) = (new_sum, new_c);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(p.v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// `min_over_time`: NaN only when all values are NaN.
pub(super) fn min(points: &[Point]) -> f64 {
    let mut m = points[0].v;
    for p in points {
        if p.v < m || m.is_nan() {
            m = p.v;
        }
    }
    m
}

/// `max_over_time`: NaN only when all values are NaN.
pub(super) fn max(points: &[Point]) -> f64 {
    let mut m = points[0].v;
    for p in points {
        if p.v > m || m.is_nan() {
            m = p.v;
        }
    }
    m
}

/// `stdvar_over_time`: Welford's algorithm with Kahan-compensated mean and sum of squares.
pub(super) fn variance(points: &[Point]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut c_mean) = (0.0, 0.0);
    let (mut aux, mut c_aux) = (0.0, 0.0);
    for p in points {
        count += 1.0;
        let delta = p.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}
