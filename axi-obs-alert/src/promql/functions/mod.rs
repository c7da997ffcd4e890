//! PromQL functions over evaluated arguments.
//!
//! Each function follows Prometheus 3's `promql/functions.go` (without the delayed name
//! removal feature): the same special cases, the same floating-point operations in the same
//! order (Kahan summation, Go's `math.Max`/`math.Min` NaN rules, `math.Floor`-based rounding)
//! and the same label handling.

mod date;
mod histogram;
mod label;
mod over_time;

use super::numeric::kahan_inc;

use promql_parser::parser::Call;

use super::EvalError;
use super::value::{Labels, METRIC_NAME, Point, Sample, Series, Value};

/// An evaluated function argument.
pub(crate) enum Arg<'a> {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Range(RangeArg<'a>),
}

/// A range-vector argument: the series with their points in the window `(start, end]`
/// (milliseconds; staleness markers already removed).
pub(crate) struct RangeArg<'a> {
    pub series: Windows<'a>,
    pub start: i64,
    pub end: i64,
}

/// A visitor of one series' labels and points (never empty) in a range argument.
pub(crate) type WindowVisitor<'v> = dyn FnMut(&Labels, &[Point]) + 'v;

/// Reads a range selector's series, calling the visitor with each.
pub(crate) type ReadWindows<'a> = Box<dyn Fn(&mut WindowVisitor<'_>) -> Result<()> + 'a>;

/// The series of a range argument.
pub(crate) enum Windows<'a> {
    /// Evaluated already (a subquery), series without points left out.
    Owned(Vec<Series>),
    /// Read when visited, each series' points lent by the storage where it can: a range
    /// selector. Fails when reading exceeds the query's limits.
    Lent(ReadWindows<'a>),
}

impl Windows<'_> {
    /// Calls `visit` with every series and its points, in order.
    pub(crate) fn for_each(&self, visit: &mut WindowVisitor<'_>) -> Result<()> {
        match self {
            Windows::Owned(series) => {
                for s in series.iter().filter(|s| !s.points.is_empty()) {
                    visit(&s.labels, &s.points);
                }
                Ok(())
            }
            Windows::Lent(read) => read(visit),
        }
    }
}

/// What a function may need besides its arguments.
pub(crate) struct CallCtx<'a> {
    /// The evaluation time (ms).
    pub t: i64,
    /// The call as parsed (for `absent`, which takes labels from the argument's matchers).
    pub call: &'a Call,
}

type Result<T> = std::result::Result<T, EvalError>;

