//! Template functions: Go's builtins and Prometheus's (`template/template.go`), plus the
//! methods of `time.Time` and `time.Duration` that templates call.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use super::Env;
use super::gofmt::{self, format_float, quote, sprint, sprint_value, sprintf, sprintln};
use super::gotime;
use super::value::{GoTime, QuerySample, StructValue, Value};

/// Parameter types, for Go's argument checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Pt {
    /// `interface{}` / `reflect.Value`.
    Any,
    /// `string`.
    Str,
    /// `*template.sample`.
    Sample,
    /// `template.queryResult`.
    QueryResult,
    /// `time.Duration`.
    Duration,
    /// `time.Time`.
    Time,
}

impl Pt {
    pub(crate) fn go_name(self) -> &'static str {
        match self {
            Pt::Any => "interface {}",
            Pt::Str => "string",
            Pt::Sample => "*template.sample",
            Pt::QueryResult => "template.queryResult",
            Pt::Duration => "time.Duration",
            Pt::Time => "time.Time",
        }
    }

    pub(crate) fn can_be_nil(self) -> bool {
        matches!(self, Pt::Any | Pt::Sample | Pt::QueryResult)
    }
}

type FnImpl = fn(&Env<'_>, Vec<Value>) -> Result<Value, String>;

/// A template function.
pub(crate) struct FuncDef {
    pub(crate) name: &'static str,
    pub(crate) params: &'static [Pt],
    pub(crate) variadic: Option<Pt>,
    pub(crate) f: FnImpl,
}

/// A method of a receiver value.
pub(crate) struct Method {
    pub(crate) params: &'static [Pt],
    pub(crate) f: fn(&Value, Vec<Value>) -> Result<Value, String>,
}

const A: Pt = Pt::Any;
const S: Pt = Pt::Str;

macro_rules! def {
    ($name:expr, [$($p:expr),*], $var:expr, $f:expr) => {
        FuncDef { name: $name, params: &[$($p),*], variadic: $var, f: $f }
    };
}

static FUNCS: &[FuncDef] = &[
    // Go builtins.
    def!("and", [A], Some(A), |_, _| Ok(Value::Nil)),
    def!("or", [A], Some(A), |_, _| Ok(Value::Nil)),
    def!("not", [A], None, |_, a| Ok(Value::Bool(!a[0].is_true()))),
    def!("len", [A], None, |_, a| builtin_len(&a[0])),
    def!("index", [A], Some(A), |_, a| builtin_index(a)),
    def!("slice", [A], Some(A), |_, a| builtin_slice(a)),
    def!("print", [], Some(A), |_, a| Ok(Value::String(sprint(&a)))),
    def!("printf", [S], Some(A), |_, a| {
        let fmt = as_str(&a[0]);
        Ok(Value::String(sprintf(&fmt, &a[1..])))
    }),
    def!("println", [], Some(A), |_, a| Ok(Value::String(sprintln(
        &a
    )))),
    def!("html", [], Some(A), |_, a| Ok(Value::String(html_escape(
        &eval_args(&a)
    )))),
    def!("js", [], Some(A), |_, a| Ok(Value::String(js_escape(
        &eval_args(&a)
    )))),
    def!("urlquery", [], Some(A), |_, a| Ok(Value::String(
        query_escape(&eval_args(&a))
    ))),
    def!("eq", [A], Some(A), |_, a| builtin_eq(&a[0], &a[1..])
        .map(Value::Bool)),
    def!("ne", [A, A], None, |_, a| builtin_eq(&a[0], &a[1..])
        .map(|b| Value::Bool(!b))),
    def!("lt", [A, A], None, |_, a| builtin_lt(&a[0], &a[1])
        .map(Value::Bool)),
    def!("le", [A, A], None, |_, a| builtin_le(&a[0], &a[1])
        .map(Value::Bool)),
    def!("gt", [A, A], None, |_, a| builtin_le(&a[0], &a[1])
        .map(|b| Value::Bool(!b))),
    def!("ge", [A, A], None, |_, a| builtin_lt(&a[0], &a[1])
        .map(|b| Value::Bool(!b))),
    def!("call", [A], Some(A), |_, a| match &a[0] {
        Value::Nil => Err("call of nil".into()),
        v => Err(format!(
            "non-function {} of type {}",
            sprint_value(v),
            v.type_name()
        )),
    }),
    // Prometheus functions.
    def!("query", [S], None, |env, a| {
        let q = as_str(&a[0]);
        match env.query {
            Some(f) => f(&q).map(Value::QueryResult),
            None => Err("no query function configured".into()),
        }
    }),
    def!("first", [Pt::QueryResult], None, |_, a| match &a[0] {
        Value::QueryResult(q) if !q.is_empty() => Ok(Value::Sample(Box::new(q[0].clone()))),
        _ => Err("first() called on vector with no elements".into()),
    }),
    def!("label", [S, Pt::Sample], None, |_, a| {
        let s = sample(&a[1])?;
        Ok(Value::String(
            s.labels.get(&as_str(&a[0])).cloned().unwrap_or_default(),
        ))
    }),
    def!("value", [Pt::Sample], None, |_, a| Ok(Value::Float(
        sample(&a[0])?.value
    ))),
    def!("strvalue", [Pt::Sample], None, |_, a| {
        Ok(Value::String(
            sample(&a[0])?
                .labels
                .get("__value__")
                .cloned()
                .unwrap_or_default(),
        ))
    }),
    def!("args", [], Some(A), |_, a| {
        let m: BTreeMap<String, Value> = a
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("arg{i}"), v))
            .collect();
        Ok(Value::Map(m))
    }),
    def!("reReplaceAll", [S, S, S], None, |_, a| {
        let pat = as_str(&a[0]);
        let re = regex::Regex::new(&crate::goregex::go_syntax(&pat))
            .map_err(|e| format!("regexp: Compile({}): {}", quote(&pat), regex_error(&e)))?;
        Ok(Value::String(
            re.replace_all(&as_str(&a[2]), as_str(&a[1]).as_str())
                .into_owned(),
        ))
    }),
    def!("safeHtml", [S], None, |_, a| Ok(a[0].clone())),
    def!("match", [S, S], None, |_, a| {
        let re = regex::Regex::new(&crate::goregex::go_syntax(&as_str(&a[0])))
            .map_err(|e| regex_error(&e))?;
        Ok(Value::Bool(re.is_match(&as_str(&a[1]))))
    }),
    def!("title", [S], None, |_, a| Ok(Value::String(title(
        &as_str(&a[0])
    )))),
    def!("toUpper", [S], None, |_, a| Ok(Value::String(map_chars(
        &as_str(&a[0]),
        true
    )))),
    // Alertmanager's `join`: `func(sep string, s []string) string`.
    def!("join", [S, A], None, |_, a| match &a[1] {
        Value::List(l) => Ok(Value::String(
            l.iter()
                .map(as_str)
                .collect::<Vec<_>>()
                .join(&as_str(&a[0])),
        )),
        other => Err(format!(
            "wrong type for value; expected []string; got {}",
            other.type_name()
        )),
    }),
    def!("toLower", [S], None, |_, a| Ok(Value::String(map_chars(
        &as_str(&a[0]),
        false
    )))),
    def!("graphLink", [S], None, |_, a| {
        Ok(Value::String(format!(
            "/graph?g0.expr={}&g0.tab=0",
            query_escape(&as_str(&a[0]))
        )))
    }),
    def!("tableLink", [S], None, |_, a| {
        Ok(Value::String(format!(
            "/graph?g0.expr={}&g0.tab=1",
            query_escape(&as_str(&a[0]))
        )))
    }),
    def!("sortByLabel", [S, Pt::QueryResult], None, |_, a| {
        let label = as_str(&a[0]);
        let mut q = match &a[1] {
            Value::QueryResult(q) => q.clone(),
            _ => Vec::new(),
        };
        q.sort_by(|x, y| {
            let e = String::new();
            x.labels
                .get(&label)
                .unwrap_or(&e)
                .cmp(y.labels.get(&label).unwrap_or(&e))
        });
        Ok(Value::QueryResult(q))
    }),
    def!("stripPort", [S], None, |_, a| {
        let hp = as_str(&a[0]);
        Ok(Value::String(match split_host_port(&hp) {
            Ok((h, _)) => h,
            Err(_) => hp,
        }))
    }),
    def!("stripDomain", [S], None, |_, a| Ok(Value::String(
        strip_domain(&as_str(&a[0]))
    ))),
    def!("humanize", [A], None, |_, a| humanize(convert_to_float(
        &a[0]
    )?)
    .map(Value::String)),
    def!("humanize1024", [A], None, |_, a| humanize1024(
        convert_to_float(&a[0])?
    )
    .map(Value::String)),
    def!("humanizeDuration", [A], None, |_, a| Ok(Value::String(
        humanize_duration(convert_to_float(&a[0])?)
    ))),
    def!("humanizePercentage", [A], None, |_, a| {
        Ok(Value::String(format!(
            "{}%",
            format_float(convert_to_float(&a[0])? * 100.0, 'g', 4)
        )))
    }),
    def!("humanizeTimestamp", [A], None, |_, a| {
        let v = convert_to_float(&a[0])?;
        if v.is_nan() || v.is_infinite() {
            return Ok(Value::String(format_float(v, 'g', 4)));
        }
        Ok(Value::String(gotime::time_string(float_to_time(v)?)))
    }),
    def!("toTime", [A], None, |_, a| {
        let v = convert_to_float(&a[0])?;
        if v.is_nan() || v.is_infinite() {
            return Err("value is NaN or Inf".into());
        }
        Ok(Value::Time(float_to_time(v)?))
    }),
    def!("toDuration", [A], None, |_, a| {
        let v = convert_to_float(&a[0])?;
        if v.is_nan() || v.is_infinite() {
            return Err("value is NaN or Inf".into());
        }
        Ok(Value::Duration((v * 1e9) as i64))
    }),
    def!("now", [], None, |env, _| Ok(Value::Float(
        env.now_ms as f64 / 1000.0
    ))),
    def!("pathPrefix", [], None, |env, _| Ok(Value::String(
        env.path_prefix.clone()
    ))),
    def!("externalURL", [], None, |env, _| Ok(Value::String(
        env.external_url.clone()
    ))),
    def!("parseDuration", [S], None, |_, a| {
        let ns = gotime::parse_prom_duration(&as_str(&a[0]))?;
        Ok(Value::Float(ns as f64 / 1e9))
    }),
    def!("urlQueryEscape", [S], None, |_, a| Ok(Value::String(
        query_escape(&as_str(&a[0]))
    ))),
];

