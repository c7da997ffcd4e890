//! The wall-clock time of an [`Instant`], without a second clock read per request.
//!
//! A server span starts at the wall-clock time of the request's start `Instant` and ends that
//! plus the measured duration, so span and metric agree exactly. Reading `SystemTime::now()`
//! next to `Instant::now()` costs a second clock read per request; instead each thread keeps
//! one pair of readings (an anchor) and maps an `Instant` to wall-clock time through it.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

/// How long an anchor is used before both clocks are read again. Between readings the two
/// clocks drift apart by at most the NTP slew limit (500 ppm, so 0.5 µs over this time), and a
/// step of the wall clock is seen at most this late.
const REFRESH: Duration = Duration::from_millis(1);

thread_local! {
    static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
}

/// The wall-clock time at `at`.
pub(crate) fn wall_time(at: Instant) -> SystemTime {
    ANCHOR.with(|anchor| {
        if let Some((instant, wall)) = anchor.get()
            && let Some(since) = at.checked_duration_since(instant)
            && since < REFRESH
        {
            return wall + since;
        }
        let (instant, wall) = (Instant::now(), SystemTime::now());
        anchor.set(Some((instant, wall)));
        // `at` is not after `instant`; a wall clock before the epoch maps to the anchor itself.
        wall.checked_sub(instant.saturating_duration_since(at))
            .unwrap_or(wall)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_map_to_the_wall_clock_in_order() {
        // Allowance for the drift between the two clocks and for a refreshed anchor, far above
        // what either can be.
        let slack = Duration::from_millis(1);
        let close = |d: Duration, want: Duration| d.abs_diff(want) < slack;
        let before = SystemTime::now();
        let a = Instant::now();
        let wa = wall_time(a);
        let after = SystemTime::now();
        assert!(wa + slack >= before && wa <= after + slack);
        let wb = wall_time(a + Duration::from_micros(10));
        assert!(close(
            wb.duration_since(wa).unwrap(),
            Duration::from_micros(10)
        ));
        // An instant before the anchor (a request that started before a refresh).
        if let Some(at) = a.checked_sub(Duration::from_millis(5)) {
            let earlier = wall_time(at);
            assert!(close(
                wa.duration_since(earlier).unwrap(),
                Duration::from_millis(5)
            ));
        }
    }
}
