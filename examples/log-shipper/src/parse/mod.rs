//! Parsers: nginx access logs in any `log_format`, JSON lines (axi-obs-core's ECS fields),
//! and plain text with level detection.
//!
//! ```
//! use log_shipper::parse::Parser;
//! use log_shipper::record::Level;
//!
//! let p = Parser::Text;
//! assert_eq!(p.parse("2026-01-01 12:00:00 ERROR db: timeout".into()).level, Some(Level::Error));
//!
//! let p = Parser::Json;
//! let out = p.parse(r#"{"@timestamp":"2026-01-01T00:00:00Z","log.level":"WARN","message":"slow","http.route":"/a"}"#.into());
//! assert_eq!(out.body, "slow");
//! assert_eq!(out.level, Some(Level::Warn));
//! ```

pub mod nginx;
pub mod time;

use crate::record::{AttrKey, Level, Value};

/// What a parser made of one line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    /// When the event happened, if the line says.
    pub time_unix_nano: Option<u64>,
    /// Severity, if found.
    pub level: Option<Level>,
    /// The message.
    pub body: String,
    /// Fields.
    pub attributes: Vec<(AttrKey, Value)>,
    /// `trace.id` of a JSON line.
    pub trace_id: Option<[u8; 16]>,
    /// `span.id` of a JSON line.
    pub span_id: Option<[u8; 8]>,
    /// The access-log fields, for the access metrics.
    pub access: Option<nginx::Access>,
    /// False when the line did not have the expected shape (it is still shipped, as text).
    pub ok: bool,
}

/// How an input's lines are read.
#[derive(Clone, Debug)]
pub enum Parser {
    /// nginx access log in the given format. The level is `ERROR` for 5xx, `WARN` for 4xx,
    /// `INFO` otherwise; the body is the line as written.
    Nginx(nginx::LogFormat),
    /// One JSON object per line (ECS names: `@timestamp`, `log.level`, `message`, `trace.id`,
    /// `span.id`; every other field kept as an attribute, nested objects flattened with dots).
    Json,
    /// Plain text; the level is the first level word (`ERROR`, `warn`, `[info]` ...) among the
    /// first eight words.
    Text,
}

impl Parser {
    /// Parses one line (without its newline).
    pub fn parse(&self, line: String) -> Parsed {
        let mut access = None;
        let mut parsed = self.parse_observed(line, |a| access = Some(a.clone()));
        parsed.access = access;
        parsed
    }

    /// As [`parse`](Self::parse), for the shipping path: the fields of an access line are
    /// shown to `observe` (the access metrics), then moved into the attributes rather than
    /// copied; [`Parsed::access`] is left `None`.
    pub fn parse_observed(&self, line: String, observe: impl FnOnce(&nginx::Access)) -> Parsed {
        match self {
            Parser::Nginx(format) => match format.parse(&line) {
                Some(access) => {
                    observe(&access);
                    Parsed {
                        time_unix_nano: access.time_unix_nano,
                        level: Some(match access.status {
                            Some(500..) => Level::Error,
                            Some(400..) => Level::Warn,
                            _ => Level::Info,
                        }),
                        attributes: access.into_attributes(),
                        body: line,
                        access: None,
                        ok: true,
                        ..Parsed::default()
                    }
                }
                None => text(line, false),
            },
            Parser::Json => json(line),
            Parser::Text => text(line, true),
        }
    }
}

fn text(line: String, ok: bool) -> Parsed {
    Parsed {
        level: detect_level(&line),
        body: line,
        ok,
        ..Parsed::default()
    }
}