/// Looks a function up by name.
pub(crate) fn lookup(name: &str) -> Option<&'static FuncDef> {
    FUNCS.iter().find(|f| f.name == name)
}

/// The names of all functions, for the parser's "function not defined" check.
pub(crate) fn names() -> &'static HashSet<&'static str> {
    static NAMES: OnceLock<HashSet<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| FUNCS.iter().map(|f| f.name).collect())
}

fn as_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

fn sample(v: &Value) -> Result<&QuerySample, String> {
    match v {
        Value::Sample(s) => Ok(s),
        _ => Err("runtime error: invalid memory address or nil pointer dereference".into()),
    }
}

fn regex_error(e: &regex::Error) -> String {
    let s = e.to_string();
    let last = s
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    format!(
        "error parsing regexp: {}",
        last.trim_start_matches("error: ")
    )
}

/// Go's `strconv.ParseFloat(s, 64)` with its error messages.
pub(crate) fn parse_float(s: &str) -> Result<f64, String> {
    let err = |why: &str| format!("strconv.ParseFloat: parsing {}: {why}", quote(s));
    let lower = s.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    let special = matches!(body, "inf" | "infinity" | "nan");
    if s.contains('_') || s.trim() != s || s.is_empty() {
        return Err(err("invalid syntax"));
    }
    if body.starts_with("0x") {
        return parse_hex_float(s).ok_or_else(|| err("invalid syntax"));
    }
    if !special
        && !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))
    {
        return Err(err("invalid syntax"));
    }
    let v: f64 = s.parse().map_err(|_| err("invalid syntax"))?;
    if v.is_infinite() && !special {
        return Err(err("value out of range"));
    }
    Ok(v)
}

