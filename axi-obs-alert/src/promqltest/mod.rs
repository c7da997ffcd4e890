//! A runner for Prometheus's promqltest files (`promql/promqltest/testdata/*.test`), the
//! scripts Prometheus uses to test its own PromQL engine, run against [`crate::promql`].
//!
//! The format is Prometheus's (`load <step>`, `clear`, `eval instant at <t> <expr>`,
//! `eval range from <a> to <b> step <s> <expr>`, `expect ...` lines, expected series in the
//! promtool value notation) and the checks follow `promql/promqltest/test.go`:
//!
//! - floats compare with `almost.Equal(expected, got, 1e-6)`: two NaNs are equal, a
//!   staleness marker equals only a staleness marker; timestamps compare exactly;
//! - every returned series must be expected and every expected series returned; order
//!   counts only with `expect ordered` (or `eval_ordered`);
//! - each instant eval runs as written, then (unless it calls an @-unsafe function such as
//!   `time()` or `timestamp()`) with `@ <eval time>` added to every selector and subquery
//!   without one, at the eval times upstream uses (`-10t, 0, t/5, t, 10t`, or `-1s, 0, 1s`
//!   at t = 0), and every one of those also as a range query from t-1m to t+1m step 1m
//!   whose middle step must match (skipped for `ordered`, `expect string`,
//!   `expect range vector` and expressions using `start() end() range() step()`);
//! - all of them must pass for the eval to pass.
//!
//! What differs, because this engine has no annotations and no native histograms:
//!
//! - `expect warn` / `expect info` (and `eval_warn` / `eval_info`) are not checked: such
//!   evals are judged on their result alone; `expect no_warn` / `no_info` pass trivially;
//! - native histogram samples (`{{...}}`) in `load` blocks are skipped (their steps still
//!   count), and `load_with_nhcb` loads only the classic float series. Reported as
//!   unsupported without running: evals expecting a histogram value, evals after a `load`
//!   with `@st` start-timestamp lines (until the next `clear`), and evals whose expression
//!   the engine refuses with an `unsupported:` parse error (experimental syntax,
//!   native-histogram functions). Reported as unsupported when they fail (and as passed when
//!   they pass): evals with a selector matching a series whose histogram samples were
//!   skipped or that `load_with_nhcb` would have created (`x` from `x_bucket`, `x_count`,
//!   `x_sum`), since their data is incomplete here;
//! - an expression that fails to parse for another reason is an eval failure (upstream
//!   refuses the whole file); with `expect fail` its message is checked like an evaluation
//!   error;
//! - a block with a format error is reported (a [`FailureKind::Format`] failure naming its
//!   line) and skipped up to the next blank line, and the rest of the file still runs.
//!
//! Times in files are durations after the Unix epoch (`eval instant at 1h5m` is t = 3,900 s).
//!
//! ```
//! use axi_obs_alert::promqltest::run_str;
//!
//! let report = run_str("example.test", "load 1m\n  up{job=\"a\"} 1 1 0\n\neval instant at 2m up\n  up{job=\"a\"} 0\n");
//! assert_eq!(report.passed + report.failed.len() + report.unsupported.len(), 1);
//! assert!(report.format_errors().next().is_none());
//! ```

mod parse;
mod series;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr, VectorSelector};
use regex::Regex;

pub use series::{
    SeqValue, almost_equal, parse_duration, parse_duration_param, parse_metric, parse_number,
    parse_rfc3339_ms, parse_series, parse_time, parse_values,
};

use self::parse::{Command, Eval, ExpectMatch, Load};
use crate::promql::value::{Labels, METRIC_NAME, Sample, Series, Value};
use crate::promql::{Engine, Matcher, MemStorage};

/// The relative tolerance upstream allows between expected and returned floats.
pub const EPSILON: f64 = 1e-6;

/// Functions whose result changes with the evaluation time even when their arguments do
/// not (`promql.AtModifierUnsafeFunctions`, plus the query-context functions): expressions
/// calling one are not re-run with `@`.
pub const AT_MODIFIER_UNSAFE_FUNCTIONS: [&str; 15] = [
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
    "range",
    "start",
    "end",
    "step",
];

#[allow(clippy::expect_used)] // constant pattern
static QUERY_CONTEXT_FUNCS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(start|end|range|step)\(\)").expect("valid pattern"));

