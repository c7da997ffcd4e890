//! [`Obs`]: the per-request service.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axi_obs_core::logs::ContextFields;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, OriginalUri};
use http::{HeaderMap, Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer as _};
use tower_service::Service;

use super::counted_body::ReqSize;
use super::future::{ResponseFuture, State};
use super::instruments::{Active, Labels, version_label};
use super::layer::Config;
use super::methods::method_label;
use crate::names::{UNMATCHED_ROUTE, attr};

/// The service [`ObsLayer`](super::ObsLayer) wraps around each route.
#[derive(Clone, Debug)]
pub struct Obs<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
}

/// A read-only view of a request, given to [`ObsLayer::custom_labels`](super::ObsLayer::custom_labels).
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestView<'a> {
    /// The method.
    pub method: &'a http::Method,
    /// The URI (path and query; never put raw paths into labels).
    pub uri: &'a http::Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (matched path, connect info, your own).
    pub extensions: &'a http::Extensions,
}

impl<S, ReqBody> Service<Request<ReqBody>> for Obs<S>
where
    S: Service<Request<ReqBody>, Response = Response<Body>>,
    ReqBody: http_body::Body + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let cfg = &*self.config;
        let original = original_uri(&req);
        let path = original.path();
        if cfg.excluded.iter().any(|p| p == path) {
            return ResponseFuture::new(call_catching(&mut self.inner, req), None);
        }
        // For the access log, from the same look-up.
        let uri = cfg.access_log.then(|| original.clone());
        // Allocated first, so the state below is written straight into it rather than built
        // on the stack and copied over (it is a few hundred bytes).
        let slot = Box::<State>::new_uninit();
        let start = cfg.clock.now();
        let request_id = cfg.request_id.resolve(req.headers());
        if cfg.request_id.extension {
            req.extensions_mut().insert(request_id.clone());
        }

        let method = method_label(req.method(), cfg.known_methods.as_ref());
        let matched = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let no_matched_path = matched.is_none();
        let (mut route, span_name) = cfg.routes.lookup(matched, method, cfg.spans);
        let scheme = scheme(&req, cfg);
        let version = version_label(req.version());

        let (labels, active) = if cfg.metrics {
            let custom = match &cfg.custom {
                Some(c) => c.labels(&RequestView {
                    method: req.method(),
                    uri: req.uri(),
                    headers: req.headers(),
                    extensions: req.extensions(),
                }),
                None => Vec::new(),
            };
            let labels = Labels {
                method,
                route: if cfg.access_log || cfg.spans {
                    route.clone()
                } else {
                    std::mem::replace(&mut route, metrics::SharedString::const_str(""))
                },
                scheme,
                version,
                custom,
            };
            let active = cfg.instruments.start(&labels);
            (Some(labels), active)
        } else {
            (None, Active::Off)
        };
        let req_body = if !cfg.instruments.body_sizes {
            ReqSize::Unknown
        } else if let Some(n) =
            content_length(req.headers()).or_else(|| http_body::Body::size_hint(req.body()).exact())
        {
            ReqSize::Known(n)
        } else {
            // Chunked, or HTTP/2 without `Content-Length`: counted as the handler reads it.
            super::counted_body::count_request_body(&mut req)
        };

        let needs_client = cfg.access_log || cfg.spans;
        let client = needs_client.then(|| client_address(&req, cfg)).flatten();
        let user_agent = needs_client
            .then(|| req.headers().get(http::header::USER_AGENT).cloned())
            .flatten();

        // Wall-clock start for the span (its end is this plus the measured duration).
        let start_time = if cfg.spans {
            super::clock::wall_time(&cfg.clock, start)
        } else {
            SystemTime::UNIX_EPOCH
        };
        let cx = (cfg.spans || cfg.access_log).then(|| {
            // The caller's context, also with spans off: the access-log line then carries
            // the caller's trace id.
            let mut cx = if has_context(req.headers()) {
                extract_context(req.headers())
            } else {
                opentelemetry::Context::new()
            };
            if cfg.spans {
                let route_str: &str = &route;
                let unmatched = route_str == UNMATCHED_ROUTE;
                // Always there when spans are on.
                let name = span_name.unwrap_or_default();
                let tracer = cfg.tracer.tracer();
                let attrs = || {
                    span_attributes(&SpanRequest {
                        req: &req,
                        cfg,
                        method,
                        scheme,
                        version,
                        route: (!unmatched).then_some(route_str),
                        request_id: &request_id,
                        client: client.as_ref(),
                        user_agent: user_agent.as_ref(),
                    })
                };
                let mut builder = tracer
                    .span_builder(name)
                    .with_kind(SpanKind::Server)
                    .with_start_time(start_time);
                if cfg.sampler_attributes {
                    // Built for every request, sampled out or not, so the sampler can read
                    // them; they are the recorded span's attributes too.
                    builder = builder.with_attributes(attrs());
                }
                let mut span = tracer.build_with_context(builder, &cx);
                if span.is_recording() {
                    // Otherwise attributes only for recorded spans: a sampled-out request pays
                    // nothing.
                    if !cfg.sampler_attributes {
                        span.set_attributes(attrs());
                    }
                    cx = cx.with_span(span);
                } else {
                    // A sampled-out span records nothing, and ending it does nothing (the SDK's,
                    // and any tracer's by the specification, which lets a non-recording span be
                    // dropped unended): the context keeps only its ids (the parent of the
                    // handler's spans, the log lines' trace id, the response's `traceparent`),
                    // without the second box and the lock a live span sits behind in a context.
                    cx = cx.with_remote_span_context(span.span_context().clone());
                }
            }
            cx.with_value(
                ContextFields::new().with_header_value("http.request.id", request_id.0.clone()),
            )
        });

        let state = Box::write(
            slot,
            State {
                config: self.config.clone(),
                start,
                start_time,
                cx,
                labels,
                active,
                request_id,
                method: cfg.access_log.then(|| req.method().clone()),
                route: cfg.access_log.then_some(route),
                uri,
                client,
                user_agent,
                req_body,
                unmatched: no_matched_path,
            },
        );
        let future = {
            let _attached = state.cx.clone().map(opentelemetry::Context::attach);
            let _id = crate::request_id::enter(&state.request_id);
            call_catching(&mut self.inner, req)
        };
        ResponseFuture::new(future, Some(state))
    }
}

