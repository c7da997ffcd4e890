//! The small languages inside a test file: Prometheus durations, Go-style numbers, series
//! descriptors (`metric{l="v"}`) and the expanding value notation (`1+2x3 _ stale`).

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;

use crate::promql::value::{Labels, METRIC_NAME, stale_nan};

/// One position of an expanded value sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeqValue {
    /// `_`: no sample at this step.
    Omitted,
    /// A float sample; `stale` is the staleness marker ([`stale_nan`]).
    Float(f64),
    /// A native histogram (`{{...}}`). This engine stores floats only, so the runner skips
    /// these samples when loading and marks evaluations expecting them as unsupported.
    Histogram,
}

/// Parses a Prometheus duration as `model.ParseDuration` does (`1h5m`, `30s`, `0`, `1y2w3d`;
/// units `y w d h m s ms`, each at most once and biggest first, no sign, no fraction) and
/// returns it in milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    if s == "0" {
        return Ok(0);
    }
    const UNITS: [(&str, u64, usize); 7] = [
        ("y", 365 * 24 * 3_600_000_000_000, 1),
        ("w", 7 * 24 * 3_600_000_000_000, 2),
        ("d", 24 * 3_600_000_000_000, 3),
        ("h", 3_600_000_000_000, 4),
        ("m", 60_000_000_000, 5),
        ("s", 1_000_000_000, 6),
        ("ms", 1_000_000, 7),
    ];
    let invalid = || format!("not a valid duration string: {s:?}");
    let mut rest = s;
    let mut total_ns: u64 = 0;
    let mut last_pos = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let v: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        if unit_len == 0 {
            return Err(invalid());
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(&(_, mult, pos)) = UNITS.iter().find(|(u, _, _)| *u == unit) else {
            return Err(format!("unknown unit {unit:?} in duration {s:?}"));
        };
        if pos <= last_pos {
            return Err(invalid());
        }
        last_pos = pos;
        if v > (1u64 << 63) / mult {
            return Err("duration out of range".into());
        }
        total_ns = total_ns
            .checked_add(v * mult)
            .filter(|d| *d <= i64::MAX as u64)
            .ok_or("duration out of range")?;
    }
    Ok((total_ns / 1_000_000) as i64)
}

/// A duration parameter of Prometheus's HTTP API (`step`, `timeout`): float seconds or a
/// duration such as `15s` or `1h30m`, to milliseconds; the error in Prometheus's words.
pub fn parse_duration_param(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        // Go keeps durations in int64 nanoseconds.
        if (secs * 1e9).abs() >= i64::MAX as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    parse_duration(s).map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

/// Unix seconds (float) or RFC 3339, to milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    parse_rfc3339_ms(s).ok_or_else(|| format!("cannot parse {s:?} to a valid timestamp"))
}

/// An RFC 3339 timestamp, `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, to milliseconds since
/// the Unix epoch.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())
            .flatten()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = format!("{:0<3}", &s[start..i.min(start + 3)]);
        frac_ms = digits.parse().ok()?;
    }
    let offset_s = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if b[i + 3] != b':' {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if tz.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    let days = crate::civil::days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1000 + frac_ms)
}

