//! Where samples come from: the [`Storage`] trait and an in-memory implementation.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher as AstMatcher};
use regex::Regex;

use super::fxhash::{FxMap, FxSet};
use super::series::StoredSeries;
use super::value::{Labels, Point, Series};

/// A label matcher with Prometheus 3 semantics: regexes fully anchored and `.` matching
/// newlines; a matcher that matches the empty string also matches series without the label.
///
/// Two matchers are equal (and hash alike) when they have the same name, operator and value
/// as written.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    op: Op,
    /// The value as written (the regex's source for regex matchers).
    value: String,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op.kind() == other.op.kind() && self.value == other.value
    }
}

impl Eq for Matcher {}

impl Hash for Matcher {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.op.kind().hash(state);
        self.value.hash(state);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Eq,
    Ne,
    Re(Regex),
    NotRe(Regex),
}

impl Op {
    fn kind(&self) -> u8 {
        match self {
            Op::Eq => 0,
            Op::Ne => 1,
            Op::Re(_) => 2,
            Op::NotRe(_) => 3,
        }
    }
}

impl Matcher {
    /// `name="value"`.
    pub fn equal(name: &str, value: &str) -> Self {
        Matcher {
            name: name.to_owned(),
            op: Op::Eq,
            value: value.to_owned(),
        }
    }