fn call_catching<S, R>(inner: &mut S, req: R) -> std::thread::Result<S::Future>
where
    S: Service<R>,
{
    std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req)))
}

pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const BAGGAGE: http::HeaderName = http::HeaderName::from_static("baggage");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

fn has_context(headers: &HeaderMap) -> bool {
    static NAMES: [http::HeaderName; 2] = [TRACEPARENT, BAGGAGE];
    crate::headers::contains_any(headers, &NAMES)
}

/// The caller's context from W3C headers, through the global propagator. `tracestate` and
/// `baggage` may be split over several header fields; they are joined first (W3C says they
/// combine as one comma-separated list). A `traceparent` sent twice, or not in W3C's exact
/// shape, is ignored with its `tracestate` (the request starts a new trace), as W3C's test
/// suite requires; the propagator alone would take the first of two, and some malformed ones.
fn extract_context(headers: &HeaderMap) -> opentelemetry::Context {
    let mut parents = headers.get_all(TRACEPARENT).iter();
    let parent_ok = match (parents.next(), parents.next()) {
        (Some(v), None) => v.to_str().is_ok_and(valid_traceparent),
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    let split = [TRACESTATE, BAGGAGE]
        .iter()
        .any(|h| headers.get_all(h).iter().nth(1).is_some());
    if parent_ok && !split {
        return opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(headers))
        });
    }
    let names: &[http::HeaderName] = if parent_ok {
        &[TRACEPARENT, TRACESTATE, BAGGAGE]
    } else {
        &[BAGGAGE]
    };
    let mut joined = HeaderMap::new();
    for name in names.iter().cloned() {
        let values: Vec<&str> = headers
            .get_all(&name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !values.is_empty()
            && let Ok(v) = http::HeaderValue::from_str(&values.join(","))
        {
            joined.insert(name, v);
        }
    }
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(&joined)))
}

/// Whether `v` is a `traceparent` as W3C Trace Context defines it: `version-traceid-parentid-
/// flags` in lower-case hex of 2, 32, 16 and 2 digits, version not `ff`, ids not all zero;
/// version `00` exactly that, a later version possibly followed by `-` and more.
fn valid_traceparent(v: &str) -> bool {
    let b = v.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b.get(r)
            .is_some_and(|s| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
    };
    let zero = |r: std::ops::Range<usize>| b[r].iter().all(|c| *c == b'0');
    let shape = b.len() >= 55
        && hex(0..2)
        && b[2] == b'-'
        && hex(3..35)
        && b[35] == b'-'
        && hex(36..52)
        && b[52] == b'-'
        && hex(53..55);
    shape
        && &b[0..2] != b"ff"
        && !zero(3..35)
        && !zero(36..52)
        && match &b[0..2] {
            b"00" => b.len() == 55,
            _ => b.len() == 55 || b[55] == b'-',
        }
}

