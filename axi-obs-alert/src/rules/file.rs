//! Prometheus rule files: loading and validation as `promtool check rules` does it.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::promql::{self, Expr};

/// A loaded, validated rule file.
#[derive(Debug, Clone)]
pub struct RuleFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The groups, in file order.
    pub groups: Vec<RuleGroup>,
}

/// A group of rules evaluated together, in order, at one interval.
#[derive(Debug, Clone)]
pub struct RuleGroup {
    /// The group name (unique in its file).
    pub name: String,
    /// The evaluation interval; the global one when absent.
    pub interval: Option<Duration>,
    /// How far back from the evaluation time queries look; the global one when absent.
    pub query_offset: Option<Duration>,
    /// The most series an alerting rule may produce, or a recording rule may write (0: no
    /// limit).
    pub limit: usize,
    /// Labels added to every rule's output (rule labels win).
    pub labels: BTreeMap<String, String>,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    /// The 1-based line of the group's `name`.
    pub line: usize,
}

/// One alerting or recording rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Alert or record, with its name.
    pub kind: RuleKind,
    /// The expression as written.
    pub expr_text: String,
    /// The expression, parsed.
    pub expr: Expr,
    /// How long an alert stays pending before it fires.
    pub for_: Duration,
    /// How long an alert keeps firing after its condition is gone.
    pub keep_firing_for: Duration,
    /// Labels added to the output.
    pub labels: BTreeMap<String, String>,
    /// Alert annotations (templates).
    pub annotations: BTreeMap<String, String>,
    /// The 1-based line of the rule's `alert` or `record` key.
    pub line: usize,
}

/// Whether a rule alerts or records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// `alert: NAME`.
    Alert(String),
    /// `record: NAME`.
    Record(String),
}

impl RuleKind {
    /// The alert or recorded metric name.
    pub fn name(&self) -> &str {
        match self {
            RuleKind::Alert(n) | RuleKind::Record(n) => n,
        }
    }
}

/// One problem in a rule file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The group, when the problem is inside one.
    pub group: Option<String>,
    /// The rule (1-based index in its group, and its name when it has one).
    pub rule: Option<(usize, String)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(g) = &self.group {
            write!(f, "group {g:?}, ")?;
        }
        if let Some((i, name)) = &self.rule {
            if name.is_empty() {
                write!(f, "rule {i}: ")?;
            } else {
                write!(f, "rule {i} ({name:?}): ")?;
            }
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuleError {}

/// A warning that does not make the file invalid (promtool's lints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleWarning {
    /// The file.
    pub file: PathBuf,
    /// What promtool would print.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default, deserialize_with = "text")]
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    query_offset: Option<String>,
    #[serde(default)]
    limit: usize,
    #[serde(default, deserialize_with = "text_map")]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default, deserialize_with = "opt_text")]
    record: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    alert: Option<String>,
    #[serde(default)]
    expr: Option<serde_norway::Value>,
    #[serde(default, rename = "for", deserialize_with = "opt_text")]
    for_: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    keep_firing_for: Option<String>,
    #[serde(default, deserialize_with = "text_map")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "text_map")]
    annotations: BTreeMap<String, String>,
}

/// A YAML scalar read as text, as Go's yaml.v3 decodes any scalar into a string field:
/// Prometheus loads `labels: {priority: 1}`, `page: true` or `for: 0`, and so do we. (The
/// number's text is Rust's: `1e3` reads as `1000`, where Go keeps what was written.) A null
/// is empty, as in Go.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Scalar::deserialize(d).map(|s| s.0)
}

fn opt_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<Scalar>::deserialize(d).map(|s| s.map(|s| s.0))
}

fn text_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    BTreeMap::<String, Scalar>::deserialize(d)
        .map(|m| m.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// Reads and validates a rule file.
pub fn load(path: &Path) -> Result<(RuleFile, Vec<RuleWarning>), Vec<RuleError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![RuleError {
            file: path.to_owned(),
            line: None,
            column: None,
            group: None,
            rule: None,
            message: format!("cannot read: {e}"),
        }]
    })?;
    parse(&text, path)
}

