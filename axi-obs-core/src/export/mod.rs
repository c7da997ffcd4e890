//! OTLP export: one dedicated thread with its own single-threaded Tokio runtime runs every
//! exporter, so exports never compete with (or deadlock) the application's runtime, whatever
//! its flavour or core count. Between the application and that thread sit bounded queues that
//! drop and count instead of blocking.

mod batch;
pub(crate) mod metrics;
mod transport;

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};

use batch::BatchHandle;
pub(crate) use batch::{ControlHandle, all_at_once};
pub(crate) use transport::{ExportError, Transport};

use crate::config::{OtlpTarget, Resolved, Signal};
use crate::internal::ExportCounters;
use crate::metrics::MetricsRecorder;

thread_local! {
    static EXPORT_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True on axi-obs's own export thread: telemetry produced there (HTTP client logs and spans)
/// must not be fed back into the exporters.
pub(crate) fn on_export_thread() -> bool {
    EXPORT_THREAD.with(|c| c.get())
}

/// The export thread and its runtime.
#[derive(Debug)]
pub(crate) struct ExportRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ExportRuntime {
    pub(crate) fn start() -> io::Result<Self> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("axi-obs-export".into())
            .spawn(move || {
                EXPORT_THREAD.with(|c| c.set(true));
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name("axi-obs-export")
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                // Whatever is still running (an export past its deadline) is cancelled.
                rt.shutdown_timeout(Duration::from_millis(100));
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|_| io::Error::other("the export thread exited during start-up"))??;
        Ok(Self {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Stops the runtime. Does not join: a stuck export cannot hold the caller.
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        drop(self.thread.take());
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds the transport for `target` inside the export runtime.
pub(crate) fn transport(rt: &ExportRuntime, target: &OtlpTarget) -> Result<Transport, ExportError> {
    let _enter = rt.handle().enter();
    Transport::new(target)
}

/// A [`SpanProcessor`] that queues sampled spans for OTLP export.
#[derive(Debug)]
pub(crate) struct SpanQueue {
    queue: BatchHandle<SpanData>,
    flush_timeout: Duration,
}

impl SpanQueue {
    pub(crate) fn start(
        rt: &ExportRuntime,
        transport: Transport,
        resource: &[(String, String)],
        resolved: &Resolved,
        recorder: Option<&MetricsRecorder>,
    ) -> Self {
        let resource = resource_attrs(resource);
        let counters = counters(recorder, Signal::Traces);
        let queue = BatchHandle::start(
            rt.handle(),
            transport,
            move |spans: Vec<SpanData>| {
                transport::Request::Traces(ExportTraceServiceRequest {
                    resource_spans: opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope(
                        spans, &resource,
                    ),
                })
            },
            resolved.span_batch,
            counters,
        );
        Self {
            queue,
            flush_timeout: resolved.shutdown_timeout,
        }
    }
}

impl SpanQueue {
    /// The queue's control handle, for deadline-bound flushes.
    pub(crate) fn control(&self) -> ControlHandle {
        self.queue.control().clone()
    }
}

impl SpanProcessor for SpanQueue {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.queue.push(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.queue
            .control()
            .flush(self.flush_timeout)
            .map_err(OTelSdkError::InternalFailure)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.queue
            .control()
            .shutdown(timeout)
            .map_err(OTelSdkError::InternalFailure)
    }
}

/// A [`LogProcessor`] that queues log records for OTLP export.
#[derive(Debug)]
pub(crate) struct LogQueue {
    queue: BatchHandle<(SdkLogRecord, InstrumentationScope)>,
    flush_timeout: Duration,
}

impl LogQueue {
    pub(crate) fn start(
        rt: &ExportRuntime,
        transport: Transport,
        resource: &[(String, String)],
        resolved: &Resolved,
        recorder: Option<&MetricsRecorder>,
    ) -> Self {
        let resource = resource_attrs(resource);
        let counters = counters(recorder, Signal::Logs);
        let queue = BatchHandle::start(
            rt.handle(),
            transport,
            move |records: Vec<(SdkLogRecord, InstrumentationScope)>| {
                let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                    records.iter().map(|(r, s)| (r, s)).collect();
                let batch = LogBatch::new(&refs);
                transport::Request::Logs(ExportLogsServiceRequest {
                    resource_logs: opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope(
                        &batch, &resource,
                    ),
                })
            },
            resolved.log_batch,
            counters,
        );
        Self {
            queue,
            flush_timeout: resolved.shutdown_timeout,
        }
    }
}

impl LogQueue {
    /// The queue's control handle, for deadline-bound flushes.
    pub(crate) fn control(&self) -> ControlHandle {
        self.queue.control().clone()
    }
}

impl LogProcessor for LogQueue {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        self.queue.push((record.clone(), scope.clone()));
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.queue
            .control()
            .flush(self.flush_timeout)
            .map_err(OTelSdkError::InternalFailure)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.queue
            .control()
            .shutdown(timeout)
            .map_err(OTelSdkError::InternalFailure)
    }
}

fn counters(recorder: Option<&MetricsRecorder>, signal: Signal) -> ExportCounters {
    match recorder {
        Some(r) => ExportCounters::new(r, signal),
        None => ExportCounters::detached(signal),
    }
}

pub(crate) fn metric_counters(recorder: &MetricsRecorder) -> ExportCounters {
    ExportCounters::new(recorder, Signal::Metrics)
}

fn resource_attrs(resource: &[(String, String)]) -> ResourceAttributesWithSchema {
    let r = opentelemetry_sdk::Resource::builder_empty()
        .with_attributes(
            resource
                .iter()
                .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone())),
        )
        .build();
    ResourceAttributesWithSchema::from(&r)
}
