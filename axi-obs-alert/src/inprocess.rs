//! Alerting on a service's own metrics, inside the service: no Prometheus, no scrape.
//!
//! [`InProcessRules`] reads the metrics the service records through axi-obs-core (or any
//! source of Prometheus text you give it) on its own thread every interval, keeps them in a
//! bounded [`MemStorage`], and evaluates Prometheus rule files over them: each group every
//! interval, or on its own `interval:`, querying `query_offset:` in the past when it has one. Alerts are read with
//! [`InProcessRules::alerts`] or pushed to a callback after every round, and delivered as
//! Prometheus delivers them (firing alerts again after the resend delay, resolved ones once,
//! Prometheus's `endsAt`): to real Alertmanagers
//! ([`alertmanager`](InProcessBuilder::alertmanager)) and to the built-in router
//! ([`router`](InProcessBuilder::router): routing, grouping, silences, webhook, mail,
//! DingTalk, WeCom, remediation). Evaluation never runs on the caller's threads and a failing
//! round is logged, never raised.
//!
//! ```no_run
//! use std::time::Duration;
//! use axi_obs_alert::inprocess::InProcessRules;
//!
//! let _telemetry = axi_obs_core::Telemetry::builder().service_name("shop").install();
//! let rules = InProcessRules::builder()
//!     .rules_yaml(
//!         "groups:\n  - name: shop\n    rules:\n      - alert: PaymentsFailing\n        expr: rate(shop_payments_failed_total[1m]) > 0.1\n        for: 2m\n",
//!     )
//!     .interval(Duration::from_secs(15))
//!     .on_alerts(|alerts| {
//!         for a in alerts {
//!             tracing::warn!(alert = %a.labels, state = a.state.as_str(), "alert");
//!         }
//!     })
//!     .start()
//!     .expect("valid rules");
//! // ... the service runs; dropping `rules` stops the evaluation thread.
//! # drop(rules);
//! ```
//!
//! Delivering to an Alertmanager and to the built-in router:
//!
//! ```no_run
//! # async fn demo(router: axi_obs_alert::delivery::Runner) {
//! use std::sync::Arc;
//! use axi_obs_alert::delivery::{AlertmanagerSender, SenderOptions};
//! use axi_obs_alert::inprocess::InProcessRules;
//!
//! let am = Arc::new(
//!     AlertmanagerSender::new(SenderOptions::new(vec!["http://alertmanager:9093".into()]))
//!         .expect("valid URL"),
//! );
//! let sending = tokio::spawn({
//!     let am = am.clone();
//!     async move {
//!         am.run(async {
//!             let _ = tokio::signal::ctrl_c().await;
//!         })
//!         .await
//!     }
//! });
//! let rules = InProcessRules::builder()
//!     .rule_file("rules/shop.yml")
//!     .external_url("http://shop:8080")
//!     .alertmanager(am)
//!     .router(router) // a Runner over a Dispatcher built from an alertmanager.yml
//!     .start()
//!     .expect("valid rules");
//! # drop((rules, sending));
//! # }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::delivery::{AlertmanagerSender, DEFAULT_RESEND_DELAY, Runner, group_alerts_to_send};
use crate::enrich::AnnotationEnricher;
use crate::promql::value::stale_nan;
use crate::promql::{Engine, Labels, MemStorage};
use crate::rules::{Alert, AlertState, GroupState, RuleError, RuleState, TemplateContext};
use crate::scrape::parse_text;

type Source = Box<dyn FnMut() -> String + Send>;
type OnAlerts = Box<dyn FnMut(&[Alert]) + Send>;

/// Configures [`InProcessRules`].
pub struct InProcessBuilder {
    files: Vec<PathBuf>,
    texts: Vec<String>,
    interval: Duration,
    labels: BTreeMap<String, String>,
    templates: TemplateContext,
    source: Option<Source>,
    on_alerts: Option<OnAlerts>,
    enrichers: Vec<Box<dyn AnnotationEnricher>>,
    delivery: Delivery,
}

/// Where the alerts a round fires are sent, as Prometheus sends them.
#[derive(Default)]
struct Delivery {
    alertmanagers: Vec<Arc<AlertmanagerSender>>,
    router: Option<Runner>,
    resend_delay: Option<Duration>,
    external_url: String,
}