/// Whether a failure is in the test file itself or in an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The file could not be read as a promqltest script (a runner-level error).
    Format,
    /// An eval command ran and did not get what the file expects.
    Eval,
}

/// One failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// 1-based line of the command (or of the offending line for format errors).
    pub line: usize,
    /// The eval's expression; for format errors, the offending line.
    pub expr: String,
    /// What went wrong.
    pub message: String,
    /// Format error or eval failure.
    pub kind: FailureKind,
}

/// One eval that was not run, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported {
    /// 1-based line of the eval command.
    pub line: usize,
    /// The eval's expression.
    pub expr: String,
    /// Why it was skipped.
    pub reason: String,
}

/// The outcome of one test file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileReport {
    /// The file's name as given (a path for [`run_file`]).
    pub name: String,
    /// How many evals passed.
    pub passed: usize,
    /// Eval failures and format errors, in file order.
    pub failed: Vec<Failure>,
    /// Evals skipped because they need what the engine does not have.
    pub unsupported: Vec<Unsupported>,
}

impl FileReport {
    /// Format errors: lines of the file the runner could not read.
    pub fn format_errors(&self) -> impl Iterator<Item = &Failure> {
        self.failed.iter().filter(|f| f.kind == FailureKind::Format)
    }

    /// Evals that ran and failed.
    pub fn eval_failures(&self) -> impl Iterator<Item = &Failure> {
        self.failed.iter().filter(|f| f.kind == FailureKind::Eval)
    }

    /// Whether nothing failed (unsupported evals do not count as failures).
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

impl fmt::Display for FileReport {
    /// `name: N passed, M failed, K unsupported`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} passed, {} failed, {} unsupported",
            self.name,
            self.passed,
            self.failed.len(),
            self.unsupported.len()
        )
    }
}

/// Runs a test file with the default engine (5 m lookback, 1 m subquery step). A file that
/// cannot be read is reported as one format failure at line 0.
pub fn run_file(path: &Path) -> FileReport {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => run_str(&name, &text),
        Err(e) => FileReport {
            name,
            failed: vec![Failure {
                line: 0,
                expr: String::new(),
                message: format!("cannot read file: {e}"),
                kind: FailureKind::Format,
            }],
            ..FileReport::default()
        },
    }
}

/// Runs test-file text with the default engine; `name` labels the report.
pub fn run_str(name: &str, text: &str) -> FileReport {
    run_str_with(&Engine::default(), name, text)
}

/// Runs test-file text with the given engine.
pub fn run_str_with(engine: &Engine, name: &str, text: &str) -> FileReport {
    let (cmds, errors) = parse::parse(text);
    let lines: Vec<&str> = text.split('\n').collect();
    let mut report = FileReport {
        name: name.to_owned(),
        ..FileReport::default()
    };
    let mut failures: Vec<Failure> = errors
        .into_iter()
        .map(|e| Failure {
            line: e.line + 1,
            expr: lines.get(e.line).map_or("", |l| l.trim()).to_owned(),
            message: e.message,
            kind: FailureKind::Format,
        })
        .collect();
    let mut state = State {
        engine,
        storage: MemStorage::new(),
        histogram_series: BTreeSet::new(),
        st: false,
    };
    for (_, cmd) in cmds {
        match cmd {
            Command::Clear => {
                state.storage.clear();
                state.histogram_series.clear();
                state.st = false;
            }
            Command::Load(load) => state.load(&load),
            Command::Eval(ev) => match state.eval(&ev) {
                Outcome::Pass => report.passed += 1,
                Outcome::Fail(message) => failures.push(Failure {
                    line: ev.line,
                    expr: ev.expr.clone(),
                    message,
                    kind: FailureKind::Eval,
                }),
                Outcome::Unsupported(reason) => report.unsupported.push(Unsupported {
                    line: ev.line,
                    expr: ev.expr.clone(),
                    reason,
                }),
            },
        }
    }
    failures.sort_by_key(|f| f.line);
    report.failed = failures;
    report
}

/// Reads the `load` blocks of a promqltest-style text (`load 15s` then indented
/// `<series> <values>` lines; several blocks allowed, comments and blank lines ignored) into
/// a store. Native histogram samples are skipped. Any other command is an error.
pub fn load_storage(text: &str) -> Result<MemStorage, String> {
    let (cmds, errors) = parse::parse(text);
    if let Some(e) = errors.first() {
        return Err(format!("line {}: {}", e.line + 1, e.message));
    }
    let mut storage = MemStorage::new();
    for (line, cmd) in cmds {
        match cmd {
            Command::Load(l) => load_into(&mut storage, &l),
            _ => {
                return Err(format!(
                    "line {}: only 'load' commands are accepted",
                    line + 1
                ));
            }
        }
    }
    Ok(storage)
}

