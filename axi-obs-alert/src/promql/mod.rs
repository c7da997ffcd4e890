//! A PromQL engine: parse with [`parse`], evaluate with [`Engine::instant`] and
//! [`Engine::range`] over any [`Storage`].
//!
//! Semantics follow Prometheus 3: left-open range windows, a 5-minute lookback for instant
//! selectors, staleness markers ending a series, Prometheus's rate extrapolation. Native
//! histograms and experimental syntax are refused with an "unsupported" error.
//!
//! ```
//! use axi_obs_alert::promql::{parse, Engine, Labels, MemStorage, Value};
//!
//! let mut store = MemStorage::new();
//! let series = Labels::from_pairs([("__name__", "http_requests_total"), ("job", "api")]);
//! for i in 0..=10 {
//!     store.add(&series, i * 15_000, (i * 30) as f64); // 2 requests per second
//! }
//! let expr = parse("sum by (job) (rate(http_requests_total[1m]))").unwrap();
//! let Value::Vector(v) = Engine::default().instant(&store, &expr, 150_000).unwrap() else {
//!     unreachable!()
//! };
//! assert_eq!(v[0].labels.get("job"), Some("api"));
//! assert!((v[0].v - 2.0).abs() < 1e-9);
//! ```

mod chunk;
mod eval;
mod functions;
mod fxhash;
mod grouping;
pub mod json;
mod numeric;
mod series;
pub mod storage;
pub mod value;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use promql_parser::parser::Expr;

pub use numeric::format_go_float;
pub use storage::{Matcher, MemStorage, Storage, StorageStats};
pub use value::{Labels, Point, Sample, Series, Value};

/// An error evaluating a query. The message is Prometheus's wording where Prometheus has one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

impl EvalError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        EvalError(msg.into())
    }
}

/// An error parsing a query.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Parses a PromQL expression with `promql-parser`, then refuses what Prometheus would refuse
/// but the parser accepts (`or` between matchers) and what this engine does not evaluate
/// (experimental functions), so a query never gets a silently wrong answer.
pub fn parse(query: &str) -> Result<Expr, ParseError> {
    let expr = parse_expr(query)?;
    check_supported(&expr, true)?;
    Ok(expr)
}

/// `query` parsed and checked as Prometheus 3 without feature flags accepts it, but not for
/// what this engine evaluates (native-histogram functions pass): for what only reads a
/// query (formatting it, taking its selectors).
pub fn parse_syntax(query: &str) -> Result<Expr, ParseError> {
    let expr = parse_expr(query)?;
    check_supported(&expr, false)?;
    Ok(expr)
}

fn parse_expr(query: &str) -> Result<Expr, ParseError> {
    if has_invalid_byte_escape(query) {
        // Go keeps `"\xff"` as a lone invalid UTF-8 byte, which a Rust string cannot hold;
        // promql-parser would silently read it as `ÿ`.
        return Err(ParseError(
            "unsupported: a \\x escape of a byte above 0x7f (invalid UTF-8) in a string literal"
                .into(),
        ));
    }
    // promql-parser panics on a duration written as a number it cannot hold (`up offset
    // 1e300`, `rate(up[Inf])`): a query from the API or a template must not take its thread
    // down.
    let parsed = std::panic::catch_unwind(|| promql_parser::parser::parse(query))
        .map_err(|_| ParseError(format!("{DURATION_OUT_OF_RANGE} in {query:?}")))?
        .map_err(ParseError)?;
    check_durations(&parsed)?;
    Ok(parsed)
}

/// The error of a duration Prometheus cannot hold (an `int64` of nanoseconds: about 292
/// years), or not a finite positive number.
const DURATION_OUT_OF_RANGE: &str = "duration out of range";

