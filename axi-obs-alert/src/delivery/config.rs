//! Alertmanager's configuration file (the supported subset), read strictly.
//!
//! Every field not listed here is refused with an error that names it and its `file:line`,
//! so a receiver type we cannot deliver to (`slack_configs`, `pagerduty_configs`, ...) or an option
//! we would not honour (`http_config`, ...) is never silently ignored.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use super::email_config::{EmailConfig, TlsConfig};
use super::matcher::{MatchOp, Matcher};
use super::remediation::RemediationConfig;
use super::timeinterval::TimeInterval;

/// Alertmanager's default `group_wait`.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// Alertmanager's default `group_interval`.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Alertmanager's default `repeat_interval`.
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
/// Alertmanager's default `global.resolve_timeout`.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The DingTalk robot endpoint used with `access_token`.
pub const DINGTALK_ROBOT_URL: &str = "https://oapi.dingtalk.com/robot/send";
/// The WeCom group robot endpoint used with `key`.
pub const WECOM_ROBOT_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send";

/// A configuration problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or a name given to in-memory text).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// A string that never prints in `Debug` output (tokens, signing secrets, URLs with keys).
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// A duration in Prometheus's syntax (`30s`, `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelDuration(pub Duration);

impl<'de> Deserialize<'de> for ModelDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        crate::rules::parse_duration(&s)
            .map(ModelDuration)
            .map_err(|m| located(&s, &m))
    }
}

/// Marks the text a value error is about, so that [`Config::parse`] can find its line
/// (serde_norway reports custom errors at the enclosing mapping).
const MARK: char = '\u{1}';

fn located<E: serde::de::Error>(raw: &str, message: &str) -> E {
    E::custom(format!("{MARK}{raw}{MARK}{message}"))
}

/// Takes the marked text out of an error message: (message, raw text).
fn unmark(message: &str) -> (String, Option<String>) {
    let mut parts = message.splitn(3, MARK);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(before), Some(raw), Some(after)) => {
            (format!("{before}{after}"), Some(raw.to_string()))
        }
        _ => (message.to_string(), None),
    }
}

/// A list of matcher strings (`matchers:`), each holding one or more matchers.
#[derive(Debug, Clone, Default)]
pub struct MatcherList(pub Vec<Matcher>);

impl<'de> Deserialize<'de> for MatcherList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lines = Vec::<String>::deserialize(d)?;
        let mut out = Vec::new();
        for line in lines {
            out.extend(Matcher::parse_list(&line).map_err(|m| located(&line, &m))?);
        }
        Ok(MatcherList(out))
    }
}

/// The legacy `match_re:` map: label name to a regular expression, anchored as `^(?:re)$`.
#[derive(Debug, Clone, Default)]
pub struct RegexMap(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for RegexMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, Option<String>>::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            // Alertmanager refuses an empty (null) regular expression.
            let Some(v) = v else {
                return Err(located(
                    &k,
                    &format!("regular expression for {k:?} is null"),
                ));
            };
            // Alertmanager's config.Regexp keeps the anchored form as its string.
            let anchored = format!("^(?:{v})$");
            Matcher::new(&k, MatchOp::Regex, &anchored).map_err(|m| located(&v, &m))?;
            out.insert(k, anchored);
        }
        Ok(RegexMap(out))
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Global settings.
    #[serde(default)]
    pub global: GlobalConfig,
    /// The routing tree (required).
    pub route: Option<RouteConfig>,
    /// Inhibition rules (parsed and validated; not executed yet).
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRule>,
    /// Receivers, by unique name.
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    /// Remediation actions (ours; Alertmanager has none), run when an alert fires on a
    /// route that names them. None configured (the default): the feature is off.
    #[serde(default)]
    pub remediations: Vec<RemediationConfig>,
    /// Named time intervals, for routes' `mute_time_intervals` and `active_time_intervals`.
    #[serde(default)]
    pub time_intervals: Vec<TimeInterval>,
    /// The same, under Alertmanager's deprecated top-level name.
    #[serde(default)]
    pub mute_time_intervals: Vec<TimeInterval>,
}

