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
}
