//! The pipeline: the tailer thread feeds a bounded queue; one task takes batches from it
//! (by size and time), sends each through the output with retries, and only when the output
//! acknowledged a batch moves the registry past its lines and persists it.
//!
//! ```text
//!  files ──► tailer thread ──► bounded queue ──► batch ──► output ──ack──► registry (atomic file)
//!            (parse, metrics)   (full: reading pauses)     (retries with backoff)
//! ```
//!
//! One batch is in flight at a time. After each acknowledged batch the registry file is
//! replaced (temporary file, `rename`) before the next batch is sent, so a crash of the
//! process (`kill -9`) re-sends at most the batch that was in flight. The `fsync`s that make
//! the file survive a crash of the machine (of the file and of its folder: under a
//! millisecond on an idle SSD, tens of milliseconds on a busy disk) run at most once per
//! [`SYNC_INTERVAL`], as Filebeat flushes its registry: after a power loss at most that much
//! acknowledged work is sent again. So the disk does not set the pace. At shutdown the
//! registry is written (and synced) whatever happened: it also holds the files found since
//! the last acknowledgement, which a restart with `start_at: end` would otherwise skip.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::access::{AccessMetrics, PathPattern};
use crate::budget::{self, Budget};
use crate::config::{Config, Format};
use crate::names;
use crate::output::{Output, SendError};
use crate::parse::Parser;
use crate::record::{FileKey, Position, Record};
use crate::registry::Registry;
use crate::tailer::{InputSpec, Tailer};
use crate::visitors::UniqueVisitors;

/// How often at most the registry file is `fsync`ed (it is replaced after every batch).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Batching, queueing and retry settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often the tailer polls.
    pub poll_interval: Duration,
    /// Events per batch.
    pub max_events: usize,
    /// A partial batch leaves after this long.
    pub max_wait: Duration,
    /// Bound of the queue between tailer and output, in events.
    pub queue_events: usize,
    /// Bound of the events read and not yet shipped, in bytes (see [`crate::budget`]).
    pub queue_bytes: u64,
    /// First retry wait.
    pub initial_backoff: Duration,
    /// Longest retry wait.
    pub max_backoff: Duration,
}

impl From<&Config> for Settings {
    fn from(c: &Config) -> Self {
        Self {
            poll_interval: c.poll_interval,
            max_events: c.batch.max_events,
            max_wait: c.batch.max_wait,
            queue_events: c.batch.queue_events,
            queue_bytes: c.batch.queue_bytes,
            initial_backoff: c.retry.initial_backoff,
            max_backoff: c.retry.max_backoff,
        }
    }
}

