//! PM2 and systemd sources against fake `pm2` and `systemctl` scripts on a temporary PATH: the
//! metrics they give, malformed output, a command that hangs past its timeout, and the
//! presence checks.

#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use node_collector::pm2::Pm2;
use node_collector::systemd::Systemd;
use node_collector::{Node, Paths};

mod common;

use common::{config, value};

/// A folder holding one executable script `name`, and a PATH with it first.
fn fake(dir: &Path, name: &str, script: &str) -> OsString {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let file = bin.join(name);
    std::fs::write(&file, script).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::env::join_paths([bin, PathBuf::from("/usr/bin"), PathBuf::from("/bin")]).unwrap()
}

/// A PM2 home with a daemon's socket (a plain file stands in for it), as the `home:`
/// setting of a `pm2:` configuration.
fn pm2_home(dir: &Path) -> String {
    let home = dir.join("pm2-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("rpc.sock"), "").unwrap();
    format!("home: '{}'", home.display())
}

fn node_with(c: impl node_collector::Collector + 'static) -> Node {
    let mut node = Node::with_collectors(Paths::default(), &[]);
    node.add(Box::new(c));
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pm2_processes_from_jlist() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pm2-jlist.json");
    let path = fake(
        dir.path(),
        "pm2",
        &format!(
            "#!/bin/sh\n[ \"$1\" = jlist ] || exit 2\necho \"$PM2_HOME\" > '{}'\ncat '{}'\n",
            dir.path().join("pm2_home_seen").display(),
            fixture.display()
        ),
    );
    let home = pm2_home(dir.path());
    // `auto` (the default) finds it on the PATH.
    let pm2 = Pm2::start(
        &config(&format!("pm2: {{ interval: 1h, {home} }}\n")).pm2,
        &path,
    )
    .expect("pm2 found");
    assert!(pm2.wait_ready(Duration::from_secs(10)).await);
    // The daemon's home is given to pm2.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pm2_home_seen"))
            .unwrap()
            .trim(),
        dir.path().join("pm2-home").display().to_string()
    );
    let f = node_with(pm2).gather();
    let p = |name: &str, id: &str, metric: &str| value(&f, metric, &[("name", name), ("id", id)]);
    assert_eq!(value(&f, "axi_pm2_scrape_success", &[]), Some(1.0));
    assert_eq!(p("api", "0", "axi_pm2_process_up"), Some(1.0));
    assert_eq!(p("api", "1", "axi_pm2_process_up"), Some(1.0));
    assert_eq!(p("report-worker", "2", "axi_pm2_process_up"), Some(0.0));
    assert_eq!(p("docs-sync", "3", "axi_pm2_process_up"), Some(0.0));
    assert_eq!(p("api", "0", "axi_pm2_process_restarts_total"), Some(3.0));
    assert_eq!(
        p("docs-sync", "3", "axi_pm2_process_unstable_restarts_total"),
        Some(15.0)
    );
    assert_eq!(p("api", "0", "axi_pm2_process_cpu_percent"), Some(1.5));
    assert_eq!(
        p("api", "1", "axi_pm2_process_memory_bytes"),
        Some(84_017_152.0)
    );
    assert_eq!(
        p("api", "0", "axi_pm2_process_start_time_seconds"),
        Some(1_764_120_000.123)
    );
    assert_eq!(
        p("report-worker", "2", "axi_pm2_process_start_time_seconds"),
        None,
        "no start time while stopped"
    );
    let kinds: Vec<(&str, String)> = f
        .iter()
        .filter(|f| f.name.starts_with("axi_pm2_process"))
        .map(|f| (f.name.as_str(), format!("{:?}", f.kind)))
        .collect();
    assert!(
        kinds.contains(&("axi_pm2_process_restarts_total", "Counter".into())),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pm2_malformed_output_and_missing_command_are_failed_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = fake(
        dir.path(),
        "pm2",
        "#!/bin/sh\necho '[PM2] Spawning PM2 daemon'\necho '[{\"name\": \"api\", \"pm_id\": '\n",
    );
    let home = pm2_home(dir.path());
    let pm2 = Pm2::start(
        &config(&format!("pm2: {{ interval: 1h, {home} }}\n")).pm2,
        &path,
    )
    .unwrap();
    assert!(pm2.wait_ready(Duration::from_secs(10)).await);
    let f = node_with(pm2).gather();
    assert_eq!(value(&f, "axi_pm2_scrape_success", &[]), Some(0.0));
    assert!(!f.iter().any(|f| f.name == "axi_pm2_process_up"));

    // `enabled: true` with no pm2 anywhere: reported as failing, not silently absent.
    let empty = tempfile::tempdir().unwrap();
    let path = OsString::from(empty.path());
    assert!(
        Pm2::start(&config("").pm2, &path).is_none(),
        "auto: not found"
    );
    assert!(Pm2::start(&config("pm2: { enabled: false }\n").pm2, &path).is_none());
    let pm2 = Pm2::start(&config("pm2: { enabled: true, interval: 1h }\n").pm2, &path).unwrap();
    assert!(pm2.wait_ready(Duration::from_secs(10)).await);
    let f = node_with(pm2).gather();
    assert_eq!(value(&f, "axi_pm2_scrape_success", &[]), Some(0.0));
}

/// No PM2 daemon in the home (no `rpc.sock`): `pm2 jlist` is not run, since it would start an
/// empty daemon of its own there and report no process for good; the scrape says it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pm2_is_not_run_without_a_daemon_to_ask() {
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let path = fake(
        dir.path(),
        "pm2",
        &format!("#!/bin/sh\ntouch '{}'\necho '[]'\n", ran.display()),
    );
    let home = dir.path().join("empty-home");
    let pm2 = Pm2::start(
        &config(&format!(
            "pm2: {{ interval: 1h, home: '{}' }}\n",
            home.display()
        ))
        .pm2,
        &path,
    )
    .unwrap();
    assert!(pm2.wait_ready(Duration::from_secs(10)).await);
    let f = node_with(pm2).gather();
    assert_eq!(value(&f, "axi_pm2_scrape_success", &[]), Some(0.0));
    assert!(!ran.exists(), "pm2 was run and would have started a daemon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_pm2_is_killed_at_the_timeout_and_scrapes_do_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let path = fake(
        dir.path(),
        "pm2",
        &format!(
            "#!/bin/sh\necho $$ > '{}.tmp'\nmv '{0}.tmp' '{0}'\nexec sleep 60\n",
            pidfile.display()
        ),
    );
    let home = pm2_home(dir.path());
    let pm2 = Pm2::start(
        &config(&format!("pm2: {{ interval: 1h, timeout: 5s, {home} }}\n")).pm2,
        &path,
    )
    .unwrap();
    let node = node_with(pm2.clone());
    // While pm2 hangs, a scrape answers at once with what is cached: nothing yet.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pidfile.exists() {
        assert!(Instant::now() < deadline, "the fake pm2 never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let f = node.gather();
    assert_eq!(
        value(&f, "axi_pm2_scrape_success", &[]),
        None,
        "still running"
    );
    assert!(
        running(pid),
        "the scrape returned while pm2 was still running"
    );

    assert!(pm2.wait_ready(Duration::from_secs(30)).await);
    let f = node.gather();
    assert_eq!(value(&f, "axi_pm2_scrape_success", &[]), Some(0.0));
    // The hung process was killed (gone, or a zombie until it is reaped).
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(pid) {
        assert!(Instant::now() < deadline, "pm2 {pid} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The process exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next())
        })
        .is_some_and(|state| state != 'Z')
}

const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
echo "$@" > "$(dirname "$0")/../args"
[ "$1" = show ] || exit 2
shift 2
first=1
for u in "$@"; do
  [ $first = 1 ] || echo
  first=0
  case $u in
    nginx.service) printf 'Id=nginx.service\nType=notify\nActiveState=active\n' ;;
    api.service) printf 'Type=simple\nActiveState=failed\n' ;;
    backup.timer) printf 'ActiveState=activating\n' ;;
    gone.service) printf 'Type=simple\nActiveState=inactive\nLoadState=not-found\n' ;;
    *) printf 'Type=simple\nActiveState=inactive\nLoadState=loaded\n' ;;
  esac
