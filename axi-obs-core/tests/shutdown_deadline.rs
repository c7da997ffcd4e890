//! Shutdown against a collector that takes connections and never answers. Its own test
//! process: it installs the global subscriber, which the export thread's warnings go to.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axi_obs_core::{Env, ShutdownError, Telemetry};

/// A local log output that takes a while for each write (a terminal, a pipe read slowly).
#[derive(Clone, Default)]
struct SlowSink(Arc<Mutex<Vec<u8>>>);

impl Write for SlowSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(30));
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A collector that accepts every connection and reads what it is sent, but never answers:
/// every export waits for its deadline.
fn silent_collector() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// The exports stop short of the shutdown deadline, so the warning they log about the lost
/// spans still reaches a slow local log output before shutdown returns (the local log's share
/// of the timeout). Without that share the export ran to the deadline itself, and shutdown
/// returned while the warning was still being written.
#[test]
fn an_export_cut_off_by_the_shutdown_deadline_is_reported_in_the_local_log() {
    use tracing_subscriber::layer::SubscriberExt;

    let port = silent_collector();
    let sink = SlowSink::default();
    let mut parts = Telemetry::builder()
        .env(Env::from_pairs([(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )]))
        .log_format(axi_obs_core::LogFormat::Json)
        .log_writer(sink.clone())
        .shutdown_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(parts.layer))
        .unwrap();
    {
        let _s = tracing::info_span!("last_request").entered();
        tracing::info!("the last words before shutdown");
    }
    let result = parts.guard.shutdown_blocking();
    assert!(
        matches!(result, Err(ShutdownError::Timeout(_))),
        "the collector never answers: {result:?}"
    );
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("the last words before shutdown"), "{text}");
    // One for each signal with something to export: the span, and the log line itself.
    for signal in ["traces", "logs"] {
        let warning = text
            .lines()
            .find(|l| {
                l.contains("OTLP export failed") && l.contains(&format!("\"signal\":\"{signal}\""))
            })
            .unwrap_or_else(|| panic!("no {signal} export warning in the local log:\n{text}"));
        // Said as what happened: the shutdown deadline, not the 10 s export timeout.
        assert!(
            warning.contains("cut short by the flush or shutdown deadline"),
            "{warning}"
        );
    }
}
