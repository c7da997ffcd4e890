//! Tests of the configuration file: defaults, every section, errors with file:line.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/axi/shipper.yml"))
}

const MINIMAL: &str = "registry: /tmp/r.json\ninputs:\n  - name: app\n    paths: [/var/log/app/*.log]\noutput:\n  stdout: {}\n";

#[test]
fn defaults() {
    let c = parse(MINIMAL).unwrap();
    let i = &c.inputs[0];
    assert_eq!(i.format, Format::Text);
    assert_eq!(i.max_line_bytes, 1 << 20);
    assert_eq!(i.fingerprint_bytes, 1024);
    assert_eq!(i.close_inactive, Duration::from_secs(300));
    assert_eq!(c.poll_interval, Duration::from_secs(1));
    assert_eq!(c.batch.max_events, 2048);
    assert_eq!(c.access_metrics.max_paths, 100);
    assert!(c.output.stdout.is_some());
}

#[test]
fn a_full_file() {
    let c = parse(
        "registry: /tmp/r.json\npoll_interval: 200ms\ninputs:\n  - name: nginx\n    paths: ['/var/log/nginx/access.log*']\n    exclude: ['*.gz']\n    format: nginx\n    log_format: '$remote_addr [$time_local] \"$request\" $status $request_time'\n    service: docs\n    max_line_bytes: 4096\n    start_at: end\naccess_metrics:\n  path_patterns: ['/docs/**']\n  max_paths: 10\noutput:\n  otlp: { endpoint: 'http://127.0.0.1:4318', timeout: 2s, headers: { x-a: b } }\nbatch: { max_events: 10, max_wait: 50ms, queue_events: 100 }\nretry: { initial_backoff: 10ms, max_backoff: 1s }\n",
    )
    .unwrap();
    let i = &c.inputs[0];
    assert_eq!(i.nginx_format().unwrap().variables().count(), 5);
    assert_eq!(i.start_at, StartAt::End);
    let otlp = c.output.otlp.unwrap();
    assert_eq!(otlp.timeout, Duration::from_secs(2));
    assert_eq!(otlp.protocol, OtlpProtocol::HttpProtobuf);
    let grpc = parse(&MINIMAL.replace(
        "  stdout: {}",
        "  otlp: { endpoint: 'http://127.0.0.1:4317', protocol: grpc }",
    ))
    .unwrap();
    assert_eq!(grpc.output.otlp.unwrap().protocol, OtlpProtocol::Grpc);
    let e = parse(&MINIMAL.replace(
        "  stdout: {}",
        "  otlp: { endpoint: 'http://127.0.0.1:4317', protocol: http/json }",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("http/json"), "{e}");
    assert_eq!(c.batch.max_wait, Duration::from_millis(50));
}

#[test]
fn multiline_settings() {
    let c = parse(&MINIMAL.replace(
        "    paths:",
        "    multiline: { pattern: '^\\s', match: after }\n    paths:",
    ))
    .unwrap();
    let m = c.inputs[0].multiline.as_ref().unwrap();
    assert_eq!((m.join, m.max_lines, m.negate), (Match::After, 500, false));
    assert_eq!(m.timeout, Duration::from_secs(5));
    assert!(m.spec().unwrap().is_continuation(b"  at x"));

    let e = parse(&MINIMAL.replace(
        "    paths:",
        "    multiline: { pattern: '(', match: before }\n    paths:",
    ))
    .unwrap_err();
    assert!(
        e.to_string().contains("inputs[app].multiline.pattern"),
        "{e}"
    );
    assert_eq!(e.line, Some(4));
    let e = parse(&MINIMAL.replace(
        "    paths:",
        "    multiline: { pattern: x, match: sideways }\n    paths:",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("sideways"), "{e}");
    let e = parse(&MINIMAL.replace(
        "    paths:",
        "    multiline: { pattern: x, max_lines: 0 }\n    paths:",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("multiline.max_lines"), "{e}");
}

#[test]
fn an_elasticsearch_output() {
    let c = parse(&MINIMAL.replace(
        "  stdout: {}",
        "  elasticsearch: { endpoint: 'http://127.0.0.1:9200', headers: { authorization: 'ApiKey x' } }",
    ))
    .unwrap();
    let e = c.output.elasticsearch.unwrap();
    assert_eq!(e.index_prefix, "logs");
    assert_eq!(e.timeout, Duration::from_secs(10));
    assert_eq!(e.headers.len(), 1);
}

/// Errors found after parsing point at the field in its own input, not at the first line
/// that mentions a word (another input's, or the registry path holding the input's name).
#[test]
fn errors_point_at_the_inputs_own_lines() {
    let text = "registry: /var/lib/app/reg.json\ninputs:\n  - name: web\n    paths: [/var/log/web.log]\n    multiline: { pattern: '^\\s' }\n  - paths: []\n    name: app\noutput:\n  stdout: {}\n";
    let e = parse(text).unwrap_err();
    assert!(e.to_string().contains("inputs[app].paths"), "{e}");
    assert_eq!(e.line, Some(6), "{e}");

    let text = "registry: /r.json\ninputs:\n  - name: a\n    paths: [/a.log]\n    multiline: { pattern: '^\\s' }\n  - name: b\n    paths: [/b.log]\n    encoding: klingon\n    multiline: { pattern: '(' }\noutput:\n  stdout: {}\n";
    let e = parse(text).unwrap_err();
    assert!(e.to_string().contains("inputs[b].encoding"), "{e}");
    assert_eq!(e.line, Some(8), "{e}");
    let e = parse(&text.replace("    encoding: klingon\n", "")).unwrap_err();
    assert!(e.to_string().contains("inputs[b].multiline"), "{e}");
    assert_eq!(e.line, Some(8), "{e}");
    let e = parse(&text.replace("[/b.log]", "['/b[.log']")).unwrap_err();
    assert!(e.to_string().contains("invalid glob"), "{e}");
    assert_eq!(e.line, Some(7), "{e}");
}

/// An absurd batch size is an error naming it, not an allocation that aborts the process.
#[test]
fn absurd_batch_sizes_are_errors() {
    let with = |b: &str| format!("{MINIMAL}batch:\n  max_wait: 1s\n{b}\n");
    let e = parse(&with("  max_events: 10000000000")).unwrap_err();
    assert!(
        e.to_string()
            .contains("batch.max_events: 10000000000 is more than the 100000 allowed"),
        "{e}"
    );
    assert_eq!(e.line, Some(9), "{e}");
    let e = parse(&with("  queue_events: 18446744073709551615")).unwrap_err();
    assert!(e.to_string().contains("batch.queue_events"), "{e}");
    parse(&with("  max_events: 100000")).unwrap();
}

#[test]
fn errors_name_file_line_and_field() {
    let e = parse(&MINIMAL.replace("    paths:", "    pathz: [x]\n    paths:")).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("/etc/axi/shipper.yml:4"), "{msg}");
    assert!(msg.contains("pathz"), "{msg}");

    let e = parse(&MINIMAL.replace("[/var/log/app/*.log]", "[]")).unwrap_err();
    assert!(e.to_string().contains("inputs[app].paths"), "{e}");
    // The `paths:` line of that input.
    assert_eq!(e.line, Some(4));

    let e = parse(&MINIMAL.replace(
        "    paths:",
        "    format: nginx\n    log_format: '$a$b'\n    paths:",
    ))
    .unwrap_err();
    assert!(
        e.to_string().contains("log_format") && e.to_string().contains("$a"),
        "{e}"
    );
    assert_eq!(e.line, Some(5));

    let e = parse(&MINIMAL.replace(
        "  stdout: {}",
        "  stdout: {}\n  otlp: { endpoint: 'http://a:1' }",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("exactly one"), "{e}");

    let e =
        parse(&MINIMAL.replace("  stdout: {}", "  otlp: { endpoint: 'ftp://a:1' }")).unwrap_err();
    assert!(e.to_string().contains("output.otlp.endpoint"), "{e}");
    assert_eq!(e.line, Some(6));

    let e = parse(&MINIMAL.replace(
        "  stdout: {}",
        "  elasticsearch: { endpoint: 'http://a:9200', index_prefix: 'Logs' }",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("index_prefix"), "{e}");
    let e = parse(&MINIMAL.replace("  stdout: {}", "  elasticsearch: { endpoint: 'a:9200' }"))
        .unwrap_err();
    assert!(
        e.to_string().contains("output.elasticsearch.endpoint"),
        "{e}"
    );

    let e = parse(&MINIMAL.replace("[/var/log/app/*.log]", "['/var/log/[']")).unwrap_err();
    assert!(e.to_string().contains("invalid glob"), "{e}");

    let e = parse(&format!("{MINIMAL}batch: {{ max_events: 0 }}\n")).unwrap_err();
    assert_eq!(e.line, Some(7), "{e}");

    let e = parse(&format!(
        "{MINIMAL}access_metrics: {{ path_patterns: [docs] }}\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("must start with /"), "{e}");

    let e =
        parse(&MINIMAL.replace("    paths:", "    max_line_bytes: -1\n    paths:")).unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");

    let e = parse("registry: r\ninputs:\n  - name: app\n    paths: [x]\n  - name: app\n    paths: [y]\noutput:\n  stdout: {}\n").unwrap_err();
    assert!(e.to_string().contains("inputs[app].name: duplicate"), "{e}");
}

#[test]
fn https_endpoints_and_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let with = |output: &str| MINIMAL.replace("  stdout: {}", output);

    // https without settings: the system trust store.
    let c = parse(&with("  otlp: { endpoint: 'https://collector:4318' }")).unwrap();
    assert_eq!(c.output.otlp.unwrap().tls, None);
    let c = parse(&with(
        "  elasticsearch:\n    endpoint: 'https://es:9200'\n    tls: { insecure_skip_verify: true }",
    ))
    .unwrap();
    assert!(
        c.output
            .elasticsearch
            .unwrap()
            .tls
            .unwrap()
            .insecure_skip_verify
    );

    // A missing CA file: file:line of `ca_file`, the field and the path.
    let text = with(&format!(
        "  otlp:\n    endpoint: 'https://collector:4318'\n    protocol: grpc\n    tls:\n      ca_file: {}",
        ca.display()
    ));
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line, Some(10), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("/etc/axi/shipper.yml:10: output.otlp.tls.ca_file: "),
        "{msg}"
    );
    assert!(msg.contains(&ca.display().to_string()), "{msg}");

    // A file without a certificate.
    std::fs::write(&ca, "just text\n").unwrap();
    let e = parse(&text).unwrap_err();
    assert!(e.to_string().contains("no certificate"), "{e}");

    // cert_file without key_file names key_file, at the line of the `tls` section.
    let e = parse(&with(
        "  otlp:\n    endpoint: 'https://c:4318'\n    tls:\n      cert_file: /x/c.pem",
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("output.otlp.tls.key_file: cert_file needs key_file"),
        "{e}"
    );
    assert_eq!(e.line, Some(8), "{e}");

    // ca_file and insecure_skip_verify contradict each other.
    let e = parse(&with(
        "  otlp:\n    endpoint: 'https://c:4318'\n    tls:\n      ca_file: /x/ca.pem\n      insecure_skip_verify: true",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("tls.insecure_skip_verify"), "{e}");
    assert_eq!(e.line, Some(10), "{e}");

    // TLS settings on an http:// endpoint are a mistake, not silently ignored.
    let e = parse(&with(
        "  otlp:\n    endpoint: 'http://c:4318'\n    tls: { insecure_skip_verify: true }",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("need an https:// endpoint"), "{e}");
    assert_eq!(e.line, Some(8), "{e}");

    // Unknown TLS fields are errors with their line.
    let e = parse(&with(
        "  otlp:\n    endpoint: 'https://c:4318'\n    tls:\n      ca: x",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `ca`"), "{e}");
    assert_eq!(e.line, Some(9), "{e}");
}
