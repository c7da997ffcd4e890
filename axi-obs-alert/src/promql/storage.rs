//! Where samples come from: the [`Storage`] trait and an in-memory implementation.

use std::collections::BTreeMap;

use promql_parser::label::{MatchOp, Matcher as AstMatcher};
use regex::Regex;

use super::value::{Labels, Point, Series};

/// A label matcher with Prometheus 3 semantics: regexes fully anchored and `.` matching
/// newlines; a matcher that matches the empty string also matches series without the label.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Eq(String),
    Ne(String),
    Re(Regex),
    NotRe(Regex),
}

impl Matcher {
    /// `name="value"`.
    pub fn equal(name: &str, value: &str) -> Self {
        Matcher {
            name: name.to_owned(),
            op: Op::Eq(value.to_owned()),
        }
    }

    /// Compiles a parsed matcher. Regexes are recompiled as `^(?s:re)$`, as Prometheus does.
    pub fn from_ast(m: &AstMatcher) -> Result<Self, String> {
        let op = match &m.op {
            MatchOp::Equal => Op::Eq(m.value.clone()),
            MatchOp::NotEqual => Op::Ne(m.value.clone()),
            MatchOp::Re(parsed) => Op::Re(anchored(&m.value, parsed)?),
            MatchOp::NotRe(parsed) => Op::NotRe(anchored(&m.value, parsed)?),
        };
        Ok(Matcher {
            name: m.name.clone(),
            op,
        })
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match &self.op {
            Op::Eq(v) => v == value,
            Op::Ne(v) => v != value,
            Op::Re(r) => r.is_match(value),
            Op::NotRe(r) => !r.is_match(value),
        }
    }

    /// Whether the matcher holds for a label set.
    pub fn matches_labels(&self, ls: &Labels) -> bool {
        self.matches(ls.get(&self.name).unwrap_or(""))
    }

    /// The value of an equality matcher.
    pub fn equality_value(&self) -> Option<&str> {
        match &self.op {
            Op::Eq(v) => Some(v),
            _ => None,
        }
    }
}

fn anchored(source: &str, parsed: &Regex) -> Result<Regex, String> {
    // promql-parser anchors as `^(?:re)$` (with `.` not matching `\n`) and escapes `{` that
    // Go's RE2 reads as a literal; keep its escaping and add the `s` flag.
    let inner = parsed
        .as_str()
        .strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(source);
    Regex::new(&format!("^(?s:{inner})$")).map_err(|e| format!("illegal regex {source:?}: {e}"))
}

/// A source of samples.
///
/// `select` returns every series whose labels satisfy all matchers, with its points in
/// `(start, end]` (milliseconds, start exclusive: Prometheus 3's left-open windows), oldest
/// first, staleness markers included. Series with no point in the window may be omitted.
pub trait Storage {
    /// Series matching all `matchers` with their points in `(start, end]`.
    fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<Series>;
}

/// Series held in memory, ordered by labels. Used by tests, `axi-alert query` and the
/// promqltest runner; points are kept raw (8 + 8 bytes each).
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    series: BTreeMap<Labels, Vec<Point>>,
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one point; points of a series may arrive in any order, and a point at an existing
    /// timestamp replaces it.
    pub fn add(&mut self, labels: &Labels, t: i64, v: f64) {
        let points = self.series.entry(labels.clone()).or_default();
        match points.last() {
            Some(last) if last.t < t => points.push(Point { t, v }),
            None => points.push(Point { t, v }),
            _ => match points.binary_search_by_key(&t, |p| p.t) {
                Ok(i) => points[i].v = v,
                Err(i) => points.insert(i, Point { t, v }),
            },
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// How many series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// How many points over all series.
    pub fn point_count(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }
}

impl Storage for MemStorage {
    fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<Series> {
        let mut out = Vec::new();
        for (labels, points) in &self.series {
            if !matchers.iter().all(|m| m.matches_labels(labels)) {
                continue;
            }
            let from = points.partition_point(|p| p.t <= start);
            let to = points.partition_point(|p| p.t <= end);
            if from < to {
                out.push(Series {
                    labels: labels.clone(),
                    points: points[from..to].to_vec(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(name: &str, value: &str) -> Matcher {
        let m = AstMatcher::new_matcher(
            promql_parser::parser::token::T_EQL_REGEX,
            name.into(),
            value.into(),
        )
        .unwrap();
        Matcher::from_ast(&m).unwrap()
    }

    #[test]
    fn regexes_are_anchored_and_dot_matches_newline() {
        let m = re("a", "fo.");
        assert!(m.matches("foo"));
        assert!(!m.matches("xfoo"));
        assert!(!m.matches("fooo"));
        assert!(m.matches("fo\n"));
        assert!(re("a", "a|b").matches("b"));
    }

    #[test]
    fn windows_are_left_open() {
        let mut s = MemStorage::new();
        let ls = Labels::from_pairs([("__name__", "m")]);
        for t in [0, 10, 20, 30] {
            s.add(&ls, t, t as f64);
        }
        let got = s.select(&[Matcher::equal("__name__", "m")], 10, 30);
        let ts: Vec<i64> = got[0].points.iter().map(|p| p.t).collect();
        assert_eq!(ts, [20, 30]);
    }
}
