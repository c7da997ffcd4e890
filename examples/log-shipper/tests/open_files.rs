//! The binary raises its soft open-file limit to the hard one at start (as Filebeat, a Go
//! program, does), so tailing many files does not stop at a low soft limit such as systemd's
//! 1024. Started here with a soft limit of 256.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, free_port};

/// The soft and hard "Max open files" of process `pid`.
fn open_file_limits(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut words = line["Max open files".len()..].split_whitespace();
    Some((words.next()?.to_owned(), words.next()?.to_owned()))
}

#[tokio::test]
async fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shipper.yml");
    std::fs::write(
        &config,
        format!(
            "registry: {}\ninputs:\n  - name: app\n    paths: ['{}']\noutput:\n  stdout: {{}}\n",
            dir.path().join("registry.json").display(),
            dir.path().join("*.log").display()
        ),
    )
    .unwrap();
    let port = free_port();
    // `exec` keeps the pid: the shell lowers its soft limit and becomes the shipper.
    let child = ChildGuard(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -Sn 256 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_axi-log-shipper"))
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    // Serving its routes: started, past the raise.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the shipper never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (soft, hard) = open_file_limits(pid).unwrap();
    assert_ne!(soft, "256", "not raised");
    assert_eq!(soft, hard);
}