/// Reads W3C context headers for the OpenTelemetry propagator.
pub(crate) struct HeaderExtractor<'a>(pub(crate) &'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The URI as the client sent it: axum's `OriginalUri` (a layer on a nested router sees the
/// path without the nest's prefix), else the request's own.
fn original_uri<B>(req: &Request<B>) -> &http::Uri {
    req.extensions()
        .get::<OriginalUri>()
        .map_or(req.uri(), |o| &o.0)
}

/// The element of a proxy header's comma-separated list (over all its fields) that the
/// proxies in front of the service added: the `hops`-th from the end, or the first when there
/// are fewer. Elements to its left came from further away, and a client can send them itself.
fn forwarded_entry<'a>(headers: &'a HeaderMap, name: &str, hops: usize) -> Option<&'a str> {
    headers
        .get_all(name)
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.rsplit(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .take(hops)
        .last()
}

/// The value of parameter `name` (`for`, `proto`) in the `Forwarded` element the proxies
/// added (see [`forwarded_entry`]).
fn forwarded_param<'a>(headers: &'a HeaderMap, name: &str, hops: usize) -> Option<&'a str> {
    forwarded_entry(headers, "forwarded", hops)?
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// An address from `X-Forwarded-For` or `Forwarded: for=`, without quotes, IPv6 brackets or a
/// port (`"[2001:db8::1]:4711"` is `2001:db8::1`, `192.0.2.60:8080` is `192.0.2.60`).
/// Obfuscated identifiers (`unknown`, `_hidden`) are kept as they are.
fn node_address(node: &str) -> Option<&str> {
    let node = node.trim().trim_matches('"');
    let addr = if let Some(rest) = node.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match node.split_once(':') {
            // One colon: an IPv4 address or a name, and a port.
            Some((host, port)) if !port.contains(':') => host,
            // None, or an IPv6 address without brackets.
            _ => node,
        }
    };
    (!addr.is_empty()).then_some(addr)
}

fn scheme<B>(req: &Request<B>, cfg: &Config) -> &'static str {
    let hops = cfg.forwarded_hops;
    if cfg.trust_forwarded
        && let Some(proto) = forwarded_entry(req.headers(), "x-forwarded-proto", hops)
            .or_else(|| forwarded_param(req.headers(), "proto", hops))
    {
        return if proto.eq_ignore_ascii_case("https") {
            "https"
        } else {
            "http"
        };
    }
    match req.uri().scheme_str() {
        Some("https") => "https",
        Some(_) => "http",
        // HTTP/1.1's origin form carries no scheme: the listener's.
        None if cfg.tls => "https",
        None => "http",
    }
}

/// A client address: the socket peer, or what a trusted proxy header said. Formatted only when
/// written.
#[derive(Debug)]
pub(crate) enum ClientAddr {
    Peer(std::net::IpAddr),
    Forwarded(String),
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAddr::Peer(ip) => ip.fmt(f),
            ClientAddr::Forwarded(s) => f.write_str(s),
        }
    }
}

impl ClientAddr {
    /// Runs `f` on the address as text: a proxy's value as given, a socket peer formatted on
    /// the stack (an IPv4 address digit by digit; `Display` would take seven formatter
    /// writes, each escaped separately by a JSON log writer).
    pub(crate) fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            ClientAddr::Forwarded(s) => f(s),
            ClientAddr::Peer(ip) => {
                let mut text = AddrText::default();
                match ip {
                    std::net::IpAddr::V4(v4) => {
                        for (i, octet) in v4.octets().into_iter().enumerate() {
                            if i > 0 {
                                text.push(b'.');
                            }
                            if octet >= 100 {
                                text.push(b'0' + octet / 100);
                            }
                            if octet >= 10 {
                                text.push(b'0' + octet / 10 % 10);
                            }
                            text.push(b'0' + octet % 10);
                        }
                    }
                    std::net::IpAddr::V6(v6) => {
                        use std::fmt::Write as _;
                        // At most 45 characters: always fits.
                        let _ = write!(text, "{v6}");
                    }
                }
                f(text.as_str())
            }
        }
    }
}

/// Text of an IP address in a stack buffer (an IPv6 address is at most 45 characters).
struct AddrText {
    buf: [u8; 48],
    len: usize,
}

