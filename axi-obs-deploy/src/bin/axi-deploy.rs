//! `axi-deploy`: records deployments from CI pipelines and deploy scripts.
//!
//! Thin wiring over the library: [`Session`] builds the events, [`Spool`] keeps what could
//! not be delivered, [`History`] is the local store. See `axi-deploy --help`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axi_obs_core::__private::redact_url;
use axi_obs_deploy::event::{from_unix_ms, unix_ms};
use axi_obs_deploy::session::{OutputTail, Session, intake_url, parse_marker};
use axi_obs_deploy::spool::Spool;
use axi_obs_deploy::store::{Filter, History};
use axi_obs_deploy::{DeploySpec, Deployment, Event, EventKind};
use clap::{Args, Parser, Subcommand, ValueEnum};
use time::OffsetDateTime;

const AFTER_HELP: &str = "\
Where events go:
  With an endpoint (--endpoint or AXI_DEPLOY_ENDPOINT), each event is POSTed there as JSON
  (schema 1, header Idempotency-Key: <event id>). If it cannot be delivered, it is written to
  the spool directory and delivered, oldest first, by the next invocation or `axi-deploy
  flush`: at-least-once, and receivers deduplicate by event id.
  Without an endpoint, events go straight into the local SQLite history (--db).

Defaults: --db $XDG_DATA_HOME/axi-deploy/history.db, --spool $XDG_DATA_HOME/axi-deploy/spool
(XDG_DATA_HOME defaults to ~/.local/share). http:// and https:// endpoints (the host's trust
store, or the bundle SSL_CERT_FILE names instead: give it the system CAs and a private one);
user:password@ in the URL is sent as basic auth.

Exit codes: `run` exits with the command's code (128 + signal if it was killed, 127 if it
could not start); failing to record never changes it, it is reported on stderr. Other
commands: 0 on success, 1 on error, 2 on bad usage.";

const RUN_HELP: &str = "\
Runs COMMAND, passing its output through, and records the deployment: started, one step
per marker line, and succeeded (exit code 0) or failed.

The command's stderr is merged into its stdout (as `2>&1`) so that lines keep their order;
both are passed through to standard output. A line that starts with `##[step] NAME` (after optional
spaces) finishes the open step as succeeded and opens step NAME. Output before the first
marker goes to a step named by --first-step. When the command ends, the open step
succeeds or fails with it. Each step keeps the last --tail-lines lines of its output
(lines longer than 64 KiB are kept in pieces).

