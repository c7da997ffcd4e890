//! Helpers shared by the tests that run `axi-alert run` as a process.

#![allow(dead_code, clippy::unwrap_used)]

use std::process::Child;

use axum::Router;
use axum::routing::get;

/// A child process killed (SIGKILL) and reaped when dropped.
pub(crate) struct Kill(pub(crate) Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves `body` as `/metrics` on a loopback port; returns the port.
pub(crate) async fn serve_metrics(body: &'static str) -> u16 {
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = target.local_addr().unwrap().port();
    let app = Router::new().route("/metrics", get(move || async move { body }));
    tokio::spawn(async move { axum::serve(target, app).await });
    port
}
