//! Date functions: the sample value is seconds since the epoch, read in UTC.

use super::drop_name;
use crate::civil::{civil_from_days, days_from_civil};
use crate::promql::value::{Labels, Sample, Value};

/// A civil date and time of day in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DateTime {
    pub(super) year: i64,
    pub(super) month: u32,
    pub(super) day: u32,
    pub(super) hour: u32,
    pub(super) minute: u32,
    /// 0 = Sunday.
    pub(super) weekday: u32,
    /// 1-based.
    pub(super) day_of_year: u32,
}

impl DateTime {
    /// The UTC date and time `secs` seconds after the Unix epoch.
    pub(super) fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
            day_of_year: (days - days_from_civil(year, 1, 1) + 1) as u32,
        }
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub(super) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Go's `int64(f)` on amd64: truncation, with NaN and out-of-range values giving
/// `math.MinInt64`.
fn go_int64(f: f64) -> i64 {
    if f.is_nan() || !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

fn field(name: &str, d: DateTime) -> f64 {
    f64::from(match name {
        "year" => return d.year as f64,
        "month" => d.month,
        "day_of_month" => d.day,
        "day_of_week" => d.weekday,
        "day_of_year" => d.day_of_year,
        "days_in_month" => days_in_month(d.year, d.month),
        "hour" => d.hour,
        _ => d.minute,
    })
}

/// A date function named `name` over `v` (dropping metric names), or over the evaluation
/// time when the argument is omitted.
pub(super) fn call(name: &str, v: Option<Vec<Sample>>, t: i64) -> Value {
    match v {
        None => Value::Vector(vec![Sample {
            labels: Labels::new(),
            t,
            v: field(name, DateTime::from_unix(t / 1000)),
        }]),
        Some(v) => Value::Vector(
            v.into_iter()
                .map(|s| Sample {
                    labels: drop_name(s.labels),
                    t,
                    v: field(name, DateTime::from_unix(go_int64(s.v))),
                })
                .collect(),
        ),
    }
}