fn load_into(storage: &mut MemStorage, load: &Load) {
    for (labels, vals) in &load.series {
        for (i, v) in vals.iter().enumerate() {
            if let SeqValue::Float(f) = v {
                storage.add(labels, i as i64 * load.step_ms, *f);
            }
        }
    }
}

enum Outcome {
    Pass,
    Fail(String),
    Unsupported(String),
}

struct State<'a> {
    engine: &'a Engine,
    storage: MemStorage,
    /// Series whose native histogram samples were not stored: those with `{{...}}` values
    /// and those `load_with_nhcb` would have created from classic histograms.
    histogram_series: BTreeSet<Labels>,
    st: bool,
}

fn at_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// The series `load_with_nhcb` makes from a classic histogram series: `x_bucket{le="1"}`,
/// `x_count` and `x_sum` all give `x` (without `le`).
fn nhcb_base(labels: &Labels) -> Option<Labels> {
    let name = labels.name()?;
    let base = if let Some(b) = name.strip_suffix("_bucket") {
        let le: f64 = labels.get("le")?.parse().ok()?;
        if le.is_nan() {
            return None;
        }
        b
    } else {
        name.strip_suffix("_count")
            .or_else(|| name.strip_suffix("_sum"))?
    };
    let mut out = labels.clone();
    out.remove("le");
    out.set(METRIC_NAME.to_owned(), base.to_owned());
    Some(out)
}

pub(crate) fn collect_selectors<'e>(expr: &'e Expr, out: &mut Vec<&'e VectorSelector>) {
    match expr {
        Expr::Aggregate(a) => {
            collect_selectors(&a.expr, out);
            if let Some(p) = &a.param {
                collect_selectors(p, out);
            }
        }
        Expr::Unary(u) => collect_selectors(&u.expr, out),
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out);
            collect_selectors(&b.rhs, out);
        }
        Expr::Paren(p) => collect_selectors(&p.expr, out),
        Expr::Subquery(s) => collect_selectors(&s.expr, out),
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect_selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Adds `@ t` to every selector and subquery without a fixed timestamp (`@ start()` and
/// `@ end()` are replaced, as upstream's rewrite does), leaving everything inside subqueries
/// alone. Returns whether an @-unsafe function was seen outside subqueries.
fn inject_at(expr: &mut Expr, t: SystemTime) -> bool {
    let fixed = |at: &Option<AtModifier>| matches!(at, Some(AtModifier::At(_)));
    match expr {
        Expr::Aggregate(a) => {
            let mut unsafe_seen = inject_at(&mut a.expr, t);
            if let Some(p) = &mut a.param {
                unsafe_seen |= inject_at(p, t);
            }
            unsafe_seen
        }
        Expr::Unary(u) => inject_at(&mut u.expr, t),
        Expr::Binary(b) => {
            let l = inject_at(&mut b.lhs, t);
            inject_at(&mut b.rhs, t) || l
        }
        Expr::Paren(p) => inject_at(&mut p.expr, t),
        Expr::Subquery(s) => {
            if !fixed(&s.at) {
                s.at = Some(AtModifier::At(t));
            }
            false
        }
        Expr::VectorSelector(vs) => {
            if !fixed(&vs.at) {
                vs.at = Some(AtModifier::At(t));
            }
            false
        }
        Expr::MatrixSelector(ms) => {
            if !fixed(&ms.vs.at) {
                ms.vs.at = Some(AtModifier::At(t));
            }
            false
        }
        Expr::Call(c) => {
            let mut unsafe_seen = AT_MODIFIER_UNSAFE_FUNCTIONS.contains(&c.func.name);
            for a in &mut c.args.args {
                unsafe_seen |= inject_at(a, t);
            }
            unsafe_seen
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => false,
    }
}

/// The extra instant queries upstream runs: the expression with `@ t` injected, at other
/// eval times. None when the expression calls an @-unsafe function.
fn at_modifier_cases(expr: &Expr, t: i64) -> Option<(Expr, Vec<i64>)> {
    let mut e = expr.clone();
    if inject_at(&mut e, at_time(t)) {
        return None;
    }
    let times = if t == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * t, 0, t / 5, t, 10 * t]
    };
    Some((e, times))
}

