//! A non-blocking log writer with a bounded buffer that counts what it drops.
//!
//! Log calls format a line on the calling thread and append it to a shared, bounded byte
//! buffer; a dedicated writer thread swaps the buffer out and writes whole batches. The caller
//! pays one uncontended lock and a `memcpy`: no allocation per line, and no wake-up system call
//! per line. While lines keep coming, the writer thread polls every 5 ms on its own (lines wait
//! at most that long); producers wake it only when the buffer reaches a quarter of its bound,
//! or when it went to sleep after being idle. When the
//! buffer is full (the disk or the pipe cannot keep up) the line is dropped and
//! `axi_obs_log_lines_dropped_total` is incremented; the writer thread (never the caller, whose
//! standard error may be the same clogged pipe) reports drops on standard error at most every
//! 10 seconds. The host service never waits on its logs.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

use crate::internal::RateLimit;

/// At most this many bytes wait in the buffer, whatever the line count.
const MAX_BUFFERED_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
    /// The writer thread sleeps on the condition variable until woken: the next line must wake
    /// it. (While busy it polls on a short timer instead, and nobody wakes it.)
    waiting: bool,
    closed: bool,
    /// Flush requests: acknowledged once every line buffered before them is written.
    flushes: Vec<mpsc::Sender<()>>,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    max_lines: usize,
    dropped: Arc<AtomicU64>,
    notice: RateLimit,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side, cloned into every log layer. Implements [`MakeWriter`].
#[derive(Clone, Debug)]
pub struct NonBlocking {
    shared: Arc<Shared>,
}

/// Owns the writer thread; flushes and stops it, within a deadline.
#[derive(Debug)]
pub(crate) struct WriterWorker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a writer thread that writes lines to `out`, buffering at most `capacity` lines.
pub(crate) fn non_blocking(
    out: Box<dyn Write + Send>,
    capacity: usize,
    dropped: Arc<AtomicU64>,
) -> io::Result<(NonBlocking, WriterWorker)> {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        wake: Condvar::new(),
        max_lines: capacity.max(1),
        dropped,
        notice: RateLimit::every_secs(10),
    });
    let worker_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("axi-obs-log-writer".into())
        .spawn(move || run(out, &worker_shared))?;
    Ok((
        NonBlocking {
            shared: shared.clone(),
        },
        WriterWorker {
            shared,
            thread: Some(thread),
        },
    ))
}

/// How long the busy writer waits for more lines before writing a batch.
const POLL: Duration = Duration::from_millis(5);
/// Empty polls before the writer sleeps until woken.
const IDLE_POLLS: u32 = 4;

fn run(mut out: Box<dyn Write + Send>, shared: &Shared) {
    let mut batch: Vec<u8> = Vec::new();
    let mut idle = 0u32;
    let mut reported = 0u64;
    loop {
        let dropped = shared.dropped.load(Ordering::Relaxed);
        if dropped > reported && shared.notice.allow() {
            // On this thread: if standard error is clogged too, only the writer waits.
            let _ = writeln!(
                io::stderr(),
                "axi-obs: the log writer cannot keep up; {} log lines dropped ({dropped} so far, \
                 axi_obs_log_lines_dropped_total)",
                dropped - reported
            );
            reported = dropped;
        }
        let (acks, closed, lines) = {
            let mut p = shared.lock();
            while p.bytes.is_empty() && p.flushes.is_empty() && !p.closed {
                let timeout = if idle < IDLE_POLLS {
                    POLL
                } else {
                    p.waiting = true;
                    Duration::from_secs(1)
                };
                idle = idle.saturating_add(1);
                p = shared
                    .wake
                    .wait_timeout(p, timeout)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            idle = 0;
            p.waiting = false;
            std::mem::swap(&mut p.bytes, &mut batch);
            let lines = std::mem::take(&mut p.lines);
            (std::mem::take(&mut p.flushes), p.closed, lines)
        };
        if !batch.is_empty() {
            // A failing sink (full disk, closed pipe) must not stop the thread: the batch is
            // lost, counted as dropped (and reported above on the next turn), and the next one
            // is tried.
            if out.write_all(&batch).is_err() {
                shared.dropped.fetch_add(lines as u64, Ordering::Relaxed);
            }
            batch.clear();
            if batch.capacity() > 4 * 1024 * 1024 {
                batch.shrink_to(64 * 1024);
            }
        }
        let _ = out.flush();
        for ack in acks {
            let _ = ack.send(());
        }
        if closed {
            return;
        }
    }
}

impl NonBlocking {
    fn send(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut p = shared.lock();
        // Full, or shut down (late lines after the guard is gone): drop and count. Never write
        // on the caller's thread: it must not wait on a clogged sink.
        if p.closed
            || p.lines >= shared.max_lines
            || p.bytes.len() + line.len() > MAX_BUFFERED_BYTES
        {
            drop(p);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        p.bytes.extend_from_slice(line);
        p.lines += 1;
        let high_water = p.lines == shared.max_lines / 4 + 1;
        let wake = std::mem::replace(&mut p.waiting, false) || high_water;
        drop(p);
        if wake {
            shared.wake.notify_one();
        }
    }
}

/// One write handle; every `write` call is one line (or part of one).
#[derive(Debug)]
pub struct LineWriter<'a> {
    inner: &'a NonBlocking,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.send(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.send(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for NonBlocking {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { inner: self }
    }
}

