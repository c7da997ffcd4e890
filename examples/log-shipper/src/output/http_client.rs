//! The HTTP/1.1 client of the HTTP outputs (OTLP/HTTP, Elasticsearch): hyper over plain TCP or
//! rustls (ring), keeping connections alive, each request bounded by the output's timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::tls::{TlsConfigError, TlsOptions, https_connector};

/// A POST client for one endpoint.
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// The answer to a request, body read.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: http::StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl HttpClient {
    /// A client whose requests (connect, send, whole answer) take at most `timeout`.
    pub(crate) fn new(timeout: Duration, tls: &TlsOptions) -> Result<Self, TlsConfigError> {
        let connector = https_connector(tls.client_config()?, timeout, false);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Self { client, timeout })
    }

    /// POSTs `body` to `uri`; `Err` is a connection failure or timeout, described with its
    /// causes (a TLS certificate refused, a connection refused ...).
    pub(crate) async fn post(
        &self,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let mut request = http::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri.clone();
        let h = request.headers_mut();
        h.clone_from(headers);
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| super::otlp::error_chain(&e))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {}", super::otlp::error_chain(&e)))?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}
