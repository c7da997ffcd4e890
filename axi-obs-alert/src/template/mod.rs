//! Go `text/template` with Prometheus's template functions, for alert labels and annotations.
//!
//! This is an engine of its own, written after Go's `text/template` (lexer, parser and
//! executor, including their error messages) and Prometheus's `template/template.go`
//! (`query`, `humanize*`, `toTime`, ...). Values print the way Go's `fmt` prints them:
//! floats with `%v` are `strconv.FormatFloat(v, 'g', -1, 64)` (`100000`, `1.234567e+06`),
//! maps as `map[k:v ...]` with sorted keys, absent values as `<no value>`.
//!
//! Entry points:
//! - [`Template::parse`] and [`Template::execute`]: the Go API, with Prometheus's default
//!   option `missingkey=zero`.
//! - [`expand`]: Prometheus's `Expander.Expand`, wrapping errors as
//!   `error parsing template NAME: ...` / `error executing template NAME: ...`.
//! - [`expand_alert`]: what the rule manager does for an alert's labels and annotations.
//! - [`check`]: the rule loader's syntax check.
//!
//! Not supported: HTML auto-escaping (`html/template`, console templates and `tmpl`), native
//! histogram sample values, complex number constants and the `call` builtin (there are no
//! function values); `{{template}}` nesting is limited to 200 levels instead of Go's 100000.

mod exec;
mod funcs;
pub(crate) mod gofmt;
pub(crate) mod gotime;
mod lexer;
mod parse;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use value::{Data, GoTime, QuerySample, StructValue, Value};

/// The variables Prometheus declares in front of every alert template.
pub const ALERT_PREAMBLE: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// A query callback: runs an instant PromQL query at the evaluation time.
pub type QueryFn<'a> = &'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>;

/// What the template functions may consult besides the dot.
#[derive(Clone, Default)]
pub struct Env<'a> {
    /// Returned by `externalURL` (`--web.external-url`).
    pub external_url: String,
    /// Returned by `pathPrefix` (the path of the external URL).
    pub path_prefix: String,
    /// Evaluation time in milliseconds since the epoch; `now` returns it in seconds.
    pub now_ms: i64,
    /// Runs `query`; without it `query` fails with "no query function configured".
    pub query: Option<QueryFn<'a>>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("external_url", &self.external_url)
            .field("path_prefix", &self.path_prefix)
            .field("now_ms", &self.now_ms)
            .field("query", &self.query.is_some())
            .finish()
    }
}

impl<'a> Env<'a> {
    /// An environment for `external_url`, with `path_prefix` taken from its path.
    pub fn new(external_url: &str, now_ms: i64) -> Env<'a> {
        Env {
            external_url: external_url.to_string(),
            path_prefix: url_path(external_url),
            now_ms,
            query: None,
        }
    }

    /// The same environment with a query callback.
    pub fn with_query(mut self, query: QueryFn<'a>) -> Env<'a> {
        self.query = Some(query);
        self
    }
}

/// The path component of a URL (`http://h:9090/path/prefix` gives `/path/prefix`).
fn url_path(url: &str) -> String {
    let rest = match url.find("://") {
        Some(i) => &url[i + 3..],
        None => return String::new(),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    match rest.find('/') {
        Some(i) => rest[i..].to_string(),
        None => String::new(),
    }
}

/// What a missing map key evaluates to (Go's `missingkey` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// `missingkey=default`/`invalid`: no value, printed as `<no value>`.
    Invalid,
    /// `missingkey=zero`: the zero value of the map's element type (Prometheus's default).
    #[default]
    Zero,
    /// `missingkey=error`: execution stops with an error.
    Error,
}

/// A template error. The message is Go's, e.g. `template: test:1: unclosed action`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The text did not parse.
    #[error("{0}")]
    Parse(String),
    /// Execution failed.
    #[error("{0}")]
    Exec(String),
}

/// A parsed template, with the templates it defines.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    text: String,
    trees: parse::TreeSet,
    missing: MissingKey,
}

