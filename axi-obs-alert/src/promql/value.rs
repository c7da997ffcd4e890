//! The values PromQL works on: label sets, samples, series, and the four result types.

use std::fmt;
use std::sync::Arc;

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
/// so a query touching 10,000 series does not copy 10,000 label sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Arc<Vec<(Arc<str>, Arc<str>)>>);

impl Labels {
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
        self.0.binary_search_by(|(k, _)| (**k).cmp(name))
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).ok().map(|i| &*self.0[i].1)
    }

    /// The metric name, if set.
    pub fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: String, value: String) {
        match self.position(&name) {
            Ok(i) if value.is_empty() => {
                Arc::make_mut(&mut self.0).remove(i);
            }
            Ok(i) => {
                if *self.0[i].1 != *value {
                    Arc::make_mut(&mut self.0)[i].1 = value.into();
                }
            }
            Err(_) if value.is_empty() => {}
            Err(i) => Arc::make_mut(&mut self.0).insert(i, (name.into(), value.into())),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.position(name) {
            Arc::make_mut(&mut self.0).remove(i);
        }
    }

    /// The same set without `__name__`.
    pub fn without_name(&self) -> Labels {
        if self.position(METRIC_NAME).is_err() {
            return self.clone();
        }
        self.filtered(|k| k != METRIC_NAME)
    }

    fn filtered(&self, keep: impl Fn(&str) -> bool) -> Labels {
        Labels(Arc::new(
            self.0.iter().filter(|(k, _)| keep(k)).cloned().collect(),
        ))
    }

    /// Only the labels named in `names` (`on`, `by`).
    pub fn keep(&self, names: &[String]) -> Labels {
        self.filtered(|k| names.iter().any(|n| n == k))
    }

    /// All labels except those named in `names` and `__name__` (`ignoring`, `without`).
    pub fn drop_names(&self, names: &[String]) -> Labels {
        self.filtered(|k| k != METRIC_NAME && !names.iter().any(|n| n == k))
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
