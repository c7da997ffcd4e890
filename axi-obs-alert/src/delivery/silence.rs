//! Silences as Alertmanager's `silence/silence.go`: matchers and a time span; an alert
//! matching every matcher of an active silence is muted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::matcher::{MatchOp, Matcher};
use super::model::{Fingerprint, LabelSet};

/// A silence's state at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceState {
    /// Starts in the future.
    Pending,
    /// Mutes matching alerts now.
    Active,
    /// Ended.
    Expired,
}

impl SilenceState {
    /// `pending`, `active` or `expired`, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// One silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    /// Its identifier (UUID-shaped).
    pub id: String,
    /// Every matcher must match an alert's labels for it to be muted.
    pub matchers: Vec<Matcher>,
    /// Start (ms since the epoch).
    pub starts_at: i64,
    /// End (ms since the epoch), after the start.
    pub ends_at: i64,
    /// Last change (ms since the epoch).
    pub updated_at: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl Silence {
    /// The state at `now_ms`: pending before the start, expired from the end on.
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if now_ms < self.starts_at {
            SilenceState::Pending
        } else if now_ms >= self.ends_at {
            SilenceState::Expired
        } else {
            SilenceState::Active
        }
    }

    /// Whether it mutes an alert with `labels` at `now_ms`.
    pub fn mutes(&self, labels: &LabelSet, now_ms: i64) -> bool {
        self.state(now_ms) == SilenceState::Active
            && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// Why a silence operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// No matcher, or only matchers that match the empty label set.
    #[error("at least one matcher must not match the empty string")]
    MatchesEverything,
    /// The end is not after the start.
    #[error("end time must not be before start time")]
    EndBeforeStart,
    /// The end is already past.
    #[error("end time can't be in the past")]
    EndInPast,
    /// No such silence.
    #[error("silence {0} not found")]
    NotFound(String),
    /// The silence has already expired.
    #[error("silence {0} already expired")]
    AlreadyExpired(String),
}

/// The silences, expired ones kept for the retention (Alertmanager: `--data.retention`).
///
/// ```
/// use std::time::Duration;
/// use axi_obs_alert::delivery::{LabelSet, Matcher, Silences};
///
/// let mut s = Silences::new(Duration::from_secs(3600));
/// let m = Matcher::parse_list(r#"{alertname="Down"}"#).unwrap();
/// let id = s.create(m, 0, 60_000, "me", "maintenance", 0).unwrap();
/// let labels = LabelSet::from([("alertname".to_string(), "Down".to_string())]);
/// assert!(s.mutes(&labels, 1_000));
/// s.expire(&id, 2_000).unwrap();
/// assert!(!s.mutes(&labels, 2_000));
/// ```
#[derive(Debug, Clone)]
pub struct Silences {
    by_id: BTreeMap<String, Silence>,
    retention: Duration,
    created: u64,
}

impl Silences {
    /// No silences; expired ones are dropped `retention` after their end.
    pub fn new(retention: Duration) -> Silences {
        Silences {
            by_id: BTreeMap::new(),
            retention,
            created: 0,
        }
    }

