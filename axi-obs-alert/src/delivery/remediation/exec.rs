//! Executing a run: a program (no shell, the alert on stdin, output bounded, killed at
//! the timeout) or an HTTP POST; and how the outcome reads.

use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use super::{DETAIL_CHARS, OUTPUT_GRACE, REMEDIATION_OUTPUT_LIMIT, RemediationConfig};
use crate::delivery::model::{Fingerprint, rfc3339_nano};

/// One run the dispatcher decided on, to be executed outside it.
#[derive(Debug, Clone)]
pub struct RemediationRun {
    /// The action.
    pub config: Arc<RemediationConfig>,
    /// The alert's fingerprint.
    pub fingerprint: Fingerprint,
    /// The alert's `alertname` (for logs).
    pub alertname: String,
    /// The alert as JSON: `action`, `receiver`, `status`, `labels`, `annotations`,
    /// `startsAt`, `endsAt`, `generatorURL`, `fingerprint`.
    pub payload: Vec<u8>,
    /// When the dispatcher decided on it (ms).
    pub requested_ms: i64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemediationResult {
    /// The program exited with status 0, or the URL answered 2xx.
    Succeeded {
        /// `exit status 0`, `HTTP 200`.
        status: String,
    },
    /// The program failed (or could not start), or the request failed or answered
    /// otherwise.
    Failed {
        /// `exit status 1`, `signal 9`, `HTTP 500`, `cannot start`, `request failed`.
        status: String,
        /// The first 200 characters of stderr, of the response body or of the error.
        detail: String,
    },
    /// The timeout passed; a program was killed.
    TimedOut {
        /// The timeout.
        after: Duration,
    },
}

impl RemediationResult {
    /// The `outcome` label value: `success`, `failure`, `timeout`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RemediationResult::Succeeded { .. } => "success",
            RemediationResult::Failed { .. } => "failure",
            RemediationResult::TimedOut { .. } => "timeout",
        }
    }
}

/// What an executed [`RemediationRun`] gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemediationOutcome {
    /// The action's name.
    pub action: String,
    /// The alert's fingerprint.
    pub fingerprint: Fingerprint,
    /// The alert's `alertname`.
    pub alertname: String,
    /// How it ended.
    pub result: RemediationResult,
    /// How long it took.
    pub elapsed: Duration,
    /// The program's stdout (at most [`REMEDIATION_OUTPUT_LIMIT`] bytes, lossy UTF-8);
    /// empty for URLs.
    pub stdout: String,
    /// The program's stderr (at most [`REMEDIATION_OUTPUT_LIMIT`] bytes, lossy UTF-8), or
    /// the response body of a URL.
    pub stderr: String,
}

