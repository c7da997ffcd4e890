//! Reads a test file into commands, following `promql/promqltest/test.go` line by line.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::series::{SeqValue, parse_duration, parse_number, parse_series, unquote};
use crate::promql::value::Labels;

#[allow(clippy::expect_used)] // constant patterns
fn re(p: &str) -> Regex {
    Regex::new(p).expect("valid pattern")
}

static PAT_SPACE: LazyLock<Regex> = LazyLock::new(|| re(r"[\t ]+"));
static PAT_LOAD: LazyLock<Regex> = LazyLock::new(|| re(r"^load(?:_(with_nhcb))?\s+(.+?)$"));
static PAT_EVAL_INSTANT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
});
static PAT_EVAL_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$")
});
static PAT_EXPECT: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
});
static PAT_EXPECT_RANGE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$"));

const RANGE_VECTOR_PREFIX: &str = "expect range vector";
const EXPECT_STRING_PREFIX: &str = "expect string";

/// A format error: the 0-based line and the message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FormatError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

fn raise(line: usize, message: impl Into<String>) -> FormatError {
    FormatError {
        line,
        message: message.into(),
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Command {
    Clear,
    Load(Load),
    Eval(Box<Eval>),
}

#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) step_ms: i64,
    pub(crate) with_nhcb: bool,
    /// Whether the block has `@st` start-timestamp lines (not supported by this engine).
    pub(crate) has_st: bool,
    /// Later lines for the same series replace earlier ones, as upstream.
    pub(crate) series: BTreeMap<Labels, Vec<SeqValue>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExpectType {
    Ordered,
    Fail,
    Warn,
    NoWarn,
    Info,
    NoInfo,
}

/// The text an `expect` line matches: an exact message or a regex (unanchored).
#[derive(Debug, Clone)]
pub(crate) enum ExpectMatch {
    Message(String),
    Regex(Regex),
}

impl ExpectMatch {
    pub(crate) fn check(&self, s: &str) -> bool {
        match self {
            ExpectMatch::Message(m) => m == s,
            ExpectMatch::Regex(r) => r.is_match(s),
        }
    }
}

impl std::fmt::Display for ExpectMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectMatch::Message(m) => f.write_str(m),
            ExpectMatch::Regex(r) => f.write_str(r.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) pos: usize,
    pub(crate) vals: Vec<SeqValue>,
}

#[derive(Debug, Clone)]
pub(crate) struct Eval {
    pub(crate) expr: String,
    /// 1-based line of the `eval` command.
    pub(crate) line: usize,
    pub(crate) is_range: bool,
    /// Range queries and `expect range vector`: the expected points' times.
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) step: i64,
    /// Whether `start/end/step` describe expected matrix points (false for a plain instant eval).
    pub(crate) has_range: bool,
    /// The instant evaluation time.
    pub(crate) eval_time: i64,
    pub(crate) fail: bool,
    pub(crate) ordered: bool,
    pub(crate) expected_fail_message: Option<String>,
    pub(crate) expected_fail_regexp: Option<Regex>,
    pub(crate) expects: Vec<(ExpectType, ExpectMatch)>,
    pub(crate) expect_scalar: bool,
    pub(crate) scalar: Option<Entry>,
    pub(crate) expected: BTreeMap<Labels, Entry>,
    pub(crate) expected_string: String,
    pub(crate) exclude_from_range_query: bool,
    /// Whether an expected value is a native histogram (`{{...}}`).
    pub(crate) expects_histogram: bool,
}

impl Eval {
    pub(crate) fn is_ordered(&self) -> bool {
        self.ordered || self.has_expect(ExpectType::Ordered)
    }

    pub(crate) fn is_fail(&self) -> bool {
        self.fail || self.has_expect(ExpectType::Fail)
    }

    fn has_expect(&self, t: ExpectType) -> bool {
        self.expects.iter().any(|(k, _)| *k == t)
    }

    fn count(&self, t: ExpectType) -> usize {
        self.expects.iter().filter(|(k, _)| *k == t).count()
    }

    pub(crate) fn fail_expectation(&self) -> Option<&ExpectMatch> {
        self.expects
            .iter()
            .find(|(k, _)| *k == ExpectType::Fail)
            .map(|(_, m)| m)
    }
}

/// Trimmed lines with comments blanked.
fn get_lines(input: &str) -> Vec<String> {
    input
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                String::new()
            } else {
                l.to_owned()
            }
        })
        .collect()
}

