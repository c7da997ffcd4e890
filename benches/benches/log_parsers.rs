//! The parsers of axi-log-shipper side by side with what most users write, in one run on the
//! same lines.
//!
//! * nginx `combined` access lines: our compiled `log_format` (`LogFormat::parse`, typed
//!   fields) against the `regex` crate with the usual documented combined-format regular
//!   expression with named captures, turned into the same fields (same owned strings, same
//!   integers; `$time_local` through the same time parser on both sides, so the rows compare
//!   the splitting and field extraction). A third row is what the shipper does per line
//!   (`Parser::parse_observed`: fields, shown to the access metrics (here to nothing), then
//!   moved into OpenTelemetry attributes, and the level).
//! * JSON lines as axi-obs-core writes them (ECS names): our `Parser::Json` (timestamp, level,
//!   message, trace and span ids, the other fields flattened into attributes) against a bare
//!   `serde_json::from_str::<serde_json::Value>` (which only builds the tree ours starts from).
//!
//! 1,000 distinct generated lines (seeded: varied clients, methods, paths with and without
//! queries, statuses 200-504, sizes, referers and real user agents) per iteration; throughput
//! in lines per second. Before timing, both nginx sides are checked to produce the same fields
//! for every line. `Parser` takes the line by value, as the tailer hands it over, so its rows
//! include copying the line (a few tens of nanoseconds).

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use log_shipper::parse::Parser;
use log_shipper::parse::nginx::{Access, LogFormat};
use log_shipper::parse::time::parse_time_local;
use regex::Regex;

const LINES: usize = 1000;

/// A small seeded generator (xorshift64*), so the lines are the same in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.11.0",
    "Prometheus/3.0.1",
    "python-requests/2.32.3",
];
const PATHS: &[&str] = &[
    "/",
    "/docs/getting-started/install.html",
    "/docs/reference/configuration/outputs.html",
    "/api/users/4711",
    "/api/orders",
    "/static/js/app.3f9a1c.js",
    "/static/css/site.css",
    "/favicon.ico",
    "/healthz",
    "/search",
];
const STATUSES: &[&str] = &[
    "200", "200", "200", "200", "200", "200", "304", "301", "404", "403", "429", "500", "502",
    "504",
];
const REFERERS: &[&str] = &[
    "-",
    "https://docs.example.com/",
    "https://www.google.com/",
    "https://docs.example.com/docs/getting-started/install.html",
];

