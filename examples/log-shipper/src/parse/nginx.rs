//! nginx `log_format` strings, in nginx's own syntax, compiled to a matcher.
//!
//! ```
//! use log_shipper::parse::nginx::LogFormat;
//!
//! let format = LogFormat::compile(
//!     r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time"#,
//! ).unwrap();
//! let line = r#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a.html?x=1 HTTP/1.1" 200 2326 "-" "curl/8" 0.004"#;
//! let access = format.parse(line).unwrap();
//! assert_eq!(access.status, Some(200));
//! assert_eq!(access.method.as_deref(), Some("GET"));
//! assert_eq!(access.path.as_deref(), Some("/a.html"));
//! assert_eq!(access.request_time, Some(0.004));
//! ```
//!
//! Each variable captures up to the first occurrence of the literal text that follows it in the
//! format (nginx escapes `"` inside values as `\x22`, so quoted fields are unambiguous);
//! `$time_local` takes its fixed 26 characters, so it may be followed by a space. Two variables
//! with nothing between them cannot be split and are refused when compiling. A value of `-` is
//! nginx's "empty" and becomes absent.

use crate::record::{AttrKey, Value};

use super::time::{parse_msec, parse_rfc3339, parse_time_local};

/// nginx's predefined `combined` format.
pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// nginx's `main` format of the Debian/upstream default `nginx.conf` (combined plus
/// `$http_x_forwarded_for`).
pub const MAIN: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#;

/// Why a `log_format` string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// `$` not followed by a variable name.
    #[error("column {column}: `$` without a variable name")]
    EmptyName {
        /// 1-based character column.
        column: usize,
    },
    /// `${` without `}`.
    #[error("column {column}: `${{` without a closing `}}`")]
    Unclosed {
        /// 1-based character column.
        column: usize,
    },
    /// Two variables with no literal text between them.
    #[error(
        "column {column}: ${first} is followed directly by ${second}; the line could not be split between them"
    )]
    Adjacent {
        /// 1-based character column of the second variable.
        column: usize,
        /// The first variable.
        first: String,
        /// The second variable.
        second: String,
    },
    /// The format has no variable at all.
    #[error("the format has no variables")]
    NoVariables,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(String),
}

/// A compiled `log_format`.
#[derive(Clone, Debug)]
pub struct LogFormat {
    parts: Vec<Part>,
    /// A substring searcher for each literal part (`None` for variables), built once: the
    /// end of a variable is where the next literal starts.
    finders: Vec<Option<memchr::memmem::Finder<'static>>>,
}

/// The fields of one access-log line. Everything is optional: a format may not have the
/// variable, and nginx writes `-` for empty values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Access {
    /// `$remote_addr`.
    pub remote_addr: Option<String>,
    /// `$remote_user`.
    pub remote_user: Option<String>,
    /// `$time_local`, `$time_iso8601` or `$msec`, in nanoseconds since the epoch.
    pub time_unix_nano: Option<u64>,
    /// The method (from `$request` or `$request_method`).
    pub method: Option<String>,
    /// The path without query (from `$request`, `$request_uri` or `$uri`).
    pub path: Option<String>,
    /// The query string without `?`.
    pub query: Option<String>,
    /// `HTTP/1.1` (from `$request` or `$server_protocol`).
    pub protocol: Option<String>,
    /// `$request` as written, when it was not a well-formed request line.
    pub request_line: Option<String>,
    /// `$status`.
    pub status: Option<u16>,
    /// `$body_bytes_sent`.
    pub body_bytes_sent: Option<u64>,
    /// `$bytes_sent`.
    pub bytes_sent: Option<u64>,
    /// `$http_referer`.
    pub referer: Option<String>,
    /// `$http_user_agent`.
    pub user_agent: Option<String>,
    /// `$request_time`, seconds.
    pub request_time: Option<f64>,
    /// `$upstream_response_time` as written (it lists one value per upstream tried).
    pub upstream_response_time: Option<String>,
    /// `$host` or `$server_name`.
    pub host: Option<String>,
    /// The request target was in the absolute form (`GET http://host/x`): sent as to a
    /// proxy, which open-proxy scanners do; nginx then takes `$host` from it.
    pub absolute_target: bool,
    /// Every other variable, by name without `$`.
    pub other: Vec<(String, String)>,
}

