//! The Prometheus text exposition format (0.0.4), as scrapes return it.

use crate::promql::Labels;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapedSample {
    /// Name and labels.
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// The sample's own timestamp (ms), when the line carries one.
    pub timestamp: Option<i64>,
}

/// The two exposition formats a target may answer in, told apart by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4` (and anything else): timestamps in ms.
    Text,
    /// `application/openmetrics-text`: timestamps in seconds, exemplars after `#`, the
    /// `info`, `stateset` and `gaugehistogram` types, `# UNIT` and `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The format of a scraped page as Prometheus 3 chooses its parser (`extractMediaType`):
    /// by the media type of its `Content-Type`, `fallback` (the job's
    /// `fallback_scrape_protocol`) when that is missing or not one Prometheus reads; without
    /// a fallback such a page fails the scrape, with Prometheus's error.
    ///
    /// # Errors
    ///
    /// A missing, unreadable or unsupported media type and no fallback; the protobuf format,
    /// which this reader does not parse.
    pub fn for_scrape(
        content_type: Option<&str>,
        fallback: Option<Format>,
    ) -> Result<Self, String> {
        let media = content_type.map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        match media.as_deref() {
            Some("text/plain") => Ok(Format::Text),
            Some("application/openmetrics-text") => Ok(Format::OpenMetrics),
            Some("application/vnd.google.protobuf") => Err(
                "received the protobuf exposition format, which this evaluator does not read \
                 (it asks for text)"
                    .to_owned(),
            ),
            None | Some("") => fallback.ok_or_else(|| {
                "non-compliant scrape target sending blank Content-Type and no \
                 fallback_scrape_protocol specified for target"
                    .to_owned()
            }),
            Some(_) => fallback.ok_or_else(|| {
                format!(
                    "received unsupported Content-Type {:?} and no fallback_scrape_protocol \
                     specified for target",
                    content_type.unwrap_or_default()
                )
            }),
        }
    }

    /// The format of a response with this `Content-Type`, leniently: OpenMetrics when it
    /// says so, else the text format.
    pub fn of_content_type(content_type: Option<&str>) -> Self {
        match content_type {
            Some(ct)
                if ct
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/openmetrics-text") =>
            {
                Format::OpenMetrics
            }
            _ => Format::Text,
        }
    }
}

/// Parses exposition text: `# HELP`/`# TYPE`/comments skipped, one sample per other line
/// (`name{a="b"} value [timestamp_ms]`), read as Prometheus's text lexer reads them. Errors
/// name the line.
pub fn parse_text(text: &str) -> Result<Vec<ScrapedSample>, String> {
    parse_samples(text, Format::Text)
}

/// Parses exposition text in `format` (see [`parse_text`]); OpenMetrics timestamps are
/// seconds, turned into ms, and exemplars are left out.
pub fn parse_samples(text: &str, format: Format) -> Result<Vec<ScrapedSample>, String> {
    let mut out = Vec::new();
    let mut eof = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if eof {
            // OpenMetrics: nothing follows `# EOF`.
            if line.is_empty() {
                continue;
            }
            return Err(format!("line {}: unexpected data after # EOF", i + 1));
        }
        if format == Format::OpenMetrics && line == "# EOF" {
            eof = true;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: String| format!("line {}: {m}", i + 1);
        let (labels, rest) = parse_series(line).map_err(err)?;
        if !rest.starts_with([' ', '\t']) {
            return Err(err(format!(
                "expected a value after the series, got {rest:?}"
            )));
        }
        // An OpenMetrics exemplar (`# {trace_id="..."} 1 [ts]`) follows the sample.
        let rest = match format {
            Format::OpenMetrics => rest.split_once('#').map_or(rest, |(sample, _)| sample),
            Format::Text => rest,
        };
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .ok_or_else(|| err("missing value".into()))
            .and_then(|v| parse_value(v).map_err(err))?;
        let timestamp = match fields.next() {
            Some(ts) => Some(match format {
                Format::Text => ts
                    .parse::<i64>()
                    .map_err(|_| err(format!("invalid timestamp {ts:?}")))?,
                Format::OpenMetrics => parse_value(ts)
                    .ok()
                    .filter(|s| s.is_finite())
                    .map(|s| (s * 1000.0).round() as i64)
                    .ok_or_else(|| err(format!("invalid timestamp {ts:?}")))?,
            }),
            None => None,
        };
        if let Some(extra) = fields.next() {
            return Err(err(format!("unexpected {extra:?} after the timestamp")));
        }
        out.push(ScrapedSample {
            labels,
            value,
            timestamp,
        });
    }
    if format == Format::OpenMetrics && !eof {
        return Err("data does not end with # EOF".to_owned());
    }
    Ok(out)
}

