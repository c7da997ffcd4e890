//! An HTTP client for `http://` and `https://` alike (feature `https-client`): hyper-util's
//! pooled client over a hyper-rustls connector built from a [`rustls::ClientConfig`] (see
//! [`ClientTls`](crate::tls::ClientTls)), so TLS uses the ring provider and never a
//! process-wide default.
//!
//! Not reqwest's TLS features: their `rustls-no-provider` would make every reqwest client of
//! a workspace build panic without a process-wide crypto provider, and `rustls` pulls aws-lc.
//!
//! ```no_run
//! use std::time::Duration;
//! use axi_obs_core::https::{Connector, HttpClient};
//! use axi_obs_core::tls::{ClientTls, read_certs};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = ClientTls::new()
//!     .roots(read_certs("/etc/axi/ca.pem".as_ref())?)
//!     .client_config()?;
//! let timeout = Duration::from_secs(10);
//! let client = HttpClient::new(Connector::new(tls).connect_timeout(timeout).build(), timeout);
//! let uri: http::Uri = "https://alertmanager.internal:9093/api/v2/alerts".parse()?;
//! let reply = client
//!     .post(&uri, &http::HeaderMap::new(), "application/json", b"[]".to_vec())
//!     .await?;
//! assert!(reply.status.is_success());
//! # Ok(()) }
//! ```

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

/// Builds the connector of an [`HttpClient`] (or of a tonic channel): plain TCP for
/// `http://`, rustls for `https://`.
#[derive(Debug, Clone)]
pub struct Connector {
    tls: ClientConfig,
    connect_timeout: Option<Duration>,
    http2: bool,
    server_name: Option<ServerName<'static>>,
}

impl Connector {
    /// A connector speaking HTTP/1.1 (no ALPN offered over TLS), with `tls` for `https://`.
    /// The ALPN protocols of `tls` are replaced by the connector's.
    pub fn new(tls: ClientConfig) -> Self {
        Self {
            tls,
            connect_timeout: None,
            http2: false,
            server_name: None,
        }
    }

    /// Bounds the TCP connect. Defaults to none (the operating system's limit).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Offer HTTP/2 only (ALPN `h2`) over TLS, as gRPC (tonic) wants. Defaults to HTTP/1.1.
    #[must_use]
    pub fn http2(mut self) -> Self {
        self.http2 = true;
        self
    }

    /// The name the server's certificate must hold (and the SNI sent), instead of the host
    /// of each URI (Prometheus's `tls_config.server_name`). Defaults to the URI's host.
    #[must_use]
    pub fn server_name(mut self, name: ServerName<'static>) -> Self {
        self.server_name = Some(name);
        self
    }

    /// The hyper connector.
    pub fn build(self) -> HttpsConnector<HttpConnector> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(self.connect_timeout);
        // hyper-rustls sets ALPN from the enabled versions and panics on protocols set before.
        let mut tls = self.tls;
        tls.alpn_protocols.clear();
        let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        if let Some(name) = self.server_name {
            builder = builder.with_server_name_resolver(FixedServerNameResolver::new(name));
        }
        if self.http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Connecting, the TLS handshake or sending failed; the text is the error with its
    /// causes (`client error (Connect): invalid peer certificate: UnknownIssuer` ...).
    #[error("{0}")]
    Request(String),
    /// The answer's body could not be read.
    #[error("reading the answer: {0}")]
    Body(String),
    /// No whole answer within the client's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// An answer, body read.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// A pooled HTTP client (connections kept alive 90 s when idle) whose requests, connect to
/// last byte of the answer, take at most its timeout.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    max_body: usize,
}

impl HttpClient {
    /// A client over `connector` (see [`Connector`]) whose requests take at most `timeout`.
    /// Starts nothing and dials nothing until a request.
    pub fn new(connector: HttpsConnector<HttpConnector>, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Self {
            client,
            timeout,
            max_body: usize::MAX,
        }
    }

