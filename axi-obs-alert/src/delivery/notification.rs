//! One notification of an aggregation group and the data every integration renders from it
//! (Alertmanager's `template.Data`), plus the webhook payload version 4.

use serde::Serialize;

use super::model::{AmAlert, LabelSet, ZERO_TIME, rfc3339_nano};
use crate::template::{GoTime, StructValue, Value};

/// Why a notification is sent (`notification_reason` in the webhook body, since 0.32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationReason {
    /// No earlier notification for this group and receiver.
    FirstNotification,
    /// A firing alert that the last notification did not have.
    NewAlertsAdded,
    /// An alert resolved since the last notification (with `send_resolved`).
    SomeAlertsResolved,
    /// Every alert resolved.
    AllAlertsResolved,
    /// Nothing changed and `repeat_interval` elapsed.
    RepeatIntervalElapsed,
}

impl NotificationReason {
    /// The text Alertmanager uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationReason::FirstNotification => "first notification",
            NotificationReason::NewAlertsAdded => "new alerts added",
            NotificationReason::SomeAlertsResolved => "some alerts resolved",
            NotificationReason::AllAlertsResolved => "all alerts resolved",
            NotificationReason::RepeatIntervalElapsed => "repeat interval elapsed",
        }
    }
}

/// What an aggregation group hands to a receiver's integrations at a flush.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The receiver's name.
    pub receiver: String,
    /// The group key (`{}/{...}:{...}`).
    pub group_key: String,
    /// The group's labels.
    pub group_labels: LabelSet,
    /// The alerts, in notification order
    /// ([`sort_for_notification`](super::sort_for_notification)).
    pub alerts: Vec<AmAlert>,
    /// Why it is sent.
    pub reason: NotificationReason,
    /// The flush time (ms since the epoch): alerts whose end is not after it are resolved;
    /// robots sign with it.
    pub now_ms: i64,
    /// This instance's external URL.
    pub external_url: String,
}

impl Notification {
    /// The alerts an integration sends: all of them, or only the firing ones when it does
    /// not send resolved notifications. Empty means: nothing to send (Alertmanager reports
    /// success without a request).
    pub fn alerts_for(&self, send_resolved: bool) -> Vec<AmAlert> {
        self.alerts
            .iter()
            .filter(|a| send_resolved || !a.resolved_at(self.now_ms))
            .cloned()
            .collect()
    }
}

/// One alert as templates and the webhook see it (`template.Alert`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertData {
    /// `firing` or `resolved`.
    pub status: String,
    /// Labels.
    pub labels: LabelSet,
    /// Annotations.
    pub annotations: LabelSet,
    /// RFC 3339.
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// RFC 3339; Go's zero time while firing.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// Link back to the source.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// [`Fingerprint`](super::Fingerprint) of the labels.
    pub fingerprint: String,
    #[serde(skip)]
    starts_ms: i64,
    #[serde(skip)]
    ends_ms: Option<i64>,
}

/// Alertmanager's `template.Data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateData {
    /// The receiver name, passed through Go's `regexp.QuoteMeta` as Alertmanager does.
    pub receiver: String,
    /// `firing` if any alert fires, else `resolved`.
    pub status: String,
    /// The alerts.
    pub alerts: Vec<AlertData>,
    /// The group's labels.
    pub group_labels: LabelSet,
    /// Labels every alert has with the same value.
    pub common_labels: LabelSet,
    /// Annotations every alert has with the same value.
    pub common_annotations: LabelSet,
    /// The external URL.
    pub external_url: String,
}

impl TemplateData {
    /// The data for `alerts` of notification `n`.
    pub fn new(n: &Notification, alerts: &[AmAlert]) -> TemplateData {
        let mut data_alerts = Vec::with_capacity(alerts.len());
        let mut any_firing = false;
        for a in alerts {
            let resolved = a.resolved_at(n.now_ms);
            any_firing |= !resolved;
            // Alertmanager hides the end of an alert that has not ended yet.
            let ends_ms = if resolved { a.ends_at } else { None };
            data_alerts.push(AlertData {
                status: a.status(n.now_ms).to_string(),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: rfc3339_nano(a.starts_at),
                ends_at: ends_ms.map_or_else(|| ZERO_TIME.to_string(), rfc3339_nano),
                generator_url: a.generator_url.clone(),
                fingerprint: a.fingerprint().to_string(),
                starts_ms: a.starts_at,
                ends_ms,
            });
        }
        let (common_labels, common_annotations) = match alerts.split_first() {
            None => (LabelSet::new(), LabelSet::new()),
            Some((first, rest)) => {
                let mut cl = first.labels.clone();
                let mut ca = first.annotations.clone();
                for a in rest {
                    cl.retain(|k, v| a.labels.get(k) == Some(v));
                    ca.retain(|k, v| a.annotations.get(k) == Some(v));
                }
                (cl, ca)
            }
        };
        TemplateData {
            receiver: quote_meta(&n.receiver),
            status: if any_firing { "firing" } else { "resolved" }.to_string(),
            alerts: data_alerts,
            group_labels: n.group_labels.clone(),
            common_labels,
            common_annotations,
            external_url: n.external_url.clone(),
        }
    }