/// Parses a number as the Go runner's `parseNumber` does: an integer in Go syntax
/// (`strconv.ParseInt(s, 0, 64)`: `12`, `-3`, `0x1f`, `0o17`, `017`, `0b101`) or else a float
/// (`1.5`, `1e3`, `.5`, `Inf`, `-Inf`, `NaN`, any case).
pub fn parse_number(s: &str) -> Result<f64, String> {
    if let Some(i) = parse_go_int(s) {
        return Ok(i as f64);
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let looks_numeric = body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        || ["inf", "infinity", "nan"].contains(&body.to_ascii_lowercase().as_str());
    match s.parse::<f64>() {
        Ok(f) if looks_numeric => Ok(f),
        _ => Err(format!("error parsing number: invalid syntax: {s:?}")),
    }
}

fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_owned())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_owned())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_owned())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_owned())
    } else {
        (10, lower.clone())
    };
    let digits = digits.trim_start_matches('_').replace('_', "");
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// Splits a line into its series descriptor (`metric{l="v"}`, `{__name__="m"}`, `{}`) and the
/// rest, respecting quoted label values.
pub(crate) fn split_descriptor(line: &str) -> Result<(&str, &str), String> {
    let line = line.trim();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'{' {
        i += 1;
    }
    if i < bytes.len() && bytes[i] == b'{' {
        let mut quote: Option<u8> = None;
        let mut closed = false;
        i += 1;
        while i < bytes.len() {
            let b = bytes[i];
            match quote {
                Some(q) => {
                    if b == b'\\' && q != b'`' {
                        i += 1;
                    } else if b == q {
                        quote = None;
                    }
                }
                None => match b {
                    b'"' | b'\'' | b'`' => quote = Some(b),
                    b'}' => {
                        i += 1;
                        closed = true;
                        break;
                    }
                    _ => {}
                },
            }
            i += 1;
        }
        if !closed {
            return Err(format!("unterminated label set in {line:?}"));
        }
    }
    if i == 0 {
        return Err(format!("missing series descriptor in {line:?}"));
    }
    Ok((&line[..i], &line[i..]))
}

/// Parses a series descriptor as a PromQL vector selector with equality matchers only.
pub fn parse_metric(desc: &str) -> Result<Labels, String> {
    let desc = desc.trim();
    if let Some(inner) = desc.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
        && inner.trim().is_empty()
    {
        return Ok(Labels::new());
    }
    // `{a=""}` is no valid selector on its own (no non-empty matcher): add one, drop it later.
    const DUMMY: &str = "__promqltest_dummy__";
    let source = match desc.strip_prefix('{') {
        Some(rest) => format!("{{{DUMMY}=\"x\", {rest}"),
        None => desc.to_owned(),
    };
    let expr = promql_parser::parser::parse(&source)
        .map_err(|e| format!("invalid series descriptor {desc:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "invalid series descriptor {desc:?}: not a metric selector"
        ));
    };
    if vs.offset.is_some() || vs.at.is_some() || !vs.matchers.or_matchers.is_empty() {
        return Err(format!("invalid series descriptor {desc:?}"));
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(name) = vs.name {
        pairs.push((METRIC_NAME.to_owned(), name));
    }
    for m in vs.matchers.matchers {
        if m.name == DUMMY {
            continue;
        }
        if !matches!(m.op, MatchOp::Equal) {
            return Err(format!(
                "invalid series descriptor {desc:?}: only label=\"value\" pairs are allowed"
            ));
        }
        pairs.push((m.name, m.value));
    }
    Ok(Labels::from_pairs(pairs))
}

/// Parses a `<series> <values>` line (as in `load` blocks and expected results).
pub fn parse_series(line: &str) -> Result<(Labels, Vec<SeqValue>), String> {
    let (desc, values) = split_descriptor(line)?;
    let labels = parse_metric(desc)?;
    let vals = parse_values(values).map_err(|e| format!("{e} in {:?}", line.trim()))?;
    Ok((labels, vals))
}

/// Expands the value notation: numbers, `a+bxn` / `a-bxn` (n+1 values, adding b each step),
/// `axn` (n+1 copies), `_` (one missing), `_xn` (n missing), `stale`, and native histograms
/// `{{...}}` (with `x`, `+`/`-` forms) which become [`SeqValue::Histogram`].
pub fn parse_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    for item in split_items(s)? {
        if item.contains("{{") {
            out.extend(expand_histogram_item(item)?);
        } else {
            out.extend(expand_item(item)?);
        }
    }
    Ok(out)
}

