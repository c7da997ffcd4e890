//! Probes of network connectivity and business endpoints, with blackbox_exporter's metric
//! names. Each probe runs on its own schedule; a scrape reads the last results and never waits
//! on the network.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `probe_success` | `probe`, `target` | 1 when the last run succeeded |
//! | `probe_duration_seconds` | `probe`, `target` | how long the last run took |
//! | `probe_dns_lookup_time_seconds` | `probe`, `target` | the target's name resolution time (not the redirects') |
//! | `probe_http_status_code` | `probe`, `target` | HTTP status (0 when none arrived) |
//! | `probe_http_content_length` | `probe`, `target` | the response's `Content-Length`, -1 without one (chunked) |
//! | `probe_http_uncompressed_body_length` | `probe`, `target` | body bytes read |
//! | `probe_http_duration_seconds` | `probe`, `target`, `phase` (resolve, connect, tls, processing, transfer) | time per phase, summed over redirects |
//! | `probe_http_redirects` | `probe`, `target` | redirects received (see below) |
//! | `probe_failed_due_to_regex` | `probe`, `target` | 1 when the body did not match `body_pattern` |
//! | `probe_http_ssl` | `probe`, `target` | 1 when the final response came over TLS |
//! | `probe_ssl_earliest_cert_expiry` | `probe`, `target` | earliest `NotAfter` of the presented chain, Unix seconds (after a TLS handshake) |
//! | `probe_tls_version_info` | `probe`, `target`, `version` | 1, for the negotiated version (`TLS 1.2`, `TLS 1.3`) |
//!
//! The `tls` phase is the handshake alone (blackbox_exporter's includes the TCP connect). HTTPS
//! probes verify the server against the system trust store, or only `ca_file`, or not at all
//! with `insecure_skip_verify` (see [`crate::tls`]).
//!
//! Redirects (301, 302, 303, 307, 308 with a `Location`) are followed as blackbox_exporter
//! follows them: at most [`MAX_REDIRECTS`], each on a new connection, relative locations
//! resolved against the current URL, the status, body checks, `probe_http_ssl` and the
//! certificate series taken from the last response. `probe_http_redirects` counts the redirect
//! responses received, so a chain of two reports 2; with `follow_redirects: false` the first
//! redirect response is the final one (its 3xx status fails the probe unless listed in
//! `expect_status`) and the count is 1; a loop stops at the eleventh redirect response, reports
//! 11 and fails on its 3xx status. A redirect from `http://` to `https://` uses the probe's
//! `ca_file` and `insecure_skip_verify`.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

use crate::config::{HttpProbe, Probe, TcpProbe};
use crate::{CollectError, Collector, Families, Paths};

/// What a TLS handshake showed.
#[derive(Debug, Clone, Default)]
pub struct TlsOutcome {
    /// blackbox_exporter's version name (`TLS 1.3`).
    pub version: &'static str,
    /// Earliest `NotAfter` of the presented chain, Unix seconds.
    pub earliest_expiry: Option<i64>,
}

/// The outcome of one probe run.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Succeeded.
    pub success: bool,
    /// Whole run.
    pub duration: Duration,
    /// Name resolution, summed over redirects (`probe_http_duration_seconds{phase="resolve"}`).
    pub resolve: Duration,
    /// The target's own name resolution: the first request's, as blackbox_exporter's
    /// `probe_dns_lookup_time_seconds` (redirects' lookups count in `resolve` only). Also when
    /// it failed, or the probe timed out during it: the time it took, or ran until the timeout.
    pub dns_lookup: Duration,
    /// TCP connect.
    pub connect: Duration,
    /// TLS handshake (zero for plain HTTP).
    pub tls_handshake: Duration,
    /// The TLS session, when the handshake completed.
    pub tls: Option<TlsOutcome>,
    /// Request sent until response headers.
    pub processing: Duration,
    /// Body read.
    pub transfer: Duration,
    /// HTTP status, 0 when none.
    pub status: u16,
    /// The response's `Content-Length`, -1 when it has none (chunked), as blackbox_exporter's
    /// `probe_http_content_length`.
    pub content_length: i64,
    /// Body bytes read (`probe_http_uncompressed_body_length`).
    pub body_length: u64,
    /// The body did not match the pattern.
    pub failed_regex: bool,
    /// Redirect responses received (blackbox_exporter's `probe_http_redirects`).
    pub redirects: u32,
    /// Why it failed, for the log.
    pub error: Option<String>,
    /// When the target's own name resolution started, while it runs: a probe that times out
    /// during it still reports the time spent (blackbox_exporter records the lookup's time
    /// however it ends).
    lookup_started: Option<Instant>,
}