    /// Reads at most `bytes` of an answer's body: the rest is not read (the connection is
    /// closed), and [`Reply::body`] holds the first `bytes`. For a peer whose answer only
    /// matters as a status or a short error text (a webhook receiver, a chat robot): one that
    /// answers without end cannot grow memory. Defaults to no limit.
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Sends `request` and reads the whole answer.
    ///
    /// # Errors
    ///
    /// A connection, TLS or protocol failure, or no answer within the timeout. A status that
    /// is not 2xx is a [`Reply`], not an error.
    pub async fn request(&self, request: http::Request<Bytes>) -> Result<Reply, HttpError> {
        let request = request.map(Full::new);
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Request(crate::error_chain(&e)))?;
            let (parts, mut body) = response.into_parts();
            let body = if self.max_body == usize::MAX {
                body.collect()
                    .await
                    .map_err(|e| HttpError::Body(crate::error_chain(&e)))?
                    .to_bytes()
            } else {
                let mut kept = Vec::new();
                while kept.len() < self.max_body {
                    let Some(frame) = body.frame().await else {
                        break;
                    };
                    let frame = frame.map_err(|e| HttpError::Body(crate::error_chain(&e)))?;
                    if let Ok(data) = frame.into_data() {
                        let room = self.max_body - kept.len();
                        kept.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                Bytes::from(kept)
            };
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout(self.timeout)),
        }
    }

    /// POSTs `body` to `uri` with `headers` and `Content-Type: content_type`.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request).
    pub async fn post(
        &self,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<Reply, HttpError> {
        let mut request = http::Request::new(Bytes::from(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri.clone();
        let h = request.headers_mut();
        h.clone_from(headers);
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        self.request(request).await
    }
}

/// An [`HttpClient`] for synchronous code (a deploy hook, a CLI): requests run to completion
/// on a current-thread runtime of its own.
///
/// Build and drop it outside an async runtime (a runtime cannot be dropped inside another):
/// on the thread that uses it, when it first needs it.
#[derive(Debug)]
pub struct BlockingHttpClient {
    runtime: tokio::runtime::Runtime,
    client: HttpClient,
}

impl BlockingHttpClient {
    /// `client` (see [`HttpClient::new`]) with a runtime to run it on. The client is built
    /// inside the runtime's context.
    ///
    /// # Errors
    ///
    /// When the runtime cannot start.
    pub fn new(client: impl FnOnce() -> HttpClient) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = {
            let _enter = runtime.enter();
            client()
        };
        Ok(Self { runtime, client })
    }

    /// [`HttpClient::request`], waited for.
    ///
    /// # Errors
    ///
    /// As [`HttpClient::request`].
    pub fn request(&self, request: http::Request<Bytes>) -> Result<Reply, HttpError> {
        self.runtime.block_on(self.client.request(request))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tls::ClientTls;

    #[test]
    fn alpn_set_beforehand_is_replaced_not_a_panic() {
        let tls = ClientTls::new()
            .insecure_skip_verify(true)
            .alpn(vec![b"h2".to_vec()])
            .client_config()
            .unwrap();
        let _ = Connector::new(tls.clone()).build();
        let _ = Connector::new(tls).http2().build();
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error_naming_the_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tls = ClientTls::new().insecure_skip_verify(true).client_config();
        let timeout = Duration::from_secs(5);
        let client = HttpClient::new(Connector::new(tls.unwrap()).build(), timeout);
        let uri: http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let e = client
            .post(&uri, &http::HeaderMap::new(), "text/plain", Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Request(_)), "{e}");
        assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
    }

    /// A peer that answers without end: with `max_body`, the client keeps the first bytes
    /// and returns, well before its timeout, instead of reading (and holding) all it is sent.
    #[tokio::test]
    async fn an_endless_answer_is_read_up_to_the_limit() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n",
                )
                .await;
            let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
            while conn.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        let tls = ClientTls::new().client_config().unwrap();
        let client =
            HttpClient::new(Connector::new(tls).build(), Duration::from_secs(30)).max_body(100);
        let uri: http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let reply = client
            .post(&uri, &http::HeaderMap::new(), "text/plain", Vec::new())
            .await
            .unwrap();
        assert_eq!(reply.status, http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.body.len(), 100);
    }
}