SIGTERM or SIGINT to axi-deploy is passed on to the command, and the deployment is recorded
as cancelled when the command has ended; axi-deploy exits with the command's code. Ctrl-C
in a terminal is not passed on: the terminal sends it to the command too, and a second
interrupt tells many programs to quit without cleaning up. (So a SIGINT sent to axi-deploy
alone while it runs in a terminal's foreground is not passed on either: send SIGTERM.) A
process the command leaves in the background (`nohup svc &`) is not waited for: its output
is still read for 2 s after the command exits, then read and discarded by a small process
left for it (`axi-deploy` re-run, ending when the output ends), so the process does not die of
a broken pipe at its next write. Redirect its output (`nohup svc >svc.log 2>&1 &`) to keep it.

Example:
  axi-deploy run --project shop-api --env prod --version 1.4.2 --commit $GIT_SHA -- ./deploy.sh
  where deploy.sh prints `##[step] build`, `##[step] migrate`, ...";

/// Records deployments: wraps a deploy command, or takes start/step/finish calls, and
/// reports history and DORA figures.
#[derive(Debug, Parser)]
#[command(name = "axi-deploy", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Args)]
struct Global {
    /// URL to POST events to: a service's base URL (http://127.0.0.1:8080 posts to its
    /// /api/deploy/events) or a full URL used as given; without it events go to the local
    /// history.
    #[arg(long, env = "AXI_DEPLOY_ENDPOINT", global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// Directory for events not yet delivered.
    #[arg(long, env = "AXI_DEPLOY_SPOOL", global = true, value_name = "DIR")]
    spool: Option<PathBuf>,
    /// Local SQLite history file.
    #[arg(long, env = "AXI_DEPLOY_DB", global = true, value_name = "PATH")]
    db: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a deploy command and record it (steps from `##[step] NAME` lines).
    #[command(long_about = RUN_HELP)]
    Run(RunArgs),
    /// Record the start of a deployment; prints its id for `step` and `finish`.
    Start(Target),
    /// Open a step of a started deployment (finishing the open one as succeeded).
    Step(StepArgs),
    /// Record the end of a started deployment.
    Finish(FinishArgs),
    /// Deliver the events spooled for this destination (the endpoint, or the local history
    /// without one); those spooled for another wait for it.
    Flush(FlushArgs),
    /// List deployments from the local history, newest first.
    History(HistoryArgs),
    /// Success rate, durations and DORA figures from the local history.
    Stats(StatsArgs),
    /// Delete from the local history the deployments that ended more than DAYS days ago
    /// (and those never ended that started then), with their events and steps.
    Prune(PruneArgs),
    /// Read standard input to its end and discard it: what `run` leaves holding the output
    /// of a process the command left in the background.
    #[command(name = "__drain", hide = true)]
    Drain,
}

#[derive(Debug, Args)]
struct FlushArgs {
    /// Deliver the events spooled for this other endpoint instead: those that waited for a
    /// wrong URL (a 404), once the right one is given with --endpoint.
    #[arg(long, value_name = "URL")]
    from: Option<String>,
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// Keep the last DAYS days.
    #[arg(long)]
    days: u32,
}

#[derive(Debug, Args)]
struct Target {
    /// Project (service, site) deployed.
    #[arg(long)]
    project: String,
    /// Target environment.
    #[arg(long = "env", value_name = "ENV")]
    environment: String,
    /// Version deployed.
    #[arg(long)]
    version: String,
    /// Commit deployed.
    #[arg(long, value_name = "SHA")]
    commit: Option<String>,
    /// When the commit was made, RFC 3339 (for the DORA lead time).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    commit_time: Option<OffsetDateTime>,
    /// Who deploys.
    #[arg(long)]
    actor: Option<String>,
    /// Why (push, manual, schedule, ...).
    #[arg(long)]
    trigger: Option<String>,
    /// Deployment id. Defaults to a new random id.
    #[arg(long)]
    id: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Lines of output kept per step.
    #[arg(long, default_value_t = 40)]
    tail_lines: usize,
    /// Name of the step that holds output printed before the first marker.
    #[arg(long, default_value = "run")]
    first_step: String,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

#[derive(Debug, Args)]
struct StepArgs {
    /// Deployment id printed by `start`.
    #[arg(long)]
    id: String,
    /// Step name.
    name: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Outcome {
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
}

#[derive(Debug, Args)]
struct FinishArgs {
    /// Deployment id printed by `start`.
    #[arg(long)]
    id: String,
    /// How it ended.
    #[arg(long, value_enum)]
    status: Outcome,
    /// Why (for failed, rolled-back, cancelled).
    #[arg(long)]
    reason: Option<String>,
    /// The version now running (required for rolled-back).
    #[arg(long, value_name = "VERSION", required_if_eq("status", "rolled-back"))]
    to_version: Option<String>,
    /// Do nothing, with a note, when the deployment is not open here (a `run` that ended
    /// closed it): for a cleanup step that runs after every job, `always()` or
    /// `after_script`, to close a deployment whose `run` was killed.
    #[arg(long)]
    if_open: bool,
}

#[derive(Debug, Args)]
struct HistoryArgs {
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Only this environment.
    #[arg(long = "env", value_name = "ENV")]
    environment: Option<String>,
    /// At most this many deployments.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// Project.
    #[arg(long)]
    project: String,
    /// Environment.
    #[arg(long = "env", value_name = "ENV")]
    environment: String,
    /// Window: the last DAYS days up to now.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time ({e}), e.g. 2026-05-01T10:00:00Z"))
}

fn now() -> OffsetDateTime {
    from_unix_ms(unix_ms(OffsetDateTime::now_utc()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "axi-deploy: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    // Needs no state directory.
    if let Cmd::Drain = cli.command {
        return drain();
    }
    let paths = Paths::resolve(&cli.global)?;
    match cli.command {
        Cmd::Drain => drain(),
        Cmd::Run(args) => run(&paths, args),
        Cmd::Start(target) => {
            let (session, started) = Session::start(spec(target), now());
            // Saved first: an id the session file cannot have (or no state directory) fails
            // here, before a deployment is recorded that `step` and `finish` could not reach.
            save_session(&paths, &session)?;
            let mut sink = Sink::new(&paths);
            sink.record(&[started]);
            let id = &session.deployment.id;
            if sink.refused_starts.contains(id) {
                // Not open: `step` and `finish` must not record into the run that holds the id.
                let _ = std::fs::remove_file(session_path(&paths, id)?);
                return Ok(ExitCode::FAILURE);
            }
            writeln!(std::io::stdout().lock(), "{id}")?;
            Ok(sink.exit_code())
        }
        Cmd::Step(args) => {
            let _lock = lock_session(&paths, &args.id)?;
            let mut session = load_session(&paths, &args.id)?;
            let events = session.begin_step(&args.name, None, now());
            let mut sink = Sink::new(&paths);
            sink.record(&events);
            save_session(&paths, &session)?;
            Ok(sink.exit_code())
        }
        Cmd::Finish(args) => {
            if args.if_open && !session_path(&paths, &args.id)?.exists() {
                writeln!(
                    std::io::stderr().lock(),
                    "axi-deploy: deployment {} is not open here: nothing to finish",
                    args.id
                )?;
                return Ok(ExitCode::SUCCESS);
            }
            let lock = lock_session(&paths, &args.id)?;
            let mut session = load_session(&paths, &args.id)?;
            let kind = match args.status {
                Outcome::Succeeded => EventKind::Succeeded,
                Outcome::Failed => EventKind::Failed {
                    reason: args.reason.unwrap_or_else(|| "failed".into()),
                },
                Outcome::RolledBack => EventKind::RolledBack {
                    to_version: args
                        .to_version
                        .context("--status rolled-back needs --to-version")?,
                    reason: args.reason,
                },
                Outcome::Cancelled => EventKind::Cancelled {
                    reason: args.reason,
                },
            };
            let events = session.finish(kind, None, now());
            let mut sink = Sink::new(&paths);
            sink.record(&events);
            let state = session_path(&paths, &args.id)?;
            std::fs::remove_file(&state)
                .with_context(|| format!("removing {}", state.display()))?;
            // Closed: its lock goes too (one waiting on it finds the session gone).
            let _ = std::fs::remove_file(state.with_extension("lock"));
            drop(lock);
            Ok(sink.exit_code())
        }
        Cmd::Flush(args) => {
            let mut sink = Sink::new(&paths);
            let spool = match &args.from {
                None => sink.spool()?,
                Some(url) => {
                    let from = Paths {
                        endpoint: Some(intake_url(url)),
                        spool: paths.spool.clone(),
                        db: paths.db.clone(),
                    };
                    Spool::open(from.events_spool()?.0)?
                }
            };
            let report = spool.flush_with(|e| sink.deliver(e), refused)?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "delivered {}, remaining {}{}",
                report.delivered,
                report.remaining,
                if report.quarantined > 0 {
                    format!(
                        ", {} unreadable or refused moved to bad/{}",
                        report.quarantined,
                        report
                            .refusal
                            .as_deref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    )
                } else {
                    String::new()
                }
            )?;
            match report.error {
                Some(e) => bail!(
                    "{} event(s) still spooled in {}: {e}",
                    report.remaining,
                    spool.dir().display()
                ),
                None => Ok(ExitCode::SUCCESS),
            }
        }
        Cmd::History(args) => history(&paths, args),
        Cmd::Stats(args) => stats(&paths, args),
        Cmd::Prune(args) => {
            let mut history = open_history(paths.db()?)?;
            let before = axi_obs_deploy::event::days_before(now(), args.days)
                .with_context(|| format!("--days {}: reaches before the year 0001", args.days))?;
            let n = history.prune(before)?;
            writeln!(std::io::stdout().lock(), "pruned {n} deployments")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn spec(t: Target) -> DeploySpec {
    let mut s = DeploySpec::new(t.project, t.environment, t.version);
    if let Some(v) = t.commit {
        s = s.commit(v);
    }
    if let Some(v) = t.commit_time {
        s = s.commit_time(v);
    }
    if let Some(v) = t.actor {
        s = s.actor(v);
    }
    if let Some(v) = t.trigger {
        s = s.trigger(v);
    }
    if let Some(v) = t.id {
        s = s.id(v);
    }
    s
}

/// Resolved locations.
struct Paths {
    endpoint: Option<String>,
    spool: Option<PathBuf>,
    db: Option<PathBuf>,
}

impl Paths {
    fn resolve(g: &Global) -> Result<Self> {
        let non_empty = |v: &Option<PathBuf>| v.clone().filter(|p| !p.as_os_str().is_empty());
        let data = data_dir();
        Ok(Self {
            endpoint: g
                .endpoint
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(intake_url),
            spool: non_empty(&g.spool).or_else(|| data.as_ref().map(|d| d.join("spool"))),
            db: non_empty(&g.db).or_else(|| data.as_ref().map(|d| d.join("history.db"))),
        })
    }

    fn spool(&self) -> Result<&Path> {
        self.spool
            .as_deref()
            .context("no spool directory: pass --spool or set AXI_DEPLOY_SPOOL (HOME is not set)")
    }

    fn db(&self) -> Result<&Path> {
        self.db
            .as_deref()
            .context("no history file: pass --db or set AXI_DEPLOY_DB (HOME is not set)")
    }

    /// The spool of this invocation's destination: a folder of the spool per endpoint, or per
    /// local history file, so that events spooled for one are never delivered to another
    /// (two pipelines of one user sharing the default spool, one with an endpoint and one
    /// without, say). Named by a stable hash of the destination; its `destination` file says
    /// which one it is.
    fn events_spool(&self) -> Result<(PathBuf, String)> {
        let (kind, destination) = match &self.endpoint {
            Some(url) => ("to", url.clone()),
            None => {
                let db = self.db()?;
                let db = std::path::absolute(db).unwrap_or_else(|_| db.to_owned());
                ("history", db.display().to_string())
            }
        };
        let dir = self
            .spool()?
            .join(format!("{kind}-{:016x}", fnv1a(destination.as_bytes())));
        Ok((dir, destination))
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across releases (a spool outlives them).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn data_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty());
    let base = match xdg {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".local/share")
        }
    };
    Some(base.join("axi-deploy"))
}

fn open_history(path: &Path) -> Result<History> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(History::open(path)?)
}

/// Where recorded events go: the endpoint (spooling on failure), or the local history.
/// Recording never fails the caller: problems are reported on stderr and remembered for the
/// exit code of commands that only record.
/// A delivery the server refused for good (400, 413, 422: the event is at fault).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Whether a delivery failed for good: the event goes to the spool's `bad/`, not back in line.
/// The most events spooled for one destination: beyond it new events are lost, said so, and
/// the invocation exits non-zero.
const MAX_SPOOLED: usize = 10_000;

/// A warning on standard error.
fn warn(msg: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "axi-deploy: warning: {msg}");
}

fn refused(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>().is_some()
}

struct Sink<'a> {
    paths: &'a Paths,
    http: Option<axi_obs_core::https::BlockingHttpClient>,
    history: Option<History>,
    /// After one failed delivery, later events of this invocation go straight to the spool.
    down: bool,
    flushed: bool,
    lost: bool,
    /// Events waiting in this destination's spool, once counted.
    spooled: Option<usize>,
    /// Deployments whose `started` event was refused for good (an id another run used):
    /// their later events are not recorded either, or they would land in that other run.
    refused_starts: Vec<String>,
}

impl<'a> Sink<'a> {
    fn new(paths: &'a Paths) -> Self {
        Self {
            paths,
            http: None,
            history: None,
            down: false,
            flushed: false,
            lost: false,
            refused_starts: Vec::new(),
            spooled: None,
        }
    }

    fn warn(&self, msg: std::fmt::Arguments<'_>) {
        warn(msg);
    }

    fn spool(&self) -> Result<Spool> {
        let (dir, destination) = self.paths.events_spool()?;
        let spool = Spool::open(dir)?;
        // For whoever looks into the spool: which destination its events wait for (an
        // endpoint's credentials left out).
        let note = spool.dir().join("destination");
        if !note.exists() {
            let _ = std::fs::write(&note, format!("{}\n", redact_url(&destination)));
        }
        Ok(spool)
    }

    /// Delivers one event now: POST to the endpoint, or insert into the local history.
    fn deliver(&mut self, event: &Event) -> Result<()> {
        match &self.paths.endpoint {
            Some(url) => {
                if self.http.is_none() {
                    // No redirect is followed: one would turn the POST into a body-less GET,
                    // whose 2xx (a proxy's landing page) would pass for a delivery. A 3xx is a
                    // failure naming where it points, and the event is spooled.
                    let tls = axi_obs_core::tls::ClientTls::new()
                        .client_config()
                        .context("the HTTPS client's TLS configuration")?;
                    self.http = Some(
                        axi_obs_core::https::BlockingHttpClient::new(
                            axi_obs_core::https::Connector::new(tls)
                                .connect_timeout(Duration::from_secs(3))
                                .build(),
                            Duration::from_secs(10),
                        )
                        .context("starting the HTTP client")?
                        .max_body(64 * 1024),
                    );
                }
                let Some(client) = &self.http else {
                    bail!("no HTTP client");
                };
                // The client's errors never hold the URL, which may carry a token (a
                // `user:password@` in it is sent as basic auth).
                let post = || format!("POST {}", redact_url(url));
                let uri: http::Uri = url.parse().context("not a URL").with_context(post)?;
                let mut headers = http::HeaderMap::new();
                headers.insert(
                    "idempotency-key",
                    http::HeaderValue::from_str(&event.id)
                        .context("the event id is no header value")
                        .with_context(post)?,
                );
                let resp = client
                    .post(
                        &uri,
                        &headers,
                        "application/json",
                        event.to_json().into_bytes(),
                    )
                    .with_context(post)?;
                let status = resp.status;
                let location = resp
                    .headers
                    .get(http::header::LOCATION)
                    .filter(|_| status.is_redirection())
                    .map(|l| redact_url(&String::from_utf8_lossy(l.as_bytes())));
                if !status.is_success() {
                    // The server names the field at fault: show it.
                    let body = String::from_utf8_lossy(&resp.body);
                    let body: String = body.trim().chars().take(512).collect();
                    let body = match location {
                        Some(to) => format!("redirected to {to}: give that URL instead"),
                        None => body,
                    };
                    let message = format!("POST {}: HTTP {status}: {body}", redact_url(url));
                    // Refused for good: the event itself is at fault (409: its deployment id
                    // is stored for another project, environment or version), and sending it
                    // again would be refused again. (A 404 or 401 is a wrong URL or token:
                    // spooled, for when that is fixed.)
                    if matches!(status.as_u16(), 400 | 409 | 413 | 422) {
                        return Err(Refused(message).into());
                    }
                    bail!(message);
                }
                Ok(())
            }
            None => {
                if self.history.is_none() {
                    self.history = Some(open_history(self.paths.db()?)?);
                }
                let Some(history) = &mut self.history else {
                    bail!("no history");
                };
                match history.insert(event) {
                    // A deployment id reused for another project, environment or version:
                    // refused again at every retry, so not spooled.
                    Err(e @ axi_obs_deploy::store::StoreError::DeploymentMismatch { .. }) => {
                        Err(Refused(e.to_string()).into())
                    }
                    r => r.map(drop).map_err(Into::into),
                }
            }
        }
    }

    /// Records events: earlier spooled ones are delivered first (once per invocation); an
    /// event that cannot be delivered is spooled, and so are the ones after it.
    fn record(&mut self, events: &[Event]) {
        if !self.flushed {
            self.flushed = true;
            match self.spool() {
                // Nothing spooled can be waiting; events still go straight out.
                Err(e) => self.warn(format_args!(
                    "{e:#}: events that cannot be delivered now will be lost"
                )),
                Ok(spool) => match spool.flush_with(|e| self.deliver(e), refused) {
                    Ok(report) => {
                        if report.quarantined > 0 {
                            self.warn(format_args!(
                                "{} spooled events unreadable or refused{}; moved to {}",
                                report.quarantined,
                                report
                                    .refusal
                                    .as_deref()
                                    .map(|e| format!(" ({e})"))
                                    .unwrap_or_default(),
                                spool.dir().join("bad").display()
                            ));
                        }
                        if report.remaining > 0 {
                            self.down = true;
                        }
                    }
                    Err(e) => {
                        self.warn(format_args!("cannot flush the spool: {e:#}"));
                        self.down = true;
                    }
                },
            }
        }
        for event in events {
            if self.refused_starts.contains(&event.deployment.id) {
                self.lost = true;
                continue;
            }
            // An event the server would refuse (an empty `--version`, say): said now, with the
            // field, instead of spooled and refused again later.
            if let Err(e) = event.validate() {
                self.warn(format_args!(
                    "event {} of deployment {} not recorded: {e}",
                    event.id, event.deployment.id
                ));
                self.lost = true;
                continue;
            }
            if !self.down {
                match self.deliver(event) {
                    Ok(()) => continue,
                    Err(e) if refused(&e) => {
                        self.warn(format_args!("{e:#}; event {} not recorded", event.id));
                        self.lost = true;
                        if matches!(event.kind, EventKind::Started { .. }) {
                            self.warn(format_args!(
                                "nothing more of deployment {} is recorded by this run",
                                event.deployment.id
                            ));
                            self.refused_starts.push(event.deployment.id.clone());
                        }
                        continue;
                    }
                    Err(e) => {
                        self.warn(format_args!("{e:#}; spooling events"));
                        self.down = true;
                    }
                }
            }
            if let Err(e) = self.spool_event(event) {
                self.warn(format_args!(
                    "event {} of deployment {} lost: {e:#}",
                    event.id, event.deployment.id
                ));
                self.lost = true;
            }
        }
    }

    /// Spools `event`, unless [`MAX_SPOOLED`] events already wait for this destination (a
    /// wrong URL that nobody fixes must not fill the disk).
    fn spool_event(&mut self, event: &Event) -> Result<()> {
        let spool = self.spool()?;
        let waiting = match self.spooled {
            Some(n) => n,
            None => spool.pending()?.len(),
        };
        if waiting >= MAX_SPOOLED {
            bail!(
                "{waiting} events already wait in {} (at most {MAX_SPOOLED}): is the endpoint \
                 right? `axi-deploy flush` says why they are not delivered",
                spool.dir().display()
            );
        }
        spool.put(event)?;
        self.spooled = Some(waiting + 1);
        Ok(())
    }

    fn exit_code(&self) -> ExitCode {
        if self.lost {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

fn session_path(paths: &Paths, id: &str) -> Result<PathBuf> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("deployment id `{id}`: only letters, digits, `-` and `_` are allowed");
    }
    Ok(paths.spool()?.join("active").join(format!("{id}.json")))
}

fn save_session(paths: &Paths, session: &Session) -> Result<()> {
    let path = session_path(paths, &session.deployment.id)?;
    let dir = path.parent().context("state path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // A temporary name of this process's own: two invocations on one deployment at once
    // (parallel CI jobs) cannot write into each other's file.
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(session)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        // The rename itself made durable, where the filesystem can (some network ones
        // cannot sync a directory; the file is written either way).
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        Ok(())
    };
    write().with_context(|| format!("writing {}", path.display()))
}

/// Locks deployment `id`'s session for this process (`flock`, released when the file is
/// dropped), waiting for another invocation holding it: `step` and `finish` read, change and
/// write the session, and two of them at once (parallel CI jobs) would otherwise both take
/// the same step index, one of the steps lost.
fn lock_session(paths: &Paths, id: &str) -> Result<std::fs::File> {
    let path = session_path(paths, id)?.with_extension("lock");
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
    };
    let file = match open() {
        Ok(f) => f,
        // A deployment not open here has no folder yet: `load_session` says so.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().context("state path has no directory")?;
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            open().with_context(|| format!("opening {}", path.display()))?
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

fn load_session(paths: &Paths, id: &str) -> Result<Session> {
    let path = session_path(paths, id)?;
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "deployment {id} is not open here ({}); start it with `axi-deploy start`",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
}

/// The longest line the recorder takes: a longer one (binary output, a progress bar redrawn
/// with `\r`) goes to it in pieces of this size.
const MAX_LINE: usize = 64 * 1024;

/// How long the output is still read after the command exited: a process it left in the
/// background may hold the output pipe open for good.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Copies `from` to `to` as it comes (not waiting for whole lines), and sends its lines
/// (without the newline, at most [`MAX_LINE`] bytes each) to the recorder.
fn pump<R: Read + Send + 'static>(
    mut from: R,
    mut to: impl Write + Send + 'static,
    lines: std::sync::mpsc::SyncSender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        let mut line: Vec<u8> = Vec::new();
        // Sends the first `n` bytes of `line` and keeps the rest.
        let send = |line: &mut Vec<u8>, n: usize| {
            let text = String::from_utf8_lossy(&line[..n]);
            let text = text.trim_end_matches('\r').to_owned();
            line.drain(..n);
            lines.send(text).is_ok()
        };
        // Whether the line just went out in a piece at the size limit: a newline right after
        // it ends that line, not another (empty) one.
        let mut cut = false;
        loop {
            let n = match from.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let _ = to.write_all(&chunk[..n]).and_then(|()| to.flush());
            for &b in &chunk[..n] {
                if b == b'\n' {
                    let all = line.len();
                    // The empty rest of a line just cut is not sent; a failed send ends.
                    let skip = cut && all == 0;
                    cut = false;
                    if !(skip || send(&mut line, all)) {
                        return;
                    }
                } else {
                    line.push(b);
                    if line.len() >= MAX_LINE {
                        // Cut before a character the limit would split: it goes with the
                        // next piece.
                        let at = match std::str::from_utf8(&line) {
                            Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => {
                                e.valid_up_to()
                            }
                            _ => line.len(),
                        };
                        if !send(&mut line, at) {
                            return;
                        }
                        cut = true;
                    }
                }
            }
        }
        if !line.is_empty() {
            let all = line.len();
            send(&mut line, all);
        }
    })
}

/// `__drain`: standard input read to its end and discarded.
fn drain() -> Result<ExitCode> {
    std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())?;
    Ok(ExitCode::SUCCESS)
}

