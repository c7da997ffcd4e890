//! The bound on the bytes of events read but not yet shipped.
//!
//! The queue between the tailer and the output is bounded in events (`queue_events`), but
//! an event can be a megabyte (`max_line_bytes`), or a joined multiline event many of them:
//! 4,096 events could hold gigabytes. The budget bounds their bytes too: the tailer takes an
//! event's [`weight`] before queuing it, waiting while the budget is spent (reading pauses,
//! as for a full queue), and the pipeline gives it back once the event's batch has been
//! shipped or dropped. Queued events and the batch being sent together stay within it.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use crate::record::{Record, Value};

/// The default bound: 64 MiB of events read ahead of the output.
pub const DEFAULT_QUEUE_BYTES: u64 = 64 << 20;

/// A byte budget shared by the tailer (which takes) and the pipeline (which gives back).
#[derive(Clone, Debug)]
pub struct Budget {
    inner: Arc<(Mutex<u64>, Condvar)>,
    capacity: u64,
}

impl Budget {
    /// A budget of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self {
            inner: Arc::new((Mutex::new(0), Condvar::new())),
            capacity: capacity.max(1),
        }
    }

    /// A budget that never makes anyone wait.
    pub fn unbounded() -> Self {
        Self::new(u64::MAX)
    }

    /// Takes `n` bytes, waiting until `deadline` at most for them to be given back; false
    /// when they were not taken by then. An event larger than the whole budget is taken
    /// when nothing else is held, so it waits but is never refused.
    pub fn take(&self, n: u64, deadline: Instant) -> bool {
        let (held, freed) = &*self.inner;
        let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *held == 0 || held.saturating_add(n) <= self.capacity {
                *held = held.saturating_add(n);
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            held = freed
                .wait_timeout(held, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Gives `n` bytes back, waking a tailer waiting for them.
    pub fn give(&self, n: u64) {
        let (held, freed) = &*self.inner;
        let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
        *held = held.saturating_sub(n);
        freed.notify_all();
    }

    /// The bytes taken and not given back.
    pub fn held(&self) -> u64 {
        *self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What an event counts for in the budget: its text (body, path, attribute names and
/// values) and a fixed part for the rest of the record.
pub fn weight(r: &Record) -> u64 {
    let attributes: usize = r
        .attributes
        .iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    Value::Str(s) => s.len(),
                    _ => 8,
                }
                + 32
        })
        .sum();
    (r.body.len() + r.path.len() + attributes + 128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn takes_wait_for_what_is_given_back() {
        let b = Budget::new(100);
        let soon = || Instant::now() + Duration::from_millis(20);
        assert!(b.take(60, soon()));
        assert!(!b.take(60, soon()), "over the budget");
        assert!(b.take(40, soon()));
        assert_eq!(b.held(), 100);
        let giver = {
            let b = b.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                b.give(100);
            })
        };
        assert!(b.take(60, Instant::now() + Duration::from_secs(5)), "woken");
        giver.join().unwrap();
        // Larger than the whole budget: taken alone.
        b.give(60);
        assert!(b.take(1000, soon()));
        assert!(!b.take(1, soon()));
        b.give(1000);
        assert_eq!(b.held(), 0);
    }
}
