//! The routing tree, as Alertmanager's `dispatch/route.go`: matching with `continue`,
//! inherited options, route keys and group keys.

use std::collections::BTreeSet;
use std::time::Duration;

use super::config::{
    DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL, RouteConfig,
};
use super::matcher::{MatchOp, Matcher, go_quote, matchers_string, sort_matchers};
use super::model::LabelSet;

/// The options a route applies to the alerts it takes (`RouteOpts`), after inheritance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOpts {
    /// The receiver's name.
    pub receiver: String,
    /// Labels to group by (ignored when `group_by_all`).
    pub group_by: BTreeSet<String>,
    /// Group by every label (`group_by: ['...']`).
    pub group_by_all: bool,
    /// Wait before the first notification of a new group.
    pub group_wait: Duration,
    /// Wait between notifications about a changed group.
    pub group_interval: Duration,
    /// Wait before repeating an unchanged notification.
    pub repeat_interval: Duration,
    /// Names of the remediation actions run for alerts this route takes (inherited; `[]`
    /// in the configuration turns them off).
    pub remediations: Vec<String>,
    /// Time intervals during which the route sends nothing (its own, not inherited).
    pub mute_time_intervals: Vec<String>,
    /// Time intervals outside which the route sends nothing (its own; none: always).
    pub active_time_intervals: Vec<String>,
}

/// A node of the routing tree.
///
/// ```
/// use std::path::Path;
/// use axi_obs_alert::delivery::{Config, LabelSet, Route};
///
/// let yaml = r#"
/// route:
///   receiver: default
///   group_by: [alertname]
///   routes:
///   - matchers: ['team="db"']
///     receiver: db
/// receivers: [{name: default}, {name: db}]
/// "#;
/// let cfg = Config::parse(yaml, Path::new("am.yml")).unwrap();
/// let tree = Route::from_config(cfg.route.as_ref().unwrap());
/// let alert = LabelSet::from([
///     ("alertname".to_string(), "Slow".to_string()),
///     ("team".to_string(), "db".to_string()),
/// ]);
/// let routes = tree.matches(&alert);
/// assert_eq!(routes[0].opts.receiver, "db");
/// assert_eq!(routes[0].group_key(&alert), r#"{}/{team="db"}:{alertname="Slow"}"#);
/// ```
#[derive(Debug, Clone)]
pub struct Route {
    /// Options after inheritance.
    pub opts: RouteOpts,
    /// Matchers, sorted as Alertmanager sorts them.
    pub matchers: Vec<Matcher>,
    /// Whether matching goes on to later siblings after this node matched.
    pub continue_: bool,
    /// Child routes, in order.
    pub routes: Vec<Route>,
    key: String,
}

impl Route {
    /// Builds the tree from its configuration (validate it first with
    /// [`Config::parse`](super::Config::parse)); unset options take Alertmanager's defaults.
    pub fn from_config(cfg: &RouteConfig) -> Route {
        let defaults = RouteOpts {
            receiver: String::new(),
            group_by: BTreeSet::new(),
            group_by_all: false,
            group_wait: DEFAULT_GROUP_WAIT,
            group_interval: DEFAULT_GROUP_INTERVAL,
            repeat_interval: DEFAULT_REPEAT_INTERVAL,
            remediations: Vec::new(),
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
        };
        Route::build(cfg, &defaults, None)
    }

    fn build(cfg: &RouteConfig, parent: &RouteOpts, parent_key: Option<&str>) -> Route {
        let mut opts = parent.clone();
        if let Some(r) = &cfg.receiver
            && !r.is_empty()
        {
            opts.receiver = r.clone();
        }
        if let Some(gb) = &cfg.group_by {
            // As Alertmanager: `...` sets group-by-all and keeps the inherited names; a list
            // of names (at least one) replaces them and clears group-by-all; `[]` inherits.
            if gb.iter().any(|l| l == "...") {
                opts.group_by_all = true;
            } else if !gb.is_empty() {
                opts.group_by = gb.iter().cloned().collect();
                opts.group_by_all = false;
            }
        }
        if let Some(d) = cfg.group_wait {
            opts.group_wait = d.0;
        }
        if let Some(d) = cfg.group_interval {
            opts.group_interval = d.0;
        }
        if let Some(d) = cfg.repeat_interval {
            opts.repeat_interval = d.0;
        }
        if let Some(names) = &cfg.remediations {
            opts.remediations.clone_from(names);
        }
        // As Alertmanager: a route's own, never its parent's.
        opts.mute_time_intervals
            .clone_from(&cfg.mute_time_intervals);
        opts.active_time_intervals
            .clone_from(&cfg.active_time_intervals);
        let mut matchers = Vec::new();
        for (k, v) in &cfg.match_ {
            // Equality matchers cannot fail to build.
            if let Ok(m) = Matcher::new(k, MatchOp::Equal, v) {
                matchers.push(m);
            }
        }
        for (k, v) in &cfg.match_re.0 {
            // Checked when the configuration was read.
            if let Ok(m) = Matcher::new(k, MatchOp::Regex, v) {
                matchers.push(m);
            }
        }
        matchers.extend(cfg.matchers.0.iter().cloned());
        sort_matchers(&mut matchers);
        let own = matchers_string(&matchers);
        let key = match parent_key {
            Some(p) => format!("{p}/{own}"),
            None => own,
        };
        let routes = cfg
            .routes
            .iter()
            .map(|c| Route::build(c, &opts, Some(&key)))
            .collect();
        Route {
            opts,
            matchers,
            continue_: cfg.continue_,
            routes,
            key,
        }
    }

