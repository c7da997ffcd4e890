//! The tailer: expands the inputs' globs every poll interval, follows each file by identity
//! (device, inode and a fingerprint of its first bytes), reads new complete lines, parses them
//! and hands them to the pipeline through a bounded channel. When the channel is full the
//! tailer waits: reading pauses under backpressure, nothing is dropped.
//!
//! | what happens to a file | what the tailer does |
//! |---|---|
//! | renamed (logrotate `create`), new file at the old path | keeps the renamed file open and reads it to its end (the writer may still append until it reopens), then closes it after `close_inactive` without data; the new file is a new identity, read from 0. A file already closed for `close_inactive` that was written to and renamed out of the globs between two scans is found again in its folder by inode and read to its end too |
//! | renamed to a name the globs still match | the same file (same identity): reading goes on |
//! | truncated in place (`copytruncate`) | size below the read position, or different first bytes: a new generation read from 0 |
//! | deleted | read to its end through the open descriptor, closed after `close_inactive` |
//! | created (and perhaps rotated away) while the output is down or slow | found all the same: while the tailer waits for room in the queue it still expands the globs every poll interval, and holds new files open until their lines can be read (one descriptor each: a long outage with frequent rotation holds as many files, and the disk space of deleted ones, until the output takes their lines) |
//! | inode reused by a new file | the fingerprint differs from the registry's: read from 0 |
//! | line longer than `max_line_bytes` | cut (`log.flags: truncated`), counted, the rest skipped |
//! | last line without newline | held until the newline arrives (or the file is let go of for good) |
//!
//! For no loss across a restart during rotation, let the globs match the rotated name too
//! (`access.log*` with `exclude: ["*.gz"]`): a file renamed out of the globs cannot be found
//! again after a restart. With `copytruncate`, do the opposite: exclude the copies, which are
//! new files holding lines already shipped.

mod lines;
mod multiline;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::future::Future as _;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::access::AccessMetrics;
use crate::budget::{self, Budget};
use crate::names;
use crate::parse::Parser;
use crate::record::{FileKey, Position, Record, now_unix_nano};
use crate::registry::{Fingerprint, Registry};

use lines::{Line, LineSplitter};
use multiline::Joiner;
pub use multiline::{Match, MultilineSpec};

/// Where the tailer starts reading files without a registry entry found at start-up.
pub use crate::config::StartAt;

/// One input as the tailer runs it.
#[derive(Debug)]
pub struct InputSpec {
    /// Name (the `input` label).
    pub name: String,
    /// `service.name` of its records.
    pub service: String,
    /// Globs.
    pub paths: Vec<String>,
    /// Globs of paths left out.
    pub exclude: Vec<glob::Pattern>,
    /// Parser.
    pub parser: Parser,
    /// Access metrics, for nginx inputs.
    pub access: Option<Arc<AccessMetrics>>,
    /// Longest line kept whole, bytes (as read, before decoding).
    pub max_line_bytes: usize,
    /// The files' character set when not UTF-8: events are decoded to UTF-8 before parsing
    /// (multiline patterns match the decoded text; limits count the file's bytes).
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// Bytes hashed for the identity.
    pub fingerprint_bytes: usize,
    /// Close a file at its end after this long without data.
    pub close_inactive: Duration,
    /// Where files without a registry entry found at start-up are read from.
    pub start_at: StartAt,
    /// Multiline joining, if any.
    pub multiline: Option<MultilineSpec>,
}

/// The tailer stopped because the pipeline closed its channel or asked it to stop.
#[derive(Debug, thiserror::Error)]
#[error("the tailer was stopped")]
pub struct Stopped;

#[derive(Debug)]
struct Tracked {
    input: usize,
    key: FileKey,
    /// The file's birth time, where the file system keeps one (see [`Record`]).
    birth: Option<u64>,
    /// Its modification time when last read: with the size, what tells a closed file changed.
    modified: Option<std::time::SystemTime>,
    path: Arc<str>,
    file: Option<File>,
    lines: LineSplitter,
    fingerprint: Fingerprint,
    last_data: Instant,
    matched: bool,
    size: u64,
    joiner: Option<Joiner>,
}

/// Reads the inputs' files. See the [module documentation](self).
#[derive(Debug)]
pub struct Tailer {
    inputs: Vec<InputSpec>,
    input_names: Vec<Arc<str>>,
    /// `log_shipper_lines_read_total{input}` of each input, looked up once (a lookup per line
    /// costs an allocation and a registry search).
    lines_read: Vec<metrics::Counter>,
    services: Vec<Arc<str>>,
    registry: Arc<Mutex<Registry>>,
    tx: mpsc::Sender<Record>,
    stop: Arc<AtomicBool>,
    files: HashMap<(u64, u64), Tracked>,
    /// The file being read (taken out of `files` meanwhile), so that a scan made while the
    /// queue is full does not take it for a new file.
    busy: Option<(u64, u64)>,
    /// The bytes of events queued and not yet shipped (see [`crate::budget`]).
    budget: Budget,
    /// Whether the last pass left a file unread past [`MAX_READ_PER_PASS`]: the next pass
    /// then starts at once.
    behind: bool,
    first_scan: bool,
    chunk: Vec<u8>,
    /// How often the globs are expanded, also while the queue is full.
    interval: Duration,
    /// When the globs were last expanded.
    last_scan: Instant,
}

