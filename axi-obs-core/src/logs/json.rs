//! JSON lines with Elastic Common Schema (ECS) field names.
//!
//! One object per event:
//!
//! ```json
//! {"@timestamp":"2026-11-25T20:16:03.123456Z","log.level":"INFO","message":"order placed",
//!  "log.logger":"shop::orders","service.name":"shop","service.version":"1.4.0",
//!  "trace.id":"4bf92f3577b34da6a3ce929d0e0e4736","span.id":"00f067aa0ba902b7","order_id":42}
//! ```
//!
//! * `@timestamp` is RFC 3339 UTC with microseconds; `log.level` is `TRACE` … `ERROR`.
//! * `trace.id` / `span.id` are present on every line emitted inside a span that the
//!   OpenTelemetry layer knows about (sampled or not).
//! * Event fields are flattened at the top level; fields of the enclosing spans follow (the
//!   innermost span wins, the event's own fields win over all). A field named `error` is written
//!   as `error.message` (ECS reserves `error` for an object); a field whose name collides with one
//!   of the fixed keys above is written as `fields.<name>`. Span fields named `otel.*`
//!   (tracing-opentelemetry's span name, kind and status) are not repeated on log lines.
//!
//! * [`ContextFields`] attached to the current OpenTelemetry context (a middleware's request
//!   id, say) are added to every line written while that context is current, after the event's
//!   and the spans' own fields.
//!
//! Filebeat's `ndjson` parser (or Elasticsearch directly) ingests these lines with no pipeline.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::TraceContextExt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::keys::{CallsiteKeys, callsite_keys, push_field_key, push_key};
use crate::hex::push_hex;

/// A [`Layer`] that writes one ECS JSON object per event to `W`.
#[derive(Debug)]
pub struct JsonLayer<W> {
    make_writer: W,
    /// Pre-rendered `,"service.name":"…",…` fragment.
    service: String,
}

impl<W> JsonLayer<W>
where
    W: for<'a> MakeWriter<'a> + 'static,
{
    /// A layer writing to `make_writer`, stamping each line with the given service fields
    /// (pairs of ECS key and value, e.g. `("service.name", "shop")`).
    pub fn new<'k>(make_writer: W, service: impl IntoIterator<Item = (&'k str, &'k str)>) -> Self {
        let mut fragment = String::new();
        for (k, v) in service {
            fragment.push(',');
            push_json_str(&mut fragment, k);
            fragment.push(':');
            push_json_str(&mut fragment, v);
        }
        Self {
            make_writer,
            service: fragment,
        }
    }
}

/// String fields carried by an OpenTelemetry [`Context`](opentelemetry::Context), written on
/// every JSON log line emitted while that context is current.
///
/// Middleware that does not create a `tracing` span per request (the axum layer's server span
/// is an OpenTelemetry span) attaches its request id this way:
///
/// ```
/// use axi_obs_core::logs::ContextFields;
/// let cx = opentelemetry::Context::current()
///     .with_value(ContextFields::new().with("http.request.id", "r-42"));
/// let _guard = cx.attach();
/// // every log line written here carries "http.request.id":"r-42"
/// ```
///
/// The context keeps its values behind a shared pointer already, so these fields are stored
/// inline (up to two without an allocation), and a header value (a request id, say) is shared
/// rather than copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextFields(smallvec::SmallVec<[(&'static str, FieldValue); 2]>);

/// A field value: owned text, or a shared header value that is visible ASCII.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FieldValue {
    Text(String),
    Header(http::HeaderValue),
}

impl FieldValue {
    #[inline]
    fn as_str(&self) -> &str {
        match self {
            FieldValue::Text(s) => s,
            // Only visible-ASCII header values are stored (checked in `with_header_value`).
            FieldValue::Header(v) => v.to_str().unwrap_or_default(),
        }
    }
}

