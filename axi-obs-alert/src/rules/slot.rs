//! When a group is evaluated: Prometheus's consistent evaluation slots.
//!
//! Prometheus does not evaluate every group at the start of its interval. Each group runs at
//! a fixed offset inside its interval, the hash of its name and file modulo the interval
//! (`Group.EvalTimestamp` in `rules/group.go`), so groups spread over the interval instead
//! of all querying at once, and a restart keeps every group on the same slot. The hash is
//! xxHash64 of the label set `{file="<path>", name="<group>"}` in Prometheus's label
//! encoding, so a group given the same path and name here and in Prometheus is evaluated at
//! the same timestamps by both (checked against a real Prometheus in
//! `tests/run_vs_prometheus.rs`).

/// Nanoseconds in a millisecond.
const NS_PER_MS: i64 = 1_000_000;

/// One evaluation of a group: its timestamp and when the next one is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The evaluation timestamp (ms): the latest slot at or before the time asked about,
    /// truncated to the millisecond as Prometheus stores sample timestamps.
    pub ts: i64,
    /// The first millisecond at or after the following slot: when to evaluate next.
    pub next: i64,
}

/// The offset (ns) of a group's slots inside each `interval_ns`: Prometheus's
/// `hash(labels{name, file}) % interval`.
pub fn offset_ns(name: &str, file: &str, interval_ns: i64) -> i64 {
    let Ok(interval) = u64::try_from(interval_ns) else {
        return 0;
    };
    if interval == 0 {
        return 0;
    }
    // `labels.New(name, file)` sorts by label name: `file` first.
    let mut data = Vec::with_capacity(name.len() + file.len() + 18);
    for s in ["file", file, "name", name] {
        put_size(&mut data, s.len());
        data.extend_from_slice(s.as_bytes());
    }
    // Below `interval` (an i64), so it fits.
    (xxhash_rust::xxh64::xxh64(&data, 0) % interval) as i64
}

/// The slot of the group `name` from `file` evaluated every `interval_ms` at `now_ms`
/// (Prometheus's `EvalTimestamp`, in nanoseconds as there, then cut to milliseconds).
pub fn slot(name: &str, file: &str, now_ms: i64, interval_ms: i64) -> Slot {
    let interval = interval_ms.max(1).saturating_mul(NS_PER_MS);
    let offset = offset_ns(name, file, interval);
    let adjusted = now_ms.saturating_mul(NS_PER_MS) - offset;
    let ts = adjusted - adjusted.rem_euclid(interval) + offset;
    let next = ts + interval;
    Slot {
        ts: ts.div_euclid(NS_PER_MS),
        next: next.div_euclid(NS_PER_MS) + i64::from(next.rem_euclid(NS_PER_MS) != 0),
    }
}

/// Appends the length prefix of a name or value in Prometheus's label encoding
/// (`stringlabels`, the default build): one byte below 255, else 255 and three bytes, least
/// significant first.
fn put_size(out: &mut Vec<u8>, v: usize) {
    if v < 255 {
        out.push(v as u8);
    } else {
        out.extend_from_slice(&[255, v as u8, (v >> 8) as u8, (v >> 16) as u8]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_one_byte_below_255_else_four() {
        let mut v = Vec::new();
        put_size(&mut v, 4);
        put_size(&mut v, 254);
        put_size(&mut v, 300);
        assert_eq!(v, [4, 254, 255, 0x2c, 0x01, 0x00]);
    }

    #[test]
    fn slots_are_the_interval_apart_at_the_groups_offset() {
        let interval = 15_000;
        let off = offset_ns("api", "/etc/rules/api.yml", interval * NS_PER_MS);
        assert!((0..interval * NS_PER_MS).contains(&off));
        let now = 1_800_000_000_123;
        let s = slot("api", "/etc/rules/api.yml", now, interval);
        assert!(s.ts <= now && now - s.ts < interval, "{s:?}");
        assert_eq!(
            (s.ts * NS_PER_MS).rem_euclid(interval * NS_PER_MS) / NS_PER_MS,
            off / NS_PER_MS
        );
        assert!(s.next > now && s.next - s.ts >= interval && s.next - s.ts <= interval + 1);
        // Asked again anywhere before the next slot: the same slot; at the next: the next.
        assert_eq!(
            slot("api", "/etc/rules/api.yml", s.next - 1, interval).ts,
            s.ts
        );
        let after = slot("api", "/etc/rules/api.yml", s.next, interval);
        assert_eq!(after.ts, s.ts + interval);
    }

    #[test]
    fn groups_spread_over_the_interval() {
        let offsets: std::collections::BTreeSet<i64> = (0..20)
            .map(|i| offset_ns(&format!("g{i}"), "rules.yml", 60_000 * NS_PER_MS) / NS_PER_MS)
            .collect();
        assert!(offsets.len() >= 19, "{offsets:?}");
        assert_ne!(
            offset_ns("g", "a.yml", 60_000 * NS_PER_MS),
            offset_ns("g", "b.yml", 60_000 * NS_PER_MS),
            "the file is part of the identity"
        );
    }
}
