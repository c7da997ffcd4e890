//! Timestamps as nginx and ECS loggers write them, to nanoseconds since the Unix epoch.

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian), Howard Hinnant's
/// algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn to_nanos(
    (y, mo, d): (i64, u32, u32),
    (h, mi, s): (u32, u32, u32),
    nanos: u32,
    offset_seconds: i64,
) -> Option<u64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400
        + i64::from(h) * 3600
        + i64::from(mi) * 60
        + i64::from(s)
        - offset_seconds;
    let secs = u64::try_from(secs).ok()?;
    secs.checked_mul(1_000_000_000)?
        .checked_add(u64::from(nanos))
}

/// A `+hhmm`, `-hh:mm` or `Z` offset, in seconds east of UTC.
fn offset(s: &str) -> Option<i64> {
    if s == "Z" || s == "z" {
        return Some(0);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = s[1..].chars().filter(|c| *c != ':').collect();
    // Four ASCII digits, checked before the byte slicing below (a multi-byte character would
    // make it panic).
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h = i64::from(num(&digits[..2])?);
    let m = i64::from(num(&digits[2..])?);
    Some(sign * (h * 3600 + m * 60))
}

/// nginx's `$time_local`: `10/Oct/2000:13:55:36 -0700`.
pub fn parse_time_local(s: &str) -> Option<u64> {
    let (date_time, zone) = s.split_once(' ')?;
    let mut it = date_time.splitn(4, [':', '/']);
    let d = num(it.next()?)?;
    let mon = it.next()?;
    let y = num(it.next()?)?;
    let rest = it.next()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mo = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let mut hms = rest.split(':');
    let h = num(hms.next()?)?;
    let mi = num(hms.next()?)?;
    let sec = num(hms.next()?)?;
    if hms.next().is_some() {
        return None;
    }
    to_nanos((i64::from(y), mo, d), (h, mi, sec), 0, offset(zone)?)
}

/// RFC 3339 / ISO 8601 as nginx's `$time_iso8601` and ECS `@timestamp` write it:
/// `2000-10-10T13:55:36-07:00`, `2026-01-02T03:04:05.123456Z`.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.len() < 20 || !s.is_char_boundary(10) || !s.is_char_boundary(19) {
        return None;
    }
    let (date, rest) = (&s[..10], &s[10..]);
    let sep = rest.as_bytes()[0];
    if sep != b'T' && sep != b't' && sep != b' ' {
        return None;
    }
    let mut dp = date.split('-');
    let y = num(dp.next()?)?;
    let mo = num(dp.next()?)?;
    let d = num(dp.next()?)?;
    let time = &rest[1..9];
    let mut tp = time.split(':');
    let h = num(tp.next()?)?;
    let mi = num(tp.next()?)?;
    let sec = num(tp.next()?)?;
    let mut tail = &rest[9..];
    let mut nanos = 0u32;
    if let Some(frac) = tail.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        let digits = &frac[..end];
        if digits.is_empty() {
            return None;
        }
        let mut n = 0u32;
        for (i, b) in digits.bytes().take(9).enumerate() {
            n += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
        }
        nanos = n;
        tail = &frac[end..];
    }
    to_nanos((i64::from(y), mo, d), (h, mi, sec), nanos, offset(tail)?)
}

/// nginx's `$msec`: seconds with millisecond resolution, `1700000000.123`.
pub fn parse_msec(s: &str) -> Option<u64> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut nanos = 0u64;
    for (i, b) in frac.bytes().take(9).enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        nanos += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
    }
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The UTC day of nanoseconds since the epoch as `YYYY.MM.DD` (the suffix of Elasticsearch's
/// date-based index names, as Filebeat and Logstash write them).
pub fn format_index_date(unix_nano: u64) -> String {
    let secs = (unix_nano / 1_000_000_000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}.{m:02}.{d:02}")
}

/// Nanoseconds since the epoch as RFC 3339 in UTC with milliseconds:
/// `2026-11-26T02:08:49.123Z` (ECS `@timestamp`).
pub fn format_rfc3339_millis(unix_nano: u64) -> String {
    let secs = (unix_nano / 1_000_000_000) as i64;
    let millis = (unix_nano % 1_000_000_000) / 1_000_000;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn index_dates_are_utc_days() {
        assert_eq!(super::format_index_date(0), "1970.01.01");
        // 2026-11-26T23:59:59.999Z and the next millisecond.
        let n = 1_795_737_599_999_000_000u64;
        assert_eq!(super::format_rfc3339_millis(n), "2026-11-26T23:59:59.999Z");
        assert_eq!(super::format_index_date(n), "2026.11.26");
        assert_eq!(super::format_index_date(n + 1_000_000), "2026.11.27");
    }

    #[test]
    fn format_round_trips() {
        for n in [
            0u64,
            971_211_336_123_000_000,
            1_709_164_800_000_000_000,
            1_795_658_929_999_000_000,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339_millis(n)), Some(n));
        }
        assert_eq!(
            format_rfc3339_millis(971_211_336_123_456_789),
            "2000-10-10T20:55:36.123Z"
        );
    }

    use super::*;

    #[test]
    fn nginx_time_local() {
        // date -d '2000-10-10T20:55:36Z' +%s = 971211336
        assert_eq!(
            parse_time_local("10/Oct/2000:13:55:36 -0700"),
            Some(971_211_336_000_000_000)
        );
        assert_eq!(
            parse_time_local("29/Feb/2024:00:00:00 +0000"),
            Some(1_709_164_800_000_000_000)
        );
        assert_eq!(parse_time_local("10/Foo/2000:13:55:36 -0700"), None);
        assert_eq!(parse_time_local("10/Oct/2000:13:55:36"), None);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(
            parse_rfc3339("2000-10-10T13:55:36-07:00"),
            Some(971_211_336_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2000-10-10T20:55:36.5Z"),
            Some(971_211_336_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2000-10-10T20:55:36.123456789Z"),
            Some(971_211_336_123_456_789)
        );
        assert_eq!(parse_rfc3339("2000-10-10 20:55"), None);
        // A zone with a multi-byte character is no zone (and no panic).
        assert_eq!(parse_rfc3339("2000-10-10T20:55:36+1é1"), None);
        assert_eq!(parse_time_local("10/Oct/2000:13:55:36 +1é1"), None);
        assert_eq!(parse_rfc3339("2000-10-10T20:55:36+12:3é"), None);
        assert_eq!(parse_rfc3339("2000-13-10T20:55:36Z"), None);
    }

    #[test]
    fn msec() {
        assert_eq!(parse_msec("971211336.250"), Some(971_211_336_250_000_000));
        assert_eq!(parse_msec("x"), None);
    }
}