impl Delivery {
    fn is_empty(&self) -> bool {
        self.alertmanagers.is_empty() && self.router.is_none()
    }

    /// Picks what each alerting rule of the groups evaluated at `t` sends (Prometheus's
    /// `sendAlerts` after a group's evaluation: firing alerts again after the resend delay,
    /// resolved ones once; `endsAt` from the group's interval) and hands it to every
    /// Alertmanager sender (queued, never blocking) and to the router.
    fn send<'a>(&self, evaluated: impl Iterator<Item = (&'a mut GroupState, Duration)>, t: i64) {
        if self.is_empty() {
            return;
        }
        let resend = self.resend_delay.unwrap_or(DEFAULT_RESEND_DELAY);
        let batch: Vec<_> = evaluated
            .flat_map(|(g, interval)| {
                group_alerts_to_send(g, t, interval, resend, &self.external_url)
            })
            .collect();
        if batch.is_empty() {
            return;
        }
        for s in &self.alertmanagers {
            s.send(batch.clone());
        }
        if let Some(router) = &self.router {
            let alerts = batch.into_iter().map(|p| p.into_am_alert(t)).collect();
            if !router.blocking_send(alerts) {
                tracing::warn!("the alert router has stopped: alerts not routed");
            }
        }
    }
}

impl std::fmt::Debug for InProcessBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBuilder")
            .field("files", &self.files)
            .field("interval", &self.interval)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// Rules evaluated over the service's own metrics on a background thread.
#[derive(Debug)]
pub struct InProcessRules {
    alerts: Arc<Mutex<Vec<Alert>>>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl InProcessRules {
    /// Starts configuring: no rules, a 15 s interval, axi-obs-core's registry as the source.
    pub fn builder() -> InProcessBuilder {
        InProcessBuilder {
            files: Vec::new(),
            texts: Vec::new(),
            interval: Duration::from_secs(15),
            labels: BTreeMap::new(),
            templates: TemplateContext::default(),
            source: None,
            on_alerts: None,
            delivery: Delivery::default(),
            enrichers: Vec::new(),
        }
    }

    /// Pending and firing alerts after the last round.
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for InProcessRules {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl InProcessBuilder {
    /// Adds a rule file (Prometheus format).
    pub fn rule_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push(path.into());
        self
    }

    /// Adds rules given as YAML text (Prometheus rule-file format).
    pub fn rules_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.texts.push(yaml.into());
        self
    }

    /// How often metrics are read, and how often groups without an `interval:` of their own
    /// are evaluated (default 15 s; at least 10 ms). A group with its own `interval:` (at
    /// least 10 ms) is evaluated on that, over the samples read last, and queries
    /// `query_offset:` in the past when it has one (samples are kept long enough for it).
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d.max(MIN_INTERVAL);
        self
    }

    /// A label added to every sample read, as a scrape adds `job` and `instance`.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// `$externalLabels` and `$externalURL` for templates.
    pub fn templates(mut self, t: TemplateContext) -> Self {
        self.templates = t;
        self
    }

    /// Where metrics come from: a function returning Prometheus text (default: the registry
    /// of the installed axi-obs-core telemetry, empty when none is installed).
    pub fn source(mut self, f: impl FnMut() -> String + Send + 'static) -> Self {
        self.source = Some(Box::new(f));
        self
    }

    /// Called on the evaluation thread after every round with the pending and firing alerts.
    pub fn on_alerts(mut self, f: impl FnMut(&[Alert]) + Send + 'static) -> Self {
        self.on_alerts = Some(Box::new(f));
        self
    }

    /// Adds an [annotation enricher](crate::enrich), run over the alerts after every round
    /// (in the order added, on the evaluation thread) before `on_alerts` and
    /// [`InProcessRules::alerts`] see them. Defaults to none.
    pub fn enricher(mut self, e: impl AnnotationEnricher) -> Self {
        self.enrichers.push(Box::new(e));
        self
    }

