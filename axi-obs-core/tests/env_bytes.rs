//! A variable whose value is not UTF-8 is read with U+FFFD for the bad bytes, not taken for
//! unset (a misconfiguration must show, naming the variable, not vanish). The value is set for a
//! child run of this same test: setting it in this process would take `unsafe`.

#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

const CHILD: &str = "AXI_OBS_ENV_BYTES_CHILD";

#[test]
fn values_that_are_not_utf8_are_read_lossily() {
    if std::env::var_os(CHILD).is_some() {
        let env = axi_obs_core::Env::process();
        assert_eq!(env.get("AXI_OBS_ENV_BYTES").as_deref(), Some("ab\u{FFFD}c"));
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "values_that_are_not_utf8_are_read_lossily"])
        .env(CHILD, "1")
        .env("AXI_OBS_ENV_BYTES", OsStr::from_bytes(b"ab\xffc"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}