impl ContextFields {
    /// No fields.
    #[inline]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a field.
    #[inline]
    #[must_use]
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.0.push((key, FieldValue::Text(value.into())));
        self
    }

    /// Adds a field whose value is a header value, shared instead of copied (a header value
    /// that is not visible ASCII is copied as text, invalid bytes replaced).
    #[inline]
    #[must_use]
    pub fn with_header_value(mut self, key: &'static str, value: http::HeaderValue) -> Self {
        let value = if value.to_str().is_ok() {
            FieldValue::Header(value)
        } else {
            FieldValue::Text(String::from_utf8_lossy(value.as_bytes()).into_owned())
        };
        self.0.push((key, value));
        self
    }

    /// The fields, in the order they were added.
    #[inline]
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(k, v)| (*k, v.as_str()))
    }
}

/// Runs `f` on the current OpenTelemetry context; not at all when the thread's locals are being
/// torn down (an event from a thread-local's `Drop`), where OpenTelemetry's thread-local
/// access panics, and a panic there aborts the process.
fn with_current_context(f: impl FnOnce(&opentelemetry::Context)) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        opentelemetry::Context::map_current(f)
    }));
}

/// Fields recorded on a span, pre-rendered as JSON values.
#[derive(Debug, Default)]
struct SpanFields(Vec<(&'static str, String)>);

impl SpanFields {
    /// Sets `name`, replacing an earlier value.
    fn set(&mut self, name: &'static str, value: String) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

thread_local! {
    static BUF: RefCell<String> = RefCell::new(String::with_capacity(512));
}

/// The largest line buffer a thread keeps between events; a longer line's buffer is freed.
const MAX_KEPT_LINE_CAPACITY: usize = 64 * 1024;

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.fields().is_empty() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut SpanVisitor(&mut fields));
        if !fields.0.is_empty() {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        // Rendered before the span's extensions are locked: a value whose `Debug` logs would
        // otherwise re-enter this layer, which reads the same extensions (a deadlock).
        let mut recorded = SpanFields::default();
        values.record(&mut SpanVisitor(&mut recorded));
        if recorded.0.is_empty() {
            return;
        }
        let mut ext = span.extensions_mut();
        match ext.get_mut::<SpanFields>() {
            Some(fields) => {
                for (name, value) in recorded.0 {
                    fields.set(name, value);
                }
            }
            None => {
                ext.insert(recorded);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let written = BUF.try_with(|buf| {
            // A log call inside a `Debug` impl of a logged value would re-enter; write that
            // inner event with a fresh buffer instead of panicking on the borrow.
            match buf.try_borrow_mut() {
                Ok(mut buf) => {
                    self.write_event(&mut buf, event, &ctx);
                    // One huge line must not stay allocated on every thread that wrote one.
                    if buf.capacity() > MAX_KEPT_LINE_CAPACITY {
                        buf.clear();
                        buf.shrink_to(512);
                    }
                }
                Err(_) => self.write_event(&mut String::new(), event, &ctx),
            }
        });
        if written.is_err() {
            // The thread is tearing down its thread-locals (an event from a thread-local's
            // `Drop`): `with` would panic there, and a panic in a thread-local destructor
            // aborts the process.
            self.write_event(&mut String::new(), event, &ctx);
        }
    }
}

impl<W> JsonLayer<W>
where
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn write_event<S>(&self, buf: &mut String, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        buf.clear();
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        buf.push_str("{\"@timestamp\":\"");
        push_rfc3339(buf, SystemTime::now());
        buf.push_str("\",\"log.level\":\"");
        buf.push_str(meta.level().as_str());
        let is_log = normalized.is_some();
        let keys = callsite_keys(event.metadata(), is_log);
        buf.push_str("\",\"log.logger\":");
        match keys.as_ref().and_then(|k| k.logger.as_deref()) {
            Some(logger) => buf.push_str(logger),
            None => push_json_str(buf, meta.target()),
        }
        buf.push_str(&self.service);

        with_current_context(|cx| {
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_valid() {
                buf.push_str(",\"trace.id\":\"");
                push_hex(buf, sc.trace_id().to_bytes());
                buf.push_str("\",\"span.id\":\"");
                push_hex(buf, sc.span_id().to_bytes());
                buf.push('"');
            }
        });

        let mut seen: smallvec::SmallVec<[&'static str; 16]> = smallvec::SmallVec::new();
        let mut visitor = EventVisitor {
            buf,
            seen: &mut seen,
            is_log,
            keys: keys.as_deref(),
        };
        event.record(&mut visitor);

        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<SpanFields>() {
                    for (k, v) in fields.0.iter() {
                        if seen.contains(k) {
                            continue;
                        }
                        seen.push(k);
                        buf.push(',');
                        push_key(buf, k);
                        buf.push(':');
                        buf.push_str(v);
                    }
                }
            }
        }
        // Read in place (the current context cannot change while this event is written).
        with_current_context(|cx| {
            let Some(fields) = cx.get::<ContextFields>() else {
                return;
            };
            for (k, v) in fields.fields() {
                if seen.contains(&k) {
                    continue;
                }
                seen.push(k);
                buf.push(',');
                push_key(buf, k);
                buf.push(':');
                push_json_str(buf, v);
            }
        });
        buf.push_str("}\n");
        let _ = self
            .make_writer
            .make_writer_for(meta)
            .write_all(buf.as_bytes());
    }
}

struct EventVisitor<'a, 'b> {
    buf: &'a mut String,
    seen: &'b mut smallvec::SmallVec<[&'static str; 16]>,
    is_log: bool,
    /// The event's callsite's keys, rendered once (`None`: render each here).
    keys: Option<&'b CallsiteKeys>,
}

impl EventVisitor<'_, '_> {
    /// Writes `,"key":` and returns `true`, or returns `false` for a field the line leaves out.
    fn key(&mut self, field: &Field) -> bool {
        let written = match self.keys.and_then(|k| k.field(field)) {
            Some(Some(key)) => {
                self.buf.push_str(key);
                true
            }
            Some(None) => false,
            None => push_field_key(self.buf, field.name(), self.is_log),
        };
        if written {
            self.seen.push(field.name());
        }
        written
    }
}

impl Visit for EventVisitor<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.key(field) {
            push_json_f64(self.buf, value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.key(field) {
            self.buf.push_str(itoa::Buffer::new().format(value));
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.key(field) {
            self.buf.push_str(itoa::Buffer::new().format(value));
        }
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        if self.key(field) {
            self.buf.push_str(itoa::Buffer::new().format(value));
        }
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        if self.key(field) {
            self.buf.push_str(itoa::Buffer::new().format(value));
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field) {
            self.buf.push_str(if value { "true" } else { "false" });
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.key(field) {
            push_json_str(self.buf, value);
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.key(field) {
            self.buf.push('"');
            let _ = write!(JsonEscaper(self.buf), "{value}");
            let mut source = value.source();
            while let Some(s) = source {
                let _ = write!(JsonEscaper(self.buf), ": {s}");
                source = s.source();
            }
            self.buf.push('"');
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field) {
            self.buf.push('"');
            let _ = write!(JsonEscaper(self.buf), "{value:?}");
            self.buf.push('"');
        }
    }
}

struct SpanVisitor<'a>(&'a mut SpanFields);

impl SpanVisitor<'_> {
    fn put(&mut self, field: &Field, value: String) {
        let name = field.name();
        if name.starts_with("otel.") {
            // tracing-opentelemetry's control fields (span name, kind, status): not log data.
            return;
        }
        self.0.set(name, value);
    }
}

impl Visit for SpanVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let mut s = String::new();
        push_json_f64(&mut s, value);
        self.put(field, s);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, itoa::Buffer::new().format(value).to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, itoa::Buffer::new().format(value).to_owned());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.to_string());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let mut s = String::with_capacity(value.len() + 2);
        push_json_str(&mut s, value);
        self.put(field, s);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut s = String::from("\"");
        let _ = write!(JsonEscaper(&mut s), "{value:?}");
        s.push('"');
        self.put(field, s);
    }
}

