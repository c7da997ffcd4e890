//! Dynamic values flowing through template execution, modelled on the Go values Prometheus uses.

use std::collections::BTreeMap;

/// One sample of a query result, as Prometheus's templates see it (`*template.sample`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuerySample {
    /// The series labels, including `__name__` when present.
    pub labels: BTreeMap<String, String>,
    /// The sample value.
    pub value: f64,
}

/// A UTC instant with nanosecond precision (Go's `time.Time`, always in UTC here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct GoTime {
    /// Seconds since the Unix epoch.
    pub secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

impl GoTime {
    /// The instant `ns` nanoseconds after the epoch.
    pub fn from_unix_nanos(ns: i128) -> GoTime {
        let secs = ns.div_euclid(1_000_000_000);
        let nanos = ns.rem_euclid(1_000_000_000);
        GoTime {
            secs: secs.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            nanos: nanos as u32,
        }
    }

    /// Nanoseconds since the epoch.
    pub fn unix_nanos(&self) -> i128 {
        self.secs as i128 * 1_000_000_000 + self.nanos as i128
    }
}

/// A named Go struct value (for example the alert template data).
#[derive(Debug, Clone, PartialEq)]
pub struct StructValue {
    /// The Go type name used in error messages, e.g. `struct { Labels map[string]string; ... }`.
    pub type_name: String,
    /// Exported fields, in declaration order.
    pub fields: Vec<(String, Value)>,
}

/// A Go-like dynamic value: the dot, variables, function arguments and results.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// An absent value (Go's nil interface / invalid `reflect.Value`), printed as `<no value>`.
    #[default]
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int` / `int64`.
    Int(i64),
    /// `uint` / `uint64`.
    Uint(u64),
    /// `float64`.
    Float(f64),
    /// `string`.
    String(String),
    /// A slice (`[]interface{}` and friends).
    List(Vec<Value>),
    /// `map[string]string`: a missing key yields `""` under `missingkey=zero`.
    StrMap(BTreeMap<String, String>),
    /// Alertmanager's `template.KV` (a `map[string]string` with the methods `SortedPairs`,
    /// `Remove`, `Names` and `Values`): labels and annotations in notification templates.
    Kv(BTreeMap<String, String>),
    /// `map[string]interface{}`: a missing key yields no value.
    Map(BTreeMap<String, Value>),
    /// `*template.sample`: fields `Labels` and `Value`.
    Sample(Box<QuerySample>),
    /// `template.queryResult`, the result of `query`.
    QueryResult(Vec<QuerySample>),
    /// `time.Time` (UTC).
    Time(GoTime),
    /// `time.Duration` in nanoseconds.
    Duration(i64),
    /// A struct with exported fields.
    Struct(Box<StructValue>),
}

/// The dot passed to [`super::Template::execute`].
pub type Data = Value;

impl Value {
    /// The Go type name, as `%T` and error messages print it.
    pub fn type_name(&self) -> String {
        match self {
            Value::Nil => "<nil>".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Uint(_) => "uint".into(),
            Value::Float(_) => "float64".into(),
            Value::String(_) => "string".into(),
            Value::List(_) => "[]interface {}".into(),
            Value::StrMap(_) => "map[string]string".into(),
            Value::Kv(_) => "template.KV".into(),
            Value::Map(_) => "map[string]interface {}".into(),
            Value::Sample(_) => "*template.sample".into(),
            Value::QueryResult(_) => "template.queryResult".into(),
            Value::Time(_) => "time.Time".into(),
            Value::Duration(_) => "time.Duration".into(),
            Value::Struct(s) => s.type_name.clone(),
        }
    }

    /// Go's truth of a value (`if`, `with`, `and`, `or`, `not`).
    pub fn is_true(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Uint(u) => *u != 0,
            Value::Float(f) => *f != 0.0,
            Value::String(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::StrMap(m) | Value::Kv(m) => !m.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::QueryResult(q) => !q.is_empty(),
            Value::Duration(d) => *d != 0,
            Value::Sample(_) | Value::Time(_) | Value::Struct(_) => true,
        }
    }

    /// A `map[string]string` value.
    pub fn labels(m: &BTreeMap<String, String>) -> Value {
        Value::StrMap(m.clone())
    }

    /// An Alertmanager `template.KV` value.
    pub fn kv(m: &BTreeMap<String, String>) -> Value {
        Value::Kv(m.clone())
    }

    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::String(s.to_string())
    }
}