/// Splits on whitespace outside `{{ ... }}`.
fn split_items(s: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut start: Option<usize> = None;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if c.is_whitespace() && depth == 0 {
            if let Some(st) = start.take() {
                items.push(&s[st..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if depth != 0 {
        return Err("unbalanced braces in histogram value".into());
    }
    if let Some(st) = start {
        items.push(&s[st..]);
    }
    Ok(items)
}

fn expand_histogram_item(item: &str) -> Result<Vec<SeqValue>, String> {
    let bad = || format!("invalid histogram value {item:?}");
    let end = |s: &str| s.find("}}").map(|i| i + 2);
    let first = end(item).ok_or_else(bad)?;
    let rest = &item[first..];
    if rest.is_empty() {
        return Ok(vec![SeqValue::Histogram]);
    }
    let times = if let Some(n) = rest.strip_prefix('x') {
        n
    } else if let Some(r) = rest.strip_prefix(['+', '-']) {
        if !r.starts_with("{{") {
            return Err(bad());
        }
        let second = end(r).ok_or_else(bad)?;
        r[second..].strip_prefix('x').ok_or_else(bad)?
    } else {
        return Err(bad());
    };
    let n: usize = times.parse().map_err(|_| bad())?;
    Ok(vec![SeqValue::Histogram; n + 1])
}

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Num(&'a str),
    Ident(&'a str),
    Plus,
    Minus,
    Times,
    Blank,
}

/// The lexer of Prometheus's series-description mode, for one space-free item.
fn lex_item(item: &str) -> Result<Vec<Tok<'_>>, String> {
    let b = item.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'+' => toks.push(Tok::Plus),
            b'-' => toks.push(Tok::Minus),
            b'x' => toks.push(Tok::Times),
            b'_' => toks.push(Tok::Blank),
            _ if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i < b.len() && b[i] == b'.' {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                    i += 1;
                    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                        i += 1;
                    }
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                if i < b.len() && b[i] != b'x' && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    return Err(format!("bad number syntax: {:?}", &item[start..=i]));
                }
                toks.push(Tok::Num(&item[start..i]));
                continue;
            }
            _ if c.is_ascii_alphabetic() => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                toks.push(Tok::Ident(&item[start..i]));
                continue;
            }
            _ => return Err(format!("unexpected character {:?}", c as char)),
        }
        i += 1;
    }
    Ok(toks)
}

fn expand_item(item: &str) -> Result<Vec<SeqValue>, String> {
    let toks = lex_item(item)?;
    let bad = || format!("invalid value {item:?}");
    let uint = |t: &Tok<'_>| -> Result<usize, String> {
        match t {
            Tok::Num(s) if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().map_err(|_| bad()),
            _ => Err(bad()),
        }
    };
    let number = |t: &Tok<'_>| -> Option<f64> {
        match t {
            Tok::Num(s) => s.parse().ok(),
            Tok::Ident(s) if matches!(s.to_ascii_lowercase().as_str(), "inf" | "nan") => {
                s.parse().ok()
            }
            _ => None,
        }
    };
    match toks.as_slice() {
        [Tok::Blank] => return Ok(vec![SeqValue::Omitted]),
        [Tok::Blank, Tok::Times, n] => return Ok(vec![SeqValue::Omitted; uint(n)?]),
        _ => {}
    }
    // series_value: `stale`, a number, or a signed number.
    let (first, used) = match toks.as_slice() {
        [Tok::Ident("stale"), ..] => (stale_nan(), 1),
        [Tok::Plus, t, ..] => (number(t).ok_or_else(bad)?, 2),
        [Tok::Minus, t, ..] => (-number(t).ok_or_else(bad)?, 2),
        [t, ..] => (number(t).ok_or_else(bad)?, 1),
        [] => return Err(bad()),
    };
    match &toks[used..] {
        [] => Ok(vec![SeqValue::Float(first)]),
        [Tok::Times, n] => Ok(vec![SeqValue::Float(first); uint(n)? + 1]),
        [sign @ (Tok::Plus | Tok::Minus), t, Tok::Times, n] => {
            let step = number(t).ok_or_else(bad)?;
            let step = if *sign == Tok::Minus { -step } else { step };
            let n = uint(n)?;
            let mut v = first;
            let mut out = Vec::with_capacity(n + 1);
            out.push(SeqValue::Float(v));
            for _ in 0..n {
                v += step;
                out.push(SeqValue::Float(v));
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

/// Go's `strconv.Unquote` for the `expect string` line: a double-quoted string with Go
/// escapes or a back-quoted raw string.
pub(crate) fn unquote(s: &str) -> Result<String, String> {
    let err = || "expected string literal not valid - check that the string is correctly quoted";
    if let Some(raw) = s.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        if raw.contains('`') {
            return Err(err().into());
        }
        return Ok(raw.replace('\r', ""));
    }
    let quote = match s.as_bytes().first() {
        Some(b'"') => '"',
        Some(b'\'') => '\'',
        _ => return Err(err().into()),
    };
    let inner = s
        .strip_prefix(quote)
        .and_then(|r| r.strip_suffix(quote))
        .filter(|_| s.len() >= 2)
        .ok_or_else(err)?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == quote || c == '\n' {
            return Err(err().into());
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or_else(err)?;
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Result<u32, String> {
            let s: String = chars.by_ref().take(n).collect();
            if s.len() != n {
                return Err(err().into());
            }
            u32::from_str_radix(&s, 16).map_err(|_| err().into())
        };
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '"' | '\'' if e == quote => out.push(e),
            'x' => out.push(char::from_u32(hex(&mut chars, 2)?).ok_or_else(err)?),
            'u' => out.push(char::from_u32(hex(&mut chars, 4)?).ok_or_else(err)?),
            'U' => out.push(char::from_u32(hex(&mut chars, 8)?).ok_or_else(err)?),
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let v = u32::from_str_radix(&format!("{e}{rest}"), 8).map_err(|_| err())?;
                out.push(char::from_u32(v).filter(|_| v < 256).ok_or_else(err)?);
            }
            _ => return Err(err().into()),
        }
    }
    if quote == '\'' && out.chars().count() != 1 {
        return Err(err().into());
    }
    Ok(out)
}

