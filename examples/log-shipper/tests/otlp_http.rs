//! OTLP over HTTP: what the output makes of a receiver's error statuses. The specification's
//! retryable ones (429, 502, 503, 504) are retried; so are 401, 403 and 404, a credential or
//! URL to fix, which the specification would drop with everything read meanwhile; others
//! (400) are refused for good.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use log_shipper::output::{OtlpHttp, Output, SendError};

#[tokio::test]
async fn a_credential_or_url_to_fix_holds_the_batch_a_bad_request_drops_it() {
    let app = axum::Router::new().route(
        "/v1/logs",
        axum::routing::post(|headers: axum::http::HeaderMap| async move {
            let code: u16 = headers["x-answer"].to_str().unwrap().parse().unwrap();
            axum::http::StatusCode::from_u16(code).unwrap()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    for (code, held) in [
        (401, true),
        (403, true),
        (404, true),
        (429, true),
        (503, true),
        (400, false),
        (500, false),
    ] {
        let mut out = OtlpHttp::new(
            &format!("http://{addr}"),
            Duration::from_secs(5),
            [("x-answer".to_owned(), code.to_string())],
        )
        .unwrap();
        let e = out.send(&[common::record("a")]).await.unwrap_err();
        let retried = matches!(e, SendError::Retryable { .. });
        assert_eq!(retried, held, "{code}: {e:?}");
    }
}