impl Outcome {
    /// Starts timing the target's own name resolution (see `dns_lookup`).
    fn lookup_starts(&mut self) -> Instant {
        let now = Instant::now();
        self.lookup_started = Some(now);
        now
    }

    /// Ends the name resolution started at `t`: `resolve` gains its time, and `dns_lookup` is
    /// it when it was the target's own.
    fn lookup_ends(&mut self, t: Instant) {
        let took = t.elapsed();
        self.resolve += took;
        if self.lookup_started.take().is_some() {
            self.dns_lookup = took;
        }
    }

    /// After the run ended, perhaps by its timeout: a lookup still running counts up to now.
    fn lookup_cut_short(&mut self) {
        if let Some(t) = self.lookup_started {
            self.lookup_ends(t);
        }
    }
}

/// The most redirects an HTTP probe follows, as blackbox_exporter (and Go's HTTP client).
pub const MAX_REDIRECTS: u32 = 10;

type Results = Arc<RwLock<HashMap<String, (String, bool, Outcome)>>>;

/// Runs the configured probes in the background and renders their last results.
#[derive(Debug, Clone)]
pub struct Probes {
    results: Results,
}

impl Probes {
    /// Starts one task per probe on the current Tokio runtime.
    pub fn start(probes: Vec<Probe>) -> Self {
        let results: Results = Arc::default();
        for probe in probes {
            let results = results.clone();
            // Built on the first https:// request of this probe (the URL or a redirect), then
            // kept: plain HTTP probes never load the system trust store.
            let mut tls = TlsCache::default();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(probe.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let (target, is_http, outcome) = match (&probe.http, &probe.tcp) {
                        (Some(h), _) => (h.url.clone(), true, run_http(h, &mut tls).await),
                        (None, Some(t)) => (t.address.clone(), false, run_tcp(t).await),
                        (None, None) => continue,
                    };
                    if let Some(e) = &outcome.error {
                        tracing::info!(probe = %probe.name, target = %target, error = %e, "probe failed");
                    }
                    results
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(probe.name.clone(), (target, is_http, outcome));
                }
            });
        }
        Self { results }
    }

    /// Waits until every probe in `names` has a result, or `timeout` (for tests and start-up).
    pub async fn wait_for(&self, names: &[&str], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let r = self.results.read().unwrap_or_else(PoisonError::into_inner);
                if names.iter().all(|n| r.contains_key(*n)) {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn run_tcp(p: &TcpProbe) -> Outcome {
    let started = Instant::now();
    let mut o = Outcome::default();
    let result = tokio::time::timeout(p.timeout, async {
        let t = o.lookup_starts();
        let addrs = tokio::net::lookup_host(&p.address).await;
        o.lookup_ends(t);
        let addrs: Vec<_> = addrs?.collect();
        let addr = addrs
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let t = Instant::now();
        tokio::net::TcpStream::connect(addr).await?;
        o.connect = t.elapsed();
        Ok::<(), std::io::Error>(())
    })
    .await;
    match result {
        Ok(Ok(())) => o.success = true,
        Ok(Err(e)) => o.error = Some(e.to_string()),
        Err(_) => o.error = Some(format!("timed out after {:?}", p.timeout)),
    }
    o.lookup_cut_short();
    o.duration = started.elapsed();
    o
}

type TlsSetup = Result<Arc<rustls::ClientConfig>, String>;

/// A probe's TLS client configuration, built on first use; an error (a `ca_file` gone since the
/// configuration was checked) fails every HTTPS request of the probe with that message.
#[derive(Default)]
struct TlsCache(Option<TlsSetup>);

impl TlsCache {
    fn get(&mut self, p: &HttpProbe) -> &TlsSetup {
        self.0.get_or_insert_with(|| {
            crate::tls::client_config(p.ca_file.as_deref(), p.insecure_skip_verify)
                .map_err(|e| e.to_string())
        })
    }
}

async fn run_http(p: &HttpProbe, tls: &mut TlsCache) -> Outcome {
    let started = Instant::now();
    let mut o = Outcome::default();
    let result = tokio::time::timeout(p.timeout, follow_redirects(p, tls, &mut o)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => o.error = Some(e),
        Err(_) => o.error = Some(format!("timed out after {:?}", p.timeout)),
    }
    o.lookup_cut_short();
    if o.error.is_none() {
        let status_ok = if p.expect_status.is_empty() {
            (200..300).contains(&o.status)
        } else {
            p.expect_status.contains(&o.status)
        };
        o.success = status_ok && !o.failed_regex;
        if !status_ok {
            o.error = Some(format!("unexpected status {}", o.status));
        } else if o.failed_regex {
            o.error = Some("the body did not match body_pattern".into());
        }
    }
    o.duration = started.elapsed();
    o
}

/// Requests `p.url` and follows redirects as blackbox_exporter does (see the module docs).
async fn follow_redirects(
    p: &HttpProbe,
    tls: &mut TlsCache,
    o: &mut Outcome,
) -> Result<(), String> {
    // Validated when the configuration was read.
    let mut url = url::Url::parse(&p.url).map_err(|e| format!("{}: {e}", p.url))?;
    loop {
        let Some(location) = http_phases(p, &url, tls, o).await? else {
            return Ok(());
        };
        o.redirects += 1;
        if !p.follow_redirects || o.redirects > MAX_REDIRECTS {
            return Ok(());
        }
        url = url
            .join(&location)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| format!("redirect from {url} to {location:?}: not an http(s) URL"))?;
        // A fragment is never sent (and `http::Uri` refuses one).
        url.set_fragment(None);
    }
}

/// Statuses whose `Location` is followed (Go's HTTP client, hence blackbox_exporter).
fn is_redirect(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// One HTTP/1.1 GET over TCP or TLS, adding each phase's time to `o`; the redirect target when
/// the response is a redirect.
async fn http_phases(
    p: &HttpProbe,
    url: &url::Url,
    tls: &mut TlsCache,
    o: &mut Outcome,
) -> Result<Option<String>, String> {
    let uri: http::Uri = url.as_str().parse().map_err(|e| format!("{url}: {e}"))?;
    let https = url.scheme() == "https";
    let host = uri.host().ok_or("no host")?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    // `probe_http_ssl` and the certificate series describe the last response only.
    o.tls = None;
    let t = if o.redirects == 0 {
        o.lookup_starts()
    } else {
        Instant::now()
    };
    let lookup_name = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = tokio::net::lookup_host((lookup_name, port)).await;
    o.lookup_ends(t);
    let addr = addrs
        .map_err(|e| format!("resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolve {host}: no address"))?;
    let t = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    o.connect += t.elapsed();
    if !https {
        return exchange(stream, &uri, &host, p, o).await;
    }
    let config = tls.get(p).as_ref().map_err(Clone::clone)?;
    let name =
        crate::tls::server_name(&host).ok_or_else(|| format!("{host}: not a server name"))?;
    let t = Instant::now();
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    o.tls_handshake += t.elapsed();
    let session = stream.get_ref().1;
    o.tls = Some(TlsOutcome {
        version: session
            .protocol_version()
            .map(crate::tls::version_name)
            .unwrap_or("unknown"),
        earliest_expiry: session
            .peer_certificates()
            .and_then(crate::tls::earliest_expiry),
    });
    exchange(stream, &uri, &host, p, o).await
}

/// The request and response on an established connection (TCP or TLS); the redirect target
/// when the response is a redirect with a `Location`.
async fn exchange<S>(
    stream: S,
    uri: &http::Uri,
    host: &str,
    p: &HttpProbe,
    o: &mut Outcome,
) -> Result<Option<String>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let host_header = match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let req = http::Request::get(path)
        .header(http::header::HOST, host_header)
        .header(
            http::header::USER_AGENT,
            concat!("axi-node-collector/", env!("CARGO_PKG_VERSION")),
        )
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    o.processing += t.elapsed();
    o.status = resp.status().as_u16();
    o.content_length = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<i64>().ok())
        .unwrap_or(-1);
    let location = resp
        .headers()
        .get(http::header::LOCATION)
        .filter(|_| is_redirect(resp.status()))
        .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
    let t = Instant::now();
    // Read frame by frame and counted; kept only to match `body_pattern`, and then only up to
    // MAX_MATCHED_BODY: a probe of a URL that answers gigabytes costs no memory.
    let mut body = resp.into_body();
    let mut kept: Vec<u8> = Vec::new();
    let mut length = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            length += data.len() as u64;
            if p.body_pattern.is_some() {
                if kept.len() + data.len() > MAX_MATCHED_BODY {
                    return Err(format!(
                        "body: over {MAX_MATCHED_BODY} bytes, too large to match body_pattern"
                    ));
                }
                kept.extend_from_slice(data);
            }
        }
    }
    o.transfer += t.elapsed();
    o.body_length = length;
    if let Some(pattern) = &p.body_pattern {
        o.failed_regex = !pattern.0.is_match(&String::from_utf8_lossy(&kept));
    }
    conn.abort();
    Ok(location)
}

