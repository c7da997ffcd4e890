//! Local log output (JSON lines or a human format, to standard output or a rotating file) and
//! the filters shared by every log and trace layer.

mod json;
mod keys;
mod teardown;
mod writer;

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::{Layer, Registry};

pub use json::{ContextFields, JsonLayer};
pub(crate) use teardown::Teardown;
pub use writer::{LineWriter, NonBlocking};
pub(crate) use writer::{WriterWorker, non_blocking};

use crate::config::{LogFile, LogFormat, Resolved, Rotation};
use crate::error::InitError;

/// A layer over the plain registry, as the builder assembles them.
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// Crates whose own logs and spans describe exporting itself; kept at `warn` by default and
/// never fed back into OTLP export.
pub(crate) const NOISY_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "reqwest",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_http",
];

/// Builds the `EnvFilter` for `directives`, adding `target::=warn` for the noisy crates the
/// directives do not mention. (`EnvFilter` matches a directive's target as a plain prefix of
/// the event's target: `hyper=warn` would also silence a crate named `hyperion`, and
/// `reqwest=warn` the client spans of `reqwest_tracing`. With `::` the cap covers the crate's
/// modules, where its events come from, and nothing else.)
pub(crate) fn env_filter(directives: &str) -> EnvFilter {
    let mut filter = EnvFilter::builder().parse_lossy(directives);
    for target in capped(directives) {
        if let Ok(d) = format!("{target}::=warn").parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// The noisy crates `directives` do not mention (as `hyper` or `hyper::`).
fn capped(directives: &str) -> Vec<&'static str> {
    NOISY_TARGETS
        .iter()
        .copied()
        .filter(|target| {
            !directives.split(',').any(|d| {
                d.trim()
                    .split(['=', '['])
                    .next()
                    .map(|t| t.trim_end_matches("::"))
                    == Some(*target)
            })
        })
        .collect()
}

/// The log filter: [`env_filter`], and the same cap for events whose target is exactly a
/// noisy crate's name (OpenTelemetry's own diagnostics use the crate name as the target),
/// which a prefix directive cannot express without catching other crates.
pub(crate) fn log_filter(
    directives: &str,
) -> impl tracing_subscriber::layer::Filter<Registry> + Send + Sync + 'static {
    use tracing_subscriber::filter::FilterExt;
    let exact = capped(directives);
    env_filter(directives).and(FilterFn::new(move |meta: &tracing::Metadata<'_>| {
        !(*meta.level() > tracing::Level::WARN && exact.contains(&meta.target()))
    }))
}

