//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log_shipper::config::Config;
use log_shipper::output::{Delivered, Output, SendError, SendFuture};
use log_shipper::pipeline;
use log_shipper::record::Record;
use log_shipper::registry::Registry;

/// An output that keeps what it receives; the first `fail_first` sends fail (retryably).
#[derive(Clone, Default)]
pub struct Memory {
    pub records: Arc<Mutex<Vec<Record>>>,
    pub fail_first: Arc<AtomicUsize>,
    pub failures: Arc<AtomicUsize>,
    pub batches: Arc<Mutex<Vec<usize>>>,
    /// When not zero, batches larger than this are refused as too large, and so is an event
    /// whose body is `HUGE` even alone.
    pub max_batch: Arc<AtomicUsize>,
    /// Milliseconds each send takes (a slow receiver).
    pub send_delay_ms: Arc<AtomicUsize>,
}

impl Memory {
    pub fn bodies(&self) -> Vec<String> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }

    pub fn has(&self, body: &str) -> bool {
        self.records.lock().unwrap().iter().any(|r| r.body == body)
    }
}

impl Output for Memory {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn send<'a>(&'a mut self, batch: &'a [Record]) -> SendFuture<'a> {
        Box::pin(async move {
            let delay = self.send_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay as u64)).await;
            }
            if self
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                self.failures.fetch_add(1, Ordering::SeqCst);
                return Err(SendError::Retryable {
                    message: "receiver busy".into(),
                    retry_after: None,
                });
            }
            let max = self.max_batch.load(Ordering::SeqCst);
            if max > 0 && (batch.len() > max || batch.iter().any(|r| r.body == "HUGE")) {
                return Err(SendError::TooLarge {
                    message: format!("{} events: too large", batch.len()),
                });
            }
            self.batches.lock().unwrap().push(batch.len());
            self.records.lock().unwrap().extend_from_slice(batch);
            Ok(Delivered::default())
        })
    }
}

/// A running in-process pipeline; stops (gracefully) when `stop` is called.
pub struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

/// The YAML of a test configuration tailing `glob`, with `extra` lines added to the input.
pub fn yaml(dir: &Path, glob: &str, input_extra: &str) -> String {
    format!(
        "registry: {reg}\npoll_interval: 20ms\ninputs:\n  - name: app\n    paths: ['{glob}']\n{input_extra}output:\n  stdout: {{}}\nbatch: {{ max_events: 50, max_wait: 20ms, queue_events: 100 }}\nretry: {{ initial_backoff: 10ms, max_backoff: 50ms }}\n",
        reg = dir.join("registry.json").display()
    )
}

/// Starts the pipeline of `yaml` with `output`.
pub fn start(yaml: &str, output: Memory) -> Running {
    start_with(yaml, Box::new(output))
}

/// Starts the pipeline of `yaml` with any output.
pub fn start_with(yaml: &str, output: Box<dyn Output>) -> Running {
    let config = Config::parse(yaml, Path::new("test.yml")).unwrap();
    let inputs = pipeline::input_specs(&config).unwrap();
    let registry = Registry::load(&config.registry).unwrap();
    let settings = pipeline::Settings::from(&config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        pipeline::run(settings, inputs, registry, output, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running {
        stop: Some(stop),
        task,
    }
}

/// Polls `done` until true or 30 s passed; returns its last answer.
pub async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many times each body was received.
pub fn counts(bodies: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for b in bodies {
        *m.entry(b.clone()).or_insert(0) += 1;
    }
    m
}

/// Appends `text` to `path` (creating it), flushed.
pub fn append(path: &Path, text: &str) {
    append_bytes(path, text.as_bytes());
}

/// Appends `bytes` to `path` (creating it), flushed.
pub fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sums the samples of `metric` in Prometheus text, grouped by the value of `label`.
pub fn sum_by(text: &str, metric: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            let (l, v) = r.split_once("} ").unwrap();
            (l, v)
        } else if let Some(v) = rest.strip_prefix(' ') {
            ("", v)
        } else {
            continue;
        };
        let key = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{label}=\"")))
            .map(|v| v.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        *out.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap();
    }
    out
}

/// A plain record with `body`, of a file that does not exist.
pub fn record(body: &str) -> log_shipper::record::Record {
    use log_shipper::record::{FileKey, Position, Record};
    Record {
        input: "app".into(),
        service: "app".into(),
        path: "/tmp/a.log".into(),
        position: Position {
            key: FileKey {
                dev: 1,
                ino: 2,
                generation: 0,
            },
            end: 2,
        },
        file_birth_unix_nano: None,
        time_unix_nano: None,
        observed_unix_nano: 1,
        level: None,
        body: body.into(),
        attributes: Vec::new(),
        trace_id: None,
        span_id: None,
        truncated: false,
    }
}