    /// Sends the alerts to a real Alertmanager (repeat for several) as Prometheus does:
    /// firing alerts after each round that fires them and again every
    /// [`resend_delay`](InProcessBuilder::resend_delay), resolved ones once, `endsAt` as
    /// Prometheus computes it. The sender queues (bounded, the oldest dropped and counted);
    /// run its [`run`](AlertmanagerSender::run) task on your Tokio runtime to deliver.
    pub fn alertmanager(mut self, sender: Arc<AlertmanagerSender>) -> Self {
        self.delivery.alertmanagers.push(sender);
        self
    }

    /// Sends the alerts to the built-in router ([`Runner`]: routing, grouping, inhibition,
    /// silences, webhook/mail/DingTalk/WeCom), as they would reach Alertmanager. The
    /// evaluation thread waits while the router's channel is full.
    pub fn router(mut self, runner: Runner) -> Self {
        self.delivery.router = Some(runner);
        self
    }

    /// How long a firing alert waits before it is sent again (Prometheus's
    /// `--rules.alert.resend-delay`, 1 minute by default).
    pub fn resend_delay(mut self, d: Duration) -> Self {
        self.delivery.resend_delay = Some(d);
        self
    }

    /// The base of the alerts' `generatorURL` (`<url>/graph?g0.expr=...`), as Prometheus's
    /// `--web.external-url`; empty by default.
    pub fn external_url(mut self, url: impl Into<String>) -> Self {
        self.delivery.external_url = url.into();
        self
    }

