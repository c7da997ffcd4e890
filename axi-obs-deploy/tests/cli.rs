//! The `axi-deploy` binary: `run`, `start`/`step`/`finish`, `history`, `stats`, the spool
//! and `flush` against a real HTTP endpoint.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axi_obs_deploy::event::StepStatus;
use axi_obs_deploy::store::{Filter, History};
use axi_obs_deploy::{Event, Status};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("history.db")
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_axi-deploy"));
        c.args(args);
        self.envs(&mut c);
        c
    }

    /// `axi-deploy ARGS` run in a new pseudo-terminal (Python's `pty` module: a new session
    /// whose controlling terminal it is, in the foreground): once the command prints `ready`,
    /// Ctrl-C (0x03) is typed. Prints what the terminal showed and exits with the code.
    fn in_terminal_with_ctrl_c(&self, args: &[&str]) -> Output {
        const PTY: &str = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
seen, typed, deadline = b"", False, time.time() + 30
while True:
    left = deadline - time.time()
    if left <= 0:
        os.kill(pid, 9)
        sys.exit("the command did not end within 30 s: " + repr(seen))
    if not select.select([fd], [], [], left)[0]:
        continue
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
    if not typed and b"ready" in seen:
        os.write(fd, b"\x03")
        typed = True
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
"#;
        let mut c = Command::new("python3");
        c.args(["-c", PTY, env!("CARGO_BIN_EXE_axi-deploy")])
            .args(args);
        self.envs(&mut c);
        c.output()
            .expect("python3, whose pty module gives these tests a terminal")
    }

    fn envs(&self, c: &mut Command) {
        c.env_remove("AXI_DEPLOY_ENDPOINT")
            .env("AXI_DEPLOY_DB", self.db())
            .env("AXI_DEPLOY_SPOOL", self.spool())
            .env("HOME", self.dir.path());
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// The events waiting in the spools of every destination.
    fn spooled(&self) -> Vec<Event> {
        self.destination_spools()
            .iter()
            .flat_map(|d| spooled(d))
            .collect()
    }

    /// The spool folders of the destinations (not the sessions' `active`).
    fn destination_spools(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(self.spool())
            .map(|rd| rd.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        dirs.retain(|d| d.is_dir() && !d.ends_with("active"));
        dirs.sort();
        dirs
    }
}

fn spooled(dir: &Path) -> Vec<Event> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
        .iter()
        .map(|p| Event::from_json(std::fs::read_to_string(p).unwrap().trim()).unwrap())
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const SCRIPT: &str = "echo preparing
echo '##[step] build'
echo compiling a
echo compiling b
echo '##[step] migrate'
echo applying 1 >&2
exit 3";

#[test]
fn run_records_marker_steps_keeps_the_output_tail_and_exits_with_the_commands_code() {
    let env = Env::new();
    let out = env.run(&[
        "run",
        "--project",
        "shop-api",
        "--env",
        "prod",
        "--version",
        "1.4.2",
        "--commit",
        "3f2a9c1",
        "--",
        "sh",
        "-c",
        SCRIPT,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("compiling b\n"),
        "output passes through"
    );
    assert!(
        text(&out.stdout).contains("applying 1\n"),
        "stderr is merged into stdout"
    );

    let h = History::open(env.db()).unwrap();
    let all = h.list(&Filter::default()).unwrap();
    assert_eq!(all.len(), 1);
    let d = &all[0];
    assert_eq!(
        (d.project.as_str(), d.environment.as_str()),
        ("shop-api", "prod")
    );
    assert_eq!(d.commit.as_deref(), Some("3f2a9c1"));
    assert_eq!(d.status, Status::Failed);
    assert_eq!(d.error.as_deref(), Some("command exited with code 3"));
    let steps: Vec<_> = d
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status, s.output_tail.as_deref()))
        .collect();
    assert_eq!(
        steps,
        [
            ("run", StepStatus::Succeeded, Some("preparing\n")),
            (
                "build",
                StepStatus::Succeeded,
                Some("compiling a\ncompiling b\n")
            ),
            ("migrate", StepStatus::Failed, Some("applying 1\n")),
        ]
    );
    assert_eq!(
        d.steps[2].error.as_deref(),
        Some("command exited with code 3")
    );
    assert!(env.spooled().is_empty());
}

