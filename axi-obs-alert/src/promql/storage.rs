//! Where samples come from: the [`Storage`] trait and an in-memory implementation.

use std::collections::HashMap;
use std::sync::OnceLock;

use promql_parser::label::{MatchOp, Matcher as AstMatcher};
use regex::Regex;

use super::chunk::Chunk;
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

    /// Series matching all `matchers` with only their newest point in `(start, end]` (what
    /// an instant selector needs). The default takes it from [`Storage::select`].
    fn select_latest(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<(Labels, Point)> {
        self.select(matchers, start, end)
            .into_iter()
            .filter_map(|s| Some((s.labels, *s.points.last()?)))
            .collect()
    }
}

/// Series held in memory with an inverted index, their samples in Gorilla-compressed chunks
/// of 120 (delta-of-delta timestamps, XOR-ed values), the newest one appended in place. Used by rule
/// evaluation, `axi-alert query` and the promqltest runner.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    series: Vec<StoredSeries>,
    by_labels: HashMap<Labels, u32>,
    /// Label name -> value -> series ids (ascending).
    postings: HashMap<String, HashMap<String, Vec<u32>>>,
    /// Each series' position in label order, computed on demand after new series arrive:
    /// results come sorted by labels, as Prometheus returns them, without comparing labels.
    ranks: OnceLock<Vec<u32>>,
}

#[derive(Debug, Clone)]
struct StoredSeries {
    labels: Labels,
    /// Compressed chunks, oldest first; only the last one is still appended to.
    chunks: Vec<Chunk>,
}

impl StoredSeries {
    fn points(&self, start: i64, end: i64, out: &mut Vec<Point>) {
        for c in &self.chunks {
            if c.max_t > start && c.min_t <= end {
                c.decode_into(start, end, out);
            }
        }
    }

    fn append(&mut self, t: i64, v: f64) {
        let p = Point { t, v };
        match self.chunks.last_mut() {
            Some(c) if t <= c.max_t => self.insert_out_of_order(p),
            Some(c) if !c.is_full() => c.push(p),
            Some(c) => {
                c.seal();
                self.chunks.push(Chunk::new(p));
            }
            None => self.chunks.push(Chunk::new(p)),
        }
    }

    /// Rare (test data loaded out of order): rebuild the series' chunks.
    fn insert_out_of_order(&mut self, p: Point) {
        let mut all = Vec::new();
        self.points(i64::MIN, i64::MAX, &mut all);
        match all.binary_search_by_key(&p.t, |q| q.t) {
            Ok(i) => all[i].v = p.v,
            Err(i) => all.insert(i, p),
        }
        self.chunks.clear();
        for q in all {
            match self.chunks.last_mut() {
                Some(c) if !c.is_full() => c.push(q),
                Some(c) => {
                    c.seal();
                    self.chunks.push(Chunk::new(q));
                }
                None => self.chunks.push(Chunk::new(q)),
            }
        }
    }

    fn samples(&self) -> usize {
        self.chunks.iter().map(|c| usize::from(c.count)).sum()
    }
}

/// What a [`MemStorage`] holds and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageStats {
    /// Series.
    pub series: usize,
    /// Samples over all series.
    pub samples: usize,
    /// Bytes of sample data: compressed chunks (allocated capacity) and their headers.
    pub sample_bytes: usize,
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one point. Points of a series normally arrive in time order; an older point is
    /// inserted (rebuilding that series' chunks), and a point at an existing timestamp
    /// replaces it.
    pub fn add(&mut self, labels: &Labels, t: i64, v: f64) {
        let id = match self.by_labels.get(labels) {
            Some(&id) => id,
            None => {
                let id = self.series.len() as u32;
                for (k, val) in labels.iter() {
                    self.postings
                        .entry(k.to_owned())
                        .or_default()
                        .entry(val.to_owned())
                        .or_default()
                        .push(id);
                }
                self.by_labels.insert(labels.clone(), id);
                self.ranks = OnceLock::new();
                self.series.push(StoredSeries {
                    labels: labels.clone(),
                    chunks: Vec::new(),
                });
                id
            }
        };
        self.series[id as usize].append(t, v);
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// How many series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// How many points over all series.
    pub fn point_count(&self) -> usize {
        self.series.iter().map(StoredSeries::samples).sum()
    }

    /// Drops whole chunks whose newest sample is older than `t` (ms), and series left with
    /// nothing; the retention of a rule evaluator that only reads recent windows.
    pub fn drop_before(&mut self, t: i64) {
        let mut emptied = false;
        for s in &mut self.series {
            let before = s.chunks.len();
            s.chunks.retain(|c| c.max_t >= t);
            emptied |= before > 0 && s.chunks.is_empty();
        }
        if emptied {
            let keep: Vec<StoredSeries> = std::mem::take(&mut self.series)
                .into_iter()
                .filter(|s| !s.chunks.is_empty())
                .collect();
            *self = Self::default();
            for s in keep {
                let id = self.series.len() as u32;
                for (k, v) in s.labels.iter() {
                    self.postings
                        .entry(k.to_owned())
                        .or_default()
                        .entry(v.to_owned())
                        .or_default()
                        .push(id);
                }
                self.by_labels.insert(s.labels.clone(), id);
                self.series.push(s);
            }
        }
    }

    /// Series, samples and the bytes their samples take.
    pub fn stats(&self) -> StorageStats {
        let sample_bytes = self
            .series
            .iter()
            .map(|s| s.chunks.iter().map(Chunk::bytes).sum::<usize>())
            .sum();
        StorageStats {
            series: self.series.len(),
            samples: self.point_count(),
            sample_bytes,
        }
    }

    fn ranks(&self) -> &[u32] {
        self.ranks.get_or_init(|| {
            let mut order: Vec<u32> = (0..self.series.len() as u32).collect();
            order.sort_unstable_by(|a, b| {
                self.series[*a as usize]
                    .labels
                    .cmp(&self.series[*b as usize].labels)
            });
            let mut ranks = vec![0; order.len()];
            for (rank, id) in order.into_iter().enumerate() {
                ranks[id as usize] = rank as u32;
            }
            ranks
        })
    }

    /// Candidate ids in label order.
    fn sorted_candidates(&self, matchers: &[Matcher]) -> Vec<u32> {
        let mut ids = self.candidates(matchers);
        let ranks = self.ranks();
        ids.sort_unstable_by_key(|id| ranks[*id as usize]);
        ids
    }

    /// Ids of the series that can match: the intersection of the postings of every equality
    /// matcher with a non-empty value, the union over matching values for regex matchers that
    /// cannot match the empty string; every series when no matcher narrows.
    fn candidates(&self, matchers: &[Matcher]) -> Vec<u32> {
        let mut sets: Vec<Vec<u32>> = Vec::new();
        for m in matchers {
            if m.matches("") {
                continue; // also matches series without the label: no narrowing
            }
            let Some(values) = self.postings.get(&m.name) else {
                return Vec::new();
            };
            let set: Vec<u32> = match m.equality_value() {
                Some(v) => values.get(v).cloned().unwrap_or_default(),
                None => {
                    let mut ids: Vec<u32> = values
                        .iter()
                        .filter(|(v, _)| m.matches(v))
                        .flat_map(|(_, ids)| ids.iter().copied())
                        .collect();
                    ids.sort_unstable();
                    ids
                }
            };
            if set.is_empty() {
                return Vec::new();
            }
            sets.push(set);
        }
        sets.sort_by_key(Vec::len);
        let mut iter = sets.into_iter();
        let Some(mut acc) = iter.next() else {
            return (0..self.series.len() as u32).collect();
        };
        for s in iter {
            acc.retain(|id| s.binary_search(id).is_ok());
            if acc.is_empty() {
                break;
            }
        }
        acc
    }
}