    /// Compiles a parsed matcher. Regexes are recompiled as `^(?s:re)$`, as Prometheus does.
    pub fn from_ast(m: &AstMatcher) -> Result<Self, String> {
        let op = match &m.op {
            MatchOp::Equal => Op::Eq,
            MatchOp::NotEqual => Op::Ne,
            MatchOp::Re(parsed) => Op::Re(anchored(&m.value, parsed)?),
            MatchOp::NotRe(parsed) => Op::NotRe(anchored(&m.value, parsed)?),
        };
        Ok(Matcher {
            name: m.name.clone(),
            op,
            value: m.value.clone(),
        })
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match &self.op {
            Op::Eq => self.value == value,
            Op::Ne => self.value != value,
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
            Op::Eq => Some(&self.value),
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
    Regex::new(&format!("^(?s:{})$", crate::goregex::go_syntax(inner)))
        .map_err(|e| format!("illegal regex {source:?}: {e}"))
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

    /// Calls `visit` with each series [`Storage::select`] returns and its points, in the
    /// same order, lending the points where the storage holds them contiguously instead of
    /// copying them into a `Vec` per series (what range functions such as `rate` need).
    /// The default visits the result of [`Storage::select`].
    fn visit_windows(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        visit: &mut dyn FnMut(&Labels, &[Point]),
    ) {
        for s in self.select(matchers, start, end) {
            visit(&s.labels, &s.points);
        }
    }
}

/// Series held in memory with an inverted index.
///
/// Samples are kept in Gorilla-compressed chunks of 120 (delta-of-delta timestamps, XOR-ed
/// values), the newest one appended in place; each series also keeps its newest samples
/// uncompressed (those within [`MemStorage::uncompressed_tail`], 10 minutes by default), so
/// the windows rules read, which end at the newest sample, are lent (or copied by
/// [`Storage::select`]) rather than decoded. Label names and values are interned: series share
/// one string per distinct name or value.
/// Which series a set of matchers selects is cached until a new series arrives, so rules
/// evaluated again and again look nothing up in the index. Used by rule evaluation,
/// `axi-alert query` and the promqltest runner.
#[derive(Debug, Clone)]
pub struct MemStorage {
    series: Vec<StoredSeries>,
    by_labels: HashMap<Labels, u32>,
    /// Label name -> value -> series ids (ascending).
    postings: HashMap<String, HashMap<String, Vec<u32>>>,
    /// Each series' position in label order, computed on demand after new series arrive:
    /// results come sorted by labels, as Prometheus returns them, without comparing labels.
    ranks: OnceLock<Vec<u32>>,
    /// The series each matcher set selects, in label order; emptied when a series arrives.
    selections: SelectionCache,
    /// The span of each series' uncompressed tail (ms).
    tail_ms: i64,
    /// Every label name and value of the stored series, once: series share them, so the
    /// strings a query hashes and compares (`job`, `instance`, ...) stay in cache, and equal
    /// ones compare by pointer.
    strings: FxSet<Arc<str>>,
}

/// The default span of the uncompressed tail: 5-minute windows (the usual `rate` range) and
/// 10-minute ones, with room to spare.
const DEFAULT_TAIL: Duration = Duration::from_secs(10 * 60);

/// Matcher sets cached at most; when full the cache is emptied and starts over.
const SELECTION_CACHE_CAPACITY: usize = 4096;

/// Series ids cached at most over all sets (4 bytes each: 16 MiB), so that many distinct
/// queries over many series (from the query API, say) cannot grow the cache without bound.
const SELECTION_CACHE_IDS: usize = 1 << 22;

/// Matcher sets and the ids of the series they select (sorted by label rank).
#[derive(Debug, Default)]
struct SelectionCache(Mutex<FxMap<Vec<Matcher>, Arc<[u32]>>>);

impl SelectionCache {
    fn lock(&self) -> MutexGuard<'_, FxMap<Vec<Matcher>, Arc<[u32]>>> {
        // A poisoned cache is only a cache: keep using it (entries are inserted whole).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn clear(&mut self) {
        self.0.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Clone for SelectionCache {
    /// An empty cache: a copy fills its own.
    fn clone(&self) -> Self {
        SelectionCache::default()
    }
}

/// What a [`MemStorage`] holds and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageStats {
    /// Series.
    pub series: usize,
    /// Samples over all series.
    pub samples: usize,
    /// Bytes of sample data: compressed chunks (allocated capacity) and their headers, and
    /// the uncompressed tails (allocated capacity).
    pub sample_bytes: usize,
}

impl Default for MemStorage {
    fn default() -> Self {
        MemStorage {
            series: Vec::new(),
            by_labels: HashMap::new(),
            postings: HashMap::new(),
            ranks: OnceLock::new(),
            selections: SelectionCache::default(),
            tail_ms: DEFAULT_TAIL.as_millis() as i64,
            strings: FxSet::default(),
        }
    }
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How far back from its newest sample each series also keeps its samples uncompressed
    /// (16 bytes each, besides the 1-2 bytes they take compressed). Windows up to this long
    /// that end at or after a series' newest sample are read without decoding. Applies to
    /// samples added afterwards. Defaults to 10 minutes; zero keeps only the newest sample.
    pub fn uncompressed_tail(mut self, span: Duration) -> Self {
        self.tail_ms = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Adds one point. Points of a series normally arrive in time order; an older point is
    /// inserted (rebuilding that series' chunks), and a point at an existing timestamp
    /// replaces it.
    pub fn add(&mut self, labels: &Labels, t: i64, v: f64) {
        let id = match self.by_labels.get(labels) {
            Some(&id) => id,
            None => self.insert_series(labels.clone()),
        };
        self.series[id as usize].append(t, v, self.tail_ms);
    }

    /// Adds one point only when it is newer than the series' newest, as Prometheus's head
    /// appends (an out-of-order or repeated point is dropped); whether it was added.
    pub(crate) fn add_if_newer(&mut self, labels: &Labels, t: i64, v: f64) -> bool {
        let id = match self.by_labels.get(labels) {
            Some(&id) => id,
            None => self.insert_series(labels.clone()),
        };
        let series = &mut self.series[id as usize];
        if series.newest().is_some_and(|p| p.t >= t) {
            return false;
        }
        series.append(t, v, self.tail_ms);
        true
    }

    /// The newest point of the series with exactly `labels`.
    pub(crate) fn newest(&self, labels: &Labels) -> Option<super::value::Point> {
        let id = *self.by_labels.get(labels)?;
        self.series[id as usize].newest()
    }

    fn insert_series(&mut self, labels: Labels) -> u32 {
        let strings = &mut self.strings;
        let labels = labels.interned(|s| match strings.get(s) {
            Some(shared) => shared.clone(),
            None => {
                strings.insert(s.clone());
                s.clone()
            }
        });
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
        self.selections.clear();
        self.series.push(StoredSeries::new(labels));
        id
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        *self = MemStorage {
            tail_ms: self.tail_ms,
            ..Self::default()
        };
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
            if s.chunks.first().is_some_and(|c| c.max_t < t) {
                emptied |= !s.drop_before(t);
            }
        }
        if emptied {
            let keep: Vec<StoredSeries> = std::mem::take(&mut self.series)
                .into_iter()
                .filter(|s| !s.chunks.is_empty())
                .collect();
            self.clear();
            for s in keep {
                let labels = s.labels.clone();
                let id = self.insert_series(labels);
                self.series[id as usize] = s;
            }
        }
    }

    /// Series, samples and the bytes their samples take.
    pub fn stats(&self) -> StorageStats {
        StorageStats {
            series: self.series.len(),
            samples: self.point_count(),
            sample_bytes: self.series.iter().map(StoredSeries::sample_bytes).sum(),
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

    /// Ids of the series matching all `matchers`, in label order; from the cache when the
    /// same matchers were seen since the last new series.
    fn selected(&self, matchers: &[Matcher]) -> Arc<[u32]> {
        if let Some(ids) = self.selections.lock().get(matchers) {
            return ids.clone();
        }
        let mut ids = self.candidates(matchers);
        ids.retain(|id| {
            let ls = &self.series[*id as usize].labels;
            matchers.iter().all(|m| m.matches_labels(ls))
        });
        let ranks = self.ranks();
        ids.sort_unstable_by_key(|id| ranks[*id as usize]);
        let ids: Arc<[u32]> = ids.into();
        if ids.len() > SELECTION_CACHE_IDS {
            return ids;
        }
        let mut cache = self.selections.lock();
        let held: usize = cache.values().map(|v| v.len()).sum();
        if cache.len() >= SELECTION_CACHE_CAPACITY || held + ids.len() > SELECTION_CACHE_IDS {
            cache.clear();
        }
        cache.insert(matchers.to_vec(), ids.clone());
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
        let ids = self.selected(matchers);
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids.iter() {
            let s = &self.series[id as usize];
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

    /// Windows within a series' uncompressed tail are lent as they are; others are decoded
    /// into one buffer reused for every series.
    fn visit_windows(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
        visit: &mut dyn FnMut(&Labels, &[Point]),
    ) {
        let ids = self.selected(matchers);
        let mut scratch = Vec::new();
        for &id in ids.iter() {
            let s = &self.series[id as usize];
            let points = s.window(start, end, &mut scratch);
            if !points.is_empty() {
                visit(&s.labels, points);
            }
        }
    }

    fn select_latest(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<(Labels, Point)> {
        let ids = self.selected(matchers);
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids.iter() {
            let s = &self.series[id as usize];
            if let Some(p) = s.latest(start, end) {
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
    fn perl_classes_are_ascii_as_in_prometheus() {
        assert!(re("a", r"\d+").matches("42"));
        assert!(!re("a", r"\d+").matches("٤٢"));
        assert!(!re("a", r"\w+").matches("café"));
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
        // About 3 bytes a sample compressed, and 10 minutes (41 samples at 15 s) uncompressed.
        assert!(stats.sample_bytes < 15_000 * 3 + 50 * 50 * 16, "{stats:?}");
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
    fn visited_windows_equal_selected_ones() {
        // 10-minute tails over 2 h at 15 s: windows in the tail, across the chunk/tail
        // boundary, in the chunks only, and empty; one series ends in a staleness marker.
        let mut s = MemStorage::new();
        for i in 0..4 {
            let ls = Labels::from_pairs([("__name__", "m".to_owned()), ("i", i.to_string())]);
            for t in 0..480 {
                let v = if i == 3 && t == 479 {
                    crate::promql::value::stale_nan()
                } else {
                    (t * (i + 1)) as f64
                };
                s.add(&ls, t * 15_000, v);
            }
        }
        let last = 479 * 15_000;
        let m = [Matcher::equal("__name__", "m")];
        for (start, end) in [
            (last - 300_000, last),
            (last - 600_000, last),
            (last - 900_000, last),
            (last - 3_600_000, last - 1_800_000),
            (0, 1),
            (last, last + 60_000),
        ] {
            // Debug forms: a staleness marker is a NaN, unequal to itself.
            let want = format!("{:?}", s.select(&m, start, end));
            assert_eq!(visited(&s, &m, start, end), want, "({start}, {end}]");
            let default = visited(&SelectOnly(&s), &m, start, end);
            assert_eq!(default, want, "default, ({start}, {end}]");
        }
    }

    /// A storage with only `select`, so `visit_windows` is the trait's default.
    struct SelectOnly<'a>(&'a MemStorage);

    impl Storage for SelectOnly<'_> {
        fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<Series> {
            self.0.select(matchers, start, end)
        }
    }

    /// What `visit_windows` visits, as series in their Debug form.
    fn visited(s: &dyn Storage, m: &[Matcher], start: i64, end: i64) -> String {
        let mut got = Vec::new();
        s.visit_windows(m, start, end, &mut |labels, points| {
            got.push(Series {
                labels: labels.clone(),
                points: points.to_vec(),
            });
        });
        format!("{got:?}")
    }

    #[test]
    fn label_strings_are_shared_between_series() {
        let mut s = MemStorage::new();
        for i in ["1", "2"] {
            s.add(&Labels::from_pairs([("job", "api"), ("i", i)]), 0, 1.0);
        }
        let ptrs = |id: usize| -> Vec<*const u8> {
            s.series[id]
                .labels
                .iter()
                .flat_map(|(k, v)| [k.as_ptr(), v.as_ptr()])
                .collect()
        };
        let (a, b) = (ptrs(0), ptrs(1));
        assert_eq!(a[0], b[0], "the name `i`");
        assert_ne!(a[1], b[1], "the values of `i` differ");
        assert_eq!(a[2..], b[2..], "`job` and `api`");
        assert_eq!(s.select(&[Matcher::equal("job", "api")], -1, 0).len(), 2);
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