/// Refuses durations beyond what Prometheus holds (which the evaluation's millisecond
/// arithmetic would wrap).
fn check_durations(expr: &Expr) -> Result<(), ParseError> {
    use promql_parser::parser::Offset;
    let check = |d: &std::time::Duration| {
        if d.as_nanos() > i64::MAX as u128 {
            Err(ParseError(format!("{DURATION_OUT_OF_RANGE}: {d:?}")))
        } else {
            Ok(())
        }
    };
    let offset = |o: &Option<Offset>| match o {
        Some(Offset::Pos(d) | Offset::Neg(d)) => check(d),
        None => Ok(()),
    };
    match expr {
        Expr::Aggregate(a) => {
            check_durations(&a.expr)?;
            a.param.as_deref().map_or(Ok(()), check_durations)
        }
        Expr::Unary(u) => check_durations(&u.expr),
        Expr::Binary(b) => {
            check_durations(&b.lhs)?;
            check_durations(&b.rhs)
        }
        Expr::Paren(p) => check_durations(&p.expr),
        Expr::Subquery(s) => {
            check(&s.range)?;
            s.step.as_ref().map_or(Ok(()), check)?;
            offset(&s.offset)?;
            check_durations(&s.expr)
        }
        Expr::VectorSelector(vs) => offset(&vs.offset),
        Expr::MatrixSelector(ms) => {
            check(&ms.range)?;
            offset(&ms.vs.offset)
        }
        Expr::Call(c) => c.args.args.iter().try_for_each(|a| check_durations(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
    }
}

/// Whether a quoted string in `query` holds `\x80`..`\xff` (backslash-escaped, not raw).
fn has_invalid_byte_escape(query: &str) -> bool {
    let b = query.as_bytes();
    let mut quote = None;
    let mut i = 0;
    while i < b.len() {
        match (quote, b[i]) {
            (None, q @ (b'"' | b'\'' | b'`')) => quote = Some(q),
            (Some(b'`'), b'`') => quote = None,
            (Some(q), b'\\') if q != b'`' => {
                if b.get(i + 1) == Some(&b'x')
                    && b.get(i + 2)
                        .is_some_and(|c| matches!(c, b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'))
                {
                    return true;
                }
                i += 1;
            }
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        i += 1;
    }
    false
}

/// What Prometheus refuses without feature flags, and with `evaluated` what this engine
/// cannot evaluate.
fn check_supported(expr: &Expr, evaluated: bool) -> Result<(), ParseError> {
    let unsupported = |what: String| Err(ParseError(format!("unsupported: {what}")));
    match expr {
        Expr::Aggregate(a) => {
            use promql_parser::parser::token::{T_LIMIT_RATIO, T_LIMITK};
            if matches!(a.op.id(), T_LIMITK | T_LIMIT_RATIO) {
                return unsupported(format!("the experimental aggregation {}", a.op));
            }
            check_supported(&a.expr, evaluated)?;
            if let Some(p) = &a.param {
                check_supported(p, evaluated)?;
            }
            Ok(())
        }
        Expr::Unary(u) => check_supported(&u.expr, evaluated),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
            {
                return unsupported("the experimental fill modifiers".into());
            }
            check_supported(&b.lhs, evaluated)?;
            check_supported(&b.rhs, evaluated)
        }
        Expr::Paren(p) => check_supported(&p.expr, evaluated),
        Expr::Subquery(s) => check_supported(&s.expr, evaluated),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(ms) => check_selector(&ms.vs),
        Expr::Call(c) => {
            if c.func.experimental {
                return unsupported(format!("the experimental function {}()", c.func.name));
            }
            if evaluated
                && c.func.name.starts_with("histogram_")
                && !matches!(c.func.name, "histogram_quantile" | "histogram_fraction")
            {
                return unsupported(format!(
                    "{}() works on native histograms, which this engine does not store",
                    c.func.name
                ));
            }
            c.args
                .args
                .iter()
                .try_for_each(|a| check_supported(a, evaluated))
        }
        Expr::Extension(_) => unsupported("extension expressions".into()),
    }
}

fn check_selector(vs: &promql_parser::parser::VectorSelector) -> Result<(), ParseError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(ParseError(
            "unexpected \"or\" in label matching: Prometheus does not allow or between matchers"
                .into(),
        ));
    }
    Ok(())
}

/// Evaluates parsed expressions.
///
/// Regex matchers are compiled once per engine and its clones (a bounded cache), not at every
/// evaluation of a rule.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) lookback_ms: i64,
    pub(crate) max_samples: usize,
    pub(crate) subquery_step_ms: i64,
    pub(crate) timeout: Option<Duration>,
    pub(crate) regexes: RegexCache,
}

/// Regex matchers compiled so far, by name, operator and value; shared by an engine's clones.
/// When it holds [`REGEX_CACHE_CAPACITY`] it is emptied and starts over.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegexCache(Arc<Mutex<HashMap<RegexKey, Matcher>>>);

/// A regex matcher's label name, whether it is negated (`!~`), and its regex as written.
type RegexKey = (String, bool, String);

/// Regex matchers an engine keeps compiled at most.
const REGEX_CACHE_CAPACITY: usize = 1024;

impl RegexCache {
    /// The compiled form of a parsed matcher.
    pub(crate) fn compile(&self, m: &promql_parser::label::Matcher) -> Result<Matcher, String> {
        use promql_parser::label::MatchOp;
        let negated = match &m.op {
            MatchOp::Re(_) => false,
            MatchOp::NotRe(_) => true,
            MatchOp::Equal | MatchOp::NotEqual => return Matcher::from_ast(m),
        };
        let key = (m.name.clone(), negated, m.value.clone());
        // A poisoned cache is only a cache: entries are inserted whole.
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(compiled) = cache.get(&key) {
            return Ok(compiled.clone());
        }
        let compiled = Matcher::from_ast(m)?;
        if cache.len() >= REGEX_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, compiled.clone());
        Ok(compiled)
    }
}

