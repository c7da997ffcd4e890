//! `axi-alert`: the command line of axi-obs-alert.
//!
//! - `axi-alert promqltest FILES...` runs Prometheus promqltest files against the engine;
//! - `axi-alert query --data FILE --time T EXPR` evaluates one instant query over a data file
//!   and prints the answer as Prometheus's `/api/v1/query` would;
//! - `axi-alert query-range --data FILE --start A --end B --step S EXPR` does the same for a
//!   range query (`/api/v1/query_range`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use axi_obs_alert::promql::{Engine, MemStorage, Value, json, parse};
use axi_obs_alert::promqltest::{self, FileReport};
use clap::{Parser, Subcommand};

// Feature `mimalloc` (on by default): see axi-obs-alert's Cargo.toml.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "axi-alert",
    version,
    about = "Prometheus-compatible alerting on axi-obs-alert's PromQL engine: check and unit-test \
             rule files, evaluate queries and PromQL conformance files, run the rule evaluator \
             (`run`) and the Alertmanager-compatible router (`alertmanager`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check rule files as `promtool check rules` does.
    ///
    /// Reads each file as Prometheus does (first YAML document, anchors and merge keys,
    /// unknown fields refused), parses every expression, checks names, durations and alert
    /// templates. Prints `file: SUCCESS: N rules found` or every error as
    /// `file:line: group "g", rule i ("name"): message`, and promtool's duplicate-rules lint
    /// as a warning. Exits with status 1 when any file is invalid.
    Check {
        /// Rule files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the standalone evaluator: scrape the configured targets, evaluate the rule files,
    /// answer `/api/v1/alerts` (Prometheus's shape, `keepFiringSince` included), `/-/healthy`,
    /// `/-/ready` and `POST`/`PUT /-/reload` (which restarts the scrapers too).
    ///
    /// Prometheus's query API answers from the samples it holds: `/api/v1/query`,
    /// `/api/v1/query_range`, `/api/v1/series`, `/api/v1/labels` and
    /// `/api/v1/label/<name>/values` (GET, or POST with a form body; label values GET only,
    /// as in Prometheus), with Prometheus's
    /// parameters (`limit` and `lookback_delta` included), errors and status codes, so
    /// Grafana's Prometheus data source and `promtool query` work against it;
    /// `/api/v1/format_query` lays a query out as Prometheus does, `/api/v1/query_exemplars`
    /// answers an empty list (no exemplars are kept) and `/api/v1/status/buildinfo` names the
    /// Prometheus API release answered (3.5.0). `/federate?match[]=SELECTOR` serves the
    /// latest sample of each matching series with `external_labels` added, as Prometheus's
    /// federation does, for a central Prometheus to scrape with `honor_labels: true`.
    /// Samples are kept as long as the rules read, or `--retention` (1 h) when longer. `/api/v1/rules` lists every group and rule with its query, health, last
    /// error, evaluation time and (alerting rules) state and alerts, filtered by `type`,
    /// `rule_name[]`, `rule_group[]`, `file[]`, `match[]` and `exclude_alerts`.
    /// `/api/v1/targets` shows each scrape target's health, last error and last scrape, and
    /// `/api/v1/metadata` the `# TYPE` and `# HELP` of what the targets expose.
    ///
    /// The configuration is a subset of Prometheus's `prometheus.yml` (`global`,
    /// `rule_files`, `scrape_configs` with `static_configs`, `alerting.alertmanagers`), so
    /// the same file works for both. Scrapes ask for gzip; `body_size_limit` (64 MiB when
    /// unset or 0, where Prometheus has none) and `sample_limit` fail a scrape that exceeds
    /// them, as in Prometheus. SIGHUP, `POST /-/reload` or a change to the
    /// configuration or a rule file reloads; a bad reload keeps the running rules and logs
    /// why.
    ///
    /// Each group runs every interval at Prometheus's slot for it (an offset inside the
    /// interval from a hash of its file path and name), and `/metrics` carries Prometheus's
    /// rule-manager metrics (`prometheus_rule_*`, by `rule_group`).
    ///
    /// Alerts go to the Alertmanagers of `alerting.alertmanagers` as Prometheus sends them
    /// (`POST /api/v2/alerts`, firing alerts again every resend delay, resolved ones at once,
    /// `global.external_labels` added). Per entry: `static_configs[].targets` (host:port),
    /// `scheme` (http or https), `path_prefix`, `timeout` (10s), `api_version` (v2 only),
    /// `basic_auth` (`username`, `password` or `password_file`), `authorization` (type
    /// Bearer, `credentials` or `credentials_file`), `tls_config` (`ca_file`, `cert_file`,
    /// `key_file`, `server_name`, `insecure_skip_verify`). Secret files are read at (re)load;
    /// any other field is an error naming the file and line.
    Run {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// HTTP address: `host:port`, or `:port` for every interface.
        #[arg(long, default_value = "127.0.0.1:9095", value_parser = listen_address)]
        listen: std::net::SocketAddr,
        /// Save alert `for` state here after every evaluation and restore it at start, as
        /// Prometheus does from `ALERTS_FOR_STATE` (none: restarts start `for` again).
        #[arg(long)]
        state_file: Option<PathBuf>,
        /// Rules with a shorter `for` are not restored; at least this remains after a restore,
        /// and a saved state whose alert is not active yet (its expression needs more scrapes)
        /// waits this long for it.
        #[arg(long, default_value = "10m", value_parser = duration_ms)]
        for_grace_period: i64,
        /// Saved state older than this is ignored.
        #[arg(long, default_value = "1h", value_parser = duration_ms)]
        for_outage_tolerance: i64,
        /// Answer rule expressions with this Prometheus (`http://host:9090`) instead of the
        /// local store: the scale-out path. Recording-rule output stays local.
        #[arg(long)]
        query_url: Option<String>,
        /// Send a still-firing alert to the Alertmanagers again after this long.
        #[arg(long = "rules.alert.resend-delay", default_value = "1m", value_parser = duration_ms)]
        resend_delay: i64,
        /// Keep samples at least this long for the query API, so a dashboard's last hour is
        /// there (memory: 1 to 7 bytes per sample compressed, constant values least and noisy
        /// floats most, plus 16 per sample of each series' newest 10 minutes; measured, 10,000
        /// series scraped every 15 s take 10 to 28 MB for the hour).
        /// Samples are always kept as long as the rules read; 0 keeps only that.
        #[arg(long, default_value = "1h", value_parser = duration_ms)]
        retention: i64,
        /// The longest a query may run (a request's `timeout` can only shorten it).
        #[arg(long = "query.timeout", default_value = "2m", value_parser = duration_ms)]
        query_timeout: i64,
        /// Queries evaluated at once; more wait for a turn within their timeout.
        #[arg(long = "query.max-concurrency", default_value_t = 20)]
        query_max_concurrency: usize,
        /// The most samples one query may hold at once.
        #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
        query_max_samples: usize,
        /// How far back an instant selector looks for a series' latest sample, in queries,
        /// `/federate` and rules (a query's `lookback_delta` parameter overrides it; rules
        /// answered by `--query-url` use that Prometheus's own; 0: the default).
        #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = duration_ms)]
        query_lookback_delta: i64,
    },
    /// Run the built-in router as a stand-in for Alertmanager 0.33: the same configuration
    /// file and flags, its HTTP API v2 (alerts, alert groups, silences, receivers, status),
    /// so Prometheus, `amtool` and Grafana talk to it as to Alertmanager.
    ///
    /// Alerts are grouped, inhibited, silenced, deduplicated against the notification log
    /// and delivered to webhook, email, DingTalk and WeCom receivers with retries (`http://`
    /// and `https://`, the host's trust store; `SSL_CERT_FILE` names a bundle to trust
    /// instead, the system's CAs and a private one together). The
    /// notification log, the silences and the alerts are written atomically to
    /// `STORAGE/axi-router-state.json` after every change, so a restart (even after
    /// `kill -9`) forgets no alert and sends nothing twice that was logged as sent.
    /// SIGHUP or `POST /-/reload` read the configuration file again (silences, the log and
    /// the alerts kept; a bad file is refused and the running configuration stays).
    /// SIGINT and SIGTERM stop it after a last write.
    #[cfg(feature = "api")]
    Alertmanager {
        /// Alertmanager's configuration file.
        #[arg(long = "config.file", default_value = "alertmanager.yml")]
        config_file: PathBuf,
        /// Address of the HTTP API: `host:port`, or `:port` for every interface (as in
        /// Alertmanager's own units, `--web.listen-address=:9093`).
        #[arg(
            long = "web.listen-address",
            default_value = "127.0.0.1:9093",
            value_parser = listen_address
        )]
        listen: std::net::SocketAddr,
        /// Directory for the persisted state (created when missing).
        #[arg(long = "storage.path", default_value = "data/")]
        storage_path: PathBuf,
        /// This instance's URL, used in notifications (`externalURL`, links back); empty:
        /// `http://<hostname>:<listen port>`, as Alertmanager.
        #[arg(long = "web.external-url", default_value = "")]
        external_url: String,
        /// How long expired silences and notification log entries are kept.
        #[arg(long = "data.retention", default_value = "120h", value_parser = duration_ms)]
        retention: i64,
    },
    /// Run rule unit tests in promtool's format, as `promtool test rules` does.
    ///
    /// Each file names rule files (relative to itself), input series in the expanding
    /// notation, and expected firing alerts (labels, expanded annotations) and PromQL
    /// results at given times. Prints, as promtool does, `Unit Testing: FILE` and then
    /// `  SUCCESS`, `  FAILED:` with each mismatch, or `  UNSUPPORTED: reason` for files that
    /// need native histograms. Exits with status 1 when any file failed or was unsupported.
    Test {
        /// Unit-test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run Prometheus promqltest files (PromQL conformance scripts) against the engine.
    ///
    /// Files use Prometheus's format (`load`, `clear`, `eval instant|range`, `expect` lines).
    /// Prints `file: N passed, M failed, K unsupported` per file, each failure as
    /// `file:line: expr: message`, then `N passed, M failed[, K unsupported]`. Exits with
    /// status 1 when anything failed (a format error in a file counts as a failure).
    ///
    /// Unsupported evals are counted apart: those expecting native histogram values, using
    /// experimental syntax or native-histogram functions, or failing on series whose
    /// native histogram samples could not be loaded. `expect warn` / `expect info` are not
    /// checked (the engine has no annotations).
    Promqltest {
        /// Test files to run.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also list each unsupported eval and why it was skipped.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Evaluate an instant query over a data file and print the `/api/v1/query` JSON answer.
    ///
    /// The data file is either promqltest `load` blocks (first non-comment line starting with
    /// `load`, e.g. `load 15s` then `  up{job="a"} 1 1 0`; sample i is at i*step after the
    /// Unix epoch) or Prometheus text exposition lines `name{labels} value [timestamp_ms]`
    /// (`#` lines ignored; a sample without timestamp is placed at the query time).
    /// Errors print `{"status":"error",...}` and exit with status 2.
    Query {
        /// The data file.
        #[arg(long)]
        data: PathBuf,
        /// Evaluation time: Unix seconds (e.g. `1.5`) or RFC 3339 (`2024-01-01T00:00:00Z`).
        #[arg(long)]
        time: String,
        /// The PromQL expression.
        expr: String,
    },
    /// Evaluate a range query over a data file and print the `/api/v1/query_range` JSON
    /// answer (data file as for `query`).
    QueryRange {
        /// The data file.
        #[arg(long)]
        data: PathBuf,
        /// Start: Unix seconds or RFC 3339.
        #[arg(long)]
        start: String,
        /// End: Unix seconds or RFC 3339.
        #[arg(long)]
        end: String,
        /// Step: seconds (`15`, `0.5`) or a Prometheus duration (`15s`, `1m`).
        #[arg(long)]
        step: String,
        /// The PromQL expression.
        expr: String,
    },
}

fn duration_ms(s: &str) -> Result<i64, String> {
    promqltest::parse_duration(s)
}

/// A listen address as Go's `net.Listen` takes it: `host:port` (an IP address or a name,
/// the first address it resolves to) or `:port`, which is every IPv4 interface here.
fn listen_address(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: the port must be a number from 0 to 65535"))?;
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    if !s.contains(':') {
        return Err(format!("{s:?}: expected host:port or :port"));
    }
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?}: the name resolves to no address"))
}