fn parse_hex_float(s: &str) -> Option<f64> {
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let rest = rest.get(2..)?;
    let (mant, exp) = match rest.find(['p', 'P']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars() {
        v = v * 16.0 + c.to_digit(16)? as f64;
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += c.to_digit(16)? as f64 * scale;
        scale /= 16.0;
    }
    let v = v * 2f64.powi(exp);
    Some(if neg { -v } else { v })
}

/// Prometheus's `ConvertToFloat`.
fn convert_to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::String(s) => parse_float(s),
        Value::Int(i) => Ok(*i as f64),
        Value::Uint(u) => Ok(*u as f64),
        Value::Duration(d) => Ok(*d as f64 / 1e9),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

/// Prometheus's `floatToTime` (finite input), truncated to milliseconds like `model.Time`.
fn float_to_time(v: f64) -> Result<GoTime, String> {
    let ts = v * 1e9;
    if ts > i64::MAX as f64 || ts < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            format_float(v, 'g', -1)
        ));
    }
    let ns = ts as i64;
    let ms = ns / 1_000_000;
    Ok(GoTime::from_unix_nanos(ms as i128 * 1_000_000))
}

/// Prometheus's `humanize`.
pub(crate) fn humanize(v: f64) -> Result<String, String> {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return Ok(format_float(v, 'g', 4));
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    Ok(format!("{}{prefix}", format_float(v, 'g', 4)))
}

