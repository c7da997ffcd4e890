//! Multiline joining by pattern, as Filebeat's `multiline.type: pattern` does: lines that are
//! continuations (the pattern matches, or with `negate` does not) are joined with `\n` to the
//! line before them (`match: after`) or to the line after them (`match: before`).
//!
//! | pattern | negate | match | joins |
//! |---|---|---|---|
//! | `^\s` | false | after | indented lines (stack frames) to the line before |
//! | `^\[` | true | after | lines not starting with `[` to the line before |
//! | `\\$` | false | before | lines ending in `\` to the line after |
//!
//! An event holds at most `max_lines` lines (later continuation lines are skipped and the
//! event is flagged truncated) and `max_line_bytes` bytes. A pending event is sent when the
//! next event starts, or `timeout` after its last line arrived. A joined event ends where its
//! last line ends, so the registry, which moves only past acknowledged events, never stops in
//! the middle of an event: after a restart the whole event is read again.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use super::lines::Line;

/// Which way continuation lines are joined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    /// To the line before them (stack traces).
    #[default]
    After,
    /// To the line after them (line-continuation markers).
    Before,
}

/// How an input's lines are joined.
///
/// ```
/// use log_shipper::tailer::{Match, MultilineSpec};
///
/// let spec = MultilineSpec::new(r"^\s", false, Match::After).unwrap();
/// assert!(spec.is_continuation(b"    at com.example.Main.run(Main.java:12)"));
/// assert!(!spec.is_continuation(b"2026-11-26 ERROR boom"));
/// ```
#[derive(Clone, Debug)]
pub struct MultilineSpec {
    pattern: regex::bytes::Regex,
    negate: bool,
    r#match: Match,
    max_lines: NonZeroUsize,
    timeout: Duration,
}

impl MultilineSpec {
    /// Joins by `pattern` (Rust `regex` syntax, matched against each line's bytes). Defaults
    /// to at most 500 lines per event and a 5 s timeout.
    ///
    /// # Errors
    ///
    /// When the pattern does not compile.
    pub fn new(pattern: &str, negate: bool, r#match: Match) -> Result<Self, regex::Error> {
        Ok(Self {
            pattern: regex::bytes::Regex::new(pattern)?,
            negate,
            r#match,
            max_lines: NonZeroUsize::new(500).unwrap_or(NonZeroUsize::MIN),
            timeout: Duration::from_secs(5),
        })
    }

    /// At most this many lines per event; further continuation lines are skipped. Defaults
    /// to 500.
    #[must_use]
    pub fn max_lines(mut self, max_lines: NonZeroUsize) -> Self {
        self.max_lines = max_lines;
        self
    }

    /// A pending event is sent this long after its last line arrived. Defaults to 5 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether `line` continues an event (the pattern matches, `negate` inverts).
    pub fn is_continuation(&self, line: &[u8]) -> bool {
        self.pattern.is_match(line) != self.negate
    }
}

/// The joining state of one file.
#[derive(Debug)]
pub(crate) struct Joiner {
    spec: MultilineSpec,
    max_bytes: usize,
    buf: Vec<u8>,
    lines: usize,
    end: u64,
    truncated: bool,
    last: Option<Instant>,
}

impl Joiner {
    pub(crate) fn new(spec: MultilineSpec, max_bytes: usize) -> Self {
        Self {
            spec,
            max_bytes,
            buf: Vec::new(),
            lines: 0,
            end: 0,
            truncated: false,
            last: None,
        }
    }

    /// Takes a line read at `now`; returns the event it completed, if any.
    pub(crate) fn push(&mut self, line: Line, now: Instant) -> Option<Line> {
        let continuation = self.spec.is_continuation(&line.bytes);
        self.push_as(line, continuation, now)
    }

    /// Whether `text` is a continuation line by the pattern.
    pub(crate) fn is_continuation(&self, text: &[u8]) -> bool {
        self.spec.is_continuation(text)
    }

