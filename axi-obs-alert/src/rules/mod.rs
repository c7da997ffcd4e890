//! Prometheus-format rule files and their evaluation.
//!
//! [`load`] reads a file as Prometheus does (the first YAML document, anchors and merge keys
//! resolved, unknown fields refused) and validates it as `promtool check rules` does; every
//! error names `file:line`, the group and the rule. [`GroupState`] evaluates a group: rules
//! in file order, recording rules feeding later rules, the alert life-cycle of
//! [`AlertingState`] (pending, firing, inactive, `for`, `keep_firing_for`, `limit`), `ALERTS`
//! and `ALERTS_FOR_STATE` written back, staleness markers for series that stop.

mod alerting;
mod file;
pub(crate) mod glob;
mod group;
pub mod slot;

pub use alerting::{Alert, AlertState, AlertingState, Expand, RESOLVED_RETENTION_MS};
pub use file::{
    Rule, RuleError, RuleFile, RuleGroup, RuleKind, RuleWarning, load, parse, parse_duration,
};
pub use group::{GroupState, RuleOutcome, RuleQuery, RuleState, TemplateContext};