impl WriterWorker {
    /// Waits until every line sent before this call is written and flushed, or the deadline.
    /// Returns false on timeout.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        let (tx, rx) = mpsc::channel();
        {
            let mut p = self.shared.lock();
            if p.closed {
                return true;
            }
            p.flushes.push(tx);
            p.waiting = false;
        }
        self.shared.wake.notify_one();
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(()) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        }
    }

    /// Flushes and stops the writer thread. Lines logged afterwards are dropped and counted.
    /// Does not wait past the deadline: a stuck sink cannot hold shutdown (lines logged by
    /// other threads after the flush can still fill a clogged pipe; the thread is then left
    /// to it, not joined).
    pub(crate) fn shutdown(&mut self, deadline: Instant) -> bool {
        let ok = self.flush(deadline);
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = t.join();
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Slow(mpsc::Receiver<()>);
    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_in_order_and_flush_waits_for_them() {
        let sink = Sink::default();
        let dropped = Arc::new(AtomicU64::new(0));
        let (w, mut worker) = non_blocking(Box::new(sink.clone()), 1024, dropped.clone()).unwrap();
        for i in 0..100 {
            w.make_writer()
                .write_all(format!("{i}\n").as_bytes())
                .unwrap();
        }
        assert!(worker.flush(Instant::now() + Duration::from_secs(5)));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..100).map(|i| format!("{i}\n")).collect();
        assert_eq!(text, expected);
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
        // Lines from several threads all arrive, whole.
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        w.make_writer()
                            .write_all(format!("t{t}-{i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(worker.shutdown(Instant::now() + Duration::from_secs(5)));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 100 + 800);
    }

    #[test]
    fn a_stuck_sink_drops_and_counts_instead_of_blocking() {
        let (release, gate) = mpsc::channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let (w, worker) = non_blocking(Box::new(Slow(gate)), 4, dropped.clone()).unwrap();
        w.make_writer().write_all(b"first\n").unwrap();
        // Let the writer take the first batch and get stuck writing it.
        assert!(!worker.flush(Instant::now() + Duration::from_millis(100)));
        for _ in 0..1000 {
            w.make_writer().write_all(b"line\n").unwrap();
        }
        // 4 lines buffered while the writer is stuck: the rest were dropped, not waited for.
        assert_eq!(dropped.load(Ordering::Relaxed), 996);
        drop(release);
    }

    /// A sink that fails every write (a full disk, a closed pipe).
    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_a_failing_sink_loses_are_counted() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (w, mut worker) = non_blocking(Box::new(Failing), 1024, dropped.clone()).unwrap();
        for _ in 0..10 {
            w.make_writer().write_all(b"line\n").unwrap();
        }
        assert!(worker.shutdown(Instant::now() + Duration::from_secs(5)));
        assert_eq!(dropped.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn shutdown_keeps_its_deadline_when_the_sink_clogs_after_the_flush() {
        // Flushing blocks from the `block_from`-th call on (a pipe that fills up just as the
        // writer closes).
        struct ClogsLater {
            calls: Arc<AtomicU64>,
            block_from: Arc<AtomicU64>,
            gate: mpsc::Receiver<()>,
        }
        impl Write for ClogsLater {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= self.block_from.load(Ordering::SeqCst) {
                    let _ = self.gate.recv();
                }
                Ok(())
            }
        }
        let (release, gate) = mpsc::channel();
        let calls = Arc::new(AtomicU64::new(0));
        let block_from = Arc::new(AtomicU64::new(u64::MAX));
        let sink = ClogsLater {
            calls: calls.clone(),
            block_from: block_from.clone(),
            gate,
        };
        let (w, mut worker) =
            non_blocking(Box::new(sink), 1024, Arc::new(AtomicU64::new(0))).unwrap();
        w.make_writer().write_all(b"line\n").unwrap();
        assert!(worker.flush(Instant::now() + Duration::from_secs(5)));
        // Shutdown's own flush passes (one more call); the writer then clogs on its last one,
        // after the flush was acknowledged.
        block_from.store(calls.load(Ordering::SeqCst) + 2, Ordering::SeqCst);
        let ok = worker.shutdown(Instant::now() + Duration::from_millis(300));
        // Returned at its deadline (not joined forever), and said it did not finish.
        assert!(!ok);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            block_from.load(Ordering::SeqCst),
            "the writer is clogged in its last flush"
        );
        drop(release);
    }
}
