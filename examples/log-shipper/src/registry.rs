//! The registry: how far each file has been shipped, persisted atomically.
//!
//! Offsets advance only when the output acknowledged the batch holding the lines
//! ([`Registry::ack`]), and the file is replaced atomically (write to a temporary file in the
//! same folder, `fsync`, `rename`, `fsync` of the folder), so after a crash or `kill -9` it
//! holds either the previous or the new state, never a torn one, and never an offset past a
//! line the output has not confirmed: at-least-once delivery. Lines re-read after a crash are
//! at most those of the batch in flight: the registry is written after each batch, before
//! the next is sent (see [`pipeline`](crate::pipeline)).
//!
//! The file is JSON:
//!
//! ```json
//! {"version":1,"files":[{"dev":2049,"ino":1234,"path":"/var/log/nginx/access.log",
//!   "offset":52311,"fingerprint_len":1024,"fingerprint":"9f86d081884c7d65"}]}
//! ```
//!
//! A file is recognised on restart by device, inode and the fingerprint of its first
//! `fingerprint_len` bytes; the same inode with other content is a new file read from 0.
//! When the device number changed since (a reboot or a remount can renumber a device), an
//! entry with the same inode and fingerprint, whose old device and inode no longer exist at
//! its path, is the same file: the tailer moves the entry to the new device number (see
//! [`Registry::on_other_devices`]).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::record::{FileKey, Position};

/// A fingerprint of a file's first bytes: FNV-1a 64 of the first `len` bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many bytes were hashed.
    #[serde(rename = "fingerprint_len")]
    pub len: u64,
    /// FNV-1a 64 of those bytes, as 16 hex digits.
    #[serde(rename = "fingerprint", with = "hex64")]
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self {
            len: bytes.len() as u64,
            hash: h,
        }
    }
}

mod hex64 {
    pub(super) fn serialize<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

/// One file's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// The path it was last seen under.
    pub path: PathBuf,
    /// Bytes shipped and acknowledged: the next line starts here.
    pub offset: u64,
    /// Identity of the content.
    #[serde(flatten)]
    pub fingerprint: Fingerprint,
    /// The generation acknowledgements must carry (in memory only).
    #[serde(skip)]
    generation: u32,
    /// Set when the tailer let go of the file for good: the entry is dropped once
    /// everything read from it is acknowledged.
    #[serde(skip)]
    forgotten_at: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    files: Vec<Entry>,
}

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Reading failed.
    #[error("cannot read the registry {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The content is not a registry.
    #[error(
        "the registry {path} is not valid (line {line}): {message}; move it away to start over"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Writing failed.
    #[error("cannot write the registry {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Offsets of every tracked file. See the [module documentation](self).
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    entries: HashMap<(u64, u64), Entry>,
}

impl Registry {
    /// Reads the registry at `path`; a missing file is an empty registry.
    ///
    /// # Errors
    ///
    /// If the file exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let synced = synced_copy(path);
        let entries = match Self::read(path) {
            // The registry's first synced write may have been lost with its rename (a crash
            // of the machine) while its copy was kept.
            Ok(_) if !path.exists() && synced.exists() => {
                tracing::warn!(using = %synced.display(), "registry missing: using its last synced copy");
                Self::read(&synced)?
            }
            Ok(entries) => entries,
            // After a power loss, a file replaced without `fsync` can be empty or hold
            // garbage (XFS): the last synced copy is at most a second older.
            Err(e @ RegistryError::Invalid { .. }) => match Self::read(&synced) {
                Ok(entries) if synced.exists() => {
                    tracing::warn!(
                        error = %e,
                        using = %synced.display(),
                        "registry unreadable (a crash of the machine?): using its last synced copy; \
                         at most a second of acknowledged events is sent again"
                    );
                    entries
                }
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        };
        Ok(Self {
            path: path.to_owned(),
            entries,
        })
    }