/// Starts `axi-deploy __drain` reading `output` to its end, in a process group of its own (no
/// terminal signal reaches it), not waited for: it ends when the last process holding the
/// pipe's write end does.
fn leave_to_a_drainer(output: std::io::PipeReader) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding axi-deploy's own executable")?;
    Command::new(&exe)
        .arg("__drain")
        .stdin(output)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} __drain", exe.display()))?;
    Ok(())
}

/// SIGTERM and SIGINT, from a thread listening for them (the process then no longer dies of
/// them: `run` passes them on to the command and records the cancellation). The handlers are
/// in place when this returns.
fn signals() -> Result<std::sync::mpsc::Receiver<rustix::process::Signal>> {
    use rustix::process::Signal;
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the signal listener")?;
    let (mut term, mut int) = {
        let _in_runtime = rt.enter();
        (
            signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        )
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt.block_on(async move {
            loop {
                let sig = tokio::select! {
                    _ = term.recv() => Signal::TERM,
                    _ = int.recv() => Signal::INT,
                };
                if tx.send(sig).is_err() {
                    return;
                }
            }
        });
    });
    Ok(rx)
}

/// Whether a SIGINT that reached us was, as far as can be told, the terminal's (Ctrl-C): the
/// terminal sends it to its whole foreground process group, so when the command shares our
/// group (`command` is `None` once it has been reaped) and that group is in the foreground,
/// the command has it already. Passing it on would deliver it twice, and to many programs a
/// second interrupt means "stop cleaning up, quit now". A SIGINT sent to our pid alone
/// (`kill -INT`) while we are in the terminal's foreground is mistaken for the terminal's and
/// not passed on (the help says to send SIGTERM); uv decides the same way, with a coarser
/// test (whether stdin is a terminal).
fn from_the_terminal(command: Option<rustix::process::Pid>) -> bool {
    let ours = rustix::process::getpgrp();
    if let Some(command) = command
        && rustix::process::getpgid(Some(command)).ok() != Some(ours)
    {
        return false;
    }
    // Opening /dev/tty fails when we have no controlling terminal.
    std::fs::File::open("/dev/tty")
        .ok()
        .and_then(|tty| rustix::termios::tcgetpgrp(&tty).ok())
        == Some(ours)
}