impl Config {
    /// Every named time interval (the deprecated list's first), by name.
    pub fn named_time_intervals(&self) -> BTreeMap<String, TimeInterval> {
        self.mute_time_intervals
            .iter()
            .chain(&self.time_intervals)
            .map(|t| (t.name.clone(), t.clone()))
            .collect()
    }
}

/// `global:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// How long an alert without `endsAt` stays firing after it was last received. Defaults
    /// to 5 minutes.
    #[serde(default = "default_resolve_timeout")]
    pub resolve_timeout: ModelDuration,
    /// Default sender address for mail.
    pub smtp_from: Option<String>,
    /// Default SMTP host:port.
    pub smtp_smarthost: Option<String>,
    /// Hostname sent in HELO/EHLO.
    pub smtp_hello: Option<String>,
    /// SMTP AUTH user.
    pub smtp_auth_username: Option<String>,
    /// SMTP AUTH password.
    pub smtp_auth_password: Option<Secret>,
    /// File holding the SMTP AUTH password.
    pub smtp_auth_password_file: Option<String>,
    /// SMTP AUTH PLAIN identity.
    pub smtp_auth_identity: Option<String>,
    /// SMTP AUTH CRAM-MD5 secret.
    pub smtp_auth_secret: Option<Secret>,
    /// File holding the SMTP AUTH CRAM-MD5 secret.
    pub smtp_auth_secret_file: Option<String>,
    /// Whether STARTTLS is required. Defaults to true.
    pub smtp_require_tls: Option<bool>,
    /// Whether to use implicit TLS (TLS from the first byte); unset means: on port 465.
    pub smtp_force_implicit_tls: Option<bool>,
    /// TLS settings toward the SMTP server.
    pub smtp_tls_config: Option<TlsConfig>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            resolve_timeout: default_resolve_timeout(),
            smtp_from: None,
            smtp_smarthost: None,
            smtp_hello: None,
            smtp_auth_username: None,
            smtp_auth_password: None,
            smtp_auth_password_file: None,
            smtp_auth_identity: None,
            smtp_auth_secret: None,
            smtp_auth_secret_file: None,
            smtp_require_tls: None,
            smtp_force_implicit_tls: None,
            smtp_tls_config: None,
        }
    }
}

fn default_resolve_timeout() -> ModelDuration {
    ModelDuration(DEFAULT_RESOLVE_TIMEOUT)
}

/// One node of the routing tree, as written (unset options inherit from the parent).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The receiver's name.
    pub receiver: Option<String>,
    /// Labels to group by; `...` alone means every label.
    pub group_by: Option<Vec<String>>,
    /// Matchers in Alertmanager's string syntax.
    #[serde(default)]
    pub matchers: MatcherList,
    /// Deprecated equality matchers.
    #[serde(default, rename = "match")]
    pub match_: BTreeMap<String, String>,
    /// Deprecated regular-expression matchers.
    #[serde(default)]
    pub match_re: RegexMap,
    /// Whether matching goes on to the next sibling after this node matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    /// How long to wait before the first notification of a new group.
    pub group_wait: Option<ModelDuration>,
    /// How long to wait before notifying about changes of a group.
    pub group_interval: Option<ModelDuration>,
    /// How long to wait before repeating a notification.
    pub repeat_interval: Option<ModelDuration>,
    /// Child routes.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Names of the [`remediations`](Config::remediations) to run for alerts this route
    /// takes (ours). Unset inherits the parent's; `[]` turns them off.
    pub remediations: Option<Vec<String>>,
    /// Time intervals during which this route sends nothing (not inherited).
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    /// Time intervals outside which this route sends nothing (none: always active; not
    /// inherited).
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
}

