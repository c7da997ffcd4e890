//! axum routes: event intake, the live SSE stream, history, stats, Grafana annotations and
//! GitHub webhooks (feature `http`).
//!
//! ```
//! use axi_obs_deploy::http::DeployRoutes;
//! use axi_obs_deploy::store::History;
//! use axi_obs_deploy::stream::LiveStream;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("deploys.db");
//! let stream = LiveStream::new(); // also a hook: add it to a Dispatcher to stream local deploys
//! // Events that arrive here go to the history, the stream, and a dispatcher running the
//! // metrics, log and trace hooks (on a thread of its own, named `axi-deploy-hooks`).
//! let routes: axum::Router = DeployRoutes::new(History::open(&path)?, stream.clone())?
//!     .github_secret(b"the webhook secret".to_vec()) // without it, /api/deploy/github is absent
//!     .into_router();
//! // axum::serve(listener, routes).await?;
//! # Ok(())
//! # }
//! ```
//!
//! | route | what |
//! |---|---|
//! | `POST /api/deploy/events` | intake: one event (schema 1) or a JSON array of them, validated as a whole (`400` naming the event and field at fault; `413` past [`max_batch`](DeployRoutes::max_batch) events or [`max_body_bytes`](DeployRoutes::max_body_bytes)). Idempotent by event id: the answer `200 {"received", "stored", "duplicates"}` comes after the events are committed to the history, and a replay stores and streams nothing again; a stored id sent with other content is a duplicate too, counted in `"conflicts"` and logged. `409` names the event whose deployment id is stored for another project, environment or version (a reused id); nothing of the request is stored then. This is what `axi-deploy --endpoint http://HOST` (or the full `http://HOST/api/deploy/events`) posts to. |
//! | `GET /api/deploy/stream` | Server-Sent Events: `id:` is the [sequence number](crate::stream), `data:` the event's JSON. With `Last-Event-ID` (header, or `?last_event_id=`) the events after it are replayed (an id that is not a sequence number replays everything kept: an error answer would stop an `EventSource` for good), else the last [`replay_on_connect`](DeployRoutes::replay_on_connect) (or `?replay=N`), then live. A subscriber that fell out of the replay window gets `event: missed` with `data: {"missed": N}`. Comments keep the connection alive. |
//! | `GET /api/deploy/ws` | the same stream over WebSocket: one JSON text frame per event, `{"seq": N, "event": {...}}`, or `{"missed": N}`; `?after=SEQ` (as `Last-Event-ID`) or `?replay=N`; browser pages of other origins than the service's own get 403 unless allowed ([`websocket_origins`](DeployRoutes::websocket_origins)); see [`ws`] |
//! | `GET /api/deploy/history` | deployments, newest first, as [`History::list`]: `project`, `environment`, `status`, `since`, `until` (RFC 3339 or Unix milliseconds), `limit` (default 50, at most 1000); the steps without their output tails unless `output=true` (then `limit` at most 20, and 20 by default) |
//! | `GET /api/deploy/stats` | [`History::stats`] as JSON (durations in seconds): `project` and `environment` required; the window is `since`/`until` or the last `days` (default 30) |
//! | `GET /api/deploy/annotations` | Grafana annotation objects, see below |
//! | `POST /api/deploy/github` | GitHub webhooks, see [`github`]; only with a [secret](DeployRoutes::github_secret) |
//!
//! # Where intake events go
//!
//! Events stored through the intake (or a webhook) are committed to the history first (that is
//! what makes the intake idempotent), then, only the new ones and in the history's order, published
//! to the live stream (directly: the stream never drops what the history accepted) and sent to a
//! [`Dispatcher`]. [`DeployRoutes::new`] starts one with [`DeployRoutes::default_hooks`]:
//! [`MetricsHook`], [`LogHook`] and
//! [`TraceHook`] (global recorder, subscriber and tracer provider), so a
//! deploy reported by CI shows up in the service's `/metrics`, its logs and its traces with no
//! further wiring. To add hooks (a `NotifyHook`, say) start from `default_hooks()` and pass the
//! result to [`DeployRoutes::dispatcher`]; that dispatcher should not also hold a `HistoryHook` or
//! the same `LiveStream`, which the routes feed themselves. [`DeployRoutes::hooks`] gives the
//! dispatcher (to flush it, or read its counts). The history is used from blocking tasks
//! (`spawn_blocking`), one operation at a time.
//!
//! # Grafana annotations
//!
//! `GET /api/deploy/annotations` answers an array in the shape of Grafana's annotation API,
//! one object per deployment started in `[from, to)` (Unix milliseconds, Grafana's own
//! parameters; default: the last 7 days), newest first, at most `limit` (default 100):
//!
//! ```json
//! [{"time": 1714557600000, "timeEnd": 1714557690000, "isRegion": true,
//!   "title": "shop-api 1.4.2 → prod", "tags": ["shop-api", "prod", "succeeded"],
//!   "text": "shop-api 1.4.2 → prod: succeeded in 90s, commit 3f2a9c1, by ci",
//!   "deploymentId": "d-42"}]
//! ```
//!
//! `tags` is `[project, environment, status]`; `tags=X` (repeatable) keeps deployments with all
//! of them (any of them with `matchAny=true`); `project` and `environment` filter too. A
//! deployment in progress ends at the current time. Parameters Grafana adds (`dashboardUID`,
//! `panelId`, `type`, ...) are ignored.

