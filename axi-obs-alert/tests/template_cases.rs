//! Prometheus's template expansion cases (`template/template_test.go`, exported to
//! `conformance/template/template_expansion_cases.json`) run against our template engine.
//!
//! Inputs are Go literals; a small parser below turns the forms used there into [`Value`]s.
//! Skipped and counted: cases that need HTML escaping (`html: true`, Prometheus's
//! `ExpandHTML`), native histograms, or whose expected output is a Go expression.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axi_obs_alert::template::{Env, MissingKey, QuerySample, Value, expand_with};

/// Query results the JSON export truncated ("see template/template_test.go"), copied from
/// that file and keyed by the case's template text.
const TRUNCATED_QUERY_RESULTS: &[(&str, &str)] = &[
    (
        "{{ query \"metric{instance='a'}\" | first | value }}",
        r#"promql.Vector{{Metric: labels.FromStrings(labels.MetricName, "metric", "instance", "a"), T: 0, F: 11}}"#,
    ),
    (
        "{{ query \"metric{instance='a'}\" | first | label \"instance\" }}",
        r#"promql.Vector{{Metric: labels.FromStrings(labels.MetricName, "metric", "instance", "a"), T: 0, F: 11}}"#,
    ),
    (
        "{{ query \"metric{__value__='a'}\" | first | strvalue }}",
        r#"promql.Vector{{Metric: labels.FromStrings(labels.MetricName, "metric", "__value__", "a"), T: 0, F: 11}}"#,
    ),
    (
        "{{ query \"metric{instance='a'}\" | first | label \"foo\" }}",
        r#"promql.Vector{{Metric: labels.FromStrings(labels.MetricName, "metric", "instance", "a"), T: 0, F: 11}}"#,
    ),
    (
        "{{ $x := query \"metric\" | first }}{{ $x.Labels.foo }}",
        r#"promql.Vector{{Metric: labels.FromStrings(labels.MetricName, "metric", "instance", "a"), T: 0, F: 11}}"#,
    ),
    (
        "{{ range query \"metric\" | sortByLabel \"instance\" }}{{.Labels.instance}}:{{.Value}}: {{end}}",
        r#"promql.Vector{
            {Metric: labels.FromStrings(labels.MetricName, "metric", "instance", "b"), T: 0, F: 21},
            {Metric: labels.FromStrings(labels.MetricName, "metric", "instance", "a"), T: 0, F: 11},
        }"#,
    ),
];

/// `testTemplateExpansion` uses this external URL and the evaluation time 1353755652000 ms
/// (the `now` cases expect 1.353755652e+09).
const EXTERNAL_URL: &str = "http://testhost:9090/path/prefix";
const NOW_MS: i64 = 1_353_755_652_000;

