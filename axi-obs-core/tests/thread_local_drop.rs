//! An event logged from a thread-local's destructor (a connection pool saying it closes, as
//! the thread ends) is written, not a panic: `LocalKey::with` panics once the thread's locals
//! are being torn down, and a panic in a thread-local destructor aborts the process. Its own
//! test process: it installs a global subscriber (a scoped one is itself a thread-local, gone
//! by then).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axi_obs_core::{Env, LogFormat, OtlpConfig, Telemetry};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct LogsOnDrop;

impl Drop for LogsOnDrop {
    fn drop(&mut self) {
        tracing::info!(pool = "db", "closing the connection pool");
    }
}

thread_local! {
    static POOL: LogsOnDrop = const { LogsOnDrop };
}

#[test]
fn an_event_from_a_thread_local_destructor_is_written() {
    let sink = Sink::default();
    let parts = Telemetry::builder()
        .env(Env::empty())
        .service_name("tls-teardown")
        // OTLP log export on (to a port nothing listens on): the event also goes through the
        // OpenTelemetry log bridge, whose context read panics in a thread-local's `Drop`.
        .otlp(OtlpConfig::new().endpoint("http://127.0.0.1:9"))
        .shutdown_timeout(Duration::from_millis(300))
        .log_format(LogFormat::Json)
        .log_writer(sink.clone())
        .build()
        .unwrap();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(parts.layer))
        .unwrap();
    std::thread::spawn(|| {
        // The pool first, then the first event: the layer's own thread-locals come later, so
        // they are torn down first, before the pool's `Drop` logs.
        POOL.with(|_| {});
        tracing::info!("serving");
        let _attached = opentelemetry::Context::new().attach();
    })
    .join()
    .expect("the thread ended normally (a panic in a thread-local destructor would abort)");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        if text.contains("closing the connection pool") {
            assert!(text.contains("\"pool\":\"db\""), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "the line never arrived: {text}");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(parts.guard);
}