pub mod github;
mod intake;
mod params;
mod query;
mod sse;
pub mod ws;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::clock::{Clock, SystemClock};
use crate::dispatch::{DispatchError, Dispatcher, DispatcherBuilder};
use crate::hook::{LogHook, MetricsHook};
use crate::store::History;
use crate::stream::LiveStream;
use crate::trace::TraceHook;

/// The intake route.
pub const EVENTS_PATH: &str = crate::session::INTAKE_PATH;
/// The SSE route.
pub const STREAM_PATH: &str = "/api/deploy/stream";
/// The WebSocket route.
pub const WS_PATH: &str = "/api/deploy/ws";
/// The history route.
pub const HISTORY_PATH: &str = "/api/deploy/history";
/// The stats route.
pub const STATS_PATH: &str = "/api/deploy/stats";
/// The Grafana annotations route.
pub const ANNOTATIONS_PATH: &str = "/api/deploy/annotations";
/// The GitHub webhook route.
pub const GITHUB_PATH: &str = "/api/deploy/github";

/// Default most events in one intake request.
pub const DEFAULT_MAX_BATCH: usize = 1_000;
/// Default largest request body, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default interval of SSE keep-alive comments.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The history, shared by the routes (and whoever else holds it).
pub type SharedHistory = Arc<Mutex<History>>;

/// Builds the deploy routes. See the [module documentation](self).
#[must_use]
pub struct DeployRoutes {
    history: SharedHistory,
    stream: LiveStream,
    dispatcher: Arc<Dispatcher>,
    github: Option<github::GithubConfig>,
    clock: Arc<dyn Clock>,
    max_batch: NonZeroUsize,
    max_body_bytes: usize,
    replay_on_connect: usize,
    keep_alive: Duration,
    ws_origins: Vec<String>,
}

impl std::fmt::Debug for DeployRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployRoutes")
            .field("github", &self.github)
            .field("max_batch", &self.max_batch)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("replay_on_connect", &self.replay_on_connect)
            .field("keep_alive", &self.keep_alive)
            .field("ws_origins", &self.ws_origins)
            .finish_non_exhaustive()
    }
}

impl DeployRoutes {
    /// Routes over `history` and `stream`, with the defaults below, feeding the hooks of
    /// [`default_hooks`](Self::default_hooks) on a dispatcher started here.
    ///
    /// # Errors
    ///
    /// [`DispatchError::Spawn`] if the hook thread cannot be started.
    pub fn new(history: History, stream: LiveStream) -> Result<Self, DispatchError> {
        Self::with_shared_history(Arc::new(Mutex::new(history)), stream)
    }

    /// Routes over a history shared with other code, feeding the default hooks.
    ///
    /// # Errors
    ///
    /// [`DispatchError::Spawn`] if the hook thread cannot be started.
    pub fn with_shared_history(
        history: SharedHistory,
        stream: LiveStream,
    ) -> Result<Self, DispatchError> {
        let dispatcher = Arc::new(Self::default_hooks().build()?);
        Ok(Self::with_dispatcher(history, stream, dispatcher))
    }

    /// Routes over a shared history whose new events go to `dispatcher`'s hooks (which should
    /// not include a `HistoryHook` or the same `stream`: the routes feed those themselves).
    /// Starts nothing.
    pub fn with_dispatcher(
        history: SharedHistory,
        stream: LiveStream,
        dispatcher: Arc<Dispatcher>,
    ) -> Self {
        Self {
            history,
            stream,
            dispatcher,
            github: None,
            clock: Arc::new(SystemClock),
            max_batch: NonZeroUsize::new(DEFAULT_MAX_BATCH).unwrap_or(NonZeroUsize::MIN),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            replay_on_connect: crate::stream::DEFAULT_CAPACITY,
            keep_alive: DEFAULT_KEEP_ALIVE,
            ws_origins: Vec::new(),
        }
    }

    /// The hooks [`new`](Self::new) runs intake events through: [`MetricsHook`],
    /// [`LogHook`] and [`TraceHook`], with the global metrics recorder and tracer provider and
    /// the caller's tracing subscriber (see [`DispatcherBuilder`]). Add hooks to it and pass
    /// the built dispatcher to [`dispatcher`](Self::dispatcher).
    pub fn default_hooks() -> DispatcherBuilder {
        Dispatcher::builder()
            .hook(MetricsHook::new())
            .hook(LogHook::new())
            .hook(TraceHook::new())
    }

