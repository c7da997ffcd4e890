//! Alertmanager's time intervals (`time_intervals:`, referenced by a route's
//! `mute_time_intervals` and `active_time_intervals`): parsed with Alertmanager's rules and
//! error texts, matched as its `timeinterval.ContainsTime` matches.
//!
//! An interval is a list of specs; an instant is in it when it is in any spec. A spec's
//! fields (`times`, `weekdays`, `days_of_month`, `months`, `years`) each match when the
//! instant, in the spec's `location` (UTC when absent; `Local` the machine's zone; any IANA
//! name from the system's time zone database), is in one of the field's ranges; an absent
//! field matches anything.

use serde::{Deserialize, Deserializer};

/// A named time interval: `name` and its specs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeInterval {
    /// What routes call it.
    pub name: String,
    /// Its specs; an instant in any of them is in the interval.
    #[serde(default)]
    pub time_intervals: Vec<IntervalSpec>,
}

impl TimeInterval {
    /// Whether `unix_ms` is in the interval.
    pub fn contains(&self, unix_ms: i64) -> bool {
        self.time_intervals.iter().any(|s| s.contains(unix_ms))
    }
}

/// One spec of an interval (Alertmanager's `time_interval_spec`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalSpec {
    /// Minutes of the day, `[start, end)`.
    #[serde(default)]
    pub times: Option<Vec<TimeRange>>,
    /// Days of the week, Sunday 0.
    #[serde(default)]
    pub weekdays: Option<Vec<Range<WeekdayKind>>>,
    /// Days of the month, negative ones counted from its end.
    #[serde(default)]
    pub days_of_month: Option<Vec<Range<DayOfMonthKind>>>,
    /// Months, January 1.
    #[serde(default)]
    pub months: Option<Vec<Range<MonthKind>>>,
    /// Years.
    #[serde(default)]
    pub years: Option<Vec<Range<YearKind>>>,
    /// The zone the fields are read in (UTC when absent).
    #[serde(default)]
    pub location: Option<Location>,
}

impl IntervalSpec {
    /// Whether `unix_ms` is in the spec.
    pub fn contains(&self, unix_ms: i64) -> bool {
        let Ok(ts) = jiff::Timestamp::from_millisecond(unix_ms) else {
            return false;
        };
        let tz = self
            .location
            .as_ref()
            .map_or(jiff::tz::TimeZone::UTC, |l| l.zone.clone());
        let t = ts.to_zoned(tz);
        let minute = i32::from(t.hour()) * 60 + i32::from(t.minute());
        if let Some(times) = &self.times
            && !times
                .iter()
                .any(|r| minute >= r.start_minute && minute < r.end_minute)
        {
            return false;
        }
        if let Some(days) = &self.days_of_month {
            let in_month = days_in_month(&t);
            let day = i32::from(t.day());
            let found = days.iter().any(|r| {
                let resolve = |d: i32| if d < 0 { in_month + d + 1 } else { d };
                let (begin, end) = (resolve(r.begin), resolve(r.end));
                // A range that starts after this month's last day is not in it; one that
                // runs past it is cut at it.
                begin <= in_month
                    && day >= begin.clamp(-in_month, in_month)
                    && day <= end.clamp(-in_month, in_month)
            });
            if !found {
                return false;
            }
        }
        let within = |ranges: &Option<Vec<(i32, i32)>>, v: i32| {
            ranges
                .as_ref()
                .is_none_or(|rs| rs.iter().any(|(b, e)| v >= *b && v <= *e))
        };
        within(&pairs(&self.months), i32::from(t.month()))
            && within(
                &pairs(&self.weekdays),
                i32::from(t.weekday().to_sunday_zero_offset()),
            )
            && within(&pairs(&self.years), i32::from(t.year()))
    }
}

/// The month's length as Alertmanager's `daysInMonth` takes it: whole days of 24 hours from
/// its first midnight to the next month's, in the zone. A month in which the clocks spring
/// forward is a day short there (31 March in New York counts as day 31 of a 30-day
/// month), and this keeps to it, so a configuration matches the same instants in both.
fn days_in_month(t: &jiff::Zoned) -> i32 {
    let calendar = i32::from(t.days_in_month());
    let hours = t
        .first_of_month()
        .and_then(|d| d.start_of_day())
        .and_then(|start| {
            let next = start.checked_add(jiff::Span::new().months(1))?;
            Ok(start.duration_until(&next).as_secs() / 3600)
        });
    match hours {
        Ok(h) => i32::try_from(h / 24).unwrap_or(calendar),
        Err(_) => calendar,
    }
}