impl RemediationOutcome {
    /// The annotation line for this outcome, finished at `at_ms`, e.g.
    /// `restart-api: succeeded (exit status 0) in 1.2s at 2026-11-26T07:30:00Z`,
    /// `restart-api: failed (exit status 1) in 0.1s at ...: <stderr>`,
    /// `restart-api: timed out after 30s at ...`.
    pub fn line(&self, at_ms: i64) -> String {
        let at = rfc3339_nano(at_ms - at_ms.rem_euclid(1000));
        let took = self.elapsed.as_secs_f64();
        let mut out = format!("{}: ", self.action);
        // Writing to a String cannot fail.
        let _ = match &self.result {
            RemediationResult::Succeeded { status } => {
                write!(out, "succeeded ({status}) in {took:.1}s at {at}")
            }
            RemediationResult::Failed { status, detail } => {
                let r = write!(out, "failed ({status}) in {took:.1}s at {at}");
                if !detail.is_empty() {
                    out.push_str(": ");
                    out.push_str(detail);
                }
                r
            }
            RemediationResult::TimedOut { after } => {
                write!(out, "timed out after {} at {at}", seconds(*after))
            }
        };
        out
    }
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The first [`DETAIL_CHARS`] characters of `s`, on one line.
fn excerpt(s: &str) -> String {
    s.trim()
        .chars()
        .take(DETAIL_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl RemediationRun {
    /// The action's name.
    pub fn action(&self) -> &str {
        &self.config.name
    }

    /// Runs the program (stdin: the payload; stdout and stderr kept up to
    /// [`REMEDIATION_OUTPUT_LIMIT`] bytes each; killed at the timeout) or POSTs the payload
    /// to the URL with `client` (2xx is success), and says how it went. Never fails: every
    /// error is an outcome.
    pub async fn execute(self, client: &axi_obs_core::https::HttpClient) -> RemediationOutcome {
        let start = Instant::now();
        let timeout = self.config.timeout.0;
        let (result, stdout, stderr) = match (&self.config.command, &self.config.url) {
            (Some(argv), _) => run_program(argv, &self.payload, timeout).await,
            (None, Some(url)) => {
                let (result, body) = call_url(client, &url.0, self.payload, timeout).await;
                (result, String::new(), body)
            }
            (None, None) => (
                RemediationResult::Failed {
                    status: "no command or url".into(),
                    detail: String::new(),
                },
                String::new(),
                String::new(),
            ),
        };
        RemediationOutcome {
            action: self.config.name.clone(),
            fingerprint: self.fingerprint,
            alertname: self.alertname,
            result,
            elapsed: start.elapsed(),
            stdout,
            stderr,
        }
    }
}

/// Reads `r` to its end, keeping the first [`REMEDIATION_OUTPUT_LIMIT`] bytes (reading on,
/// so that the program never blocks on a full pipe).
async fn read_bounded(r: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut r) = r else { return kept };
    let mut buf = [0u8; 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = REMEDIATION_OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

async fn collect(mut h: tokio::task::JoinHandle<Vec<u8>>) -> String {
    let bytes = match tokio::time::timeout(OUTPUT_GRACE, &mut h).await {
        Ok(Ok(b)) => b,
        _ => {
            h.abort();
            Vec::new()
        }
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn run_program(
    argv: &[String],
    input: &[u8],
    timeout: Duration,
) -> (RemediationResult, String, String) {
    let Some((program, args)) = argv.split_first() else {
        let r = RemediationResult::Failed {
            status: "empty command".into(),
            detail: String::new(),
        };
        return (r, String::new(), String::new());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let r = RemediationResult::Failed {
                status: "cannot start".into(),
                detail: excerpt(&e.to_string()),
            };
            return (r, String::new(), String::new());
        }
    };
    let stdin = child.stdin.take();
    let input = input.to_vec();
    // A program that does not read its input (or exits early) just closes the pipe.
    let writer = tokio::spawn(async move {
        if let Some(mut s) = stdin {
            let _ = s.write_all(&input).await;
            let _ = s.shutdown().await;
        }
    });
    let out = tokio::spawn(read_bounded(child.stdout.take()));
    let err = tokio::spawn(read_bounded(child.stderr.take()));
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    let result = match waited {
        Err(_) => {
            // SIGKILL and reap; `kill_on_drop` covers a cancelled run.
            let _ = child.kill().await;
            RemediationResult::TimedOut { after: timeout }
        }
        Ok(Err(e)) => RemediationResult::Failed {
            status: "wait failed".into(),
            detail: excerpt(&e.to_string()),
        },
        Ok(Ok(st)) if st.success() => RemediationResult::Succeeded {
            status: exit_status(st),
        },
        Ok(Ok(st)) => RemediationResult::Failed {
            status: exit_status(st),
            detail: String::new(),
        },
    };
    writer.abort();
    let stdout = collect(out).await;
    let stderr = collect(err).await;
    let result = match result {
        RemediationResult::Failed { status, detail } if detail.is_empty() => {
            RemediationResult::Failed {
                status,
                detail: excerpt(&stderr),
            }
        }
        r => r,
    };
    (result, stdout, stderr)
}

fn exit_status(st: std::process::ExitStatus) -> String {
    match st.code() {
        Some(c) => format!("exit status {c}"),
        None => st.to_string(),
    }
}

async fn call_url(
    client: &axi_obs_core::https::HttpClient,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> (RemediationResult, String) {
    use axi_obs_core::https::HttpError;
    let answer = tokio::time::timeout(timeout, async {
        let Some(sent) = crate::delivery::integrations::send_json(client, url, body).await else {
            // Checked at load; the URL may hold a token: never echoed.
            return Ok(None);
        };
        let r = sent?;
        let kept = &r.body[..r.body.len().min(REMEDIATION_OUTPUT_LIMIT)];
        let mut text = String::from_utf8_lossy(kept).into_owned();
        // A character cut at the limit reads as U+FFFD: dropped.
        if kept.len() < r.body.len() && text.ends_with('\u{fffd}') {
            text.pop();
        }
        Ok::<_, HttpError>(Some((r.status, text)))
    })
    .await;
    match answer {
        Ok(Ok(None)) => (
            RemediationResult::Failed {
                status: "request failed".into(),
                detail: "the action's URL is not a valid URL".into(),
            },
            String::new(),
        ),
        Err(_) | Ok(Err(HttpError::Timeout(_))) => (
            RemediationResult::TimedOut { after: timeout },
            String::new(),
        ),
        // The URL may hold a token: the client's errors do not print it.
        Ok(Err(e)) => (
            RemediationResult::Failed {
                status: "request failed".into(),
                detail: excerpt(&e.to_string()),
            },
            String::new(),
        ),
        Ok(Ok(Some((status, text)))) if status.is_success() => (
            RemediationResult::Succeeded {
                status: format!("HTTP {}", status.as_u16()),
            },
            text,
        ),
        Ok(Ok(Some((status, text)))) => (
            RemediationResult::Failed {
                status: format!("HTTP {}", status.as_u16()),
                detail: excerpt(&text),
            },
            text,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(result: RemediationResult) -> RemediationOutcome {
        RemediationOutcome {
            action: "restart-api".into(),
            fingerprint: Fingerprint(1),
            alertname: "Down".into(),
            result,
            elapsed: Duration::from_millis(1234),
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    /// 2026-11-26T07:30:00Z.
    const AT: i64 = 1_795_678_200_000;

    #[test]
    fn outcome_lines() {
        assert_eq!(rfc3339_nano(AT), "2026-11-26T07:30:00Z");
        let ok = outcome(RemediationResult::Succeeded {
            status: "exit status 0".into(),
        });
        assert_eq!(
            ok.line(AT + 456),
            "restart-api: succeeded (exit status 0) in 1.2s at 2026-11-26T07:30:00Z"
        );
        let bad = outcome(RemediationResult::Failed {
            status: "exit status 1".into(),
            detail: excerpt("  no such unit\nat all\n"),
        });
        assert_eq!(
            bad.line(AT),
            "restart-api: failed (exit status 1) in 1.2s at 2026-11-26T07:30:00Z: no such unit at all"
        );
        let slow = outcome(RemediationResult::TimedOut {
            after: Duration::from_secs(30),
        });
        assert_eq!(
            slow.line(AT),
            "restart-api: timed out after 30s at 2026-11-26T07:30:00Z"
        );
        assert_eq!(excerpt(&"x".repeat(500)).len(), DETAIL_CHARS);
    }

    #[tokio::test]
    async fn read_bounded_keeps_the_limit_and_drains() {
        let data = vec![b'x'; REMEDIATION_OUTPUT_LIMIT * 3];
        let kept = read_bounded(Some(&data[..])).await;
        assert_eq!(kept.len(), REMEDIATION_OUTPUT_LIMIT);
    }
}
