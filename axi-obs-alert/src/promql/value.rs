//! The values PromQL works on: label sets, samples, series, and the four result types.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::fxhash::FxHasher;

/// The label that holds a metric's name.
pub const METRIC_NAME: &str = "__name__";

/// The bit pattern Prometheus writes as a staleness marker (a NaN distinct from arithmetic NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a float.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is a staleness marker (not any NaN: only the marker's bit pattern).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A label set, kept sorted by name with unique names and no empty values.
///
/// Cloning is cheap: the set is shared (reference counted), and so are its names and values,
/// so a query touching 10,000 series does not copy 10,000 label sets. Every clone also shares
/// the set's hash and its copy without `__name__`, each computed once on first use: a stored
/// series' labels are hashed and stripped of their name once, not at every evaluation.
#[derive(Clone)]
pub struct Labels(Arc<Inner>);

impl Default for Labels {
    /// The empty set, shared: making one allocates nothing.
    fn default() -> Self {
        static EMPTY: OnceLock<Labels> = OnceLock::new();
        EMPTY
            .get_or_init(|| Labels(Arc::new(Inner::default())))
            .clone()
    }
}

#[derive(Default)]
struct Inner {
    pairs: Vec<(Arc<str>, Arc<str>)>,
    /// The Fx hash of `pairs`; 0 until computed.
    hash: AtomicU64,
    /// The same set without `__name__` once asked for; `None` when it has no name.
    nameless: OnceLock<Option<Labels>>,
}

impl Clone for Inner {
    /// The pairs only: a copy is made to be changed, which invalidates the caches.
    fn clone(&self) -> Self {
        Inner {
            pairs: self.pairs.clone(),
            ..Inner::default()
        }
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.pairs == other.0.pairs
    }
}

impl Eq for Labels {}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.pairs.cmp(&other.0.pairs)
    }
}

impl Hash for Labels {
    /// Writes the set's (cached) Fx hash: equal sets write equal words.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.fx_hash());
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Labels").field(&self.0.pairs).finish()
    }
}

impl Labels {
    fn from_vec(pairs: Vec<(Arc<str>, Arc<str>)>) -> Self {
        Labels(Arc::new(Inner {
            pairs,
            ..Inner::default()
        }))
    }

    /// The pairs for changing: unshared first if need be, cached hash and nameless copy
    /// dropped.
    fn pairs_mut(&mut self) -> &mut Vec<(Arc<str>, Arc<str>)> {
        let inner = Arc::make_mut(&mut self.0);
        *inner.hash.get_mut() = 0;
        inner.nameless = OnceLock::new();
        &mut inner.pairs
    }

    /// The set's Fx hash, computed once.
    pub(crate) fn fx_hash(&self) -> u64 {
        let cached = self.0.hash.load(Ordering::Relaxed);
        if cached != 0 {
            return cached;
        }
        let mut h = FxHasher::default();
        self.0.pairs.hash(&mut h);
        // 0 means "not computed".
        let hash = h.finish().max(1);
        self.0.hash.store(hash, Ordering::Relaxed);
        hash
    }

    /// The empty set.
    pub fn new() -> Self {
        Labels::default()
    }