    /// The entries of the registry file `path`; none when it does not exist.
    fn read(path: &Path) -> Result<HashMap<(u64, u64), Entry>, RegistryError> {
        let mut entries = HashMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let f: FileFormat =
                    serde_json::from_str(&text).map_err(|e| RegistryError::Invalid {
                        path: path.to_owned(),
                        line: e.line(),
                        message: e.to_string(),
                    })?;
                for e in f.files {
                    entries.insert((e.dev, e.ino), e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RegistryError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        Ok(entries)
    }

    /// The file this registry is persisted to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry for device `dev`, inode `ino`, if any.
    pub fn get(&self, dev: u64, ino: u64) -> Option<&Entry> {
        self.entries.get(&(dev, ino))
    }

    /// The entries for inode `ino` under a device other than `dev`. A reboot or a remount can
    /// give a file system another device number (LVM, some cloud volumes, network file
    /// systems; Filebeat's "files sent again after a reboot"): the tailer matches such an
    /// entry to the file it finds and [moves](Self::move_device) it to the new number.
    pub fn on_other_devices(&self, dev: u64, ino: u64) -> impl Iterator<Item = &Entry> {
        self.entries
            .values()
            .filter(move |e| e.ino == ino && e.dev != dev)
    }

    /// Re-keys the entry of `old_dev`/`ino` to device `dev`, offset and fingerprint kept.
    /// Nothing happens when there is no such entry or one already exists under `dev`.
    pub fn move_device(&mut self, old_dev: u64, ino: u64, dev: u64) {
        if self.entries.contains_key(&(dev, ino)) {
            return;
        }
        if let Some(mut e) = self.entries.remove(&(old_dev, ino)) {
            e.dev = dev;
            self.entries.insert((dev, ino), e);
        }
    }

    /// The generation acknowledgements for the file `dev`/`ino` must carry, if it is tracked.
    pub fn generation(&self, dev: u64, ino: u64) -> Option<u32> {
        self.entries.get(&(dev, ino)).map(|e| e.generation)
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Starts (or restarts, with a new generation) tracking a file from `offset`.
    pub fn track(&mut self, key: FileKey, path: &Path, fingerprint: Fingerprint, offset: u64) {
        self.entries.insert(
            (key.dev, key.ino),
            Entry {
                dev: key.dev,
                ino: key.ino,
                path: path.to_owned(),
                offset,
                fingerprint,
                generation: key.generation,
                forgotten_at: None,
            },
        );
    }

    /// Records a longer fingerprint (the file grew) and the current path of a tracked file.
    pub fn update(&mut self, key: FileKey, path: &Path, fingerprint: Fingerprint) {
        if let Some(e) = self.entries.get_mut(&(key.dev, key.ino))
            && e.generation == key.generation
        {
            e.fingerprint = fingerprint;
            if e.path != path {
                e.path = path.to_owned();
            }
        }
    }

    /// The output acknowledged every line up to `pos`. Returns whether an offset moved
    /// (acknowledgements of an older generation, or for an untracked file, are ignored).
    pub fn ack(&mut self, pos: Position) -> bool {
        let key = (pos.key.dev, pos.key.ino);
        let Some(e) = self.entries.get_mut(&key) else {
            return false;
        };
        if e.generation != pos.key.generation || pos.end <= e.offset {
            return false;
        }
        e.offset = pos.end;
        if e.forgotten_at.is_some_and(|end| e.offset >= end) {
            self.entries.remove(&key);
        }
        true
    }

    /// The tailer let go of a file for good (deleted or renamed out of the inputs, and read to
    /// its end at `read_end`): drop the entry once everything up to there is acknowledged.
    pub fn forget(&mut self, key: FileKey, read_end: u64) {
        let k = (key.dev, key.ino);
        if let Some(e) = self.entries.get_mut(&k)
            && e.generation == key.generation
        {
            if e.offset >= read_end {
                self.entries.remove(&k);
            } else {
                e.forgotten_at = Some(read_end);
            }
        }
    }

    /// The registry as the JSON text [`save`](Self::save) writes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut files: Vec<Entry> = self.entries.values().cloned().collect();
        files.sort_by(|a, b| (&a.path, a.dev, a.ino).cmp(&(&b.path, b.dev, b.ino)));
        let f = FileFormat { version: 1, files };
        // Serializing plain structs of numbers and strings cannot fail.
        serde_json::to_vec_pretty(&f).unwrap_or_default()
    }

    /// Writes `json` (from [`to_json`](Self::to_json)) to `path` atomically: a temporary file
    /// in the same folder, then `rename`. With `sync`, the file is `fsync`ed before the rename
    /// and the folder after it, so the new content also survives a crash of the machine, and
    /// it is also linked as `PATH.synced`, the copy [`load`](Self::load) falls back to when a
    /// crash of the machine left `path` unreadable; without, it survives a crash of the
    /// process (the kernel keeps it). Blocking: call it off async runtime threads.
    ///
    /// # Errors
    ///
    /// If any step fails; the previous registry file is then intact.
    pub fn write_atomically(path: &Path, json: &[u8], sync: bool) -> Result<(), RegistryError> {
        let err = |source| RegistryError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        {
            // A temporary file left by a crash may be the synced copy's other name: written
            // in place, it would change that copy too.
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(json).map_err(err)?;
            f.write_all(b"\n").map_err(err)?;
            if sync {
                f.sync_all().map_err(err)?;
            }
        }
        if sync {
            // The synced content under a second name, which later unsynced writes (new files
            // renamed over `path`) leave alone.
            let mut link = tmp.clone().into_os_string();
            link.push(".synced");
            let link = PathBuf::from(link);
            let _ = std::fs::remove_file(&link);
            match std::fs::hard_link(&tmp, &link) {
                Ok(()) => std::fs::rename(&link, synced_copy(path)).map_err(err)?,
                // A file system without hard links (vfat, some FUSE and CIFS mounts): the
                // registry itself is still written, without the copy.
                Err(e) => {
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| {
                        tracing::warn!(path = %path.display(), error = %e, "no synced copy of the registry kept (hard links refused)");
                    });
                }
            }
        }
        std::fs::rename(&tmp, path).map_err(err)?;
        if sync {
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(err)?;
        }
        Ok(())
    }

    /// Removes the entries of files that are gone from disk, Filebeat's `clean_removed`:
    /// those not in `tracked` (the files being read) whose path no longer exists or now holds
    /// another file. Called after the first scan, so that the entries of files deleted while
    /// the shipper was down do not stay forever (and a short fingerprint of theirs cannot
    /// match a new file on a reused inode). Returns how many were removed.
    pub fn clean_removed(&mut self, tracked: &HashSet<(u64, u64)>) -> usize {
        let before = self.entries.len();
        // Only what is surely gone: a path that does not exist or holds another file. Any
        // other error (permissions, a mount not there yet) keeps the entry.
        self.entries.retain(|k, e| {
            tracked.contains(k)
                || match std::fs::metadata(&e.path) {
                    Ok(m) => (m.dev(), m.ino()) == (e.dev, e.ino),
                    Err(err) => err.kind() != std::io::ErrorKind::NotFound,
                }
        });
        before - self.entries.len()
    }

    /// Persists the registry atomically and durably (see
    /// [`write_atomically`](Self::write_atomically)).
    ///
    /// # Errors
    ///
    /// As [`write_atomically`](Self::write_atomically).
    pub fn save(&self) -> Result<(), RegistryError> {
        Self::write_atomically(&self.path, &self.to_json(), true)
    }
}

/// Where the registry at `path` keeps its last synced copy: `PATH.synced`.
fn synced_copy(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".synced");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(generation: u32) -> FileKey {
        FileKey {
            dev: 1,
            ino: 2,
            generation,
        }
    }