/// Go's `almost.Equal(a, b, epsilon)`: staleness markers equal only each other, two NaNs are
/// equal, otherwise a relative tolerance (absolute near zero).
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    use crate::promql::value::is_stale;
    if is_stale(a) || is_stale(b) {
        return is_stale(a) && is_stale(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::MIN_POSITIVE;
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < epsilon * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::value::is_stale;

    fn floats(s: &str) -> Vec<f64> {
        parse_values(s)
            .unwrap()
            .into_iter()
            .map(|v| match v {
                SeqValue::Float(f) => f,
                other => panic!("not a float: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn expands_notation() {
        assert_eq!(floats("1+2x3"), [1.0, 3.0, 5.0, 7.0]);
        assert_eq!(floats("-2-1x2"), [-2.0, -3.0, -4.0]);
        assert_eq!(floats("5x2"), [5.0, 5.0, 5.0]);
        assert_eq!(floats("10-5x2"), [10.0, 5.0, 0.0]);
        assert_eq!(floats("1 2  3"), [1.0, 2.0, 3.0]);
        assert_eq!(floats("0x3"), [0.0; 4]);
        assert_eq!(
            floats("1e3 .5 -Inf +2"),
            [1000.0, 0.5, f64::NEG_INFINITY, 2.0]
        );
        assert_eq!(floats("0.5+0.25x1"), [0.5, 0.75]);
        assert_eq!(
            parse_values("_x2 _ 1").unwrap(),
            [
                SeqValue::Omitted,
                SeqValue::Omitted,
                SeqValue::Omitted,
                SeqValue::Float(1.0)
            ]
        );
        assert!(parse_values("_x0").unwrap().is_empty());
        let v = floats("stale NaN inf");
        assert!(is_stale(v[0]));
        assert!(v[1].is_nan() && !is_stale(v[1]));
        assert_eq!(v[2], f64::INFINITY);
        assert!(parse_values("stalex1").is_err());
    }

    #[test]
    fn the_readme_example() {
        let v =
            parse_values("5 2+3x2 _ stale {{schema:1 sum:3 count:22 buckets:[5 10 7]}}").unwrap();
        assert_eq!(v.len(), 7);
        assert_eq!(v[..4], [5.0, 2.0, 5.0, 8.0].map(SeqValue::Float));
        assert_eq!(v[4], SeqValue::Omitted);
        assert!(matches!(v[5], SeqValue::Float(f) if is_stale(f)));
        assert_eq!(v[6], SeqValue::Histogram);
        assert_eq!(
            parse_values("{{schema:0 sum:1 count:1}}x3 {{sum:1}}+{{sum:2}}x1").unwrap(),
            vec![SeqValue::Histogram; 6]
        );
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            "1+2",
            "abc",
            "1x",
            "1+2x",
            "1y",
            "x3",
            "1+2x3.5",
            "foo+1x2",
            "{{sum:1}}x",
        ] {
            assert!(parse_values(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn parses_descriptors() {
        let (ls, v) = parse_series(r#"http_requests{job="api", path="/a b}"} 1 2"#).unwrap();
        assert_eq!(ls.name(), Some("http_requests"));
        assert_eq!(ls.get("path"), Some("/a b}"));
        assert_eq!(v.len(), 2);
        let (ls, _) = parse_series(r#"{__name__="m", a="1"} 1"#).unwrap();
        assert_eq!(ls, Labels::from_pairs([("__name__", "m"), ("a", "1")]));
        let (ls, _) = parse_series("{} 3").unwrap();
        assert!(ls.is_empty());
        let (ls, _) = parse_series(r#"{a=""} 3"#).unwrap();
        assert!(ls.is_empty());
        let (ls, _) = parse_series("up 1").unwrap();
        assert_eq!(ls.name(), Some("up"));
        let (ls, _) = parse_series(r#"{job="a\"b"} 1"#).unwrap();
        assert_eq!(ls.get("job"), Some("a\"b"));
        assert!(parse_series(r#"m{a=~"x"} 1"#).is_err());
        assert!(parse_series(r#"m{a="x" 1"#).is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("50m"), Ok(3_000_000));
        assert_eq!(parse_duration("1h5m"), Ok(3_900_000));
        assert_eq!(parse_duration("1d2h"), Ok(93_600_000));
        assert_eq!(parse_duration("1w"), Ok(604_800_000));
        assert_eq!(parse_duration("1y"), Ok(31_536_000_000));
        assert_eq!(parse_duration("100ms"), Ok(100));
        assert_eq!(parse_duration("1m30s500ms"), Ok(90_500));
        for bad in [
            "", "-1m", "1.5m", "m", "5", "1m1h", "1s1s", "1q", "1000000y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn parses_numbers_like_go() {
        assert_eq!(parse_number("12"), Ok(12.0));
        assert_eq!(parse_number("-3"), Ok(-3.0));
        assert_eq!(parse_number("0x1f"), Ok(31.0));
        assert_eq!(parse_number("017"), Ok(15.0));
        assert_eq!(parse_number("1.5e3"), Ok(1500.0));
        assert_eq!(parse_number(".5"), Ok(0.5));
        assert_eq!(parse_number("+Inf"), Ok(f64::INFINITY));
        assert_eq!(parse_number("-inf"), Ok(f64::NEG_INFINITY));
        assert!(parse_number("NaN").unwrap().is_nan());
        assert!(parse_number("{} 1").is_err());
        assert!(parse_number("foo").is_err());
        assert!(parse_number("").is_err());
    }

    #[test]
    fn compares_like_almost_equal() {
        assert!(almost_equal(1.0, 1.0 + 1e-7, 1e-6));
        assert!(!almost_equal(1.0, 1.0 + 1e-5, 1e-6));
        assert!(almost_equal(1e20, 1e20 * (1.0 + 1e-7), 1e-6));
        assert!(almost_equal(f64::NAN, f64::NAN, 1e-6));
        assert!(!almost_equal(f64::NAN, stale_nan(), 1e-6));
        assert!(almost_equal(stale_nan(), stale_nan(), 1e-6));
        assert!(!almost_equal(0.0, 1e-10, 1e-6));
        assert!(almost_equal(0.0, -0.0, 1e-6));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY, 1e-6));
        assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY, 1e-6));
        assert!(!almost_equal(f64::INFINITY, 1.0, 1e-6));
    }

    #[test]
    fn unquotes_like_go() {
        assert_eq!(unquote(r#"" Foo ""#).unwrap(), " Foo ");
        assert_eq!(unquote(r#""a\nb\x41\u00e9\101""#).unwrap(), "a\nbAéA");
        assert_eq!(unquote("`raw\\n`").unwrap(), "raw\\n");
        assert!(unquote("\"unterminated").is_err());
        assert!(unquote("noquote").is_err());
    }
}