fn fmt_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        v.to_string()
    }
}

fn fmt_seq(vals: &[SeqValue]) -> String {
    let items: Vec<String> = vals
        .iter()
        .map(|v| match v {
            SeqValue::Omitted => "_".into(),
            SeqValue::Float(f) if crate::promql::value::is_stale(*f) => "stale".into(),
            SeqValue::Float(f) => fmt_f(*f),
            SeqValue::Histogram => "{{...}}".into(),
        })
        .collect();
    format!("[{}]", items.join(" "))
}

fn fmt_points(s: &Series) -> String {
    let pts: Vec<String> = s
        .points
        .iter()
        .map(|p| format!("{} @[{}]", fmt_f(p.v), p.t))
        .collect();
    let plural = if pts.len() == 1 { "" } else { "s" };
    format!("{} float point{plural} [{}]", pts.len(), pts.join(" "))
}

impl State<'_> {
    fn load(&mut self, load: &Load) {
        load_into(&mut self.storage, load);
        for (labels, vals) in &load.series {
            if vals.contains(&SeqValue::Histogram) {
                self.histogram_series.insert(labels.clone());
            }
            if load.with_nhcb
                && let Some(base) = nhcb_base(labels)
            {
                self.histogram_series.insert(base);
            }
        }
        self.st |= load.has_st;
    }

    /// Whether a selector of `expr` matches a series whose histogram samples are missing.
    fn selects_histograms(&self, expr: &Expr) -> bool {
        if self.histogram_series.is_empty() {
            return false;
        }
        let mut sels = Vec::new();
        collect_selectors(expr, &mut sels);
        sels.into_iter().any(|vs| {
            let mut matchers = Vec::new();
            if let Some(n) = &vs.name {
                matchers.push(Matcher::equal(METRIC_NAME, n));
            }
            for m in &vs.matchers.matchers {
                match Matcher::from_ast(m) {
                    Ok(m) => matchers.push(m),
                    Err(_) => return false,
                }
            }
            self.histogram_series
                .iter()
                .any(|ls| matchers.iter().all(|m| m.matches_labels(ls)))
        })
    }

    fn eval(&self, ev: &Eval) -> Outcome {
        if ev.expects_histogram {
            return Outcome::Unsupported("expects native histogram values".into());
        }
        if self.st {
            return Outcome::Unsupported("data loaded with @st start timestamps".into());
        }
        let expr = match crate::promql::parse(&ev.expr) {
            Ok(e) => e,
            Err(e) if e.0.starts_with("unsupported:") => return Outcome::Unsupported(e.0),
            Err(e) => {
                if ev.is_fail() {
                    return match check_expected_failure(ev, &e.0) {
                        Ok(()) => Outcome::Pass,
                        Err(m) => Outcome::Fail(m),
                    };
                }
                return Outcome::Fail(format!("error parsing query {:?}: {e}", ev.expr));
            }
        };
        let touches_histograms = self.selects_histograms(&expr);
        let res = catch_unwind(AssertUnwindSafe(|| {
            if ev.is_range {
                self.exec_range(ev, &expr)
            } else {
                self.exec_instant(ev, &expr)
            }
        }));
        match res {
            Ok(Ok(())) => Outcome::Pass,
            Ok(Err(m)) if touches_histograms => Outcome::Unsupported(format!(
                "selects series whose native histogram samples were not loaded (failed with: {m})"
            )),
            Ok(Err(m)) => Outcome::Fail(m),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                Outcome::Fail(format!("the engine panicked: {msg}"))
            }
        }
    }

    fn exec_range(&self, ev: &Eval, expr: &Expr) -> Result<(), String> {
        let res = self
            .engine
            .range(&self.storage, expr, ev.start, ev.end, ev.step);
        let series = match res {
            Err(e) if ev.is_fail() => return check_expected_failure(ev, &e.0),
            Err(e) => return Err(format!("error evaluating query {:?}: {e}", ev.expr)),
            Ok(_) if ev.is_fail() => {
                return Err(format!(
                    "expected error evaluating query {:?} but got none",
                    ev.expr
                ));
            }
            Ok(s) => s,
        };
        compare_result(ev, &Value::Matrix(series)).map_err(|e| format!("error in eval: {e}"))
    }

    fn exec_instant(&self, ev: &Eval, expr: &Expr) -> Result<(), String> {
        self.run_instant_query(ev, expr, ev.eval_time, &ev.expr, "")?;
        if let Some((at_expr, times)) = at_modifier_cases(expr, ev.eval_time) {
            let text = at_expr.to_string();
            for t in times {
                let what = format!(" (with @ injected, evaluated at {}ms)", t);
                self.run_instant_query(ev, &at_expr, t, &text, &what)?;
            }
        }
        Ok(())
    }

    fn run_instant_query(
        &self,
        ev: &Eval,
        expr: &Expr,
        t: i64,
        text: &str,
        what: &str,
    ) -> Result<(), String> {
        let res = match self.engine.instant(&self.storage, expr, t) {
            Err(e) if ev.is_fail() => {
                return check_expected_failure(ev, &e.0).map_err(|m| format!("{m}{what}"));
            }
            Err(e) => return Err(format!("error evaluating query {text:?}{what}: {e}")),
            Ok(_) if ev.is_fail() => {
                return Err(format!(
                    "expected error evaluating query {text:?}{what} but got none"
                ));
            }
            Ok(v) => v,
        };
        compare_result(ev, &res).map_err(|e| format!("error in eval {text}{what}: {e}"))?;
        if ev.exclude_from_range_query || QUERY_CONTEXT_FUNCS.is_match(text) {
            return Ok(());
        }
        let mat = self
            .engine
            .range(&self.storage, expr, t - 60_000, t + 60_000, 60_000)
            .map_err(|e| format!("error evaluating query {text:?}{what} in range mode: {e}"))?;
        if ev.is_ordered() {
            return Ok(());
        }
        assert_matrix_sorted(&mat)?;
        let vec: Vec<Sample> = mat
            .iter()
            .filter_map(|s| {
                s.points.iter().find(|p| p.t == t).map(|p| Sample {
                    labels: s.labels.clone(),
                    t: p.t,
                    v: p.v,
                })
            })
            .collect();
        let got = if matches!(res, Value::Scalar { .. }) {
            match vec.first() {
                Some(s) => Value::Scalar { t, v: s.v },
                None => {
                    return Err(format!(
                        "error in eval {text}{what} range mode: scalar result has no point at \
                         the middle step"
                    ));
                }
            }
        } else {
            Value::Vector(vec)
        };
        compare_result(ev, &got).map_err(|e| format!("error in eval {text}{what} range mode: {e}"))
    }
}