    /// Creates a silence and returns its id.
    ///
    /// # Errors
    ///
    /// When every matcher matches the empty set (or there is none), the end is not after
    /// the start, or the end is not after `now_ms`.
    pub fn create(
        &mut self,
        matchers: Vec<Matcher>,
        starts_at: i64,
        ends_at: i64,
        created_by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<String, SilenceError> {
        if matchers.iter().all(|m| m.matches(&LabelSet::new())) {
            return Err(SilenceError::MatchesEverything);
        }
        if ends_at <= starts_at {
            return Err(SilenceError::EndBeforeStart);
        }
        if ends_at <= now_ms {
            return Err(SilenceError::EndInPast);
        }
        self.created += 1;
        let id = self.new_id(now_ms, &matchers, created_by);
        self.by_id.insert(
            id.clone(),
            Silence {
                id: id.clone(),
                matchers,
                // Alertmanager moves a start in the past to now.
                starts_at: starts_at.max(now_ms),
                ends_at,
                updated_at: now_ms,
                created_by: created_by.to_string(),
                comment: comment.to_string(),
            },
        );
        Ok(id)
    }

    fn new_id(&self, now_ms: i64, matchers: &[Matcher], created_by: &str) -> String {
        let mut text = format!(
            "{now_ms}\u{0}{}\u{0}{}\u{0}{created_by}",
            self.created,
            self.by_id.len()
        );
        for m in matchers {
            text.push_str(&format!("\u{0}{}{}{}", m.name, m.op.as_str(), m.value));
        }
        let a = Fingerprint::of_pairs([("id", text.as_str())]).0;
        let b = Fingerprint::of_pairs([("id2", text.as_str())]).0;
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    /// Changes the silence `id` as Alertmanager's `Silences.Set` does for a silence posted
    /// with an id: in place when the matchers are the same and the change keeps the
    /// silence's history true (an active silence keeps its start and does not end in the
    /// past; a pending one does not start in the past); otherwise the old silence is
    /// expired (if it is not already) and a new one created. Returns the id now in force.
    ///
    /// # Errors
    ///
    /// [`SilenceError::NotFound`], or the validation errors of [`create`](Silences::create).
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        id: &str,
        matchers: Vec<Matcher>,
        starts_at: i64,
        ends_at: i64,
        created_by: &str,
        comment: &str,
        now_ms: i64,
    ) -> Result<String, SilenceError> {
        let old = self
            .by_id
            .get(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        let old_open = old.state(now_ms) != SilenceState::Expired;
        let in_place = old.matchers == matchers
            && match old.state(now_ms) {
                SilenceState::Active => starts_at == old.starts_at && ends_at >= now_ms,
                SilenceState::Pending => starts_at >= now_ms,
                SilenceState::Expired => false,
            };
        if !in_place {
            let new_id = self.create(matchers, starts_at, ends_at, created_by, comment, now_ms)?;
            if old_open {
                self.expire(id, now_ms)?;
            }
            return Ok(new_id);
        }
        if matchers.iter().all(|m| m.matches(&LabelSet::new())) {
            return Err(SilenceError::MatchesEverything);
        }
        if ends_at <= starts_at {
            return Err(SilenceError::EndBeforeStart);
        }
        if let Some(s) = self.by_id.get_mut(id) {
            s.starts_at = starts_at;
            s.ends_at = ends_at;
            s.created_by = created_by.to_string();
            s.comment = comment.to_string();
            s.updated_at = now_ms;
        }
        Ok(id.to_string())
    }

    /// Ends a silence at `now_ms` (a pending one ends before it started).
    ///
    /// # Errors
    ///
    /// When there is no such silence or it already expired.
    pub fn expire(&mut self, id: &str, now_ms: i64) -> Result<(), SilenceError> {
        let s = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        match s.state(now_ms) {
            SilenceState::Expired => return Err(SilenceError::AlreadyExpired(id.to_string())),
            SilenceState::Pending => {
                s.starts_at = now_ms;
                s.ends_at = now_ms;
            }
            SilenceState::Active => s.ends_at = now_ms,
        }
        s.updated_at = now_ms;
        Ok(())
    }

    /// The silence with this id.
    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.by_id.get(id)
    }

    /// All silences, by id.
    pub fn list(&self) -> Vec<&Silence> {
        self.by_id.values().collect()
    }

    /// Whether an active silence mutes an alert with `labels` at `now_ms`.
    pub fn mutes(&self, labels: &LabelSet, now_ms: i64) -> bool {
        self.by_id.values().any(|s| s.mutes(labels, now_ms))
    }

    /// The ids of the active silences that mute an alert with `labels` at `now_ms` (the
    /// API's `silencedBy`), sorted.
    pub fn silenced_by(&self, labels: &LabelSet, now_ms: i64) -> Vec<String> {
        self.by_id
            .values()
            .filter(|s| s.mutes(labels, now_ms))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Drops silences that ended more than the retention before `now_ms`; returns how many.
    pub fn gc(&mut self, now_ms: i64) -> usize {
        let keep = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let before = self.by_id.len();
        self.by_id
            .retain(|_, s| s.ends_at.saturating_add(keep) > now_ms);
        before - self.by_id.len()
    }

    /// The silences as stored in a snapshot.
    pub(crate) fn records(&self) -> Vec<SilenceRecord> {
        self.by_id.values().map(SilenceRecord::from).collect()
    }

    /// Replaces the content with silences read back from a snapshot.
    pub(crate) fn restore(&mut self, records: Vec<SilenceRecord>) -> Result<(), String> {
        let mut by_id = BTreeMap::new();
        for r in records {
            let s = r.into_silence()?;
            by_id.insert(s.id.clone(), s);
        }
        self.created = by_id.len() as u64;
        self.by_id = by_id;
        Ok(())
    }
}

/// A matcher as Alertmanager's API writes it (`isEqual` defaults to true when read).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MatcherRecord {
    name: String,
    value: String,
    #[serde(rename = "isRegex")]
    is_regex: bool,
    #[serde(rename = "isEqual", default = "yes")]
    is_equal: bool,
}

fn yes() -> bool {
    true
}

impl From<&Matcher> for MatcherRecord {
    fn from(m: &Matcher) -> Self {
        MatcherRecord {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: matches!(m.op, MatchOp::Regex | MatchOp::NotRegex),
            is_equal: matches!(m.op, MatchOp::Equal | MatchOp::Regex),
        }
    }
}

impl MatcherRecord {
    pub(crate) fn to_matcher(&self) -> Result<Matcher, String> {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        };
        Matcher::new(&self.name, op, &self.value)
    }
}

/// A silence as a snapshot stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SilenceRecord {
    id: String,
    matchers: Vec<MatcherRecord>,
    #[serde(rename = "startsAt")]
    starts_at: i64,
    #[serde(rename = "endsAt")]
    ends_at: i64,
    #[serde(rename = "updatedAt")]
    updated_at: i64,
    #[serde(rename = "createdBy")]
    created_by: String,
    comment: String,
}

