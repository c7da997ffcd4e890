//! The on-disk spool for events that could not be delivered (feature `cli`).
//!
//! Each event is one file `<time ms>-<seq>-<event id>.json` holding its JSON form, written
//! atomically: a hidden temporary file is written and synced, then renamed into place and the
//! directory synced. A crash leaves either the whole file or nothing (at worst a stray
//! `.*.tmp`, ignored). [`Spool::flush`] hands the files to a delivery function in time order
//! and deletes each one only after its delivery succeeded, stopping at the first failure so
//! later events never overtake earlier ones. Delivery is therefore at-least-once; receivers
//! deduplicate by event id (the history store does).
//!
//! ```
//! use axi_obs_deploy::spool::Spool;
//! use axi_obs_deploy::{Event, EventKind};
//! use axi_obs_deploy::event::{DeploymentRef, from_unix_ms};
//!
//! let dir = tempfile::tempdir()?;
//! let spool = Spool::open(dir.path())?;
//! let dref = DeploymentRef {
//!     id: "d1".into(), project: "shop".into(), environment: "prod".into(),
//!     version: "1".into(), started_at: from_unix_ms(0),
//! };
//! spool.put(&Event::new(dref, 0, from_unix_ms(0), EventKind::Succeeded))?;
//! assert_eq!(spool.pending()?.len(), 1);
//! let report = spool.flush(|_event| Ok::<(), std::io::Error>(()))?;
//! assert_eq!((report.delivered, report.remaining), (1, 0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::event::{Event, unix_ms};

/// Where spool files that cannot be read are moved, inside the spool directory.
pub const QUARANTINE_DIR: &str = "bad";

/// A spool I/O error, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("spool {}: {op}", path.display())]
pub struct SpoolError {
    /// The file or directory.
    pub path: PathBuf,
    /// What was being done.
    pub op: &'static str,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// What [`Spool::flush`] did.
#[derive(Debug, Default)]
pub struct FlushReport {
    /// Events delivered and deleted.
    pub delivered: usize,
    /// Events still spooled.
    pub remaining: usize,
    /// Files that were not valid events, or events refused for good
    /// ([`Spool::flush_with`]), moved to [`QUARANTINE_DIR`].
    pub quarantined: usize,
    /// Why delivery stopped early, if it did.
    pub error: Option<String>,
    /// Why the last event refused for good was refused, if one was.
    pub refusal: Option<String>,
}

/// A spool directory. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |source| SpoolError { path, op, source }
}

impl Spool {
    /// Opens (creating if needed) the spool directory `dir`.
    ///
    /// # Errors
    ///
    /// [`SpoolError`] if the directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SpoolError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(&dir, "create directory"))?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `event` atomically; returns the file's path.
    ///
    /// # Errors
    ///
    /// [`SpoolError`] naming the file; nothing is left in the spool then.
    pub fn put(&self, event: &Event) -> Result<PathBuf, SpoolError> {
        let name = format!(
            "{:016}-{:010}-{}.json",
            unix_ms(event.at).max(0),
            event.seq,
            sanitize(&event.id)
        );
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(event.to_json().as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io(&path, "write event")(e)
        })?;
        Ok(path)
    }

    /// The spooled event files, oldest first.
    ///
    /// # Errors
    ///
    /// [`SpoolError`] if the directory cannot be read.
    pub fn pending(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir, "list"))? {
            let entry = entry.map_err(io(&self.dir, "list"))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') && name.ends_with(".json") && entry.path().is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    /// Delivers spooled events oldest first, deleting each after `deliver` returned `Ok`;
    /// stops at the first error (reported in [`FlushReport::error`]). Files that are not
    /// valid events are moved to [`QUARANTINE_DIR`] rather than blocking the queue.
    ///
    /// # Errors
    ///
    /// [`SpoolError`] for file-system failures (a delivery failure is not one).
    pub fn flush<E: std::fmt::Display>(
        &self,
        deliver: impl FnMut(&Event) -> Result<(), E>,
    ) -> Result<FlushReport, SpoolError> {
        self.flush_with(deliver, |_| false)
    }

    /// As [`flush`](Self::flush), and an event whose delivery failed with an error
    /// `refused` says is for good (the receiver refuses the event itself) is moved to
    /// [`QUARANTINE_DIR`] and counted in [`FlushReport::quarantined`], instead of blocking
    /// every event behind it.
    ///
    /// # Errors
    ///
    /// [`SpoolError`] for file-system failures (a delivery failure is not one).
    pub fn flush_with<E: std::fmt::Display>(
        &self,
        mut deliver: impl FnMut(&Event) -> Result<(), E>,
        refused: impl Fn(&E) -> bool,
    ) -> Result<FlushReport, SpoolError> {
        let files = self.pending()?;
        let mut report = FlushReport {
            remaining: files.len(),
            ..FlushReport::default()
        };
        // Another process may flush the same spool at the same time (two CI jobs on one
        // runner): a file gone under us was taken by it, and is skipped. (Both may deliver the
        // same event; the receiver keeps one, by its id.)
        for path in files {
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    report.remaining -= 1;
                    continue;
                }
                Err(e) => return Err(io(&path, "read event")(e)),
            };
            let event = match Event::from_json(text.trim_end()) {
                Ok(e) => e,
                Err(_) => {
                    self.quarantine(&path)?;
                    report.quarantined += 1;
                    report.remaining -= 1;
                    continue;
                }
            };
            if let Err(e) = deliver(&event) {
                if refused(&e) {
                    self.quarantine(&path)?;
                    report.quarantined += 1;
                    report.remaining -= 1;
                    report.refusal = Some(e.to_string());
                    continue;
                }
                report.error = Some(e.to_string());
                break;
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path, "delete delivered event")(e)),
            }
            report.delivered += 1;
            report.remaining -= 1;
        }
        Ok(report)
    }

    fn quarantine(&self, path: &Path) -> Result<(), SpoolError> {
        let bad = self.dir.join(QUARANTINE_DIR);
        fs::create_dir_all(&bad).map_err(io(&bad, "create quarantine directory"))?;
        let target = bad.join(path.file_name().unwrap_or_default());
        match fs::rename(path, &target) {
            // Taken by another process flushing the same spool.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(io(path, "quarantine unreadable event")),
        }
    }
}