#[test]
fn template_expansion_cases() {
    let Some(dir) = std::env::var_os("AXI_CONFORMANCE_DIR") else {
        eprintln!("SKIPPED: AXI_CONFORMANCE_DIR is not set");
        return;
    };
    let path = PathBuf::from(dir).join("template/template_expansion_cases.json");
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let cases: Vec<serde_json::Value> = serde_json::from_str(&raw).expect("cases JSON");

    let total = cases.len();
    let mut passed = 0;
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let text = c["text"].as_str().expect("text");
        let label = format!(
            "#{i} {} {text:?}",
            c["comment"].as_str().unwrap_or("(no comment)")
        );
        let mut skip = |why: &str| *skipped.entry(why.to_string()).or_default() += 1;
        if c["html"].as_bool() == Some(true) {
            skip("needs HTML escaping (ExpandHTML)");
            continue;
        }
        if c["output"].is_object() {
            skip("expected output is a Go expression (native histogram)");
            continue;
        }
        let data = match c["input_go"].as_str() {
            None => Value::Nil,
            Some(src) if src.contains("histogram") => {
                skip("native histogram input");
                continue;
            }
            Some(src) => go_value(src).unwrap_or_else(|e| panic!("{label}: input {src}: {e}")),
        };
        let query: Vec<QuerySample> = match c["queryResult_go"].as_str() {
            None => Vec::new(),
            Some(src) => {
                let src = if src.contains('…') {
                    match TRUNCATED_QUERY_RESULTS.iter().find(|(t, _)| *t == text) {
                        Some((_, full)) => *full,
                        None => {
                            skip("truncated query result not recovered");
                            continue;
                        }
                    }
                } else {
                    src
                };
                go_vector(src).unwrap_or_else(|e| panic!("{label}: query result {src}: {e}"))
            }
        };
        let missing = match c["options_go"].as_str() {
            None => MissingKey::Zero,
            Some("make([]string, 0)") => MissingKey::Invalid,
            Some(s) if s.contains("missingkey=error") => MissingKey::Error,
            Some(s) => panic!("{label}: unknown options {s}"),
        };
        let qf = move |_: &str| -> Result<Vec<QuerySample>, String> { Ok(query.clone()) };
        let env = Env::new(EXTERNAL_URL, NOW_MS).with_query(&qf);
        let got = expand_with("test", text, &data, &env, missing);
        let should_fail = c["shouldFail"].as_bool() == Some(true);
        let ok = if should_fail {
            let want = c["errorMsg"].as_str().unwrap_or("");
            match &got {
                Err(e) if e == want => true,
                other => {
                    failures.push(format!(
                        "{label}\n    want error {want:?}\n    got {other:?}"
                    ));
                    false
                }
            }
        } else {
            let want = c["output"].as_str().unwrap_or("");
            match &got {
                Ok(s) if s == want => true,
                other => {
                    failures.push(format!("{label}\n    want {want:?}\n    got {other:?}"));
                    false
                }
            }
        };
        if ok {
            passed += 1;
        }
    }
    let n_skipped: usize = skipped.values().sum();
    let runnable = total - n_skipped;
    eprintln!("template expansion cases: {passed} passed / {runnable} runnable / {total} total");
    for (why, n) in &skipped {
        eprintln!("  skipped {n}: {why}");
    }
    assert!(
        failures.is_empty(),
        "{} of {runnable} runnable cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// A tiny parser for the Go literals of template_test.go.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i128),
    Float(f64),
    Str(String),
    Punct(char),
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let cs: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && cs.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '.' || cs[i] == '_') {
                // exponent signs
                if (cs[i] == 'e' || cs[i] == 'E') && matches!(cs.get(i + 1), Some('+') | Some('-'))
                {
                    i += 1;
                }
                i += 1;
            }
            let s: String = cs[start..i].iter().collect();
            if s.contains(['.', 'e', 'E']) {
                out.push(Tok::Float(s.parse().map_err(|e| format!("{s}: {e}"))?));
            } else {
                out.push(Tok::Int(s.parse().map_err(|e| format!("{s}: {e}"))?));
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < cs.len() && (cs[i].is_alphanumeric() || cs[i] == '_' || cs[i] == '.') {
                i += 1;
            }
            out.push(Tok::Ident(cs[start..i].iter().collect()));
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            while i < cs.len() && cs[i] != '"' {
                if cs[i] == '\\' {
                    i += 1;
                    match cs.get(i) {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(&o) => s.push(o),
                        None => return Err("unterminated string".into()),
                    }
                } else {
                    s.push(cs[i]);
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(s));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    Ok(out)
}

struct P {
    toks: Vec<Tok>,
    pos: usize,
}

#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Result<Tok, String> {
        let t = self.toks.get(self.pos).cloned().ok_or("unexpected end")?;
        self.pos += 1;
        Ok(t)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {c:?} at {:?}", self.peek()))
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.next()? {
            Tok::Ident(s) => Ok(s),
            t => Err(format!("expected identifier, got {t:?}")),
        }
    }

    /// Constant expression: sums of products of atoms.
    fn expr(&mut self) -> Result<Num, String> {
        let mut acc = self.term()?;
        loop {
            if self.eat('+') {
                acc = arith(acc, self.term()?, '+');
            } else if self.eat('-') {
                acc = arith(acc, self.term()?, '-');
            } else {
                return Ok(acc);
            }
        }
    }

    fn term(&mut self) -> Result<Num, String> {
        let mut acc = self.unary()?;
        loop {
            if self.eat('*') {
                acc = arith(acc, self.unary()?, '*');
            } else if self.eat('/') {
                acc = arith(acc, self.unary()?, '/');
            } else {
                return Ok(acc);
            }
        }
    }

    fn unary(&mut self) -> Result<Num, String> {
        if self.eat('-') {
            return Ok(match self.unary()? {
                Num::Int(i) => Num::Int(-i),
                Num::Float(f) => Num::Float(-f),
            });
        }
        if self.eat('+') {
            return self.unary();
        }
        if self.eat('(') {
            let v = self.expr()?;
            self.expect(')')?;
            return Ok(v);
        }
        match self.next()? {
            Tok::Int(i) => Ok(Num::Int(i)),
            Tok::Float(f) => Ok(Num::Float(f)),
            Tok::Ident(id) => match id.as_str() {
                "math.MaxInt64" => Ok(Num::Int(i64::MAX as i128)),
                "math.MinInt64" => Ok(Num::Int(i64::MIN as i128)),
                "math.MaxUint64" => Ok(Num::Int(u64::MAX as i128)),
                "math.NaN" => {
                    self.expect('(')?;
                    self.expect(')')?;
                    Ok(Num::Float(f64::NAN))
                }
                "math.Inf" => {
                    self.expect('(')?;
                    let s = self.expr()?;
                    self.expect(')')?;
                    Ok(Num::Float(if s.f() >= 0.0 {
                        f64::INFINITY
                    } else {
                        f64::NEG_INFINITY
                    }))
                }
                other => Err(format!("unknown constant {other}")),
            },
            t => Err(format!("unexpected {t:?}")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        match self.next()? {
            Tok::Str(s) => Ok(s),
            Tok::Ident(id) if id == "labels.MetricName" => Ok("__name__".into()),
            t => Err(format!("expected string, got {t:?}")),
        }
    }
}

fn arith(a: Num, b: Num, op: char) -> Num {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => match op {
            '+' => Num::Int(x + y),
            '-' => Num::Int(x - y),
            '*' => Num::Int(x * y),
            _ => Num::Int(x / y),
        },
        _ => {
            let (x, y) = (a.f(), b.f());
            Num::Float(match op {
                '+' => x + y,
                '-' => x - y,
                '*' => x * y,
                _ => x / y,
            })
        }
    }
}