/// The most of a body kept to match a probe's `body_pattern` (16 MiB); a longer body fails
/// the probe. Without a pattern, bodies are only counted.
pub const MAX_MATCHED_BODY: usize = 16 << 20;

impl Collector for Probes {
    fn name(&self) -> &'static str {
        "probes"
    }

    fn collect(&self, _paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let results = self.results.read().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<&String> = results.keys().collect();
        names.sort();
        for name in names {
            let (target, is_http, o) = &results[name];
            let l = [("probe", name.as_str()), ("target", target.as_str())];
            out.gauge(
                "probe_success",
                "Displays whether or not the probe was a success",
                &l,
                f64::from(u8::from(o.success)),
            );
            out.gauge(
                "probe_duration_seconds",
                "Returns how long the probe took to complete in seconds",
                &l,
                o.duration.as_secs_f64(),
            );
            out.gauge(
                "probe_dns_lookup_time_seconds",
                "Returns the time taken for probe dns lookup in seconds",
                &l,
                o.dns_lookup.as_secs_f64(),
            );
            if *is_http {
                out.gauge(
                    "probe_http_status_code",
                    "Response HTTP status code",
                    &l,
                    f64::from(o.status),
                );
                out.gauge(
                    "probe_http_content_length",
                    "Length of http content response",
                    &l,
                    o.content_length as f64,
                );
                out.gauge(
                    "probe_http_uncompressed_body_length",
                    "Length of uncompressed response body",
                    &l,
                    o.body_length as f64,
                );
                out.gauge(
                    "probe_failed_due_to_regex",
                    "Indicates if probe failed due to regex",
                    &l,
                    f64::from(u8::from(o.failed_regex)),
                );
                out.gauge(
                    "probe_http_redirects",
                    "The number of redirects",
                    &l,
                    f64::from(o.redirects),
                );
                out.gauge(
                    "probe_http_ssl",
                    "Indicates if SSL was used for the final redirect",
                    &l,
                    f64::from(u8::from(o.tls.is_some())),
                );
                if let Some(tls) = &o.tls {
                    if let Some(expiry) = tls.earliest_expiry {
                        out.gauge(
                            "probe_ssl_earliest_cert_expiry",
                            "Returns earliest SSL cert expiry in unixtime",
                            &l,
                            expiry as f64,
                        );
                    }
                    out.gauge(
                        "probe_tls_version_info",
                        "Contains the TLS version used",
                        &[
                            ("probe", name.as_str()),
                            ("target", target.as_str()),
                            ("version", tls.version),
                        ],
                        1.0,
                    );
                }
                for (phase, d) in [
                    ("resolve", o.resolve),
                    ("connect", o.connect),
                    ("tls", o.tls_handshake),
                    ("processing", o.processing),
                    ("transfer", o.transfer),
                ] {
                    out.gauge(
                        "probe_http_duration_seconds",
                        "Duration of http request by phase, summed over all redirects",
                        &[
                            ("probe", name.as_str()),
                            ("target", target.as_str()),
                            ("phase", phase),
                        ],
                        d.as_secs_f64(),
                    );
                }
            }
        }
        Ok(())
    }
}
