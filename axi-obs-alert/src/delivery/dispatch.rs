//! The built-in router's runtime, as Alertmanager's `dispatch/dispatch.go` and the notify
//! pipeline: alerts go to aggregation groups (one per route and group labels), each group
//! flushes after `group_wait` and then every `group_interval`; a flush mutes inhibited and
//! silenced alerts, asks the notification log whether each integration must be notified,
//! delivers, records what was sent and drops the resolved alerts it notified.
//!
//! Time is passed in: [`Dispatcher::insert`] and [`Dispatcher::tick`] take the current time
//! in milliseconds, so the same code runs on a real clock and in exact tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::{Config, Receiver};
use super::inhibit::Inhibitor;
use super::model::{AmAlert, Fingerprint, LabelSet, label_set_before, sort_for_notification};
use super::nflog::{DEFAULT_RETENTION, IntegrationKey, NotificationLog, needs_update};
use super::notification::Notification;
use super::notify::{
    Integration, METRIC_ALERT_LIMIT_REACHED_TOTAL, METRIC_GROUP_LIMIT_REACHED_TOTAL, Notifier,
};
use super::remediation::{RemediationOutcome, RemediationRun, Remediations};
use super::route::{Route, RouteOpts};
use super::silence::Silences;
use super::state::{self, AlertRecord};
use super::timeinterval::TimeInterval;

/// The default cap on aggregation groups.
pub const DEFAULT_MAX_GROUPS: usize = 10_000;
/// The default cap on alerts in one aggregation group.
pub const DEFAULT_MAX_ALERTS_PER_GROUP: usize = 10_000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How a [`Dispatcher`] runs.
#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// This instance's URL, in every notification. Defaults to empty.
    pub external_url: String,
    /// At most this many aggregation groups; alerts for further groups are refused and
    /// counted. Defaults to [`DEFAULT_MAX_GROUPS`].
    pub max_groups: usize,
    /// At most this many alerts in one group; further alerts are refused and counted.
    /// Defaults to [`DEFAULT_MAX_ALERTS_PER_GROUP`].
    pub max_alerts_per_group: usize,
    /// How long notification log entries and expired silences are kept. Defaults to
    /// [`DEFAULT_RETENTION`] (120 h).
    pub retention: Duration,
    /// Where the notification log, the silences and the alerts are persisted (written
    /// atomically, read by [`Dispatcher::new`]). Defaults to none: nothing persisted.
    pub state_file: Option<PathBuf>,
    /// How often a [`Runner`](super::Runner) writes the state file at most: changes are
    /// written together once this much time passed since the last write, so a burst of
    /// alerts costs one write, not one per request. What changed in the last interval
    /// before a crash is lost: alerts come back with the sender's next re-send (Prometheus
    /// re-sends firing and resolved alerts every minute), a notification delivered then is
    /// sent again (at least once). Defaults to [`DEFAULT_PERSIST_INTERVAL`]; zero writes
    /// after every change.
    pub persist_interval: Duration,
}

/// The default [`DispatcherOptions::persist_interval`].
pub const DEFAULT_PERSIST_INTERVAL: Duration = Duration::from_millis(500);

impl Default for DispatcherOptions {
    fn default() -> Self {
        DispatcherOptions {
            external_url: String::new(),
            max_groups: DEFAULT_MAX_GROUPS,
            max_alerts_per_group: DEFAULT_MAX_ALERTS_PER_GROUP,
            retention: DEFAULT_RETENTION,
            state_file: None,
            persist_interval: DEFAULT_PERSIST_INTERVAL,
        }
    }
}

/// Why the dispatcher could not start or persist.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The configuration has no `route`.
    #[error("the configuration has no route")]
    NoRoute,
    /// The state file could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not a snapshot we wrote.
    #[error("state file {path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// An aggregation group's identity: its group key and receiver.
type GroupId = (String, String);

/// `n` copies of `alert` for `n` groups: clones for all but the last, which takes it.
fn copies(alert: AmAlert, n: usize) -> impl Iterator<Item = AmAlert> {
    let mut alert = Some(alert);
    (0..n).filter_map(move |i| {
        if i + 1 == n {
            alert.take()
        } else {
            alert.clone()
        }
    })
}

/// What [`admit`] needs to know about the alert being inserted.
struct Admission {
    fp: Fingerprint,
    /// The start it was received with.
    starts_at: i64,
    now_ms: i64,
    max_alerts: usize,
}

/// Puts `new` into `group` unless the group is full and does not hold it yet (then the
/// refusal is counted in `out` and `refused`, and `false`): the start of an alert that is
/// still firing is kept, and a group that never flushed flushes at once for an alert older
/// than `group_wait`. The first group to take an alert shows it to the inhibitor.
fn admit(
    group: &mut Group,
    inhibitor: &mut Inhibitor,
    a: &Admission,
    mut new: AmAlert,
    out: &mut Inserted,
    refused: &mut u64,
) -> bool {
    let old = group.alerts.get(&a.fp);
    if old.is_none() && group.alerts.len() >= a.max_alerts {
        *refused += 1;
        metrics::counter!(METRIC_ALERT_LIMIT_REACHED_TOTAL).increment(1);
        out.refused += 1;
        return false;
    }
    if let Some(old) = old
        && !old.resolved_at(a.now_ms)
    {
        new.starts_at = old.starts_at.min(new.starts_at);
    }
    if out.groups == 0 {
        inhibitor.observe_labels(a.fp, &new.labels, new.ends_at);
    }
    group.alerts.insert(a.fp, new);
    if !group.has_flushed && a.starts_at.saturating_add(ms(group.opts.group_wait)) < a.now_ms {
        group.next_flush_ms = a.now_ms;
    }
    out.groups += 1;
    true
}

