//! The notification log and the dedup rules of Alertmanager's `notify.go` (`DedupStage`,
//! `SetNotifiesStage`) and `nflog/nflog.go`.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::notification::NotificationReason;

/// Alertmanager's default `--data.retention`: how long notification log entries and expired
/// silences are kept.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(120 * 3600);

/// One integration of one receiver (`nflogpb.Receiver`): `webhook`, `dingtalk` or `wecom`,
/// and its position among the receiver's integrations of that kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IntegrationKey {
    /// The receiver's name.
    pub receiver: String,
    /// The integration's name (`webhook`, `dingtalk`, `wecom`).
    pub integration: String,
    /// Index among the receiver's integrations of this kind.
    pub index: usize,
}

/// What was last notified for one group and one integration (`nflogpb.Entry`), with alert
/// fingerprints standing for Alertmanager's alert hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NflogEntry {
    /// The aggregation group key.
    pub group_key: String,
    /// The integration notified.
    pub receiver: IntegrationKey,
    /// When the notification was sent (ms since the epoch).
    pub timestamp_ms: i64,
    /// Fingerprints of the firing alerts notified.
    pub firing_alerts: BTreeSet<u64>,
    /// Fingerprints of the resolved alerts notified.
    pub resolved_alerts: BTreeSet<u64>,
    /// When the entry is dropped (ms since the epoch).
    pub expires_at_ms: i64,
}

/// The notification log: the last notification per (group key, integration), each entry
/// kept until it expires (`min(retention, 2 × repeat_interval)` after it was written, as
/// `SetNotifiesStage` asks of `nflog.Log`).
///
/// ```
/// use std::collections::BTreeSet;
/// use std::time::Duration;
/// use axi_obs_alert::delivery::{IntegrationKey, NotificationLog, NotificationReason, needs_update};
///
/// let mut log = NotificationLog::new(Duration::from_secs(3600));
/// let key = IntegrationKey { receiver: "r".into(), integration: "webhook".into(), index: 0 };
/// let firing = BTreeSet::from([1u64]);
/// let none = BTreeSet::new();
/// let repeat = Duration::from_secs(600);
/// let e = log.get("{}:{}", &key, 0);
/// assert_eq!(needs_update(e, &firing, &none, true, repeat, 0), Some(NotificationReason::FirstNotification));
/// log.log("{}:{}", &key, &firing, &none, 0, repeat);
/// let e = log.get("{}:{}", &key, 1000);
/// assert_eq!(needs_update(e, &firing, &none, true, repeat, 1000), None);
/// ```
#[derive(Debug, Clone)]
pub struct NotificationLog {
    entries: HashMap<(String, IntegrationKey), NflogEntry>,
    retention: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl NotificationLog {
    /// An empty log keeping entries at most `retention` (Alertmanager: `--data.retention`,
    /// [`DEFAULT_RETENTION`]).
    pub fn new(retention: Duration) -> NotificationLog {
        NotificationLog {
            entries: HashMap::new(),
            retention,
        }
    }

    /// The entry for `group_key` and `receiver`, unless it expired at `now_ms`.
    pub fn get(
        &self,
        group_key: &str,
        receiver: &IntegrationKey,
        now_ms: i64,
    ) -> Option<&NflogEntry> {
        self.entries
            .get(&(group_key.to_string(), receiver.clone()))
            .filter(|e| e.expires_at_ms > now_ms)
    }

    /// Records a notification sent at `now_ms`; the entry expires after the retention or
    /// `2 × repeat_interval`, whichever is shorter.
    pub fn log(
        &mut self,
        group_key: &str,
        receiver: &IntegrationKey,
        firing: &BTreeSet<u64>,
        resolved: &BTreeSet<u64>,
        now_ms: i64,
        repeat_interval: Duration,
    ) {
        let expiry = ms(self.retention).min(ms(repeat_interval).saturating_mul(2));
        let entry = NflogEntry {
            group_key: group_key.to_string(),
            receiver: receiver.clone(),
            timestamp_ms: now_ms,
            firing_alerts: firing.clone(),
            resolved_alerts: resolved.clone(),
            expires_at_ms: now_ms.saturating_add(expiry),
        };
        self.entries
            .insert((group_key.to_string(), receiver.clone()), entry);
    }

    /// Drops the entries expired at `now_ms`; returns how many.
    pub fn gc(&mut self, now_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.expires_at_ms > now_ms);
        before - self.entries.len()
    }

    /// All entries, sorted by group key and integration.
    pub fn entries(&self) -> Vec<NflogEntry> {
        let mut v: Vec<NflogEntry> = self.entries.values().cloned().collect();
        v.sort_by(|a, b| (&a.group_key, &a.receiver).cmp(&(&b.group_key, &b.receiver)));
        v
    }

    /// Replaces the content with `entries` (as read back from a snapshot), dropping those
    /// expired at `now_ms`.
    pub fn restore(&mut self, entries: Vec<NflogEntry>, now_ms: i64) {
        self.entries = entries
            .into_iter()
            .filter(|e| e.expires_at_ms > now_ms)
            .map(|e| ((e.group_key.clone(), e.receiver.clone()), e))
            .collect();
    }