/// A `fmt::Write` that JSON-escapes what passes through it.
struct JsonEscaper<'a>(&'a mut String);

impl fmt::Write for JsonEscaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_json_str_inner(self.0, s);
        Ok(())
    }
}

pub(crate) fn push_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    push_json_str_inner(buf, s);
    buf.push('"');
}

/// Bytes that need escaping in a JSON string: `"`, `\\`, control characters and DEL.
const ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[0x7f] = true;
    t
};

/// True if any byte of `w` needs escaping (SWAR: control bytes, `"`, `\\`, DEL).
#[inline]
fn word_needs_escape(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let below_space = w.wrapping_sub(LO * 0x20) & !w & HI;
    (below_space
        | has_zero(w ^ (LO * b'"' as u64))
        | has_zero(w ^ (LO * b'\\' as u64))
        | has_zero(w ^ (LO * 0x7f)))
        != 0
}

pub(super) fn push_json_str_inner(buf: &mut String, s: &str) {
    let bytes = s.as_bytes();
    // Fast path: most keys and values need no escaping; check eight bytes at a time.
    let mut clean = 0;
    while clean + 8 <= bytes.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[clean..clean + 8]);
        if word_needs_escape(u64::from_le_bytes(w)) {
            break;
        }
        clean += 8;
    }
    while clean < bytes.len() && !ESCAPE[bytes[clean] as usize] {
        clean += 1;
    }
    if clean == bytes.len() {
        buf.push_str(s);
        return;
    }
    buf.push_str(&s[..clean]);
    let mut start = clean;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        if !ESCAPE[b as usize] {
            continue;
        }
        buf.push_str(&s[start..i]);
        match b {
            b'"' => buf.push_str("\\\""),
            b'\\' => buf.push_str("\\\\"),
            b'\n' => buf.push_str("\\n"),
            b'\r' => buf.push_str("\\r"),
            b'\t' => buf.push_str("\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.push_str("\\u00");
                buf.push(HEX[(b >> 4) as usize] as char);
                buf.push(HEX[(b & 0xf) as usize] as char);
            }
        }
        start = i + 1;
    }
    buf.push_str(&s[start..]);
}