impl Default for Engine {
    /// Prometheus's defaults: 5 m lookback, 50 million samples per query, no timeout; 1 m
    /// for subqueries without a step (rule groups set their interval instead).
    fn default() -> Self {
        Engine {
            lookback_ms: 5 * 60_000,
            max_samples: 50_000_000,
            subquery_step_ms: 60_000,
            timeout: None,
            regexes: RegexCache::default(),
        }
    }
}

impl Engine {
    /// How far back an instant selector looks for the latest sample (default 5 m; whole
    /// milliseconds, the rest dropped; at most 2^61 ms, so no window arithmetic overflows).
    pub fn lookback(mut self, d: Duration) -> Self {
        self.lookback_ms = i64::try_from(d.as_millis())
            .unwrap_or(i64::MAX)
            .min(1 << 61);
        self
    }

    /// The most samples one query may hold at once before it fails (default 50 million).
    pub fn max_samples(mut self, n: usize) -> Self {
        self.max_samples = n;
        self
    }

    /// The step of subqueries written without one, e.g. `x[5m:]` (default 1 m).
    pub fn default_subquery_step(mut self, d: Duration) -> Self {
        self.subquery_step_ms = (d.as_millis() as i64).max(1);
        self
    }

    /// A time limit per query (default none).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Evaluates `expr` at `t` (milliseconds since the Unix epoch).
    pub fn instant(&self, storage: &dyn Storage, expr: &Expr, t: i64) -> Result<Value, EvalError> {
        eval::Evaluator::new(self, storage, t, t, 0).instant(expr)
    }

