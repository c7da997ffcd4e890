//! The bounded queue and thread that run hooks off the deploying thread.
//!
//! [`Dispatcher::send`] never blocks: it puts the event in a bounded queue (default
//! capacity [`DEFAULT_CAPACITY`]) and returns. One thread, named `axi-deploy-hooks`, takes
//! events in order and calls every hook in the order they were added.
//!
//! **When the queue is full, the newest event is dropped**: `send` returns `false`, the drop
//! is counted in [`DispatcherStats::dropped`] and in
//! [`axi_deploy_hook_events_dropped_total`](crate::names::HOOK_EVENTS_DROPPED_METRIC), and a
//! warning is logged at most once every 10 s. A slow or stuck hook therefore delays other
//! hooks but never the deployment. Size the queue for your burst (a deployment emits
//! 2 + 2 × steps events). A hook that returns an error or panics is counted in
//! [`DispatcherStats::failures`] and
//! [`axi_deploy_hook_failures_total{hook}`](crate::names::HOOK_FAILURES_METRIC) and logged
//! (rate-limited); the next hook and the next event still run.
//!
//! ```
//! use axi_obs_deploy::dispatch::Dispatcher;
//! use axi_obs_deploy::hook::HookError;
//! use axi_obs_deploy::{Event, Tracker};
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! let dispatcher = Dispatcher::builder()
//!     .hook(move |e: &Event| -> Result<(), HookError> {
//!         sink.lock().unwrap().push(e.kind.type_name());
//!         Ok(())
//!     })
//!     .build()?;
//! let tracker = Tracker::new(dispatcher);
//! tracker.start("shop", "prod", "1.0.0").succeed();
//! assert!(tracker.dispatcher().flush(Duration::from_secs(5)));
//! assert_eq!(*seen.lock().unwrap(), ["started", "succeeded"]);
//! # Ok::<(), axi_obs_deploy::dispatch::DispatchError>(())
//! ```

use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::hook::Hook;
use crate::names;

/// Default queue capacity, in events.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Default time [`Dispatcher`]'s `Drop` waits for queued events to be handled.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A recorder shared with the hook thread.
pub type SharedRecorder = Arc<dyn metrics::Recorder + Send + Sync>;

/// Why a dispatcher could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The operating system refused a thread.
    #[error("cannot spawn the deploy hook thread `axi-deploy-hooks`")]
    Spawn(#[source] std::io::Error),
}

/// Counts of what went through a dispatcher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatcherStats {
    /// Events queued.
    pub accepted: u64,
    /// Events dropped because the queue was full or the dispatcher shut down.
    pub dropped: u64,
    /// Events every hook has been called with.
    pub handled: u64,
    /// Hook calls that returned an error or panicked.
    pub failures: u64,
}