fn pairs<K>(ranges: &Option<Vec<Range<K>>>) -> Option<Vec<(i32, i32)>> {
    ranges
        .as_ref()
        .map(|rs| rs.iter().map(|r| (r.begin, r.end)).collect())
}

/// `start_time`/`end_time` as minutes of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive.
    pub start_minute: i32,
    /// Exclusive.
    pub end_minute: i32,
}

impl<'de> Deserialize<'de> for TimeRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            start_time: String,
            #[serde(default)]
            end_time: String,
        }
        let raw = Raw::deserialize(d)?;
        if raw.start_time.is_empty() || raw.end_time.is_empty() {
            return Err(serde::de::Error::custom(
                "both start and end times must be provided",
            ));
        }
        let start = minute_of_day(&raw.start_time).map_err(serde::de::Error::custom)?;
        let end = minute_of_day(&raw.end_time).map_err(serde::de::Error::custom)?;
        if start >= end {
            return Err(serde::de::Error::custom(
                "start time cannot be equal or greater than end time",
            ));
        }
        Ok(TimeRange {
            start_minute: start,
            end_minute: end,
        })
    }
}

/// `HH:MM` (00:00 to 23:59, or 24:00) as minutes.
fn minute_of_day(s: &str) -> Result<i32, String> {
    let bad = || format!("couldn't parse timestamp {s}, invalid format");
    if s == "24:00" {
        return Ok(24 * 60);
    }
    let b = s.as_bytes();
    if b.len() != 5
        || b[2] != b':'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit())
    {
        return Err(bad());
    }
    let hours = i32::from(b[0] - b'0') * 10 + i32::from(b[1] - b'0');
    let minutes = i32::from(b[3] - b'0') * 10 + i32::from(b[4] - b'0');
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

/// An inclusive range of one field, written `a:b` or `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range<K> {
    /// First value.
    pub begin: i32,
    /// Last value.
    pub end: i32,
    kind: std::marker::PhantomData<K>,
}

/// How one field's members are written and checked.
pub trait RangeKind {
    /// A member from its text (lower-cased).
    fn member(s: &str) -> Result<i32, String>;
    /// The checks of a whole range; `text` is as written.
    fn check(begin: i32, end: i32, text: &str) -> Result<(), String>;
}

impl<'de, K: RangeKind> Deserialize<'de> for Range<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let lower = text.to_lowercase();
        let (begin, end) = match lower.split_once(':') {
            Some((a, b)) => {
                if b.contains(':') {
                    return Err(serde::de::Error::custom(format!(
                        "couldn't parse range {lower:?}, invalid format"
                    )));
                }
                (K::member(a), K::member(b))
            }
            None => (K::member(&lower), K::member(&lower)),
        };
        let (begin, end) = (
            begin.map_err(serde::de::Error::custom)?,
            end.map_err(serde::de::Error::custom)?,
        );
        K::check(begin, end, &text).map_err(serde::de::Error::custom)?;
        Ok(Range {
            begin,
            end,
            kind: std::marker::PhantomData,
        })
    }
}

/// A field's number, read by Go's `strconv.Atoi` (and its error text).
fn number(s: &str) -> Result<i32, String> {
    let n = crate::template::gofmt::atoi(s)?;
    i32::try_from(n).map_err(|_| format!("{s} is out of range"))
}

/// `weekdays`: `sunday` … `saturday`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeekdayKind {}

/// The weekdays as Alertmanager names them, Sunday first (0).
pub const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

impl RangeKind for WeekdayKind {
    fn member(s: &str) -> Result<i32, String> {
        WEEKDAYS
            .iter()
            .position(|d| *d == s)
            .map(|i| i as i32)
            .ok_or_else(|| format!("{s} is not a valid weekday"))
    }

    fn check(begin: i32, end: i32, _: &str) -> Result<(), String> {
        if begin > end {
            return Err("start day cannot be before end day".into());
        }
        Ok(())
    }
}

/// `days_of_month`: 1 … 31, or -31 … -1 from the month's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayOfMonthKind {}

impl RangeKind for DayOfMonthKind {
    fn member(s: &str) -> Result<i32, String> {
        number(s)
    }

    fn check(begin: i32, end: i32, _: &str) -> Result<(), String> {
        for d in [begin, end] {
            if d == 0 || !(-31..=31).contains(&d) {
                return Err(format!("{d} is not a valid day of the month: out of range"));
            }
        }
        if begin < 0 && end > 0 {
            return Err("end day must be negative if start day is negative".into());
        }
        // Always wrong in a month of 28 days: refused; otherwise left to the month.
        let at_28 = |d: i32| if d < 0 { 28 + d } else { d };
        if at_28(begin) > at_28(end) {
            return Err(format!("end day {end} is always before start day {begin}"));
        }
        Ok(())
    }
}

