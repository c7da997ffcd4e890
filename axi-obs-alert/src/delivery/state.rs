//! The router's persisted state: the notification log and the silences in one JSON
//! snapshot, written atomically.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::dispatch::DispatchError;
use super::nflog::{NflogEntry, NotificationLog};
use super::silence::{SilenceRecord, Silences};

/// The snapshot format's version.
const VERSION: u32 = 1;

/// What [`DispatcherOptions::state_file`](super::DispatcherOptions::state_file) holds.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Snapshot {
    version: u32,
    pub(super) nflog: Vec<NflogEntry>,
    pub(super) silences: Vec<SilenceRecord>,
}

/// The snapshot of `nflog` and `silences` as JSON.
pub(super) fn encode(nflog: &NotificationLog, silences: &Silences) -> Vec<u8> {
    let snap = Snapshot {
        version: VERSION,
        nflog: nflog.entries(),
        silences: silences.records(),
    };
    // Serializing strings, integers and sets cannot fail.
    serde_json::to_vec(&snap).unwrap_or_default()
}

/// Reads a snapshot; `None` when the file does not exist.
pub(super) fn read(path: &Path) -> Result<Option<Snapshot>, DispatchError> {
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
    let snap: Snapshot = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if snap.version != VERSION {
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
        write_atomic(&p, br#"{"version":2,"nflog":[],"silences":[]}"#).expect("write");
        assert!(matches!(read(&p), Err(DispatchError::Corrupt { .. })));
        let log = NotificationLog::new(std::time::Duration::from_secs(60));
        let sil = Silences::new(std::time::Duration::from_secs(60));
        write_atomic(&p, &encode(&log, &sil)).expect("write");
        let snap = read(&p).expect("read").expect("present");
        assert!(snap.nflog.is_empty() && snap.silences.is_empty());
        assert!(!dir.path().join(".s.json.tmp").exists());
    }
}