    /// Loads and checks every rule (errors name `file:line`, the group and the rule) and
    /// starts the evaluation thread.
    pub fn start(self) -> Result<InProcessRules, Vec<RuleError>> {
        let mut groups = Vec::new();
        let mut errors = Vec::new();
        for f in &self.files {
            match crate::rules::load(f) {
                Ok((file, _)) => groups.extend(file.groups),
                Err(e) => errors.extend(e),
            }
        }
        for (i, text) in self.texts.iter().enumerate() {
            let name = format!("<rules {}>", i + 1);
            match crate::rules::parse(text, Path::new(&name)) {
                Ok((file, _)) => groups.extend(file.groups),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut groups: Vec<GroupState> = groups.into_iter().map(GroupState::new).collect();
        let alerts = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = channel::<()>();
        let shared = alerts.clone();
        let mut source = self.source.unwrap_or_else(|| {
            Box::new(|| {
                axi_obs_core::global_metrics()
                    .map(|m| m.render())
                    .unwrap_or_default()
            })
        });
        let mut on_alerts = self.on_alerts;
        let mut enrichers = self.enrichers;
        let delivery = self.delivery;
        let labels = Labels::from_pairs(self.labels);
        let interval = self.interval;
        let templates = self.templates;
        // Each group's interval (its own, else the reading interval) and query offset.
        let every: Vec<Duration> = groups
            .iter()
            .map(|g| {
                g.group
                    .interval
                    .filter(|d| !d.is_zero())
                    .map_or(interval, |d| d.max(MIN_INTERVAL))
            })
            .collect();
        let offsets: Vec<i64> = groups
            .iter()
            .map(|g| g.group.query_offset.map_or(0, |d| d.as_millis() as i64))
            .collect();
        // What the rules read reaches back the longest range and query offset.
        let retention = retention_ms(&groups)
            + offsets.iter().copied().max().unwrap_or(0)
            + 2 * every.iter().max().copied().unwrap_or(interval).as_millis() as i64;
        let thread = std::thread::Builder::new()
            .name("axi-alert-inprocess".into())
            .spawn(move || {
                // Subqueries without a step take the reading interval, as Prometheus's take the
                // global `evaluation_interval` (not the group's).
                let engine = Engine::default().default_subquery_step(interval);
                let mut store = MemStorage::new();
                let mut previous: HashSet<Labels> = HashSet::new();
                let mut schedule = Schedule::new(interval, &every);
                loop {
                    let t = now_ms();
                    schedule.observe(t);
                    if schedule.read_due(t) {
                        previous = read(&mut source, &labels, &mut store, t, &previous);
                    }
                    let due = schedule.groups_due(t);
                    if due.iter().any(|d| *d) {
                        evaluate(
                            &mut groups,
                            &due,
                            &offsets,
                            &engine,
                            &mut store,
                            t,
                            &templates,
                        );
                        store.drop_before(t - retention);
                        // Enriched in place (a rule re-expands its annotations every
                        // evaluation), so the alerts sent carry the added annotations too.
                        if !enrichers.is_empty() {
                            let active = evaluated(&mut groups, &every, &due)
                                .flat_map(|(g, _)| g.rules.iter_mut())
                                .filter_map(|r| match r {
                                    RuleState::Alerting(a) => Some(a.active.values_mut()),
                                    RuleState::Recording { .. } => None,
                                });
                            crate::enrich::apply(
                                &mut enrichers,
                                active.flatten().filter(|a| a.state != AlertState::Inactive),
                            );
                        }
                        delivery.send(evaluated(&mut groups, &every, &due), t);
                        let now: Vec<Alert> = groups
                            .iter()
                            .flat_map(|g| g.rules.iter())
                            .filter_map(|r| match r {
                                RuleState::Alerting(a) => Some(a.alerts()),
                                RuleState::Recording { .. } => None,
                            })
                            .flatten()
                            .cloned()
                            .collect();
                        if let Some(f) = on_alerts.as_mut() {
                            f(&now);
                        }
                        *shared.lock().unwrap_or_else(|e| e.into_inner()) = now;
                    }
                    // At most one reading interval, whatever the wall clock does.
                    let wait = (schedule.next(t) - now_ms()).min(schedule.read_every);
                    match stopped.recv_timeout(Duration::from_millis(wait.max(1) as u64)) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
            .map_err(|e| {
                vec![RuleError {
                    file: PathBuf::new(),
                    line: None,
                    column: None,
                    group: None,
                    rule: None,
                    message: format!("cannot start the evaluation thread: {e}"),
                }]
            })?;
        Ok(InProcessRules {
            alerts,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// The shortest reading or evaluation interval.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// When the metrics are read next and when each group is evaluated next (ms, wall clock).
struct Schedule {
    read_every: i64,
    next_read: i64,
    group_every: Vec<i64>,
    next_due: Vec<i64>,
    /// The wall clock when last observed.
    last_seen: i64,
}

impl Schedule {
    /// Reading and every group due at once.
    fn new(read_every: Duration, group_every: &[Duration]) -> Schedule {
        Schedule {
            read_every: read_every.as_millis().max(1) as i64,
            next_read: i64::MIN,
            group_every: group_every
                .iter()
                .map(|d| d.as_millis().max(1) as i64)
                .collect(),
            next_due: vec![i64::MIN; group_every.len()],
            last_seen: i64::MIN,
        }
    }

    /// Takes the wall clock at `t`: when it went back (a correction), every due time moves
    /// back as far, so the cadence goes on instead of waiting for the old times to come again.
    fn observe(&mut self, t: i64) {
        if t < self.last_seen {
            let back = self.last_seen - t;
            for due in std::iter::once(&mut self.next_read).chain(&mut self.next_due) {
                *due = due.saturating_sub(back);
            }
        }
        self.last_seen = t;
    }

    /// Whether to read at `t`; if so, the next read is one interval on (or one interval from
    /// `t` after a stall longer than that, rather than a burst of catching up).
    fn read_due(&mut self, t: i64) -> bool {
        advance(&mut self.next_read, self.read_every, t)
    }

    /// Which groups to evaluate at `t`, each then due one of its intervals on.
    fn groups_due(&mut self, t: i64) -> Vec<bool> {
        self.next_due
            .iter_mut()
            .zip(&self.group_every)
            .map(|(due, every)| advance(due, *every, t))
            .collect()
    }

    /// The next time anything is due.
    fn next(&self, t: i64) -> i64 {
        self.next_due
            .iter()
            .copied()
            .fold(self.next_read, i64::min)
            .max(t + 1)
    }
}

/// Whether `*due` has come at `t`; if so, moves it one `every` on (from `t` when that is
/// still not after `t`).
fn advance(due: &mut i64, every: i64, t: i64) -> bool {
    if *due > t {
        return false;
    }
    let next = due.saturating_add(every);
    *due = if next > t { next } else { t + every };
    true
}

/// Evaluates the groups `due` at `t`, each querying at `t` minus its query offset.
fn evaluate(
    groups: &mut [GroupState],
    due: &[bool],
    offsets: &[i64],
    engine: &Engine,
    store: &mut MemStorage,
    t: i64,
    templates: &TemplateContext,
) {
    for ((g, due), offset) in groups.iter_mut().zip(due).zip(offsets) {
        if !due {
            continue;
        }
        for o in g.eval(engine, store, t, *offset, templates) {
            if let Some(e) = o.error {
                tracing::warn!(group = %g.group.name, rule = %o.rule, error = %e, "rule evaluation failed");
            }
        }
    }
}

/// The groups `due` this round, with their intervals.
fn evaluated<'a>(
    groups: &'a mut [GroupState],
    every: &'a [Duration],
    due: &'a [bool],
) -> impl Iterator<Item = (&'a mut GroupState, Duration)> {
    groups
        .iter_mut()
        .zip(every.iter().copied())
        .zip(due)
        .filter(|(_, due)| **due)
        .map(|(g, _)| g)
}

/// Reads one round of samples; series that disappeared get a staleness marker. Returns the
/// series read.
fn read(
    source: &mut Source,
    labels: &Labels,
    store: &mut MemStorage,
    t: i64,
    previous: &HashSet<Labels>,
) -> HashSet<Labels> {
    let text = source();
    let mut current = HashSet::new();
    match parse_text(&text) {
        Ok(samples) => {
            for s in samples {
                let mut ls = s.labels;
                for (k, v) in labels.iter() {
                    ls.set(k.to_owned(), v.to_owned());
                }
                // Out of order (a wall clock set back, a source's own timestamps going
                // back) or repeated: dropped, as Prometheus's head drops them; otherwise new
                // samples would land among the old ones and counters would seem to reset.
                store.add_if_newer(&ls, s.timestamp.unwrap_or(t), s.value);
                current.insert(ls);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the metrics source"),
    }
    for gone in previous.difference(&current) {
        store.add_if_newer(gone, t, stale_nan());
    }
    current
}

fn retention_ms(groups: &[GroupState]) -> i64 {
    groups
        .iter()
        .flat_map(|g| g.group.rules.iter())
        .map(|r| crate::daemon::longest_range_ms(&r.expr))
        .max()
        .unwrap_or(0)
        + 5 * 60_000
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_reads_and_evaluates_each_group_on_its_interval() {
        let ms = Duration::from_millis;
        let mut s = Schedule::new(ms(100), &[ms(100), ms(250)]);
        // Everything at once at the start.
        assert!(s.read_due(1_000));
        assert_eq!(s.groups_due(1_000), [true, true]);
        assert_eq!(s.next(1_000), 1_100);
        assert!(!s.read_due(1_099));
        assert_eq!(s.groups_due(1_099), [false, false]);
        // On time: one interval on from the last due time, not from when it ran.
        assert!(s.read_due(1_104));
        assert_eq!(s.groups_due(1_104), [true, false]);
        assert_eq!(s.next(1_104), 1_200);
        assert!(s.read_due(1_250));
        assert_eq!(s.groups_due(1_250), [true, true]);
        assert_eq!(s.next(1_250), 1_300);
        // An overdue read is due at once.
        assert_eq!(s.next(1_320), 1_321);
        // After a stall of many intervals: once, then one interval from then (no burst).
        assert!(s.read_due(5_000));
        assert_eq!(s.groups_due(5_000), [true, true]);
        assert!(!s.read_due(5_001));
        assert_eq!(s.groups_due(5_001), [false, false]);
        assert_eq!(s.next(5_001), 5_100);
        // Nothing is ever due in the past.
        assert_eq!(s.next(9_000), 9_001);
    }

    #[test]
    fn a_wall_clock_set_back_keeps_the_cadence() {
        let ms = Duration::from_millis;
        let mut s = Schedule::new(ms(100), &[ms(300)]);
        s.observe(10_000);
        assert!(s.read_due(10_000));
        assert_eq!(s.groups_due(10_000), [true]);
        s.observe(10_050);
        // Set back an hour: the next read is still 50 ms away, the group's 250 ms.
        s.observe(10_050 - 3_600_000);
        let t = 10_050 - 3_600_000;
        assert_eq!(s.next(t), t + 50);
        assert!(!s.read_due(t + 49));
        assert!(s.read_due(t + 50));
        assert_eq!(s.groups_due(t + 250), [true]);
    }
}