/// Prometheus's `humanize1024`.
pub(crate) fn humanize1024(v: f64) -> Result<String, String> {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return Ok(format_float(v, 'g', 4));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    Ok(format!("{}{prefix}", format_float(v, 'g', 4)))
}

/// Prometheus's `humanizeDuration` (seconds in).
pub(crate) fn humanize_duration(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_float(v, 'g', 4);
    }
    if v == 0.0 {
        return format!("{}s", format_float(v, 'g', 4));
    }
    let mut v = v;
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        let duration = v as i64;
        let seconds = duration % 60;
        let minutes = (duration / 60) % 60;
        let hours = (duration / 60 / 60) % 24;
        let days = duration / 60 / 60 / 24;
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", format_float(v, 'g', 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_float(v, 'g', 4))
}

/// `cases.Title(language.AmericanEnglish, cases.NoLower)`: upper-cases the first letter of
/// each word and leaves the rest unchanged.
pub(crate) fn title(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for (i, &c) in chars.iter().enumerate() {
        let word_char = c.is_alphanumeric() || c == '_';
        let mid = matches!(c, '\'' | '.' | ':' | '’' | '·')
            && in_word
            && chars.get(i + 1).is_some_and(|n| n.is_alphabetic())
            && i > 0
            && chars[i - 1].is_alphabetic();
        if word_char && !in_word {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => out.push(u),
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
        in_word = word_char || mid;
    }
    out
}

/// Go's `strings.ToUpper`/`ToLower` (simple per-rune case mapping).
fn map_chars(s: &str, upper: bool) -> String {
    s.chars()
        .map(|c| {
            let mut it: Box<dyn Iterator<Item = char>> = if upper {
                Box::new(c.to_uppercase())
            } else {
                Box::new(c.to_lowercase())
            };
            match (it.next(), it.next()) {
                (Some(m), None) => m,
                _ => c,
            }
        })
        .collect()
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `net.SplitHostPort`.
pub(crate) fn split_host_port(hp: &str) -> Result<(String, String), String> {
    let err = |why: &str| Err(format!("address {hp}: {why}"));
    let Some(i) = hp.rfind(':') else {
        return err("missing port in address");
    };
    let (host, j, k);
    if hp.starts_with('[') {
        let Some(end) = hp.find(']') else {
            return err("missing ']' in address");
        };
        if end + 1 == hp.len() {
            return err("missing port in address");
        } else if end + 1 != i {
            if hp.as_bytes()[end + 1] == b':' {
                return err("too many colons in address");
            }
            return err("missing port in address");
        }
        host = hp[1..end].to_string();
        j = 1;
        k = end + 1;
    } else {
        host = hp[..i].to_string();
        if host.contains(':') {
            return err("too many colons in address");
        }
        j = 0;
        k = 0;
    }
    if hp[j..].contains('[') {
        return err("unexpected '[' in address");
    }
    if hp[k..].contains(']') {
        return err("unexpected ']' in address");
    }
    Ok((host, hp[i + 1..].to_string()))
}

fn strip_domain(hp: &str) -> String {
    let (mut host, port) = match split_host_port(hp) {
        Ok((h, p)) => (h, p),
        Err(_) => (hp.to_string(), String::new()),
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return hp.to_string();
    }
    host = host.split('.').next().unwrap_or("").to_string();
    if !port.is_empty() {
        if host.contains(':') {
            return format!("[{host}]:{port}");
        }
        return format!("{host}:{port}");
    }
    host
}

/// Go's `evalArgs` for html/js/urlquery.
fn eval_args(args: &[Value]) -> String {
    if let [Value::String(s)] = args {
        return s.clone();
    }
    let printable: Vec<Value> = args
        .iter()
        .map(|a| {
            if let Value::Nil = a {
                Value::str("<no value>")
            } else {
                a.clone()
            }
        })
        .collect();
    sprint(&printable)
}

/// Go's `template.HTMLEscapeString`.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
pub(crate) fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if c.is_ascii() || gofmt::is_print(c) => out.push(c),
            c => out.push_str(&format!("\\u{:04X}", c as u32)),
        }
    }
    out
}