impl Default for AddrText {
    fn default() -> Self {
        Self {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl AddrText {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII is written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The client address: when forwarded headers are trusted, the `X-Forwarded-For` entry (or
/// the `Forwarded` element's `for=`) the proxies added (see [`forwarded_entry`]); else the socket peer (`ConnectInfo`, when the app is served with connect info).
fn client_address<B>(req: &Request<B>, cfg: &Config) -> Option<ClientAddr> {
    let hops = cfg.forwarded_hops;
    if cfg.trust_forwarded
        && let Some(addr) = forwarded_entry(req.headers(), "x-forwarded-for", hops)
            .or_else(|| forwarded_param(req.headers(), "for", hops))
            .and_then(node_address)
    {
        return Some(ClientAddr::Forwarded(addr.to_owned()));
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ClientAddr::Peer(ci.0.ip()))
}

/// What a server span's attributes are made from.
struct SpanRequest<'a, B> {
    req: &'a Request<B>,
    cfg: &'a Config,
    method: &'static str,
    scheme: &'static str,
    version: &'static str,
    /// `None` for an unmatched request: `http.route` is then left out, never the raw path.
    route: Option<&'a str>,
    request_id: &'a crate::RequestId,
    client: Option<&'a ClientAddr>,
    user_agent: Option<&'a http::HeaderValue>,
}

/// A server span's semantic-convention attributes known when the request arrives.
fn span_attributes<B>(r: &SpanRequest<'_, B>) -> Vec<KeyValue> {
    let uri = original_uri(r.req);
    let mut attrs = Vec::with_capacity(14);
    attrs.extend([
        KeyValue::new(attr::HTTP_REQUEST_METHOD, r.method),
        KeyValue::new(attr::URL_PATH, uri.path().to_owned()),
        KeyValue::new(attr::URL_SCHEME, r.scheme),
        KeyValue::new(attr::NETWORK_PROTOCOL_VERSION, r.version),
        KeyValue::new("http.request.id", r.request_id.as_str().to_owned()),
    ]);
    if let Some(route) = r.route {
        attrs.push(KeyValue::new(attr::HTTP_ROUTE, route.to_owned()));
    }
    if r.method == "_OTHER" {
        attrs.push(KeyValue::new(
            attr::HTTP_REQUEST_METHOD_ORIGINAL,
            r.req.method().as_str().to_owned(),
        ));
    }
    if r.cfg.span_query
        && let Some(q) = uri.query()
    {
        attrs.push(KeyValue::new(
            attr::URL_QUERY,
            super::future::redact_query(q),
        ));
    }
    if let Some((host, port)) = server_authority(r.req, r.cfg) {
        attrs.push(KeyValue::new(attr::SERVER_ADDRESS, host.to_owned()));
        if let Some(port) = port {
            attrs.push(KeyValue::new(attr::SERVER_PORT, i64::from(port)));
        }
    }
    if let Some(c) = r.client {
        attrs.push(KeyValue::new(attr::CLIENT_ADDRESS, c.to_string()));
    }
    if let Some(peer) = r.req.extensions().get::<ConnectInfo<SocketAddr>>() {
        attrs.push(KeyValue::new(
            attr::NETWORK_PEER_ADDRESS,
            peer.0.ip().to_string(),
        ));
        attrs.push(KeyValue::new(
            attr::NETWORK_PEER_PORT,
            i64::from(peer.0.port()),
        ));
    }
    if let Some(ua) = r.user_agent.and_then(|v| v.to_str().ok()) {
        attrs.push(KeyValue::new(attr::USER_AGENT_ORIGINAL, ua.to_owned()));
    }
    attrs
}

/// The host and port the client addressed, as semantic conventions find `server.address` and
/// `server.port`: a trusted proxy's `X-Forwarded-Host` or `Forwarded: host=` (only with
/// [`trust_forwarded_headers`](super::ObsLayer::trust_forwarded_headers)), else the request
/// target's authority (HTTP/2's `:authority`, or HTTP/1.1's absolute form), else `Host`.
fn server_authority<'a, B>(req: &'a Request<B>, cfg: &Config) -> Option<(&'a str, Option<u16>)> {
    let hops = cfg.forwarded_hops;
    let headers = req.headers();
    let forwarded = cfg.trust_forwarded.then(|| {
        // `X-Forwarded-*` first, as for the client address and the scheme: a proxy that
        // sets those (nginx) passes a client's own `Forwarded` through untouched.
        [
            forwarded_entry(headers, "x-forwarded-host", hops),
            forwarded_param(headers, "host", hops),
        ]
    });
    // The first source that holds a valid host: an empty or malformed proxy value does not
    // hide the `Host` header.
    forwarded
        .into_iter()
        .flatten()
        .chain([
            original_uri(req)
                .authority()
                .map(http::uri::Authority::as_str),
            headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok()),
        ])
        .flatten()
        .find_map(split_authority)
}

/// `host[:port]` split into the host (IPv6 without brackets, user info dropped) and a port
/// when one is given and valid (1 to 65535, digits only). `None` for an empty host or text
/// after an IPv6 literal that is not a port.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let authority = authority.trim();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if !after.is_empty() && !after.starts_with(':') {
            return None;
        }
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            // None, or an IPv6 address without brackets (not valid in `Host`, but harmless).
            _ => (authority, None),
        }
    };
    let port = port
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0);
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::ClientAddr;

    #[test]
    fn client_addresses_as_text_match_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "192.168.100.9",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let addr = ClientAddr::Peer(ip.parse::<IpAddr>().unwrap());
            assert_eq!(addr.with_str(str::to_owned), addr.to_string(), "{ip}");
        }
        let fwd = ClientAddr::Forwarded("2001:db8::1".to_owned());
        assert_eq!(fwd.with_str(str::to_owned), "2001:db8::1");
    }

    #[test]
    fn forwarded_addresses_lose_quotes_brackets_and_ports() {
        use super::node_address;
        assert_eq!(node_address("\"[2001:db8::1]:4711\""), Some("2001:db8::1"));
        assert_eq!(node_address("[2001:db8::1]"), Some("2001:db8::1"));
        assert_eq!(node_address("2001:db8::1"), Some("2001:db8::1"));
        assert_eq!(node_address("\"192.0.2.60:8080\""), Some("192.0.2.60"));
        assert_eq!(node_address(" 192.0.2.60 "), Some("192.0.2.60"));
        assert_eq!(node_address("unknown"), Some("unknown"));
        assert_eq!(node_address("_hidden"), Some("_hidden"));
        assert_eq!(node_address("\"\""), None);
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        use super::split_authority;
        assert_eq!(
            split_authority("example.com:8080"),
            Some(("example.com", Some(8080)))
        );
        assert_eq!(split_authority("example.com"), Some(("example.com", None)));
        assert_eq!(split_authority("[::1]:9000"), Some(("::1", Some(9000))));
        assert_eq!(split_authority("[::1]"), Some(("::1", None)));
        assert_eq!(split_authority("user:pw@host:81"), Some(("host", Some(81))));
        // A port that is no port is left out; the host stays.
        assert_eq!(split_authority("host:99999"), Some(("host", None)));
        assert_eq!(split_authority("host:"), Some(("host", None)));
        assert_eq!(split_authority(":80"), None);
        assert_eq!(split_authority(""), None);
        assert_eq!(split_authority("[::1"), None);
        assert_eq!(split_authority("[::1]junk"), None);
        assert_eq!(split_authority("host:+80"), Some(("host", None)));
        assert_eq!(split_authority("host:0"), Some(("host", None)));
    }

    #[test]
    fn the_entry_the_proxies_added_counts() {
        use super::{forwarded_entry, forwarded_param};
        let mut h = http::HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        assert_eq!(
            forwarded_entry(&h, "x-forwarded-for", 1),
            Some("203.0.113.7")
        );
        assert_eq!(forwarded_entry(&h, "x-forwarded-for", 2), Some("6.6.6.6"));
        // Fewer entries than hops: the first.
        assert_eq!(forwarded_entry(&h, "x-forwarded-for", 5), Some("6.6.6.6"));
        // A second field (a second proxy) is later in the list.
        h.append("x-forwarded-for", "198.51.100.2".parse().unwrap());
        assert_eq!(
            forwarded_entry(&h, "x-forwarded-for", 1),
            Some("198.51.100.2")
        );
        assert_eq!(
            forwarded_entry(&h, "x-forwarded-for", 2),
            Some("203.0.113.7")
        );
        h.insert("x-forwarded-proto", "https, http".parse().unwrap());
        assert_eq!(forwarded_entry(&h, "x-forwarded-proto", 1), Some("http"));
        assert_eq!(forwarded_entry(&h, "x-forwarded-for-nothing", 1), None);
        h.insert(
            "forwarded",
            "for=6.6.6.6;proto=http, For=\"[2001:db8::1]:4711\";Proto=https"
                .parse()
                .unwrap(),
        );
        assert_eq!(forwarded_param(&h, "for", 1), Some("[2001:db8::1]:4711"));
        assert_eq!(forwarded_param(&h, "proto", 1), Some("https"));
        assert_eq!(forwarded_param(&h, "for", 2), Some("6.6.6.6"));
        assert_eq!(forwarded_param(&h, "by", 1), None);
    }
}