/// nginx `combined` lines:
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`.
fn nginx_lines() -> Vec<String> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    (0..LINES)
        .map(|i| {
            let addr = format!(
                "{}.{}.{}.{}",
                10 + r.below(200),
                r.below(256),
                r.below(256),
                1 + r.below(254)
            );
            let user = if r.below(20) == 0 { "alice" } else { "-" };
            let method = r.pick(&["GET", "GET", "GET", "GET", "POST", "HEAD", "PUT"]);
            let path = r.pick(PATHS);
            let query = match r.below(4) {
                0 => format!("?q=otlp+logs&page={}", r.below(9)),
                _ => String::new(),
            };
            format!(
                "{addr} - {user} [26/Nov/2026:10:{:02}:{:02} +0000] \"{method} {path}{query} HTTP/1.1\" {} {} \"{}\" \"{}\"",
                (i / 60) % 60,
                i % 60,
                r.pick(STATUSES),
                r.below(250_000),
                r.pick(REFERERS),
                r.pick(AGENTS),
            )
        })
        .collect()
}

/// JSON lines as axi-obs-core's JSON layer writes them (ECS names).
fn json_lines() -> Vec<String> {
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    (0..LINES)
        .map(|i| {
            let level = r.pick(&["INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG"]);
            format!(
                concat!(
                    r#"{{"@timestamp":"2026-11-26T10:{:02}:{:02}.{:06}Z","log.level":"{}","message":"request finished","#,
                    r#""service.name":"shop","service.version":"1.4.2","log.logger":"axi_obs_axum::http","#,
                    r#""trace.id":"{:016x}{:016x}","span.id":"{:016x}","#,
                    r#""http.request.method":"GET","http.route":"/api/users/{{id}}","url.path":"/api/users/{}","#,
                    r#""http.response.status_code":{},"duration_ms":{}.{},"user":{{"id":{},"plan":"pro"}}}}"#
                ),
                (i / 60) % 60,
                i % 60,
                r.below(1_000_000),
                level,
                r.next() | 1,
                r.next(),
                r.next() | 1,
                r.below(100_000),
                r.pick(STATUSES),
                r.below(900),
                r.below(10),
                r.below(10_000),
            )
        })
        .collect()
}

/// The `combined` regular expression as commonly documented, with named captures, and the
/// request line split into method, path, query and protocol.
const COMBINED_RE: &str = r#"^(?P<remote_addr>\S+) - (?P<remote_user>\S+) \[(?P<time_local>[^\]]+)\] "(?:(?P<method>[A-Z]+) (?P<path>[^ ?"]*)(?:\?(?P<query>[^ "]*))? (?P<protocol>[^"]*)|(?P<request>[^"]*))" (?P<status>\d{3}) (?P<body_bytes_sent>\d+|-) "(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)"$"#;

/// The peer: regex captures turned into the same typed fields as ours (`-` is empty).
fn regex_parse(re: &Regex, line: &str) -> Option<Access> {
    let c = re.captures(line)?;
    let s = |name: &str| {
        c.name(name)
            .map(|m| m.as_str())
            .filter(|v| *v != "-" && !v.is_empty())
            .map(str::to_owned)
    };
    Some(Access {
        remote_addr: s("remote_addr"),
        remote_user: s("remote_user"),
        time_unix_nano: c
            .name("time_local")
            .and_then(|m| parse_time_local(m.as_str())),
        method: s("method"),
        path: s("path"),
        query: s("query"),
        protocol: s("protocol"),
        request_line: s("request"),
        status: c.name("status").and_then(|m| m.as_str().parse().ok()),
        body_bytes_sent: c
            .name("body_bytes_sent")
            .and_then(|m| m.as_str().parse().ok()),
        referer: s("http_referer"),
        user_agent: s("http_user_agent"),
        ..Access::default()
    })
}

fn nginx_combined(c: &mut Criterion) {
    let lines = nginx_lines();
    let format = LogFormat::combined();
    let re = Regex::new(COMBINED_RE).unwrap();
    // Both sides must produce the same fields, or the comparison means nothing.
    for line in &lines {
        let ours = format.parse(line).unwrap();
        assert_eq!(Some(&ours), regex_parse(&re, line).as_ref(), "{line}");
        assert!(ours.time_unix_nano.is_some() && ours.status.is_some() && ours.path.is_some());
    }
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    println!(
        "nginx combined: {} lines, {:.0} bytes per line on average",
        lines.len(),
        bytes as f64 / lines.len() as f64
    );

    let mut g = c.benchmark_group("nginx_combined_line");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("axi LogFormat::parse (fields)", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(format.parse(black_box(l)));
            }
        });
    });
    g.bench_function("regex captures (same fields)", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(regex_parse(&re, black_box(l)));
            }
        });
    });
    let parser = Parser::Nginx(format.clone());
    g.bench_function("axi Parser::Nginx (fields + attributes, as shipped)", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(parser.parse_observed(black_box(l.clone()), |a| {
                    black_box(a);
                }));
            }
        });
    });
    g.finish();
}

fn json(c: &mut Criterion) {
    let lines = json_lines();
    let parser = Parser::Json;
    for line in &lines {
        let p = parser.parse(line.clone());
        assert!(
            p.ok && p.time_unix_nano.is_some() && p.trace_id.is_some(),
            "{line}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok());
    }
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    println!(
        "JSON: {} lines, {:.0} bytes per line on average",
        lines.len(),
        bytes as f64 / lines.len() as f64
    );

    let mut g = c.benchmark_group("json_line");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("axi Parser::Json (ECS fields + attributes)", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(parser.parse(black_box(l.clone())));
            }
        });
    });
    g.bench_function("serde_json::from_str::<Value>", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(serde_json::from_str::<serde_json::Value>(black_box(l)).unwrap());
            }
        });
    });
    g.finish();
}

criterion_group!(benches, nginx_combined, json);
criterion_main!(benches);
