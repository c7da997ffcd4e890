//! Unique visitors per virtual host and time window, estimated with a [`HyperLogLog`]
//! (precision 14: 16 KiB per virtual host, about 1 % error) over `$remote_addr`, or over
//! `$remote_addr` and `$http_user_agent` together.
//!
//! Windows are tumbling and aligned to the Unix epoch (`5m`: 10:00–10:05, 10:05–10:10 ...),
//! by the time lines are read. When a window ends, its estimate per virtual host becomes the
//! gauge `nginx_http_unique_visitors{vhost,window="5m"}`, which therefore always shows the last
//! complete window (0 for a virtual host without requests in it).
//!
//! ```
//! use std::time::Duration;
//! use log_shipper::visitors::UniqueVisitors;
//!
//! let v = UniqueVisitors::new(Duration::from_secs(300), false);
//! let t0 = 1_795_687_200_000_000_000; // 10:00:00, a window start
//! for i in 0..1000 {
//!     v.observe("docs", &format!("198.51.100.{}", i % 250), None, t0 + i);
//! }
//! v.tick(t0 + 300_000_000_000); // 10:05: the window is complete
//! let last = v.last_window();
//! assert_eq!(last.len(), 1);
//! assert!((last[0].1 - 250.0).abs() < 5.0);
//! ```

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::hll::HyperLogLog;
use crate::names;

/// Unique-visitor estimates per virtual host and window. See the [module documentation](self).
#[derive(Debug)]
pub struct UniqueVisitors {
    window_nanos: u64,
    label: String,
    include_user_agent: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Index of the current window (time / window length).
    window: Option<u64>,
    sketches: BTreeMap<String, HyperLogLog>,
    /// Estimates of the last complete window, for every virtual host gauged so far.
    last: BTreeMap<String, f64>,
}

impl UniqueVisitors {
    /// Estimates over windows of `window` (at least one second), keyed by the client address,
    /// and its user agent too when `include_user_agent`.
    pub fn new(window: Duration, include_user_agent: bool) -> Self {
        let window = window.max(Duration::from_secs(1));
        Self {
            window_nanos: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            label: window_label(window),
            include_user_agent,
            state: Mutex::new(State::default()),
        }
    }

    /// The `window` label (`5m`, `1h`, `90s`).
    pub fn window_label(&self) -> &str {
        &self.label
    }

    /// Counts a request from `remote_addr` (with `user_agent`) to `vhost`, read at `now`
    /// (nanoseconds since the Unix epoch).
    pub fn observe(&self, vhost: &str, remote_addr: &str, user_agent: Option<&str>, now: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.roll(&mut state, now);
        let sketch = match state.sketches.get_mut(vhost) {
            Some(s) => s,
            None => state.sketches.entry(vhost.to_owned()).or_default(),
        };
        if self.include_user_agent {
            let mut key =
                Vec::with_capacity(remote_addr.len() + 1 + user_agent.map_or(0, str::len));
            key.extend_from_slice(remote_addr.as_bytes());
            key.push(0);
            key.extend_from_slice(user_agent.unwrap_or("").as_bytes());
            sketch.insert(&key);
        } else {
            sketch.insert(remote_addr.as_bytes());
        }
    }

    /// Ends the current window if `now` is past it (call it now and then, so a window without
    /// requests after it ends too).
    pub fn tick(&self, now: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.roll(&mut state, now);
    }

    /// The estimates of the last complete window by virtual host, as the gauges show them.
    pub fn last_window(&self) -> Vec<(String, f64)> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.last.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    fn roll(&self, state: &mut State, now: u64) {
        let index = now / self.window_nanos;
        let Some(current) = state.window else {
            state.window = Some(index);
            return;
        };
        if index <= current {
            // Same window (or a clock step back: counted in the current one).
            return;
        }
        for v in state.last.values_mut() {
            *v = 0.0;
        }
        // The window that just ended is the last complete one only if no other passed since.
        if index == current + 1 {
            for (vhost, sketch) in &state.sketches {
                state.last.insert(vhost.clone(), sketch.estimate().round());
            }
        }
        for (vhost, v) in &state.last {
            metrics::gauge!(names::UNIQUE_VISITORS,
                names::VHOST => vhost.clone(), names::WINDOW => self.label.clone())
            .set(*v);
        }
        state.sketches.clear();
        state.window = Some(index);
    }
}

/// `5m`, `1h`, `90s`: the largest whole unit.
fn window_label(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000_000_000;
    /// 2026-11-26T10:00:00Z, a multiple of 5 minutes.
    const T0: u64 = 1_795_687_200_000_000_000;

    #[test]
    fn labels() {
        assert_eq!(window_label(Duration::from_secs(300)), "5m");
        assert_eq!(window_label(Duration::from_secs(3600)), "1h");
        assert_eq!(window_label(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn windows_tumble_and_quiet_windows_read_zero() {
        let v = UniqueVisitors::new(Duration::from_secs(300), false);
        for i in 0..100 {
            v.observe("a", &format!("10.0.0.{i}"), None, T0 + i);
            v.observe("b", "10.0.0.1", None, T0 + 4 * MIN);
        }
        // Still in the first window: nothing complete yet.
        v.tick(T0 + 4 * MIN);
        assert!(v.last_window().is_empty());
        // The next window starts with a new visitor for b only.
        v.observe("b", "10.9.9.9", None, T0 + 5 * MIN);
        let last = v.last_window();
        assert_eq!(last.len(), 2);
        // An estimate: 100 distinct addresses, within the sketch's error.
        assert_eq!(last[0].0, "a");
        assert!((last[0].1 - 100.0).abs() <= 2.0, "{last:?}");
        assert_eq!(last[1], ("b".to_owned(), 1.0));
        v.tick(T0 + 10 * MIN);
        assert_eq!(
            v.last_window(),
            [("a".to_owned(), 0.0), ("b".to_owned(), 1.0)]
        );
        // Two windows later with nothing in between: the last complete one was empty.
        v.observe("a", "10.0.0.1", None, T0 + 20 * MIN);
        assert_eq!(
            v.last_window(),
            [("a".to_owned(), 0.0), ("b".to_owned(), 0.0)]
        );
    }

    #[test]
    fn the_user_agent_makes_visitors_distinct_when_asked() {
        for (with_ua, want) in [(false, 1.0), (true, 3.0)] {
            let v = UniqueVisitors::new(Duration::from_secs(60), with_ua);
            for ua in ["curl/8", "Firefox/140", "Firefox/140", "curl/8"] {
                v.observe("a", "10.0.0.1", Some(ua), T0);
            }
            v.observe("a", "10.0.0.1", None, T0);
            v.tick(T0 + MIN);
            assert_eq!(v.last_window(), [("a".to_owned(), want)]);
        }
    }
}