fn run_daemon(
    config: PathBuf,
    listen: std::net::SocketAddr,
    options: axi_obs_alert::daemon::RunOptions,
) -> ExitCode {
    with_runtime(async move {
        axi_obs_alert::daemon::run(config, listen, options)
            .await
            .map_err(|e| e.to_string())
    })
}

/// Starts telemetry and a two-thread runtime, runs `work` on it, and exits with status 2
/// and the error when it fails.
fn with_runtime(work: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let telemetry = match axi_obs_core::Telemetry::builder()
        .default_service_name("axi-alert")
        .service_version(env!("CARGO_PKG_VERSION"))
        .try_install()
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("axi-alert: cannot start telemetry: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("axi-alert: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let r = work.await;
        let _ = telemetry.shutdown().await;
        r
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axi-alert: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_unit_tests(out: &mut impl Write, files: &[PathBuf]) -> ExitCode {
    use axi_obs_alert::unittest::{Outcome, run_file};
    let mut ok = true;
    for f in files {
        let _ = writeln!(out, "Unit Testing: {}", f.display());
        match run_file(f) {
            Outcome::Passed => {
                let _ = writeln!(out, "  SUCCESS\n");
            }
            Outcome::Failed(errors) => {
                ok = false;
                let _ = writeln!(out, "  FAILED:");
                for e in errors {
                    let _ = writeln!(out, "{e}\n");
                }
            }
            Outcome::Unsupported(why) => {
                ok = false;
                let _ = writeln!(out, "  UNSUPPORTED: {why}\n");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_check(out: &mut impl Write, files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match axi_obs_alert::rules::load(f) {
            Ok((file, warnings)) => {
                let n: usize = file.groups.iter().map(|g| g.rules.len()).sum();
                let _ = writeln!(out, "{}: SUCCESS: {n} rules found", f.display());
                for w in warnings {
                    let _ = writeln!(out, "{}: warning: {}", f.display(), w.message);
                }
            }
            Err(errors) => {
                ok = false;
                let _ = writeln!(out, "{}: FAILED:", f.display());
                for e in errors {
                    let _ = writeln!(out, "{e}");
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = match cli.command {
        Command::Check { files } => run_check(&mut out, &files),
        Command::Test { files } => run_unit_tests(&mut out, &files),
        Command::Run {
            config,
            listen,
            state_file,
            for_grace_period,
            for_outage_tolerance,
            query_url,
            resend_delay,
            retention,
            query_timeout,
            query_max_concurrency,
            query_max_samples,
            query_lookback_delta,
        } => run_daemon(
            config,
            listen,
            axi_obs_alert::daemon::RunOptions {
                state_file,
                for_grace_period_ms: for_grace_period,
                for_outage_tolerance_ms: for_outage_tolerance,
                query_url,
                resend_delay_ms: resend_delay,
                retention_ms: retention,
                query: axi_obs_alert::daemon::QueryLimits {
                    timeout: std::time::Duration::from_millis(
                        u64::try_from(query_timeout).unwrap_or(0),
                    ),
                    max_concurrency: query_max_concurrency,
                    max_samples: query_max_samples,
                    // 0: the default, which `run` puts in its place.
                    lookback_delta: std::time::Duration::from_millis(
                        u64::try_from(query_lookback_delta).unwrap_or(0),
                    ),
                },
            },
        ),
        #[cfg(feature = "api")]
        Command::Alertmanager {
            config_file,
            listen,
            storage_path,
            external_url,
            retention,
        } => with_runtime(async move {
            axi_obs_alert::delivery::serve(axi_obs_alert::delivery::ServeOptions {
                config_file,
                listen,
                storage_path,
                external_url,
                retention: std::time::Duration::from_millis(u64::try_from(retention).unwrap_or(0)),
            })
            .await
            .map_err(|e| e.to_string())
        }),
        Command::Promqltest { files, verbose } => run_promqltest(&mut out, &files, verbose),
        Command::Query { data, time, expr } => {
            let answer = (|| {
                let t = promqltest::parse_time(&time).map_err(bad_data)?;
                let storage = read_data(&data, t).map_err(bad_data)?;
                let e = parse(&expr).map_err(|e| bad_data(e.0))?;
                let v = Engine::default()
                    .instant(&storage, &e, t)
                    .map_err(|e| ("execution", e.0))?;
                Ok(json::value(&v, t))
            })();
            print_answer(&mut out, answer)
        }
        Command::QueryRange {
            data,
            start,
            end,
            step,
            expr,
        } => {
            let answer = (|| {
                let s = promqltest::parse_time(&start).map_err(bad_data)?;
                let e_t = promqltest::parse_time(&end).map_err(bad_data)?;
                let st = promqltest::parse_duration_param(&step).map_err(bad_data)?;
                if e_t < s {
                    return Err(bad_data(
                        "end timestamp must not be before start time".into(),
                    ));
                }
                let storage = read_data(&data, e_t).map_err(bad_data)?;
                let e = parse(&expr).map_err(|e| bad_data(e.0))?;
                let m = Engine::default()
                    .range(&storage, &e, s, e_t, st)
                    .map_err(|e| ("execution", e.0))?;
                Ok(json::value(&Value::Matrix(m), e_t))
            })();
            print_answer(&mut out, answer)
        }
    };
    let _ = out.flush();
    code
}

fn bad_data(msg: String) -> (&'static str, String) {
    ("bad_data", msg)
}

fn run_promqltest(out: &mut impl Write, files: &[PathBuf], verbose: bool) -> ExitCode {
    let mut passed = 0;
    let mut failed = 0;
    let mut unsupported = 0;
    for f in files {
        let report = promqltest::run_file(f);
        let _ = write_report(out, &report, verbose);
        passed += report.passed;
        failed += report.failed.len();
        unsupported += report.unsupported.len();
    }
    let _ = if unsupported > 0 {
        writeln!(
            out,
            "{passed} passed, {failed} failed, {unsupported} unsupported"
        )
    } else {
        writeln!(out, "{passed} passed, {failed} failed")
    };
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn write_report(out: &mut impl Write, r: &FileReport, verbose: bool) -> std::io::Result<()> {
    writeln!(out, "{r}")?;
    for f in &r.failed {
        let kind = match f.kind {
            promqltest::FailureKind::Format => "format error: ",
            promqltest::FailureKind::Eval => "",
        };
        writeln!(
            out,
            "{}:{}: {}: {kind}{}",
            r.name, f.line, f.expr, f.message
        )?;
    }
    if verbose {
        for u in &r.unsupported {
            writeln!(
                out,
                "{}:{}: {}: unsupported: {}",
                r.name,
                u.line,
                u.expr,
                u.reason.trim_start_matches("unsupported: ")
            )?;
        }
    }
    Ok(())
}

fn print_answer(out: &mut impl Write, answer: Result<String, (&str, String)>) -> ExitCode {
    match answer {
        Ok(data) => {
            let _ = writeln!(out, "{}", json::success(&data));
            ExitCode::SUCCESS
        }
        Err((kind, msg)) => {
            let _ = writeln!(out, "{}", json::error(kind, &msg));
            ExitCode::from(2)
        }
    }
}

/// Reads `load` blocks or text exposition; samples without timestamps go at `default_t`.
fn read_data(path: &Path, default_t: i64) -> Result<MemStorage, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    if first.is_some_and(|l| l.to_ascii_lowercase().starts_with("load")) {
        return promqltest::load_storage(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    parse_exposition(&text, default_t).map_err(|e| format!("{}: {e}", path.display()))
}

/// Prometheus text exposition: `name{labels} value [timestamp_ms]` per line.
fn parse_exposition(text: &str, default_t: i64) -> Result<MemStorage, String> {
    let mut storage = MemStorage::new();
    for s in axi_obs_alert::scrape::parse_text(text)? {
        storage.add(&s.labels, s.timestamp.unwrap_or(default_t), s.value);
    }
    Ok(storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times() {
        assert_eq!(promqltest::parse_time("1.5"), Ok(1500));
        assert_eq!(promqltest::parse_time("0"), Ok(0));
        assert_eq!(promqltest::parse_time("1970-01-01T00:01:00Z"), Ok(60_000));
        assert_eq!(
            promqltest::parse_time("2024-03-01T12:00:00.25+01:00"),
            Ok(1_709_290_800_250)
        );
        assert!(promqltest::parse_time("yesterday").is_err());
        assert_eq!(promqltest::parse_duration_param("15s"), Ok(15_000));
        assert_eq!(promqltest::parse_duration_param("0.5"), Ok(500));
    }

    #[test]
    fn listen_addresses_as_go_takes_them() {
        assert_eq!(
            listen_address(":9093").map(|a| a.to_string()),
            Ok("0.0.0.0:9093".into())
        );
        assert_eq!(
            listen_address("127.0.0.1:9093").map(|a| a.to_string()),
            Ok("127.0.0.1:9093".into())
        );
        assert_eq!(
            listen_address("[::1]:9093").map(|a| a.to_string()),
            Ok("[::1]:9093".into())
        );
        let local = listen_address("localhost:9093").expect("localhost");
        assert!(local.ip().is_loopback(), "{local}");
        assert_eq!(local.port(), 9093);
        assert!(
            listen_address(":http")
                .unwrap_err()
                .contains("the port must be a number")
        );
        assert!(
            listen_address("9093")
                .unwrap_err()
                .contains("expected host:port")
        );
        assert!(listen_address(":70000").is_err());
    }

    #[test]
    fn reads_exposition() {
        let s = parse_exposition(
            "# HELP up x\n# TYPE up gauge\nup{job=\"a b\"} 1 1000\nup{job=\"c\"} NaN\nother 2.5e3\n",
            7,
        )
        .unwrap();
        assert_eq!(s.series_count(), 3);
        assert!(parse_exposition("up{job=\"a\"}\n", 0).is_err());
        assert!(parse_exposition("up 1 x\n", 0).is_err());
    }
}