impl Storage for MemStorage {
    fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<Series> {
        let mut out = Vec::new();
        for id in self.sorted_candidates(matchers) {
            let s = &self.series[id as usize];
            if !matchers.iter().all(|m| m.matches_labels(&s.labels)) {
                continue;
            }
            let mut points = Vec::new();
            s.points(start, end, &mut points);
            if !points.is_empty() {
                out.push(Series {
                    labels: s.labels.clone(),
                    points,
                });
            }
        }
        out
    }

    fn select_latest(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<(Labels, Point)> {
        let mut out = Vec::new();
        let mut points = Vec::new();
        for id in self.sorted_candidates(matchers) {
            let s = &self.series[id as usize];
            if !matchers.iter().all(|m| m.matches_labels(&s.labels)) {
                continue;
            }
            let Some(newest) = s.chunks.last().map(Chunk::last) else {
                continue;
            };
            // Evaluating at or after the newest sample (the usual case for rules) needs no
            // decoding.
            let latest = if newest.t <= end {
                (newest.t > start).then_some(newest)
            } else {
                points.clear();
                s.points(start, end, &mut points);
                points.last().copied()
            };
            if let Some(p) = latest {
                out.push((s.labels.clone(), p));
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
    fn index_narrows_and_chunks_round_trip() {
        let mut s = MemStorage::new();
        for i in 0..50 {
            let ls = Labels::from_pairs([
                ("__name__", "m".to_owned()),
                ("i", i.to_string()),
                ("even", (i % 2 == 0).to_string()),
            ]);
            for t in 0..300 {
                s.add(&ls, t * 15_000, (t * i) as f64);
            }
        }
        let got = s.select(
            &[
                Matcher::equal("__name__", "m"),
                Matcher::equal("even", "true"),
                re("i", "1."),
            ],
            0,
            i64::MAX,
        );
        let is: Vec<&str> = got.iter().map(|s| s.labels.get("i").unwrap()).collect();
        assert_eq!(is, ["10", "12", "14", "16", "18"]);
        assert_eq!(got[0].points.len(), 299, "(0, max] leaves out t=0");
        assert_eq!(
            got[0].points[298],
            Point {
                t: 299 * 15_000,
                v: 2990.0
            }
        );
        let stats = s.stats();
        assert_eq!((stats.series, stats.samples), (50, 15_000));
        assert!(stats.sample_bytes < 15_000 * 4, "{stats:?}");
        // Out-of-order and replacing points land where they belong.
        let ls = Labels::from_pairs([("__name__", "m"), ("i", "0"), ("even", "true")]);
        s.add(&ls, 7_500, -1.0);
        s.add(&ls, 15_000, -2.0);
        let got = s.select(&[Matcher::equal("i", "0")], 0, 30_000);
        let pts: Vec<(i64, f64)> = got[0].points.iter().map(|p| (p.t, p.v)).collect();
        assert_eq!(pts, [(7_500, -1.0), (15_000, -2.0), (30_000, 0.0)]);
        assert!(
            s.select(&[Matcher::equal("i", "nope")], 0, i64::MAX)
                .is_empty()
        );
        assert!(
            s.select(&[Matcher::equal("absent", "x")], 0, i64::MAX)
                .is_empty()
        );
        assert_eq!(s.select(&[re("i", ".*")], 0, i64::MAX).len(), 50);
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
