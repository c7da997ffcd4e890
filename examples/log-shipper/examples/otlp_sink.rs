//! A minimal OTLP/HTTP logs receiver for the end-to-end benchmark (`bench/throughput.sh`): it
//! decodes every `POST /v1/logs` body, counts the log records that have a body (refusing
//! bodies that do not decode, with HTTP 400), and answers with an encoded
//! `ExportLogsServiceResponse`, as an OpenTelemetry Collector does.
//!
//! `--decode full` decodes into opentelemetry-proto's structs with prost (every string
//! allocated, as a receiver that keeps the records does); `--decode walk` (the default)
//! walks the protobuf wire format of every message down to each `LogRecord`'s fields without
//! allocating (tags, lengths, varints checked; a truncated or malformed message is refused),
//! which costs the receiver's CPU far less, so that it does not set the pace of a shipper
//! that waits for each answer.
//!
//! ```sh
//! cargo run --release -p log-shipper --example otlp_sink -- --listen 127.0.0.1:4318 --expect 2000000
//! ```
//!
//! Prints `listening <addr>` once bound, and `done <records> <requests> <unix seconds>` when
//! `--expect` records have arrived (the time the last needed request was decoded); keeps
//! serving until killed. `--expect 0` never prints `done`.

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::serve::ListenerExt;
use clap::Parser;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;

/// A counting OTLP/HTTP logs receiver (benchmarks only).
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4318")]
    listen: SocketAddr,
    /// Print `done ...` once this many records arrived (0: never).
    #[arg(long, default_value_t = 0)]
    expect: u64,
    /// `walk` (count on the wire format, no allocation) or `full` (prost structs).
    #[arg(long, default_value = "walk")]
    decode: Decode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Decode {
    Walk,
    Full,
}

/// Reads a varint at the start of `buf`, advancing it.
fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

/// A field number and, for a length-delimited field, its payload.
type Field<'a> = (u64, Option<&'a [u8]>);

/// The fields of one message: `(field number, payload of a length-delimited field)`; other
/// wire types are checked and skipped (payload `None`). `None` on malformed input.
fn fields(mut buf: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 {
            return None;
        }
        match wire {
            0 => {
                varint(&mut buf)?;
                out.push((field, None));
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                buf = buf.get(n..)?;
                out.push((field, None));
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let payload = buf.get(..len)?;
                buf = &buf[len..];
                out.push((field, Some(payload)));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Records with a body in an `ExportLogsServiceRequest` (resource_logs = 1 → scope_logs = 2
/// → log_records = 2 → body = 5), every level's framing checked.
fn walk(body: &[u8]) -> Option<u64> {
    let mut n = 0;
    for (f, resource_logs) in fields(body)? {
        let (1, Some(resource_logs)) = (f, resource_logs) else {
            continue;
        };
        for (f, scope_logs) in fields(resource_logs)? {
            let (2, Some(scope_logs)) = (f, scope_logs) else {
                continue;
            };
            for (f, record) in fields(scope_logs)? {
                let (2, Some(record)) = (f, record) else {
                    continue;
                };
                let record = fields(record)?;
                if record.iter().any(|(f, p)| *f == 5 && p.is_some()) {
                    n += 1;
                }
            }
        }
    }
    Some(n)
}

fn full(body: Bytes) -> Option<u64> {
    let request = ExportLogsServiceRequest::decode(body).ok()?;
    let mut n = 0u64;
    for r in &request.resource_logs {
        for s in &r.scope_logs {
            for l in &s.log_records {
                // A record without a body would be a shipper bug: count only real ones.
                if l.body.is_some() {
                    n += 1;
                }
            }
        }
    }
    Some(n)
}

#[derive(Default)]
struct Counts {
    records: AtomicU64,
    requests: AtomicU64,
    done: AtomicBool,
}

async fn logs(
    State((counts, expect, decode)): State<(Arc<Counts>, u64, Decode)>,
    body: Bytes,
) -> impl IntoResponse {
    let counted = match decode {
        Decode::Walk => walk(&body),
        Decode::Full => full(body),
    };
    let Some(n) = counted else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let total = counts.records.fetch_add(n, Ordering::SeqCst) + n;
    let requests = counts.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if expect > 0 && total >= expect && !counts.done.swap(true, Ordering::SeqCst) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        println!("done {total} {requests} {now:.6}");
    }
    (
        StatusCode::OK,
        ExportLogsServiceResponse::default().encode_to_vec(),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let counts = Arc::new(Counts::default());
    let app = axum::Router::new()
        .route("/v1/logs", post(logs))
        .with_state((counts.clone(), args.expect, args.decode))
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("listening {}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    #[test]
    fn walk_counts_as_full_decoding_does_and_refuses_truncation() {
        let record = |body: bool| LogRecord {
            time_unix_nano: 1,
            body: body.then(|| AnyValue {
                value: Some(any_value::Value::StringValue("x".into())),
            }),
            ..Default::default()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![
                ResourceLogs {
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![record(true), record(false), record(true)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ResourceLogs {
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![record(true)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        };
        let bytes = request.encode_to_vec();
        assert_eq!(walk(&bytes), Some(3));
        assert_eq!(full(Bytes::from(bytes.clone())), Some(3));
        assert_eq!(walk(&bytes[..bytes.len() - 1]), None);
    }
}