/// `months`: `january` … `december`, or 1 … 12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonthKind {}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

impl RangeKind for MonthKind {
    fn member(s: &str) -> Result<i32, String> {
        if let Ok(n) = crate::template::gofmt::atoi(s) {
            return i32::try_from(n).map_err(|_| format!("{s} is not a valid month"));
        }
        MONTHS
            .iter()
            .position(|m| *m == s)
            .map(|i| i as i32 + 1)
            .ok_or_else(|| format!("{s} is not a valid month"))
    }

    fn check(begin: i32, end: i32, _: &str) -> Result<(), String> {
        // Alertmanager checks the order only: a month number outside 1..12 loads there (and
        // never matches), so it loads here too.
        if begin > end {
            return Err(format!(
                "end month {} is before start month {}",
                go_month(end),
                go_month(begin)
            ));
        }
        Ok(())
    }
}

/// Go's `time.Month.String`: `March`, or `%!Month(13)` out of range.
fn go_month(m: i32) -> String {
    match usize::try_from(m - 1).ok().and_then(|i| MONTHS.get(i)) {
        Some(name) => {
            let mut c = name.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        }
        None => format!("%!Month({m})"),
    }
}

/// `years`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YearKind {}

impl RangeKind for YearKind {
    fn member(s: &str) -> Result<i32, String> {
        number(s)
    }

    fn check(begin: i32, end: i32, _: &str) -> Result<(), String> {
        if begin > end {
            return Err(format!("end year {end} is before start year {begin}"));
        }
        Ok(())
    }
}