fn check_expected_failure(ev: &Eval, actual: &str) -> Result<(), String> {
    if let Some(m) = &ev.expected_fail_message
        && !m.is_empty()
        && m != actual
    {
        return Err(format!(
            "expected error {m:?} evaluating query {:?}, but got: {actual}",
            ev.expr
        ));
    }
    if let Some(r) = &ev.expected_fail_regexp
        && !r.is_match(actual)
    {
        return Err(format!(
            "expected error matching pattern {:?} evaluating query {:?}, but got: {actual}",
            r.as_str(),
            ev.expr
        ));
    }
    if let Some(m) = ev.fail_expectation()
        && !m.check(actual)
    {
        let kind = match m {
            ExpectMatch::Message(_) => "",
            ExpectMatch::Regex(_) => " pattern",
        };
        return Err(format!(
            "expected error matching{kind} {:?} evaluating query {:?}, but got: {actual}",
            m.to_string(),
            ev.expr
        ));
    }
    Ok(())
}

fn assert_matrix_sorted(m: &[Series]) -> Result<(), String> {
    for (i, w) in m.windows(2).enumerate() {
        if w[0].labels > w[1].labels {
            return Err(format!(
                "matrix results should always be sorted by labels, but matrix is not sorted: \
                 series at index {} with labels {} sorts before series at index {i} with labels {}",
                i + 1,
                w[1].labels,
                w[0].labels
            ));
        }
    }
    Ok(())
}

