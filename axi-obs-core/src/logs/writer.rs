//! A non-blocking log writer with a bounded buffer that counts what it drops.
//!
//! Log calls format a line on the calling thread and hand it to a dedicated writer thread
//! through a bounded channel. When the channel is full (the disk or the pipe cannot keep up)
//! the line is dropped, `axi_obs_log_lines_dropped_total` is incremented, and a notice goes to
//! standard error at most every 10 seconds: the host service never waits on its logs.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

use crate::internal::RateLimit;

enum Msg {
    Line(Vec<u8>),
    Flush(mpsc::Sender<()>),
}

/// The sending side, cloned into every log layer. Implements [`MakeWriter`].
#[derive(Clone, Debug)]
pub struct NonBlocking {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dropped: Arc<AtomicU64>,
    notice: RateLimit,
}

/// Owns the writer thread; flushes and stops it, within a deadline.
#[derive(Debug)]
pub(crate) struct WriterWorker {
    tx: Option<SyncSender<Msg>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Starts a writer thread that writes lines to `out`, buffering at most `capacity` lines.
pub(crate) fn non_blocking(
    out: Box<dyn Write + Send>,
    capacity: usize,
    dropped: Arc<AtomicU64>,
) -> io::Result<(NonBlocking, WriterWorker)> {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let thread = std::thread::Builder::new()
        .name("axi-obs-log-writer".into())
        .spawn(move || run(out, rx))?;
    Ok((
        NonBlocking {
            tx: tx.clone(),
            shared: Arc::new(Shared {
                dropped,
                notice: RateLimit::every_secs(10),
            }),
        },
        WriterWorker {
            tx: Some(tx),
            thread: Mutex::new(Some(thread)),
        },
    ))
}

fn run(mut out: Box<dyn Write + Send>, rx: Receiver<Msg>) {
    let mut dirty = false;
    loop {
        let msg = if dirty {
            match rx.try_recv() {
                Ok(m) => m,
                Err(mpsc::TryRecvError::Empty) => {
                    let _ = out.flush();
                    dirty = false;
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        };
        match msg {
            Msg::Line(line) => {
                // A failing sink (full disk, closed pipe) must not stop the thread: the line
                // is lost, the next one is tried.
                let _ = out.write_all(&line);
                dirty = true;
            }
            Msg::Flush(ack) => {
                let _ = out.flush();
                dirty = false;
                let _ = ack.send(());
            }
        }
    }
    let _ = out.flush();
}

impl NonBlocking {
    fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if self.shared.notice.allow() {
                    // The log itself is what is clogged, so the notice goes to stderr.
                    let _ = writeln!(
                        io::stderr(),
                        "axi-obs: the log writer cannot keep up; {n} log lines dropped so far \
                         (axi_obs_log_lines_dropped_total)"
                    );
                }
            }
            Err(TrySendError::Disconnected(msg)) => {
                // The writer thread is gone: write to stderr rather than lose the line.
                if let Msg::Line(line) = msg {
                    let _ = io::stderr().write_all(&line);
                }
            }
        }
    }
}

/// One write handle; every `write` call is sent as one line.
#[derive(Debug)]
pub struct LineWriter<'a> {
    inner: &'a NonBlocking,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.send(buf.to_vec());
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.send(buf.to_vec());
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
        let Some(tx) = &self.tx else { return true };
        let (ack_tx, ack_rx) = mpsc::channel();
        // `send` may block while the channel is full; spin with try_send up to the deadline.
        let mut msg = Msg::Flush(ack_tx);
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    msg = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Disconnected(_)) => return true,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match ack_rx.recv_timeout(left) {
            Ok(()) => true,
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        }
    }

    /// Flushes, then lets the thread finish once every sender is gone. Does not wait for
    /// senders held elsewhere (the installed subscriber lives for the whole process).
    pub(crate) fn shutdown(&mut self, deadline: Instant) -> bool {
        let ok = self.flush(deadline);
        self.tx = None;
        // The thread exits when the last sender (held by the subscriber) is dropped; joining
        // here could wait forever on a global subscriber, so it is detached.
        drop(
            self.thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
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
        let (w, worker) = non_blocking(Box::new(sink.clone()), 1024, dropped.clone()).unwrap();
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
    }

    #[test]
    fn a_stuck_sink_drops_and_counts_instead_of_blocking() {
        let (release, gate) = mpsc::channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let (w, worker) = non_blocking(Box::new(Slow(gate)), 4, dropped.clone()).unwrap();
        for _ in 0..1000 {
            w.make_writer().write_all(b"line\n").unwrap();
        }
        // 1 line held by the stuck writer, 4 buffered: the rest were dropped, not waited for.
        let lost = dropped.load(Ordering::Relaxed);
        assert!(lost >= 995, "dropped {lost}");
        // Flush cannot complete while the sink is stuck: it gives up at the deadline.
        assert!(!worker.flush(Instant::now() + Duration::from_millis(50)));
        drop(release);
    }
}
