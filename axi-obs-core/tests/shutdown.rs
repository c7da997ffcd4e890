//! Shutdown against a dead collector. Its own test process: it starts an export thread, which
//! `install.rs` checks is absent without an endpoint.

#![allow(clippy::unwrap_used)]

use axi_obs_core::{Env, Telemetry};

/// Regression: shutting down against a dead collector used to spend the whole deadline on
/// export retries, and the last local log lines never reached their output.
#[test]
fn local_log_lines_survive_shutdown_against_a_dead_collector() {
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sink = Sink::default();
    let mut parts = Telemetry::builder()
        .env(Env::from_pairs([(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )]))
        .log_format(axi_obs_core::LogFormat::Json)
        .log_writer(sink.clone())
        .shutdown_timeout(std::time::Duration::from_millis(500))
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(parts.layer);
    tracing::subscriber::with_default(subscriber, || {
        let _s = tracing::info_span!("last_request").entered();
        tracing::info!("the last words before shutdown");
    });
    let result = parts.guard.shutdown_blocking();
    assert!(result.is_err(), "the export cannot succeed: {result:?}");
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("the last words before shutdown"), "{text}");
}