/// Validates rule-file text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<(RuleFile, Vec<RuleWarning>), Vec<RuleError>> {
    let err = |line: Option<usize>, column: Option<usize>, message: String| RuleError {
        file: path.to_owned(),
        line,
        column,
        group: None,
        rule: None,
        message,
    };
    // Like Prometheus, read the first YAML document only; resolve anchors and `<<` merges
    // first, then map onto the strict structure.
    let first = serde_norway::Deserializer::from_str(text).next();
    let Some(doc) = first else {
        return Ok((
            RuleFile {
                path: path.to_owned(),
                groups: Vec::new(),
            },
            Vec::new(),
        ));
    };
    let mut value = serde_norway::Value::deserialize(doc).map_err(|e| {
        let loc = e.location();
        vec![err(
            loc.as_ref().map(|l| l.line()),
            loc.as_ref().map(|l| l.column()),
            e.to_string(),
        )]
    })?;
    if value.is_null() {
        return Ok((
            RuleFile {
                path: path.to_owned(),
                groups: Vec::new(),
            },
            Vec::new(),
        ));
    }
    value
        .apply_merge()
        .map_err(|e| vec![err(None, None, e.to_string())])?;
    let raw: RawFile = serde_norway::from_value(value).map_err(|e| {
        // `from_value` has no positions; find the offending key in the text for the line.
        let message = e.to_string();
        let line = message
            .split('`')
            .nth(1)
            .and_then(|field| Locator::new(text).find(field, "", 1));
        vec![err(line, None, message)]
    })?;

    let locator = Locator::new(text);
    let mut errors = Vec::new();
    let mut groups = Vec::with_capacity(raw.groups.len());
    let mut seen_groups = HashSet::new();
    let mut cursor = 1;
    for g in raw.groups {
        let line = locator.find("name", &g.name, cursor);
        cursor = line.unwrap_or(cursor);
        let gerr = |message: String, line: Option<usize>| RuleError {
            file: path.to_owned(),
            line,
            column: None,
            group: Some(g.name.clone()),
            rule: None,
            message,
        };
        if g.name.is_empty() {
            errors.push(gerr("Groupname must not be empty".into(), line));
        } else if !seen_groups.insert(g.name.clone()) {
            errors.push(gerr(
                format!("groupname: {:?} is repeated in the same file", g.name),
                line,
            ));
        }
        let interval = parse_opt_duration(g.interval.as_deref())
            .map_err(|m| errors.push(gerr(format!("interval: {m}"), line)))
            .ok()
            .flatten();
        let query_offset = parse_opt_duration(g.query_offset.as_deref())
            .map_err(|m| errors.push(gerr(format!("query_offset: {m}"), line)))
            .ok()
            .flatten();
        for k in g.labels.keys() {
            if !is_valid_label_name(k) || k == "__name__" {
                errors.push(gerr(format!("invalid label name: {k}"), line));
            }
        }
        let mut rules = Vec::with_capacity(g.rules.len());
        for (i, r) in g.rules.into_iter().enumerate() {
            let name = r
                .alert
                .clone()
                .or_else(|| r.record.clone())
                .unwrap_or_default();
            let key = if r.alert.is_some() { "alert" } else { "record" };
            let rline = locator.find(key, &name, cursor);
            cursor = rline.unwrap_or(cursor);
            let rerr = |message: String| RuleError {
                file: path.to_owned(),
                line: rline,
                column: None,
                group: Some(g.name.clone()),
                rule: Some((i + 1, name.clone())),
                message,
            };
            match check_rule(r) {
                Ok(mut rule) => {
                    rule.line = rline.unwrap_or(0);
                    rules.push(rule);
                }
                Err(msgs) => errors.extend(msgs.into_iter().map(rerr)),
            }
        }
        groups.push(RuleGroup {
            name: g.name,
            interval,
            query_offset,
            limit: g.limit,
            labels: g.labels,
            rules,
            line: line.unwrap_or(0),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let file = RuleFile {
        path: path.to_owned(),
        groups,
    };
    let warnings = duplicate_rules(&file);
    Ok((file, warnings))
}

fn check_rule(r: RawRule) -> Result<Rule, Vec<String>> {
    let mut errs = Vec::new();
    let empty = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
    let kind = match (&r.record, &r.alert) {
        (Some(_), Some(_)) if !empty(&r.record) && !empty(&r.alert) => {
            errs.push("only one of 'record' and 'alert' must be set".into());
            None
        }
        _ if empty(&r.record) && empty(&r.alert) => {
            errs.push("one of 'record' or 'alert' must be set".into());
            None
        }
        (Some(rec), _) if !rec.is_empty() => Some(RuleKind::Record(rec.clone())),
        (_, Some(alert)) => Some(RuleKind::Alert(alert.clone())),
        _ => None,
    };
    let expr_text = match &r.expr {
        None | Some(serde_norway::Value::Null) => String::new(),
        Some(serde_norway::Value::String(s)) => s.clone(),
        Some(serde_norway::Value::Number(n)) => n.to_string(),
        Some(serde_norway::Value::Bool(b)) => b.to_string(),
        Some(_) => {
            errs.push("field 'expr' must be a string".into());
            String::new()
        }
    };
    let mut expr = None;
    if expr_text.trim().is_empty() {
        errs.push("field 'expr' must be set in rule".into());
    } else {
        match promql::parse(&expr_text) {
            Ok(e) => expr = Some(e),
            Err(e) => errs.push(format!("could not parse expression: {e}")),
        }
    }
    let for_ = parse_opt_duration(r.for_.as_deref())
        .map_err(|m| errs.push(format!("for: {m}")))
        .ok()
        .flatten();
    let keep_firing_for = parse_opt_duration(r.keep_firing_for.as_deref())
        .map_err(|m| errs.push(format!("keep_firing_for: {m}")))
        .ok()
        .flatten();
    if let Some(RuleKind::Record(name)) = &kind {
        if !r.annotations.is_empty() {
            errs.push("invalid field 'annotations' in recording rule".into());
        }
        // Prometheus checks `r.For != 0`: `for: 0s` is allowed.
        if for_.is_some_and(|d| !d.is_zero()) {
            errs.push("invalid field 'for' in recording rule".into());
        }
        if keep_firing_for.is_some_and(|d| !d.is_zero()) {
            errs.push("invalid field 'keep_firing_for' in recording rule".into());
        }
        // As Prometheus 3's `rulefmt`: any UTF-8 name, but braces are taken for an
        // expression written in the wrong field.
        if name.contains(['{', '}']) {
            errs.push(format!(
                "braces present in the recording rule name; should it be in expr?: {name}"
            ));
        } else if name.is_empty() {
            errs.push(format!("invalid recording rule name: {name}"));
        }
    }
    for k in r.labels.keys() {
        if !is_valid_label_name(k) || k == "__name__" {
            errs.push(format!("invalid label name: {k}"));
        }
    }
    for k in r.annotations.keys() {
        if !is_valid_label_name(k) {
            errs.push(format!("invalid annotation name: {k}"));
        }
    }
    if let Some(RuleKind::Alert(name)) = &kind {
        let template = format!("__alert_{name}");
        for (what, map) in [("label", &r.labels), ("annotation", &r.annotations)] {
            for (k, v) in map {
                if let Err(e) = crate::template::check(&template, v) {
                    errs.push(format!("{what} {k:?}: {e}"));
                }
            }
        }
    }
    match (kind, expr) {
        (Some(kind), Some(expr)) if errs.is_empty() => Ok(Rule {
            kind,
            expr_text,
            expr,
            for_: for_.unwrap_or_default(),
            keep_firing_for: keep_firing_for.unwrap_or_default(),
            labels: r.labels,
            annotations: r.annotations,
            line: 0,
        }),
        _ => Err(errs),
    }
}

/// promtool's `duplicate-rules` lint: rules with the same name, labels and expression.
fn duplicate_rules(file: &RuleFile) -> Vec<RuleWarning> {
    let mut seen: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for g in &file.groups {
        for r in &g.rules {
            let labels = format!("{:?}", r.labels);
            *seen
                .entry((r.kind.name().to_owned(), labels, r.expr.to_string()))
                .or_default() += 1;
        }
    }
    let dups: Vec<_> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
    if dups.is_empty() {
        return Vec::new();
    }
    let mut message = format!("{} duplicate rule(s) found.", dups.len());
    for ((name, labels, _), _) in &dups {
        message.push_str(&format!("\nMetric: {name}\nLabel(s): {labels}"));
    }
    message.push_str("\nMight cause inconsistency while recording expressions.");
    vec![RuleWarning {
        file: file.path.clone(),
        message,
    }]
}

/// Finds the line of `key: value` (value possibly quoted) at or after `from`.
struct Locator<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Self {
        Locator {
            lines: text.lines().collect(),
        }
    }

    fn find(&self, key: &str, value: &str, from: usize) -> Option<usize> {
        let matches = |l: &str| {
            let l = l.trim_start().trim_start_matches("- ").trim_start();
            let Some(rest) = l.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
                return false;
            };
            let v = rest.split(" #").next().unwrap_or("").trim();
            let v = v.trim_matches(|c| c == '"' || c == '\'');
            v == value || value.is_empty() || v.starts_with('*')
        };
        let start = from.saturating_sub(1);
        self.lines
            .iter()
            .enumerate()
            .skip(start)
            .find(|(_, l)| matches(l))
            .map(|(i, _)| i + 1)
    }
}

