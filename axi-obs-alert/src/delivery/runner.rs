//! Driving a [`Dispatcher`] on a clock in a background task: alerts come in through a
//! bounded channel, groups are flushed when due and delivered in tasks of their own (a
//! slow or failing receiver holds up neither other groups nor the API), remediation runs
//! are executed in tasks of their own, and shutdown hands the dispatcher back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::dispatch::{Dispatcher, Flush, deliver_flush};
use super::model::AmAlert;
use super::notify::Notifier;
use super::remediation::{MAX_CONCURRENT_REMEDIATIONS, RemediationOutcome};
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

/// At most this many queued messages are taken between two ticks.
const MAX_BATCH_COMMANDS: usize = 256;

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
/// # async fn demo(d: axi_obs_alert::delivery::Dispatcher) -> Result<(), Box<dyn std::error::Error>> {
/// use axi_obs_alert::delivery::{Notifier, RetryPolicy, Runner, SystemClock, http_client};
///
/// let notifier = Notifier::new(http_client()?, RetryPolicy::default());
/// let (runner, task) = Runner::spawn(d, notifier, SystemClock, 1024);
/// // runner.send(alerts).await; ...
/// runner.shutdown().await;
/// let dispatcher = task.await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Runner {
    tx: mpsc::Sender<Command>,
    clock: Arc<dyn Clock>,
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
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let handle_clock = Arc::clone(&clock);
        let task = tokio::spawn(async move {
            // Deliveries in progress, one task per flushed group; the group ids let a
            // panicked task's group flush again.
            let mut inflight: JoinSet<Delivery> = JoinSet::new();
            let mut flushing: Flushing = HashMap::new();
            // Remediation runs in progress, at most MAX_CONCURRENT_REMEDIATIONS; the others
            // wait in the dispatcher's bounded queue.
            let mut remedying: JoinSet<RemediationOutcome> = JoinSet::new();
            let mut last_write = tokio::time::Instant::now();
            loop {
                start_remediations(&mut dispatcher, &mut remedying, &notifier);
                let now = clock.now_ms();
                for flush in dispatcher.due(now) {
                    if flush.jobs.is_empty() {
                        dispatcher.complete(&flush, &[]);
                        continue;
                    }
                    let id = (flush.group_key.clone(), flush.receiver.clone());
                    let notifier = notifier.clone();
                    let handle = inflight.spawn(async move {
                        let ok = deliver_flush(&notifier, &flush).await;
                        (flush, ok)
                    });
                    flushing.insert(handle.id(), id);
                }
                let mut wait = MAX_IDLE;
                if dispatcher.is_dirty() {
                    let since = last_write.elapsed();
                    if since >= dispatcher.persist_interval() {
                        persist_or_log(&mut dispatcher).await;
                        last_write = tokio::time::Instant::now();
                    } else {
                        wait = dispatcher.persist_interval() - since;
                    }
                }
                let now = clock.now_ms();
                let wait = dispatcher
                    .next_flush_ms()
                    .map_or(wait, |t| {
                        Duration::from_millis(u64::try_from(t - now).unwrap_or(0))
                    })
                    .min(wait);
                let first = tokio::select! {
                    cmd = rx.recv() => cmd,
                    Some(done) = inflight.join_next_with_id(), if !inflight.is_empty() => {
                        delivered(&mut dispatcher, &mut flushing, done);
                        continue;
                    }
                    Some(done) = remedying.join_next(), if !remedying.is_empty() => {
                        remediated(&mut dispatcher, done, clock.now_ms());
                        continue;
                    }
                    () = tokio::time::sleep(wait) => continue,
                };
                // Take what else is already queued before the next flush check, so that a
                // burst of messages costs one check and one state write, not one each.
                let mut cmd = first;
                for _ in 0..MAX_BATCH_COMMANDS {
                    // `Some(reply)` to stop: on a shutdown (whose caller waits for the
                    // reply) or when every handle is dropped (nobody waits).
                    let stop = match cmd {
                        Some(Command::Alerts(alerts)) => {
                            dispatcher.insert_all(alerts, clock.now_ms());
                            None
                        }
                        Some(Command::With(f)) => {
                            f(&mut dispatcher, clock.now_ms());
                            None
                        }
                        Some(Command::Shutdown(done)) => Some(Some(done)),
                        None => Some(None),
                    };
                    // Deliveries and remediation runs in flight get SHUTDOWN_GRACE to
                    // finish; a delivery still unfinished then is not logged and is sent
                    // again after a restart (at least once).
                    if let Some(reply) = stop {
                        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
                        finish_remediations(&mut dispatcher, &mut remedying, &*clock, deadline)
                            .await;
                        finish(&mut dispatcher, &mut inflight, &mut flushing, deadline).await;
                        if let Some(done) = reply {
                            let _ = done.send(());
                        }
                        return dispatcher;
                    }
                    match rx.try_recv() {
                        Ok(next) => cmd = Some(next),
                        Err(_) => break,
                    }
                }
            }
        });
        (
            Runner {
                tx,
                clock: handle_clock,
            },
            task,
        )
    }

    /// The runner's current time (ms since the epoch), from its clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Hands alerts to the dispatcher (as `POST /api/v2/alerts` does); waits while the
    /// channel is full. Returns `false` when the task has ended.
    pub async fn send(&self, alerts: Vec<AmAlert>) -> bool {
        self.tx.send(Command::Alerts(alerts)).await.is_ok()
    }

    /// [`send`](Runner::send) from a thread outside any Tokio runtime (an evaluation thread
    /// such as [`InProcessRules`](crate::inprocess::InProcessRules)'s): waits while the
    /// channel is full. Returns `false` when the task has ended.
    ///
    /// # Panics
    ///
    /// When called from within an asynchronous execution context (use `send` there).
    pub fn blocking_send(&self, alerts: Vec<AmAlert>) -> bool {
        self.tx.blocking_send(Command::Alerts(alerts)).is_ok()
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
        self.update(move |d, now| {
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
        self.update(move |d, now| d.silences_mut().expire(&id, now))
            .await?
            .map_err(RunnerError::Silence)
    }

    /// Runs `f` on the dispatcher inside the task, at the runner's current time, and
    /// returns its result: how the HTTP API reads alerts, groups and silences.
    ///
    /// # Errors
    ///
    /// [`RunnerError::Stopped`] when the task has ended.
    pub async fn inspect<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Dispatcher, i64) -> T + Send + 'static,
    ) -> Result<T, RunnerError> {
        self.update(move |d, now| f(d, now)).await
    }

    /// Runs `f` with write access to the dispatcher inside the task, at the runner's
    /// current time (silence changes are persisted at the next tick).
    ///
    /// # Errors
    ///
    /// [`RunnerError::Stopped`] when the task has ended.
    pub async fn update<T: Send + 'static>(
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