/// Parses a whole file. Unlike upstream, which stops at the first error, a block with an
/// error is reported and skipped (up to the next blank line) so the rest still runs.
pub(crate) fn parse(input: &str) -> (Vec<(usize, Command)>, Vec<FormatError>) {
    let lines = get_lines(input);
    let mut cmds = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let c = PAT_SPACE.split(l).next().unwrap_or_default().to_lowercase();
        let res = if c == "clear" {
            Ok((i, Command::Clear))
        } else if c.starts_with("load") {
            parse_load(&lines, i).map(|(j, l)| (j, Command::Load(l)))
        } else if c.starts_with("eval") {
            parse_eval(&lines, i).map(|(j, e)| (j, Command::Eval(Box::new(e))))
        } else {
            Err(raise(i, format!("invalid command {l:?}")))
        };
        match res {
            Ok((last, cmd)) => {
                cmds.push((i, cmd));
                i = last + 1;
            }
            Err(e) => {
                errors.push(e);
                while i < lines.len() && !lines[i].is_empty() {
                    i += 1;
                }
            }
        }
    }
    (cmds, errors)
}

/// Parses the `load` block starting at line `i`; returns the last line it used.
pub(crate) fn parse_load(lines: &[String], mut i: usize) -> Result<(usize, Load), FormatError> {
    let Some(caps) = PAT_LOAD.captures(&lines[i]) else {
        return Err(raise(
            i,
            "invalid load command. (load[_with_nhcb] <step:duration>)",
        ));
    };
    let with_nhcb = caps.get(1).is_some();
    let step = caps.get(2).map_or("", |m| m.as_str());
    let step_ms = parse_duration(step)
        .map_err(|e| raise(i, format!("invalid step definition {step:?}: {e}")))?;
    let mut load = Load {
        step_ms,
        with_nhcb,
        has_st: false,
        series: BTreeMap::new(),
    };
    while i + 1 < lines.len() {
        i += 1;
        let def = &lines[i];
        if def.is_empty() {
            i -= 1;
            break;
        }
        if is_st_line(def) {
            load.has_st = true;
            continue;
        }
        let (metric, vals) = parse_series(def).map_err(|e| raise(i, e))?;
        load.series.insert(metric, vals);
    }
    Ok((i, load))
}

/// A start-timestamp line: `metric{...}@st <offsets>` or `@st <offsets>`.
fn is_st_line(def: &str) -> bool {
    let def = def.trim();
    match def.find([' ', '\t']) {
        Some(i) => def[..i].ends_with("@st"),
        None => false,
    }
}

fn parse_durations(from: &str, to: &str, step: &str) -> Result<(i64, i64, i64), String> {
    let f = parse_duration(from)
        .map_err(|e| format!("invalid start timestamp definition {from:?}: {e}"))?;
    let t =
        parse_duration(to).map_err(|e| format!("invalid end timestamp definition {to:?}: {e}"))?;
    if t < f {
        return Err(format!(
            "invalid test definition, end timestamp ({to}) is before start timestamp ({from})"
        ));
    }
    let s = parse_duration(step).map_err(|e| format!("invalid step definition {step:?}: {e}"))?;
    Ok((f, t, s))
}

fn parse_expect(def: &str) -> Result<(ExpectType, ExpectMatch), String> {
    let Some(caps) = PAT_EXPECT.captures(def.trim()) else {
        return Err(
            "invalid expect statement, must match `expect <type> <match_type>: <string>` format"
                .into(),
        );
    };
    let mode = caps.get(1).map_or("", |m| m.as_str());
    let t = match mode {
        "ordered" => ExpectType::Ordered,
        "fail" => ExpectType::Fail,
        "warn" => ExpectType::Warn,
        "no_warn" => ExpectType::NoWarn,
        "info" => ExpectType::Info,
        _ => ExpectType::NoInfo,
    };
    let text = caps.get(3).map_or("", |m| m.as_str()).trim();
    let m = match caps.get(2).map(|m| m.as_str()) {
        Some("msg") => ExpectMatch::Message(text.to_owned()),
        Some(_) => ExpectMatch::Regex(
            Regex::new(text).map_err(|_| format!("invalid regex {text} for {mode}"))?,
        ),
        None => ExpectMatch::Regex(re("^.*$")),
    };
    Ok((t, m))
}

fn validate_expects(ev: &Eval) -> Result<(), String> {
    use ExpectType::*;
    if ev.count(Info) > 0 && ev.count(NoInfo) > 0 {
        return Err("invalid expect lines, info and no_info cannot be used together".into());
    }
    if ev.count(Warn) > 0 && ev.count(NoWarn) > 0 {
        return Err("invalid expect lines, warn and no_warn cannot be used together".into());
    }
    if ev.count(Fail) > 1 {
        return Err("invalid expect lines, multiple expect fail lines are not allowed".into());
    }
    Ok(())
}