done
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_unit_states_in_node_exporter_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = fake(dir.path(), "systemctl", FAKE_SYSTEMCTL);
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    let paths = Paths {
        root: root.clone(),
        ..Paths::default()
    };
    let c = config(
        "systemd:\n  units: [nginx.service, api.service, backup.timer, gone.service]\n  interval: 1h\n",
    );
    let systemd = Systemd::start(&c.systemd, &paths, &path).expect("systemd present");
    assert!(systemd.wait_ready(Duration::from_secs(10)).await);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("args"))
            .unwrap()
            .trim(),
        "show --property=Id,ActiveState,Type,LoadState nginx.service api.service backup.timer gone.service"
    );
    let f = node_with(systemd).gather();
    assert_eq!(value(&f, "axi_systemd_scrape_success", &[]), Some(1.0));
    let state = |name: &str, state: &str| {
        value(
            &f,
            "node_systemd_unit_state",
            &[("name", name), ("state", state)],
        )
        .unwrap()
    };
    for (unit, current) in [
        ("nginx.service", "active"),
        ("api.service", "failed"),
        ("backup.timer", "activating"),
    ] {
        for s in node_collector::systemd::STATES {
            assert_eq!(
                state(unit, s),
                f64::from(u8::from(s == current)),
                "{unit} {s}"
            );
        }
    }
    let fam = f
        .iter()
        .find(|f| f.name == "node_systemd_unit_state")
        .unwrap();
    // A unit systemd does not know (`LoadState=not-found`) has no state, as node_exporter
    // lists only loaded units; it says so in `axi_systemd_unit_loaded`.
    assert_eq!(fam.series.len(), 3 * 5);
    let loaded = |name: &str| value(&f, "axi_systemd_unit_loaded", &[("name", name)]);
    assert_eq!(
        (loaded("nginx.service"), loaded("gone.service")),
        (Some(1.0), Some(0.0))
    );
    assert_eq!(fam.help.as_deref(), Some("Systemd unit"));
    let type_of = |unit: &str| {
        fam.series
            .iter()
            .find(|s| s.labels.iter().any(|(k, v)| k == "name" && v == unit))
            .and_then(|s| s.labels.iter().find(|(k, _)| k == "type"))
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(type_of("nginx.service"), "notify");
    assert_eq!(type_of("backup.timer"), "");

    // No systemd (no run/systemd/system under the root), or no units: nothing runs.
    let no_systemd = Paths {
        root: dir.path().join("elsewhere"),
        ..Paths::default()
    };
    assert!(Systemd::start(&c.systemd, &no_systemd, &path).is_none());
    assert!(Systemd::start(&config("").systemd, &paths, &path).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_output_that_does_not_match_the_units_is_a_failed_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let path = fake(
        dir.path(),
        "systemctl",
        "#!/bin/sh\nprintf 'ActiveState=active\\n'\n",
    );
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    let paths = Paths {
        root,
        ..Paths::default()
    };
    let c = config("systemd:\n  units: [a.service, b.service]\n  interval: 1h\n");
    let systemd = Systemd::start(&c.systemd, &paths, &path).unwrap();
    assert!(systemd.wait_ready(Duration::from_secs(10)).await);
    let f = node_with(systemd).gather();
    assert_eq!(value(&f, "axi_systemd_scrape_success", &[]), Some(0.0));
    assert!(!f.iter().any(|f| f.name == "node_systemd_unit_state"));
}
