//! Process-global installation: the first install wins, a second one is a typed error
//! (`try_install`) or a clear panic (`install`). This file is its own test process, so the
//! globals it sets cannot leak into other tests.

#![allow(clippy::unwrap_used)]

use axi_obs_core::{Env, InitError, Telemetry};

/// A writer keeping what it is given.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn second_install_is_an_error_and_install_panics_clearly() {
    let lines = Lines::default();
    // An environment value that cannot be used does not stop the install: it is logged.
    let builder = || {
        Telemetry::builder()
            .env(Env::from_pairs([
                ("OTEL_PROPAGATORS", "tracecontext,b3"),
                ("AXI_LOG_FORMAT", "json"),
            ]))
            .service_name("install-test")
            .log_writer(lines.clone())
    };
    let guard = builder().try_install().expect("first install");
    assert!(axi_obs_core::global_metrics().is_some());
    // The global recorder is ours: a counter recorded anywhere shows up on the page.
    metrics::counter!("installed_total").increment(1);
    let page = axi_obs_core::global_metrics().unwrap().render();
    assert!(page.contains("installed_total 1"), "{page}");
    // The global propagator is W3C trace context + baggage (the default: the variable was
    // ignored).
    let fields: Vec<String> =
        opentelemetry::global::get_text_map_propagator(|p| p.fields().map(str::to_owned).collect());
    assert!(fields.contains(&"traceparent".to_owned()) && fields.contains(&"baggage".to_owned()));

    match builder().try_install() {
        Err(InitError::AlreadyInstalled(what)) => assert_eq!(what, "axi-obs telemetry"),
        other => panic!("expected AlreadyInstalled, got {other:?}"),
    }
    let panic = std::panic::catch_unwind(|| builder().install()).unwrap_err();
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("cannot install telemetry") && msg.contains("already installed"),
        "{msg}"
    );
    drop(guard);
    let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let warning = logged
        .lines()
        .find(|l| l.contains("environment variable ignored"))
        .unwrap_or_else(|| panic!("no warning in {logged}"));
    assert!(
        warning.contains("\"WARN\"")
            && warning.contains("OTEL_PROPAGATORS")
            && warning.contains("tracecontext,b3")
            && warning.contains("b3"),
        "{warning}"
    );
}

#[test]
fn bad_log_file_is_an_init_error_naming_the_path() {
    let e = Telemetry::builder()
        .env(Env::from_pairs([(
            "AXI_LOG_FILE",
            "/proc/no/such/dir/app.log",
        )]))
        .build()
        .unwrap_err();
    match &e {
        InitError::LogFile { path, .. } => {
            assert_eq!(path, std::path::Path::new("/proc/no/such/dir/app.log"))
        }
        other => panic!("expected LogFile, got {other:?}"),
    }
    assert!(e.to_string().contains("AXI_LOG_FILE"), "{e}");
}

/// With no endpoint configured, no export thread exists: nothing can dial out.
#[test]
fn no_endpoint_no_export_thread() {
    let threads = || -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|s| s.trim().to_owned())
            .collect()
    };
    let parts = Telemetry::builder()
        .env(Env::empty())
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    assert!(parts.logger_provider.is_none());
    assert!(
        !threads().iter().any(|t| t.starts_with("axi-obs-export")),
        "{:?}",
        threads()
    );
    let with_endpoint = Telemetry::builder()
        .env(Env::from_pairs([(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:9",
        )]))
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    assert!(
        threads().iter().any(|t| t.starts_with("axi-obs-export")),
        "{:?}",
        threads()
    );
    drop(with_endpoint);
    drop(parts);
}

/// Log lines inside a span carry `trace.id` / `span.id` even when nothing is exported.
#[test]
fn json_lines_carry_trace_ids_without_any_exporter() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let parts = Telemetry::builder()
        .env(Env::empty())
        .service_name("ids")
        .log_format(axi_obs_core::LogFormat::Json)
        .log_writer(sink.clone())
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(parts.layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("outside");
        let _s = tracing::info_span!("request").entered();
        tracing::info!("inside");
    });
    parts.guard.force_flush().unwrap();
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].get("trace.id").is_none());
    let id = lines[1]["trace.id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert_ne!(id, "00000000000000000000000000000000");
    assert_eq!(lines[1]["span.id"].as_str().unwrap().len(), 16);
}