    /// The route key: the `/`-joined matcher sets from the root, e.g.
    /// `{}/{owner="team-A"}/{env="production"}`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The routes that take an alert with `labels`: depth first, the deepest matching
    /// nodes, stopping at the first matching child unless it has `continue`. Empty when this
    /// node itself does not match.
    pub fn matches(&self, labels: &LabelSet) -> Vec<&Route> {
        if !self.matchers.iter().all(|m| m.matches(labels)) {
            return Vec::new();
        }
        let mut all = Vec::new();
        for child in &self.routes {
            let found = child.matches(labels);
            let matched = !found.is_empty();
            all.extend(found);
            if matched && !child.continue_ {
                break;
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        all
    }

    /// The labels of `labels` this route groups by (`getGroupLabels`).
    pub fn group_labels(&self, labels: &LabelSet) -> LabelSet {
        labels
            .iter()
            .filter(|(k, _)| self.opts.group_by_all || self.opts.group_by.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The aggregation group key of an alert taken by this route:
    /// `<route key>:<group labels>`, e.g. `{}/{env="prod"}:{alertname="X", job="j"}`.
    pub fn group_key(&self, labels: &LabelSet) -> String {
        format!(
            "{}:{}",
            self.key,
            label_set_string(&self.group_labels(labels))
        )
    }
}

/// prometheus/common's `LabelSet.String()`: `{a="1", b="2"}`, values Go-quoted.
pub fn label_set_string(ls: &LabelSet) -> String {
    let inner: Vec<String> = ls
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Config;
    use std::path::Path;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tree(yaml: &str) -> Route {
        let cfg = Config::parse(yaml, Path::new("t.yml")).unwrap();
        Route::from_config(cfg.route.as_ref().unwrap())
    }

    #[test]
    fn group_key_format() {
        let t =
            tree("route:\n  receiver: a\n  group_by: [alertname, job]\nreceivers:\n- name: a\n");
        let l = ls(&[("alertname", "X"), ("job", "a\"b"), ("x", "1")]);
        assert_eq!(t.group_key(&l), r#"{}:{alertname="X", job="a\"b"}"#);
        assert_eq!(t.group_key(&ls(&[("x", "1")])), "{}:{}");
    }

    #[test]
    fn group_by_all_and_empty_list_inherit_as_alertmanager() {
        let t = tree(
            "route:\n  receiver: a\n  group_by: [x]\n  routes:\n  - matchers: [k=\"1\"]\n    group_by: ['...']\n    routes:\n    - matchers: [j=\"1\"]\n      group_by: []\n  - matchers: [k=\"2\"]\n    group_by: [y]\nreceivers:\n- name: a\n",
        );
        let all = &t.routes[0];
        assert!(all.opts.group_by_all);
        assert_eq!(all.opts.group_by, BTreeSet::from(["x".to_string()]));
        assert!(all.routes[0].opts.group_by_all);
        assert!(!t.routes[1].opts.group_by_all);
        assert_eq!(
            t.routes[1].group_key(&ls(&[("k", "2"), ("y", "v")])),
            r#"{}/{k="2"}:{y="v"}"#
        );
    }

    #[test]
    fn non_matching_root_matches_nothing() {
        let t = tree("route:\n  receiver: a\nreceivers:\n- name: a\n");
        let child = &t; // the root has no matchers, so it takes everything
        assert_eq!(child.matches(&LabelSet::new()).len(), 1);
        let t2 = tree(
            "route:\n  receiver: a\n  routes:\n  - matchers: [k=\"1\"]\n    routes:\n    - matchers: [j=\"1\"]\nreceivers:\n- name: a\n",
        );
        assert!(t2.routes[0].matches(&ls(&[("k", "2")])).is_empty());
        assert_eq!(
            t2.routes[0].matches(&ls(&[("k", "1")]))[0].key(),
            r#"{}/{k="1"}"#
        );
    }
}