/// The first level word among the first eight words of `line`.
pub fn detect_level(line: &str) -> Option<Level> {
    let head = match line.char_indices().nth(256) {
        Some((i, _)) => &line[..i],
        None => line,
    };
    head.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .take(8)
        .find_map(|w| {
            // Words of the message itself ("alert", "panic", "critical") are too common in
            // lower case to count; loggers write those upper-case or bracketed.
            let lower_ok = matches!(
                w,
                "trace" | "debug" | "info" | "warn" | "warning" | "error" | "fatal"
            );
            let upper = w.bytes().all(|b| b.is_ascii_uppercase());
            let title = w.len() > 1
                && w.as_bytes()[0].is_ascii_uppercase()
                && w[1..].bytes().all(|b| b.is_ascii_lowercase());
            if upper || lower_ok || title {
                Level::from_name(w)
            } else {
                None
            }
        })
}

fn json(line: String) -> Parsed {
    let map = match serde_json::from_str::<serde_json::Value>(&line) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return text(line, false),
    };
    let mut out = Parsed {
        ok: true,
        ..Parsed::default()
    };
    let mut body = None;
    for (k, v) in map {
        match (k.as_str(), &v) {
            ("@timestamp" | "timestamp", serde_json::Value::String(s))
                if out.time_unix_nano.is_none() =>
            {
                out.time_unix_nano = time::parse_rfc3339(s);
                if out.time_unix_nano.is_none() {
                    out.attributes.push((k.into(), Value::Str(s.clone())));
                }
            }
            ("log.level" | "level", serde_json::Value::String(s)) if out.level.is_none() => {
                out.level = Level::from_name(s);
            }
            // The message: `message`, else `msg`, else Docker json-file's `log`, else
            // structlog's `event`; the others stay fields.
            ("message" | "msg" | "log" | "event", serde_json::Value::String(s)) => {
                let rank = BODY_KEYS.iter().position(|b| *b == k).unwrap_or(0);
                if body.as_ref().is_none_or(|(r, _, _)| rank < *r) {
                    if let Some((_, k, s)) = body.replace((rank, k, s.clone())) {
                        out.attributes.push((k.into(), Value::Str(s)));
                    }
                } else {
                    out.attributes.push((k.into(), Value::Str(s.clone())));
                }
            }
            ("trace.id", serde_json::Value::String(s)) if out.trace_id.is_none() => {
                out.trace_id = hex_id::<16>(s);
            }
            ("span.id", serde_json::Value::String(s)) if out.span_id.is_none() => {
                out.span_id = hex_id::<8>(s);
            }
            _ => flatten(k, v, &mut out.attributes, 0),
        }
    }
    out.body = body.map_or(line, |(_, _, s)| s);
    out
}

/// The keys a JSON line's message may be under, the first present winning.
const BODY_KEYS: [&str; 4] = ["message", "msg", "log", "event"];

fn flatten(key: String, v: serde_json::Value, out: &mut Vec<(AttrKey, Value)>, depth: usize) {
    match v {
        serde_json::Value::Object(m) if depth < 8 => {
            for (k, v) in m {
                flatten(format!("{key}.{k}"), v, out, depth + 1);
            }
        }
        serde_json::Value::String(s) => out.push((key.into(), Value::Str(s))),
        serde_json::Value::Bool(b) => out.push((key.into(), Value::Bool(b))),
        serde_json::Value::Number(n) => out.push((
            key.into(),
            n.as_i64()
                .map(Value::Int)
                .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        )),
        serde_json::Value::Null => {}
        other => out.push((key.into(), Value::Str(other.to_string()))),
    }
}