/// Calls the function named in `ctx.call` with evaluated `args` (in the call's order).
/// Returns a vector (samples stamped `ctx.t`) or, for `scalar`, `time` and friends, a scalar.
pub(crate) fn call(ctx: &CallCtx<'_>, args: Vec<Arg<'_>>) -> Result<Value> {
    let name = ctx.call.func.name;
    let t = ctx.t;
    let mut a = Args::new(name, args);
    let value = match name {
        // Scalars.
        "time" => Value::Scalar {
            t,
            v: t as f64 / 1000.0,
        },
        "pi" => Value::Scalar {
            t,
            v: std::f64::consts::PI,
        },
        "scalar" => {
            let v = a.vector()?;
            Value::Scalar {
                t,
                v: if v.len() == 1 { v[0].v } else { f64::NAN },
            }
        }
        "vector" => Value::Vector(vec![Sample {
            labels: Labels::new(),
            t,
            v: a.scalar()?,
        }]),

        // Simple element-wise functions (all drop the metric name).
        "abs" => map_values(a.vector()?, t, f64::abs),
        "ceil" => map_values(a.vector()?, t, f64::ceil),
        "floor" => map_values(a.vector()?, t, f64::floor),
        "exp" => map_values(a.vector()?, t, f64::exp),
        "sqrt" => map_values(a.vector()?, t, f64::sqrt),
        "ln" => map_values(a.vector()?, t, f64::ln),
        "log2" => map_values(a.vector()?, t, f64::log2),
        "log10" => map_values(a.vector()?, t, f64::log10),
        "sin" => map_values(a.vector()?, t, f64::sin),
        "cos" => map_values(a.vector()?, t, f64::cos),
        "tan" => map_values(a.vector()?, t, f64::tan),
        "asin" => map_values(a.vector()?, t, f64::asin),
        "acos" => map_values(a.vector()?, t, f64::acos),
        "atan" => map_values(a.vector()?, t, f64::atan),
        "sinh" => map_values(a.vector()?, t, f64::sinh),
        "cosh" => map_values(a.vector()?, t, f64::cosh),
        "tanh" => map_values(a.vector()?, t, f64::tanh),
        "asinh" => map_values(a.vector()?, t, f64::asinh),
        "acosh" => map_values(a.vector()?, t, f64::acosh),
        "atanh" => map_values(a.vector()?, t, f64::atanh),
        "rad" => map_values(a.vector()?, t, |v| v * std::f64::consts::PI / 180.0),
        "deg" => map_values(a.vector()?, t, |v| v * 180.0 / std::f64::consts::PI),
        "sgn" => map_values(a.vector()?, t, sgn),
        "round" => {
            let v = a.vector()?;
            let to_nearest = a.opt_scalar()?.unwrap_or(1.0);
            // Inverting seems to cause fewer floating point accuracy issues (Prometheus).
            let inverse = 1.0 / to_nearest;
            map_values(v, t, |x| (x * inverse + 0.5).floor() / inverse)
        }
        "clamp" => {
            let v = a.vector()?;
            let min = a.scalar()?;
            let max = a.scalar()?;
            clamp(v, min, max, t)
        }
        "clamp_max" => {
            let v = a.vector()?;
            let max = a.scalar()?;
            clamp(v, f64::NEG_INFINITY, max, t)
        }
        "clamp_min" => {
            let v = a.vector()?;
            let min = a.scalar()?;
            clamp(v, min, f64::INFINITY, t)
        }
        "timestamp" => Value::Vector(
            a.vector()?
                .into_iter()
                .map(|s| Sample {
                    labels: drop_name(s.labels),
                    t,
                    v: s.t as f64 / 1000.0,
                })
                .collect(),
        ),
        "sort" => {
            let mut v = a.vector()?;
            // Ascending, NaN last (Prometheus sorts descending with NaN first, reversed).
            v.sort_by(|x, y| nan_last(x.v, y.v, false));
            Value::Vector(restamp(v, t))
        }
        "sort_desc" => {
            let mut v = a.vector()?;
            v.sort_by(|x, y| nan_last(x.v, y.v, true));
            Value::Vector(restamp(v, t))
        }

        // Date functions.
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "hour" | "minute" => {
            let v = a.opt_vector()?;
            date::call(name, v, t)
        }

        // Labels.
        "label_replace" => {
            let v = a.vector()?;
            let dst = a.string()?;
            let repl = a.string()?;
            let src = a.string()?;
            let re = a.string()?;
            Value::Vector(restamp(label::replace(v, &dst, &repl, &src, &re)?, t))
        }
        "label_join" => {
            let v = a.vector()?;
            let dst = a.string()?;
            let sep = a.string()?;
            let mut srcs = Vec::new();
            while a.remaining() > 0 {
                srcs.push(a.string()?);
            }
            Value::Vector(restamp(label::join(v, &dst, &sep, &srcs)?, t))
        }
        "absent" => {
            let v = a.vector()?;
            if v.is_empty() {
                Value::Vector(vec![Sample {
                    labels: label::absent_labels(ctx.call.args.args.first().map(|e| &**e)),
                    t,
                    v: 1.0,
                }])
            } else {
                Value::Vector(Vec::new())
            }
        }
        "absent_over_time" => {
            let mut present = false;
            a.range()?.series.for_each(&mut |_, _| present = true)?;
            if present {
                Value::Vector(Vec::new())
            } else {
                Value::Vector(vec![Sample {
                    labels: label::absent_labels(ctx.call.args.args.first().map(|e| &**e)),
                    t,
                    v: 1.0,
                }])
            }
        }

        // Classic histograms.
        "histogram_quantile" => {
            let q = a.scalar()?;
            let v = a.vector()?;
            histogram::quantile(q, v, t)
        }
        "histogram_fraction" => {
            let lower = a.scalar()?;
            let upper = a.scalar()?;
            let v = a.vector()?;
            histogram::fraction(lower, upper, v, t)
        }
        // These only look at native histogram samples, which this engine never has: Prometheus
        // ignores float samples in them, so the result is always empty.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            a.vector()?;
            Value::Vector(Vec::new())
        }

        // Range-vector functions.
        "rate" => over_time::rate(a.range()?, t, true, true)?,
        "increase" => over_time::rate(a.range()?, t, true, false)?,
        "delta" => over_time::rate(a.range()?, t, false, false)?,
        "irate" => over_time::instant_rate(a.range()?, t, true)?,
        "idelta" => over_time::instant_rate(a.range()?, t, false)?,
        "deriv" => over_time::deriv(a.range()?, t)?,
        "predict_linear" => {
            let r = a.range()?;
            let duration = a.scalar()?;
            over_time::predict_linear(r, duration, t)?
        }
        "resets" => over_time::resets(a.range()?, t)?,
        "changes" => over_time::changes(a.range()?, t)?,
        "avg_over_time" => over_time::aggregate(a.range()?, t, false, over_time::avg)?,
        "sum_over_time" => over_time::aggregate(a.range()?, t, false, over_time::sum)?,
        "count_over_time" => over_time::aggregate(a.range()?, t, false, |p| p.len() as f64)?,
        "min_over_time" => over_time::aggregate(a.range()?, t, false, over_time::min)?,
        "max_over_time" => over_time::aggregate(a.range()?, t, false, over_time::max)?,
        "stddev_over_time" => {
            over_time::aggregate(a.range()?, t, false, |p| over_time::variance(p).sqrt())?
        }
        "stdvar_over_time" => over_time::aggregate(a.range()?, t, false, over_time::variance)?,
        "last_over_time" => over_time::aggregate(a.range()?, t, true, |p| p[p.len() - 1].v)?,
        "first_over_time" => over_time::aggregate(a.range()?, t, true, |p| p[0].v)?,
        "present_over_time" => over_time::aggregate(a.range()?, t, false, |_| 1.0)?,
        "quantile_over_time" => {
            let q = a.scalar()?;
            let r = a.range()?;
            over_time::aggregate(r, t, false, |p| {
                over_time::quantile(q, p.iter().map(|p| p.v).collect())
            })?
        }

        _ if ctx.call.func.experimental => {
            return Err(EvalError::new(format!(
                "unsupported: the experimental function {name}()"
            )));
        }
        _ => {
            return Err(EvalError::new(format!(
                "unsupported: function {name}() is not implemented"
            )));
        }
    };
    if a.remaining() > 0 {
        return Err(EvalError::new(format!(
            "too many arguments for {name}(): {} left over",
            a.remaining()
        )));
    }
    Ok(value)
}

