//! Bounded batching queues between the application and an OTLP transport.
//!
//! The application side only ever calls `try_send`: when the queue is full the item is dropped
//! and counted (`axi_obs_export_items_total{outcome="dropped"}`), never waited for. The export
//! side runs as a task on the export runtime, sending a batch when it reaches `max_batch` items
//! or when `delay` passes, and on flush / shutdown requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::transport::{ExportError, Request, Transport};
use crate::internal::{ExportCounters, RateLimit};

pub(crate) use crate::config::BatchConfig;

pub(crate) type Reply = std_mpsc::Sender<Result<(), String>>;

/// A request to the export task, with the instant by which it must answer.
pub(crate) enum Control {
    Flush(Reply, Instant),
    Shutdown(Reply, Instant),
}

/// The deadline of a [`Batcher::drain`], and whose it is.
#[derive(Clone, Copy, Debug)]
enum Deadline {
    Flush(Instant),
    Shutdown(Instant),
}

impl Deadline {
    fn instant(self) -> Instant {
        match self {
            Deadline::Flush(t) | Deadline::Shutdown(t) => t,
        }
    }
}

/// What the application side holds: the item queue and the control channel.
#[derive(Debug)]
pub(crate) struct BatchHandle<T> {
    tx: mpsc::Sender<T>,
    control: ControlHandle,
    counters: ExportCounters,
}

/// Sends flush and shutdown requests to a background export task and waits, bounded.
#[derive(Debug, Clone)]
pub(crate) struct ControlHandle {
    tx: mpsc::Sender<Control>,
}

impl ControlHandle {
    pub(crate) fn channel() -> (Self, mpsc::Receiver<Control>) {
        let (tx, rx) = mpsc::channel(16);
        (Self { tx }, rx)
    }

    /// Sends a request whose export is to end by `deadline`, without waiting for it: several
    /// tasks sent theirs first, then waited on, work on them at the same time.
    fn send(&self, make: fn(Reply, Instant) -> Control, deadline: Instant) -> Pending {
        let (reply_tx, reply_rx) = std_mpsc::channel();
        match self.tx.try_send(make(reply_tx, deadline)) {
            Ok(()) => Pending::Sent(reply_rx, deadline),
            // Already shut down: nothing left to export.
            Err(mpsc::error::TrySendError::Closed(_)) => Pending::Done(Ok(())),
            // A burst of control requests: this one did not run, and says so.
            Err(mpsc::error::TrySendError::Full(_)) => Pending::Done(Err(
                "not run: too many flush and shutdown requests queued".to_owned(),
            )),
        }
    }

    /// Starts exporting everything queued so far, to end by `deadline`.
    pub(crate) fn begin_flush(&self, deadline: Instant) -> Pending {
        self.send(Control::Flush, deadline)
    }

    /// Starts exporting everything queued and stopping the task, to end by `deadline`.
    pub(crate) fn begin_shutdown(&self, deadline: Instant) -> Pending {
        self.send(Control::Shutdown, deadline)
    }

    /// Exports everything queued so far; waits at most `timeout`.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), String> {
        self.begin_flush(Instant::now() + timeout).wait()
    }

    /// Exports everything queued and stops the task; waits at most `timeout`.
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<(), String> {
        self.begin_shutdown(Instant::now() + timeout).wait()
    }
}

/// Sends `begin` (a flush or a shutdown, to end by one deadline) to every export task
/// first, then waits for each answer: the tasks work at the same time, so a collector that
/// does not answer for one signal does not use up the others' time. Returns the errors.
pub(crate) fn all_at_once(
    exports: &[ControlHandle],
    begin: impl Fn(&ControlHandle) -> Pending,
) -> Vec<String> {
    let pending: Vec<Pending> = exports.iter().map(begin).collect();
    pending.into_iter().filter_map(|p| p.wait().err()).collect()
}

/// A flush or shutdown request sent to an export task, its answer not yet waited for.
#[derive(Debug)]
pub(crate) enum Pending {
    Sent(std_mpsc::Receiver<Result<(), String>>, Instant),
    Done(Result<(), String>),
}

impl Pending {
    /// The task's answer, waited for until the request's deadline (at least 1 ms).
    pub(crate) fn wait(self) -> Result<(), String> {
        match self {
            Pending::Done(r) => r,
            Pending::Sent(reply, deadline) => {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                match reply.recv_timeout(left) {
                    Ok(r) => r,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {
                        Err("timed out at its deadline".to_owned())
                    }
                    // The task ended without answering: the runtime was stopped (a shutdown
                    // that timed out), and what this request was for was counted as dropped.
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                        Err("the export task stopped before doing it".to_owned())
                    }
                }
            }
        }
    }
}