impl From<&Silence> for SilenceRecord {
    fn from(s: &Silence) -> Self {
        SilenceRecord {
            id: s.id.clone(),
            matchers: s.matchers.iter().map(MatcherRecord::from).collect(),
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            updated_at: s.updated_at,
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
        }
    }
}

impl SilenceRecord {
    fn into_silence(self) -> Result<Silence, String> {
        let matchers = self
            .matchers
            .iter()
            .map(MatcherRecord::to_matcher)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Silence {
            id: self.id,
            matchers,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            updated_at: self.updated_at,
            created_by: self.created_by,
            comment: self.comment,
        })
    }
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
    fn states_validation_and_gc() {
        let mut s = Silences::new(Duration::from_secs(10));
        let m = |t: &str| Matcher::parse_list(t).expect("matchers");
        assert_eq!(
            s.create(m(r#"{x=~".*"}"#), 0, 10, "a", "c", 0),
            Err(SilenceError::MatchesEverything)
        );
        assert_eq!(
            s.create(m(r#"{x="1"}"#), 10, 10, "a", "c", 0),
            Err(SilenceError::EndBeforeStart)
        );
        assert_eq!(
            s.create(m(r#"{x="1"}"#), 0, 5, "a", "c", 5),
            Err(SilenceError::EndInPast)
        );
        let pending = s
            .create(m(r#"{x="1"}"#), 100, 200, "a", "c", 0)
            .expect("create");
        let active = s
            .create(m(r#"{x=~"2|3", y!="z"}"#), 0, 200, "a", "c", 0)
            .expect("create");
        assert_ne!(pending, active);
        assert_eq!(
            s.get(&pending).expect("get").state(50),
            SilenceState::Pending
        );
        assert!(!s.mutes(&ls(&[("x", "1")]), 50));
        assert!(s.mutes(&ls(&[("x", "1")]), 100));
        assert!(s.mutes(&ls(&[("x", "3")]), 50));
        assert!(!s.mutes(&ls(&[("x", "3"), ("y", "z")]), 50));
        s.expire(&pending, 60).expect("expire");
        assert_eq!(
            s.get(&pending).expect("get").state(60),
            SilenceState::Expired
        );
        assert!(!s.mutes(&ls(&[("x", "1")]), 100));
        assert_eq!(
            s.expire(&pending, 61),
            Err(SilenceError::AlreadyExpired(pending.clone()))
        );
        assert_eq!(
            s.expire("nope", 61),
            Err(SilenceError::NotFound("nope".into()))
        );
        let mut copy = Silences::new(Duration::from_secs(10));
        copy.restore(s.records()).expect("restore");
        assert_eq!(copy.list(), s.list());
        assert_eq!(s.gc(10_059), 0);
        assert_eq!(s.gc(10_060), 1);
        assert_eq!(s.list().len(), 1);
    }
}