impl LogFormat {
    /// The built-in `combined` format.
    pub fn combined() -> Self {
        // COMBINED is a valid format, checked by the `combined_compiles` test.
        Self::compile(COMBINED).unwrap_or(LogFormat {
            parts: Vec::new(),
            finders: Vec::new(),
        })
    }

    /// A format by name (`combined`, `main`) or a format string in nginx syntax.
    ///
    /// # Errors
    ///
    /// As [`compile`](Self::compile).
    pub fn named_or_compile(spec: &str) -> Result<Self, FormatError> {
        match spec {
            "combined" => Self::compile(COMBINED),
            "main" => Self::compile(MAIN),
            other => Self::compile(other),
        }
    }

    /// Compiles a format string as written in nginx's `log_format` directive (after nginx
    /// joined its quoted pieces): `$name` and `${name}` are variables, the rest is literal.
    ///
    /// # Errors
    ///
    /// A `$` without a name, an unclosed `${`, two variables with nothing between them, or no
    /// variable at all.
    pub fn compile(format: &str) -> Result<Self, FormatError> {
        let mut parts: Vec<Part> = Vec::new();
        let mut literal = String::new();
        let chars: Vec<char> = format.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '$' {
                literal.push(chars[i]);
                i += 1;
                continue;
            }
            let column = i + 1;
            let (name, next) = if chars.get(i + 1) == Some(&'{') {
                let close = chars[i + 2..]
                    .iter()
                    .position(|c| *c == '}')
                    .ok_or(FormatError::Unclosed { column })?;
                (
                    chars[i + 2..i + 2 + close].iter().collect::<String>(),
                    i + 3 + close,
                )
            } else {
                let len = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                (
                    chars[i + 1..i + 1 + len].iter().collect::<String>(),
                    i + 1 + len,
                )
            };
            if name.is_empty() {
                return Err(FormatError::EmptyName { column });
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            } else if let Some(Part::Var(first)) = parts.last() {
                return Err(FormatError::Adjacent {
                    column,
                    first: first.clone(),
                    second: name,
                });
            }
            parts.push(Part::Var(name));
            i = next;
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts.iter().any(|p| matches!(p, Part::Var(_))) {
            return Err(FormatError::NoVariables);
        }
        let finders = parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => Some(memchr::memmem::Finder::new(l.as_bytes()).into_owned()),
                Part::Var(_) => None,
            })
            .collect();
        Ok(Self { parts, finders })
    }

    /// The variable names of this format, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Splits `line` into the format's variables; `None` when the line does not have the
    /// format's shape.
    pub fn split<'l>(&self, line: &'l str) -> Option<Vec<(&str, &'l str)>> {
        let mut out = Vec::with_capacity(self.parts.len());
        let mut pos = 0;
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                Part::Literal(l) => {
                    if !line[pos..].starts_with(l.as_str()) {
                        return None;
                    }
                    pos += l.len();
                }
                Part::Var(name) => {
                    let rest = &line[pos..];
                    let end =
                        if name == "time_local" && rest.len() >= 26 && rest.is_char_boundary(26) {
                            26
                        } else {
                            // A UTF-8 needle found in UTF-8 text starts on a character
                            // boundary, so slicing there cannot panic.
                            match self.finders.get(i + 1) {
                                Some(Some(literal)) => literal.find(rest.as_bytes())?,
                                _ => rest.len(),
                            }
                        };
                    out.push((name.as_str(), &rest[..end]));
                    pos += end;
                }
            }
        }
        (pos == line.len()).then_some(out)
    }

    /// Parses `line` into typed fields; `None` when it does not have the format's shape.
    pub fn parse(&self, line: &str) -> Option<Access> {
        let mut a = Access::default();
        for (name, raw) in self.split(line)? {
            if raw == "-" || raw.is_empty() {
                continue;
            }
            let s = || Some(raw.to_owned());
            match name {
                "remote_addr" => a.remote_addr = s(),
                "remote_user" => a.remote_user = s(),
                "time_local" => a.time_unix_nano = parse_time_local(raw),
                "time_iso8601" => a.time_unix_nano = parse_rfc3339(raw),
                "msec" => a.time_unix_nano = parse_msec(raw),
                "request" => {
                    // nginx's request line: a method of `A-Z`, `_` and `-`, then the target
                    // and the protocol, separated by one or more spaces.
                    let mut it = raw.split(' ').filter(|p| !p.is_empty());
                    match (it.next(), it.next(), it.next(), it.next()) {
                        (Some(m), Some(target), Some(proto), None)
                            if m.bytes()
                                .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-') =>
                        {
                            a.method = Some(m.to_owned());
                            set_target(&mut a, target);
                            a.protocol = Some(proto.to_owned());
                        }
                        _ => a.request_line = s(),
                    }
                }
                "request_method" => a.method = s(),
                "request_uri" | "uri" => set_target(&mut a, raw),
                "server_protocol" => a.protocol = s(),
                "status" => a.status = raw.parse().ok(),
                "body_bytes_sent" => a.body_bytes_sent = raw.parse().ok(),
                "bytes_sent" => a.bytes_sent = raw.parse().ok(),
                "http_referer" => a.referer = s(),
                "http_user_agent" => a.user_agent = s(),
                "request_time" => a.request_time = raw.parse().ok(),
                "upstream_response_time" => a.upstream_response_time = s(),
                "host" | "server_name" | "http_host" => {
                    if a.host.is_none() {
                        a.host = s();
                    }
                }
                other => a.other.push((other.to_owned(), raw.to_owned())),
            }
        }
        Some(a)
    }
}

