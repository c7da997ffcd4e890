//! The router's persisted state: the notification log and the silences in one JSON
//! snapshot, written atomically.

use std::borrow::Cow;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::dispatch::DispatchError;
use super::model::{AmAlert, LabelSet};
use super::nflog::{NflogEntry, NotificationLog};
use super::remediation::RemediationHistory;
use super::silence::{SilenceRecord, Silences};

/// The snapshot format's version. Version 1 (no alerts) is still read.
const VERSION: u32 = 2;

/// What [`DispatcherOptions::state_file`](super::DispatcherOptions::state_file) holds.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Snapshot<'a> {
    version: u32,
    pub(super) nflog: Vec<NflogEntry>,
    pub(super) silences: Vec<SilenceRecord>,
    /// The alerts the aggregation groups held (absent in version 1).
    #[serde(default)]
    pub(super) alerts: Vec<AlertRecord<'a>>,
    /// The remediation run history (absent when there is none, and in older snapshots).
    #[serde(default, skip_serializing_if = "RemediationHistory::is_empty")]
    pub(super) remediations: RemediationHistory,
}

/// An alert as a snapshot stores it: what was received, and when it was last received.
/// Written from borrowed alerts (a snapshot copies nothing), read back owned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AlertRecord<'a> {
    pub(super) labels: Cow<'a, LabelSet>,
    pub(super) annotations: Cow<'a, LabelSet>,
    #[serde(rename = "startsAt")]
    pub(super) starts_at: i64,
    #[serde(rename = "endsAt")]
    pub(super) ends_at: Option<i64>,
    #[serde(rename = "generatorURL")]
    pub(super) generator_url: Cow<'a, str>,
    #[serde(rename = "updatedAt")]
    pub(super) updated_at: i64,
}

impl<'a> AlertRecord<'a> {
    pub(super) fn new(a: &'a AmAlert, updated_at: i64) -> AlertRecord<'a> {
        AlertRecord {
            labels: Cow::Borrowed(&a.labels),
            annotations: Cow::Borrowed(&a.annotations),
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            generator_url: Cow::Borrowed(&a.generator_url),
            updated_at,
        }
    }

    pub(super) fn into_alert(self) -> (AmAlert, i64) {
        (
            AmAlert {
                labels: self.labels.into_owned(),
                annotations: self.annotations.into_owned(),
                starts_at: self.starts_at,
                ends_at: self.ends_at,
                generator_url: self.generator_url.into_owned(),
            },
            self.updated_at,
        )
    }
}

/// The snapshot of `nflog`, `silences`, `alerts` and the remediation history as JSON.
pub(super) fn encode(
    nflog: &NotificationLog,
    silences: &Silences,
    alerts: Vec<AlertRecord<'_>>,
    remediations: RemediationHistory,
) -> Vec<u8> {
    let snap = Snapshot {
        version: VERSION,
        nflog: nflog.entries(),
        silences: silences.records(),
        alerts,
        remediations,
    };
    // Serializing strings, integers and sets cannot fail.
    serde_json::to_vec(&snap).unwrap_or_default()
}

/// Reads a snapshot; `None` when the file does not exist.
pub(super) fn read(path: &Path) -> Result<Option<Snapshot<'static>>, DispatchError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DispatchError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let corrupt = |message: String| DispatchError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let snap: Snapshot<'static> =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if !(1..=VERSION).contains(&snap.version) {
        return Err(corrupt(format!("unknown version {}", snap.version)));
    }
    Ok(Some(snap))
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it over `path` and
/// syncs the directory: a crash leaves the old or the new content, never a mix.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_string());
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // Make the rename itself durable; not every platform can sync a directory.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_and_foreign_files_are_errors_missing_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("s.json");
        assert!(read(&p).expect("missing").is_none());
        write_atomic(&p, b"{not json").expect("write");
        assert!(matches!(read(&p), Err(DispatchError::Corrupt { .. })));
        write_atomic(&p, br#"{"version":3,"nflog":[],"silences":[]}"#).expect("write");
        assert!(matches!(read(&p), Err(DispatchError::Corrupt { .. })));
        let log = NotificationLog::new(std::time::Duration::from_secs(60));
        let sil = Silences::new(std::time::Duration::from_secs(60));
        write_atomic(&p, br#"{"version":1,"nflog":[],"silences":[]}"#).expect("write");
        assert!(
            read(&p)
                .expect("version 1")
                .expect("present")
                .alerts
                .is_empty()
        );
        let alert = AmAlert {
            labels: LabelSet::from([("alertname".to_string(), "A".to_string())]),
            annotations: LabelSet::new(),
            starts_at: 5,
            ends_at: Some(9),
            generator_url: "g".into(),
        };
        write_atomic(
            &p,
            &encode(
                &log,
                &sil,
                vec![AlertRecord::new(&alert, 7)],
                RemediationHistory::default(),
            ),
        )
        .expect("write");
        let snap = read(&p).expect("read").expect("present");
        assert!(snap.nflog.is_empty() && snap.silences.is_empty());
        let (back, updated) = snap.alerts[0].clone().into_alert();
        assert_eq!((back, updated), (alert, 7));
        assert!(!dir.path().join(".s.json.tmp").exists());
    }
}