/// `compareResult` of test.go.
fn compare_result(ev: &Eval, result: &Value) -> Result<(), String> {
    let expected: &BTreeMap<Labels, parse::Entry> = &ev.expected;
    match result {
        Value::Matrix(mat) => {
            if ev.is_ordered() {
                return Err("expected ordered result, but query returned a matrix".into());
            }
            if ev.expect_scalar {
                return Err(format!(
                    "expected scalar result, but got matrix with {} series",
                    mat.len()
                ));
            }
            assert_matrix_sorted(mat)?;
            let mut seen = 0usize;
            for s in mat {
                let Some(exp) = expected.get(&s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has {}",
                        s.labels,
                        fmt_points(s)
                    ));
                };
                seen += 1;
                let mut floats: Vec<(i64, f64)> = Vec::new();
                for (i, e) in exp.vals.iter().enumerate() {
                    let ts = ev.start + i as i64 * ev.step;
                    if !ev.has_range || ts > ev.end {
                        return Err(format!(
                            "expected {} points for {}, but query time range cannot return this \
                             many points",
                            exp.vals.len(),
                            s.labels
                        ));
                    }
                    if let SeqValue::Float(f) = e {
                        floats.push((ts, *f));
                    }
                }
                if floats.len() != s.points.len() {
                    return Err(format!(
                        "expected {} float points and 0 histogram points for {}, but got {}",
                        floats.len(),
                        s.labels,
                        fmt_points(s)
                    ));
                }
                for (i, ((et, ev_), p)) in floats.iter().zip(&s.points).enumerate() {
                    if *et != p.t {
                        return Err(format!(
                            "expected float value at index {i} for {} to have timestamp {et}, \
                             but it had timestamp {} (result has {})",
                            s.labels,
                            p.t,
                            fmt_points(s)
                        ));
                    }
                    if !almost_equal(p.v, *ev_, EPSILON) {
                        return Err(format!(
                            "expected float value at index {i} (t={}) for {} to be {}, but got {} \
                             (result has {})",
                            p.t,
                            s.labels,
                            fmt_f(*ev_),
                            fmt_f(p.v),
                            fmt_points(s)
                        ));
                    }
                }
            }
            if seen < expected.len() {
                let missing = expected
                    .keys()
                    .find(|k| !mat.iter().any(|s| &s.labels == *k));
                if let Some(k) = missing {
                    return Err(format!("expected metric {k} not found"));
                }
            }
        }
        Value::Vector(vec) => {
            if ev.expect_scalar {
                return Err(format!(
                    "expected scalar result, but got vector {}",
                    fmt_vector(vec)
                ));
            }
            let mut seen: Vec<&Labels> = Vec::new();
            for (pos, s) in vec.iter().enumerate() {
                let Some(exp) = expected.get(&s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has value {}",
                        s.labels,
                        fmt_f(s.v)
                    ));
                };
                if ev.is_ordered() && exp.pos != pos + 1 {
                    return Err(format!(
                        "expected metric {} with {} at position {} but was at {}",
                        s.labels,
                        fmt_seq(&exp.vals),
                        exp.pos,
                        pos + 1
                    ));
                }
                let want = match exp.vals.first() {
                    Some(SeqValue::Float(f)) => *f,
                    // `_` (or nothing) as an instant expectation: Go compares the zero value.
                    Some(SeqValue::Omitted) | None => 0.0,
                    Some(SeqValue::Histogram) => {
                        return Err(format!(
                            "expected histogram for {} but got float value {}",
                            s.labels,
                            fmt_f(s.v)
                        ));
                    }
                };
                if !almost_equal(want, s.v, EPSILON) {
                    return Err(format!(
                        "expected {} for {} but got {}",
                        fmt_f(want),
                        s.labels,
                        fmt_f(s.v)
                    ));
                }
                seen.push(&s.labels);
            }
            for (k, e) in expected {
                if !seen.contains(&k) {
                    return Err(format!(
                        "expected metric {k} with {} not found",
                        fmt_seq(&e.vals)
                    ));
                }
            }
        }
        Value::Scalar { v, .. } => {
            if !ev.expect_scalar {
                return Err(format!(
                    "expected vector or matrix result, but got scalar {}",
                    fmt_f(*v)
                ));
            }
            let want = match ev.scalar.as_ref().and_then(|e| e.vals.first()) {
                Some(SeqValue::Float(f)) => *f,
                _ => 0.0,
            };
            if !almost_equal(want, *v, EPSILON) {
                return Err(format!(
                    "expected scalar {} but got {}",
                    fmt_f(want),
                    fmt_f(*v)
                ));
            }
        }
        Value::String(s) => {
            if &ev.expected_string != s {
                return Err(format!(
                    "expected string \"{}\" but got \"{s}\"",
                    ev.expected_string
                ));
            }
        }
    }
    Ok(())
}