/// The evaluated arguments, taken in order with their expected type.
struct Args<'a> {
    name: &'static str,
    index: usize,
    it: std::vec::IntoIter<Arg<'a>>,
}

impl<'a> Args<'a> {
    fn new(name: &'static str, args: Vec<Arg<'a>>) -> Self {
        Args {
            name,
            index: 0,
            it: args.into_iter(),
        }
    }

    fn remaining(&self) -> usize {
        self.it.len()
    }

    fn next(&mut self, want: &str) -> Result<Arg<'a>> {
        self.index += 1;
        self.it.next().ok_or_else(|| {
            EvalError::new(format!(
                "missing argument {} ({want}) for {}()",
                self.index, self.name
            ))
        })
    }

    fn wrong(&self, want: &str, got: &Arg<'_>) -> EvalError {
        let got = match got {
            Arg::Scalar(_) => "scalar",
            Arg::String(_) => "string",
            Arg::Vector(_) => "instant vector",
            Arg::Range(_) => "range vector",
        };
        EvalError::new(format!(
            "expected {want} as argument {} of {}(), got {got}",
            self.index, self.name
        ))
    }

    fn scalar(&mut self) -> Result<f64> {
        match self.next("scalar")? {
            Arg::Scalar(v) => Ok(v),
            other => Err(self.wrong("scalar", &other)),
        }
    }

    fn opt_scalar(&mut self) -> Result<Option<f64>> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        self.scalar().map(Some)
    }

    fn string(&mut self) -> Result<String> {
        match self.next("string")? {
            Arg::String(s) => Ok(s),
            other => Err(self.wrong("string", &other)),
        }
    }

    fn vector(&mut self) -> Result<Vec<Sample>> {
        match self.next("instant vector")? {
            Arg::Vector(v) => Ok(v),
            other => Err(self.wrong("instant vector", &other)),
        }
    }

    fn opt_vector(&mut self) -> Result<Option<Vec<Sample>>> {
        if self.remaining() == 0 {
            return Ok(None);
        }
        self.vector().map(Some)
    }

    fn range(&mut self) -> Result<RangeArg<'a>> {
        match self.next("range vector")? {
            Arg::Range(r) => Ok(r),
            other => Err(self.wrong("range vector", &other)),
        }
    }
}

/// The labels without `__name__`.
fn drop_name(mut labels: Labels) -> Labels {
    labels.remove(METRIC_NAME);
    labels
}

/// Sets every sample's timestamp to the evaluation time.
fn restamp(mut v: Vec<Sample>, t: i64) -> Vec<Sample> {
    for s in &mut v {
        s.t = t;
    }
    v
}

/// Applies `f` to every value, dropping the metric name (Prometheus's `simpleFloatFunc`).
fn map_values(v: Vec<Sample>, t: i64, f: impl Fn(f64) -> f64) -> Value {
    Value::Vector(
        v.into_iter()
            .map(|s| Sample {
                labels: drop_name(s.labels),
                t,
                v: f(s.v),
            })
            .collect(),
    )
}

fn sgn(v: f64) -> f64 {
    if v < 0.0 {
        -1.0
    } else if v > 0.0 {
        1.0
    } else {
        v
    }
}

/// `clamp`: nothing when `max < min`, else `math.Max(min, math.Min(max, v))`.
fn clamp(v: Vec<Sample>, min: f64, max: f64, t: i64) -> Value {
    if max < min {
        return Value::Vector(Vec::new());
    }
    map_values(v, t, |x| go_max(min, go_min(max, x)))
}

/// Go's `math.Max`: +Inf wins over NaN, NaN over everything else, +0 over -0.
pub(crate) fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: -Inf wins over NaN, NaN over everything else, -0 over +0.
pub(crate) fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() { x } else { y }
    } else if x < y {
        x
    } else {
        y
    }
}

/// Orders values ascending (or descending) with NaN always last.
fn nan_last(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

#[cfg(test)]
mod tests;