impl<T: Send + 'static> BatchHandle<T> {
    /// Starts the export task for `transport` on `runtime`.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        transport: Transport,
        encode: impl Fn(Vec<T>) -> Request + Send + 'static,
        config: BatchConfig,
        counters: ExportCounters,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.max_queue.max(1));
        let (control, ctrl_rx) = ControlHandle::channel();
        let task = Batcher {
            transport,
            encode: Box::new(encode),
            config,
            counters: counters.clone(),
            fail_warn: RateLimit::every_secs(10),
            drop_warn: RateLimit::every_secs(10),
            reported_drops: 0,
            last_export: Duration::ZERO,
        };
        runtime.spawn(task.run(rx, ctrl_rx));
        Self {
            tx,
            control,
            counters,
        }
    }

    /// Queues `item` without waiting; drops and counts it when the queue is full.
    #[inline]
    pub(crate) fn push(&self, item: T) {
        if self.tx.try_send(item).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn control(&self) -> &ControlHandle {
        &self.control
    }
}

struct Batcher<T> {
    transport: Transport,
    encode: Box<dyn Fn(Vec<T>) -> Request + Send>,
    config: BatchConfig,
    counters: ExportCounters,
    fail_warn: RateLimit,
    drop_warn: RateLimit,
    reported_drops: u64,
    /// How long the last successful export took: a flush starts no export it has less than
    /// twice this left for.
    last_export: Duration,
}

/// The export task's queue, and the items it has taken from it but not yet accounted for
/// (batched, or in an export under way). If the task is dropped before it accounts for them
/// (the runtime stopped after a shutdown that timed out, an export still in flight), they are
/// counted as dropped, with what is still queued: lost, but not silently.
struct Queue<T> {
    rx: mpsc::Receiver<T>,
    held: u64,
    dropped: Arc<AtomicU64>,
}

impl<T> Queue<T> {
    fn try_recv(&mut self) -> Option<T> {
        let item = self.rx.try_recv().ok()?;
        self.held += 1;
        Some(item)
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        // Closed first: a producer's send cannot land between the count and the drop.
        self.rx.close();
        let mut left = self.held;
        while self.rx.try_recv().is_ok() {
            left += 1;
        }
        if left > 0 {
            self.dropped.fetch_add(left, Ordering::Relaxed);
        }
    }
}