impl Template {
    /// Parses `text` as the template `name` with every Prometheus function available.
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let trees = parse::parse(name, text, funcs::names()).map_err(TemplateError::Parse)?;
        Ok(Template {
            name: name.to_string(),
            text: text.to_string(),
            trees,
            missing: MissingKey::Zero,
        })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets what missing map keys evaluate to.
    pub fn with_missing_key(mut self, missing: MissingKey) -> Template {
        self.missing = missing;
        self
    }

    /// Applies a Go template option such as `missingkey=error`.
    pub fn option(self, opt: &str) -> Result<Template, TemplateError> {
        let missing = match opt {
            "missingkey=default" | "missingkey=invalid" => MissingKey::Invalid,
            "missingkey=zero" => MissingKey::Zero,
            "missingkey=error" => MissingKey::Error,
            _ => return Err(TemplateError::Parse(format!("unrecognized option: {opt}"))),
        };
        Ok(self.with_missing_key(missing))
    }

    /// Executes the template with `data` as the dot.
    pub fn execute(&self, data: &Data, env: &Env<'_>) -> Result<String, TemplateError> {
        let ctx = exec::Ctx {
            trees: &self.trees,
            parse_name: &self.name,
            text: &self.text,
            env,
            missing: self.missing,
        };
        let mut st = exec::State::new(&ctx, &self.name, data);
        let root = self.trees.get(&self.name).map(Vec::as_slice).unwrap_or(&[]);
        st.exec_root(root, data).map_err(TemplateError::Exec)?;
        Ok(st.out)
    }
}

/// Prometheus's `Expander.Expand` (text mode, `missingkey=zero`): errors come back as
/// `error parsing template NAME: ...` or `error executing template NAME: ...`.
pub fn expand(name: &str, text: &str, data: &Data, env: &Env<'_>) -> Result<String, String> {
    expand_with(name, text, data, env, MissingKey::Zero)
}

/// [`expand`] with another `missingkey` option.
pub fn expand_with(
    name: &str,
    text: &str,
    data: &Data,
    env: &Env<'_>,
    missing: MissingKey,
) -> Result<String, String> {
    let tmpl =
        Template::parse(name, text).map_err(|e| format!("error parsing template {name}: {e}"))?;
    tmpl.with_missing_key(missing)
        .execute(data, env)
        .map_err(|e| format!("error executing template {name}: {e}"))
}

/// The dot of alert templates (Prometheus's `AlertTemplateData`): `.Labels`,
/// `.ExternalLabels`, `.ExternalURL` and `.Value`.
pub fn alert_data(
    labels: &BTreeMap<String, String>,
    external_labels: &BTreeMap<String, String>,
    external_url: &str,
    value: f64,
) -> Value {
    Value::Struct(Box::new(StructValue {
        type_name: "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }"
            .to_string(),
        fields: vec![
            ("Labels".to_string(), Value::StrMap(labels.clone())),
            ("ExternalLabels".to_string(), Value::StrMap(external_labels.clone())),
            ("ExternalURL".to_string(), Value::String(external_url.to_string())),
            ("Value".to_string(), Value::Float(value)),
        ],
    }))
}

/// Expands an alert label or annotation the way Prometheus's rule manager does: prepends
/// [`ALERT_PREAMBLE`], expands with [`alert_data`] as the dot, and on error returns
/// `<error expanding template: ...>`. `name` is the template name, `__alert_` followed by
/// the alert name in Prometheus.
pub fn expand_alert(
    name: &str,
    text: &str,
    labels: &BTreeMap<String, String>,
    external_labels: &BTreeMap<String, String>,
    external_url: &str,
    value: f64,
    env: &Env<'_>,
) -> String {
    let data = alert_data(labels, external_labels, external_url, value);
    let full = format!("{ALERT_PREAMBLE}{text}");
    match expand(name, &full, &data, env) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

/// The rule loader's check of a label or annotation template: parses it behind
/// [`ALERT_PREAMBLE`] and returns Go's parse error, e.g.
/// `template: __alert_X:1: undefined variable "$label"`. `name` is the template name
/// (`__alert_` followed by the alert name in Prometheus).
pub fn check(name: &str, text: &str) -> Result<(), String> {
    let full = format!("{ALERT_PREAMBLE}{text}");
    Template::parse(name, &full)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