/// `inhibit_rules[]`: mutes target alerts while a matching source alert fires.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    /// An optional name.
    pub name: Option<String>,
    /// What a source (inhibiting) alert matches.
    #[serde(default)]
    pub source_matchers: MatcherList,
    /// What a target (inhibited) alert matches.
    #[serde(default)]
    pub target_matchers: MatcherList,
    /// Deprecated source equality matchers.
    #[serde(default)]
    pub source_match: BTreeMap<String, String>,
    /// Deprecated source regular-expression matchers.
    #[serde(default)]
    pub source_match_re: RegexMap,
    /// Deprecated target equality matchers.
    #[serde(default)]
    pub target_match: BTreeMap<String, String>,
    /// Deprecated target regular-expression matchers.
    #[serde(default)]
    pub target_match_re: RegexMap,
    /// Labels whose values must be equal in source and target.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// A named receiver and its integrations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    /// The unique name routes refer to.
    pub name: String,
    /// Webhook integrations (payload version 4).
    #[serde(default)]
    pub webhook_configs: Vec<WebhookConfig>,
    /// Mail integrations (SMTP).
    #[serde(default)]
    pub email_configs: Vec<EmailConfig>,
    /// DingTalk robot integrations (ours; Alertmanager has none).
    #[serde(default)]
    pub dingtalk_configs: Vec<DingTalkConfig>,
    /// WeCom group robot integrations (ours; Alertmanager's `wechat_configs` is the app API).
    #[serde(default)]
    pub wecom_configs: Vec<WeComConfig>,
}

fn yes() -> bool {
    true
}

/// `webhook_configs[]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Whether resolved alerts are notified. Defaults to true.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Where to POST (http or https).
    pub url: Secret,
    /// The most alerts in one message; the rest are counted in `truncatedAlerts`. 0 (the
    /// default) means all.
    #[serde(default)]
    pub max_alerts: u64,
}

/// `dingtalk_configs[]`: a DingTalk custom robot, markdown messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingTalkConfig {
    /// Whether resolved alerts are notified. Defaults to true.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// The robot's full webhook URL (with `access_token`); or give `access_token`.
    pub url: Option<Secret>,
    /// The robot's access token, used with the public robot endpoint.
    pub access_token: Option<Secret>,
    /// The signing secret (`SEC...`): requests carry `timestamp` and `sign`.
    pub secret: Option<Secret>,
    /// Mobile numbers to @-mention.
    #[serde(default)]
    pub at_mobiles: Vec<String>,
    /// Whether to @-mention everyone.
    #[serde(default)]
    pub at_all: bool,
    /// Markdown title template. Defaults to [`super::DEFAULT_TITLE`].
    pub title: Option<String>,
    /// Markdown body template. Defaults to [`super::DEFAULT_MESSAGE`].
    pub message: Option<String>,
}

/// `wecom_configs[]`: a WeCom group robot, markdown messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeComConfig {
    /// Whether resolved alerts are notified. Defaults to true.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// The robot's full webhook URL (with `key`); or give `key`.
    pub url: Option<Secret>,
    /// The robot key, used with the public robot endpoint.
    pub key: Option<Secret>,
    /// User ids to mention, as `<@userid>` in the markdown. Not `@all`: WeCom mentions
    /// everyone only in text messages, so the configuration is refused with it.
    #[serde(default)]
    pub mentioned_list: Vec<String>,
    /// Markdown body template. Defaults to [`super::DEFAULT_MESSAGE`].
    pub message: Option<String>,
}

/// A WeCom user id as a markdown message can mention it (`<@userid>`): 1 to 64 bytes
/// without `<`, `>` or white space, and not `@all`, which WeCom honours only in text
/// messages' `mentioned_list` and which a markdown message would show as plain text.
fn check_wecom_mention(id: &str) -> Result<(), String> {
    if id == "@all" {
        return Err(
            "\"@all\" cannot be mentioned: WeCom mentions everyone only in text \
                    messages, and this integration sends markdown (where `<@userid>` \
                    mentions one user); list user ids instead"
                .into(),
        );
    }
    if id.is_empty() || id.len() > 64 || id.contains(['<', '>']) || id.contains(char::is_whitespace)
    {
        return Err(format!(
            "{id:?} is not a WeCom user id (1 to 64 bytes without '<', '>' or white space)"
        ));
    }
    Ok(())
}

impl DingTalkConfig {
    /// The robot URL without signature parameters.
    pub fn robot_url(&self) -> String {
        match (&self.url, &self.access_token) {
            (Some(u), _) => u.0.clone(),
            (None, Some(t)) => format!("{DINGTALK_ROBOT_URL}?access_token={}", t.0),
            (None, None) => String::new(),
        }
    }
}

