//! Go `time` formatting in UTC without external crates: `Time.String`, `Time.Format`,
//! `Duration.String`, and Prometheus's `model.ParseDuration`.

use super::value::GoTime;

const NANOS_PER_SEC: i128 = 1_000_000_000;

pub(crate) use crate::civil::{civil_from_days, days_from_civil};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Broken-down UTC time.
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) nanos: u32,
    pub(crate) weekday: usize,
    pub(crate) yday: u32,
}

pub(crate) fn civil(t: GoTime) -> Civil {
    let days = t.secs.div_euclid(86_400);
    let sod = t.secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    let weekday = (days + 4).rem_euclid(7) as usize;
    let yday = (days - days_from_civil(year, 1, 1) + 1) as u32;
    Civil {
        year,
        month,
        day,
        hour: sod / 3600,
        minute: sod / 60 % 60,
        second: sod % 60,
        nanos: t.nanos,
        weekday,
        yday,
    }
}

/// English month name for 1..=12.
pub(crate) fn month_name(m: u32) -> &'static str {
    MONTHS[(m as usize).clamp(1, 12) - 1]
}

/// English weekday name for 0 (Sunday)..=6.
pub(crate) fn weekday_name(d: usize) -> &'static str {
    DAYS[d % 7]
}

/// Go's `Time.String()` for a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub(crate) fn time_string(t: GoTime) -> String {
    format(t, "2006-01-02 15:04:05.999999999 -0700 MST")
}

