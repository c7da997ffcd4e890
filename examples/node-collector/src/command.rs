//! Running a helper command (`pm2 jlist`, `systemctl show`) in the background with a deadline
//! and an output cap, and caching what it said, so that a scrape only reads the cache.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// Output beyond this is an error (a `pm2 jlist` of hundreds of processes is a few MiB).
pub const MAX_OUTPUT_BYTES: u64 = 32 << 20;

/// Why a helper command gave nothing usable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    /// It could not be started.
    #[error("cannot run {command}: {detail}")]
    Spawn {
        /// The program.
        command: String,
        /// The OS error.
        detail: String,
    },
    /// It ran past its deadline and was killed.
    #[error("{command} did not finish within {timeout:?}; killed")]
    Timeout {
        /// The program.
        command: String,
        /// The deadline.
        timeout: Duration,
    },
    /// It exited with a failure status.
    #[error("{command} exited with {status}: {stderr}")]
    Failed {
        /// The program.
        command: String,
        /// The exit status.
        status: String,
        /// The start of its standard error.
        stderr: String,
    },
    /// It printed more than [`MAX_OUTPUT_BYTES`].
    #[error("{command} printed more than {MAX_OUTPUT_BYTES} bytes")]
    TooLarge {
        /// The program.
        command: String,
    },
    /// Its output did not have the expected shape.
    #[error("unexpected output of {command}: {detail}")]
    Parse {
        /// The program.
        command: String,
        /// What was wrong.
        detail: String,
    },
}

/// Finds `command` as `which` does: a name with a `/` is taken as a path; otherwise the first
/// executable file of that name in the directories of `path` (a `PATH` value).
pub fn which(command: &str, path: &OsStr) -> Option<PathBuf> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if command.contains('/') {
        let p = PathBuf::from(command);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(command))
        .find(|p| executable(p))
}

/// Runs `program args` with `PATH` set to `path`, standard input closed, and returns its
/// standard output. Killed (and its output discarded) when it runs past `timeout`.
///
/// # Errors
///
/// See [`CommandError`].
pub async fn run(
    program: &Path,
    args: &[&str],
    path: &OsStr,
    timeout: Duration,
) -> Result<Vec<u8>, CommandError> {
    run_with_env(program, args, path, &[], timeout).await
}

/// As [`run`], with `env` set for the command too.
///
/// # Errors
///
/// As [`run`].
pub async fn run_with_env(
    program: &Path,
    args: &[&str],
    path: &OsStr,
    env: &[(&str, &OsStr)],
    timeout: Duration,
) -> Result<Vec<u8>, CommandError> {
    let command = program.display().to_string();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("PATH", path)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropped on timeout: the child is killed, and tokio reaps it in the background.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CommandError::Spawn {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(CommandError::Spawn {
            command,
            detail: "no pipes".into(),
        });
    };
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = stdout.take(MAX_OUTPUT_BYTES + 1);
        let mut stderr = stderr.take(MAX_OUTPUT_BYTES);
        let (read_out, _, status) = tokio::join!(
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err),
            child.wait(),
        );
        (read_out, out, err, status)
    };
    let (read_out, out, err, status) =
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| CommandError::Timeout {
                command: command.clone(),
                timeout,
            })?;
    let status = status.map_err(|e| CommandError::Spawn {
        command: command.clone(),
        detail: e.to_string(),
    })?;
    read_out.map_err(|e| CommandError::Spawn {
        command: command.clone(),
        detail: e.to_string(),
    })?;
    if out.len() as u64 > MAX_OUTPUT_BYTES {
        return Err(CommandError::TooLarge { command });
    }
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err);
        return Err(CommandError::Failed {
            command,
            status: status.to_string(),
            stderr: stderr.trim().chars().take(300).collect(),
        });
    }
    Ok(out)
}

/// The last result of a background source: what it found, or why it found nothing, and how
/// long the run took.
#[derive(Debug, Clone)]
pub struct Snapshot<T> {
    /// The parsed output, or the error.
    pub result: Result<T, CommandError>,
    /// How long the run took.
    pub duration: Duration,
}

/// The cache a background task writes and scrapes read (the write lock is held only to swap
/// in a finished result, never while a command runs).
pub type Cache<T> = Arc<RwLock<Option<Snapshot<T>>>>;

/// Spawns a task that calls `once` every `interval` (the next run starts `interval` after the
/// previous one started, or right after it when it took longer) and stores each result.
pub fn spawn_schedule<T, F, Fut>(interval: Duration, cache: Cache<T>, mut once: F)
where
    T: Send + Sync + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, CommandError>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = Instant::now();
            let result = once().await;
            if let Err(e) = &result {
                tracing::info!(error = %e, "background command failed");
            }
            let snapshot = Snapshot {
                result,
                duration: started.elapsed(),
            };
            *cache.write().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
        }
    });
}

/// Waits until `cache` holds a first result, or `timeout` (for tests and start-up).
pub async fn wait_ready<T>(cache: &Cache<T>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `PATH` of this process, for [`which`] and the children.
pub fn env_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn which_finds_executables_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("data"), "").unwrap();
        let path = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();
        assert_eq!(which("tool", &path), Some(exe.clone()));
        assert_eq!(which("data", &path), None);
        assert_eq!(which("missing", &path), None);
        assert_eq!(which(exe.to_str().unwrap(), OsStr::new("")), Some(exe));
    }

    #[tokio::test]
    async fn run_reports_failures() {
        let path = env_path();
        let sh = Path::new("/bin/sh");
        let out = run(sh, &["-c", "echo hi"], &path, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out, b"hi\n");
        let e = run(
            sh,
            &["-c", "echo bad >&2; exit 3"],
            &path,
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, CommandError::Failed { stderr, .. } if stderr == "bad"),
            "{e}"
        );
        let e = run(
            sh,
            &["-c", "exec sleep 30"],
            &path,
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, CommandError::Timeout { .. }), "{e}");
        let e = run(
            Path::new("/nonexistent/pm2"),
            &[],
            &path,
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, CommandError::Spawn { .. }), "{e}");
    }
}