fn fmt_vector(vec: &[Sample]) -> String {
    let items: Vec<String> = vec
        .iter()
        .map(|s| format!("{} => {} @[{}]", s.labels, fmt_f(s.v), s.t))
        .collect();
    items.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::Storage;

    fn expr(s: &str) -> Expr {
        crate::promql::parse(s).unwrap()
    }

    #[test]
    fn injects_at_everywhere_but_inside_subqueries() {
        let t = at_time(60_000);
        let mut e = expr("sum(rate(a[5m])) + b offset 1m + max_over_time(c[10m:1m]) + d @ 5");
        assert!(!inject_at(&mut e, t));
        let s = e.to_string();
        assert_eq!(s.matches("@ 60.000").count(), 3, "{s}");
        assert!(s.contains("@ 5.000"), "{s}");
        let mut e = expr("rate(x[1m:] @ start())");
        inject_at(&mut e, t);
        assert!(e.to_string().contains("@ 60.000"), "{e}");
        let mut e = expr("time() + a");
        assert!(inject_at(&mut e, t));
        // Inside a subquery, an unsafe function is not looked at (as upstream).
        let mut e = expr("max_over_time(timestamp(a)[5m:1m])");
        assert!(!inject_at(&mut e, t));
        let (_, times) = at_modifier_cases(&expr("a"), 0).unwrap();
        assert_eq!(times, [-1000, 0, 1000]);
        let (_, times) = at_modifier_cases(&expr("a"), 100_000).unwrap();
        assert_eq!(times, [-1_000_000, 0, 20_000, 100_000, 1_000_000]);
        assert!(at_modifier_cases(&expr("predict_linear(a[5m], 60)"), 1).is_none());
        let mut e = expr("a");
        inject_at(&mut e, at_time(-1500));
        assert!(
            matches!(&e, Expr::VectorSelector(vs) if vs.at == Some(AtModifier::At(UNIX_EPOCH - Duration::from_millis(1500))))
        );
    }

    fn eval_of(text: &str) -> Eval {
        let (cmds, errs) = parse::parse(text);
        assert!(errs.is_empty());
        cmds.into_iter()
            .find_map(|(_, c)| match c {
                Command::Eval(e) => Some(*e),
                _ => None,
            })
            .unwrap()
    }

    fn sample(ls: &[(&str, &str)], v: f64) -> Sample {
        Sample {
            labels: Labels::from_pairs(ls.iter().copied()),
            t: 0,
            v,
        }
    }

    #[test]
    fn compares_vectors_as_sets() {
        let ev = eval_of("eval instant at 0 x\n  x{a=\"1\"} 1\n  x{a=\"2\"} NaN\n");
        let a1 = sample(&[("__name__", "x"), ("a", "1")], 1.0000001);
        let a2 = sample(&[("__name__", "x"), ("a", "2")], f64::NAN);
        assert!(compare_result(&ev, &Value::Vector(vec![a2.clone(), a1.clone()])).is_ok());
        let err = compare_result(&ev, &Value::Vector(vec![a1.clone()])).unwrap_err();
        assert!(err.contains("not found"), "{err}");
        let extra = sample(&[("__name__", "y")], 1.0);
        let err =
            compare_result(&ev, &Value::Vector(vec![a1.clone(), a2.clone(), extra])).unwrap_err();
        assert!(err.contains("unexpected metric y{}"), "{err}");
        let wrong = sample(&[("__name__", "x"), ("a", "1")], 1.1);
        assert!(compare_result(&ev, &Value::Vector(vec![wrong, a2.clone()])).is_err());
        let stale = sample(
            &[("__name__", "x"), ("a", "2")],
            crate::promql::value::stale_nan(),
        );
        assert!(compare_result(&ev, &Value::Vector(vec![a1.clone(), stale])).is_err());
        assert!(compare_result(&ev, &Value::Scalar { t: 0, v: 1.0 }).is_err());

        let ordered =
            eval_of("eval instant at 0 x\n  expect ordered\n  x{a=\"1\"} 1\n  x{a=\"2\"} NaN\n");
        assert!(compare_result(&ordered, &Value::Vector(vec![a1.clone(), a2.clone()])).is_ok());
        assert!(compare_result(&ordered, &Value::Vector(vec![a2, a1])).is_err());
    }

    #[test]
    fn compares_scalars_strings_and_matrices() {
        let ev = eval_of("eval instant at 0 1\n  1\n");
        assert!(compare_result(&ev, &Value::Scalar { t: 0, v: 1.0 }).is_ok());
        assert!(compare_result(&ev, &Value::Scalar { t: 0, v: 2.0 }).is_err());
        assert!(compare_result(&ev, &Value::Vector(vec![])).is_err());

        let ev = eval_of("eval instant at 0 \"a\"\n  expect string \"a\"\n");
        assert!(compare_result(&ev, &Value::String("a".into())).is_ok());
        assert!(compare_result(&ev, &Value::String("b".into())).is_err());

        let ev = eval_of("eval range from 0 to 2m step 1m x\n  x 1 _ 3\n");
        let ls = Labels::from_pairs([("__name__", "x")]);
        let series = |pts: &[(i64, f64)]| Series {
            labels: ls.clone(),
            points: pts
                .iter()
                .map(|&(t, v)| crate::promql::Point { t, v })
                .collect(),
        };
        let good = series(&[(0, 1.0), (120_000, 3.0)]);
        assert!(compare_result(&ev, &Value::Matrix(vec![good])).is_ok());
        let shifted = series(&[(0, 1.0), (60_000, 3.0)]);
        assert!(compare_result(&ev, &Value::Matrix(vec![shifted])).is_err());
        let extra = series(&[(0, 1.0), (60_000, 2.0), (120_000, 3.0)]);
        assert!(compare_result(&ev, &Value::Matrix(vec![extra])).is_err());
        assert!(compare_result(&ev, &Value::Matrix(vec![])).is_err());

        let too_many = eval_of("eval range from 0 to 1m step 1m x\n  x 1 2 3\n");
        assert!(compare_result(&too_many, &Value::Matrix(vec![series(&[(0, 1.0)])])).is_err());
    }

    #[test]
    fn load_skips_histograms_and_keeps_steps() {
        let s = load_storage("load 1m\n  m 1 {{sum:1}} 3 _ stale\n").unwrap();
        assert_eq!(s.point_count(), 3);
        let got = s.select(
            &[crate::promql::Matcher::equal("__name__", "m")],
            -1,
            i64::MAX,
        );
        let ts: Vec<i64> = got[0].points.iter().map(|p| p.t).collect();
        assert_eq!(ts, [0, 120_000, 240_000]);
        assert!(crate::promql::value::is_stale(got[0].points[2].v));
        assert!(load_storage("load 1m\n  m 1\n\neval instant at 0 m\n").is_err());
    }

    #[test]
    fn classifies_unsupported_and_format_errors() {
        let text = "load 1m\n  m 1 2\n\n\
                    eval instant at 1m m\n  m {{sum:1}}\n\n\
                    eval instant at 1m limitk(1, m)\n  m 2\n\n\
                    this is not a command\n\n\
                    load_with_nhcb 1m\n  h_bucket{le=\"1\"} 1\n  g 1 {{sum:1}}\n\n\
                    eval instant at 1m sum(h)\n  {} 1\n\n\
                    eval instant at 1m {__name__=~\"g|zzz\"}\n  g 7\n\n\
                    eval instant at 0 h_bucket\n  h_bucket{le=\"1\"} 1\n\n\
                    clear\n\neval instant at 1m h\n";
        let r = run_str("t.test", text);
        let lines: Vec<usize> = r.unsupported.iter().map(|u| u.line).collect();
        assert_eq!(lines, [4, 7, 16, 19], "{r:?}");
        assert!(r.unsupported[1].reason.starts_with("unsupported:"));
        let fmt: Vec<usize> = r.format_errors().map(|f| f.line).collect();
        assert_eq!(fmt, [10]);
        // `h_bucket` and `h` after the clear run (pass or fail is the engine's business).
        assert_eq!(r.passed + r.eval_failures().count(), 2);
    }

    #[test]
    fn parse_errors_and_expected_failures() {
        // A syntax error is an eval failure, unless the eval expects a failure.
        let r = run_str("t", "eval instant at 0 sum(\n  {} 1\n");
        assert_eq!(r.eval_failures().count(), 1);
        assert_eq!(r.format_errors().count(), 0);
        let r = run_str("t", "eval instant at 0 sum(\n  expect fail\n");
        assert_eq!(r.passed, 1, "{r:?}");
        let r = run_str("t", "eval instant at 0 sum(\n  expect fail msg: nope\n");
        assert_eq!(r.eval_failures().count(), 1);
    }
}
