//! The Prometheus text exposition format (0.0.4), as scrapes return it.

use crate::promql::Labels;
use crate::promqltest::{parse_metric, parse_number};

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

/// Parses exposition text: `# HELP`/`# TYPE`/comments skipped, one sample per other line
/// (`name{a="b"} value [timestamp_ms]`). Errors name the line.
pub fn parse_text(text: &str) -> Result<Vec<ScrapedSample>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: String| format!("line {}: {m}", i + 1);
        let (labels, rest) = split_sample(line).map_err(err)?;
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .ok_or_else(|| err("missing value".into()))
            .and_then(|v| parse_number(v).map_err(err))?;
        let timestamp = match fields.next() {
            Some(ts) => Some(
                ts.parse::<i64>()
                    .map_err(|_| err(format!("invalid timestamp {ts:?}")))?,
            ),
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
    Ok(out)
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

fn split_sample(line: &str) -> Result<(Labels, &str), String> {
    // The series part ends at the first space outside braces and quotes.
    let mut in_braces = false;
    let mut quote = false;
    let mut escaped = false;
    let mut end = line.len();
    for (i, c) in line.char_indices() {
        if quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quote = false;
            }
            continue;
        }
        match c {
            '"' if in_braces => quote = true,
            '{' => in_braces = true,
            '}' => in_braces = false,
            c if c.is_whitespace() && !in_braces => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let labels = parse_metric(&line[..end])?;
    Ok((labels, &line[end..]))
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