fn lock(r: &Mutex<Registry>) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What [`send_within`] did.
enum Wait {
    /// Sent; `waited` when the queue was full first.
    Sent { waited: bool },
    /// The pipeline is gone.
    Closed,
    /// Still no room after the timeout: the record back.
    Full(Record),
}

/// Sends `record`, waiting until `deadline` at most for room in the queue. The thread sleeps
/// until the pipeline makes room (woken by the channel) or the deadline passes.
fn send_within(tx: &mpsc::Sender<Record>, record: Record, deadline: Instant) -> Wait {
    let record = match tx.try_send(record) {
        Ok(()) => return Wait::Sent { waited: false },
        Err(mpsc::error::TrySendError::Closed(_)) => return Wait::Closed,
        Err(mpsc::error::TrySendError::Full(r)) => r,
    };
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut reserve = std::pin::pin!(tx.reserve());
    loop {
        match reserve.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(permit)) => {
                permit.send(record);
                return Wait::Sent { waited: true };
            }
            std::task::Poll::Ready(Err(_)) => return Wait::Closed,
            std::task::Poll::Pending => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Wait::Full(record);
        }
        // A spurious or early wake-up only polls again.
        std::thread::park_timeout(deadline - now);
    }
}

fn fingerprint(file: &File, len: u64) -> std::io::Result<Fingerprint> {
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read_at(&mut buf[filled..], filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(Fingerprint::of(&buf))
}

/// The most of one file read in one pass (1 MiB): files are read in turn, so each gets its
/// share (as Vector's `max_read_bytes`, Filebeat's harvester per file).
pub const MAX_READ_PER_PASS: u64 = 1 << 20;

impl Tailer {
    /// A tailer over `inputs`, resuming from `registry`, sending records to `tx`. It stops
    /// when `stop` is set or `tx` is closed.
    pub fn new(
        inputs: Vec<InputSpec>,
        registry: Arc<Mutex<Registry>>,
        tx: mpsc::Sender<Record>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            input_names: inputs.iter().map(|i| Arc::from(i.name.as_str())).collect(),
            lines_read: inputs
                .iter()
                .map(|i| metrics::counter!(names::LINES_READ, names::INPUT => i.name.clone()))
                .collect(),
            services: inputs
                .iter()
                .map(|i| Arc::from(i.service.as_str()))
                .collect(),
            inputs,
            registry,
            tx,
            stop,
            files: HashMap::new(),
            busy: None,
            budget: Budget::unbounded(),
            behind: false,
            first_scan: true,
            chunk: vec![0; 64 * 1024],
            interval: Duration::from_secs(1),
            last_scan: Instant::now(),
        }
    }

    /// Bounds the bytes of the events it has queued and the output has not yet given back
    /// (by default, only the count of events in the queue is bounded).
    #[must_use]
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// Polls every `interval` until stopped. Blocking: run it on its own thread.
    pub fn run(mut self, interval: Duration) {
        self.interval = interval;
        while !self.stop.load(Ordering::Relaxed) {
            if self.poll().is_err() {
                return;
            }
            // Files left unread past the per-pass bound: read on at once.
            if self.behind {
                continue;
            }
            let deadline = Instant::now() + interval;
            while Instant::now() < deadline {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep((deadline - Instant::now()).min(Duration::from_millis(50)));
            }
        }
    }

    /// One pass: expand the globs, notice new, renamed, truncated and deleted files, read
    /// every open file to its current end, or [`MAX_READ_PER_PASS`] of it (then
    /// [`behind`](Self::behind) says so, and the next pass reads on): one file with a large
    /// backlog, or growing faster than it is shipped, does not keep the others unread.
    ///
    /// # Errors
    ///
    /// [`Stopped`] when the pipeline is gone or stopping.
    pub fn poll(&mut self) -> Result<(), Stopped> {
        self.behind = false;
        self.scan();
        if self.first_scan {
            let tracked: HashSet<(u64, u64)> = self.files.keys().copied().collect();
            let removed = lock(&self.registry).clean_removed(&tracked);
            if removed > 0 {
                tracing::info!(
                    entries = removed,
                    "registry entries of files gone from disk removed"
                );
            }
        }
        self.first_scan = false;
        // Files that left the globs (rotated away, deleted) first: in each pass the old file
        // is read before the new one.
        let mut order: Vec<((u64, u64), bool, Arc<str>)> = self
            .files
            .iter()
            .map(|(k, t)| (*k, t.matched, t.path.clone()))
            .collect();
        order.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
        for (k, _, _) in order {
            self.service_file(k)?;
        }
        self.report();
        Ok(())
    }

    fn scan(&mut self) {
        self.last_scan = Instant::now();
        for t in self.files.values_mut() {
            t.matched = false;
        }
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        for idx in 0..self.inputs.len() {
            let mut paths: Vec<PathBuf> = Vec::new();
            for g in &self.inputs[idx].paths {
                match glob::glob(g) {
                    Ok(it) => paths.extend(it.filter_map(Result::ok)),
                    Err(e) => {
                        tracing::warn!(input = %self.inputs[idx].name, glob = %g, error = %e, "invalid glob")
                    }
                }
            }
            paths.sort();
            paths.dedup();
            for path in paths {
                if self.inputs[idx]
                    .exclude
                    .iter()
                    .any(|p| p.matches_path(&path))
                {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let k = (meta.dev(), meta.ino());
                if !seen.insert(k) || self.busy == Some(k) {
                    // The same file twice (a link, overlapping globs), or the one being read.
                    continue;
                }
                if let Some(t) = self.files.get_mut(&k) {
                    t.matched = true;
                    if *t.path != *path.to_string_lossy() {
                        tracing::info!(from = %t.path, to = %path.display(), "file renamed");
                        t.path = Arc::from(path.to_string_lossy().as_ref());
                        lock(&self.registry).update(t.key, &path, t.fingerprint);
                    }
                    // Reopened when its size or modification time changed since it was last
                    // read: not merely because it ends in an unfinished line, which closing
                    // left to read again (that reopened it every scan, re-reading the line).
                    if t.file.is_none()
                        && (meta.len() != t.size || meta.modified().ok() != t.modified)
                    {
                        match File::open(&path) {
                            Ok(f) => {
                                t.file = Some(f);
                                t.last_data = Instant::now();
                            }
                            Err(e) => {
                                tracing::warn!(path = %path.display(), error = %e, "cannot reopen")
                            }
                        }
                    }
                } else {
                    self.discover(idx, &path);
                }
            }
        }
        // Closed files that are gone from the globs are let go of.
        let gone: Vec<(u64, u64)> = self
            .files
            .iter()
            .filter(|(_, t)| !t.matched && t.file.is_none())
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            let Some(mut t) = self.files.remove(&k) else {
                continue;
            };
            // Closed while quiet, then written to and renamed out of the globs before this
            // scan (logrotate's rename right after a last line, nginx writing until its
            // USR1 reopen): found again in its folder by inode, it is read to its end as a
            // rotated file, then let go of.
            if let Some((path, file)) = renamed_in_folder(&t.path, k, t.lines.line_start()) {
                tracing::info!(from = %t.path, to = %path.display(), "closed file renamed out of the inputs with unread lines: reading them");
                t.path = Arc::from(path.to_string_lossy().as_ref());
                lock(&self.registry).update(t.key, &path, t.fingerprint);
                t.file = Some(file);
                t.last_data = Instant::now();
                self.files.insert(k, t);
                continue;
            }
            lock(&self.registry).forget(t.key, t.lines.line_start());
        }
    }

    fn discover(&mut self, idx: usize, path: &Path) {
        let input = &self.inputs[idx];
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open");
                return;
            }
        };
        let Ok(meta) = file.metadata() else { return };
        let (dev, ino, size) = (meta.dev(), meta.ino(), meta.len());
        let birth = birth_of(&meta);
        let fp_len = size.min(input.fingerprint_bytes as u64);
        let Ok(fp) = fingerprint(&file, fp_len) else {
            return;
        };
        let mut registry = lock(&self.registry);
        if registry.get(dev, ino).is_none()
            && let Some((old_dev, offset)) =
                self.moved_from(&registry, &file, &meta, path, input.fingerprint_bytes)
        {
            tracing::info!(
                path = %path.display(),
                old_device = old_dev,
                device = dev,
                offset,
                "device number changed since the registry was written (a reboot or a remount): resuming"
            );
            registry.move_device(old_dev, ino, dev);
            // Closed under its old number (a remount while running): that one is this file.
            self.files.remove(&(old_dev, ino));
        }
        // The generation goes up whenever the content under an inode starts over, so that the
        // acknowledgements still on their way for the old content (a deleted file's last
        // lines) cannot move the new content's offset.
        let known = registry.generation(dev, ino).unwrap_or(0);
        // The first bytes compared with the registry's: a read error is not other content
        // (that would ship the file again from 0); the file is found again next scan.
        let same_start = match registry.get(dev, ino) {
            Some(e) if e.fingerprint.len <= size => match fingerprint(&file, e.fingerprint.len) {
                Ok(fp) => fp == e.fingerprint,
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "cannot read");
                    return;
                }
            },
            _ => false,
        };
        let (start, generation) = match registry.get(dev, ino) {
            // Same identity: resume, unless it is now shorter than the offset (truncated and
            // refilled), then from 0.
            Some(e) if same_start => match Some(e.offset).filter(|o| *o <= size) {
                Some(o) => (o, known),
                None => (0, known.wrapping_add(1)),
            },
            Some(_) => {
                tracing::info!(path = %path.display(), "inode reused by a new file: reading from the start");
                metrics::counter!(names::FILES_RESTARTED, names::INPUT => input.name.clone())
                    .increment(1);
                (0, known.wrapping_add(1))
            }
            None if self.first_scan && input.start_at == StartAt::End => (size, 0),
            None => (0, 0),
        };
        let key = FileKey {
            dev,
            ino,
            generation,
        };
        registry.track(key, path, fp, start);
        drop(registry);
        tracing::info!(path = %path.display(), offset = start, "tailing");
        self.files.insert(
            (dev, ino),
            Tracked {
                input: idx,
                key,
                birth,
                modified: meta.modified().ok(),
                path: Arc::from(path.to_string_lossy().as_ref()),
                file: Some(file),
                lines: LineSplitter::new(input.max_line_bytes, start),
                joiner: input
                    .multiline
                    .clone()
                    .map(|m| Joiner::new(m, input.max_line_bytes)),
                fingerprint: fp,
                last_data: Instant::now(),
                matched: true,
                size,
            },
        );
    }

    /// The registry entry, under another device number, of the file `path` just found as
    /// `meta` (opened as `file`): its old device and offset. A match has the same inode, the same first
    /// bytes (a fingerprint of at least one byte), is not a file being read (one closed as
    /// inactive is taken over: a remount while running), and its old
    /// device and inode are no longer at its path (else it is another file system's file
    /// with the same inode number). It must also have the same path, unless its fingerprint
    /// is the input's full `fingerprint_bytes` (a file rotated while the shipper was down).
    /// Several: the one at the same path.
    fn moved_from(
        &self,
        registry: &Registry,
        file: &File,
        meta: &std::fs::Metadata,
        path: &Path,
        fingerprint_bytes: usize,
    ) -> Option<(u64, u64)> {
        let size = meta.len();
        registry
            .on_other_devices(meta.dev(), meta.ino())
            .filter(|e| {
                e.fingerprint.len > 0
                    && e.fingerprint.len <= size
                    && (e.path == path || e.fingerprint.len >= fingerprint_bytes as u64)
                    // A file being read keeps its identity; one closed as inactive before a
                    // remount renumbered its device is taken over.
                    && self
                        .files
                        .get(&(e.dev, e.ino))
                        .is_none_or(|t| t.file.is_none())
            })
            .filter(|e| {
                std::fs::metadata(&e.path).map_or(true, |m| (m.dev(), m.ino()) != (e.dev, e.ino))
                    && fingerprint(file, e.fingerprint.len).ok() == Some(e.fingerprint)
            })
            .min_by_key(|e| e.path != path)
            .map(|e| (e.dev, e.offset))
    }

    /// Checks a tracked file for truncation, reads it to its end, closes it when inactive.
    fn service_file(&mut self, k: (u64, u64)) -> Result<(), Stopped> {
        let Some(mut t) = self.files.remove(&k) else {
            return Ok(());
        };
        self.busy = Some(k);
        let result = self.service_tracked(&mut t);
        self.busy = None;
        let keep = match &result {
            Ok(keep) => *keep,
            Err(_) => true,
        };
        if keep {
            self.files.insert(k, t);
        }
        result.map(|_| ())
    }

    fn service_tracked(&mut self, t: &mut Tracked) -> Result<bool, Stopped> {
        let Some(file) = t.file.as_ref() else {
            return Ok(true);
        };
        let input = &self.inputs[t.input];
        let meta = file.metadata().ok();
        let size = meta.as_ref().map_or(t.size, std::fs::Metadata::len);
        t.size = size;
        t.modified = meta.as_ref().and_then(|m| m.modified().ok());
        // Another birth time: deleted and created again on the same inode (reopened after
        // being closed as inactive), even with the same first bytes and a larger size.
        let birth = meta.as_ref().and_then(birth_of);
        let reborn = birth.is_some() && t.birth.is_some() && birth != t.birth;
        let truncated = size < t.lines.read_pos();
        // A read error is not new content: the file is looked at again next pass (taken as
        // rewritten, a flaky mount would have it shipped again from 0).
        let same_start = if truncated || reborn || t.fingerprint.len == 0 {
            true
        } else {
            match fingerprint(file, t.fingerprint.len) {
                Ok(fp) => fp == t.fingerprint,
                Err(e) => {
                    tracing::warn!(path = %t.path, error = %e, "read failed");
                    return Ok(true);
                }
            }
        };
        let rewritten = !truncated && (reborn || !same_start);
        let fingerprint_bytes = input.fingerprint_bytes as u64;
        if truncated || rewritten {
            tracing::info!(path = %t.path, size, read = t.lines.read_pos(), "file truncated or rewritten: reading from the start");
            metrics::counter!(names::FILES_RESTARTED, names::INPUT => input.name.clone())
                .increment(1);
            // Lines of the old content waiting to be joined are complete now.
            if let Some(event) = t.joiner.as_mut().and_then(Joiner::take)
                && !self.emit(t, event, now_unix_nano())
            {
                return Err(Stopped);
            }
            t.key.generation = t.key.generation.wrapping_add(1);
            t.birth = birth.or(t.birth);
            t.lines.reset(0);
            t.fingerprint = fingerprint(file, size.min(fingerprint_bytes)).unwrap_or_default();
            lock(&self.registry).track(t.key, Path::new(&*t.path), t.fingerprint, 0);
        } else if t.fingerprint.len < fingerprint_bytes
            && size > t.fingerprint.len
            && let Ok(fp) = fingerprint(file, size.min(fingerprint_bytes))
        {
            t.fingerprint = fp;
            lock(&self.registry).update(t.key, Path::new(&*t.path), fp);
        }
        let read = self.read_available(t)?;
        if let Some(event) = t
            .joiner
            .as_mut()
            .and_then(|j| j.flush_stale(Instant::now()))
            && !self.emit(t, event, now_unix_nano())
        {
            return Err(Stopped);
        }
        if read > 0 {
            t.last_data = Instant::now();
            return Ok(true);
        }
        let input = &self.inputs[t.input];
        if t.last_data.elapsed() < input.close_inactive {
            return Ok(true);
        }
        t.file = None;
        if t.matched {
            // Quiet for close_inactive: a pending joined event is complete.
            if let Some(event) = t.joiner.as_mut().and_then(Joiner::take)
                && !self.emit(t, event, now_unix_nano())
            {
                return Err(Stopped);
            }
            // Still wanted: reopened when it grows; an unfinished line is read again then.
            let start = t.lines.line_start();
            t.lines.reset(start);
            tracing::debug!(path = %t.path, "closed inactive file");
            Ok(true)
        } else {
            // Rotated away or deleted, and quiet: the last line without newline is final.
            let now = now_unix_nano();
            if let Some(line) = t.lines.finish()
                && !self.deliver(t, line, now)
            {
                return Err(Stopped);
            }
            if let Some(event) = t.joiner.as_mut().and_then(Joiner::take)
                && !self.emit(t, event, now)
            {
                return Err(Stopped);
            }
            lock(&self.registry).forget(t.key, t.lines.read_pos());
            tracing::info!(path = %t.path, "finished rotated or deleted file");
            Ok(false)
        }
    }

    /// Whether the last [`poll`](Self::poll) left a file unread past [`MAX_READ_PER_PASS`].
    pub fn behind(&self) -> bool {
        self.behind
    }

    /// Reads `t` to its current end, or [`MAX_READ_PER_PASS`] of it (whole chunks). Returns
    /// the number of bytes read.
    fn read_available(&mut self, t: &mut Tracked) -> Result<u64, Stopped> {
        let Some(file) = t.file.take() else {
            return Ok(0);
        };
        let mut chunk = std::mem::take(&mut self.chunk);
        let mut total = 0u64;
        let result = loop {
            if self.stop.load(Ordering::Relaxed) {
                break Err(Stopped);
            }
            if total >= MAX_READ_PER_PASS {
                self.behind = true;
                break Ok(());
            }
            let n = match file.read_at(&mut chunk, t.lines.read_pos()) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(path = %t.path, error = %e, "read failed");
                    break Ok(());
                }
            };
            total += n as u64;
            let now = now_unix_nano();
            let mut lines = Vec::new();
            t.lines.push(&chunk[..n], |l| {
                lines.push(l);
                true
            });
            let mut ok = true;
            for line in lines {
                if !self.deliver(t, line, now) {
                    ok = false;
                    break;
                }
            }
            if !ok {
                break Err(Stopped);
            }
        };
        self.chunk = chunk;
        t.file = Some(file);
        if total > 0 {
            metrics::counter!(names::BYTES_READ, names::INPUT => self.inputs[t.input].name.clone())
                .increment(total);
        }
        result.map(|()| total)
    }

    /// Counts one line read and passes it through the input's multiline joining (if any)
    /// to [`emit`](Self::emit); false when the pipeline is gone.
    fn deliver(&mut self, t: &mut Tracked, line: Line, observed: u64) -> bool {
        self.lines_read[t.input].increment(1);
        let event = match (t.joiner.as_mut(), self.inputs[t.input].encoding) {
            // The pattern is matched against the decoded text; the event keeps the file's
            // bytes (so `max_line_bytes` counts those), decoded whole in `emit`.
            (Some(j), Some(encoding)) => {
                let text = encoding.decode_without_bom_handling(&line.bytes).0;
                let continuation = j.is_continuation(text.as_bytes());
                j.push_as(line, continuation, Instant::now())
            }
            (Some(j), None) => j.push(line, Instant::now()),
            (None, _) => Some(line),
        };
        match event {
            Some(event) => self.emit(t, event, observed),
            None => true,
        }
    }

    /// Parses and sends one event (a line, or lines joined); false when the pipeline is gone.
    fn emit(&mut self, t: &Tracked, line: Line, observed: u64) -> bool {
        let input = &self.inputs[t.input];
        let name = &self.input_names[t.input];
        if line.truncated {
            metrics::counter!(names::LINES_TRUNCATED, names::INPUT => name.to_string())
                .increment(1);
        }
        let text = match input.encoding {
            // Malformed sequences become U+FFFD, as invalid UTF-8 does below.
            Some(encoding) => match encoding.decode_without_bom_handling(&line.bytes).0 {
                std::borrow::Cow::Owned(text) => text,
                // ASCII only: the bytes are the text.
                std::borrow::Cow::Borrowed(_) => String::from_utf8(line.bytes).unwrap_or_default(),
            },
            None => match String::from_utf8(line.bytes) {
                Ok(s) => s,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            },
        };
        let parsed = input.parser.parse_observed(text, |access| {
            if let Some(m) = &input.access {
                m.observe(access);
            }
        });
        if !parsed.ok {
            metrics::counter!(names::PARSE_ERRORS, names::INPUT => name.to_string()).increment(1);
        }
        let record = Record {
            input: name.clone(),
            service: self.services[t.input].clone(),
            path: t.path.clone(),
            position: Position {
                key: t.key,
                end: line.end,
            },
            file_birth_unix_nano: t.birth,
            time_unix_nano: parsed.time_unix_nano,
            observed_unix_nano: observed,
            level: parsed.level,
            body: parsed.body,
            attributes: parsed.attributes,
            trace_id: parsed.trace_id,
            span_id: parsed.span_id,
            truncated: line.truncated,
        };
        // Waits while the queue is full: this is the backpressure that pauses reading. The
        // globs are still expanded every poll interval meanwhile, so a file created and rotated
        // away during a long output outage is found and held open (its lines are read once
        // the output takes them again), not missed.
        // The scan is due an interval after the last one, whether one long wait or many short
        // ones (an output that is slow but moving) fill it.
        // The bytes first: reading pauses while the events read ahead and not yet shipped
        // hold the whole budget, with the same scans meanwhile.
        let weight = budget::weight(&record);
        while !self.budget.take(weight, self.last_scan + self.interval) {
            if self.stop.load(Ordering::Relaxed) || self.tx.is_closed() {
                return false;
            }
            self.scan();
        }
        let mut record = record;
        loop {
            let due = self.last_scan + self.interval;
            match send_within(&self.tx, record, due) {
                Wait::Sent { waited } => {
                    if waited && Instant::now() >= due {
                        self.scan();
                    }
                    return true;
                }
                Wait::Closed => return false,
                Wait::Full(r) => {
                    if self.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    record = r;
                    self.scan();
                }
            }
        }
    }

    fn report(&self) {
        let now = now_unix_nano();
        for (idx, input) in self.inputs.iter().enumerate() {
            if let Some(access) = &input.access {
                access.tick(now);
            }
            let (mut open, mut lag) = (0u64, 0u64);
            for t in self.files.values().filter(|t| t.input == idx) {
                if t.file.is_some() {
                    open += 1;
                }
                lag += t.size.saturating_sub(t.lines.read_pos());
            }
            metrics::gauge!(names::FILES_OPEN, names::INPUT => input.name.clone()).set(open as f64);
            metrics::gauge!(names::LAG_BYTES, names::INPUT => input.name.clone()).set(lag as f64);
        }
    }
}