/// A per-layer filter for the OTLP log bridge and the span layer: nothing emitted by the export
/// machinery itself (its thread, its HTTP/gRPC client crates) is exported, so a failing
/// exporter cannot feed on its own error reports.
pub(crate) fn not_export_feedback() -> FilterFn<fn(&tracing::Metadata<'_>) -> bool> {
    FilterFn::new(is_not_export_feedback as fn(&tracing::Metadata<'_>) -> bool)
}

fn is_not_export_feedback(meta: &tracing::Metadata<'_>) -> bool {
    if crate::export::on_export_thread() {
        return false;
    }
    let target = meta.target();
    let root = target.split("::").next().unwrap_or(target);
    !(NOISY_TARGETS.contains(&root) || target.starts_with("axi_obs_core::export"))
}

/// The local output: its layer and the worker that owns the writer thread.
pub(crate) struct LocalLogs {
    pub(crate) layer: BoxedLayer,
    pub(crate) worker: WriterWorker,
}

/// Builds the local log layer writing to standard output or the configured file.
pub(crate) fn local(resolved: &Resolved, dropped: Arc<AtomicU64>) -> Result<LocalLogs, InitError> {
    let custom = resolved.log_writer.as_ref().and_then(|slot| {
        slot.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    });
    let (out, is_terminal): (Box<dyn std::io::Write + Send>, bool) =
        match (custom, &resolved.log_file) {
            (Some(w), _) => (w, false),
            (None, Some(file)) => (Box::new(open_file(file)?), false),
            (None, None) => {
                let stdout = std::io::stdout();
                let tty = stdout.is_terminal();
                (Box::new(stdout), tty)
            }
        };
    let format = resolved.log_format.unwrap_or(if is_terminal {
        LogFormat::Compact
    } else {
        LogFormat::Json
    });
    let (writer, worker) =
        non_blocking(out, resolved.log_buffer_lines, dropped).map_err(InitError::Runtime)?;
    let layer: BoxedLayer = match format {
        LogFormat::Json => {
            let attr = |k: &str| {
                resolved
                    .resource
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.as_str())
            };
            let service: Vec<(&str, &str)> = [
                ("service.name", attr("service.name")),
                ("service.version", attr("service.version")),
                ("service.namespace", attr("service.namespace")),
                ("service.environment", attr("deployment.environment.name")),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            Box::new(JsonLayer::new(writer, service))
        }
        LogFormat::Pretty => Box::new(
            tracing_subscriber::fmt::layer()
                .pretty()
                .with_ansi(is_terminal)
                .with_writer(writer),
        ),
        LogFormat::Compact => Box::new(
            tracing_subscriber::fmt::layer()
                .compact()
                .with_ansi(is_terminal)
                .with_writer(writer),
        ),
    };
    Ok(LocalLogs { layer, worker })
}

fn open_file(file: &LogFile) -> Result<tracing_appender::rolling::RollingFileAppender, InitError> {
    let err = |source: std::io::Error| InitError::LogFile {
        path: file.path.clone(),
        source,
    };
    let name = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| err(std::io::Error::other("the path has no file name")))?;
    let dir = file
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (prefix, suffix) = match (file.rotation, name.rsplit_once('.')) {
        (Rotation::Never, _) => (name.clone(), String::new()),
        (_, Some((stem, ext))) if !stem.is_empty() => (stem.to_owned(), ext.to_owned()),
        _ => (name.clone(), String::new()),
    };
    let rotation = match file.rotation {
        Rotation::Hourly => tracing_appender::rolling::Rotation::HOURLY,
        Rotation::Daily => tracing_appender::rolling::Rotation::DAILY,
        Rotation::Never => tracing_appender::rolling::Rotation::NEVER,
    };
    let mut builder = tracing_appender::rolling::Builder::new()
        .rotation(rotation)
        .filename_prefix(prefix)
        .max_log_files(file.keep);
    if !suffix.is_empty() {
        builder = builder.filename_suffix(suffix);
    }
    builder
        .build(dir)
        .map_err(|e| err(std::io::Error::other(crate::error_chain(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noisy_targets_are_capped_unless_mentioned() {
        let f = env_filter("debug").to_string();
        assert!(f.contains("h2::=warn") && f.contains("tonic::=warn"), "{f}");
        assert!(
            !f.contains("tower"),
            "tower_http logs must stay visible: {f}"
        );
        let f = env_filter("info,h2=debug").to_string();
        assert!(f.contains("h2=debug") && !f.contains("h2::=warn"), "{f}");
    }

    /// The INFO events (one per target, its message the target) that pass
    /// `env_filter(directives)`.
    fn info_passes(directives: &str) -> Vec<String> {
        use tracing_subscriber::layer::SubscriberExt;
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .without_time()
                .with_target(false)
                .with_level(false)
                .with_ansi(false)
                .with_writer(move || Capture(sink.clone()))
                .with_filter(log_filter(directives)),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "hyper::proto::h1::conn", "hyper::proto::h1::conn");
            tracing::info!(target: "reqwest::connect", "reqwest::connect");
            tracing::info!(target: "h2::codec", "h2::codec");
            tracing::info!(target: "hyperion::api", "hyperion::api");
            tracing::info!(target: "reqwest_tracing::span", "reqwest_tracing::span");
            tracing::info!(target: "h2o", "h2o");
            tracing::info!(target: "opentelemetry_sdk", "opentelemetry_sdk");
            tracing::warn!(target: "opentelemetry", "opentelemetry warns");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| l.trim().to_owned()).collect()
    }

    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_cap_covers_the_noisy_crates_and_no_crate_named_like_them() {
        assert_eq!(
            info_passes("info"),
            [
                "hyperion::api",
                "reqwest_tracing::span",
                "h2o",
                "opentelemetry warns"
            ]
        );
        // Named (with or without `::`): the user's level wins.
        for named in ["info,hyper=info", "info,hyper::=info"] {
            assert_eq!(
                info_passes(named),
                [
                    "hyper::proto::h1::conn",
                    "hyperion::api",
                    "reqwest_tracing::span",
                    "h2o",
                    "opentelemetry warns"
                ],
                "{named}"
            );
        }
    }

    #[test]
    fn unwritable_log_file_names_the_path() {
        let file = LogFile::new("/proc/definitely/not/writable/app.log");
        let e = open_file(&file).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/proc/definitely/not/writable/app.log"),
            "{msg}"
        );
        assert!(msg.contains("AXI_LOG_FILE"), "{msg}");
    }

    #[test]
    fn daily_file_keeps_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = open_file(&LogFile::new(dir.path().join("api.log"))).unwrap();
        use std::io::Write;
        f.write_all(b"x\n").unwrap();
        f.flush().unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(
            names[0].starts_with("api.") && names[0].ends_with(".log"),
            "{names:?}"
        );
    }
}