#[derive(Clone, Copy, PartialEq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TZ,
    Iso8601TZ(&'static str),
    NumTZ(&'static str),
    FracSecond0(usize, char),
    FracSecond9(usize, char),
}

fn starts_with_lower(s: &str) -> bool {
    s.as_bytes().first().is_some_and(|c| c.is_ascii_lowercase())
}

/// Go's `nextStdChunk`: (prefix, std, suffix).
fn next_std_chunk(layout: &str) -> (&str, Option<Std>, &str) {
    let b = layout.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i < n {
        let rest = &layout[i..];
        match b[i] {
            b'J' if rest.starts_with("Jan") => {
                if rest.starts_with("January") {
                    return (&layout[..i], Some(Std::LongMonth), &layout[i + 7..]);
                }
                if !starts_with_lower(&layout[i + 3..]) {
                    return (&layout[..i], Some(Std::Month), &layout[i + 3..]);
                }
            }
            b'M' => {
                if rest.starts_with("Mon") {
                    if rest.starts_with("Monday") {
                        return (&layout[..i], Some(Std::LongWeekDay), &layout[i + 6..]);
                    }
                    if !starts_with_lower(&layout[i + 3..]) {
                        return (&layout[..i], Some(Std::WeekDay), &layout[i + 3..]);
                    }
                }
                if rest.starts_with("MST") {
                    return (&layout[..i], Some(Std::TZ), &layout[i + 3..]);
                }
            }
            b'0' => {
                if i + 1 < n && (b'1'..=b'6').contains(&b[i + 1]) {
                    let std = [
                        Std::ZeroMonth,
                        Std::ZeroDay,
                        Std::ZeroHour12,
                        Std::ZeroMinute,
                        Std::ZeroSecond,
                        Std::Year,
                    ][(b[i + 1] - b'1') as usize];
                    return (&layout[..i], Some(std), &layout[i + 2..]);
                }
                if rest.starts_with("002") {
                    return (&layout[..i], Some(Std::ZeroYearDay), &layout[i + 3..]);
                }
            }
            b'1' => {
                if rest.starts_with("15") {
                    return (&layout[..i], Some(Std::Hour), &layout[i + 2..]);
                }
                return (&layout[..i], Some(Std::NumMonth), &layout[i + 1..]);
            }
            b'2' => {
                if rest.starts_with("2006") {
                    return (&layout[..i], Some(Std::LongYear), &layout[i + 4..]);
                }
                return (&layout[..i], Some(Std::Day), &layout[i + 1..]);
            }
            b'_' => {
                if rest.starts_with("_2") {
                    if rest.starts_with("_2006") {
                        return (&layout[..i + 1], Some(Std::LongYear), &layout[i + 5..]);
                    }
                    return (&layout[..i], Some(Std::UnderDay), &layout[i + 2..]);
                }
                if rest.starts_with("__2") {
                    return (&layout[..i], Some(Std::UnderYearDay), &layout[i + 3..]);
                }
            }
            b'3' => return (&layout[..i], Some(Std::Hour12), &layout[i + 1..]),
            b'4' => return (&layout[..i], Some(Std::Minute), &layout[i + 1..]),
            b'5' => return (&layout[..i], Some(Std::Second), &layout[i + 1..]),
            b'P' if rest.starts_with("PM") => {
                return (&layout[..i], Some(Std::PM), &layout[i + 2..]);
            }
            b'p' if rest.starts_with("pm") => {
                return (&layout[..i], Some(Std::Pm), &layout[i + 2..]);
            }
            b'-' => {
                for pat in ["-070000", "-07:00:00", "-0700", "-07:00", "-07"] {
                    if rest.starts_with(pat) {
                        return (
                            &layout[..i],
                            Some(Std::NumTZ(pat)),
                            &layout[i + pat.len()..],
                        );
                    }
                }
            }
            b'Z' => {
                for pat in ["Z070000", "Z07:00:00", "Z0700", "Z07:00", "Z07"] {
                    if rest.starts_with(pat) {
                        return (
                            &layout[..i],
                            Some(Std::Iso8601TZ(pat)),
                            &layout[i + pat.len()..],
                        );
                    }
                }
            }
            b'.' | b',' if i + 1 < n && (b[i + 1] == b'0' || b[i + 1] == b'9') => {
                let ch = b[i + 1];
                let mut j = i + 1;
                while j < n && b[j] == ch {
                    j += 1;
                }
                if !(j < n && b[j].is_ascii_digit()) {
                    let digits = j - (i + 1);
                    let sep = b[i] as char;
                    let std = if ch == b'0' {
                        Std::FracSecond0(digits, sep)
                    } else {
                        Std::FracSecond9(digits, sep)
                    };
                    return (&layout[..i], Some(std), &layout[j..]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    (layout, None, "")
}

fn pad_int(out: &mut String, v: i64, width: usize) {
    let s = v.unsigned_abs().to_string();
    if v < 0 {
        out.push('-');
    }
    for _ in s.len()..width {
        out.push('0');
    }
    out.push_str(&s);
}

/// Go's `Time.Format(layout)` for a UTC time.
pub(crate) fn format(t: GoTime, layout: &str) -> String {
    let c = civil(t);
    let mut out = String::new();
    let mut layout = layout;
    loop {
        let (prefix, std, suffix) = next_std_chunk(layout);
        out.push_str(prefix);
        let Some(std) = std else { break };
        layout = suffix;
        match std {
            Std::Year => pad_int(&mut out, c.year.rem_euclid(100), 2),
            Std::LongYear => pad_int(&mut out, c.year, 4),
            Std::Month => out.push_str(&month_name(c.month)[..3]),
            Std::LongMonth => out.push_str(month_name(c.month)),
            Std::NumMonth => pad_int(&mut out, c.month as i64, 0),
            Std::ZeroMonth => pad_int(&mut out, c.month as i64, 2),
            Std::WeekDay => out.push_str(&weekday_name(c.weekday)[..3]),
            Std::LongWeekDay => out.push_str(weekday_name(c.weekday)),
            Std::Day => pad_int(&mut out, c.day as i64, 0),
            Std::UnderDay => {
                if c.day < 10 {
                    out.push(' ');
                }
                pad_int(&mut out, c.day as i64, 0);
            }
            Std::ZeroDay => pad_int(&mut out, c.day as i64, 2),
            Std::UnderYearDay => {
                if c.yday < 100 {
                    out.push(' ');
                    if c.yday < 10 {
                        out.push(' ');
                    }
                }
                pad_int(&mut out, c.yday as i64, 0);
            }
            Std::ZeroYearDay => pad_int(&mut out, c.yday as i64, 3),
            Std::Hour => pad_int(&mut out, c.hour as i64, 2),
            Std::Hour12 | Std::ZeroHour12 => {
                let mut h = c.hour % 12;
                if h == 0 {
                    h = 12;
                }
                pad_int(&mut out, h as i64, if std == Std::Hour12 { 0 } else { 2 });
            }
            Std::Minute => pad_int(&mut out, c.minute as i64, 0),
            Std::ZeroMinute => pad_int(&mut out, c.minute as i64, 2),
            Std::Second => pad_int(&mut out, c.second as i64, 0),
            Std::ZeroSecond => pad_int(&mut out, c.second as i64, 2),
            Std::PM => out.push_str(if c.hour >= 12 { "PM" } else { "AM" }),
            Std::Pm => out.push_str(if c.hour >= 12 { "pm" } else { "am" }),
            Std::TZ => out.push_str("UTC"),
            Std::Iso8601TZ(_) => out.push('Z'),
            Std::NumTZ(pat) => out.push_str(match pat {
                "-070000" => "+000000",
                "-07:00:00" => "+00:00:00",
                "-0700" => "+0000",
                "-07:00" => "+00:00",
                _ => "+00",
            }),
            Std::FracSecond0(n, sep) => {
                let digits = format!("{:09}", c.nanos);
                out.push(sep);
                out.push_str(&digits[..n.min(9)]);
            }
            Std::FracSecond9(n, sep) => {
                let digits = format!("{:09}", c.nanos);
                let d = &digits[..n.min(9)];
                let d = d.trim_end_matches('0');
                if !d.is_empty() {
                    out.push(sep);
                    out.push_str(d);
                }
            }
        }
    }
    out
}

/// `fmtFrac` of Go's time package: fraction of v/10^prec without trailing zeros.
fn fmt_frac(v: u64, prec: u32) -> (String, u64) {
    let mut v = v;
    let mut digits = Vec::new();
    let mut print = false;
    for _ in 0..prec {
        let digit = v % 10;
        print = print || digit != 0;
        if print {
            digits.push((b'0' + digit as u8) as char);
        }
        v /= 10;
    }
    let mut s = String::new();
    if print {
        s.push('.');
        s.extend(digits.iter().rev());
    }
    (s, v)
}

/// Go's `Duration.String()`, e.g. `1h2m0.01s`, `30m0s`, `1.5µs`, `0s`.
pub(crate) fn duration_string(d: i64) -> String {
    let neg = d < 0;
    let u = d.unsigned_abs();
    let mut out;
    if u < 1_000_000_000 {
        if u == 0 {
            return "0s".into();
        }
        let (prec, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let (frac, int) = fmt_frac(u, prec);
        out = format!("{int}{frac}{unit}");
    } else {
        let (frac, mut u) = fmt_frac(u, 9);
        out = format!("{}{frac}s", u % 60);
        u /= 60;
        if u > 0 {
            out = format!("{}m{out}", u % 60);
            u /= 60;
            if u > 0 {
                out = format!("{u}h{out}");
            }
        }
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// Prometheus's `model.ParseDuration` (units y, w, d, h, m, s, ms in this order; `0` allowed),
/// accepting a leading `-`. Returns nanoseconds.
pub(crate) fn parse_prom_duration(s: &str) -> Result<i64, String> {
    match s {
        "0" => return Ok(0),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let orig = s;
    let invalid = || format!("not a valid duration string: {}", super::gofmt::quote(orig));
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut dur: u128 = 0;
    let mut last_pos = 0;
    while !rest.is_empty() {
        let i = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if i == 0 {
            return Err(invalid());
        }
        let v: u64 = rest[..i].parse().map_err(|_| invalid())?;
        rest = &rest[i..];
        let j = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        if j == 0 {
            return Err(invalid());
        }
        let unit = &rest[..j];
        rest = &rest[j..];
        let (pos, mult): (u32, u128) = match unit {
            "y" => (1, 365 * 24 * 3600 * NANOS_PER_SEC as u128),
            "w" => (2, 7 * 24 * 3600 * NANOS_PER_SEC as u128),
            "d" => (3, 24 * 3600 * NANOS_PER_SEC as u128),
            "h" => (4, 3600 * NANOS_PER_SEC as u128),
            "m" => (5, 60 * NANOS_PER_SEC as u128),
            "s" => (6, NANOS_PER_SEC as u128),
            "ms" => (7, 1_000_000),
            _ => {
                return Err(format!(
                    "unknown unit {} in duration {}",
                    super::gofmt::quote(unit),
                    super::gofmt::quote(orig)
                ));
            }
        };
        if pos <= last_pos {
            return Err(invalid());
        }
        last_pos = pos;
        dur += v as u128 * mult;
        if dur > i64::MAX as u128 {
            return Err("duration out of range".into());
        }
    }
    let d = dur as i64;
    Ok(if neg { -d } else { d })
}
