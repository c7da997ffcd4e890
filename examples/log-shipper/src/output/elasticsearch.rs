//! Elasticsearch `_bulk` output (see [`ElasticsearchBulk`]).

use std::time::Duration;

use serde_json::Value as J;

use super::tls::TlsOptions;
use super::{Delivered, Output, SendError, SendFuture, record_json};
use crate::parse::time::format_index_date;
use crate::record::{Position, Record};
use axi_obs_core::https::HttpClient;

/// The fields every document gets from the shipper itself.
const OWN_FIELDS: [&str; 10] = [
    "@timestamp",
    "message",
    "log.level",
    "log.file.path",
    "log.flags",
    "service.name",
    "trace.id",
    "span.id",
    "host.name",
    "event.dataset",
];

/// The fields (none of [`OWN_FIELDS`]) that hold a value while other fields lie under them.
fn holding_fields(m: &serde_json::Map<String, J>) -> Vec<String> {
    let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
    keys.sort_unstable();
    // Sorted, the names starting with `k` follow `k` at once.
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if OWN_FIELDS.contains(k) {
            continue;
        }
        if keys[i + 1..]
            .iter()
            .take_while(|j| j.starts_with(k))
            .any(|j| under(k, j))
        {
            out.push((*k).to_owned());
        }
    }
    out
}

/// Moves each of `keys` to `to(key)`; where that name is taken, to `to(key)_2`, `_3` ...
fn rename(m: &mut serde_json::Map<String, J>, keys: Vec<String>, to: impl Fn(&str) -> String) {
    for k in keys {
        if let Some(v) = m.remove(&k) {
            let target = to(&k);
            let free = std::iter::once(target.clone())
                .chain((2..).map(|n| format!("{target}_{n}")))
                .find(|t| !m.contains_key(t))
                .unwrap_or(target);
            m.insert(free, v);
        }
    }
}

/// Whether the dotted name `inner` lies under `outer` (`log.file.path` under `log`).
fn under(outer: &str, inner: &str) -> bool {
    inner.len() > outer.len() && inner.starts_with(outer) && inner.as_bytes()[outer.len()] == b'.'
}

/// The Elasticsearch `_bulk` exporter.
///
/// One `POST {endpoint}/_bulk` per batch, NDJSON
/// (`Content-Type: application/x-ndjson`), each event a `create` action into a date-based index
/// (`<prefix>-YYYY.MM.DD`, the UTC day of the event's time) followed by the document with ECS
/// field names (see [`ElasticsearchBulk::document`]).
///
/// ```text
/// {"create":{"_index":"logs-2026.11.26","_id":"3f0c…"}}
/// {"@timestamp":"2026-11-26T10:00:00.000Z","message":"…","log.level":"INFO",…}
/// ```
///
/// Every event has a deterministic `_id`, a 128-bit FNV-1a hash of the file identity (device,
/// inode), the offset where the line ends, the line's text and the time parsed from it: a batch sent again after a
/// crash, a timeout or a partial failure gets `409 Conflict` for the events already stored,
/// which counts as stored. Nothing is indexed twice.
///
/// Responses, as Elasticsearch documents them:
///
/// | answer | what happens |
/// |---|---|
/// | HTTP 429, 502, 503, 504, other 5xx, connection failure | backpressure: the whole batch is retried with backoff (`Retry-After` honoured) |
/// | HTTP 200, `errors: false` | stored |
/// | HTTP 200, `errors: true` | per item: 2xx stored, 409 already stored, 429 and 5xx retried (only those items, with backoff), other 4xx (mapping errors ...) dropped, counted and logged, never retried |
/// | HTTP 401, 403, 404, 408 | a credential, permission, index template or proxy to fix: the batch is kept and retried with backoff (logged each time), never dropped |
/// | HTTP 413 | the request was too large: sent again in halves, down to single events; one event alone too large is dropped, counted and logged |
/// | other HTTP 4xx | the batch is refused for good: dropped and counted |
#[derive(Debug)]
pub struct ElasticsearchBulk {
    client: HttpClient,
    uri: http::Uri,
    url: String,
    index_prefix: String,
    headers: http::HeaderMap,
    host_name: String,
    /// Items of the batch being retried that are settled (stored, already stored or dropped),
    /// so a retry sends only the others.
    retry: Option<RetryState>,
}

/// How many 401, 403 or 404 answers an item gets before it is dropped as refused for good.
pub const ITEM_REFUSALS: u8 = 10;