fn set_target(a: &mut Access, target: &str) {
    // The absolute form (`GET http://host/x`, proxies and open-proxy scanners): the path is
    // what follows the authority.
    let target = match target.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            a.absolute_target = true;
            &rest[rest.find(['/', '?']).unwrap_or(rest.len())..]
        }
        _ => target,
    };
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    // An absolute target's path may be empty (`http://host?x`): the root.
    let path = if path.is_empty() && a.absolute_target {
        "/"
    } else {
        path
    };
    a.path = Some(path.to_owned());
    if let Some(q) = query {
        a.query = Some(q.to_owned());
    }
}

impl Access {
    /// The fields as record attributes, with OpenTelemetry semantic-convention names
    /// (`client.address`, `http.request.method`, `url.path`, `http.response.status_code`,
    /// `user_agent.original` ...); variables without a convention become `nginx.<name>`.
    pub fn attributes(&self) -> Vec<(AttrKey, Value)> {
        self.clone().into_attributes()
    }

    /// As [`attributes`](Self::attributes), moving the strings instead of copying them.
    pub fn into_attributes(self) -> Vec<(AttrKey, Value)> {
        let mut out = Vec::with_capacity(12 + self.other.len());
        let mut put = |k: &'static str, v: Option<Value>| {
            if let Some(v) = v {
                out.push((AttrKey::Borrowed(k), v));
            }
        };
        let st = |s: Option<String>| s.map(Value::Str);
        put("client.address", st(self.remote_addr));
        put("user.name", st(self.remote_user));
        put("http.request.method", st(self.method));
        put("url.path", st(self.path));
        put("url.query", st(self.query));
        put(
            "network.protocol.version",
            self.protocol.map(|mut p| {
                if p.starts_with("HTTP/") {
                    p.drain(..5);
                }
                Value::Str(p)
            }),
        );
        put("nginx.request", st(self.request_line));
        put(
            "http.response.status_code",
            self.status.map(|s| Value::Int(i64::from(s))),
        );
        put(
            "http.response.body.size",
            self.body_bytes_sent
                .map(|b| Value::Int(i64::try_from(b).unwrap_or(i64::MAX))),
        );
        put(
            "http.response.size",
            self.bytes_sent
                .map(|b| Value::Int(i64::try_from(b).unwrap_or(i64::MAX))),
        );
        put("http.request.header.referer", st(self.referer));
        put("user_agent.original", st(self.user_agent));
        put("nginx.request_time", self.request_time.map(Value::Float));
        put(
            "nginx.upstream_response_time",
            st(self.upstream_response_time),
        );
        put("server.address", st(self.host));
        for (k, v) in self.other {
            out.push((format!("nginx.{k}").into(), Value::Str(v)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_compiles() {
        let f = LogFormat::compile(COMBINED).unwrap();
        assert_eq!(
            f.variables().collect::<Vec<_>>(),
            [
                "remote_addr",
                "remote_user",
                "time_local",
                "request",
                "status",
                "body_bytes_sent",
                "http_referer",
                "http_user_agent"
            ]
        );
        assert!(LogFormat::compile(MAIN).is_ok());
        assert_eq!(LogFormat::combined().variables().count(), 8);
    }

    #[test]
    fn combined_line() {
        let line = r#"192.0.2.7 - alice [26/Nov/2026:02:08:49 +0000] "GET /docs/a.html?q=1 HTTP/1.1" 404 153 "https://example.com/" "Mozilla/5.0 (X11; Linux x86_64)""#;
        let a = LogFormat::combined().parse(line).unwrap();
        assert_eq!(a.remote_addr.as_deref(), Some("192.0.2.7"));
        assert_eq!(a.remote_user.as_deref(), Some("alice"));
        assert_eq!(a.method.as_deref(), Some("GET"));
        assert_eq!(a.path.as_deref(), Some("/docs/a.html"));
        assert_eq!(a.query.as_deref(), Some("q=1"));
        assert_eq!(a.protocol.as_deref(), Some("HTTP/1.1"));
        assert_eq!(a.status, Some(404));
        assert_eq!(a.body_bytes_sent, Some(153));
        assert_eq!(a.referer.as_deref(), Some("https://example.com/"));
        assert_eq!(
            a.user_agent.as_deref(),
            Some("Mozilla/5.0 (X11; Linux x86_64)")
        );
        assert_eq!(a.time_unix_nano, Some(1_795_658_929_000_000_000));
        assert_eq!(a.request_time, None);
    }

    /// Request lines nginx accepts: methods with `_` and `-`, several spaces, an absolute
    /// target (whose path is what follows the authority).
    #[test]
    fn request_lines_as_nginx_reads_them() {
        let parse = |request: &str| {
            let line =
                format!(r#"192.0.2.7 - - [26/Nov/2026:02:08:49 +0000] "{request}" 200 1 "-" "-""#);
            LogFormat::combined().parse(&line).unwrap()
        };
        let a = parse("M-SEARCH * HTTP/1.1");
        assert_eq!(
            (a.method.as_deref(), a.path.as_deref()),
            (Some("M-SEARCH"), Some("*"))
        );
        let a = parse("VERSION_CONTROL  /x  HTTP/1.1");
        assert_eq!(
            (a.method.as_deref(), a.path.as_deref()),
            (Some("VERSION_CONTROL"), Some("/x"))
        );
        assert_eq!(a.protocol.as_deref(), Some("HTTP/1.1"));
        let a = parse("GET http://www.example.cn/ HTTP/1.1");
        assert_eq!((a.path.as_deref(), a.query), (Some("/"), None));
        assert!(a.absolute_target);
        let a = parse("GET HTTP://proxy.example:8080/a/b?c=d HTTP/1.1");
        assert_eq!(
            (a.path.as_deref(), a.query.as_deref()),
            (Some("/a/b"), Some("c=d"))
        );
        let a = parse("GET https://host.example?x=1 HTTP/1.1");
        assert_eq!(
            (a.path.as_deref(), a.query.as_deref()),
            (Some("/"), Some("x=1"))
        );
        let a = parse("CONNECT host.example:443 HTTP/1.1");
        assert_eq!(a.path.as_deref(), Some("host.example:443"));
        let a = parse("GET /r?to=http://x/ HTTP/1.1");
        assert!(!a.absolute_target);
        assert_eq!(
            (a.path.as_deref(), a.query.as_deref()),
            (Some("/r"), Some("to=http://x/"))
        );
        let a = parse("get /x HTTP/1.1");
        assert_eq!(
            (a.method, a.request_line.as_deref()),
            (None, Some("get /x HTTP/1.1"))
        );
    }

    #[test]
    fn dashes_are_absent_and_bad_request_lines_are_kept() {
        let line = r#"10.0.0.1 - - [26/Nov/2026:02:08:49 +0000] "\x16\x03\x01" 400 157 "-" "-""#;
        let a = LogFormat::combined().parse(line).unwrap();
        assert_eq!(a.method, None);
        assert_eq!(a.request_line.as_deref(), Some(r"\x16\x03\x01"));
        assert_eq!(a.remote_user, None);
        assert_eq!(a.user_agent, None);
        assert_eq!(a.status, Some(400));
    }

    #[test]
    fn custom_format_with_times_host_and_braces() {
        let f = LogFormat::compile(
            r#"${host} $remote_addr [$time_iso8601] "$request_method $request_uri $server_protocol" $status $bytes_sent rt=$request_time urt="$upstream_response_time" cache=$upstream_cache_status"#,
        )
        .unwrap();
        let line = r#"docs.example.com 127.0.0.1 [2026-11-26T02:08:49+00:00] "POST /api/v1/items?id=3 HTTP/2.0" 201 512 rt=0.125 urt="0.100, 0.020" cache=MISS"#;
        let a = f.parse(line).unwrap();
        assert_eq!(a.host.as_deref(), Some("docs.example.com"));
        assert_eq!(a.method.as_deref(), Some("POST"));
        assert_eq!(a.path.as_deref(), Some("/api/v1/items"));
        assert_eq!(a.status, Some(201));
        assert_eq!(a.bytes_sent, Some(512));
        assert_eq!(a.request_time, Some(0.125));
        assert_eq!(a.upstream_response_time.as_deref(), Some("0.100, 0.020"));
        assert_eq!(a.time_unix_nano, Some(1_795_658_929_000_000_000));
        assert_eq!(
            a.other,
            vec![("upstream_cache_status".to_owned(), "MISS".to_owned())]
        );
        let attrs = a.attributes();
        assert!(attrs.contains(&("http.response.status_code".into(), Value::Int(201))));
        assert!(attrs.contains(&(
            "nginx.upstream_cache_status".into(),
            Value::Str("MISS".into())
        )));
    }

    #[test]
    fn time_local_followed_by_a_space() {
        let f = LogFormat::compile("$time_local $status").unwrap();
        let a = f.parse("26/Nov/2026:02:08:49 +0000 200").unwrap();
        assert_eq!(a.status, Some(200));
        assert!(a.time_unix_nano.is_some());
    }

    #[test]
    fn lines_of_another_shape_do_not_match() {
        let f = LogFormat::combined();
        assert!(f.parse("hello world").is_none());
        assert!(f.parse("").is_none());
        let with_extra =
            r#"1.2.3.4 - - [26/Nov/2026:02:08:49 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" "extra""#;
        assert!(f.parse(with_extra).is_none());
    }

    #[test]
    fn compile_errors_say_where() {
        assert_eq!(
            LogFormat::compile("$a$b").unwrap_err(),
            FormatError::Adjacent {
                column: 3,
                first: "a".into(),
                second: "b".into()
            }
        );
        assert_eq!(
            LogFormat::compile("x $ y").unwrap_err(),
            FormatError::EmptyName { column: 3 }
        );
        assert_eq!(
            LogFormat::compile("${host").unwrap_err(),
            FormatError::Unclosed { column: 1 }
        );
        assert_eq!(
            LogFormat::compile("plain").unwrap_err(),
            FormatError::NoVariables
        );
    }
}