/// What became of an inserted alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inserted {
    /// Groups that hold the alert now.
    pub groups: usize,
    /// Groups that refused it because a limit was reached.
    pub refused: usize,
}

/// Why a route sends nothing at `now_ms`, if it does not, and the intervals that say so:
/// outside all of its active intervals (when it names some; all of them), or in some of its
/// mute intervals (those); checked in that order, as Alertmanager's time-active and
/// time-mute stages run. A muted flush sends nothing and logs nothing; its resolved alerts
/// leave the group all the same, as in Alertmanager.
fn time_muted(
    intervals: &BTreeMap<String, TimeInterval>,
    opts: &RouteOpts,
    now_ms: i64,
) -> Option<(&'static str, Vec<String>)> {
    let contains = |n: &String| intervals.get(n).is_some_and(|t| t.contains(now_ms));
    if !opts.active_time_intervals.is_empty() && !opts.active_time_intervals.iter().any(contains) {
        return Some(("active_time_interval", opts.active_time_intervals.clone()));
    }
    let muting: Vec<String> = opts
        .mute_time_intervals
        .iter()
        .filter(|n| contains(n))
        .cloned()
        .collect();
    (!muting.is_empty()).then_some(("mute_time_interval", muting))
}

/// Counts alerts a flush did not notify, by why.
fn suppressed(reason: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!(
            super::notify::METRIC_NOTIFICATIONS_SUPPRESSED_TOTAL,
            super::notify::LABEL_REASON => reason
        )
        .increment(n as u64);
    }
}

/// One integration's share of a flush: what to send and what to log once it is sent.
#[derive(Debug, Clone)]
pub struct Job {
    /// The integration's key in the notification log.
    pub key: IntegrationKey,
    /// The integration.
    pub integration: Integration,
    /// The notification, its reason set by the dedup rules.
    pub notification: Notification,
    /// Fingerprints of the firing alerts notified.
    pub firing: BTreeSet<u64>,
    /// Fingerprints of the resolved alerts notified.
    pub resolved: BTreeSet<u64>,
    repeat_interval: Duration,
}

/// One aggregation group's flush: the notifications its integrations need (possibly none)
/// and the alerts it saw, to drop the resolved ones once every integration succeeded.
#[derive(Debug, Clone)]
pub struct Flush {
    /// The group key.
    pub group_key: String,
    /// The receiver.
    pub receiver: String,
    /// The flush time (ms).
    pub now_ms: i64,
    /// Notifications to send.
    pub jobs: Vec<Job>,
    /// Alerts muted by inhibition or a silence at this flush.
    pub muted: usize,
    /// How long its deliveries may take, retries included: the group's `group_interval`, at
    /// least 10 s (Alertmanager's notification timeout). A delivery still
    /// running then fails, so a receiver that never answers cannot hold the group.
    pub timeout: Duration,
    /// The group's resolved alerts at the flush: they leave it once every job succeeded
    /// (unless received again since).
    resolved_alerts: Vec<AmAlert>,
}

/// What a [`Dispatcher::tick`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Groups flushed.
    pub flushed: usize,
    /// Notifications delivered (requests accepted or nothing to send).
    pub sent: usize,
    /// Notifications that failed after their retries; they are tried again at the group's
    /// next flush.
    pub failed: usize,
}

#[derive(Debug, Clone)]
struct Group {
    opts: RouteOpts,
    labels: LabelSet,
    alerts: BTreeMap<Fingerprint, AmAlert>,
    next_flush_ms: i64,
    has_flushed: bool,
    /// The time intervals that muted the group at its last flush (none: not muted).
    muted_by: Vec<String>,
}

/// An alert as Alertmanager's API v2 shows it (`gettableAlert`), computed at the time
/// asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertStatus {
    /// The alert as last received (its start merged with earlier receipts).
    pub alert: AmAlert,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// When it was last received (ms).
    pub updated_at: i64,
    /// The receivers of the routes it matches, in route order.
    pub receivers: Vec<String>,
    /// Active silences muting it.
    pub silenced_by: Vec<String>,
    /// Firing source alerts inhibiting it.
    pub inhibited_by: Vec<Fingerprint>,
}

impl AlertStatus {
    /// `suppressed` when silenced or inhibited, `active` otherwise.
    pub fn state(&self) -> &'static str {
        if self.silenced_by.is_empty() && self.inhibited_by.is_empty() {
            "active"
        } else {
            "suppressed"
        }
    }
}

/// An aggregation group as Alertmanager's API v2 shows it (`alertGroup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The group labels.
    pub labels: LabelSet,
    /// The receiver.
    pub receiver: String,
    /// The group's alerts that are not resolved, in notification order.
    pub alerts: Vec<AlertStatus>,
    /// The time intervals that muted the group at its last flush: the active ones it was
    /// outside of, or the mute ones it was in (none: not muted).
    pub muted_by: Vec<String>,
}