    /// As [`push`](Self::push), with whether the line is a continuation decided by the
    /// caller (from its text decoded to UTF-8, while the event keeps the file's bytes).
    pub(crate) fn push_as(&mut self, line: Line, continuation: bool, now: Instant) -> Option<Line> {
        match self.spec.r#match {
            Match::After => {
                if continuation && self.lines > 0 {
                    self.add(line, now);
                    None
                } else {
                    let done = self.take();
                    self.add(line, now);
                    done
                }
            }
            Match::Before => {
                self.add(line, now);
                if continuation { None } else { self.take() }
            }
        }
    }

    /// The pending event, if its last line arrived `timeout` or longer before `now`.
    pub(crate) fn flush_stale(&mut self, now: Instant) -> Option<Line> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) >= self.spec.timeout => self.take(),
            _ => None,
        }
    }

    /// The pending event, if any, whatever its age.
    pub(crate) fn take(&mut self) -> Option<Line> {
        if self.lines == 0 {
            return None;
        }
        self.lines = 0;
        self.last = None;
        Some(Line {
            bytes: std::mem::take(&mut self.buf),
            end: self.end,
            truncated: std::mem::take(&mut self.truncated),
        })
    }

    fn add(&mut self, line: Line, now: Instant) {
        self.end = line.end;
        self.last = Some(now);
        self.truncated |= line.truncated;
        if self.lines >= self.spec.max_lines.get() {
            self.truncated = true;
            return;
        }
        let sep = usize::from(self.lines > 0);
        let room = self.max_bytes.saturating_sub(self.buf.len() + sep);
        if self.lines > 0 && self.buf.len() < self.max_bytes {
            self.buf.push(b'\n');
        }
        if line.bytes.len() > room {
            self.truncated = true;
        }
        self.buf
            .extend_from_slice(&line.bytes[..line.bytes.len().min(room)]);
        self.lines += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, end: u64) -> Line {
        Line {
            bytes: text.as_bytes().to_vec(),
            end,
            truncated: false,
        }
    }

    fn feed(j: &mut Joiner, lines: &[&str]) -> Vec<(String, u64, bool)> {
        let now = Instant::now();
        let mut end = 0;
        let mut out = Vec::new();
        for l in lines {
            end += l.len() as u64 + 1;
            if let Some(e) = j.push(line(l, end), now) {
                out.push((String::from_utf8(e.bytes).unwrap(), e.end, e.truncated));
            }
        }
        out
    }

    #[test]
    fn indented_lines_join_the_line_before() {
        let mut j = Joiner::new(
            MultilineSpec::new(r"^\s", false, Match::After).unwrap(),
            1 << 20,
        );
        let out = feed(
            &mut j,
            &[
                "ERROR boom",
                "  at a()",
                "  at b()",
                "INFO next",
                "INFO last",
            ],
        );
        assert_eq!(
            out,
            [
                ("ERROR boom\n  at a()\n  at b()".into(), 29, false),
                ("INFO next".into(), 39, false),
            ]
        );
        // The last event waits for the next line or the timeout.
        assert_eq!(j.take().map(|l| l.end), Some(49));
        assert!(j.take().is_none());
    }

    #[test]
    fn negate_joins_lines_that_do_not_match() {
        let mut j = Joiner::new(
            MultilineSpec::new(r"^\[", true, Match::After).unwrap(),
            1 << 20,
        );
        let out = feed(&mut j, &["[1] a", "b", "c", "[2] d"]);
        assert_eq!(out, [("[1] a\nb\nc".into(), 10, false)]);
    }

    #[test]
    fn match_before_joins_to_the_line_after() {
        let mut j = Joiner::new(
            MultilineSpec::new(r"\\$", false, Match::Before).unwrap(),
            1 << 20,
        );
        let out = feed(&mut j, &["a \\", "b \\", "c", "d"]);
        assert_eq!(
            out,
            [("a \\\nb \\\nc".into(), 10, false), ("d".into(), 12, false)]
        );
    }

    #[test]
    fn max_lines_and_max_bytes_cut_the_event() {
        let spec = MultilineSpec::new(r"^\s", false, Match::After)
            .unwrap()
            .max_lines(NonZeroUsize::new(2).unwrap());
        let mut j = Joiner::new(spec.clone(), 1 << 20);
        let out = feed(&mut j, &["E", " 1", " 2", " 3", "next"]);
        assert_eq!(out, [("E\n 1".into(), 11, true)]);

        let mut j = Joiner::new(spec.max_lines(NonZeroUsize::new(100).unwrap()), 8);
        let out = feed(&mut j, &["Error", " frame", "next"]);
        assert_eq!(out, [("Error\n f".into(), 13, true)]);
    }

    #[test]
    fn a_pending_event_leaves_after_the_timeout() {
        let spec = MultilineSpec::new(r"^\s", false, Match::After)
            .unwrap()
            .timeout(Duration::from_secs(5));
        let mut j = Joiner::new(spec, 1 << 20);
        let t0 = Instant::now();
        assert!(j.push(line("E", 2), t0).is_none());
        assert!(j.push(line(" 1", 5), t0 + Duration::from_secs(3)).is_none());
        // Measured from the last line.
        assert!(j.flush_stale(t0 + Duration::from_secs(7)).is_none());
        let e = j.flush_stale(t0 + Duration::from_secs(8)).unwrap();
        assert_eq!((e.bytes, e.end), (b"E\n 1".to_vec(), 5));
        assert!(j.flush_stale(t0 + Duration::from_secs(60)).is_none());
    }
}