    /// The data as a template value with Alertmanager's field names (`.Receiver`,
    /// `.Status`, `.Alerts` with `.Labels`, `.Annotations`, `.StartsAt`, ...,
    /// `.GroupLabels`, `.CommonLabels`, `.CommonAnnotations`, `.ExternalURL`).
    pub fn to_value(&self) -> Value {
        let time = |ms: i64| Value::Time(GoTime::from_unix_nanos(i128::from(ms) * 1_000_000));
        let alerts = self
            .alerts
            .iter()
            .map(|a| {
                Value::Struct(Box::new(StructValue {
                    type_name: "template.Alert".into(),
                    fields: vec![
                        ("Status".into(), Value::str(&a.status)),
                        ("Labels".into(), Value::kv(&a.labels)),
                        ("Annotations".into(), Value::kv(&a.annotations)),
                        ("StartsAt".into(), time(a.starts_ms)),
                        (
                            "EndsAt".into(),
                            a.ends_ms.map_or(
                                Value::Time(GoTime {
                                    secs: -62_135_596_800,
                                    nanos: 0,
                                }),
                                time,
                            ),
                        ),
                        ("GeneratorURL".into(), Value::str(&a.generator_url)),
                        ("Fingerprint".into(), Value::str(&a.fingerprint)),
                    ],
                }))
            })
            .collect();
        Value::Struct(Box::new(StructValue {
            type_name: "*template.Data".into(),
            fields: vec![
                ("Receiver".into(), Value::str(&self.receiver)),
                ("Status".into(), Value::str(&self.status)),
                ("Alerts".into(), Value::List(alerts)),
                ("GroupLabels".into(), Value::kv(&self.group_labels)),
                ("CommonLabels".into(), Value::kv(&self.common_labels)),
                (
                    "CommonAnnotations".into(),
                    Value::kv(&self.common_annotations),
                ),
                ("ExternalURL".into(), Value::str(&self.external_url)),
            ],
        }))
    }
}

/// Go's `regexp.QuoteMeta`.
fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The webhook body, version 4, field for field as Alertmanager 0.33 sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookMessage {
    /// The receiver name (regexp-quoted).
    pub receiver: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// The alerts (at most `max_alerts`).
    pub alerts: Vec<AlertData>,
    /// Why it is sent.
    pub notification_reason: String,
    /// The group's labels.
    #[serde(rename = "groupLabels")]
    pub group_labels: LabelSet,
    /// Labels common to the alerts sent.
    #[serde(rename = "commonLabels")]
    pub common_labels: LabelSet,
    /// Annotations common to the alerts sent.
    #[serde(rename = "commonAnnotations")]
    pub common_annotations: LabelSet,
    /// The external URL.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// Always `"4"`.
    pub version: String,
    /// The group key, unhashed.
    #[serde(rename = "groupKey")]
    pub group_key: String,
    /// How many alerts `max_alerts` left out.
    #[serde(rename = "truncatedAlerts")]
    pub truncated_alerts: u64,
}

impl WebhookMessage {
    /// The body for `alerts` (already filtered for `send_resolved`) of notification `n`,
    /// keeping the first `max_alerts` (0: all); common labels are those of the alerts kept.
    pub fn new(n: &Notification, alerts: &[AmAlert], max_alerts: u64) -> WebhookMessage {
        let keep = match usize::try_from(max_alerts) {
            Ok(m) if m != 0 && alerts.len() > m => m,
            _ => alerts.len(),
        };
        let data = TemplateData::new(n, &alerts[..keep]);
        WebhookMessage {
            receiver: data.receiver,
            status: data.status,
            alerts: data.alerts,
            notification_reason: n.reason.as_str().to_string(),
            group_labels: data.group_labels,
            common_labels: data.common_labels,
            common_annotations: data.common_annotations,
            external_url: data.external_url,
            version: "4".to_string(),
            group_key: n.group_key.clone(),
            truncated_alerts: (alerts.len() - keep) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::model::parse_rfc3339;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn truncation_and_common_labels() {
        let mk = |i: &str, sev: &str| AmAlert {
            labels: ls(&[("alertname", "A"), ("i", i), ("severity", sev)]),
            annotations: ls(&[("summary", "s")]),
            starts_at: 0,
            ends_at: None,
            generator_url: String::new(),
        };
        let n = Notification {
            receiver: "a.b".into(),
            group_key: "{}:{}".into(),
            group_labels: LabelSet::new(),
            alerts: vec![mk("1", "x"), mk("2", "x"), mk("3", "y")],
            reason: NotificationReason::FirstNotification,
            now_ms: 10,
            external_url: "http://x".into(),
        };
        let m = WebhookMessage::new(&n, &n.alerts, 2);
        assert_eq!(m.truncated_alerts, 1);
        assert_eq!(m.alerts.len(), 2);
        assert_eq!(
            m.common_labels,
            ls(&[("alertname", "A"), ("severity", "x")])
        );
        assert_eq!(m.receiver, r"a\.b");
        let all = WebhookMessage::new(&n, &n.alerts, 0);
        assert_eq!(all.common_labels, ls(&[("alertname", "A")]));
        assert_eq!(all.truncated_alerts, 0);
    }

    #[test]
    fn resolved_filtering_and_status() {
        let end = parse_rfc3339("2026-01-01T00:00:05Z").unwrap();
        let a = AmAlert {
            labels: ls(&[("alertname", "A")]),
            annotations: LabelSet::new(),
            starts_at: 0,
            ends_at: end,
            generator_url: String::new(),
        };
        let mut n = Notification {
            receiver: "r".into(),
            group_key: "{}:{}".into(),
            group_labels: LabelSet::new(),
            alerts: vec![a],
            reason: NotificationReason::AllAlertsResolved,
            now_ms: end.unwrap(),
            external_url: String::new(),
        };
        assert!(n.alerts_for(false).is_empty());
        let m = WebhookMessage::new(&n, &n.alerts_for(true), 0);
        assert_eq!(m.status, "resolved");
        assert_eq!(m.alerts[0].ends_at, "2026-01-01T00:00:05Z");
        n.now_ms -= 1;
        let m = WebhookMessage::new(&n, &n.alerts_for(false), 0);
        assert_eq!(m.status, "firing");
        assert_eq!(m.alerts[0].ends_at, ZERO_TIME);
    }
}