impl WeComConfig {
    /// The robot URL.
    pub fn robot_url(&self) -> String {
        match (&self.url, &self.key) {
            (Some(u), _) => u.0.clone(),
            (None, Some(k)) => format!("{WECOM_ROBOT_URL}?key={}", k.0),
            (None, None) => String::new(),
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, or as [`Config::parse`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` names it in errors.
    ///
    /// # Errors
    ///
    /// The first problem found: YAML syntax, an unknown or unsupported field (named), a bad
    /// value, a missing or undefined receiver, an invalid root route, a duplicate name.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = serde_norway::from_str(text).map_err(|e| {
            let loc = e.location();
            let mut message = e.to_string();
            // serde_norway appends " at line L column C"; we print the position up front.
            if let Some(i) = message.rfind(" at line ") {
                message.truncate(i);
            }
            let (message, raw) = unmark(&message);
            let mut line = loc.as_ref().map(|l| l.line());
            let mut column = loc.as_ref().map(|l| l.column());
            // A bad value: point at the line holding it, at or after the mapping's line.
            if let Some(raw) = raw.filter(|r| !r.is_empty()) {
                let from = line.unwrap_or(1);
                if let Some((i, l)) = text
                    .lines()
                    .enumerate()
                    .skip(from.saturating_sub(1))
                    .find(|(_, l)| l.contains(raw.as_str()))
                {
                    line = Some(i + 1);
                    column = l.find(raw.as_str()).map(|c| c + 1);
                }
            }
            ConfigError {
                file: path.to_owned(),
                line,
                column,
                message,
            }
        })?;
        cfg.inherit_smtp(text, path)?;
        cfg.validate(text, path)?;
        Ok(cfg)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let fail = |message: String, needle: Option<&str>| ConfigError {
            file: path.to_owned(),
            line: needle.and_then(|n| line_containing(text, n)),
            column: None,
            message,
        };
        let mut names = HashSet::new();
        for r in &self.receivers {
            if r.name.is_empty() {
                return Err(fail("missing name in receiver".into(), Some("name:")));
            }
            if !names.insert(r.name.as_str()) {
                return Err(fail(
                    format!("notification config name {:?} is not unique", r.name),
                    Some(&r.name),
                ));
            }
            for w in &r.webhook_configs {
                check_http_url(&w.url.0, "webhook_configs url")
                    .map_err(|m| fail(format!("receiver {:?}: {m}", r.name), Some("url:")))?;
            }
            for d in &r.dingtalk_configs {
                match (&d.url, &d.access_token) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err(fail(
                            format!(
                                "receiver {:?}: dingtalk_configs needs exactly one of url and access_token",
                                r.name
                            ),
                            Some("dingtalk_configs"),
                        ));
                    }
                    (Some(u), None) => check_http_url(&u.0, "dingtalk_configs url")
                        .map_err(|m| fail(format!("receiver {:?}: {m}", r.name), Some("url:")))?,
                    (None, Some(_)) => {}
                }
                check_templates(&[&d.title, &d.message])
                    .map_err(|m| fail(format!("receiver {:?}: {m}", r.name), Some("message:")))?;
            }
            for w in &r.wecom_configs {
                match (&w.url, &w.key) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err(fail(
                            format!(
                                "receiver {:?}: wecom_configs needs exactly one of url and key",
                                r.name
                            ),
                            Some("wecom_configs"),
                        ));
                    }
                    (Some(u), None) => check_http_url(&u.0, "wecom_configs url")
                        .map_err(|m| fail(format!("receiver {:?}: {m}", r.name), Some("url:")))?,
                    (None, Some(_)) => {}
                }
                check_templates(&[&w.message])
                    .map_err(|m| fail(format!("receiver {:?}: {m}", r.name), Some("message:")))?;
                for id in &w.mentioned_list {
                    check_wecom_mention(id).map_err(|m| {
                        fail(
                            format!("receiver {:?}: wecom_configs mentioned_list: {m}", r.name),
                            Some("mentioned_list"),
                        )
                    })?;
                }
            }
        }
        let Some(root) = &self.route else {
            return Err(fail("no routes provided".into(), None));
        };
        match &root.receiver {
            None => {
                return Err(fail(
                    "root route must specify a default receiver".into(),
                    Some("route:"),
                ));
            }
            Some(r) if r.is_empty() => {
                return Err(fail(
                    "root route must specify a default receiver".into(),
                    Some("route:"),
                ));
            }
            Some(_) => {}
        }
        if !root.matchers.0.is_empty() || !root.match_.is_empty() || !root.match_re.0.is_empty() {
            return Err(fail(
                "root route must not have any matchers".into(),
                Some("route:"),
            ));
        }
        if root.continue_ {
            return Err(fail(
                "cannot have continue in root route".into(),
                Some("continue:"),
            ));
        }
        let mut intervals = HashSet::new();
        for (list, what) in [
            (&self.mute_time_intervals, "mute time interval"),
            (&self.time_intervals, "time interval"),
        ] {
            for t in list {
                if t.name.is_empty() {
                    return Err(fail(format!("missing name in {what}"), Some("name:")));
                }
                if !intervals.insert(t.name.as_str()) {
                    return Err(fail(
                        format!("{what} {:?} is not unique", t.name),
                        Some(&t.name),
                    ));
                }
            }
        }
        if !root.mute_time_intervals.is_empty() {
            return Err(fail(
                "root route must not have any mute time intervals".into(),
                Some("mute_time_intervals:"),
            ));
        }
        if !root.active_time_intervals.is_empty() {
            return Err(fail(
                "root route must not have any active time intervals".into(),
                Some("active_time_intervals:"),
            ));
        }
        check_route(root, &names).map_err(|(m, needle)| fail(m, Some(&needle)))?;
        check_time_intervals(root, &intervals).map_err(|(m, needle)| fail(m, Some(&needle)))?;
        super::remediation::validate(&self.remediations, root, text, path)?;
        for rule in &self.inhibit_rules {
            for l in &rule.equal {
                if l.is_empty() {
                    return Err(fail(
                        "invalid label name \"\" in equal list".into(),
                        Some("equal:"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Every interval a route names is defined (Alertmanager's `checkTimeInterval`).
fn check_time_intervals(r: &RouteConfig, defined: &HashSet<&str>) -> Result<(), (String, String)> {
    for name in r.active_time_intervals.iter().chain(&r.mute_time_intervals) {
        if !defined.contains(name.as_str()) {
            return Err((
                format!("undefined time interval {name:?} used in route"),
                name.clone(),
            ));
        }
    }
    r.routes
        .iter()
        .try_for_each(|c| check_time_intervals(c, defined))
}

/// Checks a route node and its children; the error carries a text to find the line by.
fn check_route(r: &RouteConfig, receivers: &HashSet<&str>) -> Result<(), (String, String)> {
    // An empty name inherits the parent's receiver, as Alertmanager's `checkReceiver` allows
    // (the root route's is checked on its own).
    if let Some(name) = &r.receiver
        && !name.is_empty()
        && !receivers.contains(name.as_str())
    {
        return Err((
            format!("undefined receiver {name:?} used in route"),
            name.clone(),
        ));
    }
    if let Some(gb) = &r.group_by {
        let mut seen = HashSet::new();
        let all = gb.iter().any(|l| l == "...");
        if all && gb.len() > 1 {
            return Err((
                "cannot have wildcard group_by (`...`) and other other labels at the same time"
                    .into(),
                "group_by".into(),
            ));
        }
        for l in gb {
            if l.is_empty() {
                return Err((
                    "invalid label name \"\" in group_by list".into(),
                    "group_by".into(),
                ));
            }
            if !seen.insert(l) {
                return Err((
                    format!("duplicated label {l:?} in group_by"),
                    "group_by".into(),
                ));
            }
        }
    }
    if r.group_interval.is_some_and(|d| d.0.is_zero()) {
        return Err((
            "group_interval cannot be zero".into(),
            "group_interval".into(),
        ));
    }
    if r.repeat_interval.is_some_and(|d| d.0.is_zero()) {
        return Err((
            "repeat_interval cannot be zero".into(),
            "repeat_interval".into(),
        ));
    }
    for name in r.match_.keys().chain(r.match_re.0.keys()) {
        if !is_legacy_label_name(name) {
            return Err((format!("invalid label name {name:?}"), name.clone()));
        }
    }
    for c in &r.routes {
        check_route(c, receivers)?;
    }
    Ok(())
}

fn is_legacy_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
}

/// An `http://` or `https://` URL the delivery client can send to (checked as it will be
/// parsed: a space or a character outside URLs, not percent-encoded, is refused here rather
/// than at every delivery).
fn check_http_url(url: &str, what: &str) -> Result<(), String> {
    // The URL may hold a token: never echo it.
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{what}: unsupported scheme (want http or https)"));
    }
    match url.parse::<http::Uri>() {
        Ok(u) if u.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(format!(
            "{what}: not a valid URL (characters such as spaces must be percent-encoded)"
        )),
    }
}

fn check_templates(ts: &[&Option<String>]) -> Result<(), String> {
    for t in ts.iter().copied().flatten() {
        crate::template::Template::parse("message", t).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn line_containing(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("am.yml"))
    }

    #[test]
    fn time_intervals_are_defined_unique_and_not_on_the_root() {
        let base = "receivers: [{name: a}]\ntime_intervals:\n- name: nights\n  time_intervals: [{times: [{start_time: '00:00', end_time: '06:00'}]}]\nmute_time_intervals:\n- name: old\n  time_intervals: [{weekdays: [sunday]}]\n";
        let cfg = parse(&format!(
            "route:\n  receiver: a\n  routes:\n  - mute_time_intervals: [nights]\n    active_time_intervals: [old]\n{base}"
        ))
        .unwrap();
        assert_eq!(
            cfg.named_time_intervals().keys().collect::<Vec<_>>(),
            ["nights", "old"]
        );
        for (route, words) in [
            (
                "route:\n  receiver: a\n  routes:\n  - routes:\n    - mute_time_intervals: [days]\n",
                "undefined time interval \"days\" used in route",
            ),
            (
                "route:\n  receiver: a\n  mute_time_intervals: [nights]\n",
                "root route must not have any mute time intervals",
            ),
            (
                "route:\n  receiver: a\n  active_time_intervals: [nights]\n",
                "root route must not have any active time intervals",
            ),
        ] {
            let e = parse(&format!("{route}{base}")).unwrap_err();
            assert!(e.message.contains(words), "{e}");
        }
        let twice = format!("route:\n  receiver: a\n{base}- name: nights\n  time_intervals: []\n")
            .replace(
                "mute_time_intervals:\n- name: old",
                "mute_time_intervals:\n- name: nights",
            );
        let e = parse(&twice).unwrap_err();
        assert!(e.message.contains("is not unique"), "{e}");
        // A bad spec names its line.
        let e = parse("route:\n  receiver: a\nreceivers: [{name: a}]\ntime_intervals:\n- name: x\n  time_intervals:\n  - weekdays: [funday]\n").unwrap_err();
        assert!(e.message.contains("funday is not a valid weekday"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn defaults() {
        let c = parse("route:\n  receiver: a\nreceivers:\n- name: a\n").unwrap();
        assert_eq!(c.global.resolve_timeout.0, DEFAULT_RESOLVE_TIMEOUT);
        assert!(c.route.unwrap().group_wait.is_none());
    }

    #[test]
    fn unsupported_receiver_is_named_with_line() {
        let e = parse(
            "route:\n  receiver: a\nreceivers:\n- name: a\n  slack_configs:\n  - channel: x\n",
        )
        .unwrap_err();
        assert!(e.message.contains("slack_configs"), "{e}");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.to_string().starts_with("am.yml:5:"), "{e}");
    }

    #[test]
    fn unknown_route_field_is_named() {
        let e =
            parse("route:\n  receiver: a\n  mute_times: [x]\nreceivers:\n- name: a\n").unwrap_err();
        assert!(e.message.contains("mute_times"), "{e}");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn semantic_errors() {
        for (text, want, line) in [
            ("receivers:\n- name: a\n", "no routes provided", None),
            (
                "route:\n  group_by: [x]\nreceivers:\n- name: a\n",
                "root route must specify a default receiver",
                Some(1),
            ),
            (
                "route:\n  receiver: b\nreceivers:\n- name: a\n",
                "undefined receiver \"b\" used in route",
                Some(2),
            ),
            (
                "route:\n  receiver: a\n  matchers: [x=\"1\"]\nreceivers:\n- name: a\n",
                "root route must not have any matchers",
                Some(1),
            ),
            (
                "route:\n  receiver: a\n  routes:\n  - group_by: ['...', x]\nreceivers:\n- name: a\n",
                "wildcard group_by",
                Some(4),
            ),
            (
                "route:\n  receiver: a\n  group_interval: 0s\nreceivers:\n- name: a\n",
                "group_interval cannot be zero",
                Some(3),
            ),
            (
                "route:\n  receiver: a\nreceivers:\n- name: a\n- name: a\n",
                "not unique",
                Some(2),
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(want), "{text}: {e}");
            assert_eq!(e.line, line, "{text}: {e}");
        }
    }

    #[test]
    fn bad_values_have_positions() {
        let e =
            parse("route:\n  receiver: a\n  group_wait: 5x\nreceivers:\n- name: a\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let e = parse(
            "route:\n  receiver: a\n  routes:\n  - matchers: ['a=~\"(\"']\nreceivers:\n- name: a\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("regular expression"), "{e}");
    }

    /// A receiver URL the client could not send to is refused at load, naming the field and
    /// not the URL (it may hold a token).
    #[test]
    fn receiver_urls_are_checked_at_load() {
        for (field, url) in [
            ("webhook_configs", "https://hooks.example/x y"),
            (
                "dingtalk_configs",
                "https://oapi.dingtalk.com/robot/send?access_token=a b",
            ),
            ("wecom_configs", "https:///nohost"),
        ] {
            let e = parse(&format!(
                "route:\n  receiver: a\nreceivers:\n- name: a\n  {field}:\n  - url: '{url}'\n"
            ))
            .unwrap_err();
            assert!(
                e.message.contains(&format!("{field} url: not a valid URL")),
                "{e}"
            );
            assert!(
                !e.message.contains("example") && !e.message.contains("access_token"),
                "{e}"
            );
        }
        parse("route:\n  receiver: a\nreceivers:\n- name: a\n  webhook_configs:\n  - url: 'https://u:p%40ss@hooks.example:8443/x?token=t%20k'\n").unwrap();
    }

    #[test]
    fn robots_need_exactly_one_address() {
        let e = parse(
            "route:\n  receiver: a\nreceivers:\n- name: a\n  dingtalk_configs:\n  - secret: SEC1\n",
        )
        .unwrap_err();
        assert!(
            e.message.contains("exactly one of url and access_token"),
            "{e}"
        );
        let c = parse(
            "route:\n  receiver: a\nreceivers:\n- name: a\n  wecom_configs:\n  - key: k1\n    mentioned_list: [zhangsan]\n",
        )
        .unwrap();
        assert_eq!(
            c.receivers[0].wecom_configs[0].robot_url(),
            format!("{WECOM_ROBOT_URL}?key=k1")
        );
        assert_eq!(
            format!("{:?}", c.receivers[0].wecom_configs[0].key),
            "Some(<secret>)"
        );
    }

    #[test]
    fn wecom_mentions_are_user_ids_not_at_all() {
        let yaml = |m: &str| {
            format!(
                "route:\n  receiver: a\nreceivers:\n- name: a\n  wecom_configs:\n  - key: k1\n    mentioned_list: [{m}]\n"
            )
        };
        let e = parse(&yaml("'@all'")).unwrap_err();
        assert!(e.message.contains("\"@all\" cannot be mentioned"), "{e}");
        assert!(
            e.message.starts_with("receiver \"a\": wecom_configs"),
            "{e}"
        );
        assert_eq!(e.line, Some(7), "{e}");
        let e = parse(&yaml("'a b'")).unwrap_err();
        assert!(e.message.contains("is not a WeCom user id"), "{e}");
        let e = parse(&yaml("''")).unwrap_err();
        assert!(e.message.contains("is not a WeCom user id"), "{e}");
        assert!(parse(&yaml("zhangsan, lisi")).is_ok());
    }
}