type Delivery = (Flush, Vec<bool>);
type Flushing = HashMap<tokio::task::Id, (String, String)>;

/// How long a shutdown waits for deliveries in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Records a finished delivery task: the outcome of its flush, or, when the task
/// panicked, frees its group to flush again.
fn delivered(
    dispatcher: &mut Dispatcher,
    flushing: &mut Flushing,
    done: Result<(tokio::task::Id, Delivery), tokio::task::JoinError>,
) {
    match done {
        Ok((id, (flush, ok))) => {
            flushing.remove(&id);
            dispatcher.complete(&flush, &ok);
        }
        Err(e) => {
            if let Some((key, receiver)) = flushing.remove(&e.id()) {
                tracing::error!(group = %key, %receiver, error = %e, "delivery task failed");
                dispatcher.abandon(&key, &receiver);
            }
        }
    }
}

/// Waits until `deadline` for the deliveries in flight, then persists.
async fn finish(
    dispatcher: &mut Dispatcher,
    inflight: &mut JoinSet<Delivery>,
    flushing: &mut Flushing,
    deadline: tokio::time::Instant,
) {
    while !inflight.is_empty() {
        match tokio::time::timeout_at(deadline, inflight.join_next_with_id()).await {
            Ok(Some(done)) => delivered(dispatcher, flushing, done),
            Ok(None) | Err(_) => break,
        }
    }
    inflight.abort_all();
    persist_or_log(dispatcher).await;
}

async fn persist_or_log(d: &mut Dispatcher) {
    if let Err(e) = d.persist_async().await {
        tracing::error!(error = %e, "dispatcher state not persisted");
    }
}

/// Starts queued remediation runs while fewer than [`MAX_CONCURRENT_REMEDIATIONS`] are in
/// progress.
fn start_remediations(
    dispatcher: &mut Dispatcher,
    remedying: &mut JoinSet<RemediationOutcome>,
    notifier: &Notifier,
) {
    let free = MAX_CONCURRENT_REMEDIATIONS.saturating_sub(remedying.len());
    if free == 0 {
        return;
    }
    for run in dispatcher.take_remediations(free) {
        let client = notifier.client().clone();
        remedying.spawn(async move { run.execute(&client).await });
    }
}

/// Reports a finished remediation task to the dispatcher.
fn remediated(
    dispatcher: &mut Dispatcher,
    done: Result<RemediationOutcome, tokio::task::JoinError>,
    now_ms: i64,
) {
    match done {
        Ok(outcome) => dispatcher.remediation_done(&outcome, now_ms),
        Err(e) => tracing::error!(error = %e, "remediation task failed"),
    }
}

/// Gives the remediation runs in progress until `deadline` (the deliveries' shutdown
/// grace, shared) to finish, their outcomes logged and counted, then stops them: a program
/// still running is killed. Queued runs are not started; their run was recorded, so they
/// count against the cooldown.
async fn finish_remediations(
    dispatcher: &mut Dispatcher,
    remedying: &mut JoinSet<RemediationOutcome>,
    clock: &dyn Clock,
    deadline: tokio::time::Instant,
) {
    while !remedying.is_empty() {
        match tokio::time::timeout_at(deadline, remedying.join_next()).await {
            Ok(Some(done)) => remediated(dispatcher, done, clock.now_ms()),
            Ok(None) | Err(_) => break,
        }
    }
    remedying.abort_all();
}
