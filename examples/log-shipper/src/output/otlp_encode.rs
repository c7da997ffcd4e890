//! The protobuf bytes of an `ExportLogsServiceRequest`, written straight from the records.
//!
//! The same bytes prost writes for [`encode_request`](super::otlp::encode_request) (fields in
//! tag order, proto3 defaults left out; a unit test compares them byte for byte), without
//! building the intermediate `LogRecord` / `KeyValue` / `AnyValue` structs: those cost about
//! thirty allocations and frees per record, and prost walks them twice (lengths, then bytes).
//! Here each record's length is computed once from the record itself, then the bytes are
//! written into one buffer.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::record::{Record, Value};

const SCOPE_NAME: &str = "axi-log-shipper";
const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A borrowed `AnyValue`.
#[derive(Clone, Copy)]
enum Any<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
}

impl<'a> From<&'a Value> for Any<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Str(s) => Any::Str(s),
            Value::Int(i) => Any::Int(*i),
            Value::Float(f) => Any::Double(*f),
            Value::Bool(b) => Any::Bool(*b),
        }
    }
}

fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_header(buf: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// A proto3 string field (left out when empty).
fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        delimited_len(tag, s.len())
    }
}

fn put_str(buf: &mut Vec<u8>, tag: u32, s: &str) {
    if !s.is_empty() {
        put_header(buf, tag, s.len());
        buf.extend_from_slice(s.as_bytes());
    }
}

/// The `AnyValue` message: a oneof, so its field is written even when it is the default.
fn any_len(v: Any<'_>) -> usize {
    match v {
        Any::Str(s) => delimited_len(1, s.len()),
        Any::Bool(_) => key_len(2) + 1,
        Any::Int(i) => key_len(3) + encoded_len_varint(i as u64),
        Any::Double(_) => key_len(4) + 8,
    }
}

fn put_any(buf: &mut Vec<u8>, v: Any<'_>) {
    match v {
        Any::Str(s) => put_str_always(buf, 1, s),
        Any::Bool(b) => {
            encode_key(2, WireType::Varint, buf);
            encode_varint(u64::from(b), buf);
        }
        Any::Int(i) => {
            encode_key(3, WireType::Varint, buf);
            // int64 is the two's complement varint, as prost writes it.
            encode_varint(i as u64, buf);
        }
        Any::Double(d) => {
            encode_key(4, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&d.to_le_bytes());
        }
    }
}

fn put_str_always(buf: &mut Vec<u8>, tag: u32, s: &str) {
    put_header(buf, tag, s.len());
    buf.extend_from_slice(s.as_bytes());
}

/// A `KeyValue` message's length (key, then the `AnyValue`, always present).
fn kv_len(key: &str, v: Any<'_>) -> usize {
    str_len(1, key) + delimited_len(2, any_len(v))
}

fn put_kv(buf: &mut Vec<u8>, tag: u32, key: &str, v: Any<'_>) {
    put_header(buf, tag, kv_len(key, v));
    put_str(buf, 1, key);
    put_header(buf, 2, any_len(v));
    put_any(buf, v);
}

/// The attributes of a record's `LogRecord`, in the order `log_record` writes them.
fn attributes(r: &Record) -> impl Iterator<Item = (&str, Any<'_>)> {
    let name = r.path.rsplit('/').next().unwrap_or(&r.path);
    [
        Some(("log.file.path", Any::Str(&r.path))),
        Some(("log.file.name", Any::Str(name))),
        r.truncated
            .then_some(("log.record.truncated", Any::Bool(true))),
    ]
    .into_iter()
    .flatten()
    .chain(r.attributes.iter().map(|(k, v)| (k.as_ref(), Any::from(v))))
}

fn severity(r: &Record) -> (i32, &'static str) {
    r.level
        .map(|l| (l.severity_number(), l.as_str()))
        .unwrap_or((0, ""))
}

/// The length of a record's `LogRecord` message.
fn record_len(r: &Record) -> usize {
    let mut n = 0;
    if r.time_unix_nano.unwrap_or(0) != 0 {
        n += key_len(1) + 8;
    }
    let (number, text) = severity(r);
    if number != 0 {
        n += key_len(2) + encoded_len_varint(i64::from(number) as u64);
    }
    n += str_len(3, text);
    n += delimited_len(5, any_len(Any::Str(&r.body)));
    for (k, v) in attributes(r) {
        n += delimited_len(6, kv_len(k, v));
    }
    if r.trace_id.is_some() {
        n += delimited_len(9, 16);
    }
    if r.span_id.is_some() {
        n += delimited_len(10, 8);
    }
    if r.observed_unix_nano != 0 {
        n += key_len(11) + 8;
    }
    n
}

fn put_record(buf: &mut Vec<u8>, r: &Record, len: usize) {
    put_header(buf, 2, len);
    let time = r.time_unix_nano.unwrap_or(0);
    if time != 0 {
        encode_key(1, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&time.to_le_bytes());
    }
    let (number, text) = severity(r);
    if number != 0 {
        encode_key(2, WireType::Varint, buf);
        encode_varint(i64::from(number) as u64, buf);
    }
    put_str(buf, 3, text);
    let body = Any::Str(&r.body);
    put_header(buf, 5, any_len(body));
    put_any(buf, body);
    for (k, v) in attributes(r) {
        put_kv(buf, 6, k, v);
    }
    if let Some(t) = &r.trace_id {
        put_header(buf, 9, t.len());
        buf.extend_from_slice(t);
    }
    if let Some(s) = &r.span_id {
        put_header(buf, 10, s.len());
        buf.extend_from_slice(s);
    }
    if r.observed_unix_nano != 0 {
        encode_key(11, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&r.observed_unix_nano.to_le_bytes());
    }
}