/// A sample value as Prometheus reads it: Go's `strconv.ParseFloat` without hexadecimal
/// floats or underscores (`1.5`, `1e3`, `0640` is 640, `+Inf`, `NaN`, any case).
fn parse_value(v: &str) -> Result<f64, String> {
    if v.contains(['p', 'P', '_', 'x', 'X']) {
        return Err(format!("unsupported character in float {v:?}"));
    }
    v.parse::<f64>().map_err(|_| format!("invalid value {v:?}"))
}

/// The series at the start of a sample line, `name{label="value",...}` (or the quoted forms
/// of Prometheus 3: `{"my.metric","a.b"="v"}`), and the rest of the line. Label values
/// unescape `\\`, `\"` and `\n`; any other backslash stays as written, as Prometheus's
/// lexer keeps it.
fn parse_series(line: &str) -> Result<(Labels, &str), String> {
    let b = line.as_bytes();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut i = name_len(b, true);
    if i > 0 {
        pairs.push(("__name__".into(), line[..i].to_owned()));
    }
    let skip_blanks = |i: &mut usize| {
        while matches!(b.get(*i), Some(b' ' | b'\t')) {
            *i += 1;
        }
    };
    // Blanks may stand between the name and its braces.
    let mut brace = i;
    skip_blanks(&mut brace);
    if b.get(brace) == Some(&b'{') {
        i = brace + 1;
        loop {
            skip_blanks(&mut i);
            if b.get(i) == Some(&b'}') {
                i += 1;
                break;
            }
            let (name, quoted) = if b.get(i) == Some(&b'"') {
                let (s, n) = quoted_string(&line[i..])?;
                i += n;
                (s, true)
            } else {
                let n = name_len(&b[i..], false);
                if n == 0 {
                    return Err(format!("invalid label name at {:?}", &line[i..]));
                }
                i += n;
                (line[i - n..i].to_owned(), false)
            };
            skip_blanks(&mut i);
            if b.get(i) == Some(&b'=') {
                i += 1;
                skip_blanks(&mut i);
                if b.get(i) != Some(&b'"') {
                    return Err(format!("expected a quoted label value for {name:?}"));
                }
                let (value, n) = quoted_string(&line[i..])?;
                i += n;
                pairs.push((name, value));
            } else if quoted && !pairs.iter().any(|(k, _)| k == "__name__") {
                // A quoted name alone in the braces is the metric's name.
                pairs.push(("__name__".into(), name));
            } else {
                return Err(format!("expected '=' after label name {name:?}"));
            }
            skip_blanks(&mut i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(format!("expected ',' or '}}' at {:?}", &line[i..])),
            }
        }
    }
    if !pairs.iter().any(|(k, _)| k == "__name__") {
        return Err(format!("no metric name in {line:?}"));
    }
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("label name {:?} is not unique", w[0]));
    }
    Ok((Labels::from_pairs(pairs), &line[i..]))
}

/// The length of the legacy metric (with `:`) or label name at the start of `b`.
fn name_len(b: &[u8], metric: bool) -> usize {
    let first = |c: u8| c.is_ascii_alphabetic() || c == b'_' || (metric && c == b':');
    match b.first() {
        Some(&c) if first(c) => {
            1 + b[1..]
                .iter()
                .take_while(|&&c| first(c) || c.is_ascii_digit())
                .count()
        }
        _ => 0,
    }
}

/// The quoted string at the start of `s` (which starts with `"`), unescaped, and the bytes it
/// took with its quotes.
fn quoted_string(s: &str) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            '\n' => break,
            c => out.push(c),
        }
    }
    Err(format!("unterminated quoted string {s:?}"))
}

/// What a `# TYPE` and `# HELP` pair says of one metric family.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FamilyMetadata {
    /// `counter`, `gauge`, `histogram`, `summary`, or `unknown` (`untyped`, or no `# TYPE`).
    pub kind: String,
    /// The help text, unescaped (`\\` and `\n`).
    pub help: String,
}