/// The tailer's inputs for a validated configuration; nginx inputs with access metrics share
/// one [`AccessMetrics`] (so its caps hold across inputs).
///
/// # Errors
///
/// When a glob, nginx format or path pattern does not compile ([`Config::parse`] already
/// checked them, so only for configurations built in code).
pub fn input_specs(config: &Config) -> Result<Vec<InputSpec>, String> {
    let am = &config.access_metrics;
    let patterns = am
        .path_patterns
        .iter()
        .map(|p| PathPattern::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut access = AccessMetrics::new(patterns, am.max_paths, am.max_vhosts, &am.default_vhost);
    if am.unique_visitors.enabled {
        access = access.with_unique_visitors(UniqueVisitors::new(
            am.unique_visitors.window,
            am.unique_visitors.include_user_agent,
        ));
    }
    let access = Arc::new(access);
    config
        .inputs
        .iter()
        .map(|i| {
            let parser = match i.format {
                Format::Nginx => Parser::Nginx(
                    i.nginx_format()
                        .map_err(|e| format!("inputs[{}].log_format: {e}", i.name))?,
                ),
                Format::Json => Parser::Json,
                Format::Text => Parser::Text,
            };
            let exclude = i
                .exclude
                .iter()
                .map(|g| {
                    glob::Pattern::new(g).map_err(|e| format!("inputs[{}]: {g:?}: {e}", i.name))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(InputSpec {
                name: i.name.clone(),
                service: i.service.clone().unwrap_or_else(|| i.name.clone()),
                paths: i.paths.clone(),
                exclude,
                access: (i.format == Format::Nginx && i.access_metrics).then(|| access.clone()),
                parser,
                max_line_bytes: i.max_line_bytes,
                encoding: i
                    .encoding
                    .as_deref()
                    .map(crate::config::encoding)
                    .transpose()
                    .map_err(|e| format!("inputs[{}].encoding: {e}", i.name))?
                    .flatten(),
                fingerprint_bytes: i.fingerprint_bytes,
                close_inactive: i.close_inactive,
                start_at: i.start_at,
                multiline: i
                    .multiline
                    .as_ref()
                    .map(|m| m.spec())
                    .transpose()
                    .map_err(|e| format!("inputs[{}].multiline.{e}", i.name))?,
            })
        })
        .collect()
}

/// Why the pipeline could not run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The tailer thread could not be started.
    #[error("cannot start the tailer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The tailer thread panicked: shipping stopped (what was shipped is acknowledged; the
    /// rest is read again at the next start).
    #[error("the tailer stopped with a panic: {0}")]
    TailerPanicked(String),
}

/// Runs until `shutdown` completes: tails, batches, sends, acknowledges. On shutdown the batch
/// being sent is finished (its request is bounded by the output's timeout), retries stop, and
/// what was read but not acknowledged is read again at the next start.
///
/// # Errors
///
/// If the tailer thread cannot be spawned, or panicked.
pub async fn run(
    settings: Settings,
    inputs: Vec<InputSpec>,
    registry: Registry,
    mut output: Box<dyn Output>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PipelineError> {
    let registry_path = registry.path().to_owned();
    let registry = Arc::new(Mutex::new(registry));
    let (tx, mut rx) = mpsc::channel::<Record>(settings.queue_events.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let budget = Budget::new(settings.queue_bytes);
    let tailer =
        Tailer::new(inputs, registry.clone(), tx, stop.clone()).with_budget(budget.clone());
    let poll = settings.poll_interval;
    let thread = std::thread::Builder::new()
        .name("axi-log-tailer".into())
        .spawn(move || tailer.run(poll))
        .map_err(PipelineError::Spawn)?;

    tokio::pin!(shutdown);
    let kind = output.kind();
    // When the registry file was last made durable.
    let mut last_sync = tokio::time::Instant::now();
    let mut batch: Vec<Record> = Vec::with_capacity(settings.max_events);
    'outer: loop {
        // Wait for a first record, then fill the batch until it is full or max_wait passed.
        let first = tokio::select! {
            r = rx.recv() => r,
            () = &mut shutdown => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        let max_wait = tokio::time::sleep(settings.max_wait);
        tokio::pin!(max_wait);
        while batch.len() < settings.max_events {
            // Takes whatever is queued (up to the batch size) per wake-up, not one record.
            let room = settings.max_events - batch.len();
            tokio::select! {
                n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                () = &mut max_wait => break,
                () = &mut shutdown => break 'outer,
            }
        }
        let mut backoff = settings.initial_backoff;
        // The part of the batch being sent: all of it, unless the output found it too large;
        // then halves, down to single events. What was sent is not sent again.
        let (mut start, mut chunk) = (0, batch.len());
        while start < batch.len() {
            let part = &batch[start..(start + chunk).min(batch.len())];
            match output.send(part).await {
                Ok(delivered) => {
                    let dropped = delivered.dropped.min(part.len());
                    metrics::counter!(names::EVENTS_SHIPPED, names::OUTPUT => kind)
                        .increment((part.len() - dropped) as u64);
                    if dropped > 0 {
                        metrics::counter!(names::EVENTS_DROPPED, names::OUTPUT => kind)
                            .increment(dropped as u64);
                    }
                    start += part.len();
                }
                Err(SendError::TooLarge { message }) if part.len() > 1 => {
                    tracing::warn!(error = %message, events = part.len(), "output found the batch too large; sending it in halves");
                    chunk = part.len() / 2;
                }
                Err(SendError::TooLarge { message }) => {
                    tracing::error!(error = %message, "output refused an event as too large; dropped");
                    metrics::counter!(names::EVENTS_DROPPED, names::OUTPUT => kind).increment(1);
                    start += 1;
                }
                Err(SendError::Rejected { message }) => {
                    tracing::error!(error = %message, events = part.len(), "output refused the batch; dropped");
                    metrics::counter!(names::EVENTS_DROPPED, names::OUTPUT => kind)
                        .increment(part.len() as u64);
                    start += part.len();
                }
                Err(SendError::Retryable {
                    message,
                    retry_after,
                }) => {
                    // Spread (±50 %), so that many shippers do not retry in step when a
                    // receiver comes back; a server's Retry-After is kept as given.
                    let wait = retry_after
                        .unwrap_or_else(|| jittered(backoff))
                        .min(settings.max_backoff);
                    tracing::warn!(error = %message, retry_in = ?wait, events = part.len(), "send failed; retrying");
                    metrics::counter!(names::SEND_RETRIES, names::OUTPUT => kind).increment(1);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = &mut shutdown => {
                            // The parts of a split batch sent already are acknowledged, so
                            // the next start does not send them again.
                            if start > 0 {
                                acknowledge(&registry, &batch[..start]);
                            }
                            break 'outer;
                        }
                    }
                    backoff = (backoff * 2).min(settings.max_backoff);
                }
            }
        }
        acknowledge(&registry, &batch);
        // Shipped or dropped: their bytes are the tailer's to read again.
        budget.give(batch.iter().map(budget::weight).sum());
        batch.clear();
        let sync = last_sync.elapsed() >= SYNC_INTERVAL;
        report_write(persist(&registry, &registry_path, sync).await);
        if sync {
            last_sync = tokio::time::Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Closing the queue releases a tailer blocked on a full queue.
    drop(rx);
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    // Always, not only after acknowledgements, and once the tailer has stopped: the files
    // found since the last write (a new file while the output was down) must be known at the
    // next start, or `start_at: end` would skip what they hold.
    report_write(persist(&registry, &registry_path, true).await);
    // A tailer that panicked ended the run as if shut down: say so, so the process exits
    // with an error and a supervisor restarts it.
    if let Ok(Err(panic)) = joined {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string payload".to_owned());
        return Err(PipelineError::TailerPanicked(message));
    }
    Ok(())
}

/// Moves the registry (in memory) past the batch's lines.
fn acknowledge(registry: &Arc<Mutex<Registry>>, batch: &[Record]) {
    let mut last: HashMap<FileKey, u64> = HashMap::new();
    for r in batch {
        let e = last.entry(r.position.key).or_insert(0);
        *e = (*e).max(r.position.end);
    }
    let mut reg = registry.lock().unwrap_or_else(PoisonError::into_inner);
    for (key, end) in last {
        reg.ack(Position { key, end });
    }
}

/// Starts writing the registry's current state (off the runtime's threads), with the
/// `fsync`s when `sync`.
fn persist(
    registry: &Arc<Mutex<Registry>>,
    path: &std::path::Path,
    sync: bool,
) -> tokio::task::JoinHandle<Result<(), crate::registry::RegistryError>> {
    let json = registry
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .to_json();
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || Registry::write_atomically(&path, &json, sync))
}

fn report_write(
    result: Result<Result<(), crate::registry::RegistryError>, tokio::task::JoinError>,
) {
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "registry not written; the next batch writes it again");
            metrics::counter!(names::REGISTRY_ERRORS).increment(1);
        }
        Err(e) => {
            tracing::error!(error = %e, "registry writer failed");
            metrics::counter!(names::REGISTRY_ERRORS).increment(1);
        }
    }
}

/// `d` times a factor in 0.5..1.5, from a randomly keyed hash.
fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(d.as_nanos());
    let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.5 + unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_are_spread() {
        let d = Duration::from_millis(100);
        let waits: std::collections::HashSet<Duration> = (0..20).map(|_| jittered(d)).collect();
        assert!(waits.len() > 1, "{waits:?}");
        assert!(
            waits.iter().all(|w| *w >= d / 2 && *w < d * 3 / 2),
            "{waits:?}"
        );
    }
}