/// A signal `run` received, and whether it passed it on to the command.
#[derive(Clone, Copy)]
struct Received {
    signal: rustix::process::Signal,
    passed_on: bool,
}

/// Handles a signal that reached `run`: passes it on to the command while it has not been
/// reaped (`pid`), unless it is the terminal's Ctrl-C, which the command got as well. A
/// signal after the command was reaped is kept only when it is that Ctrl-C (it is likely what
/// ended the command).
fn on_signal(
    sig: rustix::process::Signal,
    pid: Option<rustix::process::Pid>,
    reaped: bool,
) -> Option<Received> {
    // Once the command is reaped its pid names no process (or another one): only our group's
    // place in the terminal can tell.
    let command = pid.filter(|_| !reaped);
    let from_terminal = sig == rustix::process::Signal::INT && from_the_terminal(command);
    match pid {
        Some(pid) if !reaped => {
            if !from_terminal {
                let _ = rustix::process::kill_process(pid, sig);
            }
            Some(Received {
                signal: sig,
                passed_on: !from_terminal,
            })
        }
        _ => from_terminal.then_some(Received {
            signal: sig,
            passed_on: false,
        }),
    }
}

fn signal_name(sig: rustix::process::Signal) -> &'static str {
    if sig == rustix::process::Signal::INT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