/// The `# TYPE` and `# HELP` lines of exposition text, by metric family name (as Prometheus's
/// scrape keeps them for `/api/v1/metadata`). Other comments (`#HELP` without a space is one)
/// are skipped; a family with neither line has no entry.
///
/// # Errors
///
/// A `# TYPE` line without a type or with one the text format does not have, as Prometheus
/// refuses the whole scrape for it (`invalid metric type "..."`).
pub fn parse_metadata(
    text: &str,
) -> Result<std::collections::BTreeMap<String, FamilyMetadata>, String> {
    parse_metadata_as(text, Format::Text)
}

/// [`parse_metadata`] for `format`: OpenMetrics also has the `info`, `stateset` and
/// `gaugehistogram` types (kept as such, as Prometheus's metadata API shows them).
///
/// # Errors
///
/// As [`parse_metadata`].
pub fn parse_metadata_as(
    text: &str,
    format: Format,
) -> Result<std::collections::BTreeMap<String, FamilyMetadata>, String> {
    let mut out: std::collections::BTreeMap<String, FamilyMetadata> =
        std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        if !rest.starts_with([' ', '\t']) {
            continue;
        }
        let rest = rest.trim_start();
        let (keyword, rest) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        if keyword != "TYPE" && keyword != "HELP" {
            continue;
        }
        let rest = rest.trim_start();
        let (name, value) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        // A quoted (UTF-8) name, without its quotes.
        let name = name
            .strip_prefix('"')
            .and_then(|n| n.strip_suffix('"'))
            .unwrap_or(name);
        if name.is_empty() {
            continue;
        }
        let entry = out
            .entry(name.to_owned())
            .or_insert_with(|| FamilyMetadata {
                kind: "unknown".into(),
                help: String::new(),
            });
        if keyword == "TYPE" {
            entry.kind = match value {
                "untyped" => "unknown".into(),
                "counter" | "gauge" | "histogram" | "summary" => value.to_owned(),
                "unknown" | "info" | "stateset" | "gaugehistogram"
                    if format == Format::OpenMetrics =>
                {
                    value.to_owned()
                }
                other => return Err(format!("invalid metric type {other:?}")),
            };
        } else {
            entry.help = unescape_help(value);
        }
    }
    Ok(out)
}

