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

/// `max_line_bytes` counts the file's bytes, also for joined events: a GBK event of 40 bytes
/// (59 in UTF-8) fits a 40-byte limit whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_count_the_files_bytes_not_the_decoded_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = Memory::default();
    let running = start(
        &yaml(
            dir.path(),
            &log.display().to_string(),
            "    encoding: gbk
    max_line_bytes: 40
    multiline: { pattern: '^ ', match: after, timeout: 50ms }
",
        ),
        out.clone(),
    );
    // 19 + 1 (the joining newline) + 20 bytes in GBK: 40. Each Chinese character is two bytes
    // in GBK and three in UTF-8.
    let whole = "错误：连接超时了啊
 详情：订单四十二号码";
    let (gbk, _, _) = encoding_rs::GBK.encode(whole);
    assert_eq!(gbk.len(), 40);
    assert_eq!(whole.len(), 59);
    let mut bytes = gbk.into_owned();
    bytes.extend_from_slice(b"\nnext\n");
    append_bytes(&log, &bytes);
    assert!(
        wait_until(|| out.bodies().len() == 2).await,
        "{:?}",
        out.bodies()
    );
    running.stop().await;
    assert_eq!(out.bodies(), [whole, "next"]);
    let records = out.records.lock().unwrap();
    assert!(!records[0].truncated, "{:?}", records[0]);
}

#[test]
fn unknown_and_unsplittable_encodings_are_refused_with_where() {
    let dir = tempfile::tempdir().unwrap();
    let check = |label: &str| {
        let text = yaml(
            dir.path(),
            "/tmp/x.log",
            &format!("    encoding: {label}\n"),
        );
        Config::parse(&text, Path::new("test.yml"))
            .map_err(|e| e.to_string())
            .and_then(|config| log_shipper::pipeline::input_specs(&config))
            .map(|specs| specs[0].encoding.map(|e| e.name()))
    };
    assert_eq!(check("GBK").unwrap(), Some("GBK"));
    assert_eq!(check("gb2312").unwrap(), Some("GBK"));
    assert_eq!(check("shift_jis").unwrap(), Some("Shift_JIS"));
    assert_eq!(check("latin1").unwrap(), Some("windows-1252"));
    assert_eq!(check("utf-8").unwrap(), None);
    // Refused when the configuration is read (so `--check-config` says so), naming the line.
    let e = check("klingon").unwrap_err();
    assert!(
        e.starts_with("test.yml:6: inputs[app].encoding: unknown encoding \"klingon\""),
        "{e}"
    );
    let e = check("utf-16le").unwrap_err();
    assert!(
        e.contains("inputs[app].encoding: encoding \"utf-16le\" (UTF-16LE) is not supported"),
        "{e}"
    );
    let e = check("iso-2022-jp").unwrap_err();
    assert!(e.contains("is not supported"), "{e}");
    // The bad label's own line, not the first `encoding:` of the file.
    let two = "registry: /tmp/r.json\ninputs:\n  - name: a\n    paths: [/tmp/a.log]\n    encoding: gbk\n  - name: b\n    paths: [/tmp/b.log]\n    encoding: klingon\noutput:\n  stdout: {}\n";
    let e = Config::parse(two, Path::new("two.yml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("two.yml:8: inputs[b].encoding: unknown encoding"),
        "{e}"
    );
}