/// Events waiting for `run`'s recorder thread, in hand-overs (one per step change): far more
/// than a deployment has steps; a full queue makes the loop wait.
const RECORDER_QUEUE: usize = 4096;

fn run(paths: &Paths, args: RunArgs) -> Result<ExitCode> {
    std::thread::scope(|scope| run_recording_on(scope, paths, args))
}

/// `run`, recording on a thread of `scope`: the loop that reads the command's output hands
/// the events over and goes on, so a slow or unreachable endpoint (up to 10 s a POST, and
/// the spool delivered first) never holds up the command's output or a signal passed on.
fn run_recording_on<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    paths: &'scope Paths,
    args: RunArgs,
) -> Result<ExitCode> {
    let (mut session, started) = Session::start(spec(args.target), now());
    let (events_tx, events_rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(RECORDER_QUEUE);
    let recorder = scope.spawn(move || {
        let mut sink = Sink::new(paths);
        for events in events_rx {
            sink.record(&events);
        }
    });
    // Saved as `start` saves it (and again at each step), removed at the end: if this process
    // is killed (SIGKILL at a CI timeout), `axi-deploy finish --id ID` can still close the
    // deployment instead of it staying in progress.
    let session_file = match save_session(paths, &session) {
        Ok(()) => session_path(paths, &session.deployment.id).ok(),
        Err(e) => {
            warn(format_args!(
                "{e:#}: if this run is killed, `axi-deploy finish` cannot close it"
            ));
            None
        }
    };
    let forget = || {
        if let Some(path) = &session_file {
            let _ = std::fs::remove_file(path);
        }
    };
    // The recorder ends only when this side hangs up: a send fails only if it panicked.
    let _ = events_tx.send(vec![started]);

    let program = &args.command[0];
    // One pipe for stdout and stderr (as `2>&1`), so lines keep their order and land in the
    // right step.
    let (reader, writer) = std::io::pipe().context("creating the output pipe")?;
    let mut command = Command::new(program);
    command
        .args(&args.command[1..])
        .stdin(Stdio::inherit())
        .stdout(writer.try_clone().context("creating the output pipe")?)
        .stderr(writer);
    // Listening before the command starts: a signal from then on is passed on to it.
    let signals = signals()?;
    let spawned = command.spawn();
    // The parent's copies of the write end must close, or the reader never sees the end.
    drop(command);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("cannot start `{}`: {e}", program.to_string_lossy());
            warn(format_args!("{reason}"));
            let last = session.finish(EventKind::Failed { reason }, None, now());
            hand_over_last(events_tx, recorder, last);
            forget();
            return Ok(ExitCode::from(127));
        }
    };
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    // Bounded: if recording falls behind, the pump waits (and the command's pipe fills).
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(1024);
    // Kept for a process the command leaves in the background, holding the output.
    let mut leftover = reader.try_clone().ok();
    let pump = pump(reader, std::io::stdout(), tx);

    let mut tail = OutputTail::new(args.tail_lines);
    let mut handle = |line: String| {
        let mut stepped = false;
        if let Some(name) = parse_marker(&line) {
            let events = session.begin_step(name, tail.take(), now());
            let _ = events_tx.send(events);
            stepped = true;
        } else {
            if session.open_step.is_none() {
                let events = session.begin_step(&args.first_step, None, now());
                let _ = events_tx.send(events);
                stepped = true;
            }
            tail.push(&line);
        }
        if stepped && session_file.is_some() {
            let _ = save_session(paths, &session);
        }
    };
    let mut received = None;
    let mut exited: Option<(std::process::ExitStatus, std::time::Instant)> = None;
    let mut pump_done = false;
    loop {
        if pump_done {
            // The output has ended: wait on the command (still waking up for signals).
            std::thread::sleep(Duration::from_millis(50));
        } else {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => handle(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => pump_done = true,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        // Signals first: until the command is reaped (below, on this thread only), its pid is
        // ours to signal, and a Ctrl-C that ends it at once is still seen as what ended it.
        while let Ok(sig) = signals.try_recv() {
            if let Some(r) = on_signal(sig, pid, exited.is_some()) {
                received.get_or_insert(r);
            }
        }
        if exited.is_none()
            && let Some(status) = child.try_wait().context("waiting for the command")?
        {
            exited = Some((status, std::time::Instant::now()));
        }
        match &exited {
            Some(_) if pump_done => break,
            // A process the command left behind holds the pipe: what is already queued is
            // recorded, then the pipe is left to a drainer, so that the process's next write
            // does not kill it with SIGPIPE once this one has exited.
            Some((_, at)) if at.elapsed() >= DRAIN_AFTER_EXIT => {
                for line in rx.try_iter().take(1024) {
                    handle(line);
                }
                if let Some(output) = leftover.take()
                    && let Err(e) = leave_to_a_drainer(output)
                {
                    warn(format_args!(
                        "{e:#}: a process the command left in the background may die of a \
                         broken pipe at its next write"
                    ));
                }
                break;
            }
            _ => {}
        }
    }
    if pump_done {
        let _ = pump.join();
    }
    let Some((status, _)) = exited else {
        bail!("the command's exit was not seen");
    };
    // A command killed by the terminal's Ctrl-C can be reaped before our own SIGINT has come
    // through the listener thread: it is waited for, up to a second (on a loaded machine the
    // listener thread took over 100 ms to run; only a command that died of a signal we did
    // not see waits).
    if received.is_none() && status.code().is_none() {
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Ok(sig) = signals.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if let Some(r) = on_signal(sig, pid, true) {
                received = Some(r);
                break;
            }
        }
    }
    let code = match status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }
    };
    let ended = if status.success() {
        "the command exited with code 0".to_owned()
    } else if status.code().is_some() {
        format!("command exited with code {code}")
    } else {
        format!("command killed by signal {}", code - 128)
    };
    let kind = match received {
        Some(r) => EventKind::Cancelled {
            reason: Some(if r.passed_on {
                format!(
                    "axi-deploy received {} and passed it on; {ended}",
                    signal_name(r.signal)
                )
            } else {
                format!(
                    "axi-deploy received {}, taken as the terminal's Ctrl-C (which the command \
                     receives too), and did not pass it on; {ended}",
                    signal_name(r.signal)
                )
            }),
        },
        None if status.success() => EventKind::Succeeded,
        None => EventKind::Failed { reason: ended },
    };
    let last = session.finish(kind, tail.take(), now());
    hand_over_last(events_tx, recorder, last);
    forget();
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Hands `run`'s last events to its recorder and waits for it to have recorded (or spooled)
/// everything.
fn hand_over_last(
    events_tx: std::sync::mpsc::SyncSender<Vec<Event>>,
    recorder: std::thread::ScopedJoinHandle<'_, ()>,
    last: Vec<Event>,
) {
    let _ = events_tx.send(last);
    drop(events_tx);
    let _ = recorder.join();
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| unix_ms(t).to_string())
}

