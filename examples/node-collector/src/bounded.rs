//! Calls that may hang in the kernel (`statvfs` on a dead NFS server, reading the command line of
//! a process stuck in uninterruptible sleep), each made on a thread of its own and waited for at
//! most a timeout, so a scrape never hangs with them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Why a bounded call gave no answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// An earlier call for the same key ran past its timeout and has not returned: the key is
    /// skipped until it does.
    Unresponsive,
    /// No answer within the timeout.
    Timeout(Duration),
    /// No thread could be started.
    NoThread(String),
}

/// Calls by key (a mount point, a process), at most one in flight per key.
#[derive(Debug)]
pub(crate) struct Bounded {
    /// The thread name of the calls.
    name: &'static str,
    /// Keys whose last call has not returned: when it started, and how long it may take before
    /// the key counts as unresponsive.
    in_flight: Arc<Mutex<HashMap<String, (Instant, Duration)>>>,
}

impl Bounded {
    /// Calls made on threads named `name`.
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            in_flight: Arc::default(),
        }
    }

    /// `call` on a thread of its own, waiting at most `timeout`. While an earlier call for
    /// `key` runs, this one waits for it to return (a concurrent scrape of the same slow
    /// source), and once that call has run past its timeout, `key` is skipped as unresponsive
    /// until it returns (node_exporter's stuck-mount rule). A hung call costs one parked thread,
    /// never more per key.
    pub(crate) fn call<R: Send + 'static>(
        &self,
        key: &str,
        timeout: Duration,
        call: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, Unanswered> {
        // Marked before the call, unmarked by the call's thread when it returns. (The map is
        // plain data: a panic elsewhere leaves it usable.)
        let lock = || {
            self.in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        let waiting = Instant::now();
        loop {
            let mut in_flight = lock();
            match in_flight.get(key) {
                None => {
                    in_flight.insert(key.to_owned(), (Instant::now(), timeout));
                    break;
                }
                Some((started, allowed)) if started.elapsed() >= *allowed => {
                    return Err(Unanswered::Unresponsive);
                }
                Some(_) => {
                    drop(in_flight);
                    if waiting.elapsed() >= timeout {
                        return Err(Unanswered::Timeout(timeout));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (stuck, key_owned) = (self.in_flight.clone(), key.to_owned());
        let spawned = std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || {
                let r = call();
                stuck
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&key_owned);
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            lock().remove(key);
            return Err(Unanswered::NoThread(e.to_string()));
        }
        // A call that first waited for another one gets only what is left of its timeout:
        // one scrape never spends more than `timeout` on a key.
        let left = timeout.saturating_sub(waiting.elapsed());
        rx.recv_timeout(left)
            .map_err(|_| Unanswered::Timeout(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_hangs_times_out_and_its_key_is_skipped_until_it_returns() {
        let calls = Bounded::new("test");
        // Short for the call that hangs; long for those that answer (a loaded machine may
        // take a while to start their threads).
        let quick = Duration::from_millis(50);
        let ample = Duration::from_secs(10);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let hung = calls.call("/mnt/nfs", quick, move || wait.recv().is_ok());
        assert_eq!(hung, Err(Unanswered::Timeout(quick)));
        // Still hanging: skipped at once, no second thread.
        let skipped = calls.call("/mnt/nfs", ample, || true);
        assert_eq!(skipped, Err(Unanswered::Unresponsive));
        // Other keys are not held up.
        assert_eq!(calls.call("/mnt/other", ample, || 7), Ok(7));
        // The hung call returns: the key is asked again.
        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match calls.call("/mnt/nfs", ample, || true) {
                Ok(true) => break,
                _ => {
                    assert!(Instant::now() < deadline, "never asked again");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    #[test]
    fn concurrent_calls_for_a_slow_key_both_get_its_answer() {
        let calls = Arc::new(Bounded::new("test"));
        let ample = Duration::from_secs(10);
        let slow = |calls: Arc<Bounded>| {
            std::thread::spawn(move || {
                calls.call("/mnt/nfs", ample, || {
                    std::thread::sleep(Duration::from_millis(200));
                    1
                })
            })
        };
        let (a, b) = (slow(calls.clone()), slow(calls.clone()));
        assert_eq!(a.join().unwrap(), Ok(1));
        assert_eq!(b.join().unwrap(), Ok(1));
    }
}