fn push_json_f64(buf: &mut String, v: f64) {
    if v.is_finite() {
        buf.push_str(ryu::Buffer::new().format_finite(v));
    } else {
        // JSON has no NaN or infinities.
        buf.push('"');
        buf.push_str(if v.is_nan() {
            "NaN"
        } else if v > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        });
        buf.push('"');
    }
}

/// Writes `t` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. The date-and-seconds prefix is cached per
/// thread, so most calls only format the microseconds.
pub(crate) fn push_rfc3339(buf: &mut String, t: SystemTime) {
    thread_local! {
        static PREFIX: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let cached = PREFIX.try_with(|cell| {
        let Ok(mut cached) = cell.try_borrow_mut() else {
            return false;
        };
        if cached.0 != secs {
            cached.1.clear();
            push_prefix(&mut cached.1, secs);
            cached.0 = secs;
        }
        buf.push_str(&cached.1);
        true
    });
    if cached != Ok(true) {
        // Re-entered, or the thread's locals are being torn down.
        push_prefix(buf, secs);
    }
    let micros = d.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut m = micros;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (m % 10) as u8;
        m /= 10;
    }
    buf.push('.');
    for d in digits {
        buf.push(d as char);
    }
    buf.push('Z');
}

/// `YYYY-MM-DDTHH:MM:SS` for `secs` since the epoch.
fn push_prefix(buf: &mut String, secs: u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    let _ = write!(
        buf,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    pub(crate) struct Buf(pub(crate) Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn lines(buf: &Buf) -> Vec<serde_json::Value> {
        String::from_utf8(buf.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn a_huge_line_does_not_stay_allocated_on_its_thread() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(buf.clone(), []));
        let capacity = std::thread::spawn(move || {
            tracing::subscriber::with_default(subscriber, || {
                tracing::info!(blob = %"x".repeat(1 << 20), "huge");
                let after_huge = BUF.with(|b| b.borrow().capacity());
                tracing::info!("small");
                (after_huge, BUF.with(|b| b.borrow().capacity()))
            })
        })
        .join()
        .unwrap();
        assert!(capacity.0 <= MAX_KEPT_LINE_CAPACITY, "{capacity:?}");
        assert!(capacity.1 <= MAX_KEPT_LINE_CAPACITY, "{capacity:?}");
        let lines = lines(&buf);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["blob"].as_str().map(str::len), Some(1 << 20));
    }

    #[test]
    fn timestamps() {
        let mut s = String::new();
        push_rfc3339(
            &mut s,
            UNIX_EPOCH + Duration::new(1_764_101_763, 123_456_789),
        );
        assert_eq!(s, "2025-11-25T20:16:03.123456Z");
        s.clear();
        push_rfc3339(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400)); // leap day
        assert_eq!(s, "2000-02-29T00:00:00.000000Z");
        s.clear();
        push_rfc3339(&mut s, UNIX_EPOCH);
        assert_eq!(s, "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        // Escapes found by the eight-byte fast path at every position.
        for special in ['"', '\\', '\n', '\u{1f}', '\u{7f}'] {
            for pos in 0..20 {
                let mut input: String = "abcdefghijklmnopqrst".into();
                input.replace_range(pos..pos + 1, &special.to_string());
                let mut got = String::new();
                push_json_str(&mut got, &input);
                let parsed: String = serde_json::from_str(&got).unwrap();
                assert_eq!(parsed, input, "{got}");
            }
        }
        let mut got = String::new();
        push_json_str(&mut got, "plain ascii text with é and 日本 and spaces");
        assert_eq!(got, "\"plain ascii text with é and 日本 and spaces\"");
    }

    #[test]
    fn event_fields_flattened_with_ecs_names() {
        let buf = Buf::default();
        let layer = JsonLayer::new(
            buf.clone(),
            [("service.name", "shop"), ("service.version", "1.2.3")],
        );
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r-1", user = 7);
            let _g = span.enter();
            let inner = tracing::info_span!("db", user = 8);
            let _g2 = inner.enter();
            let err = std::io::Error::other("disk full");
            tracing::warn!(
                order_id = 42u64,
                ok = true,
                ratio = 0.5,
                error = &err as &dyn std::error::Error,
                "order \"placed\""
            );
            tracing::info!(target: "custom", { log.level = "x", nan = f64::NAN }, "second");
        });
        let l = lines(&buf);
        assert_eq!(l.len(), 2);
        let a = &l[0];
        assert_eq!(a["log.level"], "WARN");
        assert_eq!(a["message"], "order \"placed\"");
        assert_eq!(a["service.name"], "shop");
        assert_eq!(a["service.version"], "1.2.3");
        assert_eq!(a["order_id"], 42);
        assert_eq!(a["ok"], true);
        assert_eq!(a["ratio"], 0.5);
        assert_eq!(a["error.message"], "disk full");
        assert_eq!(a["request_id"], "r-1");
        assert_eq!(a["user"], 8, "the innermost span wins");
        assert!(a["log.logger"].as_str().unwrap().contains("json"));
        assert!(a["@timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(
            a.get("trace.id").is_none(),
            "no OpenTelemetry layer, no trace id"
        );
        let b = &l[1];
        assert_eq!(b["log.logger"], "custom");
        assert_eq!(b["log.level"], "INFO");
        assert_eq!(b["fields.log.level"], "x");
        assert_eq!(b["nan"], "NaN");
    }

    #[test]
    fn keys_rendered_once_per_callsite_are_the_same_on_every_line() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry()
            .with(JsonLayer::new(buf.clone(), [("service.name", "shop")]));
        tracing::subscriber::with_default(subscriber, || {
            // The first pass renders this callsite's keys; the later ones copy them.
            for i in 0..3u64 {
                tracing::info!(
                    target: "tgt \"q\"",
                    { "key \"quoted\"" = i, trace.id = "spoof", error = "e", log.file = "f" },
                    "m{i}"
                );
            }
            // `log` crate records share tracing-log's callsites but not their targets; their
            // `log.*` fields are in the normalized metadata, not repeated on the line.
            for target in ["first::module", "second::module"] {
                let record = log::Record::builder()
                    .level(log::Level::Warn)
                    .target(target)
                    .file(Some("src/x.rs"))
                    .line(Some(7))
                    .args(format_args!("from log"))
                    .build();
                tracing_log::format_trace(&record).unwrap();
            }
        });
        let l = lines(&buf);
        assert_eq!(l.len(), 5, "{l:#?}");
        for (i, a) in l[..3].iter().enumerate() {
            assert_eq!(a["log.logger"], "tgt \"q\"", "{a}");
            assert_eq!(a["message"], format!("m{i}"), "{a}");
            assert_eq!(a["key \"quoted\""], i, "{a}");
            assert_eq!(a["fields.trace.id"], "spoof", "{a}");
            assert_eq!(a["error.message"], "e", "{a}");
            assert_eq!(a["log.file"], "f", "{a}");
            assert_eq!(a.as_object().unwrap().len(), 9, "{a}");
        }
        for (a, target) in l[3..].iter().zip(["first::module", "second::module"]) {
            assert_eq!(a["log.logger"], target, "{a}");
            assert_eq!(a["log.level"], "WARN", "{a}");
            assert_eq!(a["message"], "from log", "{a}");
            assert!(
                a.get("log.file").is_none() && a.get("log.line").is_none(),
                "{a}"
            );
        }
    }

    #[test]
    fn context_fields_are_added_after_event_fields() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(buf.clone(), []));
        tracing::subscriber::with_default(subscriber, || {
            let cx = opentelemetry::Context::current().with_value(
                ContextFields::new()
                    .with("http.request.id", "r-1")
                    .with("tenant", "acme"),
            );
            let _g = cx.attach();
            tracing::info!(tenant = "event-wins", "inside");
        });
        let l = lines(&buf);
        assert_eq!(l[0]["http.request.id"], "r-1");
        assert_eq!(l[0]["tenant"], "event-wins");
    }

    #[test]
    fn context_fields_from_header_values() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(buf.clone(), []));
        tracing::subscriber::with_default(subscriber, || {
            let fields = ContextFields::new()
                .with_header_value("http.request.id", http::HeaderValue::from_static("r-2"))
                .with_header_value(
                    "odd",
                    http::HeaderValue::from_bytes(b"caf\xc3\xa9 \"x\"").unwrap(),
                );
            assert_eq!(
                fields.fields().collect::<Vec<_>>(),
                [("http.request.id", "r-2"), ("odd", "caf\u{e9} \"x\"")]
            );
            let _g = opentelemetry::Context::current()
                .with_value(fields)
                .attach();
            tracing::info!("inside");
        });
        let l = lines(&buf);
        assert_eq!(l[0]["http.request.id"], "r-2");
        assert_eq!(l[0]["odd"], "caf\u{e9} \"x\"");
    }

    #[test]
    fn span_fields_recorded_later_appear() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(buf.clone(), []));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("req", status = tracing::field::Empty);
            span.record("status", 200);
            let _g = span.enter();
            tracing::info!("done");
        });
        assert_eq!(lines(&buf)[0]["status"], 200);
    }

    /// A value whose `Debug` logs, recorded on the span that is current: the inner event is
    /// written while the field is rendered, without a deadlock on the span's extensions.
    #[test]
    fn a_recorded_value_whose_debug_logs_does_not_deadlock() {
        struct Chatty;
        impl std::fmt::Debug for Chatty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                tracing::info!("rendering chatty");
                f.write_str("chatty")
            }
        }
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry().with(JsonLayer::new(buf.clone(), []));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!("req", value = tracing::field::Empty, n = 1);
                let _g = span.enter();
                span.record("value", tracing::field::debug(&Chatty));
                tracing::info!("done");
            });
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("recording the field deadlocked");
        let lines = lines(&buf);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["message"], "rendering chatty");
        assert_eq!(lines[1]["value"], "chatty");
        assert_eq!(lines[1]["n"], 1);
    }
}
