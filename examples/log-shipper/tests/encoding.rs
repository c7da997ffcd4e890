//! Files in a legacy character set (`encoding:`) are shipped as UTF-8; unknown and
//! unsplittable encodings are refused with where.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{Memory, append_bytes, start, wait_until, yaml};
use log_shipper::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gbk_lines_arrive_as_utf8_and_multiline_patterns_match_the_decoded_text() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = Memory::default();
    let running = start(
        &yaml(
            dir.path(),
            &log.display().to_string(),
            "    encoding: gbk\n    multiline: { pattern: '^详情', match: after, timeout: 50ms }\n",
        ),
        out.clone(),
    );
    let text = "2026-11-28 10:00:00 ERROR 支付失败：连接超时\n详情：订单 42\n2026-11-28 10:00:01 INFO ascii only\n";
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(text);
    assert!(!unmappable);
    assert_ne!(gbk.as_ref(), text.as_bytes(), "the file is not UTF-8");
    // A byte sequence GBK does not define becomes U+FFFD, as invalid UTF-8 would.
    let mut bytes = gbk.into_owned();
    bytes.extend_from_slice(b"bad \xff\xff end\n");
    append_bytes(&log, &bytes);
    assert!(
        wait_until(|| out.bodies().len() == 3).await,
        "{:?}",
        out.bodies()
    );
    running.stop().await;
    assert_eq!(
        out.bodies(),
        [
            "2026-11-28 10:00:00 ERROR 支付失败：连接超时\n详情：订单 42",
            "2026-11-28 10:00:01 INFO ascii only",
            "bad \u{fffd}\u{fffd} end",
        ]
    );
    // Positions count the file's bytes, not the decoded text's.
    let records = out.records.lock().unwrap();
    assert_eq!(records[2].position.end, bytes.len() as u64);
}

#[test]
fn unknown_and_unsplittable_encodings_are_refused_with_where() {
    let dir = tempfile::tempdir().unwrap();
    let check = |label: &str| {
        let config = Config::parse(
            &yaml(
                dir.path(),
                "/tmp/x.log",
                &format!("    encoding: {label}\n"),
            ),
            Path::new("test.yml"),
        )
        .unwrap();
        log_shipper::pipeline::input_specs(&config).map(|specs| specs[0].encoding.map(|e| e.name()))
    };
    assert_eq!(check("GBK").unwrap(), Some("GBK"));
    assert_eq!(check("gb2312").unwrap(), Some("GBK"));
    assert_eq!(check("shift_jis").unwrap(), Some("Shift_JIS"));
    assert_eq!(check("latin1").unwrap(), Some("windows-1252"));
    assert_eq!(check("utf-8").unwrap(), None);
    let e = check("klingon").unwrap_err().to_string();
    assert!(
        e.starts_with("inputs[app].encoding: unknown encoding \"klingon\""),
        "{e}"
    );
    let e = check("utf-16le").unwrap_err().to_string();
    assert!(
        e.starts_with("inputs[app].encoding: encoding \"utf-16le\" (UTF-16LE) is not supported"),
        "{e}"
    );
}
