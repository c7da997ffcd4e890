//! Driving a [`Dispatcher`] on a clock in a background task: alerts come in through a
//! bounded channel, groups are flushed when due, and shutdown hands the dispatcher back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::dispatch::Dispatcher;
use super::model::AmAlert;
use super::notify::Notifier;
use super::silence::SilenceError;

/// Where the runner reads the time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The default capacity of the runner's inbound channel, in messages.
pub const DEFAULT_RUNNER_CAPACITY: usize = 1024;

/// The longest the runner sleeps without looking at the clock, so that a clock that jumps
/// (or garbage collection of expired entries) is noticed.
const MAX_IDLE: Duration = Duration::from_secs(1);

/// Work to run on the dispatcher inside the task, given the current time.
type WithDispatcher = Box<dyn FnOnce(&mut Dispatcher, i64) + Send>;

enum Command {
    Alerts(Vec<AmAlert>),
    With(WithDispatcher),
    Shutdown(oneshot::Sender<()>),
}

/// A handle to a running dispatcher. Dropping every handle stops the task too.
///
/// ```no_run
/// # async fn demo(d: axi_obs_alert::delivery::Dispatcher) {
/// use axi_obs_alert::delivery::{Notifier, RetryPolicy, Runner, SystemClock};
///
/// let notifier = Notifier::new(reqwest::Client::new(), RetryPolicy::default());
/// let (runner, task) = Runner::spawn(d, notifier, SystemClock, 1024);
/// // runner.send(alerts).await; ...
/// runner.shutdown().await;
/// let dispatcher = task.await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct Runner {
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

impl Runner {
    /// Spawns the task on the current Tokio runtime. Its inbound channel holds `capacity`
    /// messages (at least 1); when it is full, [`send`](Runner::send) waits. The task ends
    /// on [`shutdown`](Runner::shutdown) or when every handle is dropped, and returns the
    /// dispatcher (after persisting its state).
    pub fn spawn(
        mut dispatcher: Dispatcher,
        notifier: Notifier,
        clock: impl Clock,
        capacity: usize,
    ) -> (Runner, JoinHandle<Dispatcher>) {
        let (tx, mut rx) = mpsc::channel::<Command>(capacity.max(1));
        let clock = Arc::new(clock);
        let task = tokio::spawn(async move {
            loop {
                let now = clock.now_ms();
                if let Err(e) = dispatcher.tick(now, &notifier).await {
                    tracing::error!(error = %e, "dispatcher state not persisted");
                }
                let now = clock.now_ms();
                let wait = dispatcher
                    .next_flush_ms()
                    .map_or(MAX_IDLE, |t| {
                        Duration::from_millis(u64::try_from(t - now).unwrap_or(0))
                    })
                    .min(MAX_IDLE);
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(Command::Alerts(alerts)) => {
                            let now = clock.now_ms();
                            for a in alerts {
                                dispatcher.insert(a, now);
                            }
                        }
                        Some(Command::With(f)) => f(&mut dispatcher, clock.now_ms()),
                        Some(Command::Shutdown(done)) => {
                            persist_or_log(&mut dispatcher).await;
                            let _ = done.send(());
                            return dispatcher;
                        }
                        None => {
                            persist_or_log(&mut dispatcher).await;
                            return dispatcher;
                        }
                    },
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
        (Runner { tx }, task)
    }

    /// Hands alerts to the dispatcher (as `POST /api/v2/alerts` does); waits while the
    /// channel is full. Returns `false` when the task has ended.
    pub async fn send(&self, alerts: Vec<AmAlert>) -> bool {
        self.tx.send(Command::Alerts(alerts)).await.is_ok()
    }

    /// Creates a silence (see [`Silences::create`](super::Silences::create)) at the
    /// runner's current time, with `starts_at` / `ends_at` in ms.
    ///
    /// # Errors
    ///
    /// The silence's validation error, or [`RunnerError::Stopped`].
    pub async fn create_silence(
        &self,
        matchers: Vec<super::Matcher>,
        starts_at: i64,
        ends_at: i64,
        created_by: String,
        comment: String,
    ) -> Result<String, RunnerError> {
        self.with_silences(move |d, now| {
            d.silences_mut()
                .create(matchers, starts_at, ends_at, &created_by, &comment, now)
        })
        .await?
        .map_err(RunnerError::Silence)
    }

    /// Expires a silence at the runner's current time.
    ///
    /// # Errors
    ///
    /// The silence's error, or [`RunnerError::Stopped`].
    pub async fn expire_silence(&self, id: String) -> Result<(), RunnerError> {
        self.with_silences(move |d, now| d.silences_mut().expire(&id, now))
            .await?
            .map_err(RunnerError::Silence)
    }

    async fn with_silences<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Dispatcher, i64) -> T + Send + 'static,
    ) -> Result<T, RunnerError> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::With(Box::new(move |d, now| {
            let _ = tx.send(f(d, now));
        }));
        self.tx.send(cmd).await.map_err(|_| RunnerError::Stopped)?;
        rx.await.map_err(|_| RunnerError::Stopped)
    }

    /// Asks the task to persist its state and stop; returns once it has.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Why a [`Runner`] request failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The task has ended.
    #[error("the dispatcher task has stopped")]
    Stopped,
    /// The silence operation was refused.
    #[error(transparent)]
    Silence(#[from] SilenceError),
}

async fn persist_or_log(d: &mut Dispatcher) {
    if let Err(e) = d.persist_async().await {
        tracing::error!(error = %e, "dispatcher state not persisted");
    }
}