/// Parses the `eval` block starting at line `i`; returns the last line it used. The
/// expression itself is parsed when it runs, so that the engine's refusals ("unsupported")
/// are told apart from file errors.
pub(crate) fn parse_eval(lines: &[String], mut i: usize) -> Result<(usize, Eval), FormatError> {
    let line = &lines[i];
    let instant = PAT_EVAL_INSTANT.captures(line);
    let range = PAT_EVAL_RANGE.captures(line);
    let get = |c: &regex::Captures<'_>, n: usize| c.get(n).map_or("", |m| m.as_str()).to_owned();
    let (is_range, modifier, expr) = match (&instant, &range) {
        (Some(c), _) => (false, get(c, 1), get(c, 3)),
        (None, Some(c)) => (true, get(c, 1), get(c, 5)),
        (None, None) => {
            return Err(raise(
                i,
                "invalid evaluation command. Must be either 'eval[_fail|_warn|_ordered] instant \
                 [at <offset:duration>] <query>' or 'eval[_fail|_warn] range from <from> to <to> \
                 step <step> <query>'",
            ));
        }
    };
    let eval_line = i;
    let format_err = |at: usize, msg: String| {
        raise(
            at,
            format!("error in eval {expr} (line {}): {msg}", eval_line + 1),
        )
    };
    let mut ev = Eval {
        expr: expr.clone(),
        line: i + 1,
        is_range,
        start: 0,
        end: 0,
        step: 0,
        has_range: is_range,
        eval_time: 0,
        fail: modifier == "fail",
        ordered: modifier == "ordered",
        expected_fail_message: None,
        expected_fail_regexp: None,
        expects: Vec::new(),
        expect_scalar: false,
        scalar: None,
        expected: BTreeMap::new(),
        expected_string: String::new(),
        exclude_from_range_query: false,
        expects_histogram: false,
    };
    if let Some(c) = &instant {
        let at = get(c, 2);
        let t = parse_duration(&at)
            .map_err(|e| format_err(i, format!("invalid timestamp definition {at:?}: {e}")))?;
        ev.start = t;
        ev.eval_time = t;
    } else if let Some(c) = &range {
        let (f, t, s) =
            parse_durations(&get(c, 2), &get(c, 3), &get(c, 4)).map_err(|e| format_err(i, e))?;
        ev.start = f;
        ev.end = t;
        ev.step = s;
    }

    let mut expect_range_vector = false;
    let mut j = 1usize;
    while i + 1 < lines.len() {
        i += 1;
        let def = &lines[i];
        if def.is_empty() {
            i -= 1;
            break;
        }
        if ev.fail && def.starts_with("expected_fail_message") {
            ev.expected_fail_message = Some(def["expected_fail_message".len()..].trim().into());
            break;
        }
        if ev.fail && def.starts_with("expected_fail_regexp") {
            let pattern = def["expected_fail_regexp".len()..].trim();
            ev.expected_fail_regexp = Some(Regex::new(pattern).map_err(|e| {
                format_err(
                    i,
                    format!("invalid regexp '{pattern}' for expected_fail_regexp: {e}"),
                )
            })?);
            break;
        }
        if def.starts_with(RANGE_VECTOR_PREFIX) {
            let caps = PAT_EXPECT_RANGE
                .captures(def)
                .ok_or_else(|| format_err(i, format!("invalid range vector definition {def:?}")))?;
            let (f, t, s) = parse_durations(&get(&caps, 1), &get(&caps, 2), &get(&caps, 3))
                .map_err(|e| format_err(i, e))?;
            expect_range_vector = true;
            ev.start = f;
            ev.end = t;
            ev.step = s;
            ev.has_range = true;
            ev.eval_time = t;
            ev.exclude_from_range_query = true;
            j += 1;
            continue;
        }
        if def.starts_with(EXPECT_STRING_PREFIX) {
            let s = if def == EXPECT_STRING_PREFIX {
                Err(
                    "expected string literal not valid - a quoted string literal is required"
                        .to_owned(),
                )
            } else {
                unquote(def.strip_prefix("expect string ").unwrap_or(""))
            };
            ev.expected_string = s.map_err(|e| format_err(i, e))?;
            ev.exclude_from_range_query = true;
            j += 1;
            continue;
        }
        if def.split(' ').next() == Some("expect") {
            let e = parse_expect(def).map_err(|e| format_err(i, e))?;
            ev.expects.push(e);
            validate_expects(&ev).map_err(|e| format_err(i, e))?;
            continue;
        }
        if let Ok(f) = parse_number(def) {
            ev.expect_scalar = true;
            ev.scalar = Some(Entry {
                pos: 0,
                vals: vec![SeqValue::Float(f)],
            });
            break;
        }
        let (metric, vals) = parse_series(def).map_err(|e| raise(i, e))?;
        if vals.len() > 1 && !is_range && !expect_range_vector {
            return Err(format_err(
                i,
                "expecting multiple values in instant evaluation not allowed. consider using \
                 'expect range vector' directive to enable a range vector result for an \
                 instant query"
                    .into(),
            ));
        }
        if vals.contains(&SeqValue::Histogram) {
            ev.expects_histogram = true;
        }
        ev.expect_scalar = false;
        ev.expected.insert(metric, Entry { pos: j, vals });
        j += 1;
    }
    Ok((i, ev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_eval(text: &str) -> Eval {
        let (cmds, errs) = parse(text);
        assert!(errs.is_empty(), "{errs:?}");
        match cmds.into_iter().next() {
            Some((_, Command::Eval(e))) => *e,
            _ => panic!("no eval"),
        }
    }

    #[test]
    fn parses_commands_and_blocks() {
        let text = "# comment\nload 5m\n  a{x=\"1\"} 0+10x3\n  b 1 _ stale\n\nclear\n\n\
                    eval instant at 1h5m sum(a)\n  {} 30\n\neval range from 0 to 10m step 5m a\n  \
                    expect no_warn\n  a{x=\"1\"} 0 10 _\n";
        let (cmds, errs) = parse(text);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(cmds.len(), 4);
        let Command::Load(l) = &cmds[0].1 else {
            panic!()
        };
        assert_eq!(l.step_ms, 300_000);
        assert_eq!(l.series.len(), 2);
        assert!(matches!(cmds[1].1, Command::Clear));
        let Command::Eval(e) = &cmds[2].1 else {
            panic!()
        };
        assert_eq!(e.eval_time, 3_900_000);
        assert_eq!(e.line, 8);
        assert_eq!(e.expr, "sum(a)");
        let Command::Eval(e) = &cmds[3].1 else {
            panic!()
        };
        assert!(e.is_range);
        assert_eq!((e.start, e.end, e.step), (0, 600_000, 300_000));
        assert_eq!(e.expects.len(), 1);
    }

    #[test]
    fn parses_expectations() {
        let e = one_eval("eval instant at 1m foo\n expect fail msg: bad thing\n");
        assert!(e.is_fail());
        assert!(e.fail_expectation().is_some_and(|m| m.check("bad thing")));
        let e = one_eval("eval instant at 1m foo\n expect fail regex: bad .*\n");
        assert!(e.fail_expectation().is_some_and(|m| m.check("a bad thing")));
        let e = one_eval("eval_fail instant at 1m foo\n expected_fail_message oops\n");
        assert_eq!(e.expected_fail_message.as_deref(), Some("oops"));
        let e = one_eval("eval_ordered instant at 1m foo\n a 1\n b 2\n");
        assert!(e.is_ordered());
        assert_eq!(e.expected.len(), 2);
        let e = one_eval("eval instant at 1m foo\n expect ordered\n a 1\n b 2\n");
        let b = Labels::from_pairs([("__name__", "b")]);
        assert_eq!(e.expected[&b].pos, 2);
        let e = one_eval("eval instant at 50m (\"Foo\")\n expect string \" Foo \"\n");
        assert_eq!(e.expected_string, " Foo ");
        assert!(e.exclude_from_range_query);
        let e = one_eval("eval instant at 0 1 + 1\n 2\n");
        assert!(e.expect_scalar);
        let e = one_eval(
            "eval instant at 1m m[1m]\n expect range vector from 10s to 1m step 10s\n m 1 2 3\n",
        );
        assert_eq!(
            (e.start, e.end, e.step, e.eval_time),
            (10_000, 60_000, 10_000, 60_000)
        );
        let e = one_eval("eval instant at 1m foo\n m {{schema:0 sum:1 count:1}}\n");
        assert!(e.expects_histogram);
    }

    #[test]
    fn reports_format_errors_and_continues() {
        let text = "load 1m\n m 1\n\nbogus command\n\neval instant at 1m m\n m 1 2\n\n\
                    eval instant at 1m m\n expect warn\n expect no_warn\n\n\
                    eval range from 5m to 1m step 1m m\n\neval instant at 1m m\n m 1\n";
        let (cmds, errs) = parse(text);
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 6, 10, 12], "{errs:?}");
        assert_eq!(cmds.len(), 2);
        assert!(parse("load 1x\n m 1\n").1.len() == 1);
        assert!(parse("eval instant at -1m m\n").1.len() == 1);
        assert!(parse("load 1m\n m 1+\n").1.len() == 1);
    }

    #[test]
    fn st_lines_are_recognised() {
        let (cmds, errs) = parse("load 1m\n m{a=\"b\"}@st _ -30s\n m{a=\"b\"} 1 2\n");
        assert!(errs.is_empty(), "{errs:?}");
        let Command::Load(l) = &cmds[0].1 else {
            panic!()
        };
        assert!(l.has_st);
        assert_eq!(l.series.len(), 1);
    }
}