    #[test]
    fn acks_move_offsets_forward_for_the_current_generation_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::load(&dir.path().join("reg.json")).unwrap();
        r.track(key(0), Path::new("/a.log"), Fingerprint::of(b"x"), 0);
        assert!(r.ack(Position {
            key: key(0),
            end: 10
        }));
        assert!(
            !r.ack(Position {
                key: key(0),
                end: 5
            }),
            "never backwards"
        );
        r.track(key(1), Path::new("/a.log"), Fingerprint::of(b"y"), 0);
        assert!(
            !r.ack(Position {
                key: key(0),
                end: 20
            }),
            "old generation"
        );
        assert_eq!(r.get(1, 2).unwrap().offset, 0);
        assert!(r.ack(Position {
            key: key(1),
            end: 3
        }));
        r.save().unwrap();

        let back = Registry::load(&dir.path().join("reg.json")).unwrap();
        let e = back.get(1, 2).unwrap();
        assert_eq!(e.offset, 3);
        assert_eq!(e.fingerprint, Fingerprint::of(b"y"));
        assert_eq!(e.path, Path::new("/a.log"));
        assert!(!dir.path().join("reg.json.tmp").exists());
    }

    #[test]
    fn an_entry_moves_to_a_new_device_number_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::load(&dir.path().join("reg.json")).unwrap();
        r.track(key(0), Path::new("/a.log"), Fingerprint::of(b"x"), 0);
        assert!(r.ack(Position {
            key: key(0),
            end: 7
        }));
        // Device 1, inode 2 is tracked: device 9 sees it as another device's, device 1 not.
        assert_eq!(r.on_other_devices(9, 2).count(), 1);
        assert_eq!(r.on_other_devices(1, 2).count(), 0);
        assert_eq!(r.on_other_devices(9, 3).count(), 0);
        r.move_device(1, 2, 9);
        assert!(r.get(1, 2).is_none());
        let e = r.get(9, 2).unwrap();
        assert_eq!((e.dev, e.offset), (9, 7));
        // An acknowledgement keyed by the new device moves it on.
        assert!(r.ack(Position {
            key: FileKey {
                dev: 9,
                ino: 2,
                generation: 0
            },
            end: 9
        }));
        // A move onto an entry that exists changes nothing.
        r.track(key(0), Path::new("/b.log"), Fingerprint::of(b"y"), 3);
        r.move_device(1, 2, 9);
        assert_eq!(r.get(9, 2).unwrap().offset, 9);
        assert_eq!(r.get(1, 2).unwrap().offset, 3);
    }

    #[test]
    fn entries_of_files_gone_from_disk_are_removed_after_the_first_scan() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept.log");
        let replaced = dir.path().join("replaced.log");
        std::fs::write(&kept, "a\n").unwrap();
        std::fs::write(&replaced, "b\n").unwrap();
        let id = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            (m.dev(), m.ino())
        };
        let key = |(dev, ino): (u64, u64)| FileKey {
            dev,
            ino,
            generation: 0,
        };
        let mut r = Registry::load(&dir.path().join("reg.json")).unwrap();
        let fp = Fingerprint::of(b"x");
        r.track(key(id(&kept)), &kept, fp, 2);
        r.track(key(id(&replaced)), &replaced, fp, 2);
        // Deleted while the shipper was down.
        r.track(key((1, 1)), &dir.path().join("deleted.log"), fp, 2);
        // A tracked file is kept even where its path no longer leads to it (rotated).
        r.track(key((1, 2)), &dir.path().join("rotated.log"), fp, 2);
        // Another file renamed over the path (both existed at once: another inode).
        let old_replaced = id(&replaced);
        let other = dir.path().join("other");
        std::fs::write(&other, "new file\n").unwrap();
        std::fs::rename(&other, &replaced).unwrap();
        assert_ne!(id(&replaced), old_replaced);
        // A path that cannot be looked at (here: under a regular file) is not "gone".
        r.track(key((1, 3)), &kept.join("child.log"), fp, 2);
        let tracked: HashSet<(u64, u64)> = [(1, 2)].into();
        assert_eq!(r.clean_removed(&tracked), 2);
        assert!(r.get(1, 3).is_some());
        assert!(r.get(id(&kept).0, id(&kept).1).is_some());
        assert!(r.get(1, 2).is_some());
        assert!(r.get(1, 1).is_none());
        assert!(r.get(old_replaced.0, old_replaced.1).is_none());
    }

    #[test]
    fn a_registry_left_unreadable_by_a_crash_falls_back_to_its_last_synced_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reg.json");
        let mut r = Registry::load(&path).unwrap();
        r.track(key(0), Path::new("/a.log"), Fingerprint::of(b"x"), 0);
        assert!(r.ack(Position {
            key: key(0),
            end: 10
        }));
        Registry::write_atomically(&path, &r.to_json(), true).unwrap();
        assert!(r.ack(Position {
            key: key(0),
            end: 20
        }));
        Registry::write_atomically(&path, &r.to_json(), false).unwrap();
        // Both readable: the newest wins.
        assert_eq!(Registry::load(&path).unwrap().get(1, 2).unwrap().offset, 20);
        // The unsynced file came back empty, or with garbage: the synced copy is used.
        for broken in ["", "\0\0\0\0"] {
            std::fs::write(&path, broken).unwrap();
            assert_eq!(Registry::load(&path).unwrap().get(1, 2).unwrap().offset, 10);
        }
        // The registry missing (its first synced rename lost), the copy there: the copy.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(Registry::load(&path).unwrap().get(1, 2).unwrap().offset, 10);
        // A temporary file a crash left behind, still the synced copy's other name: the next
        // write does not change the copy through it.
        let tmp = dir.path().join("reg.json.tmp");
        std::fs::hard_link(synced_copy(&path), &tmp).unwrap();
        Registry::write_atomically(&path, &r.to_json(), false).unwrap();
        std::fs::write(&path, "").unwrap();
        assert_eq!(Registry::load(&path).unwrap().get(1, 2).unwrap().offset, 10);
        // Without a readable copy, the error names the registry.
        std::fs::write(synced_copy(&path), "{").unwrap();
        let e = Registry::load(&path).unwrap_err().to_string();
        assert!(e.contains("reg.json is not valid"), "{e}");
        assert!(!dir.path().join("reg.json.tmp.synced").exists());
    }

    #[test]
    fn forgotten_files_leave_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::load(&dir.path().join("reg.json")).unwrap();
        r.track(key(0), Path::new("/a.log"), Fingerprint::of(b"x"), 0);
        r.forget(key(0), 10);
        assert!(r.get(1, 2).is_some());
        r.ack(Position {
            key: key(0),
            end: 10,
        });
        assert!(r.get(1, 2).is_none());
    }

    #[test]
    fn a_corrupt_registry_is_an_error_not_a_silent_reset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("reg.json");
        std::fs::write(&p, "{\"version\":1,\n\"files\":[oops]}").unwrap();
        let e = Registry::load(&p).unwrap_err();
        assert!(matches!(e, RegistryError::Invalid { line: 2, .. }), "{e}");
    }

    #[test]
    fn fingerprint_is_fnv1a() {
        // FNV-1a 64 of "a" is af63dc4c8601ec8c.
        assert_eq!(Fingerprint::of(b"a").hash, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fingerprint::of(b"").len, 0);
    }
}