    /// Evaluates `expr` at every `step` from `start` to `end` (inclusive, milliseconds) and
    /// returns one series per label set, sorted by labels, as `/api/v1/query_range` does.
    pub fn range(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<Series>, EvalError> {
        if step <= 0 {
            return Err(EvalError::new(
                "zero or negative query resolution step widths are not accepted",
            ));
        }
        eval::Evaluator::new(self, storage, start, end, step).range(expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations written as numbers the parser cannot hold are a parse error, as in
    /// Prometheus, not a panic that takes down the thread that parsed them (an API handler,
    /// the rule evaluation running a template's query); durations past an `int64` of
    /// nanoseconds are refused, not wrapped.
    #[test]
    fn durations_out_of_range_are_parse_errors() {
        for q in [
            "up offset 1e300",
            "up[5m:1e300]",
            "up offset NaN",
            "up offset 300y",
            "sum(rate(up[1m] offset 4294967295y))",
            "max_over_time(up[10m:1m] offset -300y)",
            "up[300y:1m]",
        ] {
            let err = parse(q).expect_err(q);
            assert!(err.0.contains(DURATION_OUT_OF_RANGE), "{q}: {}", err.0);
        }
        assert!(parse("rate(up[Inf])").is_err());
        for q in ["up offset 290y", "rate(up[5m])", "up[1h:1m] offset -1d"] {
            parse(q).unwrap_or_else(|e| panic!("{q}: {}", e.0));
        }
    }

    /// Behaviour Prometheus 3 has that its own test files do not pin down.
    #[test]
    fn label_names_regex_braces_and_k_bounds_as_prometheus() {
        let script = r#"
load 5m
  version{job="a"} 6
  http_requests{path="/users/42"} 1
  x{a="1"} 1

# UTF-8 label names are valid in Prometheus 3; only an empty one is not.
eval instant at 0 count_values("app-version", version)
  {"app-version"="6"} 1

eval instant at 0 count_values("", version)
  expect fail msg: invalid label name ""

# Go reads a brace that starts no repetition as a literal.
eval instant at 0 label_replace(http_requests, "route", "$1", "path", "/users/{id}|/users/(.*)")
  http_requests{path="/users/42", route="42"} 1

eval instant at 0 topk(-1, x)

eval instant at 0 topk(-1e19, x)
  expect fail msg: Scalar value -1e+19 underflows int64

eval instant at 0 bottomk(1e19, x)
  expect fail msg: Scalar value 1e+19 overflows int64

eval instant at 0 topk(9e18, x)
  x{a="1"} 1
"#;
        let report = crate::promqltest::run_str("inline", script);
        assert!(
            report.ok() && report.unsupported.is_empty(),
            "{report}: {:#?} {:#?}",
            report.failed,
            report.unsupported
        );
        assert_eq!(report.passed, 7);
    }

    #[test]
    fn a_long_subquery_stops_at_the_timeout_as_it_runs() {
        // About 10^11 steps: checked only at its end, it would run for hours.
        let e = parse("count_over_time(vector(1)[3y:1ms])").unwrap();
        let err = Engine::default()
            .timeout(Duration::from_millis(50))
            .instant(&MemStorage::new(), &e, 0)
            .unwrap_err();
        assert_eq!(err.0, "query timed out in query execution");
    }

    #[test]
    fn range_answers_count_towards_the_sample_limit() {
        // 1,001 points of output, nothing loaded from the store.
        let e = parse("vector(1)").unwrap();
        let engine = Engine::default().max_samples(1_000);
        let err = engine
            .range(&MemStorage::new(), &e, 0, 1_000_000, 1_000)
            .unwrap_err();
        assert!(
            err.0
                .starts_with("query processing would load too many samples"),
            "{err}"
        );
        assert!(
            engine
                .range(&MemStorage::new(), &e, 0, 999_000, 1_000)
                .is_ok()
        );
        // Subquery output too.
        let sq = parse("count_over_time(vector(1)[2000s:1s])").unwrap();
        assert!(engine.instant(&MemStorage::new(), &sq, 0).is_err());
    }

    #[test]
    fn a_range_ending_at_the_last_time_ends() {
        let e = parse("vector(1)").unwrap();
        let m = Engine::default()
            .range(&MemStorage::new(), &e, i64::MAX - 2_500, i64::MAX, 1_000)
            .unwrap();
        assert_eq!(m[0].points.len(), 3);
    }
}