    /// Hands every newly stored event to `dispatcher`'s hooks instead of the default ones
    /// (see [Where intake events go](self#where-intake-events-go)); the default dispatcher is
    /// shut down. [`with_dispatcher`](Self::with_dispatcher) does the same without starting
    /// one first.
    pub fn dispatcher(mut self, dispatcher: Arc<Dispatcher>) -> Self {
        self.dispatcher = dispatcher;
        self
    }

    /// The dispatcher intake events go to: [`flush`](Dispatcher::flush) it to wait for the
    /// hooks, [`stats`](Dispatcher::stats) for its counts.
    pub fn hooks(&self) -> Arc<Dispatcher> {
        self.dispatcher.clone()
    }

    /// Serves `POST /api/deploy/github`, verifying `X-Hub-Signature-256` with `secret`.
    /// Defaults to no secret and no route: webhooks are never accepted unsigned.
    pub fn github_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        let config = self.github.take().unwrap_or_default();
        self.github = Some(config.secret(secret));
        self
    }

    /// Full control over the GitHub webhook: secret, workflow filter, delivery-id memory
    /// (see [`github::GithubConfig`]). Defaults to none.
    pub fn github(mut self, config: github::GithubConfig) -> Self {
        self.github = Some(config);
        self
    }

    /// The clock for "now" (stats windows, annotation defaults, in-progress ends). Defaults
    /// to the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Most events in one intake request. Defaults to [`DEFAULT_MAX_BATCH`].
    pub fn max_batch(mut self, max: NonZeroUsize) -> Self {
        self.max_batch = max;
        self
    }

    /// Largest request body, in bytes, for the intake and the webhook. Defaults to
    /// [`DEFAULT_MAX_BODY_BYTES`].
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Events replayed to an SSE or WebSocket client that connects without `Last-Event-ID`
    /// or `?after=` (at most what
    /// the stream keeps). Defaults to [`stream::DEFAULT_CAPACITY`](crate::stream::DEFAULT_CAPACITY).
    pub fn replay_on_connect(mut self, events: usize) -> Self {
        self.replay_on_connect = events;
        self
    }

    /// Interval of SSE keep-alive comments and WebSocket pings. Defaults to
    /// [`DEFAULT_KEEP_ALIVE`]; at least 1 ms (the timer panics on zero).
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = interval.max(Duration::from_millis(1));
        self
    }

    /// Web origins (`https://portal.example.com`, as browsers send `Origin`) whose pages may
    /// open the WebSocket stream, besides the service's own. Browsers let any page open a
    /// WebSocket to any server (no CORS), so by default an upgrade whose `Origin` names
    /// another host than its `Host` is refused (403): a page on another site cannot read the
    /// deploy stream through a visitor's browser. Clients that send no `Origin` (CLIs,
    /// services) are not affected. `"*"` allows every origin. Behind a reverse proxy, pass the
    /// public host on (nginx: `proxy_set_header Host $host;`, or `X-Forwarded-Host` /
    /// `Forwarded: host=`), or list the public origin here: nginx's default sends its
    /// upstream's address as `Host`, and the service's own pages would get 403.
    pub fn websocket_origins<I, O>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: Into<String>,
    {
        self.ws_origins = origins
            .into_iter()
            .map(|o| o.into().trim_end_matches('/').to_ascii_lowercase())
            .collect();
        self
    }

    /// The router, to `merge` into the application's. Building it starts nothing.
    pub fn into_router<S>(self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let github = self.github.map(|c| Arc::new(github::Webhook::new(c)));
        let has_github = github.is_some();
        let shared = Arc::new(Shared {
            history: self.history,
            stream: self.stream,
            dispatcher: self.dispatcher,
            github,
            clock: self.clock,
            max_batch: self.max_batch.get(),
            replay_on_connect: self.replay_on_connect,
            keep_alive: self.keep_alive,
            ws_origins: self.ws_origins,
        });
        let mut router = Router::new()
            .route(EVENTS_PATH, post(intake::post_events))
            .route(STREAM_PATH, get(sse::stream))
            .route(WS_PATH, get(ws::websocket))
            .route(HISTORY_PATH, get(query::history))
            .route(STATS_PATH, get(query::stats))
            .route(ANNOTATIONS_PATH, get(query::annotations));
        if has_github {
            router = router.route(GITHUB_PATH, post(github::post_webhook));
        }
        router
            .layer(DefaultBodyLimit::max(self.max_body_bytes))
            .with_state(shared)
    }
}

pub(crate) struct Shared {
    history: SharedHistory,
    stream: LiveStream,
    dispatcher: Arc<Dispatcher>,
    github: Option<Arc<github::Webhook>>,
    clock: Arc<dyn Clock>,
    max_batch: usize,
    replay_on_connect: usize,
    keep_alive: Duration,
    ws_origins: Vec<String>,
}