fn hex_id<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out).filter(|id| id.iter().any(|b| *b != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_of_docker_and_structlog_json_lines() {
        let p = Parser::Json.parse(
            r#"{"log":"GET / 200\n","stream":"stdout","time":"2026-11-27T10:00:00Z"}"#.into(),
        );
        assert_eq!(p.body, "GET / 200\n");
        assert!(!p.attributes.iter().any(|(k, _)| k.as_ref() == "log"));
        let p = Parser::Json.parse(r#"{"event":"user logged in","level":"info"}"#.into());
        assert_eq!(p.body, "user logged in");
        // `message` wins wherever it stands; the others stay fields.
        let p = Parser::Json.parse(r#"{"event":"e","log":"l","message":"m"}"#.into());
        assert_eq!(p.body, "m");
        let mut keys: Vec<&str> = p.attributes.iter().map(|(k, _)| k.as_ref()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["event", "log"]);
        // An object under `event` is fields, not the message.
        let p = Parser::Json.parse(r#"{"event":{"kind":"x"},"msg":"hi"}"#.into());
        assert_eq!(p.body, "hi");
        assert!(p.attributes.iter().any(|(k, _)| k.as_ref() == "event.kind"));
    }

    #[test]
    fn levels_in_common_layouts() {
        let cases = [
            (
                "2026-01-01T00:00:00Z ERROR shop: payment failed",
                Some(Level::Error),
            ),
            (
                "[2026-01-01 00:00:00] [warn] disk almost full",
                Some(Level::Warn),
            ),
            (
                "2026/11/26 02:08:49 [error] 6320#6320: *2 open() failed",
                Some(Level::Error),
            ),
            ("I 12:00 Info: started", Some(Level::Info)),
            ("level=debug msg=hello", Some(Level::Debug)),
            ("FATAL: out of memory", Some(Level::Fatal)),
            ("2026/11/26 02:08:49 [crit] 1#1: x", None),
            ("2026/11/26 02:08:49 [CRIT] 1#1: x", Some(Level::Fatal)),
            ("user clicked the panic button", None),
            ("nothing to see here", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(detect_level(line), want, "{line}");
        }
    }

    #[test]
    fn axi_obs_json_lines_keep_their_ecs_fields() {
        let line = r#"{"@timestamp":"2026-11-26T02:08:49.5Z","log.level":"ERROR","message":"payment failed","log.logger":"shop::pay","service.name":"shop","trace.id":"4bf92f3577b34da6a3ce929d0e0e4736","span.id":"00f067aa0ba902b7","order":{"id":42,"total":19.99},"retry":true,"tags":["a","b"],"gone":null}"#;
        let p = Parser::Json.parse(line.into());
        assert!(p.ok);
        assert_eq!(p.body, "payment failed");
        assert_eq!(p.level, Some(Level::Error));
        assert_eq!(p.time_unix_nano, Some(1_795_658_929_500_000_000));
        assert_eq!(p.trace_id.unwrap()[0], 0x4b);
        assert_eq!(p.span_id.unwrap()[7], 0xb7);
        let get = |k: &str| {
            p.attributes
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("log.logger"), Some(Value::Str("shop::pay".into())));
        assert_eq!(get("service.name"), Some(Value::Str("shop".into())));
        assert_eq!(get("order.id"), Some(Value::Int(42)));
        assert_eq!(get("order.total"), Some(Value::Float(19.99)));
        assert_eq!(get("retry"), Some(Value::Bool(true)));
        assert_eq!(get("tags"), Some(Value::Str(r#"["a","b"]"#.into())));
        assert_eq!(get("gone"), None);
    }

    #[test]
    fn a_line_that_is_not_json_is_shipped_as_text() {
        let p = Parser::Json.parse("WARN not json".into());
        assert!(!p.ok);
        assert_eq!(p.body, "WARN not json");
        assert_eq!(p.level, Some(Level::Warn));
        let p = Parser::Json.parse("[1,2]".into());
        assert!(!p.ok);
    }

    #[test]
    fn nginx_levels_follow_the_status() {
        let p = Parser::Nginx(nginx::LogFormat::combined());
        let line = |s: u16| {
            format!(r#"1.2.3.4 - - [26/Nov/2026:02:08:49 +0000] "GET / HTTP/1.1" {s} 1 "-" "ua""#)
        };
        assert_eq!(p.parse(line(200)).level, Some(Level::Info));
        assert_eq!(p.parse(line(404)).level, Some(Level::Warn));
        assert_eq!(p.parse(line(502)).level, Some(Level::Error));
        let bad = p.parse("garbage".into());
        assert!(!bad.ok && bad.access.is_none());
    }
}