#[derive(Debug)]
struct RetryState {
    /// Identifies the batch: its length and the positions of its first and last event.
    batch: (usize, Position, Position),
    settled: Vec<bool>,
    /// How many times each item was answered 401, 403 or 404.
    refusals: Vec<u8>,
    /// How many of the settled items were refused for good (reported once, when the batch
    /// is done).
    dropped: usize,
    /// The most events one request carries (halved on each `413`).
    chunk: usize,
}

/// How one request went.
enum Once {
    /// Its items are settled.
    Done,
    /// `413`: too large for the server.
    TooLarge,
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("Elasticsearch output: {0}")]
pub struct ElasticsearchConfigError(String);

/// The part of a `_bulk` response read here.
#[derive(Debug, serde::Deserialize)]
struct BulkResponse {
    errors: bool,
    #[serde(default)]
    items: Vec<serde_json::Map<String, J>>,
}

impl ElasticsearchBulk {
    /// An exporter to `endpoint` (`/_bulk` is appended) writing into `<index_prefix>-YYYY.MM.DD`,
    /// with a per-request `timeout` and extra `headers` (`authorization` ...); `https://`
    /// endpoints are verified against the system trust store.
    ///
    /// # Errors
    ///
    /// When the endpoint is not a URL or a header name or value is invalid.
    pub fn new(
        endpoint: &str,
        index_prefix: &str,
        timeout: Duration,
        headers: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ElasticsearchConfigError> {
        Self::with_tls(
            endpoint,
            index_prefix,
            timeout,
            headers,
            &TlsOptions::default(),
        )
    }

    /// As [`new`](Self::new), with the TLS settings of `https://` endpoints (`ca_file`,
    /// `insecure_skip_verify`, client certificate).
    ///
    /// # Errors
    ///
    /// When the endpoint is not a URL, a header name or value is invalid, or a TLS file cannot
    /// be used.
    pub fn with_tls(
        endpoint: &str,
        index_prefix: &str,
        timeout: Duration,
        headers: impl IntoIterator<Item = (String, String)>,
        tls: &TlsOptions,
    ) -> Result<Self, ElasticsearchConfigError> {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            let name = http::HeaderName::try_from(k.as_str())
                .map_err(|e| ElasticsearchConfigError(format!("header {k:?}: {e}")))?;
            // The value is a secret more often than not: never echo it.
            let value = http::HeaderValue::try_from(v.as_str())
                .map_err(|_| ElasticsearchConfigError(format!("header {k:?}: invalid value")))?;
            map.insert(name, value);
        }
        let client = super::tls::http_client(tls, timeout)
            .map_err(|e| ElasticsearchConfigError(format!("tls.{e}")))?;
        let url = format!("{}/_bulk", endpoint.trim_end_matches('/'));
        let uri = url
            .parse()
            .map_err(|e| ElasticsearchConfigError(format!("endpoint {endpoint:?}: {e}")))?;
        Ok(Self {
            client,
            uri,
            url,
            index_prefix: index_prefix.to_owned(),
            headers: map,
            host_name: super::otlp::host_name(),
            retry: None,
        })
    }

    /// Replaces the `host.name` of the documents (defaults to this machine's name).
    #[must_use]
    pub fn with_host_name(mut self, host_name: impl Into<String>) -> Self {
        self.host_name = host_name.into();
        self
    }

    /// The index of an event: `<prefix>-YYYY.MM.DD` of its time (the time read from the
    /// line, else when it was read), in UTC.
    pub fn index(&self, r: &Record) -> String {
        format!(
            "{}-{}",
            self.index_prefix,
            format_index_date(r.time_unix_nano.unwrap_or(r.observed_unix_nano))
        )
    }

    /// The deterministic `_id` of an event: 32 hex digits of FNV-1a 128 over the file's
    /// device, inode and birth time (where the file system keeps one), the offset where the
    /// line ends, the line's text and the time parsed from it (if any). Reading the same line
    /// again gives the same id; a file deleted and created again on the same inode (a job's
    /// log, each run) differs by its birth time; a file truncated and refilled (copytruncate)
    /// with the same message at the same offset, a JSON line whose text is its `message`
    /// alone, differs by its time.
    pub fn id(r: &Record) -> String {
        let mut h = Fnv128::new();
        h.write(&r.position.key.dev.to_le_bytes());
        h.write(&r.position.key.ino.to_le_bytes());
        if let Some(birth) = r.file_birth_unix_nano {
            h.write(&birth.to_le_bytes());
        }
        h.write(&r.position.end.to_le_bytes());
        h.write(r.body.as_bytes());
        if let Some(t) = r.time_unix_nano {
            h.write(&t.to_le_bytes());
        }
        format!("{:032x}", h.0)
    }