fn parse_opt_duration(s: Option<&str>) -> Result<Option<Duration>, String> {
    s.map(parse_duration).transpose()
}

/// A Prometheus duration (`1h30m`, `5m`, `100ms`, `0`; units `y w d h m s ms`, biggest
/// first, each at most once), as `model.ParseDuration` reads it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let ms = crate::promqltest::parse_duration(s)?;
    u64::try_from(ms)
        .map(Duration::from_millis)
        .map_err(|_| format!("not a valid duration string: {s:?}"))
}

/// Prometheus 3 accepts any UTF-8 label name except the empty one.
fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(
            parse_duration("1m30s500ms").unwrap(),
            Duration::from_millis(90_500)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("30m1h").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("1.5h").is_err());
    }

    /// Scalars that are not strings load as Prometheus loads them (yaml.v3 decodes any scalar
    /// into a string field), and `for: 0s` is allowed on a recording rule (Prometheus refuses
    /// only a non-zero one).
    #[test]
    fn numbers_booleans_and_zero_durations_load_as_in_prometheus() {
        let text = "groups:
  - name: 2024
    labels: { tier: 1 }
    rules:
      - alert: A
        expr: up == 0
        for: 0
        keep_firing_for: 0
        labels: { priority: 1, page: true, ratio: 0.5, empty: }
        annotations: { runbook: 42 }
      - record: job:up:sum
        expr: sum(up)
        for: 0s
        keep_firing_for: 0s
";
        let (file, _) = parse(text, Path::new("r.yml")).unwrap();
        let g = &file.groups[0];
        assert_eq!(g.name, "2024");
        assert_eq!(g.labels["tier"], "1");
        let a = &g.rules[0];
        assert_eq!(
            [
                &a.labels["priority"],
                &a.labels["page"],
                &a.labels["ratio"],
                &a.labels["empty"]
            ],
            ["1", "true", "0.5", ""]
        );
        assert_eq!(a.annotations["runbook"], "42");
        assert_eq!(
            (a.for_, a.keep_firing_for),
            (Duration::ZERO, Duration::ZERO)
        );
        // A non-zero `for` on a recording rule is still refused.
        let bad = text.replace("for: 0s", "for: 1m");
        let errs = parse(&bad, Path::new("r.yml")).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.message.contains("invalid field 'for' in recording rule")),
            "{errs:?}"
        );
        // A sequence where text is expected is an error.
        let errs = parse(
            &text.replace("runbook: 42", "runbook: [1]"),
            Path::new("r.yml"),
        )
        .unwrap_err();
        assert!(
            errs[0].message.contains("a string, number or boolean"),
            "{errs:?}"
        );
    }

    #[test]
    fn errors_name_the_line_group_and_rule() {
        let text = "groups:\n  - name: g\n    rules:\n      - record: ok\n        expr: up\n      - alert: Broken\n        expr: 'up +'\n";
        let errs = parse(text, Path::new("r.yml")).unwrap_err();
        assert_eq!(errs.len(), 1);
        let s = errs[0].to_string();
        assert!(
            s.starts_with("r.yml:6: group \"g\", rule 2 (\"Broken\"): could not parse expression"),
            "{s}"
        );
    }

    #[test]
    fn unknown_fields_are_errors_with_a_line() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotation:\n          x: y\n";
        let errs = parse(text, Path::new("r.yml")).unwrap_err();
        let s = errs[0].to_string();
        assert!(s.contains("unknown field `annotation`"), "{s}");
        assert!(s.starts_with("r.yml:6"), "{s}");
    }
}
