//! The alert as Alertmanager holds it, its fingerprint, and Go's time formats on the wire.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use crate::civil::civil_from_days;
use crate::promql::Labels;

/// A label set or annotation set, sorted by name (Alertmanager's `model.LabelSet`).
pub type LabelSet = BTreeMap<String, String>;

/// FNV-1a 64 offset basis (`hashNew()` in prometheus/common).
const FNV_OFFSET: u64 = 14_695_981_039_346_656_037;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 1_099_511_628_211;
/// The byte Prometheus writes between names and values when hashing label sets.
const SEPARATOR: u8 = 0xff;

/// An alert's identity in Alertmanager: FNV-1a 64 over the sorted labels, each name and value
/// followed by `0xff` (`model.LabelSet.Fingerprint`, `model.LabelsToSignature`). Prints as 16
/// lowercase hex digits (`%016x`), as in the webhook's `fingerprint`.
///
/// ```
/// use axi_obs_alert::delivery::{Fingerprint, LabelSet};
///
/// let ls = LabelSet::from([("alertname".to_string(), "Down".to_string())]);
/// assert_eq!(Fingerprint::of(&ls).to_string().len(), 16);
/// assert_eq!(Fingerprint::of(&LabelSet::new()).0, 0xcbf2_9ce4_8422_2325);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The fingerprint of `labels` (the empty set hashes to the FNV offset basis).
    pub fn of(labels: &LabelSet) -> Fingerprint {
        Fingerprint::of_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The fingerprint of pairs that are already sorted by name with unique names.
    pub fn of_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Fingerprint {
        let mut h = FNV_OFFSET;
        let mut add = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        };
        for (k, v) in pairs {
            k.bytes().for_each(&mut add);
            add(SEPARATOR);
            v.bytes().for_each(&mut add);
            add(SEPARATOR);
        }
        Fingerprint(h)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Converts the crate's label set into a [`LabelSet`].
pub fn label_set(labels: &Labels) -> LabelSet {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Go's zero `time.Time` as JSON prints it; Alertmanager shows it as `endsAt` of firing alerts.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn split_ms(ms: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    // `in_day` is in 0..86_400_000, so every part below fits in u32.
    let in_day = in_day as u32;
    (
        y,
        mo,
        d,
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    )
}

/// Formats milliseconds since the epoch as Go's `time.RFC3339Nano` in UTC, the way
/// `time.Time` marshals to JSON: trailing zeros of the fraction dropped
/// (`2026-11-25T18:55:31Z`, `2026-11-25T18:55:31.5Z`).
pub fn rfc3339_nano(ms: i64) -> String {
    let (y, mo, d, h, mi, s, frac) = split_ms(ms);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Formats milliseconds since the epoch with three fraction digits always present
/// (`2026-11-25T18:55:31.000Z`), as go-openapi's `strfmt.DateTime` does in API v2 bodies.
pub fn rfc3339_millis(ms: i64) -> String {
    let (y, mo, d, h, mi, s, frac) = split_ms(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:03}Z")
}

/// Parses an RFC 3339 timestamp (`Z` or `±hh:mm` offset, optional fraction) into
/// milliseconds since the epoch; Go's zero time (`0001-01-01T00:00:00Z`, in any of its
/// spellings, such as `amtool`'s `0001-01-01T00:00:00.000Z`) gives `Ok(None)`: unset.
///
/// # Errors
///
/// When the text is not RFC 3339.
pub fn parse_rfc3339(s: &str) -> Result<Option<i64>, String> {
    /// Go's zero time, in ms since the Unix epoch.
    const GO_ZERO_MS: i64 = -62_135_596_800_000;
    if s == ZERO_TIME {
        return Ok(None);
    }
    match crate::promqltest::parse_rfc3339_ms(s) {
        Some(GO_ZERO_MS) => Ok(None),
        Some(ms) => Ok(Some(ms)),
        None => Err(format!("invalid RFC 3339 time {s:?}")),
    }
}

/// An alert as Alertmanager keeps it (`types.Alert`): what a client posted, with times in
/// milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmAlert {
    /// Identifying labels.
    pub labels: LabelSet,
    /// Annotations.
    pub annotations: LabelSet,
    /// When it started (ms).
    pub starts_at: i64,
    /// When it ends or ended (ms); `None` while unknown (Alertmanager then fills in
    /// `now + resolve_timeout` on receipt).
    pub ends_at: Option<i64>,
    /// Link back to the source.
    pub generator_url: String,
}

impl AmAlert {
    /// The alert's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.labels)
    }

    /// Whether the alert is resolved at `now_ms`: its end is set and not after `now_ms`
    /// (`types.Alert.ResolvedAt`).
    pub fn resolved_at(&self, now_ms: i64) -> bool {
        self.ends_at.is_some_and(|e| e <= now_ms)
    }

    /// `firing` or `resolved` at `now_ms`.
    pub fn status(&self, now_ms: i64) -> &'static str {
        if self.resolved_at(now_ms) {
            "resolved"
        } else {
            "firing"
        }
    }
}