/// Keeps ids usable as file names.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;
    use crate::event::{DeploymentRef, from_unix_ms};

    fn ev(seq: u32, at: i64) -> Event {
        let d = DeploymentRef {
            id: "d".into(),
            project: "p".into(),
            environment: "e".into(),
            version: "1".into(),
            started_at: from_unix_ms(0),
        };
        Event::new(d, seq, from_unix_ms(at), EventKind::Succeeded)
    }

    #[test]
    fn flush_keeps_order_and_stops_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let events = [ev(0, 10), ev(1, 10), ev(2, 5)];
        for e in &events {
            spool.put(e).unwrap();
        }
        std::fs::write(dir.path().join("0000-junk.json"), "not json").unwrap();
        std::fs::write(dir.path().join(".x.json.tmp"), "partial").unwrap();
        let mut seen = Vec::new();
        let report = spool
            .flush(|e| {
                if seen.len() == 2 {
                    return Err("endpoint down");
                }
                seen.push(e.id.clone());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, [events[2].id.clone(), events[0].id.clone()]);
        assert_eq!(
            (report.delivered, report.remaining, report.quarantined),
            (2, 1, 1)
        );
        assert_eq!(report.error.as_deref(), Some("endpoint down"));
        assert!(
            dir.path()
                .join(QUARANTINE_DIR)
                .join("0000-junk.json")
                .exists()
        );
        let left = spool.pending().unwrap();
        assert_eq!(left.len(), 1);
        assert!(
            left[0]
                .to_string_lossy()
                .ends_with(&format!("{}.json", events[1].id))
        );
    }

    /// Two processes flushing one spool: files the other one delivered (deleted) or
    /// quarantined under this one's feet are skipped, not an error that would send this one's
    /// own events to the spool.
    #[test]
    fn files_taken_by_another_flushing_process_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let events = [ev(0, 1), ev(1, 2), ev(2, 3), ev(3, 4)];
        for e in &events {
            spool.put(e).unwrap();
        }
        let files = spool.pending().unwrap();
        let mut seen = Vec::new();
        let report = spool
            .flush_with(
                |e| {
                    seen.push(e.id.clone());
                    match seen.len() {
                        // The other process delivers this one too and deletes it first, and
                        // takes the next file before it is read.
                        1 => {
                            std::fs::remove_file(&files[0]).unwrap();
                            std::fs::remove_file(&files[1]).unwrap();
                            Ok(())
                        }
                        // Refused for good, and quarantined by the other process first.
                        2 => {
                            std::fs::remove_file(&files[2]).unwrap();
                            Err("refused")
                        }
                        _ => Ok(()),
                    }
                },
                |_| true,
            )
            .unwrap();
        assert_eq!(
            seen,
            [
                events[0].id.clone(),
                events[2].id.clone(),
                events[3].id.clone()
            ]
        );
        assert_eq!(
            (report.delivered, report.quarantined, report.remaining),
            (2, 1, 0)
        );
        assert!(spool.pending().unwrap().is_empty());
    }
}