/// A file's birth time in nanoseconds since the Unix epoch, where the file system keeps one.
/// The file `dev`/`ino`, last seen at `last_path`, opened under its new name in the same
/// folder, when it holds more than `read_to` bytes (lines not yet read). `None` when it is
/// gone (deleted, or moved to another folder) or has nothing unread.
fn renamed_in_folder(
    last_path: &str,
    (dev, ino): (u64, u64),
    read_to: u64,
) -> Option<(PathBuf, File)> {
    use std::os::unix::fs::DirEntryExt as _;
    let folder = Path::new(last_path).parent()?;
    let entry = std::fs::read_dir(folder)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.ino() == ino)?;
    let path = entry.path();
    let file = File::open(&path).ok()?;
    let meta = file.metadata().ok()?;
    ((meta.dev(), meta.ino()) == (dev, ino) && meta.is_file() && meta.len() > read_to)
        .then_some((path, file))
}

fn birth_of(meta: &std::fs::Metadata) -> Option<u64> {
    meta.created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;
    use crate::registry::Fingerprint;

    /// An input reading `path` as plain text.
    fn text_input(path: &Path, close_inactive: Duration) -> InputSpec {
        InputSpec {
            name: "app".into(),
            service: "app".into(),
            paths: vec![path.display().to_string()],
            exclude: Vec::new(),
            parser: crate::parse::Parser::Text,
            access: None,
            max_line_bytes: 1024,
            encoding: None,
            fingerprint_bytes: 1024,
            close_inactive,
            start_at: StartAt::Beginning,
            multiline: None,
        }
    }

    /// A tailer of `log` alone (its registry beside it), its queue, and the file's
    /// (device, inode).
    fn tail_alone(
        log: &Path,
        close_inactive: Duration,
    ) -> (Tailer, mpsc::Receiver<Record>, (u64, u64)) {
        let meta = std::fs::metadata(log).unwrap();
        let registry = Registry::load(&log.with_file_name("registry.json")).unwrap();
        let (tx, rx) = mpsc::channel(16);
        let tailer = Tailer::new(
            vec![text_input(log, close_inactive)],
            Arc::new(Mutex::new(registry)),
            tx,
            Arc::default(),
        );
        (tailer, rx, (meta.dev(), meta.ino()))
    }

    /// A file with a large backlog is read [`MAX_READ_PER_PASS`] a pass: another file's line
    /// is read in the first pass, not after the whole backlog; the backlog follows in the
    /// next passes, every line once.
    #[test]
    fn a_large_backlog_does_not_keep_other_files_unread() {
        let dir = tempfile::tempdir().unwrap();
        let line = format!("{}\n", "x".repeat(99));
        let lines = 3 * (MAX_READ_PER_PASS as usize) / line.len();
        std::fs::write(dir.path().join("a-big.log"), line.repeat(lines)).unwrap();
        std::fs::write(dir.path().join("b-small.log"), "urgent\n").unwrap();
        let registry = Registry::load(&dir.path().join("registry.json")).unwrap();
        let (tx, mut rx) = mpsc::channel(2 * lines);
        let glob = dir.path().join("*.log");
        let mut tailer = Tailer::new(
            vec![text_input(&glob, Duration::from_secs(60))],
            Arc::new(Mutex::new(registry)),
            tx,
            Arc::default(),
        );
        let mut passes = Vec::new();
        loop {
            tailer.poll().unwrap();
            let read: Vec<Record> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
            passes.push(read);
            if !tailer.behind() {
                break;
            }
        }
        let first = &passes[0];
        assert!(first.iter().any(|r| r.body == "urgent"));
        let big = |p: &Vec<Record>| p.iter().filter(|r| r.body.starts_with('x')).count();
        assert!(
            big(first) < lines / 2,
            "{} of {lines} in the first pass",
            big(first)
        );
        assert!(passes.len() >= 3, "{} passes", passes.len());
        assert_eq!(passes.iter().map(big).sum::<usize>(), lines);
    }

    /// A file closed as inactive while it ends in an unfinished line stays closed until it
    /// changes; then the line is read whole.
    #[test]
    fn a_file_closed_on_an_unfinished_line_stays_closed_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "done\npartial").unwrap();
        let (mut tailer, mut rx, k) = tail_alone(&log, Duration::from_millis(50));
        tailer.poll().unwrap();
        assert!(tailer.files[&k].file.is_some());
        std::thread::sleep(Duration::from_millis(80));
        tailer.poll().unwrap();
        assert!(tailer.files[&k].file.is_none(), "closed as inactive");
        for _ in 0..3 {
            tailer.poll().unwrap();
            assert!(
                tailer.files[&k].file.is_none(),
                "reopened although unchanged"
            );
        }
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, b" end\n").unwrap();
        tailer.poll().unwrap();
        let records: Vec<Record> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let bodies: Vec<&str> = records.iter().map(|r| r.body.as_str()).collect();
        assert_eq!(bodies, ["done", "partial end"]);
        // Each record carries the file's birth time, where the file system keeps one.
        let birth = birth_of(&std::fs::metadata(&log).unwrap());
        assert!(records.iter().all(|r| r.file_birth_unix_nano == birth));
    }

    /// A closed file rewritten in place to the same size (so only its modification time
    /// tells) is reopened and read again; one whose birth time changed (deleted and created
    /// again on the same inode) is read from its start as a new file.
    #[test]
    fn closed_files_rewritten_to_the_same_size_or_reborn_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "aaaa\n").unwrap();
        let (mut tailer, mut rx, k) = tail_alone(&log, Duration::from_millis(50));
        tailer.poll().unwrap();
        std::thread::sleep(Duration::from_millis(80));
        tailer.poll().unwrap();
        assert!(tailer.files[&k].file.is_none(), "closed as inactive");
        // The same inode, the same size, other content.
        std::fs::write(&log, "bbbb\n").unwrap();
        tailer.poll().unwrap();
        let bodies: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|r| r.body)
            .collect();
        assert_eq!(bodies, ["aaaa", "bbbb"]);
        // Born again on this inode with the same first line and more: read from the start,
        // under a new generation.
        let generation = tailer.files[&k].key.generation;
        if let Some(birth) = tailer.files[&k].birth {
            tailer.files.get_mut(&k).unwrap().birth = Some(birth - 1);
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            std::io::Write::write_all(&mut f, b"cccc\n").unwrap();
            tailer.poll().unwrap();
            let bodies: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
                .map(|r| r.body)
                .collect();
            assert_eq!(bodies, ["bbbb", "cccc"]);
            assert_eq!(tailer.files[&k].key.generation, generation + 1);
            assert_eq!(tailer.files[&k].birth, Some(birth));
        } else {
            println!("this file system keeps no birth times: the rebirth half is not run");
        }
    }

    /// A remount while running that renumbered the device of a file closed as inactive: the
    /// file found under its new number takes over the closed one and resumes at its offset
    /// (it was read again from 0).
    #[test]
    fn a_closed_file_renumbered_by_a_remount_resumes_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "a\n").unwrap();
        let (mut tailer, mut rx, (dev, ino)) = tail_alone(&log, Duration::from_millis(50));
        tailer.poll().unwrap();
        std::thread::sleep(Duration::from_millis(80));
        tailer.poll().unwrap();
        assert!(
            tailer.files[&(dev, ino)].file.is_none(),
            "closed as inactive"
        );
        let first: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|r| r.body)
            .collect();
        assert_eq!(first, ["a"]);
        // Acknowledged, then the device renumbered under the closed file: what the tailer
        // and the registry knew was device `old`.
        let old = dev + 1;
        let mut t = tailer.files.remove(&(dev, ino)).unwrap();
        assert!(lock(&tailer.registry).ack(Position { key: t.key, end: 2 }));
        t.key.dev = old;
        tailer.files.insert((old, ino), t);
        lock(&tailer.registry).move_device(dev, ino, old);

        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, b"b\n").unwrap();
        tailer.poll().unwrap();
        let next: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|r| r.body)
            .collect();
        assert_eq!(next, ["b"]);
        assert!(!tailer.files.contains_key(&(old, ino)));
        assert!(tailer.files.contains_key(&(dev, ino)));
        let reg = lock(&tailer.registry);
        assert!(reg.get(old, ino).is_none());
        assert_eq!(reg.get(dev, ino).unwrap().offset, 2);
    }

    /// The first poll leaves out of the registry the files deleted while the shipper was
    /// down; the files it reads stay.
    #[test]
    fn the_first_poll_cleans_the_registry_of_deleted_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "line\n").unwrap();
        let mut registry = Registry::load(&dir.path().join("registry.json")).unwrap();
        let gone = FileKey {
            dev: 1,
            ino: 1,
            generation: 0,
        };
        registry.track(gone, &dir.path().join("gone.log"), Fingerprint::of(b"x"), 5);
        let registry = Arc::new(Mutex::new(registry));
        let (tx, _rx) = mpsc::channel(16);
        let mut tailer = Tailer::new(
            vec![text_input(&log, Duration::from_secs(60))],
            registry.clone(),
            tx,
            Arc::default(),
        );
        tailer.poll().unwrap();
        let reg = lock(&registry);
        assert!(reg.get(1, 1).is_none());
        assert_eq!(reg.entries().count(), 1);
    }

    /// An inode the registry knows with other content is a new file: its acknowledgements
    /// carry a new generation, so those still on their way for the old content are refused.
    #[test]
    fn new_content_under_a_known_inode_gets_a_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "new 0\nnew 1\n").unwrap();
        let meta = std::fs::metadata(&log).unwrap();
        let (dev, ino) = (meta.dev(), meta.ino());
        let mut registry = Registry::load(&dir.path().join("registry.json")).unwrap();
        let old = FileKey {
            dev,
            ino,
            generation: 0,
        };
        registry.track(old, &log, Fingerprint::of(b"old content"), 3);
        let registry = Arc::new(Mutex::new(registry));
        let (tx, _rx) = mpsc::channel(16);
        let input = text_input(&log, Duration::from_secs(60));
        let mut tailer = Tailer::new(vec![input], registry.clone(), tx, Arc::default());
        tailer.discover(0, &log);
        let mut reg = lock(&registry);
        assert_eq!(reg.generation(dev, ino), Some(1));
        // A late acknowledgement for the old content does not move the new file's offset.
        assert!(!reg.ack(Position { key: old, end: 500 }));
        assert_eq!(reg.get(dev, ino).unwrap().offset, 0);
    }
}