fn builtin_len(v: &Value) -> Result<Value, String> {
    let n = match v {
        Value::String(s) => s.len(),
        Value::List(l) => l.len(),
        Value::StrMap(m) | Value::Kv(m) => m.len(),
        Value::Map(m) => m.len(),
        Value::QueryResult(q) => q.len(),
        Value::Nil => return Err("len of nil pointer".into()),
        other => return Err(format!("len of type {}", other.type_name())),
    };
    Ok(Value::Int(n as i64))
}

fn index_arg(v: &Value, cap: usize) -> Result<usize, String> {
    let x: i128 = match v {
        Value::Int(i) => *i as i128,
        Value::Uint(u) => *u as i128,
        Value::Duration(d) => *d as i128,
        Value::Nil => return Err("cannot index slice/array with nil".into()),
        other => {
            return Err(format!(
                "cannot index slice/array with type {}",
                other.type_name()
            ));
        }
    };
    if x < 0 || x > cap as i128 {
        return Err(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

fn builtin_index(args: Vec<Value>) -> Result<Value, String> {
    let mut it = args.into_iter();
    let mut item = it.next().unwrap_or_default();
    if let Value::Nil = item {
        return Err("index of untyped nil".into());
    }
    for idx in it {
        item = match &item {
            Value::List(l) => {
                let x = index_arg(&idx, l.len())?;
                l.get(x)
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {x}"))?
            }
            Value::QueryResult(q) => {
                let x = index_arg(&idx, q.len())?;
                Value::Sample(Box::new(
                    q.get(x)
                        .cloned()
                        .ok_or_else(|| format!("index out of range: {x}"))?,
                ))
            }
            Value::String(s) => {
                let x = index_arg(&idx, s.len())?;
                Value::Uint(
                    *s.as_bytes()
                        .get(x)
                        .ok_or_else(|| format!("index out of range: {x}"))?
                        as u64,
                )
            }
            Value::StrMap(m) | Value::Kv(m) => match &idx {
                Value::String(k) => Value::String(m.get(k).cloned().unwrap_or_default()),
                Value::Nil => return Err("value is nil; should be of type string".into()),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ));
                }
            },
            Value::Map(m) => match &idx {
                Value::String(k) => m.get(k).cloned().unwrap_or_default(),
                Value::Nil => return Err("value is nil; should be of type string".into()),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ));
                }
            },
            Value::Sample(_) => return Err("can't index item of type *template.sample".into()),
            Value::Nil => return Err("index of nil pointer".into()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

fn builtin_slice(args: Vec<Value>) -> Result<Value, String> {
    let item = &args[0];
    let indexes = &args[1..];
    if let Value::Nil = item {
        return Err("slice of untyped nil".into());
    }
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let len = match item {
        Value::String(s) => {
            if indexes.len() == 3 {
                return Err("cannot 3-index slice a string".into());
            }
            s.len()
        }
        Value::List(l) => l.len(),
        Value::QueryResult(q) => q.len(),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let mut idx = [0, len, len];
    for (i, v) in indexes.iter().enumerate() {
        idx[i] = index_arg(v, len)?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    Ok(match item {
        Value::String(s) => {
            Value::String(String::from_utf8_lossy(&s.as_bytes()[idx[0]..idx[1]]).into_owned())
        }
        Value::List(l) => Value::List(l[idx[0]..idx[1]].to_vec()),
        Value::QueryResult(q) => Value::QueryResult(q[idx[0]..idx[1]].to_vec()),
        _ => Value::Nil,
    })
}

#[derive(PartialEq, Clone, Copy)]
enum Kind {
    Invalid,
    Bool,
    Int,
    Uint,
    Float,
    Str,
    Other,
}

fn basic_kind(v: &Value) -> Kind {
    match v {
        Value::Nil => Kind::Invalid,
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) | Value::Duration(_) => Kind::Int,
        Value::Uint(_) => Kind::Uint,
        Value::Float(_) => Kind::Float,
        Value::String(_) => Kind::Str,
        _ => Kind::Other,
    }
}

fn int_of(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::Duration(i) => *i,
        _ => 0,
    }
}

fn uint_of(v: &Value) -> u64 {
    match v {
        Value::Uint(u) => *u,
        _ => 0,
    }
}

fn float_of(v: &Value) -> f64 {
    match v {
        Value::Float(f) => *f,
        _ => 0.0,
    }
}

const BAD_COMPARISON: &str = "incompatible types for comparison";
const BAD_COMPARISON_TYPE: &str = "invalid type for comparison";

fn builtin_eq(a1: &Value, rest: &[Value]) -> Result<bool, String> {
    if rest.is_empty() {
        return Err("missing argument for comparison".into());
    }
    let k1 = basic_kind(a1);
    for a in rest {
        let k2 = basic_kind(a);
        let truth = if k1 != k2 {
            match (k1, k2) {
                (Kind::Int, Kind::Uint) => int_of(a1) >= 0 && int_of(a1) as u64 == uint_of(a),
                (Kind::Uint, Kind::Int) => int_of(a) >= 0 && uint_of(a1) == int_of(a) as u64,
                _ => {
                    if k1 != Kind::Invalid && k2 != Kind::Invalid {
                        return Err(BAD_COMPARISON.into());
                    }
                    false
                }
            }
        } else {
            match k1 {
                Kind::Bool | Kind::Str => a1 == a,
                Kind::Int => int_of(a1) == int_of(a),
                Kind::Uint => uint_of(a1) == uint_of(a),
                Kind::Float => float_of(a1) == float_of(a),
                Kind::Invalid => true,
                Kind::Other => match (a1, a) {
                    (Value::Time(x), Value::Time(y)) => x == y,
                    (Value::Sample(x), Value::Sample(y)) => x == y,
                    (Value::Struct(x), Value::Struct(y)) if x.type_name == y.type_name => x == y,
                    _ => {
                        return Err(format!(
                            "non-comparable types {}: {}, {}: {}",
                            sprint_value(a1),
                            a1.type_name(),
                            a.type_name(),
                            sprint_value(a)
                        ));
                    }
                },
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

fn builtin_lt(a1: &Value, a2: &Value) -> Result<bool, String> {
    let k1 = basic_kind(a1);
    let k2 = basic_kind(a2);
    if matches!(k1, Kind::Invalid | Kind::Other) || matches!(k2, Kind::Invalid | Kind::Other) {
        return Err(BAD_COMPARISON_TYPE.into());
    }
    if k1 != k2 {
        return match (k1, k2) {
            (Kind::Int, Kind::Uint) => Ok(int_of(a1) < 0 || (int_of(a1) as u64) < uint_of(a2)),
            (Kind::Uint, Kind::Int) => Ok(int_of(a2) >= 0 && uint_of(a1) < int_of(a2) as u64),
            _ => Err(BAD_COMPARISON.into()),
        };
    }
    match (a1, a2) {
        (Value::Bool(_), _) => Err(BAD_COMPARISON_TYPE.into()),
        (Value::Float(x), Value::Float(y)) => Ok(x < y),
        (Value::String(x), Value::String(y)) => Ok(x < y),
        (Value::Uint(x), Value::Uint(y)) => Ok(x < y),
        _ => Ok(int_of(a1) < int_of(a2)),
    }
}

fn builtin_le(a1: &Value, a2: &Value) -> Result<bool, String> {
    if builtin_lt(a1, a2)? {
        return Ok(true);
    }
    builtin_eq(a1, std::slice::from_ref(a2))
}

const TP: Pt = Pt::Time;
const DP: Pt = Pt::Duration;

fn t_of(v: &Value) -> GoTime {
    match v {
        Value::Time(t) => *t,
        _ => GoTime::default(),
    }
}

fn d_of(v: &Value) -> i64 {
    match v {
        Value::Duration(d) | Value::Int(d) => *d,
        _ => 0,
    }
}

macro_rules! m {
    ([$($p:expr),*], $f:expr) => {
        Some(Method { params: &[$($p),*], f: $f })
    };
}

/// The method `name` of `recv`, if any.
pub(crate) fn method(recv: &Value, name: &str) -> Option<Method> {
    match recv {
        Value::Time(_) => match name {
            "Format" => m!([S], |r, a| Ok(Value::String(gotime::format(
                t_of(r),
                &as_str(&a[0])
            )))),
            "String" => m!([], |r, _| Ok(Value::String(gotime::time_string(t_of(r))))),
            "Unix" => m!([], |r, _| Ok(Value::Int(t_of(r).secs))),
            "UnixMilli" => m!([], |r, _| Ok(Value::Int(
                (t_of(r).unix_nanos().div_euclid(1_000_000)) as i64
            ))),
            "UnixMicro" => m!([], |r, _| Ok(Value::Int(
                (t_of(r).unix_nanos().div_euclid(1_000)) as i64
            ))),
            "UnixNano" => m!([], |r, _| Ok(Value::Int(t_of(r).unix_nanos() as i64))),
            "Add" => m!([DP], |r, a| Ok(Value::Time(GoTime::from_unix_nanos(
                t_of(r).unix_nanos() + d_of(&a[0]) as i128
            )))),
            "Sub" => m!([TP], |r, a| {
                let d = t_of(r).unix_nanos() - t_of(&a[0]).unix_nanos();
                Ok(Value::Duration(
                    d.clamp(i64::MIN as i128, i64::MAX as i128) as i64
                ))
            }),
            "Before" => m!([TP], |r, a| Ok(Value::Bool(t_of(r) < t_of(&a[0])))),
            "After" => m!([TP], |r, a| Ok(Value::Bool(t_of(r) > t_of(&a[0])))),
            "Equal" => m!([TP], |r, a| Ok(Value::Bool(t_of(r) == t_of(&a[0])))),
            "UTC" | "Local" => m!([], |r, _| Ok(r.clone())),
            "IsZero" => m!([], |r, _| Ok(Value::Bool(
                t_of(r).secs == -62_135_596_800 && t_of(r).nanos == 0
            ))),
            "Year" => m!([], |r, _| Ok(Value::Int(gotime::civil(t_of(r)).year))),
            "Month" => m!([], |r, _| Ok(Value::str(gotime::month_name(
                gotime::civil(t_of(r)).month
            )))),
            "Day" => m!([], |r, _| Ok(Value::Int(gotime::civil(t_of(r)).day as i64))),
            "Hour" => m!([], |r, _| Ok(Value::Int(
                gotime::civil(t_of(r)).hour as i64
            ))),
            "Minute" => m!([], |r, _| Ok(Value::Int(
                gotime::civil(t_of(r)).minute as i64
            ))),
            "Second" => m!([], |r, _| Ok(Value::Int(
                gotime::civil(t_of(r)).second as i64
            ))),
            "Nanosecond" => m!([], |r, _| Ok(Value::Int(
                gotime::civil(t_of(r)).nanos as i64
            ))),
            "YearDay" => m!([], |r, _| Ok(Value::Int(
                gotime::civil(t_of(r)).yday as i64
            ))),
            "Weekday" => m!([], |r, _| Ok(Value::str(gotime::weekday_name(
                gotime::civil(t_of(r)).weekday
            )))),
            _ => None,
        },
        Value::Kv(_) => match name {
            "SortedPairs" => m!([], |r, _| Ok(Value::List(
                sorted_pairs(r).into_iter().map(pair).collect()
            ))),
            "Names" => m!([], |r, _| Ok(Value::List(
                sorted_pairs(r)
                    .into_iter()
                    .map(|(k, _)| Value::String(k))
                    .collect()
            ))),
            "Values" => m!([], |r, _| Ok(Value::List(
                sorted_pairs(r)
                    .into_iter()
                    .map(|(_, v)| Value::String(v))
                    .collect()
            ))),
            "Remove" => m!([A], |r, a| {
                let Value::Kv(m) = r else {
                    return Ok(r.clone());
                };
                let drop: Vec<String> = match &a[0] {
                    Value::List(l) => l.iter().map(as_str).collect(),
                    Value::Nil => Vec::new(),
                    other => {
                        return Err(format!(
                            "wrong type for value; expected []string; got {}",
                            other.type_name()
                        ));
                    }
                };
                let mut m = m.clone();
                m.retain(|k, _| !drop.contains(k));
                Ok(Value::Kv(m))
            }),
            _ => None,
        },
        // Alertmanager's `template.Pairs` is a list of `template.Pair` structs here; an empty
        // list is taken as empty pairs (so `.SortedPairs.Values` of no labels is empty).
        Value::List(l) if name == "Names" && l.iter().all(is_pair) => {
            m!([], |r, _| Ok(pair_fields(r, "Name")))
        }
        Value::List(l) if name == "Values" && l.iter().all(is_pair) => {
            m!([], |r, _| Ok(pair_fields(r, "Value")))
        }
        // Alertmanager's `template.Alerts`: a list of `template.Alert` structs here.
        Value::List(l) if name == "Firing" && l.iter().all(is_alert) => {
            m!([], |r, _| Ok(alerts_with_status(r, "firing")))
        }
        Value::List(l) if name == "Resolved" && l.iter().all(is_alert) => {
            m!([], |r, _| Ok(alerts_with_status(r, "resolved")))
        }
        Value::Duration(_) => match name {
            "String" => m!([], |r, _| Ok(Value::String(gotime::duration_string(d_of(
                r
            ))))),
            "Seconds" => m!([], |r, _| Ok(Value::Float(duration_float(
                d_of(r),
                1_000_000_000
            )))),
            "Minutes" => m!([], |r, _| Ok(Value::Float(duration_float(
                d_of(r),
                60_000_000_000
            )))),
            "Hours" => m!([], |r, _| Ok(Value::Float(duration_float(
                d_of(r),
                3_600_000_000_000
            )))),
            "Milliseconds" => m!([], |r, _| Ok(Value::Int(d_of(r) / 1_000_000))),
            "Microseconds" => m!([], |r, _| Ok(Value::Int(d_of(r) / 1_000))),
            "Nanoseconds" => m!([], |r, _| Ok(Value::Int(d_of(r)))),
            "Abs" => m!([], |r, _| Ok(Value::Duration(
                d_of(r).checked_abs().unwrap_or(i64::MAX)
            ))),
            "Truncate" => m!([DP], |r, a| {
                let m = d_of(&a[0]);
                Ok(Value::Duration(if m <= 0 {
                    d_of(r)
                } else {
                    d_of(r) - d_of(r) % m
                }))
            }),
            "Round" => m!([DP], |r, a| Ok(Value::Duration(duration_round(
                d_of(r),
                d_of(&a[0])
            )))),
            _ => None,
        },
        _ => None,
    }
}

/// `KV.SortedPairs` order: `alertname` first, then the other names sorted.
fn sorted_pairs(kv: &Value) -> Vec<(String, String)> {
    let Value::Kv(m) = kv else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(m.len());
    if let Some(v) = m.get("alertname") {
        out.push(("alertname".to_string(), v.clone()));
    }
    out.extend(
        m.iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    out
}

const PAIR_TYPE: &str = "template.Pair";

fn pair((name, value): (String, String)) -> Value {
    Value::Struct(Box::new(StructValue {
        type_name: PAIR_TYPE.into(),
        fields: vec![
            ("Name".into(), Value::String(name)),
            ("Value".into(), Value::String(value)),
        ],
    }))
}

const ALERT_TYPE: &str = "template.Alert";

fn is_alert(v: &Value) -> bool {
    matches!(v, Value::Struct(s) if s.type_name == ALERT_TYPE)
}

fn alerts_with_status(list: &Value, status: &str) -> Value {
    let Value::List(l) = list else {
        return Value::List(Vec::new());
    };
    Value::List(
        l.iter()
            .filter(|a| match a {
                Value::Struct(s) => s
                    .fields
                    .iter()
                    .any(|(n, v)| n == "Status" && *v == Value::String(status.to_string())),
                _ => false,
            })
            .cloned()
            .collect(),
    )
}

fn is_pair(v: &Value) -> bool {
    matches!(v, Value::Struct(s) if s.type_name == PAIR_TYPE)
}

fn pair_fields(list: &Value, field: &str) -> Value {
    let Value::List(l) = list else {
        return Value::List(Vec::new());
    };
    Value::List(
        l.iter()
            .filter_map(|p| match p {
                Value::Struct(s) => s
                    .fields
                    .iter()
                    .find(|(n, _)| n == field)
                    .map(|(_, v)| v.clone()),
                _ => None,
            })
            .collect(),
    )
}

/// Go's `Duration.Seconds()` etc: integer part plus fraction, as Go computes it.
fn duration_float(d: i64, unit: i64) -> f64 {
    let whole = d / unit;
    let frac = d % unit;
    whole as f64 + frac as f64 / unit as f64
}

fn duration_round(d: i64, m: i64) -> i64 {
    if m <= 0 {
        return d;
    }
    let mut r = d % m;
    if d < 0 {
        r = -r;
        if r + r < m {
            return d + r;
        }
        return d.checked_sub(m - r).unwrap_or(i64::MIN);
    }
    if r + r < m {
        return d - r;
    }
    d.checked_add(m - r).unwrap_or(i64::MAX)
}