    /// Builds a set from pairs in any order; empty values are dropped and a later pair wins
    /// over an earlier one with the same name.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut ls = Labels::new();
        for (k, v) in pairs {
            ls.set(k.into(), v.into());
        }
        ls
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.pairs.binary_search_by(|(k, _)| (**k).cmp(name))
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).ok().map(|i| &*self.0.pairs[i].1)
    }

    /// The metric name, if set.
    pub fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: String, value: String) {
        match self.position(&name) {
            Ok(i) if value.is_empty() => {
                self.pairs_mut().remove(i);
            }
            Ok(i) => {
                if *self.0.pairs[i].1 != *value {
                    self.pairs_mut()[i].1 = value.into();
                }
            }
            Err(_) if value.is_empty() => {}
            Err(i) => self.pairs_mut().insert(i, (name.into(), value.into())),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        if name == METRIC_NAME {
            *self = self.without_name();
        } else if let Ok(i) = self.position(name) {
            self.pairs_mut().remove(i);
        }
    }

    /// The same set without `__name__`.
    pub fn without_name(&self) -> Labels {
        let nameless = self.0.nameless.get_or_init(|| {
            self.position(METRIC_NAME)
                .is_ok()
                .then(|| self.filtered(|k| k != METRIC_NAME))
        });
        nameless.as_ref().unwrap_or(self).clone()
    }

    fn filtered(&self, keep: impl Fn(&str) -> bool) -> Labels {
        Labels::from_vec(
            self.0
                .pairs
                .iter()
                .filter(|(k, _)| keep(k))
                .cloned()
                .collect(),
        )
    }

    /// Only the labels named in `names` (`on`, `by`).
    pub fn keep(&self, names: &[String]) -> Labels {
        self.filtered(|k| names.iter().any(|n| n == k))
    }

    /// All labels except those named in `names` and `__name__` (`ignoring`, `without`).
    pub fn drop_names(&self, names: &[String]) -> Labels {
        self.filtered(|k| k != METRIC_NAME && !names.iter().any(|n| n == k))
    }

    /// The same set with every name and value taken from `intern`, so that equal strings
    /// across sets share one allocation (and compare by pointer first).
    pub(crate) fn interned(&self, mut intern: impl FnMut(&Arc<str>) -> Arc<str>) -> Labels {
        Labels::from_vec(
            self.0
                .pairs
                .iter()
                .map(|(k, v)| (intern(k), intern(v)))
                .collect(),
        )
    }

    /// The pairs `projection` keeps.
    fn projected<'s>(
        &'s self,
        projection: &'s Projection<'_>,
    ) -> impl Iterator<Item = &'s (Arc<str>, Arc<str>)> + 's {
        self.0.pairs.iter().filter(|(k, _)| projection.keeps(k))
    }

    /// A hash of the pairs `projection` keeps, without building that set: equal for sets
    /// whose projections are equal.
    pub(crate) fn projected_hash(&self, projection: &Projection<'_>) -> u64 {
        let mut h = FxHasher::default();
        for pair in self.projected(projection) {
            pair.hash(&mut h);
        }
        h.finish()
    }

    /// Whether the pairs `projection` keeps are exactly `other`'s.
    pub(crate) fn projects_to(&self, projection: &Projection<'_>, other: &Labels) -> bool {
        self.projected(projection).eq(other.0.pairs.iter())
    }

    /// The set of the pairs `projection` keeps.
    pub(crate) fn project(&self, projection: &Projection<'_>) -> Labels {
        match projection {
            Projection::Keep(names) => self.keep(names),
            Projection::Drop(names) => self.drop_names(names),
        }
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.pairs.iter().map(|(k, v)| (&**k, &**v))
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.0.pairs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.pairs.is_empty()
    }
}

/// Which labels of a set make its grouping or matching key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Projection<'n> {
    /// Only these (`by`, `on`).
    Keep(&'n [String]),
    /// All but these and `__name__` (`without`, `ignoring`).
    Drop(&'n [String]),
}

impl Projection<'_> {
    fn keeps(&self, name: &str) -> bool {
        match self {
            Projection::Keep(names) => names.iter().any(|n| n == name),
            Projection::Drop(names) => name != METRIC_NAME && !names.iter().any(|n| n == name),
        }
    }
}

impl Labels {
    /// Go's `labels.Labels.String()` form, used in Prometheus's error messages:
    /// `{__name__="m", a="1"}`.
    pub fn go_string(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(k);
            out.push('=');
            out.push_str(&format!("{v:?}"));
        }
        out.push('}');
        out
    }
}

impl fmt::Display for Labels {
    /// Prometheus's form: `name{a="1", b="2"}`, `{}` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.name() {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// One point in time: a timestamp in milliseconds since the Unix epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels.
    pub labels: Labels,
    /// The timestamp (the evaluation time, except for `timestamp(selector)`).
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// One element of a range vector (matrix): a series and its points in time order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// Points, oldest first.
    pub points: Vec<Point>,
}

/// The result of evaluating an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A single number at a time.
    Scalar {
        /// The evaluation time (ms).
        t: i64,
        /// The value.
        v: f64,
    },
    /// A string literal.
    String(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector, or the result of a range query.
    Matrix(Vec<Series>),
}

impl Value {
    /// The type name Prometheus uses in API answers and error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}
