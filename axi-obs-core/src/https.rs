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

/// `request` with the user information of its URL moved into `Authorization: Basic`.
fn user_info_as_basic_auth(mut request: http::Request<Bytes>) -> http::Request<Bytes> {
    let Some((user_info, host)) = request
        .uri()
        .authority()
        .and_then(|a| a.as_str().rsplit_once('@'))
        .map(|(u, h)| (u.to_owned(), h.to_owned()))
    else {
        return request;
    };
    let mut parts = request.uri().clone().into_parts();
    let Ok(host) = host.parse::<http::uri::Authority>() else {
        return request;
    };
    parts.authority = Some(host);
    let Ok(uri) = http::Uri::from_parts(parts) else {
        return request;
    };
    *request.uri_mut() = uri;
    if !request.headers().contains_key(http::header::AUTHORIZATION) {
        let (user, password) = user_info.split_once(':').unwrap_or((&user_info, ""));
        let mut credentials = percent_decoded(user);
        credentials.push(b':');
        credentials.extend(percent_decoded(password));
        if let Ok(v) = http::HeaderValue::from_str(&format!("Basic {}", base64(&credentials))) {
            request.headers_mut().insert(http::header::AUTHORIZATION, v);
        }
    }
    request
}

/// `s` with `%XX` escapes decoded (a `%` not followed by two hex digits kept as it is).
fn percent_decoded(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648), for `Authorization: Basic`.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

    /// Sends `request` and reads the whole answer. A `user:password@` in its URL is sent as
    /// `Authorization: Basic` (percent-decoded, as browsers, curl, reqwest and Go do) and left
    /// out of the request line, unless the request has its own `Authorization`.
    ///
    /// # Errors
    ///
    /// A connection, TLS or protocol failure, or no answer within the timeout. A status that
    /// is not 2xx is a [`Reply`], not an error.
    pub async fn request(&self, request: http::Request<Bytes>) -> Result<Reply, HttpError> {
        let request = user_info_as_basic_auth(request).map(Full::new);
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
        self.request(post_request(uri, headers, content_type, body))
            .await
    }
}

/// A POST of `body` to `uri` with `headers` and `Content-Type: content_type`.
fn post_request(
    uri: &http::Uri,
    headers: &http::HeaderMap,
    content_type: &'static str,
    body: Vec<u8>,
) -> http::Request<Bytes> {
    let mut request = http::Request::new(Bytes::from(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri.clone();
    let h = request.headers_mut();
    h.clone_from(headers);
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    request
}

/// An [`HttpClient`] for synchronous code (a deploy hook, a CLI): requests run to completion
/// on a current-thread runtime of its own. No connection is kept between requests: the
/// runtime runs only inside [`request`](Self::request), so nothing would see a server close
/// an idle kept-alive connection, and the next request would fail on it.
///
/// Build and drop it outside an async runtime (a runtime cannot be dropped inside another):
/// on the thread that uses it, when it first needs it.
#[derive(Debug)]
pub struct BlockingHttpClient {
    runtime: tokio::runtime::Runtime,
    client: HttpClient,
}

impl BlockingHttpClient {
    /// A client over `connector` whose requests take at most `timeout`, with a runtime to
    /// run it on.
    ///
    /// # Errors
    ///
    /// When the runtime cannot start.
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        let client = HttpClient {
            client,
            timeout,
            max_body: usize::MAX,
        };
        Ok(Self { runtime, client })
    }

    /// See [`HttpClient::max_body`].
    #[must_use]
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.client.max_body = bytes;
        self
    }

    /// [`HttpClient::request`], waited for.
    ///
    /// # Errors
    ///
    /// As [`HttpClient::request`].
    pub fn request(&self, request: http::Request<Bytes>) -> Result<Reply, HttpError> {
        self.runtime.block_on(self.client.request(request))
    }

    /// [`HttpClient::post`], waited for.
    ///
    /// # Errors
    ///
    /// As [`HttpClient::request`].
    pub fn post(
        &self,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<Reply, HttpError> {
        self.request(post_request(uri, headers, content_type, body))
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

    /// User information in a URL is basic auth, percent-decoded (`%40` is `@`, a raw `&` is
    /// itself), and leaves the URL; a request's own `Authorization` wins.
    #[test]
    fn user_info_becomes_basic_auth() {
        let req = |uri: &str| {
            let mut r = http::Request::new(Bytes::new());
            *r.uri_mut() = uri.parse().unwrap();
            r
        };
        let auth = |r: &http::Request<Bytes>| {
            r.headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let r = user_info_as_basic_auth(req("https://deployer:s3cret@host:8443/hook?x=1"));
        assert_eq!(r.uri().to_string(), "https://host:8443/hook?x=1");
        assert_eq!(auth(&r).as_deref(), Some("Basic ZGVwbG95ZXI6czNjcmV0"));
        // `a&b@c` as the password: `&` raw, `@` escaped.
        let r = user_info_as_basic_auth(req("http://u:a&b%40c@[::1]:80/"));
        assert_eq!(r.uri().to_string(), "http://[::1]:80/");
        assert_eq!(auth(&r).as_deref(), Some("Basic dTphJmJAYw=="));
        let r = user_info_as_basic_auth(req("http://user@host/"));
        assert_eq!(auth(&r).as_deref(), Some("Basic dXNlcjo="));
        let mut own = req("http://u:p@host/");
        own.headers_mut().insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer t"),
        );
        let r = user_info_as_basic_auth(own);
        assert_eq!(auth(&r).as_deref(), Some("Bearer t"));
        assert_eq!(r.uri().to_string(), "http://host/");
        let r = user_info_as_basic_auth(req("http://host/"));
        assert_eq!(auth(&r), None);
        for (data, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64(data.as_bytes()), want);
        }
    }
}