/// Alertmanager's `model.LabelSet.Before`: shorter sets first, then by sorted names and values.
pub fn label_set_before(a: &LabelSet, b: &LabelSet) -> bool {
    match a.len().cmp(&b.len()) {
        Ordering::Less => return true,
        Ordering::Greater => return false,
        Ordering::Equal => {}
    }
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    for n in names {
        let Some(av) = a.get(n) else { return true };
        let Some(bv) = b.get(n) else { return false };
        match av.cmp(bv) {
            Ordering::Less => return true,
            Ordering::Greater => return false,
            Ordering::Equal => {}
        }
    }
    false
}

/// Sorts alerts as an aggregation group does before a notification (`alertsSlice`): by
/// `job`, then `instance` (alerts without them last), then [`label_set_before`]. Stable.
pub fn sort_for_notification(alerts: &mut [AmAlert]) {
    alerts.sort_by(|a, b| {
        for key in ["job", "instance"] {
            match (a.labels.get(key), b.labels.get(key)) {
                (None, None) => continue,
                (None, Some(_)) => return Ordering::Greater,
                (Some(_), None) => return Ordering::Less,
                (Some(x), Some(y)) if x != y => return x.cmp(y),
                _ => {}
            }
        }
        if label_set_before(&a.labels, &b.labels) {
            Ordering::Less
        } else if label_set_before(&b.labels, &a.labels) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    });
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest `%XX`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fingerprint_matches_alertmanager_sample() {
        // From webhook-sample-0.33.1-firing.json, captured from a real Alertmanager.
        let l = ls(&[
            ("alertname", "HighErrorRate"),
            ("service", "axi-star-cloud"),
            ("severity", "critical"),
        ]);
        assert_eq!(Fingerprint::of(&l).to_string(), "d62ba0dcf3d4c91c");
    }

    #[test]
    fn fingerprint_separates_names_from_values() {
        assert_ne!(
            Fingerprint::of(&ls(&[("ab", "c")])),
            Fingerprint::of(&ls(&[("a", "bc")]))
        );
    }

    #[test]
    fn times_format_as_go() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(1_500), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339_millis(1_500), "1970-01-01T00:00:01.500Z");
        let t = parse_rfc3339("2026-11-25T18:55:31Z").unwrap().unwrap();
        assert_eq!(rfc3339_nano(t), "2026-11-25T18:55:31Z");
        assert_eq!(
            parse_rfc3339("2026-11-25T19:55:31.25+01:00").unwrap(),
            Some(t + 250)
        );
        assert_eq!(parse_rfc3339(ZERO_TIME).unwrap(), None);
        assert!(parse_rfc3339("2026-11-25 18:55:31").is_err());
        let zero = crate::civil::days_from_civil(1, 1, 1) * 86_400_000;
        assert_eq!(rfc3339_nano(zero), ZERO_TIME);
    }

    #[test]
    fn notification_order_is_job_instance_then_labels() {
        let mk = |l: LabelSet| AmAlert {
            labels: l,
            annotations: LabelSet::new(),
            starts_at: 0,
            ends_at: None,
            generator_url: String::new(),
        };
        let mut v = vec![
            mk(ls(&[("a", "1")])),
            mk(ls(&[("job", "b")])),
            mk(ls(&[("job", "a"), ("instance", "2")])),
            mk(ls(&[("job", "a"), ("instance", "1")])),
        ];
        sort_for_notification(&mut v);
        let order: Vec<_> = v.iter().map(|a| a.labels.clone()).collect();
        assert_eq!(
            order,
            vec![
                ls(&[("job", "a"), ("instance", "1")]),
                ls(&[("job", "a"), ("instance", "2")]),
                ls(&[("job", "b")]),
                ls(&[("a", "1")]),
            ]
        );
    }

    #[test]
    fn query_escape_as_go() {
        assert_eq!(query_escape("up == 0"), "up+%3D%3D+0");
        assert_eq!(query_escape("a_b.c~"), "a_b.c~");
    }
}