/// Builds a [`Dispatcher`].
#[must_use]
pub struct DispatcherBuilder {
    capacity: NonZeroUsize,
    hooks: Vec<Box<dyn Hook>>,
    recorder: Option<SharedRecorder>,
    dispatch: Option<tracing::Dispatch>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for DispatcherBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field("capacity", &self.capacity)
            .field(
                "hooks",
                &self.hooks.iter().map(|h| h.name()).collect::<Vec<_>>(),
            )
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl DispatcherBuilder {
    /// Queue capacity in events. Defaults to [`DEFAULT_CAPACITY`].
    pub fn capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Adds a hook; hooks run in the order added.
    pub fn hook(mut self, hook: impl Hook) -> Self {
        self.hooks.push(Box::new(hook));
        self
    }

    /// Adds an already boxed hook.
    pub fn boxed_hook(mut self, hook: Box<dyn Hook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// The metrics recorder hooks and the dispatcher record into (pass
    /// `Arc::new(capture.recorder().clone())` in tests). Defaults to the global recorder.
    pub fn metrics_recorder(mut self, recorder: SharedRecorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// The `tracing` dispatcher hooks and the dispatcher's own warnings (drops, failures) log
    /// into. Defaults to the caller's default dispatcher at [`build`](Self::build) time if it
    /// has a subscriber, else the global one.
    pub fn tracing_dispatch(mut self, dispatch: tracing::Dispatch) -> Self {
        self.dispatch = Some(dispatch);
        self
    }

    /// How long dropping the dispatcher waits for queued events to be handled. Defaults to
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Starts the hook thread.
    ///
    /// # Errors
    ///
    /// [`DispatchError::Spawn`] if the thread cannot be created.
    pub fn build(self) -> Result<Dispatcher, DispatchError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Event>(self.capacity.get());
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let shared = Arc::new(Shared::default());
        let dispatch = self.dispatch.or_else(|| {
            tracing::dispatcher::get_default(|d| {
                (!d.is::<tracing::subscriber::NoSubscriber>()).then(|| d.clone())
            })
        });
        let thread_dispatch = dispatch.clone();
        let mut hooks = self.hooks;
        let recorder = self.recorder.clone();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("axi-deploy-hooks".into())
            .spawn(move || {
                let run = || {
                    with_recorder(recorder.as_ref(), names::describe_dispatcher);
                    while let Ok(event) = rx.recv() {
                        for hook in &mut hooks {
                            call_hook(hook.as_mut(), &event, &thread_shared);
                        }
                        thread_shared.handled_one();
                    }
                };
                let run = || with_recorder(recorder.as_ref(), run);
                match dispatch {
                    Some(d) => tracing::dispatcher::with_default(&d, run),
                    None => run(),
                }
                let _ = done_tx.send(());
            })
            .map_err(DispatchError::Spawn)?;
        Ok(Dispatcher {
            tx: RwLock::new(Some(tx)),
            shared,
            done: Mutex::new(Some(done_rx)),
            recorder: self.recorder,
            dispatch: thread_dispatch,
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}

fn with_recorder<T>(recorder: Option<&SharedRecorder>, f: impl FnOnce() -> T) -> T {
    match recorder {
        Some(r) => metrics::with_local_recorder(r.as_ref(), f),
        None => f(),
    }
}

fn call_hook(hook: &mut dyn Hook, event: &Event, shared: &Shared) {
    let error = match catch_unwind(AssertUnwindSafe(|| hook.on_event(event))) {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(panic) => panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .map_or_else(|| "panicked".to_owned(), |s| format!("panicked: {s}")),
    };
    shared.failures.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(names::HOOK_FAILURES_METRIC, "hook" => hook.name().to_owned()).increment(1);
    if shared.failure_warn.allow() {
        tracing::warn!(
            target: "axi_obs_deploy",
            {
                hook = hook.name(),
                deploy.id = %event.deployment.id,
                deploy.event = event.kind.type_name(),
                error = %error,
            },
            "deploy hook failed (further failures within 10 s are only counted)"
        );
    }
}

#[derive(Debug, Default)]
struct Shared {
    accepted: AtomicU64,
    dropped: AtomicU64,
    failures: AtomicU64,
    handled: Mutex<u64>,
    handled_cv: Condvar,
    drop_warn: RateLimit,
    failure_warn: RateLimit,
}

impl Shared {
    fn handled_one(&self) {
        *self.handled.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.handled_cv.notify_all();
    }

    fn handled(&self) -> u64 {
        *self.handled.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Allows one action per 10 s.
#[derive(Debug, Default)]
struct RateLimit(Mutex<Option<Instant>>);

impl RateLimit {
    fn allow(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// Runs hooks on its own thread, fed through a bounded queue. See the
/// [module documentation](self).
///
/// Dropping it closes the queue and waits up to the shutdown timeout for queued events to be
/// handled; a hook still stuck after that is left to finish on its own thread.
pub struct Dispatcher {
    tx: RwLock<Option<SyncSender<Event>>>,
    shared: Arc<Shared>,
    done: Mutex<Option<Receiver<()>>>,
    recorder: Option<SharedRecorder>,
    dispatch: Option<tracing::Dispatch>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A builder with no hooks, capacity [`DEFAULT_CAPACITY`].
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder {
            capacity: NonZeroUsize::new(DEFAULT_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            hooks: Vec::new(),
            recorder: None,
            dispatch: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }

    /// Queues `event` for the hooks without blocking; `false` if it was dropped (queue full
    /// or dispatcher shut down), which is counted.
    pub fn send(&self, event: Event) -> bool {
        let tx = self.tx.read().unwrap_or_else(PoisonError::into_inner);
        let result = match tx.as_ref() {
            Some(tx) => tx.try_send(event),
            None => Err(TrySendError::Disconnected(event)),
        };
        drop(tx);
        match result {
            Ok(()) => {
                self.shared.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                let (reason, event) = match e {
                    TrySendError::Full(ev) => ("queue full", ev),
                    TrySendError::Disconnected(ev) => ("dispatcher shut down", ev),
                };
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                with_recorder(self.recorder.as_ref(), || {
                    metrics::counter!(names::HOOK_EVENTS_DROPPED_METRIC).increment(1);
                });
                if self.shared.drop_warn.allow() {
                    let warn = || {
                        tracing::warn!(
                            target: "axi_obs_deploy",
                            {
                                deploy.id = %event.deployment.id,
                                deploy.event = event.kind.type_name(),
                                reason,
                            },
                            "deploy event dropped before the hooks (further drops within 10 s are only counted)"
                        )
                    };
                    match &self.dispatch {
                        Some(d) => tracing::dispatcher::with_default(d, warn),
                        None => warn(),
                    }
                }
                false
            }
        }
    }

    /// What went through so far.
    pub fn stats(&self) -> DispatcherStats {
        DispatcherStats {
            accepted: self.shared.accepted.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            handled: self.shared.handled(),
            failures: self.shared.failures.load(Ordering::Relaxed),
        }
    }

    /// Waits until every event accepted before this call has been handled by every hook, or
    /// `timeout` passes; `true` if they were.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.shared.accepted.load(Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        let mut handled = self
            .shared
            .handled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *handled < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            handled = self
                .shared
                .handled_cv
                .wait_timeout(handled, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Closes the queue (later events are dropped and counted) and waits up to `timeout` for
    /// the queued ones to be handled; `true` if the hook thread finished.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.tx
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let done = self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match done {
            // A closed channel means the thread is gone too.
            Some(rx) => !matches!(rx.recv_timeout(timeout), Err(RecvTimeoutError::Timeout)),
            None => true,
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.shutdown(self.shutdown_timeout);
    }
}