    /// How many entries the log holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `DedupStage.needsUpdate`: whether a group whose (unmuted) alerts are `firing` and
/// `resolved` must be notified again, given the last notification `entry`, and why.
///
/// - no entry: notify if anything fires (`first notification`);
/// - a firing alert the last notification did not have (`new alerts added`);
/// - nothing fires: notify once if the last notification had firing alerts (`all alerts
///   resolved`, whatever `send_resolved` says, so that the log forgets them);
/// - with `send_resolved`, a resolved alert not notified as resolved (`some alerts resolved`);
/// - otherwise only when the last notification is older than `repeat_interval` (`repeat
///   interval elapsed`; strictly older, as `entry.Timestamp.Before(now - repeat)`).
pub fn needs_update(
    entry: Option<&NflogEntry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat_interval: Duration,
    now_ms: i64,
) -> Option<NotificationReason> {
    let Some(entry) = entry else {
        return (!firing.is_empty()).then_some(NotificationReason::FirstNotification);
    };
    if !firing.is_subset(&entry.firing_alerts) {
        return Some(NotificationReason::NewAlertsAdded);
    }
    if firing.is_empty() {
        return (!entry.firing_alerts.is_empty()).then_some(NotificationReason::AllAlertsResolved);
    }
    if send_resolved && !resolved.is_subset(&entry.resolved_alerts) {
        return Some(NotificationReason::SomeAlertsResolved);
    }
    (entry.timestamp_ms < now_ms.saturating_sub(ms(repeat_interval)))
        .then_some(NotificationReason::RepeatIntervalElapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> IntegrationKey {
        IntegrationKey {
            receiver: "r".into(),
            integration: "webhook".into(),
            index: 0,
        }
    }

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn dedup_rules_as_alertmanager() {
        let rep = Duration::from_secs(100);
        let mut log = NotificationLog::new(DEFAULT_RETENTION);
        assert_eq!(
            needs_update(None, &set(&[]), &set(&[1]), true, rep, 0),
            None
        );
        log.log("g", &key(), &set(&[1, 2]), &set(&[]), 0, rep);
        let e = log.get("g", &key(), 1);
        assert_eq!(needs_update(e, &set(&[1]), &set(&[2]), false, rep, 1), None);
        assert_eq!(
            needs_update(e, &set(&[1]), &set(&[2]), true, rep, 1),
            Some(NotificationReason::SomeAlertsResolved)
        );
        assert_eq!(
            needs_update(e, &set(&[1, 3]), &set(&[]), false, rep, 1),
            Some(NotificationReason::NewAlertsAdded)
        );
        assert_eq!(
            needs_update(e, &set(&[]), &set(&[1, 2]), false, rep, 1),
            Some(NotificationReason::AllAlertsResolved)
        );
        assert_eq!(
            needs_update(e, &set(&[1, 2]), &set(&[]), true, rep, 100_000),
            None
        );
        assert_eq!(
            needs_update(e, &set(&[1, 2]), &set(&[]), true, rep, 100_001),
            Some(NotificationReason::RepeatIntervalElapsed)
        );
        log.log("g", &key(), &set(&[]), &set(&[1, 2]), 5, rep);
        let e = log.get("g", &key(), 6);
        assert_eq!(
            needs_update(e, &set(&[]), &set(&[1, 2]), true, rep, 6),
            None
        );
    }

    #[test]
    fn entries_expire_after_twice_the_repeat_interval_or_the_retention() {
        let mut log = NotificationLog::new(Duration::from_secs(150));
        log.log(
            "g",
            &key(),
            &set(&[1]),
            &set(&[]),
            0,
            Duration::from_secs(100),
        );
        assert_eq!(log.entries()[0].expires_at_ms, 150_000);
        assert!(log.get("g", &key(), 149_999).is_some());
        assert!(log.get("g", &key(), 150_000).is_none());
        log.log(
            "h",
            &key(),
            &set(&[1]),
            &set(&[]),
            0,
            Duration::from_secs(60),
        );
        assert_eq!(log.gc(120_000), 1);
        assert_eq!(log.len(), 1);
        assert_eq!(log.gc(150_000), 1);
        assert!(log.is_empty());
    }

    proptest::proptest! {
        /// Whatever was notified, the same alerts are not notified again before
        /// `repeat_interval` has passed, and are once it has (while something fires); a new
        /// firing alert is always notified.
        #[test]
        fn no_duplicates_before_the_repeat_interval(
            firing in proptest::collection::btree_set(0u64..20, 0..6),
            resolved in proptest::collection::btree_set(20u64..40, 0..6),
            send_resolved: bool,
            later in 0i64..200_000,
        ) {
            let rep = Duration::from_secs(100);
            let mut log = NotificationLog::new(DEFAULT_RETENTION);
            log.log("g", &key(), &firing, &resolved, 0, rep);
            let e = log.get("g", &key(), later);
            let again = needs_update(e, &firing, &resolved, send_resolved, rep, later);
            if later <= 100_000 || firing.is_empty() {
                proptest::prop_assert_eq!(again, None);
            } else {
                proptest::prop_assert_eq!(again, Some(NotificationReason::RepeatIntervalElapsed));
            }
            let mut more = firing.clone();
            more.insert(99);
            proptest::prop_assert_eq!(
                needs_update(e, &more, &resolved, send_resolved, rep, later),
                Some(NotificationReason::NewAlertsAdded)
            );
        }
    }
}