/// A time zone: `UTC`, `Local` (this machine's), or an IANA name read from the system's
/// time zone database, as Go's `time.LoadLocation` reads them.
#[derive(Debug, Clone)]
pub struct Location {
    /// As written.
    pub name: String,
    zone: jiff::tz::TimeZone,
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let zone = match name.as_str() {
            "" | "UTC" => Ok(jiff::tz::TimeZone::UTC),
            // Go falls back to UTC where the machine names no zone (no `TZ`, no
            // `/etc/localtime`, as in a minimal container).
            "Local" => Ok(jiff::tz::TimeZone::system()),
            // Spelled exactly, as Go's `LoadLocation` reads file names (jiff would take
            // `asia/shanghai` too).
            other => jiff::tz::TimeZone::get(other)
                .ok()
                .filter(|z| z.iana_name() == Some(other))
                .ok_or_else(|| format!("unknown time zone {other}")),
        }
        .map_err(serde::de::Error::custom)?;
        Ok(Location { name, zone })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> IntervalSpec {
        serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    fn refused(yaml: &str) -> String {
        match serde_norway::from_str::<IntervalSpec>(yaml) {
            Ok(s) => panic!("{yaml}: accepted as {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Unix ms of a UTC wall time.
    fn utc(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn times_are_start_inclusive_end_exclusive() {
        let s = spec(
            "times: [{start_time: '09:00', end_time: '17:00'}, {start_time: '23:00', end_time: '24:00'}]",
        );
        assert!(s.contains(utc("2024-03-04T09:00:00Z")));
        assert!(s.contains(utc("2024-03-04T16:59:59Z")));
        assert!(!s.contains(utc("2024-03-04T17:00:00Z")));
        assert!(!s.contains(utc("2024-03-04T08:59:59Z")));
        assert!(s.contains(utc("2024-03-04T23:59:59Z")));
    }

    #[test]
    fn weekdays_months_years() {
        let s = spec("weekdays: ['monday:friday']\nmonths: ['1:3', 'december']\nyears: ['2024']");
        // Monday 4 March 2024.
        assert!(s.contains(utc("2024-03-04T12:00:00Z")));
        // Saturday.
        assert!(!s.contains(utc("2024-03-09T12:00:00Z")));
        // April.
        assert!(!s.contains(utc("2024-04-01T12:00:00Z")));
        // December, a Monday.
        assert!(s.contains(utc("2024-12-02T12:00:00Z")));
        // 2025.
        assert!(!s.contains(utc("2025-01-06T12:00:00Z")));
        let weekend = spec("weekdays: [Saturday, SUNDAY]");
        assert!(weekend.contains(utc("2024-03-09T00:00:00Z")));
        assert!(weekend.contains(utc("2024-03-10T23:59:00Z")));
        assert!(!weekend.contains(utc("2024-03-11T00:00:00Z")));
    }

    #[test]
    fn days_of_month_count_back_and_clamp() {
        let last_three = spec("days_of_month: ['-3:-1']");
        assert!(last_three.contains(utc("2024-02-27T00:00:00Z")));
        assert!(!last_three.contains(utc("2024-02-26T23:59:00Z")));
        assert!(last_three.contains(utc("2023-02-28T00:00:00Z")));
        assert!(last_three.contains(utc("2024-01-29T00:00:00Z")));
        // `1:31` is the whole of February, clamped.
        let all = spec("days_of_month: ['1:31']");
        assert!(all.contains(utc("2024-02-29T12:00:00Z")));
        // A range starting after the month's end is not in it.
        let thirtieth = spec("days_of_month: ['30:31']");
        assert!(!thirtieth.contains(utc("2024-02-29T12:00:00Z")));
        assert!(thirtieth.contains(utc("2024-01-31T12:00:00Z")));
    }

    #[test]
    fn month_length_is_alertmanagers_in_daylight_saving_zones() {
        // March 2024 in New York loses an hour: Alertmanager counts 30 days, so day -1 is
        // the 30th and the 31st is past the month's end.
        let last = spec("days_of_month: ['-1']\nlocation: America/New_York");
        assert!(last.contains(utc("2024-03-30T16:00:00Z")));
        assert!(!last.contains(utc("2024-03-31T16:00:00Z")));
        // In UTC March has its 31 days.
        let utc_last = spec("days_of_month: ['-1']");
        assert!(utc_last.contains(utc("2024-03-31T16:00:00Z")));
        // A month that gains an hour keeps its length (721 hours are still 30 days).
        let nov = spec("days_of_month: ['-1']\nlocation: America/New_York");
        assert!(nov.contains(utc("2024-11-30T16:00:00Z")));
        // An out-of-range month loads, as in Alertmanager, and never matches.
        let never = spec("months: ['13']");
        assert!(!never.contains(utc("2024-12-31T12:00:00Z")));
    }

    #[test]
    fn locations_shift_the_fields() {
        // 09:00–17:00 in Shanghai (UTC+8) is 01:00–09:00 UTC.
        let s = spec("times: [{start_time: '09:00', end_time: '17:00'}]\nlocation: Asia/Shanghai");
        assert!(s.contains(utc("2024-03-04T01:00:00Z")));
        assert!(!s.contains(utc("2024-03-04T09:00:00Z")));
        // New York's daylight saving time: 09:00 is 14:00 UTC in January, 13:00 in July.
        let ny =
            spec("times: [{start_time: '09:00', end_time: '10:00'}]\nlocation: America/New_York");
        assert!(ny.contains(utc("2024-01-15T14:30:00Z")));
        assert!(!ny.contains(utc("2024-01-15T13:30:00Z")));
        assert!(ny.contains(utc("2024-07-15T13:30:00Z")));
        // The day changes with the zone too: Monday 00:30 in Shanghai is Sunday in UTC.
        let monday = spec("weekdays: [monday]\nlocation: Asia/Shanghai");
        assert!(monday.contains(utc("2024-03-03T16:30:00Z")));
    }

    #[test]
    fn bad_specs_are_refused_with_alertmanagers_words() {
        for (yaml, words) in [
            (
                "times: [{start_time: '09:00'}]",
                "both start and end times must be provided",
            ),
            (
                "times: [{start_time: '9:00', end_time: '10:00'}]",
                "couldn't parse timestamp 9:00, invalid format",
            ),
            (
                "times: [{start_time: '10:00', end_time: '10:00'}]",
                "start time cannot be equal or greater than end time",
            ),
            (
                "times: [{start_time: '10:00', end_time: '24:01'}]",
                "couldn't parse timestamp 24:01, invalid format",
            ),
            ("weekdays: [funday]", "funday is not a valid weekday"),
            (
                "weekdays: ['friday:monday']",
                "start day cannot be before end day",
            ),
            (
                "weekdays: ['monday:tuesday:friday']",
                "couldn't parse range \"monday:tuesday:friday\", invalid format",
            ),
            (
                "days_of_month: ['0']",
                "0 is not a valid day of the month: out of range",
            ),
            (
                "days_of_month: ['-3:5']",
                "end day must be negative if start day is negative",
            ),
            (
                "days_of_month: ['10:-25']",
                "end day -25 is always before start day 10",
            ),
            ("months: [smarch]", "smarch is not a valid month"),
            (
                "months: ['may:march']",
                "end month March is before start month May",
            ),
            (
                "months: ['13:2']",
                "end month February is before start month %!Month(13)",
            ),
            (
                "years: ['2025:2020']",
                "end year 2020 is before start year 2025",
            ),
            ("location: Mars/Olympus", "unknown time zone Mars/Olympus"),
            ("location: asia/shanghai", "unknown time zone asia/shanghai"),
            ("hours: ['1']", "unknown field `hours`"),
        ] {
            let e = refused(yaml);
            assert!(e.contains(words), "{yaml}: {e}");
        }
    }
}
