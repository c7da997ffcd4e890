//! `label_replace`, `label_join` and the labels of `absent`.

use std::collections::HashSet;

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use regex::Regex;

use super::Result;
use crate::promql::EvalError;
use crate::promql::value::{Labels, METRIC_NAME, Sample};

/// Prometheus 3 validates label names as UTF-8 (which a Rust string always is): only the
/// empty name is invalid.
fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// `label_replace`: where the fully anchored `regex` matches the value of `src` (empty when
/// unset), sets `dst` to `repl` with `$1`/`${name}` expanded (an empty result removes it).
pub(super) fn replace(
    v: Vec<Sample>,
    dst: &str,
    repl: &str,
    src: &str,
    regex: &str,
) -> Result<Vec<Sample>> {
    let re = Regex::new(&format!("^(?s:{})$", crate::goregex::go_syntax(regex))).map_err(|_| {
        EvalError::new(format!(
            "invalid regular expression in label_replace(): {regex}"
        ))
    })?;
    if !is_valid_label_name(dst) {
        return Err(EvalError::new(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    Ok(v.into_iter()
        .map(|mut s| {
            let src_val = s.labels.get(src).unwrap_or("");
            if let Some(caps) = re.captures(src_val) {
                let res = expand(&re, &caps, repl);
                s.labels.set(dst.to_owned(), res);
            }
            s
        })
        .collect())
}

/// Go's `Regexp.Expand`: `$$` is a literal `$`; `$name` takes the longest run of letters,
/// digits and `_`, `${name}` is braced; numbers are group indexes (no leading zeros),
/// other names group names; unknown or unmatched groups expand to nothing; a malformed
/// reference leaves the `$` as text.
pub(super) fn expand(re: &Regex, caps: &regex::Captures<'_>, template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some((name, num, after)) = extract(rest) else {
            out.push('$');
            continue;
        };
        rest = after;
        match num {
            Some(i) => {
                if let Some(m) = caps.get(i) {
                    out.push_str(m.as_str());
                }
            }
            None => {
                for (i, n) in re.capture_names().enumerate() {
                    if n == Some(name)
                        && let Some(m) = caps.get(i)
                    {
                        out.push_str(m.as_str());
                        break;
                    }
                }
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses a reference after `$`: the name, its group number if numeric, and the rest.
fn extract(s: &str) -> Option<(&str, Option<usize>, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphabetic() || c.is_numeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let mut rest = &body[len..];
    if braced {
        rest = rest.strip_prefix('}')?;
    }
    let mut num: Option<usize> = Some(0);
    for b in name.bytes() {
        match num {
            Some(n) if b.is_ascii_digit() && n < 100_000_000 => {
                num = Some(n * 10 + usize::from(b - b'0'));
            }
            _ => {
                num = None;
                break;
            }
        }
    }
    if name.len() > 1 && name.starts_with('0') {
        num = None;
    }
    Some((name, num, rest))
}

/// `label_join`: sets `dst` to the values of `srcs` (empty when unset) joined by `sep`.
pub(super) fn join(v: Vec<Sample>, dst: &str, sep: &str, srcs: &[String]) -> Result<Vec<Sample>> {
    for src in srcs {
        if !is_valid_label_name(src) {
            return Err(EvalError::new(format!(
                "invalid source label name in label_join(): {src}"
            )));
        }
    }
    if !is_valid_label_name(dst) {
        return Err(EvalError::new(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(v.into_iter()
        .map(|mut s| {
            let joined = srcs
                .iter()
                .map(|src| s.labels.get(src).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(sep);
            s.labels.set(dst.to_owned(), joined);
            s
        })
        .collect())
}

/// The labels `absent` and `absent_over_time` give their sample: those the argument's
/// selector matches exactly (`=`), except `__name__` and labels matched more than once
/// (Prometheus's `createLabelsForAbsentFunction`); none for other expressions.
pub(super) fn absent_labels(arg: Option<&Expr>) -> Labels {
    let mut arg = arg;
    while let Some(Expr::Paren(p)) = arg {
        arg = Some(&p.expr);
    }
    let vs = match arg {
        Some(Expr::VectorSelector(vs)) => vs,
        Some(Expr::MatrixSelector(ms)) => &ms.vs,
        _ => return Labels::new(),
    };
    let mut labels = Labels::new();
    let mut has: HashSet<&str> = HashSet::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !has.contains(m.name.as_str()) {
            labels.set(m.name.clone(), m.value.clone());
            has.insert(&m.name);
        } else {
            labels.remove(&m.name);
        }
    }
    labels
}