impl<T: Send + 'static> Batcher<T> {
    async fn run(mut self, rx: mpsc::Receiver<T>, mut ctrl: mpsc::Receiver<Control>) {
        let mut q = Queue {
            rx,
            held: 0,
            dropped: self.counters.dropped.clone(),
        };
        let mut batch: Vec<T> = Vec::with_capacity(self.config.max_batch);
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + self.config.delay,
            self.config.delay,
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                c = ctrl.recv() => match c {
                    Some(Control::Flush(reply, until)) => {
                        let r = self.drain(&mut q, &mut batch, Some(Deadline::Flush(until))).await;
                        let _ = reply.send(r);
                    }
                    Some(Control::Shutdown(reply, until)) => {
                        q.rx.close();
                        let r = self.drain(&mut q, &mut batch, Some(Deadline::Shutdown(until))).await;
                        // What the deadline left behind is lost now: counted, not silent.
                        let mut left = batch.len() as u64;
                        while q.rx.try_recv().is_ok() {
                            left += 1;
                        }
                        q.held = 0;
                        batch.clear();
                        self.counters.dropped.fetch_add(left, Ordering::Relaxed);
                        self.report_drops();
                        let _ = reply.send(r);
                        return;
                    }
                    None => {
                        q.rx.close();
                        let _ = self.drain(&mut q, &mut batch, None).await;
                        return;
                    }
                },
                item = q.rx.recv() => match item {
                    Some(item) => {
                        q.held += 1;
                        batch.push(item);
                        if batch.len() >= self.config.max_batch {
                            let full = std::mem::replace(&mut batch, Vec::with_capacity(self.config.max_batch));
                            let _ = self.export_held(&mut q, full, None).await;
                        }
                    }
                    None => {
                        let _ = self.drain(&mut q, &mut batch, None).await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        let due = std::mem::replace(&mut batch, Vec::with_capacity(self.config.max_batch));
                        let _ = self.export_held(&mut q, due, None).await;
                    }
                    self.report_drops();
                }
            }
        }
    }

    /// Exports what is batched plus everything queued now, giving up at the deadline.
    ///
    /// No export starts after the deadline: what is left stays batched and queued for the
    /// normal pipeline. (A flush whose caller gave up while an export was under way is read
    /// here late, past its deadline; exporting then, with no time left, would fail every batch
    /// and lose items a healthy collector would have taken.) A flush also starts none it has
    /// less than twice the last export's duration left for, which would likely be cut short
    /// and its items lost; a shutdown tries while any time is left, as what it leaves is lost.
    async fn drain(
        &mut self,
        q: &mut Queue<T>,
        batch: &mut Vec<T>,
        deadline: Option<Deadline>,
    ) -> Result<(), String> {
        let until = deadline.map(Deadline::instant);
        let timed_out = || Err("timed out; the rest stays queued".to_owned());
        let mut result = Ok(());
        while let Some(item) = q.try_recv() {
            batch.push(item);
            if batch.len() >= self.config.max_batch {
                if self.no_time_to_export(deadline) {
                    return timed_out();
                }
                let full = std::mem::replace(batch, Vec::with_capacity(self.config.max_batch));
                if let Err(e) = self.export_held(q, full, until).await {
                    result = Err(e.to_string());
                }
            }
        }
        if !batch.is_empty() {
            if self.no_time_to_export(deadline) {
                return timed_out();
            }
            if let Err(e) = self.export_held(q, std::mem::take(batch), until).await {
                result = Err(e.to_string());
            }
        }
        result
    }

    /// Whether an export started now is not to be started, for `deadline` (see [`drain`]).
    ///
    /// [`drain`]: Batcher::drain
    fn no_time_to_export(&self, deadline: Option<Deadline>) -> bool {
        let margin = match deadline {
            None => return false,
            Some(Deadline::Flush(_)) => self.last_export * 2,
            Some(Deadline::Shutdown(_)) => Duration::ZERO,
        };
        deadline.is_some_and(|d| Instant::now() + margin >= d.instant())
    }

    /// Exports items taken from `q`; they stay held (counted as dropped if this task is dropped
    /// meanwhile) until the export has counted them itself.
    async fn export_held(
        &mut self,
        q: &mut Queue<T>,
        items: Vec<T>,
        until: Option<Instant>,
    ) -> Result<(), ExportError> {
        let n = items.len() as u64;
        let r = self.export(items, until).await;
        q.held = q.held.saturating_sub(n);
        r
    }

    async fn export(&mut self, items: Vec<T>, until: Option<Instant>) -> Result<(), ExportError> {
        let n = items.len() as u64;
        let started = Instant::now();
        match self.transport.send((self.encode)(items), until).await {
            Ok(rejected) => {
                self.last_export = started.elapsed();
                let refused = rejected.items.min(n);
                self.counters
                    .exported
                    .fetch_add(n - refused, Ordering::Relaxed);
                if refused > 0 {
                    self.counters.failed.fetch_add(refused, Ordering::Relaxed);
                    if self.fail_warn.allow() {
                        tracing::warn!(
                            target: "axi_obs_core::export",
                            signal = self.counters.signal.as_str(),
                            items = refused,
                            reason = %rejected.message,
                            "the OTLP collector refused part of an export; those items are lost (axi_obs_export_items_total{{outcome=\"failed\"}})"
                        );
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.counters.failed.fetch_add(n, Ordering::Relaxed);
                if self.fail_warn.allow() {
                    tracing::warn!(
                        target: "axi_obs_core::export",
                        signal = self.counters.signal.as_str(),
                        items = n,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        error = %e,
                        "OTLP export failed; the items are lost (axi_obs_export_items_total{{outcome=\"failed\"}})"
                    );
                }
                Err(e)
            }
        }
    }

    fn report_drops(&mut self) {
        let dropped = self.counters.dropped.load(Ordering::Relaxed);
        if dropped > self.reported_drops && self.drop_warn.allow() {
            tracing::warn!(
                target: "axi_obs_core::export",
                signal = self.counters.signal.as_str(),
                dropped = dropped - self.reported_drops,
                total_dropped = dropped,
                "the OTLP export queue was full; items were dropped (axi_obs_export_items_total{{outcome=\"dropped\"}})"
            );
            self.reported_drops = dropped;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;
    use std::time::{Duration, Instant};

    use super::{Control, ControlHandle};

    #[test]
    fn a_flush_that_could_not_be_queued_says_so() {
        let (handle, rx) = ControlHandle::channel();
        let mut replies = Vec::new();
        while {
            let (tx, reply) = std_mpsc::channel();
            replies.push(reply);
            handle
                .tx
                .try_send(Control::Flush(tx, Instant::now()))
                .is_ok()
        } {}
        let full = handle.flush(Duration::from_millis(10));
        assert!(full.unwrap_err().contains("not run"));
        // Once the exporter is gone there is nothing to flush: success.
        drop(rx);
        assert_eq!(handle.flush(Duration::from_millis(10)), Ok(()));
    }
}