fn fmt_duration(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "-".into();
    };
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m{:02}s", s / 3600, (s % 3600) / 60, s % 60),
    }
}

fn fmt_rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0))
}

fn history(paths: &Paths, args: HistoryArgs) -> Result<ExitCode> {
    let history = open_history(paths.db()?)?;
    let mut filter = Filter::default().limit(args.limit);
    if let Some(p) = args.project {
        filter = filter.project(p);
    }
    if let Some(e) = args.environment {
        filter = filter.environment(e);
    }
    let deployments = history.list(&filter)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for d in &deployments {
            writeln!(out, "{}", serde_json::to_string(d)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<25} {:<16} {:<10} {:<12} {:<11} {:>10}  ID",
        "STARTED", "PROJECT", "ENV", "VERSION", "STATUS", "DURATION"
    )?;
    for d in &deployments {
        writeln!(out, "{}", history_row(d))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn history_row(d: &Deployment) -> String {
    format!(
        "{:<25} {:<16} {:<10} {:<12} {:<11} {:>10}  {}",
        fmt_time(d.started_at),
        d.project,
        d.environment,
        d.version,
        d.status.as_str(),
        fmt_duration(d.duration()),
        d.id
    )
}

fn stats(paths: &Paths, args: StatsArgs) -> Result<ExitCode> {
    let history = open_history(paths.db()?)?;
    let until = now();
    let since = axi_obs_deploy::event::days_before(until, args.days)
        .with_context(|| format!("--days {}: reaches before the year 0001", args.days))?;
    let s = history.stats(&args.project, &args.environment, since, until)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&s)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{} / {}, last {} days ({} .. {})",
        s.project,
        s.environment,
        args.days,
        fmt_time(s.since),
        fmt_time(s.until)
    )?;
    writeln!(
        out,
        "deployments            {} succeeded, {} failed, {} rolled back, {} cancelled, {} in progress",
        s.succeeded, s.failed, s.rolled_back, s.cancelled, s.in_progress
    )?;
    writeln!(out, "success rate           {}", fmt_rate(s.success_rate))?;
    writeln!(
        out,
        "duration               p50 {}, p95 {}",
        fmt_duration(s.duration_p50),
        fmt_duration(s.duration_p95)
    )?;
    writeln!(
        out,
        "deployment frequency   {:.2} per day",
        s.dora.deployments_per_day
    )?;
    writeln!(
        out,
        "lead time (p50)        {}",
        fmt_duration(s.dora.lead_time_p50)
    )?;
    writeln!(
        out,
        "change failure rate    {}",
        fmt_rate(s.dora.change_failure_rate)
    )?;
    writeln!(
        out,
        "time to restore (p50)  {}{}",
        fmt_duration(s.dora.time_to_restore_p50),
        if s.dora.unrestored_incidents > 0 {
            format!(" ({} not restored yet)", s.dora.unrestored_incidents)
        } else {
            String::new()
        }
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axi_obs_deploy::session::STEP_MARKER;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_names_the_marker() {
        assert!(RUN_HELP.contains(STEP_MARKER));
    }
}
