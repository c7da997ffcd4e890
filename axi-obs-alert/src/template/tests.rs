//! Unit tests of the template engine.

use std::collections::BTreeMap;

use super::gofmt::{format_float, sprintf};
use super::*;

fn env() -> Env<'static> {
    Env::new("http://testhost:9090/path/prefix", 1_353_755_652_000)
}

fn run(text: &str, data: &Value) -> Result<String, String> {
    expand("test", text, data, &env())
}

fn ok(text: &str) -> String {
    match run(text, &Value::Nil) {
        Ok(s) => s,
        Err(e) => panic!("{text}: {e}"),
    }
}

fn err(text: &str) -> String {
    match run(text, &Value::Nil) {
        Ok(s) => panic!("{text}: expected an error, got {s:?}"),
        Err(e) => e,
    }
}

#[test]
fn float_v_formatting() {
    let cases = [
        (1.0, "1"),
        (100000.0, "100000"),
        (1234567.0, "1.234567e+06"),
        (1e6, "1e+06"),
        (1e21, "1e+21"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5, "1.5"),
        (-0.0, "-0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1353755652.0, "1.353755652e+09"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
        (123456.7, "123456.7"),
    ];
    for (v, want) in cases {
        assert_eq!(format_float(v, 'g', -1), want, "{v}");
        assert_eq!(sprintf("%v", &[Value::Float(v)]), want, "{v}");
    }
}

#[test]
fn float_precision_formatting() {
    assert_eq!(format_float(1234567.0, 'g', 4), "1.235e+06");
    assert_eq!(format_float(120.0, 'g', 4), "120");
    assert_eq!(format_float(1.2345, 'g', 4), "1.234");
    assert_eq!(format_float(0.0, 'g', 4), "0");
    assert_eq!(format_float(100.0, 'g', 2), "1e+02");
    assert_eq!(format_float(1.0, 'g', 3), "1");
    assert_eq!(format_float(123456700.0, 'g', 4), "1.235e+08");
    assert_eq!(format_float(0.00012345, 'g', 4), "0.0001234");
    assert_eq!(format_float(0.000012345, 'g', 4), "1.234e-05");
    assert_eq!(sprintf("%e", &[Value::Float(1234.5678)]), "1.234568e+03");
    assert_eq!(sprintf("%.2e", &[Value::Float(0.0)]), "0.00e+00");
    assert_eq!(sprintf("%E", &[Value::Float(1e-10)]), "1.000000E-10");
    assert_eq!(sprintf("%g", &[Value::Float(1e-7)]), "1e-07");
    assert_eq!(sprintf("%.4g", &[Value::Float(9.223372036854776)]), "9.223");
    assert_eq!(sprintf("%f", &[Value::Float(3.0)]), "3.000000");
    assert_eq!(sprintf("%.2f", &[Value::Float(0.125)]), "0.12");
    assert_eq!(sprintf("%.0f", &[Value::Float(2.5)]), "2");
    assert_eq!(sprintf("%0.2f", &[Value::Float(3720.01)]), "3720.01");
    assert_eq!(
        sprintf(
            "%8.3f|%-8.2f|%08.3f",
            &[
                Value::Float(3.14259),
                Value::Float(2.5),
                Value::Float(-3.14259)
            ]
        ),
        "   3.143|2.50    |-003.143"
    );
    assert_eq!(sprintf("%+.1f", &[Value::Float(2.0)]), "+2.0");
    assert_eq!(sprintf("%f", &[Value::Float(f64::INFINITY)]), "+Inf");
    assert_eq!(sprintf("%5.1f", &[Value::Float(f64::NAN)]), "  NaN");
}

#[test]
fn printf_verbs() {
    let s = |v: &str| Value::String(v.to_string());
    assert_eq!(sprintf("%s=%d", &[s("a"), Value::Int(42)]), "a=42");
    assert_eq!(
        sprintf(
            "%5d|%-5d|%05d",
            &[Value::Int(42), Value::Int(42), Value::Int(-42)]
        ),
        "   42|42   |-0042"
    );
    assert_eq!(
        sprintf(
            "%x %X %o %b",
            &[
                Value::Int(255),
                Value::Int(255),
                Value::Int(8),
                Value::Int(5)
            ]
        ),
        "ff FF 10 101"
    );
    assert_eq!(sprintf("%q", &[s("a\"b\n")]), "\"a\\\"b\\n\"");
    assert_eq!(sprintf("%x", &[s("hi")]), "6869");
    assert_eq!(
        sprintf("%10s|%-4s|%.2s", &[s("abc"), s("ab"), s("abcdef")]),
        "       abc|ab  |ab"
    );
    assert_eq!(
        sprintf("%v %v", &[Value::Bool(true), Value::Nil]),
        "true <nil>"
    );
    assert_eq!(sprintf("100%%", &[]), "100%");
    assert_eq!(sprintf("%d", &[Value::Float(1.5)]), "%!d(float64=1.5)");
    assert_eq!(sprintf("%s", &[Value::Int(5)]), "%!s(int=5)");
    assert_eq!(sprintf("%d %d", &[Value::Int(1)]), "1 %!d(MISSING)");
    assert_eq!(
        sprintf("%d", &[Value::Int(1), s("x")]),
        "1%!(EXTRA string=x)"
    );
    assert_eq!(sprintf("%c%c", &[Value::Int(72), Value::Int(105)]), "Hi");
    assert_eq!(
        sprintf("%T %T", &[Value::Float(1.0), s("")]),
        "float64 string"
    );
    let m: BTreeMap<String, String> = [
        ("b".to_string(), "2".to_string()),
        ("a".to_string(), "1".to_string()),
    ]
    .into();
    assert_eq!(sprintf("%v", &[Value::StrMap(m)]), "map[a:1 b:2]");
}

#[test]
fn humanize_functions() {
    assert_eq!(ok("{{ 1234567.0 | humanize }}"), "1.235M");
    assert_eq!(ok("{{ 0.12 | humanize }}"), "120m");
    assert_eq!(ok("{{ 0.0 | humanize }}"), "0");
    assert_eq!(ok("{{ 1e-9 | humanize }}"), "1n");
    assert_eq!(ok("{{ 1048576.0 | humanize1024 }}"), "1Mi");
    assert_eq!(ok("{{ 0.12 | humanize1024 }}"), "0.12");
    assert_eq!(ok("{{ 1234567 | humanize1024 }}"), "1.177Mi");
    assert_eq!(ok("{{ 90061 | humanizeDuration }}"), "1d 1h 1m 1s");
    assert_eq!(ok("{{ 60.5 | humanizeDuration }}"), "1m 0s");
    assert_eq!(ok("{{ 0.12345 | humanizeDuration }}"), "123.5ms");
    assert_eq!(ok("{{ 0.0001 | humanizeDuration }}"), "100us");
    assert_eq!(ok("{{ 0 | humanizeDuration }}"), "0s");
    assert_eq!(ok("{{ 0.1234567 | humanizePercentage }}"), "12.35%");
    assert_eq!(ok("{{ humanize \"1.5e3\" }}"), "1.5k");
}

#[test]
fn humanize_timestamp_and_time() {
    assert_eq!(
        ok("{{ 1435065584.128 | humanizeTimestamp }}"),
        "2015-06-23 13:19:44.128 +0000 UTC"
    );
    assert_eq!(
        ok("{{ 0 | humanizeTimestamp }}"),
        "1970-01-01 00:00:00 +0000 UTC"
    );
    assert_eq!(
        ok("{{ -1 | humanizeTimestamp }}"),
        "1969-12-31 23:59:59 +0000 UTC"
    );
    assert_eq!(
        ok("{{ 951782400 | humanizeTimestamp }}"),
        "2000-02-29 00:00:00 +0000 UTC"
    );
    assert_eq!(
        ok("{{ (now | toTime).Format \"Mon Jan 2 15:04:05 2006\" }}"),
        "Sat Nov 24 11:14:12 2012"
    );
    assert_eq!(
        ok(
            "{{ (1435065584.128 | toTime).Format \"2006-01-02T15:04:05.000Z07:00 Monday January _2 03PM .999999\" }}"
        ),
        "2015-06-23T13:19:44.128Z Tuesday June 23 01PM .128"
    );
    assert_eq!(ok("{{ now | toTime }}"), "2012-11-24 11:14:12 +0000 UTC");
    assert_eq!(ok("{{ (1800 | toDuration).String }}"), "30m0s");
    assert_eq!(ok("{{ 0.0015 | toDuration }}"), "1.5ms");
    assert_eq!(
        ok("{{ parseDuration \"1h2m10ms\" | toDuration }}"),
        "1h2m0.01s"
    );
    assert_eq!(
        ok("{{ (\"-30m\" | parseDuration | toDuration | (now | toTime).Add).UnixMilli }}"),
        "1353753852000"
    );
    assert_eq!(ok("{{ now }}"), "1.353755652e+09");
}

#[test]
fn range_over_map_is_sorted() {
    let m: BTreeMap<String, String> = [("zone", "z"), ("app", "a"), ("job", "j")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let data = Value::StrMap(m);
    assert_eq!(
        run("{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}", &data).as_deref(),
        Ok("app=a;job=j;zone=z;")
    );
    assert_eq!(
        run("{{ range . }}{{ . }}{{ end }}", &data).as_deref(),
        Ok("ajz")
    );
    assert_eq!(
        run("{{ . }}", &data).as_deref(),
        Ok("map[app:a job:j zone:z]")
    );
    assert_eq!(
        run(
            "{{ range $i, $e := .x }}{{ $i }}{{ $e }}{{ else }}empty{{ end }}",
            &Value::Map(BTreeMap::new())
        )
        .as_deref(),
        Ok("empty")
    );
    let list = Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
    assert_eq!(run("{{ range $i, $e := . }}{{ if eq $e 2 }}{{ continue }}{{ end }}{{ $i }}:{{ $e }} {{ end }}", &list).as_deref(), Ok("0:1 2:3 "));
    assert_eq!(
        run(
            "{{ range . }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }}",
            &list
        )
        .as_deref(),
        Ok("1")
    );
}

#[test]
fn trimming_and_comments() {
    assert_eq!(ok("a  {{- 1 -}}  b"), "a1b");
    assert_eq!(ok("a \n {{- /* comment */ -}} \n b"), "ab");
    assert_eq!(ok("a {{/* c */}} b"), "a  b");
    assert_eq!(ok("{{ 3 }} {{- 4 }}"), "34");
    assert_eq!(ok("{{- 1 }}"), "1");
    assert_eq!(ok("{{ -1 }}"), "-1");
    assert_eq!(ok("x\n{{- if true }}\n  yes\n{{- end }}\n"), "x\n  yes\n");
}

#[test]
fn control_structures_and_variables() {
    assert_eq!(
        ok("{{ if false }}a{{ else if 0 }}b{{ else if \"x\" }}c{{ else }}d{{ end }}"),
        "c"
    );
    assert_eq!(ok("{{ with $x := \"v\" }}{{ . }}{{ $x }}{{ end }}"), "vv");
    assert_eq!(ok("{{ with \"\" }}a{{ else with 2 }}{{ . }}{{ end }}"), "2");
    assert_eq!(
        ok("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}"),
        "2"
    );
    assert_eq!(
        ok(
            "{{ define \"t\" }}[{{ . }}]{{ end }}{{ template \"t\" 5 }}{{ block \"b\" \"z\" }}<{{ . }}>{{ end }}"
        ),
        "[5]<z>"
    );
    assert_eq!(
        ok("{{ and 1 0 \"x\" }} {{ or 0 \"\" \"y\" }} {{ not 0 }}"),
        "0 y true"
    );
    assert_eq!(
        ok("{{ len \"abc\" }} {{ index (args 1 2) \"arg1\" }} {{ slice \"hello\" 1 3 }}"),
        "3 2 el"
    );
    assert_eq!(
        ok("{{ print 1 2 \"a\" \"b\" 3 }}|{{ println 1 \"a\" }}"),
        "1 2ab3|1 a\n"
    );
    assert_eq!(
        ok("{{ html \"<a href='x'>&</a>\" }} {{ js \"it's <b>\" }} {{ urlquery \"a b&c\" }}"),
        "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt; it\\'s \\u003Cb\\u003E a+b%26c"
    );
    assert_eq!(
        ok("{{ eq 1 2 3 1 }} {{ lt 1.5 2.0 }} {{ ge \"b\" \"a\" }} {{ ne 'a' 97 }}"),
        "true true true false"
    );
    assert_eq!(
        ok("{{ printf \"%.2f%%\" 12.345 }} {{ printf \"%s-%v\" \"a\" 1.5 }}"),
        "12.35% a-1.5"
    );
    assert_eq!(
        ok("{{ \"a\\tb\" }}{{ `raw\\n` }}{{ 'x' }}{{ 0x1F }}{{ 1e3 }}{{ print nil }}"),
        "a\tbraw\\n120311000<nil>"
    );
    assert_eq!(
        ok(
            "{{ title \"hello wide-world it's\" }} {{ toUpper \"ab\" }} {{ reReplaceAll \"(\\\\w+)@(\\\\w+)\" \"$2 at $1\" \"me@host\" }}"
        ),
        "Hello Wide-World It's AB host at me"
    );
    assert_eq!(
        ok("{{ urlQueryEscape \"a/b c\" }} {{ stripPort \"h:1\" }} {{ stripDomain \"a.b.c:80\" }}"),
        "a%2Fb+c h a:80"
    );
    assert_eq!(
        ok("{{ match \"^a.c$\" \"abc\" }} {{ graphLink \"rate(x[5m])\" }}"),
        "true /graph?g0.expr=rate%28x%5B5m%5D%29&g0.tab=0"
    );
}

#[test]
fn alert_expansion() {
    let labels: BTreeMap<String, String> = [("instance", "h:9100"), ("job", "node")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ext: BTreeMap<String, String> = [("dc".to_string(), "eu".to_string())].into();
    let e = env();
    let x = |t: &str| expand_alert("__alert_X", t, &labels, &ext, "http://ext", 1234567.0, &e);
    assert_eq!(
        x("{{ $labels.instance }} of {{ $labels.job }} = {{ $value }}"),
        "h:9100 of node = 1.234567e+06"
    );
    assert_eq!(x("{{ $labels }}"), "map[instance:h:9100 job:node]");
    assert_eq!(
        x(
            "{{ $labels.missing }}|{{ $externalLabels.dc }}|{{ $externalURL }}|{{ .Value | humanize }}"
        ),
        "|eu|http://ext|1.235M"
    );
    assert_eq!(x("{{ printf \"%.1f\" $value }}"), "1234567.0");
    assert_eq!(
        x("{{ .Foo }}"),
        "<error expanding template: error executing template __alert_X: template: __alert_X:1:115: executing \"__alert_X\" at <.Foo>: can't evaluate field Foo in type struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }>"
    );
    assert_eq!(
        x("{{ humanize \"x\" }}"),
        "<error expanding template: error executing template __alert_X: template: __alert_X:1:115: executing \"__alert_X\" at <humanize \"x\">: error calling humanize: strconv.ParseFloat: parsing \"x\": invalid syntax>"
    );
    assert_eq!(
        x("{{ query \"up\" }}"),
        "<error expanding template: error executing template __alert_X: template: __alert_X:1:115: executing \"__alert_X\" at <query \"up\">: error calling query: no query function configured>"
    );
    let q = |_: &str| -> Result<Vec<QuerySample>, String> {
        Ok(vec![QuerySample {
            labels: [("a".to_string(), "b".to_string())].into(),
            value: 2.0,
        }])
    };
    let e2 = env().with_query(&q);
    assert_eq!(
        expand_alert(
            "__alert_X",
            "{{ with query \"up\" }}{{ . | first | value }}{{ end }}",
            &labels,
            &ext,
            "",
            0.0,
            &e2
        ),
        "2"
    );
}

#[test]
fn error_messages() {
    assert_eq!(
        check("__alert_X", "{{ $label.foo }}"),
        Err("template: __alert_X:1: undefined variable \"$label\"".to_string())
    );
    assert_eq!(
        check("__alert_X", "{{ foo }}"),
        Err("template: __alert_X:1: function \"foo\" not defined".to_string())
    );
    assert_eq!(
        check("__alert_X", "{{"),
        Err("template: __alert_X:1: unclosed action".to_string())
    );
    assert_eq!(
        check("__alert_X", "ok {{ $labels.job }} {{ $value | humanize }}"),
        Ok(())
    );
    assert_eq!(
        err("{{"),
        "error parsing template test: template: test:1: unclosed action"
    );
    assert_eq!(
        err("a\n{{ if 1 }}"),
        "error parsing template test: template: test:2: unexpected EOF"
    );
    assert_eq!(
        err("{{ end }}"),
        "error parsing template test: template: test:1: unexpected {{end}}"
    );
    assert_eq!(
        err("{{ 1 | 2 }}"),
        "error parsing template test: template: test:1: non executable command in pipeline stage 2"
    );
    assert_eq!(
        err("{{ if }}{{ end }}"),
        "error parsing template test: template: test:1: missing value for if"
    );
    assert_eq!(
        err("{{ \"abc }}"),
        "error parsing template test: template: test:1: unterminated quoted string"
    );
    assert_eq!(
        err("{{ break }}"),
        "error parsing template test: template: test:1: {{break}} outside {{range}}"
    );
    assert_eq!(
        err("{{\n\n"),
        "error parsing template test: template: test:3: unclosed action started at test:1"
    );
    assert_eq!(
        err("{{ 3x }}"),
        "error parsing template test: template: test:1: bad number syntax: \"3x\""
    );
    assert_eq!(
        err("{{ . }}{{ template \"nope\" }}"),
        "error executing template test: template: test:1:19: executing \"test\" at <{{template \"nope\"}}>: template \"nope\" not defined"
    );
    assert_eq!(
        err("{{ gt 1 1.5 }}"),
        "error executing template test: template: test:1:3: executing \"test\" at <gt 1 1.5>: error calling gt: incompatible types for comparison"
    );
    assert_eq!(
        err("{{ toUpper 1 }}"),
        "error executing template test: template: test:1:11: executing \"test\" at <1>: expected string; found 1"
    );
    assert_eq!(
        err("{{ 1 | toUpper }}"),
        "error executing template test: template: test:1:7: executing \"test\" at <toUpper>: wrong type for value; expected string; got int"
    );
    assert_eq!(
        err("{{ humanize }}"),
        "error executing template test: template: test:1:3: executing \"test\" at <humanize>: wrong number of args for humanize: want 1 got 0"
    );
    assert_eq!(
        err("{{ range 1.5 }}{{ end }}"),
        "error executing template test: template: test:1:9: executing \"test\" at <1.5>: range can't iterate over 1.5"
    );
    assert_eq!(
        err("{{ index (args 1) 5 }}"),
        "error executing template test: template: test:1:3: executing \"test\" at <index (args 1) 5>: error calling index: value has type int; should be string"
    );
    assert_eq!(
        err("{{ (query \"x\").banana }}"),
        "error executing template test: template: test:1:4: executing \"test\" at <query \"x\">: error calling query: no query function configured"
    );
}

#[test]
fn pipelines_scoping_and_positions() {
    assert_eq!(ok("{{ \"a\" | printf \"%s-%s\" \"b\" }}"), "b-a");
    assert_eq!(ok("{{ with $x := 0 }}yes{{ else }}{{ $x }}{{ end }}"), "0");
    assert_eq!(ok("{{ $x := 1 }}{{ $x := 2 }}{{ $x }}"), "2");
    assert_eq!(ok("{{-3}}"), "-3");
    assert_eq!(
        ok("{{ define \"x\" }}{{ .a }}{{ $ }}{{ end }}{{ template \"x\" (args 1) }}"),
        "<no value>map[arg0:1]"
    );
    assert_eq!(
        err("line1\n  {{ humanize \"x\" }}"),
        "error executing template test: template: test:2:5: executing \"test\" at <humanize \"x\">: error calling humanize: strconv.ParseFloat: parsing \"x\": invalid syntax"
    );
    assert_eq!(
        err("{{ $x = 1 }}"),
        "error executing template test: template: test:1:8: executing \"test\" at <1>: undefined variable: $x"
    );
    assert_eq!(ok("{{ range $i := (args 1 2) }}{{ $i }}{{ end }}"), "12");
    assert_eq!(ok("{{ len (args) }}{{ if not (args) }}!{{ end }}"), "0!");
}

#[test]
fn regex_functions() {
    assert_eq!(ok("{{ match \"(?i)ABC\" \"xabcx\" }}"), "true");
    assert_eq!(
        ok("{{ reReplaceAll \"^(\\\\w+):\\\\d+$\" \"$1\" \"host:9100\" }}"),
        "host"
    );
    let e = err("{{ match \"(\" \"x\" }}");
    assert!(
        e.contains("error calling match: error parsing regexp: unclosed group"),
        "{e}"
    );
}

#[test]
fn alertmanager_kv_pairs_alerts_and_join() {
    let kv = |pairs: &[(&str, &str)]| {
        Value::Kv(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    let alert = |status: &str| {
        Value::Struct(Box::new(StructValue {
            type_name: "template.Alert".into(),
            fields: vec![("Status".into(), Value::str(status))],
        }))
    };
    let data = Value::Map(BTreeMap::from([
        (
            "L".to_string(),
            kv(&[("zone", "a"), ("alertname", "Down"), ("job", "api")]),
        ),
        ("G".to_string(), kv(&[("job", "api")])),
        ("E".to_string(), kv(&[])),
        (
            "A".to_string(),
            Value::List(vec![alert("firing"), alert("resolved"), alert("firing")]),
        ),
        (
            "P".to_string(),
            Value::StrMap(BTreeMap::from([("Names".to_string(), "n".to_string())])),
        ),
    ]));
    for (text, want) in [
        // alertname first, then sorted.
        (
            "{{ .L.SortedPairs.Names | join \",\" }}",
            "alertname,job,zone",
        ),
        ("{{ .L.Values | join \" \" }}", "Down api a"),
        (
            "{{ range .L.SortedPairs }}{{ .Name }}={{ .Value }};{{ end }}",
            "alertname=Down;job=api;zone=a;",
        ),
        (
            "{{ (.L.Remove .G.Names).Names | join \",\" }}",
            "alertname,zone",
        ),
        ("[{{ .E.SortedPairs.Values | join \" \" }}]", "[]"),
        ("{{ len .A.Firing }}/{{ .A.Resolved | len }}", "2/1"),
        ("{{ .L }}", "map[alertname:Down job:api zone:a]"),
        // A Prometheus `map[string]string` has no methods: `.Names` is a key.
        ("{{ .P.Names }}", "n"),
    ] {
        assert_eq!(run(text, &data).as_deref(), Ok(want), "{text}");
    }
    let e = run("{{ join \",\" 1 }}", &Value::Nil).unwrap_err();
    assert!(e.contains("expected []string"), "{e}");
}

/// Go refuses a width or precision beyond a million (`tooLarge`): a format asking for a
/// gigabyte of padding is answered with Go's markers at once, not built. Zero padding up to
/// the limit is one move, not a character at a time.
#[test]
fn huge_widths_are_refused_as_go_refuses_them() {
    assert_eq!(
        sprintf("%999999999d", &[Value::Int(1)]),
        "%!(NOVERB)%!(EXTRA int=1)"
    );
    assert_eq!(
        sprintf("%*d", &[Value::Int(999_999_999), Value::Int(1)]),
        "%!(BADWIDTH)1"
    );
    assert_eq!(
        sprintf("%.*f", &[Value::Int(2_000_000), Value::Float(1.0)]),
        "%!(BADPREC)1.000000"
    );
    let padded = sprintf("%01000000d", &[Value::Int(7)]);
    assert_eq!(padded.len(), 1_000_000);
    assert!(padded.ends_with("07") && padded.starts_with("000"));
    let precise = sprintf("%.1000000d", &[Value::Int(-7)]);
    assert_eq!(precise.len(), 1_000_001);
    assert_eq!(
        sprintf(
            "%5d|%-4d|%.3d",
            &[Value::Int(42), Value::Int(7), Value::Int(5)]
        ),
        "   42|7   |005"
    );
}

/// Nesting beyond [`parse::MAX_NESTING`] is a parse error naming the template (Go's words
/// for parentheses), not a stack overflow that ends the process; up to it, templates parse
/// and run on a 2 MiB thread (what the evaluation thread and Tokio's workers have).
#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let n = parse::MAX_NESTING;
    let ok_parens = format!("{{{{{}1{}}}}}", "(".repeat(n), ")".repeat(n));
    let deep_parens = format!("{{{{{}1{}}}}}", "(".repeat(n + 1), ")".repeat(n + 1));
    let ok_ifs = format!("{}x{}", "{{if 1}}".repeat(n), "{{end}}".repeat(n));
    let deep_ifs = format!("{}x{}", "{{if 1}}".repeat(n + 1), "{{end}}".repeat(n + 1));
    let huge = format!("{{{{{}1{}}}}}", "(".repeat(20_000), ")".repeat(20_000));
    // A flat value mapping: a long `else if` chain is no nesting.
    let chain = |n: usize| {
        let mut t = String::from("{{if eq . 0}}zero");
        for i in 1..n {
            t.push_str(&format!("{{{{else if eq . {i}}}}}v{i}"));
        }
        t.push_str("{{else}}other{{end}}");
        t
    };
    let (long_chain, too_long_chain) = (
        chain(parse::MAX_ELSE_CHAIN),
        chain(parse::MAX_ELSE_CHAIN + 2),
    );
    let results = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let last = Value::Int(parse::MAX_ELSE_CHAIN as i64 - 1);
            let chained = [
                run(&long_chain, &last),
                run(&too_long_chain, &Value::Int(0)),
            ];
            [ok_parens, deep_parens, ok_ifs, deep_ifs, huge]
                .iter()
                .map(|t| run(t, &Value::Nil))
                .chain(chained)
                .collect::<Vec<_>>()
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(results[0].as_deref(), Ok("1"));
    let e = results[1].as_ref().unwrap_err();
    assert!(
        e.contains("template: test:1: max expression depth exceeded"),
        "{e}"
    );
    assert_eq!(results[2].as_deref(), Ok("x"));
    let e = results[3].as_ref().unwrap_err();
    assert!(e.contains("max nesting depth exceeded"), "{e}");
    assert!(results[4].is_err());
    assert_eq!(
        results[5].as_deref(),
        Ok(format!("v{}", parse::MAX_ELSE_CHAIN - 1).as_str())
    );
    let e = results[6].as_ref().unwrap_err();
    assert!(e.contains("too many else if branches"), "{e}");
}

/// A counting `range` runs lazily, as Go's: two hundred million iterations ended by `break`
/// at the first cost nothing.
#[test]
fn a_counting_range_is_lazy() {
    assert_eq!(ok("{{range 200000000}}{{.}}{{break}}{{end}}"), "0");
    assert_eq!(ok("{{range $i := 3}}{{$i}}{{end}}"), "012");
    assert_eq!(ok("{{range 0}}x{{else}}none{{end}}"), "none");
}

/// An action prints the sample a pointer holds, as Go's `printableValue` does (`{...}`);
/// `print` keeps Go's `&{...}`.
#[test]
fn an_action_prints_a_sample_without_its_pointer() {
    let query = |_: &str| {
        Ok(vec![QuerySample {
            labels: BTreeMap::from([
                ("__name__".to_owned(), "metric".to_owned()),
                ("instance".to_owned(), "a".to_owned()),
            ]),
            value: 11.0,
        }])
    };
    let env = env().with_query(&query);
    let run = |t: &str| expand("test", t, &Value::Nil, &env).unwrap();
    assert_eq!(
        run("{{ query \"metric\" | first }}"),
        "{map[__name__:metric instance:a] 11}"
    );
    assert_eq!(
        run("{{ range query \"metric\" }}{{ . }}{{ end }}"),
        "{map[__name__:metric instance:a] 11}"
    );
    assert_eq!(
        run("{{ print (query \"metric\" | first) }}"),
        "&{map[__name__:metric instance:a] 11}"
    );
}

/// A duration parameter takes any integral constant, as Go's `evalInteger` (`IsInt`).
#[test]
fn integral_float_constants_are_durations() {
    assert_eq!(ok("{{ ((0 | toTime).Add 1e9).Unix }}"), "1");
    assert_eq!(ok("{{ (1800 | toDuration).Round 6e10 }}"), "30m0s");
    assert!(err("{{ (1800 | toDuration).Round 1.5 }}").contains("expected integer"));
}