/// `[]T{...}` for T in float64, string, int, int64, uint, uint64.
fn go_value(src: &str) -> Result<Value, String> {
    let mut p = P {
        toks: tokenize(src)?,
        pos: 0,
    };
    p.expect('[')?;
    p.expect(']')?;
    let typ = p.ident()?;
    p.expect('{')?;
    let mut items = Vec::new();
    while !p.eat('}') {
        let v = match typ.as_str() {
            "string" => Value::String(p.string()?),
            "float64" => Value::Float(p.expr()?.f()),
            "int" | "int64" => match p.expr()? {
                Num::Int(i) => Value::Int(i64::try_from(i).map_err(|e| e.to_string())?),
                Num::Float(f) => return Err(format!("float {f} in []{typ}")),
            },
            "uint" | "uint64" => match p.expr()? {
                Num::Int(i) => Value::Uint(u64::try_from(i).map_err(|e| e.to_string())?),
                Num::Float(f) => return Err(format!("float {f} in []{typ}")),
            },
            other => return Err(format!("unsupported element type {other}")),
        };
        items.push(v);
        if !p.eat(',') {
            p.expect('}')?;
            break;
        }
    }
    Ok(Value::List(items))
}

/// `promql.Vector{{Metric: labels.FromStrings(...), T: 0, F: 1.5}, ...}`.
fn go_vector(src: &str) -> Result<Vec<QuerySample>, String> {
    let mut p = P {
        toks: tokenize(src)?,
        pos: 0,
    };
    if p.ident()? != "promql.Vector" {
        return Err("expected promql.Vector".into());
    }
    p.expect('{')?;
    let mut out = Vec::new();
    while !p.eat('}') {
        p.expect('{')?;
        let mut s = QuerySample::default();
        while !p.eat('}') {
            let field = p.ident()?;
            p.expect(':')?;
            match field.as_str() {
                "T" => {
                    p.expr()?;
                }
                "F" => s.value = p.expr()?.f(),
                "Metric" => {
                    if p.ident()? != "labels.FromStrings" {
                        return Err("expected labels.FromStrings".into());
                    }
                    p.expect('(')?;
                    while !p.eat(')') {
                        let k = p.string()?;
                        p.expect(',')?;
                        let v = p.string()?;
                        s.labels.insert(k, v);
                        if !p.eat(',') {
                            p.expect(')')?;
                            break;
                        }
                    }
                }
                other => return Err(format!("unsupported sample field {other}")),
            }
            if !p.eat(',') {
                p.expect('}')?;
                break;
            }
        }
        out.push(s);
        if !p.eat(',') {
            p.expect('}')?;
            break;
        }
    }
    Ok(out)
}