    /// The document of an event: the ECS fields of [`record_json`] (`@timestamp`, `message`,
    /// `log.level`, `log.file.path`, `service.name`, `trace.id`, `span.id`, the parsed fields
    /// such as `http.request.method`, `url.path`, `http.response.status_code`,
    /// `client.address`, `user_agent.original`) plus `host.name` and `event.dataset` (the
    /// input's name).
    ///
    /// Elasticsearch reads dotted names as objects, so a field cannot be both a value and an
    /// object, or the whole event is refused with a mapping error. A parsed field that clashes
    /// with one of the shipper's own (`log` beside `log.file.path`, `service` beside
    /// `service.name`) moves under `json.` (`json.log`), as Filebeat's JSON input names its
    /// fields; then a parsed value with parsed fields under it (`a` beside `a.b`) becomes
    /// `a.value`.
    pub fn document(&self, r: &Record) -> serde_json::Map<String, J> {
        let mut m = record_json(r);
        m.insert("host.name".into(), J::String(self.host_name.clone()));
        m.insert("event.dataset".into(), J::String(r.input.to_string()));
        let own = |k: &str| OWN_FIELDS.contains(&k);
        // Most documents clash nowhere; each check below is a few comparisons per field.
        let with_own: Vec<String> = m
            .keys()
            .filter(|k| {
                !own(k)
                    && (OWN_FIELDS.iter().any(|o| under(k, o))
                        || k.match_indices('.').any(|(i, _)| own(&k[..i])))
            })
            .cloned()
            .collect();
        rename(&mut m, with_own, |k| format!("json.{k}"));
        let holding = holding_fields(&m);
        rename(&mut m, holding, |k| format!("{k}.value"));
        m
    }