/// The text format's escapes in `# HELP`: `\\` and `\n`; any other backslash stays.
fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_and_without_timestamps() {
        let text = "# HELP up x\n# TYPE up gauge\nup{job=\"a b\",x=\"q\\\"uote\"} 1\nno_labels +Inf 1700000000000\n";
        let got = parse_text(text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].labels.get("job"), Some("a b"));
        assert_eq!(got[0].labels.get("x"), Some("q\"uote"));
        assert_eq!(got[1].value, f64::INFINITY);
        assert_eq!(got[1].timestamp, Some(1_700_000_000_000));
        assert!(parse_text("up 1 2 3").unwrap_err().starts_with("line 1:"));
    }

    /// As Prometheus's text lexer: only `\\`, `\"` and `\n` are escapes in label values
    /// (a regular expression in a label stays as written); values are decimal (`0640` is
    /// 640) and hexadecimal or underscored ones are refused; quoted names; duplicate label
    /// names refused.
    #[test]
    fn lines_are_read_as_prometheus_reads_them() {
        let got = parse_text(
            "m{re=\"\\d+\",tab=\"a\\tb\",nl=\"x\\ny\",bs=\"c:\\\\d\"} 0640\n{\"my.metric\",\"a.b\"=\"v\" } 1e3 5\nm2 { a = \"1\" , } -Inf\n",
        )
        .unwrap();
        let l = &got[0].labels;
        assert_eq!(l.get("re"), Some("\\d+"));
        assert_eq!(l.get("tab"), Some("a\\tb"));
        assert_eq!(l.get("nl"), Some("x\ny"));
        assert_eq!(l.get("bs"), Some("c:\\d"));
        assert_eq!(got[0].value, 640.0);
        assert_eq!(got[1].labels.get("__name__"), Some("my.metric"));
        assert_eq!(got[1].labels.get("a.b"), Some("v"));
        assert_eq!((got[1].value, got[1].timestamp), (1000.0, Some(5)));
        assert_eq!(got[2].labels.get("a"), Some("1"));
        assert_eq!(got[2].value, f64::NEG_INFINITY);
        for bad in [
            "m 0x10",
            "m 1_000",
            "m 0x1p-2",
            "m{a=\"1\",a=\"2\"} 1",
            "m{a=1} 1",
            "m{a=\"1} 1",
            "{a=\"1\"} 1",
            "m{} ",
        ] {
            assert!(parse_text(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_text("m{} 2").unwrap()[0].value, 2.0);
    }

    /// An OpenMetrics answer (what Rust's prometheus-client sends): its types, exemplars
    /// and second timestamps, which the text parser would refuse or misread.
    #[test]
    fn openmetrics_is_read_by_its_content_type() {
        assert_eq!(
            Format::of_content_type(Some(
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::of_content_type(Some("text/plain; version=0.0.4")),
            Format::Text
        );
        assert_eq!(Format::of_content_type(None), Format::Text);
        let text = "# TYPE build info\n# HELP build Build.\nbuild_info{version=\"1\"} 1\n# TYPE req counter\n# UNIT req seconds\nreq_total{code=\"200\"} 17 1700000000.5 # {trace_id=\"abc\"} 1 1700000000.1\n# TYPE s stateset\ns{s=\"a\"} 1\n# EOF\n";
        let got = parse_samples(text, Format::OpenMetrics).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[1].value, got[1].timestamp),
            (17.0, Some(1_700_000_000_500))
        );
        let meta = parse_metadata_as(text, Format::OpenMetrics).unwrap();
        assert_eq!(meta["build"].kind, "info");
        assert_eq!(meta["s"].kind, "stateset");
        // The text parser refuses the same page.
        assert!(parse_metadata(text).is_err());
        assert!(parse_text(text).is_err());
    }

    /// Prometheus 3 picks the parser by the media type, and fails a page whose type is
    /// missing or unknown unless the job names a fallback; OpenMetrics must end with `# EOF`.
    #[test]
    fn scraped_pages_are_read_as_their_content_type_says() {
        let om = Some(Format::OpenMetrics);
        for (ct, want) in [
            ("text/plain; version=0.0.4; charset=utf-8", Format::Text),
            ("Text/Plain", Format::Text),
            (
                "application/openmetrics-text; version=1.0.0",
                Format::OpenMetrics,
            ),
        ] {
            assert_eq!(Format::for_scrape(Some(ct), None), Ok(want), "{ct}");
        }
        let e = Format::for_scrape(None, None).unwrap_err();
        assert!(
            e.contains("blank Content-Type and no fallback_scrape_protocol"),
            "{e}"
        );
        let e = Format::for_scrape(Some("application/octet-stream"), None).unwrap_err();
        assert!(
            e.contains("unsupported Content-Type \"application/octet-stream\""),
            "{e}"
        );
        assert_eq!(Format::for_scrape(None, om), Ok(Format::OpenMetrics));
        assert_eq!(
            Format::for_scrape(Some("text/html"), om),
            Ok(Format::OpenMetrics)
        );
        assert!(Format::for_scrape(Some("application/vnd.google.protobuf"), om).is_err());

        assert!(parse_samples("m 1\n# EOF\n", Format::OpenMetrics).is_ok());
        let e = parse_samples("m 1\n", Format::OpenMetrics).unwrap_err();
        assert!(e.contains("# EOF"), "{e}");
        let e = parse_samples("m 1\n# EOF\nm 2\n", Format::OpenMetrics).unwrap_err();
        assert!(e.contains("line 3: unexpected data after # EOF"), "{e}");
        // The text format has no `# EOF`: a comment there.
        assert_eq!(
            parse_samples("m 1\n# EOF\n", Format::Text).unwrap().len(),
            1
        );
    }

    #[test]
    fn metadata_of_type_and_help_lines() {
        let text = "# HELP up Whether \\\\ the\\ntarget is up.\n# TYPE up gauge\n# TYPE raw untyped\n# HELP only_help x\n# just a comment\nup 1\nno_meta 2\n";
        let m = parse_metadata(text).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["up"].kind, "gauge");
        assert_eq!(m["up"].help, "Whether \\ the\ntarget is up.");
        assert_eq!(m["raw"].kind, "unknown");
        assert_eq!(m["only_help"].kind, "unknown");
        assert_eq!(m["only_help"].help, "x");
        // As Prometheus's parser: a type it does not know, or none, fails the scrape; a
        // comment is not a HELP.
        for bad in ["# TYPE x bogus\n", "# TYPE x\n", "# TYPE x gauge \n"] {
            assert!(parse_metadata(bad).is_err(), "{bad:?}");
        }
        assert!(parse_metadata("#HELP x y\n").unwrap().is_empty());
    }
}
