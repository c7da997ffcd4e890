//! Probes of network connectivity and business endpoints, with blackbox_exporter's metric
//! names. Each probe runs on its own schedule; a scrape reads the last results and never waits
//! on the network.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `probe_success` | `probe`, `target` | 1 when the last run succeeded |
//! | `probe_duration_seconds` | `probe`, `target` | how long the last run took |
//! | `probe_dns_lookup_time_seconds` | `probe`, `target` | name resolution time |
//! | `probe_http_status_code` | `probe`, `target` | HTTP status (0 when none arrived) |
//! | `probe_http_content_length` | `probe`, `target` | body length |
//! | `probe_http_duration_seconds` | `probe`, `target`, `phase` (resolve, connect, tls, processing, transfer) | time per phase |
//! | `probe_failed_due_to_regex` | `probe`, `target` | 1 when the body did not match `body_pattern` |
//! | `probe_http_ssl` | `probe`, `target` | 1 when the response came over TLS |
//! | `probe_ssl_earliest_cert_expiry` | `probe`, `target` | earliest `NotAfter` of the presented chain, Unix seconds (after a TLS handshake) |
//! | `probe_tls_version_info` | `probe`, `target`, `version` | 1, for the negotiated version (`TLS 1.2`, `TLS 1.3`) |
//!
//! The `tls` phase is the handshake alone (blackbox_exporter's includes the TCP connect). HTTPS
//! probes verify the server against the system trust store, or only `ca_file`, or not at all
//! with `insecure_skip_verify` (see [`crate::tls`]).

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
    /// Name resolution.
    pub resolve: Duration,
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
    /// Body length.
    pub content_length: u64,
    /// The body did not match the pattern.
    pub failed_regex: bool,
    /// Why it failed, for the log.
    pub error: Option<String>,
}

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
            // Built once per probe; an error (a `ca_file` gone since the configuration was
            // checked) fails every run of this probe with that message.
            let tls = probe
                .http
                .as_ref()
                .filter(|h| h.url.starts_with("https://"))
                .map(|h| {
                    crate::tls::client_config(h.ca_file.as_deref(), h.insecure_skip_verify)
                        .map_err(|e| e.to_string())
                });
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(probe.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let (target, is_http, outcome) = match (&probe.http, &probe.tcp) {
                        (Some(h), _) => (h.url.clone(), true, run_http(h, tls.as_ref()).await),
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
        let t = Instant::now();
        let addrs: Vec<_> = tokio::net::lookup_host(&p.address).await?.collect();
        o.resolve = t.elapsed();
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
    o.duration = started.elapsed();
    o
}

type TlsSetup = Result<Arc<rustls::ClientConfig>, String>;

async fn run_http(p: &HttpProbe, tls: Option<&TlsSetup>) -> Outcome {
    let started = Instant::now();
    let mut o = Outcome::default();
    let result = tokio::time::timeout(p.timeout, http_phases(p, tls, &mut o)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => o.error = Some(e),
        Err(_) => o.error = Some(format!("timed out after {:?}", p.timeout)),
    }
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

/// One HTTP/1.1 GET over TCP or TLS, timing each phase.
async fn http_phases(p: &HttpProbe, tls: Option<&TlsSetup>, o: &mut Outcome) -> Result<(), String> {
    // Validated when the configuration was read.
    let uri: http::Uri = p.url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host")?.to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let t = Instant::now();
    let lookup_name = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((lookup_name, port))
        .await
        .map_err(|e| format!("resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolve {host}: no address"))?;
    o.resolve = t.elapsed();
    let t = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    o.connect = t.elapsed();
    let Some(tls) = tls else {
        return exchange(stream, &uri, &host, p, o).await;
    };
    let config = tls.as_ref().map_err(Clone::clone)?;
    let name =
        crate::tls::server_name(&host).ok_or_else(|| format!("{host}: not a server name"))?;
    let t = Instant::now();
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    o.tls_handshake = t.elapsed();
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

/// The request and response on an established connection (TCP or TLS).
async fn exchange<S>(
    stream: S,
    uri: &http::Uri,
    host: &str,
    p: &HttpProbe,
    o: &mut Outcome,
) -> Result<(), String>
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
    o.processing = t.elapsed();
    o.status = resp.status().as_u16();
    let t = Instant::now();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    o.transfer = t.elapsed();
    o.content_length = body.len() as u64;
    if let Some(pattern) = &p.body_pattern {
        o.failed_regex = !pattern.0.is_match(&String::from_utf8_lossy(&body));
    }
    conn.abort();
    Ok(())
}

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
                o.resolve.as_secs_f64(),
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
                    "probe_failed_due_to_regex",
                    "Indicates if probe failed due to regex",
                    &l,
                    f64::from(u8::from(o.failed_regex)),
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