/// The protobuf encoding of `encode_request(batch, host_name)`: one `ResourceLogs` per
/// service (in order of first appearance) with `service.name` and `host.name`, one
/// `ScopeLogs` named `axi-log-shipper`, the records in batch order.
pub(super) fn encode_request_bytes(batch: &[Record], host_name: &str) -> Vec<u8> {
    // Records by service, in order of first appearance (usually one service).
    let mut groups: Vec<(&str, Vec<(usize, usize)>)> = Vec::new();
    for (i, r) in batch.iter().enumerate() {
        let len = record_len(r);
        match groups.iter_mut().find(|(s, _)| *s == &*r.service) {
            Some((_, v)) => v.push((i, len)),
            None => groups.push((&r.service, vec![(i, len)])),
        }
    }
    let scope_len = str_len(1, SCOPE_NAME) + str_len(2, SCOPE_VERSION);
    let sized: Vec<(&str, usize, usize, usize)> = groups
        .iter()
        .map(|(service, records)| {
            let resource_len = delimited_len(1, kv_len("service.name", Any::Str(service)))
                + delimited_len(1, kv_len("host.name", Any::Str(host_name)));
            let scope_logs_len = delimited_len(1, scope_len)
                + records
                    .iter()
                    .map(|(_, len)| delimited_len(2, *len))
                    .sum::<usize>();
            let resource_logs_len =
                delimited_len(1, resource_len) + delimited_len(2, scope_logs_len);
            (*service, resource_len, scope_logs_len, resource_logs_len)
        })
        .collect();
    let total: usize = sized.iter().map(|g| delimited_len(1, g.3)).sum();
    let mut buf = Vec::with_capacity(total);
    for ((service, records), (_, resource_len, scope_logs_len, resource_logs_len)) in
        groups.iter().zip(&sized)
    {
        put_header(&mut buf, 1, *resource_logs_len);
        put_header(&mut buf, 1, *resource_len);
        put_kv(&mut buf, 1, "service.name", Any::Str(service));
        put_kv(&mut buf, 1, "host.name", Any::Str(host_name));
        put_header(&mut buf, 2, *scope_logs_len);
        put_header(&mut buf, 1, scope_len);
        put_str(&mut buf, 1, SCOPE_NAME);
        put_str(&mut buf, 2, SCOPE_VERSION);
        for (i, len) in records {
            put_record(&mut buf, &batch[*i], *len);
        }
    }
    debug_assert_eq!(buf.len(), total);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::otlp::encode_request;
    use crate::record::{FileKey, Level, Position};
    use prost::Message;

    fn record(service: &str, body: &str, i: u64) -> Record {
        Record {
            input: "in".into(),
            service: service.into(),
            path: "/var/log/nginx/access.log".into(),
            position: Position {
                key: FileKey {
                    dev: 1,
                    ino: 2,
                    generation: 0,
                },
                end: i * 10,
            },
            file_birth_unix_nano: None,
            time_unix_nano: Some(1_764_151_200_000_000_000 + i),
            observed_unix_nano: 1_764_151_201_000_000_000,
            level: Some(Level::Info),
            body: body.into(),
            attributes: vec![
                ("client.address".into(), Value::Str("10.0.0.1".into())),
                ("http.response.status_code".into(), Value::Int(200)),
                ("nginx.request_time".into(), Value::Float(0.012)),
            ],
            trace_id: None,
            span_id: None,
            truncated: false,
        }
    }

    #[test]
    fn the_same_bytes_as_prost() {
        let mut batch = vec![record("docs", "GET / 200", 1)];
        // Every field's default and edge: no time, no level, empty body and values,
        // negative and large integers, booleans, ids, a truncated line, a path without `/`,
        // non-ASCII text, and a second service interleaved with the first.
        let mut r = record("api", "", 2);
        r.time_unix_nano = None;
        r.level = None;
        r.observed_unix_nano = 0;
        r.path = "relative.log".into();
        r.truncated = true;
        r.trace_id = Some([7; 16]);
        r.span_id = Some([9; 8]);
        r.attributes = vec![
            ("".into(), Value::Str(String::new())),
            ("neg".into(), Value::Int(-5)),
            ("max".into(), Value::Int(i64::MAX)),
            ("min".into(), Value::Int(i64::MIN)),
            ("f".into(), Value::Bool(false)),
            ("t".into(), Value::Bool(true)),
            ("nan".into(), Value::Float(f64::NAN)),
            ("zero".into(), Value::Float(0.0)),
            ("ümlaut".into(), Value::Str("日本語".into())),
        ];
        batch.push(r);
        let mut e = record("docs", &"x".repeat(300), 3);
        e.level = Some(Level::Error);
        batch.push(e);
        let mut w = record("api", "warn", 4);
        w.level = Some(Level::Warn);
        batch.push(w);
        for host in ["web-1", ""] {
            let expected = encode_request(&batch, host).encode_to_vec();
            assert_eq!(encode_request_bytes(&batch, host), expected);
        }
        assert_eq!(
            encode_request_bytes(&[], "h"),
            encode_request(&[], "h").encode_to_vec()
        );
    }

    #[test]
    fn a_thousand_access_lines_decode_to_the_same_request() {
        let batch: Vec<Record> = (0..1000)
            .map(|i| record(["a", "b", "c"][i as usize % 3], &format!("line {i}"), i))
            .collect();
        let bytes = encode_request_bytes(&batch, "host");
        let decoded =
            opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(
                bytes.as_slice(),
            )
            .unwrap();
        assert_eq!(decoded, encode_request(&batch, "host"));
    }
}