/// The built-in router: aggregation groups with their timers, inhibition, silences, the
/// notification log, and delivery through [`Notifier`].
///
/// ```
/// use std::path::Path;
/// use axi_obs_alert::delivery::{AmAlert, Config, Dispatcher, DispatcherOptions, LabelSet};
///
/// let cfg = Config::parse(r#"
/// route: {receiver: hook, group_by: [alertname], group_wait: 30s}
/// receivers:
/// - name: hook
///   webhook_configs: [{url: "http://127.0.0.1:9/"}]
/// "#, Path::new("am.yml")).unwrap();
/// let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), 0).unwrap();
/// let alert = AmAlert {
///     labels: LabelSet::from([("alertname".to_string(), "Down".to_string())]),
///     annotations: LabelSet::new(), starts_at: 0, ends_at: None, generator_url: String::new(),
/// };
/// d.insert(alert, 0);
/// assert_eq!(d.next_flush_ms(), Some(30_000));
/// assert!(d.due(29_999).is_empty());
/// let flushes = d.due(30_000);
/// assert_eq!(flushes[0].jobs[0].notification.reason.as_str(), "first notification");
/// ```
#[derive(Debug)]
pub struct Dispatcher {
    tree: Route,
    /// The named time intervals routes mute or activate by.
    time_intervals: BTreeMap<String, TimeInterval>,
    receivers: HashMap<String, Receiver>,
    receiver_names: Vec<String>,
    inhibitor: Inhibitor,
    silences: Silences,
    nflog: NotificationLog,
    groups: BTreeMap<GroupId, Group>,
    /// When each alert held by a group was last received.
    updated: HashMap<Fingerprint, i64>,
    /// The groups each alert went into, when every route took it: a re-sent alert goes
    /// straight there (see [`insert`](Dispatcher::insert)). Entries leave with the alert.
    memberships: HashMap<Fingerprint, Box<[GroupId]>>,
    /// Groups whose last flush is still being delivered: not flushed again until
    /// [`complete`](Dispatcher::complete) or [`abandon`](Dispatcher::abandon).
    in_flight: BTreeSet<GroupId>,
    resolve_timeout: Duration,
    opts: DispatcherOptions,
    groups_refused: u64,
    alerts_refused: u64,
    /// The silences or the alerts may have changed since the last snapshot.
    dirty: bool,
    /// Remediation actions, their run history, queue and outcomes.
    remediation: Remediations,
}

impl Dispatcher {
    /// A dispatcher for `config` (validated by [`Config::parse`]); reads the notification
    /// log and silences from the state file when one is set and exists, dropping what
    /// expired before `now_ms`.
    ///
    /// # Errors
    ///
    /// When the configuration has no route or the state file cannot be read.
    pub fn new(
        config: &Config,
        opts: DispatcherOptions,
        now_ms: i64,
    ) -> Result<Dispatcher, DispatchError> {
        let route = config.route.as_ref().ok_or(DispatchError::NoRoute)?;
        super::notify::describe_metrics();
        let mut d = Dispatcher {
            tree: Route::from_config(route),
            time_intervals: config.named_time_intervals(),
            receivers: config
                .receivers
                .iter()
                .map(|r| (r.name.clone(), r.clone()))
                .collect(),
            receiver_names: config.receivers.iter().map(|r| r.name.clone()).collect(),
            inhibitor: Inhibitor::new(&config.inhibit_rules),
            silences: Silences::new(opts.retention),
            nflog: NotificationLog::new(opts.retention),
            groups: BTreeMap::new(),
            updated: HashMap::new(),
            memberships: HashMap::new(),
            in_flight: BTreeSet::new(),
            resolve_timeout: config.global.resolve_timeout.0,
            opts,
            groups_refused: 0,
            alerts_refused: 0,
            dirty: false,
            remediation: Remediations::default(),
        };
        if let Some(path) = d.opts.state_file.clone() {
            d.load(&path, now_ms)?;
        }
        // After the restored alerts are back: they were received before, they run nothing.
        d.remediation.configure(&config.remediations);
        Ok(d)
    }

    fn load(&mut self, path: &Path, now_ms: i64) -> Result<(), DispatchError> {
        let Some(snap) = state::read(path)? else {
            return Ok(());
        };
        self.nflog.restore(snap.nflog, now_ms);
        self.silences
            .restore(snap.silences)
            .map_err(|message| DispatchError::Corrupt {
                path: path.to_path_buf(),
                message,
            })?;
        self.silences.gc(now_ms);
        self.remediation.restore(snap.remediations);
        // The alerts come back into their groups as if received again now: a group that
        // never flushed flushes at once, and the restored notification log decides what
        // is sent, so nothing notified before the restart is sent twice and nothing
        // pending (a firing alert not yet delivered, a resolution) is lost.
        //
        // An alert still firing when last received whose presumed end (the sender's
        // `endsAt`, some minutes ahead) passed while this process was down is not known to
        // have resolved: its sender stopped re-sending it to us only because we were gone.
        // It gets `resolve_timeout` from now, as an alert received without an end does; a
        // sender still firing it re-sends it long before, and one that saw it resolve sends
        // the resolution (Prometheus re-sends resolved alerts for 15 minutes).
        let presumed_end = now_ms.saturating_add(ms(self.resolve_timeout));
        for record in snap.alerts {
            let (mut alert, updated_at) = record.into_alert();
            if let Some(end) = alert.ends_at
                && end > updated_at
                && end <= now_ms
            {
                alert.ends_at = Some(presumed_end);
            }
            let fp = alert.fingerprint();
            if self.insert(alert, now_ms).groups > 0 {
                self.updated.insert(fp, updated_at);
            }
        }
        self.dirty = false;
        Ok(())
    }

