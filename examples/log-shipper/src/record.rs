//! What one log line becomes: a [`Record`] with the position it came from, so the registry can
//! advance only past lines the output acknowledged.

use std::sync::Arc;

/// Identity of a tailed file while this process runs: device and inode, plus a generation
/// that changes when the file is truncated or rewritten in place (copytruncate), so
/// acknowledgements for lines of the old content never move the new content's offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Bumped each time the content under this inode starts over.
    pub generation: u32,
}

/// Where a line ended: the byte offset just past its newline in the file `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The file.
    pub key: FileKey,
    /// Offset of the first byte after the line (and its newline).
    pub end: u64,
}

/// Severity of a record, with OpenTelemetry's severity numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `TRACE` (1).
    Trace,
    /// `DEBUG` (5).
    Debug,
    /// `INFO` (9).
    Info,
    /// `WARN` (13).
    Warn,
    /// `ERROR` (17).
    Error,
    /// `FATAL` (21).
    Fatal,
}

impl Level {
    /// The OpenTelemetry `SeverityNumber` of this level's first step.
    pub fn severity_number(self) -> i32 {
        match self {
            Level::Trace => 1,
            Level::Debug => 5,
            Level::Info => 9,
            Level::Warn => 13,
            Level::Error => 17,
            Level::Fatal => 21,
        }
    }

    /// The upper-case name (`severity_text`, ECS `log.level` upper-cased).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }

    /// Reads a level name as loggers write it (`warn`, `WARNING`, `err`, `critical`,
    /// `notice`, `panic`, ...), case-insensitively.
    pub fn from_name(name: &str) -> Option<Level> {
        let n = name.trim();
        let eq = |s: &str| n.eq_ignore_ascii_case(s);
        Some(if eq("trace") {
            Level::Trace
        } else if eq("debug") || eq("dbug") {
            Level::Debug
        } else if eq("info") || eq("information") || eq("notice") {
            Level::Info
        } else if eq("warn") || eq("warning") {
            Level::Warn
        } else if eq("error") || eq("err") || eq("eror") {
            Level::Error
        } else if eq("fatal")
            || eq("critical")
            || eq("crit")
            || eq("panic")
            || eq("emerg")
            || eq("alert")
        {
            Level::Fatal
        } else {
            return None;
        })
    }
}

/// A typed attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Text.
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl Value {
    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Bool(b) => serde_json::Value::Bool(*b),
        }
    }
}

/// An attribute name: the semantic-convention names are static (no allocation per line),
/// JSON field names are the strings the line brought.
pub type AttrKey = std::borrow::Cow<'static, str>;

/// One event: a line as read, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The input's name (from the configuration).
    pub input: Arc<str>,
    /// The `service.name` the input's records are shipped under.
    pub service: Arc<str>,
    /// The path the file had when the line was read.
    pub path: Arc<str>,
    /// Where the line ended, for the registry.
    pub position: Position,
    /// When the file was created, nanoseconds since the Unix epoch, where the file system
    /// keeps a birth time (`statx`): it tells a file recreated on a reused inode from the one
    /// before, whose lines sit at the same offsets.
    pub file_birth_unix_nano: Option<u64>,
    /// When the event happened (from the line), nanoseconds since the Unix epoch.
    pub time_unix_nano: Option<u64>,
    /// When the line was read, nanoseconds since the Unix epoch.
    pub observed_unix_nano: u64,
    /// Severity, when the parser found one.
    pub level: Option<Level>,
    /// The message: the line itself, or a JSON line's `message`.
    pub body: String,
    /// Parsed fields (OpenTelemetry semantic-convention names where one exists).
    pub attributes: Vec<(AttrKey, Value)>,
    /// A JSON line's `trace.id`, decoded.
    pub trace_id: Option<[u8; 16]>,
    /// A JSON line's `span.id`, decoded.
    pub span_id: Option<[u8; 8]>,
    /// Whether the line was longer than the maximum and cut.
    pub truncated: bool,
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