#[test]
fn run_keeps_only_the_last_tail_lines_and_succeeds_with_the_command() {
    let env = Env::new();
    let out = env.run(&pev(
        "run",
        &[
            "--tail-lines",
            "2",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo line $i; done",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let d = History::open(env.db())
        .unwrap()
        .last_deployment("p", None)
        .unwrap()
        .unwrap();
    assert_eq!(d.status, Status::Succeeded);
    assert_eq!(d.steps[0].output_tail.as_deref(), Some("line 4\nline 5\n"));
}

#[test]
fn run_of_a_missing_command_exits_127_and_records_the_failure() {
    let env = Env::new();
    let out = env.run(&pev("run", &["--", "/nonexistent/deploy.sh"]));
    assert_eq!(out.status.code(), Some(127));
    let d = History::open(env.db())
        .unwrap()
        .last_deployment("p", None)
        .unwrap()
        .unwrap();
    assert_eq!(d.status, Status::Failed);
    assert!(
        d.error
            .as_deref()
            .unwrap()
            .contains("/nonexistent/deploy.sh")
    );
}

#[test]
fn start_step_finish_then_history_and_stats_print_what_happened() {
    let env = Env::new();
    let out = env.run(&[
        "start",
        "--project",
        "docs",
        "--env",
        "prod",
        "--version",
        "7",
        "--commit-time",
        "2020-01-01T00:00:00Z",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert_eq!(id.len(), 32);
    assert!(env.run(&["step", "--id", &id, "upload"]).status.success());
    assert!(
        env.run(&["step", "--id", &id, "purge cache"])
            .status
            .success()
    );
    let out = env.run(&["finish", "--id", &id, "--status", "rolled-back"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "rolled-back without --to-version is a usage error: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("--to-version"));
    let out = env.run(&[
        "finish",
        "--id",
        &id,
        "--status",
        "rolled-back",
        "--to-version",
        "6",
        "--reason",
        "404s",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = env.run(&["step", "--id", &id, "late"]);
    assert!(!out.status.success(), "a finished deployment is closed");

    let d = History::open(env.db()).unwrap().get(&id).unwrap().unwrap();
    assert_eq!(d.status, Status::RolledBack);
    assert_eq!(d.rolled_back_to.as_deref(), Some("6"));
    let steps: Vec<_> = d
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        steps,
        [
            ("upload", StepStatus::Succeeded),
            ("purge cache", StepStatus::Failed)
        ]
    );

    let out = env.run(&["history", "--project", "docs"]);
    assert!(out.status.success());
    let table = text(&out.stdout);
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.contains("docs") && row.contains("rolled_back") && row.ends_with(&id),
        "{table}"
    );

    let out = env.run(&["stats", "--project", "docs", "--env", "prod", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["rolled_back"], 1);
    assert_eq!(stats["dora"]["change_failure_rate"], 1.0);
    let out = env.run(&["stats", "--project", "docs", "--env", "prod"]);
    assert!(text(&out.stdout).contains("change failure rate    100.0%"));
}

/// A tiny intake: records each POSTed body and answers with the current status code.
struct Server {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
    status: Arc<AtomicU16>,
    _rt: tokio::runtime::Runtime,
}

impl Server {
    fn start() -> Self {
        Self::start_on(0)
    }

    /// A server on loopback `port` (0: any free one).
    fn start_on(port: u16) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let (b, s) = (bodies.clone(), status.clone());
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |body: String| {
                let (b, s) = (b.clone(), s.clone());
                async move {
                    let code = s.load(Ordering::SeqCst);
                    if code == 200 {
                        b.lock().unwrap().push(body);
                    }
                    axum::http::StatusCode::from_u16(code).unwrap()
                }
            }),
        );
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            bodies,
            status,
            _rt: rt,
        }
    }

    fn received(&self) -> Vec<Event> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| Event::from_json(b).unwrap())
            .collect()
    }
}

fn down_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", l.local_addr().unwrap());
    drop(l);
    url
}

#[test]
fn endpoint_down_spools_then_flush_delivers_each_event_exactly_once() {
    let env = Env::new();
    let down = down_url();
    let out = env
        .cmd(&[
            "run",
            "--project",
            "shop-api",
            "--env",
            "prod",
            "--version",
            "2",
            "--",
            "sh",
            "-c",
            "echo '##[step] a'; echo x; echo '##[step] b'",
        ])
        .env("AXI_DEPLOY_ENDPOINT", &down)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "recording problems never fail the run"
    );
    assert!(
        text(&out.stderr).contains("spooling events"),
        "{}",
        text(&out.stderr)
    );
    let spooled = env.spooled();
    let kinds: Vec<_> = spooled.iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(
        kinds,
        [
            "started",
            "step_started",
            "step_finished",
            "step_started",
            "step_finished",
            "succeeded"
        ]
    );
    assert!(
        !env.db().exists(),
        "with an endpoint nothing goes to the local history"
    );

    // Still down: flush fails and keeps everything.
    let out = env.cmd(&["flush", "--endpoint", &down]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(env.spooled().len(), 6);

    // Up again, where it was: the spool of that endpoint is delivered.
    let port: u16 = down
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/events")
        .parse()
        .unwrap();
    let server = Server::start_on(port);
    assert_eq!(server.url, down);
    let out = env
        .cmd(&["flush", "--endpoint", &server.url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "delivered 6, remaining 0");
    assert_eq!(server.received(), spooled, "each event once, in order");
    assert!(env.spooled().is_empty());

    let out = env
        .cmd(&["flush", "--endpoint", &server.url])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(server.received().len(), 6, "nothing delivered twice");
}

#[test]
fn a_refusing_endpoint_keeps_the_spool_and_the_next_invocation_delivers_it_first() {
    let env = Env::new();
    let server = Server::start();
    server.status.store(500, Ordering::SeqCst);
    let out = env
        .cmd(&[
            "start",
            "--project",
            "p",
            "--env",
            "e",
            "--version",
            "1",
            "--id",
            "dep-1",
        ])
        .env("AXI_DEPLOY_ENDPOINT", &server.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("HTTP 500"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(env.spooled().len(), 1);

    server.status.store(200, Ordering::SeqCst);
    let out = env
        .cmd(&["finish", "--id", "dep-1", "--status", "succeeded"])
        .env("AXI_DEPLOY_ENDPOINT", &server.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = server.received();
    let kinds: Vec<_> = got.iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(kinds, ["started", "succeeded"]);
    let ids: HashSet<_> = got.iter().map(|e| &e.id).collect();
    assert_eq!(ids.len(), 2);
    assert!(env.spooled().is_empty());
}

#[test]
fn help_explains_markers_and_spooling() {
    let env = Env::new();
    let out = env.run(&["run", "--help"]);
    let help = text(&out.stdout);
    assert!(help.contains("##[step] NAME"), "{help}");
    let out = env.run(&["--help"]);
    let help = text(&out.stdout);
    assert!(
        help.contains("AXI_DEPLOY_ENDPOINT") && help.contains("spool"),
        "{help}"
    );
}

/// `cmd --project p --env e --version 1 rest...`.
fn pev<'a>(cmd: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![cmd, "--project", "p", "--env", "e", "--version", "1"];
    args.extend_from_slice(rest);
    args
}

/// The last deployment of project `p`.
fn last(env: &Env) -> axi_obs_deploy::Deployment {
    History::open(env.db())
        .unwrap()
        .last_deployment("p", None)
        .unwrap()
        .unwrap()
}

/// A command that leaves a process in the background holding the output open: `run` ends
/// shortly after the command does, instead of waiting for the background process.
#[test]
fn run_ends_with_its_command_even_when_a_background_process_holds_the_output() {
    let env = Env::new();
    let started = std::time::Instant::now();
    let out = env.run(&pev(
        "run",
        &[
            "--",
            "sh",
            "-c",
            "echo '##[step] start'; (sleep 30; echo late) & echo started",
        ],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "run waited for the background process"
    );
    assert_eq!(last(&env).status, Status::Succeeded);
}

/// The cleanup recipe: `finish --if-open` after a `run` that ended closes nothing and
/// succeeds (the job stays green, the deployment keeps its outcome); without `--if-open`, a
/// deployment not open here is an error.
#[test]
fn finish_if_open_after_a_run_that_ended_does_nothing() {
    let env = Env::new();
    let out = env.run(&pev("run", &["--id", "job-7", "--", "true"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cleanup = ["finish", "--id", "job-7", "--status", "failed", "--if-open"];
    let out = env.run(&cleanup);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not open here"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(last(&env).status, Status::Succeeded);
    let out = env.run(&cleanup[..5]);
    assert!(!out.status.success());
    // A run that was killed leaves it open: the same step closes it.
    let out = env.run(&pev("start", &["--id", "job-8"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = env.run(&["finish", "--id", "job-8", "--status", "failed", "--if-open"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(last(&env).status, Status::Failed);
}

/// A retried job that reuses the deployment id: its run is refused at the start and nothing
/// of it is recorded (the first run's outcome and steps stay as they were); `start` with
/// that id fails and leaves nothing open.
#[test]
fn a_second_run_under_one_id_is_refused_and_records_nothing() {
    let env = Env::new();
    let run = |script: &str| env.run(&pev("run", &["--id", "job-3", "--", "sh", "-c", script]));
    let out = run("echo '##[step] deploy'; exit 1");
    assert_eq!(out.status.code(), Some(1));
    let events = || {
        History::open(env.db())
            .unwrap()
            .events("job-3")
            .unwrap()
            .len()
    };
    let before = events();
    let out = run("echo '##[step] deploy again'");
    assert_eq!(out.status.code(), Some(0), "the command's code");
    let said = text(&out.stderr);
    assert!(said.contains("starts deployment job-3 again"), "{said}");
    assert_eq!(events(), before, "nothing of the second run");
    assert_eq!(last(&env).status, Status::Failed);
    let out = env.run(&pev("start", &["--id", "job-3"]));
    assert!(!out.status.success());
    assert!(text(&out.stdout).is_empty());
    let out = env.run(&["finish", "--id", "job-3", "--status", "succeeded"]);
    assert!(!out.status.success(), "not open");
    assert_eq!(last(&env).status, Status::Failed);
}

/// An endpoint that takes connections and never answers (each POST waits for its 10 s
/// timeout) does not hold up the command: its output goes through at once, the events are
/// spooled behind it. (Recording ran in the loop reading the output: the pipe filled, and the
/// command waited on its writes while a POST waited for its answer.)
#[test]
fn a_hanging_endpoint_does_not_hold_up_the_commands_output() {
    let env = Env::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let ended = env.dir.path().join("ended");
    // 1.2 MB of output, far more than a pipe holds, after a step marker.
    let script = format!(
        "echo '##[step] build'; seq 1 200000; date +%s%N > '{}'",
        ended.display()
    );
    let started = std::time::SystemTime::now();
    let out = env
        .cmd(&pev("run", &["--", "sh", "-c", &script]))
        .env("AXI_DEPLOY_ENDPOINT", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ended_ns: u128 = std::fs::read_to_string(&ended)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let took = std::time::Duration::from_nanos(
        (ended_ns
            - started
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()) as u64,
    );
    assert!(
        took < std::time::Duration::from_secs(6),
        "the command took {took:?}: it waited for the endpoint"
    );
    assert!(text(&out.stdout).contains("\n200000\n"));
    let kinds: Vec<_> = env.spooled().iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(
        kinds,
        ["started", "step_started", "step_finished", "succeeded"]
    );
}

/// The spool of one destination holds at most 10,000 events: beyond them an event is lost,
/// said so, and the invocation fails (a wrong URL nobody fixes must not fill the disk).
#[test]
fn a_destinations_spool_is_bounded() {
    let env = Env::new();
    let down = down_url();
    let start = || {
        env.cmd(&pev("start", &[]))
            .env("AXI_DEPLOY_ENDPOINT", &down)
            .output()
            .unwrap()
    };
    assert!(start().status.success());
    let [spool] = &env.destination_spools()[..] else {
        panic!("{:?}", env.destination_spools())
    };
    let first = spooled_files(spool).remove(0);
    for i in 0..9_999 {
        std::fs::copy(&first, spool.join(format!("9{i:015}-copy.json"))).unwrap();
    }
    let out = start();
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(
        said.contains("10000 events already wait") && said.contains("lost"),
        "{said}"
    );
    assert_eq!(spooled_files(spool).len(), 10_000);
}

fn spooled_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Steps opened at once by parallel jobs each get a step of their own: `step` holds the
/// session's lock across its read, change and write (two of them took the same index, and
/// one step was lost).
#[test]
fn parallel_steps_are_all_recorded() {
    let env = Env::new();
    let out = env.run(&pev("start", &["--id", "par-1"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let n = 12;
    let children: Vec<_> = (0..n)
        .map(|i| {
            env.cmd(&["step", "--id", "par-1", &format!("job {i}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = env.run(&["finish", "--id", "par-1", "--status", "succeeded"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let d = last(&env);
    let mut names: Vec<String> = d.steps.iter().map(|s| s.name.clone()).collect();
    names.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("job {i}")).collect();
    want.sort();
    assert_eq!(names, want);
    let left: Vec<_> = std::fs::read_dir(env.spool().join("active"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A process the command leaves in the background still writes after `run` has ended: the
/// output pipe is left to a drainer instead of closed under it (SIGPIPE at its next write).
#[test]
fn a_background_process_outlives_run_and_can_still_write() {
    let env = Env::new();
    let marker = env.dir.path().join("alive");
    let script = format!(
        "(sleep 3; echo late; echo still; touch '{}') & echo started",
        marker.display()
    );
    let out = env.run(&pev("run", &["--", "sh", "-c", &script]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the background process died writing after run ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// SIGTERM to `axi-deploy run` reaches the command, and the deployment is recorded as
/// cancelled instead of being left in progress.
#[test]
fn a_terminated_run_passes_the_signal_on_and_records_the_cancellation() {
    let env = Env::new();
    let (status, rest) = signalled(
        &env,
        "trap 'echo got-term; exit 143' TERM; echo ready; while :; do sleep 0.1; done",
        "TERM",
    );
    assert!(
        rest.contains("got-term"),
        "the command got the signal: {rest:?}"
    );
    assert_eq!(status.code(), Some(143));
    let d = last(&env);
    assert_eq!(d.status, Status::Cancelled);
    assert!(
        d.error.as_deref().unwrap_or_default().contains("SIGTERM"),
        "{:?}",
        d.error
    );
}

/// Runs `axi-deploy run -- sh -c SCRIPT` in a process group of its own (so never in a
/// terminal's foreground), sends it `signal` once SCRIPT has printed `ready`, and returns
/// its exit status and the output after `ready`.
fn signalled(env: &Env, script: &str, signal: &str) -> (std::process::ExitStatus, String) {
    use std::os::unix::process::CommandExt as _;
    let mut child = env
        .cmd(&pev("run", &["--", "sh", "-c", script]))
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the command to be up (its first line passes through).
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let kill = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    (child.wait().unwrap(), rest)
}

/// The command counts the SIGINTs it gets over two seconds, then exits 3.
const COUNT_INTS: &str = "n=0; trap 'n=$((n+1))' INT; echo ready; i=0; \
    while [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; echo ints=$n; exit 3";

/// Ctrl-C in a terminal: the terminal sends SIGINT to its whole foreground process group,
/// `axi-deploy run` and its command alike, so `run` does not pass it on: the command gets
/// it once, not twice (a second interrupt tells many programs to quit without cleaning up).
/// The deployment is still recorded as cancelled.
#[test]
fn ctrl_c_in_a_terminal_reaches_the_command_once() {
    let env = Env::new();
    let out = env.in_terminal_with_ctrl_c(&pev("run", &["--", "sh", "-c", COUNT_INTS]));
    let shown = text(&out.stdout);
    assert!(shown.contains("ints=1"), "{shown:?} {}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{shown:?}");
    let d = last(&env);
    assert_eq!(d.status, Status::Cancelled);
    assert!(
        d.error
            .as_deref()
            .unwrap_or_default()
            .contains("received SIGINT, taken as the terminal's Ctrl-C"),
        "{:?}",
        d.error
    );

    // A command that Ctrl-C ends at once (no handler) may be reaped before `run` has read
    // its own SIGINT: the deployment is still recorded as cancelled, not failed.
    let out = env.in_terminal_with_ctrl_c(&pev(
        "run",
        &["--", "sh", "-c", "echo ready; exec sleep 30"],
    ));
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stdout));
    let d = last(&env);
    assert_eq!(d.status, Status::Cancelled, "{:?}", d.error);
    assert!(
        d.error
            .as_deref()
            .unwrap_or_default()
            .contains("command killed by signal 2"),
        "{:?}",
        d.error
    );
}

/// SIGINT sent to `axi-deploy run` alone (no terminal in the foreground: `run` in a process
/// group of its own) is passed on to the command, once.
#[test]
fn a_sigint_sent_to_run_alone_is_passed_on_once() {
    let env = Env::new();
    let (status, rest) = signalled(&env, COUNT_INTS, "INT");
    assert_eq!(status.code(), Some(3));
    assert!(rest.contains("ints=1"), "{rest:?}");
    let d = last(&env);
    assert_eq!(d.status, Status::Cancelled);
    assert!(
        d.error
            .as_deref()
            .unwrap_or_default()
            .contains("received SIGINT and passed it on"),
        "{:?}",
        d.error
    );
}

/// Output without newlines (a progress bar redrawn with `\r`, binary data) goes to the
/// recorder in bounded pieces, and through to the terminal as it comes.
#[test]
fn output_without_newlines_is_recorded_in_bounded_pieces() {
    let env = Env::new();
    let out = env.run(&pev(
        "run",
        &[
            "--",
            "sh",
            "-c",
            "head -c 300000 /dev/zero | tr '\\0' x; exit 2",
        ],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 300_000);
    let d = last(&env);
    assert_eq!(d.status, Status::Failed);

    // A piece never splits a character, and a newline right after a cut adds no empty line.
    let env = Env::new();
    let script = "printf a; i=0; while [ $i -lt 400 ]; do printf '%s' \
        'éééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé'; \
        i=$((i+1)); done; printf '\\nafter\\n'";
    let out = env.run(&pev(
        "run",
        &["--tail-lines", "10", "--", "sh", "-c", script],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tail = last(&env).steps[0].output_tail.clone().unwrap();
    assert!(!tail.contains('\u{fffd}'), "a character was split");
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "two pieces and `after`: {:?}",
        lines.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert_eq!(lines[2], "after");
}

/// An id `start` cannot keep a session file for is refused before anything is recorded.
#[test]
fn start_with_a_bad_id_records_nothing() {
    let env = Env::new();
    let out = env.run(&pev("start", &["--id", "bad/id"]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("bad/id"),
        "{}",
        text(&out.stderr)
    );
    let none = History::open(env.db())
        .ok()
        .and_then(|h| h.last_deployment("p", None).ok().flatten());
    assert!(none.is_none(), "{none:?}");
}

/// With the local history, a deployment id reused for another environment is said with the
/// field, and not spooled to be refused again at every later invocation.
#[test]
fn a_deployment_id_reused_for_another_environment_is_refused_and_not_spooled() {
    let env = Env::new();
    let run = |e: &str| {
        env.run(&[
            "run",
            "--project",
            "p",
            "--env",
            e,
            "--version",
            "1",
            "--id",
            "pipe-9",
            "--",
            "true",
        ])
    };
    let out = run("staging");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run("prod");
    let err = text(&out.stderr);
    assert!(
        err.contains("pipe-9") && err.contains("environment \"prod\"") && err.contains("reused"),
        "{err}"
    );
    assert!(env.spooled().is_empty(), "{:?}", env.spooled());
    let history = History::open(env.db()).unwrap();
    let d = history.get("pipe-9").unwrap().unwrap();
    assert_eq!(
        (d.environment.as_str(), d.status),
        ("staging", Status::Succeeded)
    );
}

#[test]
fn an_unusable_spool_does_not_stop_delivery_to_a_working_endpoint() {
    let env = Env::new();
    let server = Server::start();
    let out = env
        .cmd(RUN_TRUE)
        .env("AXI_DEPLOY_ENDPOINT", &server.url)
        // A spool that cannot be created (a read-only HOME on a CI runner, say).
        .env("AXI_DEPLOY_SPOOL", "/proc/axi-deploy-spool")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kinds: Vec<_> = server
        .received()
        .iter()
        .map(|e| e.kind.type_name())
        .collect();
    assert_eq!(kinds.first(), Some(&"started"), "{}", text(&out.stderr));
    assert_eq!(kinds.last(), Some(&"succeeded"), "{}", text(&out.stderr));
}

/// `axi-deploy run` of `true`, deploying p 1 to e.
const RUN_TRUE: &[&str] = &[
    "run",
    "--project",
    "p",
    "--env",
    "e",
    "--version",
    "1",
    "--",
    "true",
];

/// `axi-deploy start` of version `version` against `server`.
fn start_against(env: &Env, server: &Server, version: &str) -> Output {
    env.cmd(&[
        "start",
        "--project",
        "p",
        "--env",
        "e",
        "--version",
        version,
    ])
    .env("AXI_DEPLOY_ENDPOINT", &server.url)
    .output()
    .unwrap()
}

#[test]
fn an_invalid_event_is_said_at_once_with_its_field_and_not_spooled() {
    let env = Env::new();
    let server = Server::start();
    // `--version "$CI_COMMIT_TAG"` on a pipeline without a tag.
    let out = start_against(&env, &server, "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("deployment.version"),
        "{}",
        text(&out.stderr)
    );
    assert!(server.received().is_empty());
    assert!(env.spooled().is_empty());
}

#[test]
fn a_refusal_for_good_shows_the_servers_reason_and_is_not_spooled() {
    let env = Env::new();
    let server = Server::start();
    server.status.store(422, Ordering::SeqCst);
    let out = start_against(&env, &server, "1");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("HTTP 422") && text(&out.stderr).contains("not recorded"),
        "{}",
        text(&out.stderr)
    );
    assert!(env.spooled().is_empty());
}

#[test]
fn prune_keeps_the_last_days() {
    let env = Env::new();
    let out = env.run(RUN_TRUE);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&env.run(&["history"]).stdout).lines().count(), 2);
    // Kept: it ended today.
    let out = env.run(&["prune", "--days", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "pruned 0 deployments");
    // Everything before now.
    let out = env.run(&["prune", "--days", "0"]);
    assert_eq!(text(&out.stdout).trim(), "pruned 1 deployments");
    let out = env.run(&["history"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "only the heading: {}",
        text(&out.stdout)
    );
}

/// `axi-deploy run` killed with SIGKILL (a CI timeout's last resort) leaves its deployment in
/// progress; `finish --id` closes it, from the session `run` keeps while it runs.
#[test]
fn a_killed_run_can_be_finished_by_id() {
    let env = Env::new();
    let mut child = env
        .cmd(&[
            "run",
            "--project",
            "p",
            "--env",
            "e",
            "--version",
            "1",
            "--id",
            "dep-k",
            "--",
            "sh",
            "-c",
            "echo '##[step] upload'; sleep 30",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let session = env.spool().join("active").join("dep-k.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // Saved again once the step began.
    while !std::fs::read_to_string(&session).is_ok_and(|s| s.contains("upload")) {
        assert!(std::time::Instant::now() < deadline, "no session saved");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = env.run(&[
        "finish",
        "--id",
        "dep-k",
        "--status",
        "failed",
        "--reason",
        "runner killed",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!session.exists());
    let out = env.run(&["history"]);
    let listing = text(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.contains("dep-k") && l.contains("failed")),
        "{listing}"
    );
}

#[test]
fn a_finished_run_leaves_no_session_behind() {
    let env = Env::new();
    let out = env.run(RUN_TRUE);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let active = env.spool().join("active");
    let left: Vec<_> = std::fs::read_dir(&active)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// Spooled events the server later refuses for good (422) go to `bad/` instead of blocking
/// every event behind them.
#[test]
fn a_spooled_event_refused_for_good_does_not_block_the_others() {
    let env = Env::new();
    let server = Server::start();
    server.status.store(500, Ordering::SeqCst);
    for _ in 0..2 {
        let out = start_against(&env, &server, "1");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(env.spooled().len(), 2);
    // Both refused for good: moved aside, the flush goes through to the end.
    server.status.store(422, Ordering::SeqCst);
    let out = env
        .cmd(&["flush"])
        .env("AXI_DEPLOY_ENDPOINT", &server.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("2 unreadable or refused moved to bad/"),
        "{}",
        text(&out.stdout)
    );
    assert!(env.spooled().is_empty());
    let [spool] = &env.destination_spools()[..] else {
        panic!("one destination: {:?}", env.destination_spools())
    };
    assert_eq!(std::fs::read_dir(spool.join("bad")).unwrap().count(), 2);
}

/// An endpoint answering with a redirect has not taken the event (following it would turn
/// the POST into a GET, whose 200 passed for a delivery): it is spooled, and the message
/// says where the redirect points.
#[test]
fn a_redirect_is_not_a_delivery() {
    let env = Env::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route(
            "/events",
            axum::routing::post(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "/login?next=events")],
                )
            }),
        )
        .route("/login", axum::routing::get(|| async { "sign in" }));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    std::thread::spawn(move || rt.block_on(async { axum::serve(listener, app).await }));
    let out = env
        .cmd(&pev("start", &[]))
        .env("AXI_DEPLOY_ENDPOINT", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains("HTTP 302") && said.contains("redirected to /login?***"),
        "{said}"
    );
    assert_eq!(env.spooled().len(), 1);
}

/// An endpoint that does not answer: the event is spooled, and the message names it without
/// its credentials or query (reqwest's own error carries the whole URL).
#[test]
fn an_unreachable_endpoint_is_named_without_its_token() {
    let env = Env::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://deployer:s3cret@127.0.0.1:{port}/api/deploy/events?token=t0k");
    let out = env
        .cmd(&pev("start", &["--id", "dep-down"]))
        .env("AXI_DEPLOY_ENDPOINT", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(said.contains(&format!("127.0.0.1:{port}")), "{said}");
    assert!(!said.contains("s3cret") && !said.contains("t0k"), "{said}");
    assert_eq!(env.spooled().len(), 1);
}

/// Events spooled for one destination wait for it: an invocation with another endpoint, or
/// with none (the local history), neither delivers nor loses them; one with theirs does.
/// Credentials and tokens in the endpoint do not reach the messages.
#[test]
fn spooled_events_wait_for_their_own_destination() {
    let env = Env::new();
    let (a, b) = (Server::start(), Server::start());
    a.status.store(500, Ordering::SeqCst);
    let secret_a = a.url.replacen("http://", "http://deployer:s3cret@", 1) + "?token=t0k";
    let out = env
        .cmd(&pev("start", &["--id", "dep-a"]))
        .env("AXI_DEPLOY_ENDPOINT", &secret_a)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(said.contains("HTTP 500") && said.contains("***"), "{said}");
    assert!(!said.contains("s3cret") && !said.contains("t0k"), "{said}");
    assert_eq!(env.spooled().len(), 1);
    // Another endpoint, then the local history: their own events go through, A's wait.
    let out = env
        .cmd(&pev("start", &["--id", "dep-b"]))
        .env("AXI_DEPLOY_ENDPOINT", &b.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ids = |s: &Server| -> Vec<String> {
        s.received()
            .iter()
            .map(|e| e.deployment.id.clone())
            .collect()
    };
    assert_eq!(ids(&b), ["dep-b"]);
    let out = env.run(&pev("start", &["--id", "dep-local"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let local: Vec<String> = History::open(env.db())
        .unwrap()
        .list(&Filter::default())
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(local, ["dep-local"]);
    let spools = env.destination_spools();
    assert_eq!(spools.len(), 3, "{spools:?}");
    let noted = std::fs::read_to_string(
        spools
            .iter()
            .find(|d| !spooled(d).is_empty())
            .unwrap()
            .join("destination"),
    )
    .unwrap();
    assert!(
        noted.contains("***@127.0.0.1") && !noted.contains("s3cret"),
        "{noted}"
    );
    // A is back: its own invocation delivers what waited for it.
    a.status.store(200, Ordering::SeqCst);
    let out = env
        .cmd(&["flush"])
        .env("AXI_DEPLOY_ENDPOINT", &secret_a)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(ids(&a), ["dep-a"]);
    assert!(env.spooled().is_empty());
}

/// An `https://` endpoint asking for basic auth (the credentials given in the URL): the
/// event is delivered trusting the bundle `SSL_CERT_FILE` names (here the test CA alone), the
/// credentials go as `Authorization: Basic`; without that CA the certificate is refused and
/// the event spooled.
#[test]
fn an_https_endpoint_with_basic_auth_gets_the_event() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new();
    let pki = axi_obs_core::testing::TestPki::new(&["localhost"]);
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    let ca_file = env.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        rt.block_on(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head = loop {
                    let n = tls.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(String::from_utf8_lossy(&buf[..end]).to_lowercase());
                    }
                };
                let Some(head) = head else { continue };
                let authorized = head.contains("authorization: basic zgvwbg95zxi6cznjcmv0");
                seen.lock().unwrap().push(head);
                let (status, body) = if authorized {
                    ("200 OK", r#"{"received":1,"stored":1,"duplicates":0}"#)
                } else {
                    ("401 Unauthorized", "no")
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        });
    });
    let url = format!("https://deployer:s3cret@localhost:{port}/api/deploy/events");
    let out = env
        .cmd(&pev("start", &["--id", "dep-tls"]))
        .env("AXI_DEPLOY_ENDPOINT", &url)
        .env("SSL_CERT_FILE", &ca_file)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(env.spooled().is_empty(), "{}", text(&out.stderr));
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("post /api/deploy/events "),
        "{heads:?}"
    );
    assert!(heads[0].contains("idempotency-key: "), "{heads:?}");
    assert!(!heads[0].contains("s3cret"), "{heads:?}");

    // The host's own trust store does not vouch for the test CA.
    let out = env
        .cmd(&pev("start", &["--id", "dep-tls-2"]))
        .env("AXI_DEPLOY_ENDPOINT", &url)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    let said = text(&out.stderr);
    assert!(said.contains("certificate"), "{said}");
    assert!(!said.contains("s3cret"), "{said}");
    assert_eq!(env.spooled().len(), 1, "{said}");
}