    /// Writes the notification log and the silences to the state file (if one is set):
    /// a temporary file in the same directory, synced, then renamed over the old one, so a
    /// crash leaves either the old or the new snapshot.
    ///
    /// # Errors
    ///
    /// When writing fails.
    pub fn persist(&mut self) -> Result<(), DispatchError> {
        let Some(path) = &self.opts.state_file else {
            return Ok(());
        };
        state::write_atomic(path, &self.snapshot_bytes()).map_err(|source| DispatchError::Io {
            path: path.clone(),
            source,
        })?;
        self.dirty = false;
        Ok(())
    }

    /// [`persist`](Dispatcher::persist) with the file written on Tokio's blocking pool.
    ///
    /// # Errors
    ///
    /// When writing fails.
    pub async fn persist_async(&mut self) -> Result<(), DispatchError> {
        let Some(path) = self.opts.state_file.clone() else {
            return Ok(());
        };
        let bytes = self.snapshot_bytes();
        let target = path.clone();
        tokio::task::spawn_blocking(move || state::write_atomic(&target, &bytes))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|source| DispatchError::Io { path, source })?;
        self.dirty = false;
        Ok(())
    }

    fn snapshot_bytes(&self) -> Vec<u8> {
        let mut alerts: BTreeMap<Fingerprint, &AmAlert> = BTreeMap::new();
        for g in self.groups.values() {
            for (fp, a) in &g.alerts {
                alerts.entry(*fp).or_insert(a);
            }
        }
        let records = alerts
            .into_iter()
            .map(|(fp, a)| AlertRecord::new(a, self.updated.get(&fp).copied().unwrap_or(0)))
            .collect();
        state::encode(
            &self.nflog,
            &self.silences,
            records,
            self.remediation.history(),
        )
    }

    /// Takes an alert received at `now_ms` (an alert without an end gets
    /// `now + resolve_timeout`, as Alertmanager's API does) into every group its routes
    /// give. A new group flushes `group_wait` later; a group that never flushed flushes at
    /// once for an alert older than `group_wait`. A firing alert that no silence or
    /// inhibition mutes queues the remediation actions its routes name, when their cooldown
    /// and `max_runs` allow ([`take_remediations`](Dispatcher::take_remediations)).
    pub fn insert(&mut self, alert: AmAlert, now_ms: i64) -> Inserted {
        let (out, remediate) = self.insert_held(alert, now_ms);
        if let Some((a, fp)) = remediate {
            self.remediate(&a, fp, now_ms);
        }
        out
    }

    /// [`insert`](Self::insert) for the alerts of one request (Prometheus sends those of
    /// one rule group's evaluation together): all are taken first, then the remediations are
    /// decided, so that an inhibiting alert anywhere in the request mutes the actions of the
    /// alerts it inhibits, whatever their order.
    pub fn insert_all(&mut self, alerts: Vec<AmAlert>, now_ms: i64) -> Vec<Inserted> {
        let mut decide = Vec::new();
        let out = alerts
            .into_iter()
            .map(|a| {
                let (out, remediate) = self.insert_held(a, now_ms);
                decide.extend(remediate);
                out
            })
            .collect();
        for (a, fp) in decide {
            self.remediate(&a, fp, now_ms);
        }
        out
    }

    /// Takes the alert into its groups; the copy to decide remediations on when it is held
    /// and actions are configured.
    fn insert_held(
        &mut self,
        mut alert: AmAlert,
        now_ms: i64,
    ) -> (Inserted, Option<(AmAlert, Fingerprint)>) {
        if alert.ends_at.is_none() {
            alert.ends_at = Some(now_ms.saturating_add(ms(self.resolve_timeout)));
        }
        let fp = alert.fingerprint();
        // Copied only when remediation actions are configured.
        let remediate = self.remediation.is_enabled().then(|| alert.clone());
        // An alert seen before has the same labels, so the same routes and the same group
        // keys: while all its groups are there, it skips the routing tree (what makes a
        // re-sent alert cheap; Prometheus re-sends every firing alert each minute).
        let out = match self.memberships.remove(&fp) {
            Some(ids) if ids.iter().all(|id| self.groups.contains_key(id)) => {
                self.insert_known(alert, fp, ids, now_ms)
            }
            _ => self.insert_routed(alert, fp, now_ms),
        };
        if out.groups > 0 {
            self.updated.insert(fp, now_ms);
            self.dirty = true;
            return (out, remediate.map(|a| (a, fp)));
        }
        (out, None)
    }

    fn admission(&self, alert: &AmAlert, fp: Fingerprint, now_ms: i64) -> Admission {
        Admission {
            fp,
            starts_at: alert.starts_at,
            now_ms,
            max_alerts: self.opts.max_alerts_per_group,
        }
    }

    /// [`insert`](Dispatcher::insert) through the routing tree; remembers the groups when
    /// every route took the alert.
    fn insert_routed(&mut self, alert: AmAlert, fp: Fingerprint, now_ms: i64) -> Inserted {
        let adm = self.admission(&alert, fp, now_ms);
        let mut out = Inserted::default();
        let routes = self.tree.matches(&alert.labels);
        let mut ids: Vec<GroupId> = Vec::with_capacity(routes.len());
        let n = routes.len();
        for (r, new) in routes.into_iter().zip(copies(alert, n)) {
            let id = (r.group_key(&new.labels), r.opts.receiver.clone());
            if !self.groups.contains_key(&id) && self.groups.len() >= self.opts.max_groups {
                self.groups_refused += 1;
                metrics::counter!(METRIC_GROUP_LIMIT_REACHED_TOTAL).increment(1);
                out.refused += 1;
                continue;
            }
            let group = self.groups.entry(id.clone()).or_insert_with(|| Group {
                next_flush_ms: now_ms.saturating_add(ms(r.opts.group_wait)),
                opts: r.opts.clone(),
                labels: r.group_labels(&new.labels),
                alerts: BTreeMap::new(),
                has_flushed: false,
                muted_by: Vec::new(),
            });
            if admit(
                group,
                &mut self.inhibitor,
                &adm,
                new,
                &mut out,
                &mut self.alerts_refused,
            ) {
                ids.push(id);
            }
        }
        if out.refused == 0 && out.groups > 0 {
            self.memberships.insert(fp, ids.into_boxed_slice());
        }
        out
    }

    /// [`insert`](Dispatcher::insert) of an alert whose groups (`ids`, all present) are
    /// known.
    fn insert_known(
        &mut self,
        alert: AmAlert,
        fp: Fingerprint,
        ids: Box<[GroupId]>,
        now_ms: i64,
    ) -> Inserted {
        let adm = self.admission(&alert, fp, now_ms);
        let mut out = Inserted::default();
        for (id, new) in ids.iter().zip(copies(alert, ids.len())) {
            let Some(group) = self.groups.get_mut(id) else {
                break;
            };
            admit(
                group,
                &mut self.inhibitor,
                &adm,
                new,
                &mut out,
                &mut self.alerts_refused,
            );
        }
        if out.refused == 0 {
            self.memberships.insert(fp, ids);
        }
        out
    }

    /// The earliest time a group is due to flush (groups being delivered not counted).
    pub fn next_flush_ms(&self) -> Option<i64> {
        self.groups
            .iter()
            .filter(|(id, _)| !self.in_flight.contains(*id))
            .map(|(_, g)| g.next_flush_ms)
            .min()
    }

    /// Flushes the groups due at `now_ms` (their next flush moves `group_interval` ahead):
    /// mutes inhibited and silenced alerts and applies the dedup rules per integration.
    /// Deliver each [`Job`] and report with [`complete`](Dispatcher::complete), or let
    /// [`tick`](Dispatcher::tick) do both. Until then the group is in flight and not
    /// flushed again, so a slow receiver never gets the same group twice at once while
    /// other groups go on flushing.
    pub fn due(&mut self, now_ms: i64) -> Vec<Flush> {
        self.nflog.gc(now_ms);
        self.silences.gc(now_ms);
        self.inhibitor.gc(now_ms);
        let mut flushes = Vec::new();
        for (id, g) in &mut self.groups {
            if g.next_flush_ms > now_ms || self.in_flight.contains(id) {
                continue;
            }
            self.in_flight.insert(id.clone());
            let (group_key, receiver) = id;
            g.next_flush_ms = now_ms.saturating_add(ms(g.opts.group_interval));
            g.has_flushed = true;
            // Mute and classify by reference; alerts are copied only into the
            // notifications that must go out, and the resolved ones into the flush (to drop
            // them from the group once delivered).
            let mut firing = BTreeSet::new();
            let mut resolved = BTreeSet::new();
            let mut kept: Vec<&AmAlert> = Vec::new();
            let mut resolved_alerts = Vec::new();
            let mut muted = 0;
            let (mut inhibited, mut silenced) = (0, 0);
            for (fp, a) in &g.alerts {
                let is_resolved = a.resolved_at(now_ms);
                if is_resolved {
                    resolved_alerts.push(a.clone());
                }
                if self.inhibitor.mutes(&a.labels, now_ms) {
                    inhibited += 1;
                    muted += 1;
                    continue;
                }
                if self.silences.mutes(&a.labels, now_ms) {
                    silenced += 1;
                    muted += 1;
                    continue;
                }
                if is_resolved {
                    resolved.insert(fp.0);
                } else {
                    firing.insert(fp.0);
                }
                kept.push(a);
            }
            // Counted as Alertmanager's stages count: inhibition first; a route outside its
            // time stops the rest (the silenced alerts count as muted by time then).
            suppressed("inhibition", inhibited);
            let time = time_muted(&self.time_intervals, &g.opts, now_ms);
            match &time {
                Some((reason, _)) => suppressed(reason, silenced + kept.len()),
                None => suppressed("silence", silenced),
            }
            // What the API shows until the next flush, as Alertmanager's marker; its time
            // stages run only for a flush with alerts left after inhibition.
            if inhibited < g.alerts.len() {
                g.muted_by = time
                    .as_ref()
                    .map(|(_, names)| names.clone())
                    .unwrap_or_default();
            }
            let mut jobs = Vec::new();
            if !kept.is_empty()
                && time.is_none()
                && let Some(r) = self.receivers.get(receiver)
            {
                let mut notified: Option<Vec<AmAlert>> = None;
                for (index, integration) in integrations(r).into_iter() {
                    let key = IntegrationKey {
                        receiver: receiver.clone(),
                        integration: integration.name().to_string(),
                        index,
                    };
                    let entry = self.nflog.get(group_key, &key, now_ms);
                    let Some(reason) = needs_update(
                        entry,
                        &firing,
                        &resolved,
                        integration.send_resolved(),
                        g.opts.repeat_interval,
                        now_ms,
                    ) else {
                        continue;
                    };
                    let alerts = notified
                        .get_or_insert_with(|| {
                            let mut v: Vec<AmAlert> = kept.iter().map(|a| (*a).clone()).collect();
                            sort_for_notification(&mut v);
                            self.remediation.annotate(&mut v);
                            v
                        })
                        .clone();
                    jobs.push(Job {
                        key,
                        notification: Notification {
                            receiver: receiver.clone(),
                            group_key: group_key.clone(),
                            group_labels: g.labels.clone(),
                            alerts,
                            reason,
                            now_ms,
                            external_url: self.opts.external_url.clone(),
                        },
                        integration,
                        firing: firing.clone(),
                        resolved: resolved.clone(),
                        repeat_interval: g.opts.repeat_interval,
                    });
                }
            }
            flushes.push(Flush {
                group_key: group_key.clone(),
                receiver: receiver.clone(),
                now_ms,
                jobs,
                muted,
                timeout: g.opts.group_interval.max(MIN_FLUSH_TIMEOUT),
                resolved_alerts,
            });
        }
        flushes
    }

    /// Reports how the jobs of `flush` went (`ok[i]` for `flush.jobs[i]`): successful ones
    /// are written to the notification log; when all succeeded, the resolved alerts the
    /// flush saw (and that did not change since) leave the group, and an empty group is
    /// dropped.
    pub fn complete(&mut self, flush: &Flush, ok: &[bool]) {
        self.in_flight
            .remove(&(flush.group_key.clone(), flush.receiver.clone()));
        for (job, ok) in flush.jobs.iter().zip(ok) {
            if *ok {
                self.dirty = true;
                self.nflog.log(
                    &flush.group_key,
                    &job.key,
                    &job.firing,
                    &job.resolved,
                    flush.now_ms,
                    job.repeat_interval,
                );
            }
        }
        if ok.len() < flush.jobs.len() || ok.iter().any(|o| !o) {
            return;
        }
        let id = (flush.group_key.clone(), flush.receiver.clone());
        let Some(g) = self.groups.get_mut(&id) else {
            return;
        };
        let mut removed = Vec::new();
        for a in &flush.resolved_alerts {
            let fp = a.fingerprint();
            if g.alerts.get(&fp) == Some(a) {
                g.alerts.remove(&fp);
                removed.push(fp);
            }
        }
        if g.alerts.is_empty() {
            self.groups.remove(&id);
        }
        if !removed.is_empty() {
            self.dirty = true;
            for fp in removed {
                if !self.groups.values().any(|g| g.alerts.contains_key(&fp)) {
                    self.updated.remove(&fp);
                    self.memberships.remove(&fp);
                    self.remediation.forget(fp);
                }
            }
        }
    }

    /// Gives up on a flush whose delivery could not report (its task panicked): the
    /// group may flush again, and what was not logged is sent again then.
    pub fn abandon(&mut self, group_key: &str, receiver: &str) {
        self.in_flight
            .remove(&(group_key.to_string(), receiver.to_string()));
    }

    /// Whether something changed since the state was last persisted (always false
    /// without a state file: there is nothing to write).
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty && self.opts.state_file.is_some()
    }

    /// [`DispatcherOptions::persist_interval`].
    pub(crate) fn persist_interval(&self) -> Duration {
        self.opts.persist_interval
    }

    /// Flushes what is due at `now_ms`, delivers through `notifier` (all notifications of
    /// the tick concurrently, each with its retries), records the outcome and persists the
    /// state. Returns when every delivery has finished.
    ///
    /// # Errors
    ///
    /// When the state cannot be persisted (deliveries happened and are in memory).
    pub async fn tick(
        &mut self,
        now_ms: i64,
        notifier: &Notifier,
    ) -> Result<TickReport, DispatchError> {
        let flushes = self.due(now_ms);
        let mut report = TickReport {
            flushed: flushes.len(),
            ..TickReport::default()
        };
        let mut set = tokio::task::JoinSet::new();
        for (i, f) in flushes.iter().enumerate() {
            let (notifier, f) = (notifier.clone(), f.clone());
            set.spawn(async move { (i, deliver_flush(&notifier, &f).await) });
        }
        let mut ok: Vec<Vec<bool>> = flushes.iter().map(|f| vec![false; f.jobs.len()]).collect();
        while let Some(done) = set.join_next().await {
            // A delivery task that panicked counts as failed: its slots stay `false`.
            if let Ok((i, good)) = done {
                ok[i] = good;
            }
        }
        for (f, ok) in flushes.iter().zip(&ok) {
            for good in ok {
                if *good {
                    report.sent += 1;
                } else {
                    report.failed += 1;
                }
            }
            self.complete(f, ok);
        }
        if self.dirty {
            self.persist_async().await?;
        }
        Ok(report)
    }

    /// The silences, to create, list and expire them. Changes are written at the next
    /// [`tick`](Dispatcher::tick); call [`persist`](Dispatcher::persist) to write them at
    /// once.
    pub fn silences_mut(&mut self) -> &mut Silences {
        self.dirty = true;
        &mut self.silences
    }

    /// The silences.
    pub fn silences(&self) -> &Silences {
        &self.silences
    }

    /// The notification log.
    pub fn nflog(&self) -> &NotificationLog {
        &self.nflog
    }

    /// How many aggregation groups exist.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// How many alerts the groups hold in all.
    pub fn alert_count(&self) -> usize {
        self.groups.values().map(|g| g.alerts.len()).sum()
    }

    /// The alerts of the group with this key and receiver, in notification order.
    pub fn group_alerts(&self, group_key: &str, receiver: &str) -> Vec<AmAlert> {
        let mut v: Vec<AmAlert> = self
            .groups
            .get(&(group_key.to_string(), receiver.to_string()))
            .map(|g| g.alerts.values().cloned().collect())
            .unwrap_or_default();
        sort_for_notification(&mut v);
        v
    }

    /// Groups refused so far because [`DispatcherOptions::max_groups`] was reached.
    pub fn groups_refused(&self) -> u64 {
        self.groups_refused
    }

    /// Alerts refused so far because a group was full.
    pub fn alerts_refused(&self) -> u64 {
        self.alerts_refused
    }

    /// The alerts held by the groups that are not resolved at `now_ms`, by fingerprint,
    /// with their receivers and what mutes them (Alertmanager's `GET /api/v2/alerts`).
    pub fn alerts(&self, now_ms: i64) -> Vec<AlertStatus> {
        let mut seen: BTreeMap<Fingerprint, &AmAlert> = BTreeMap::new();
        for g in self.groups.values() {
            for (fp, a) in &g.alerts {
                seen.entry(*fp).or_insert(a);
            }
        }
        seen.into_iter()
            .filter(|(_, a)| !a.resolved_at(now_ms))
            .map(|(fp, a)| self.status_of(fp, a, now_ms))
            .collect()
    }

    /// The aggregation groups with their unresolved alerts at `now_ms` (Alertmanager's
    /// `GET /api/v2/alerts/groups`), ordered as Alertmanager orders them (by group labels,
    /// then receiver); groups with none are left out.
    pub fn groups(&self, now_ms: i64) -> Vec<GroupStatus> {
        let mut out: Vec<GroupStatus> = self
            .groups
            .iter()
            .filter_map(|((_, receiver), g)| {
                let mut alerts: Vec<AmAlert> = g
                    .alerts
                    .values()
                    .filter(|a| !a.resolved_at(now_ms))
                    .cloned()
                    .collect();
                if alerts.is_empty() {
                    return None;
                }
                sort_for_notification(&mut alerts);
                Some(GroupStatus {
                    labels: g.labels.clone(),
                    receiver: receiver.clone(),
                    muted_by: g.muted_by.clone(),
                    alerts: alerts
                        .iter()
                        .map(|a| self.status_of(a.fingerprint(), a, now_ms))
                        .collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            if a.labels == b.labels {
                a.receiver.cmp(&b.receiver)
            } else if label_set_before(&a.labels, &b.labels) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        });
        out
    }

    fn status_of(&self, fp: Fingerprint, a: &AmAlert, now_ms: i64) -> AlertStatus {
        AlertStatus {
            alert: a.clone(),
            fingerprint: fp,
            updated_at: self.updated.get(&fp).copied().unwrap_or(a.starts_at),
            receivers: self
                .tree
                .matches(&a.labels)
                .iter()
                .map(|r| r.opts.receiver.clone())
                .collect(),
            silenced_by: self.silences.silenced_by(&a.labels, now_ms),
            inhibited_by: self.inhibitor.inhibited_by(&a.labels, now_ms),
        }
    }

    /// Takes a new configuration (validated by [`Config::parse`]) as Alertmanager's reload
    /// does: the routing tree, receivers, inhibition rules and `resolve_timeout` are
    /// replaced, the silences and the notification log are kept, and every alert held is
    /// grouped again under the new tree. The new groups flush at once for alerts older than
    /// their `group_wait`; the kept log means nothing already notified is sent again unless
    /// its group changed.
    ///
    /// # Errors
    ///
    /// When the configuration has no route; the dispatcher is then unchanged.
    pub fn reconfigure(&mut self, config: &Config, now_ms: i64) -> Result<(), DispatchError> {
        let route = config.route.as_ref().ok_or(DispatchError::NoRoute)?;
        let mut held: BTreeMap<Fingerprint, AmAlert> = BTreeMap::new();
        // What muted each group, shown until its next flush even across a reload, as
        // Alertmanager keeps its marker.
        let mut muted_by = BTreeMap::new();
        for (id, g) in std::mem::take(&mut self.groups) {
            if !g.muted_by.is_empty() {
                muted_by.insert(id, g.muted_by);
            }
            for (fp, a) in g.alerts {
                held.entry(fp).or_insert(a);
            }
        }
        self.tree = Route::from_config(route);
        self.time_intervals = config.named_time_intervals();
        self.receivers = config
            .receivers
            .iter()
            .map(|r| (r.name.clone(), r.clone()))
            .collect();
        self.receiver_names = config.receivers.iter().map(|r| r.name.clone()).collect();
        self.inhibitor = Inhibitor::new(&config.inhibit_rules);
        self.resolve_timeout = config.global.resolve_timeout.0;
        // Deliveries under way stay marked until they report (`complete` or `abandon`): a
        // regrouped group must not flush again before its notification is logged.
        self.memberships.clear();
        // Regrouping is no receipt: it runs no remediation.
        self.remediation.configure(&[]);
        let updated = std::mem::take(&mut self.updated);
        for (fp, alert) in held {
            if self.insert(alert, now_ms).groups > 0 {
                self.updated
                    .insert(fp, updated.get(&fp).copied().unwrap_or(now_ms));
            }
        }
        for (id, names) in muted_by {
            if let Some(g) = self.groups.get_mut(&id) {
                g.muted_by = names;
            }
        }
        self.remediation.configure(&config.remediations);
        self.dirty = true;
        Ok(())
    }

    /// The receivers' names, in configuration order.
    pub fn receiver_names(&self) -> &[String] {
        &self.receiver_names
    }

    /// Whether an alert with `labels` is muted at `now_ms` (inhibited or silenced).
    pub fn is_muted(&self, labels: &LabelSet, now_ms: i64) -> bool {
        self.inhibitor.mutes(labels, now_ms) || self.silences.mutes(labels, now_ms)
    }

    /// Decides the remediations of an alert just received (held by a group): none when it
    /// is resolved or muted, and none from a route muted by its time intervals then (a
    /// maintenance window mutes its route's actions as it mutes its notifications).
    fn remediate(&mut self, alert: &AmAlert, fp: Fingerprint, now_ms: i64) {
        if alert.resolved_at(now_ms) || self.is_muted(&alert.labels, now_ms) {
            return;
        }
        let mut routes = self.tree.matches(&alert.labels);
        routes.retain(|r| time_muted(&self.time_intervals, &r.opts, now_ms).is_none());
        self.remediation.trigger(&routes, alert, fp, now_ms);
    }

    /// Takes up to `max` remediation runs decided by [`insert`](Dispatcher::insert), oldest
    /// first, to execute ([`RemediationRun::execute`]) and report with
    /// [`remediation_done`](Dispatcher::remediation_done). The
    /// [`Runner`](super::Runner) does this; [`tick`](Dispatcher::tick) does not (runs that
    /// nobody takes stay queued, and once the queue is full, further runs are dropped and
    /// counted).
    pub fn take_remediations(&mut self, max: usize) -> Vec<RemediationRun> {
        self.remediation.take(max)
    }

    /// Reports an executed remediation run, finished at `now_ms`: logged, counted in
    /// [`METRIC_REMEDIATIONS_TOTAL`](super::METRIC_REMEDIATIONS_TOTAL), and, while a group
    /// holds the alert, attached to its notifications as the annotation `remediation`.
    pub fn remediation_done(&mut self, outcome: &RemediationOutcome, now_ms: i64) {
        let held = self.updated.contains_key(&outcome.fingerprint);
        self.remediation.done(outcome, now_ms, held);
    }

    /// The remediation state: run history, skip counts, queued runs, outcomes.
    pub fn remediations(&self) -> &Remediations {
        &self.remediation
    }
}

/// Delivers the jobs of one flush concurrently, each with its retries; `ok[i]` tells how
/// `flush.jobs[i]` went.
pub(crate) async fn deliver_flush(notifier: &Notifier, flush: &Flush) -> Vec<bool> {
    let mut ok = vec![false; flush.jobs.len()];
    // Dropped at the deadline: the deliveries still running are aborted and count as failed.
    let mut set = tokio::task::JoinSet::new();
    let deadline = tokio::time::Instant::now() + flush.timeout;
    for (j, job) in flush.jobs.iter().enumerate() {
        let notifier = notifier.clone();
        let integration = job.integration.clone();
        let notification = job.notification.clone();
        set.spawn(async move {
            let good = notifier.deliver(&integration, &notification).await.is_ok();
            (j, good)
        });
    }
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(done)) => {
                // A delivery task that panicked counts as failed: its slot stays `false`.
                if let Ok((j, good)) = done {
                    ok[j] = good;
                }
            }
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    group = %flush.group_key,
                    receiver = %flush.receiver,
                    timeout = ?flush.timeout,
                    "notification timed out; the group flushes again at its next interval"
                );
                break;
            }
        }
    }
    ok
}

/// The shortest time a flush's deliveries get (Alertmanager's `notify.MinTimeout`).
pub(crate) const MIN_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

fn integrations(r: &Receiver) -> Vec<(usize, Integration)> {
    let mut v: Vec<(usize, Integration)> = Vec::new();
    v.extend(
        r.webhook_configs
            .iter()
            .cloned()
            .map(Integration::Webhook)
            .enumerate(),
    );
    v.extend(
        r.dingtalk_configs
            .iter()
            .cloned()
            .map(Integration::DingTalk)
            .enumerate(),
    );
    v.extend(
        r.wecom_configs
            .iter()
            .cloned()
            .map(Integration::WeCom)
            .enumerate(),
    );
    v.extend(
        r.email_configs
            .iter()
            .map(|c| Integration::Email(Box::new(c.clone())))
            .enumerate(),
    );
    v
}