    /// The `_bulk` body of `records`: an action line and a document line per event, each
    /// ending with a newline (the last one too, as Elasticsearch requires).
    pub fn encode<'r>(&self, records: impl IntoIterator<Item = &'r Record>) -> Vec<u8> {
        let mut buf = Vec::new();
        for r in records {
            let action = serde_json::json!({
                "create": { "_index": self.index(r), "_id": Self::id(r) }
            });
            // Maps of strings and JSON values always serialize.
            if serde_json::to_writer(&mut buf, &action).is_ok() {
                buf.push(b'\n');
            }
            if serde_json::to_writer(&mut buf, &self.document(r)).is_ok() {
                buf.push(b'\n');
            }
        }
        buf
    }

    async fn send_batch(&mut self, batch: &[Record]) -> Result<Delivered, SendError> {
        let Some(first) = batch.first() else {
            return Ok(Delivered::default());
        };
        let ident = (batch.len(), first.position, batch[batch.len() - 1].position);
        let mut state = match self.retry.take() {
            Some(s) if s.batch == ident => s,
            _ => RetryState {
                batch: ident,
                settled: vec![false; batch.len()],
                refusals: vec![0; batch.len()],
                dropped: 0,
                chunk: batch.len(),
            },
        };
        let result = self.attempt(batch, &mut state).await;
        if result.is_err() {
            self.retry = Some(state);
        }
        result
    }

    /// Sends the unsettled events of `batch`, [`RetryState::chunk`] at a time.
    async fn attempt(
        &self,
        batch: &[Record],
        state: &mut RetryState,
    ) -> Result<Delivered, SendError> {
        loop {
            let pending: Vec<usize> = (0..batch.len())
                .filter(|i| !state.settled[*i])
                .take(state.chunk.max(1))
                .collect();
            if pending.is_empty() {
                return Ok(Delivered {
                    dropped: state.dropped,
                });
            }
            let once = match self.attempt_once(batch, state, &pending).await {
                // Part of the batch is stored already (a 413 split it): only what is left is
                // refused, and counted.
                Err(SendError::Rejected { message }) if state.settled.iter().any(|s| *s) => {
                    let left = state.settled.iter().filter(|s| !**s).count();
                    tracing::warn!(error = %message, events = left, "output refused the rest of the batch; dropped");
                    state.settled.iter_mut().for_each(|s| *s = true);
                    state.dropped += left;
                    continue;
                }
                other => other?,
            };
            match once {
                Once::Done => {}
                Once::TooLarge if pending.len() > 1 => state.chunk = pending.len() / 2,
                Once::TooLarge => {
                    let i = pending[0];
                    state.settled[i] = true;
                    state.dropped += 1;
                    tracing::warn!(
                        index = %self.index(&batch[i]),
                        id = %Self::id(&batch[i]),
                        "Elasticsearch refused an event as too large (413); dropped"
                    );
                }
            }
        }
    }

    /// One `_bulk` request with the events `pending` of `batch`.
    async fn attempt_once(
        &self,
        batch: &[Record],
        state: &mut RetryState,
        pending: &[usize],
    ) -> Result<Once, SendError> {
        let body = self.encode(pending.iter().map(|i| &batch[*i]));
        let response = self
            .client
            .post(&self.uri, &self.headers, "application/x-ndjson", body)
            .await
            .map_err(|e| SendError::Retryable {
                message: format!("request to {} failed: {e}", self.url),
                retry_after: None,
            })?;
        let status = response.status;
        if !status.is_success() {
            let message = format!("HTTP {} from {}", status.as_u16(), self.url);
            return match status.as_u16() {
                413 => Ok(Once::TooLarge),
                // Not the events' fault: kept until what is wrong is fixed.
                401 | 403 | 404 | 408 | 429 | 500..=599 => Err(SendError::Retryable {
                    message,
                    retry_after: super::otlp::retry_after(&response.headers),
                }),
                _ => Err(SendError::Rejected { message }),
            };
        }
        let reply: BulkResponse =
            serde_json::from_slice(&response.body).map_err(|e| SendError::Retryable {
                message: format!(
                    "{} answered something else than a bulk response: {e}",
                    self.url
                ),
                retry_after: None,
            })?;
        if !reply.errors {
            for i in pending {
                state.settled[*i] = true;
            }
            return Ok(Once::Done);
        }
        if reply.items.len() != pending.len() {
            return Err(SendError::Retryable {
                message: format!(
                    "{} answered {} items for {} actions",
                    self.url,
                    reply.items.len(),
                    pending.len()
                ),
                retry_after: None,
            });
        }
        let mut retry = 0usize;
        let mut first_retry = None;
        // Items this index refuses (401/403/404), said once per answer.
        let mut refused: Option<(u64, String, String)> = None;
        let mut refused_count = 0usize;
        for (i, item) in pending.iter().zip(&reply.items) {
            let result = item.values().next();
            let status = result
                .and_then(|r| r.get("status"))
                .and_then(J::as_u64)
                .unwrap_or(0);
            match status {
                200..=299 | 409 => state.settled[*i] = true,
                // 401/403/404 on an item are mostly the cluster's, not the event's: an API key
                // without rights on a new daily index, an index that may not be
                // auto-created. Retried (Filebeat drops them at once), but not forever: one
                // event sent to an index nobody may create (a bogus parsed year) would stop
                // every input. After ITEM_REFUSALS answers it is dropped like a bad event.
                401 | 403 | 404 if state.refusals[*i] + 1 < ITEM_REFUSALS => {
                    state.refusals[*i] += 1;
                    retry += 1;
                    first_retry.get_or_insert(status);
                    refused_count += 1;
                    refused.get_or_insert_with(|| {
                        let error = result.and_then(|r| r.get("error"));
                        let text = |k: &str| {
                            error
                                .and_then(|e| e.get(k))
                                .and_then(J::as_str)
                                .unwrap_or("")
                                .to_owned()
                        };
                        (status, text("type"), text("reason"))
                    });
                }
                429 | 500..=599 => {
                    retry += 1;
                    first_retry.get_or_insert(status);
                }
                _ => {
                    state.settled[*i] = true;
                    state.dropped += 1;
                    let error = result.and_then(|r| r.get("error"));
                    tracing::warn!(
                        status,
                        index = %self.index(&batch[*i]),
                        id = %Self::id(&batch[*i]),
                        error_type = error.and_then(|e| e.get("type")).and_then(J::as_str).unwrap_or(""),
                        reason = error.and_then(|e| e.get("reason")).and_then(J::as_str).unwrap_or(""),
                        "Elasticsearch refused an event; dropped"
                    );
                }
            }
        }
        if let Some((status, error_type, reason)) = refused {
            tracing::warn!(
                status,
                items = refused_count,
                error_type,
                reason,
                "Elasticsearch cannot store these events for now; kept and retried (dropped after {ITEM_REFUSALS} such answers)"
            );
        }
        if retry == 0 {
            return Ok(Once::Done);
        }
        Err(SendError::Retryable {
            message: format!(
                "{retry} of {} items to retry (status {})",
                pending.len(),
                first_retry.unwrap_or(0)
            ),
            retry_after: None,
        })
    }
}

/// FNV-1a with 128-bit state.
struct Fnv128(u128);

impl Fnv128 {
    fn new() -> Self {
        Self(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u128::from(*b);
            self.0 = self
                .0
                .wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
    }
}

impl Output for ElasticsearchBulk {
    fn kind(&self) -> &'static str {
        "elasticsearch"
    }

    fn send<'a>(&'a mut self, batch: &'a [Record]) -> SendFuture<'a> {
        Box::pin(self.send_batch(batch))
    }
}
