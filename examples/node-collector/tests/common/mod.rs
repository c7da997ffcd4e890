//! Helpers shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use axi_obs_core::metrics::Family;
use node_collector::config::Config;

/// The value of the series of `name` carrying all `labels`.
pub(crate) fn value(families: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .find(|f| f.name == name)?
        .series
        .iter()
        .find(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })?
        .value
        .as_gauge()
}

/// A configuration from YAML text.
pub(crate) fn config(yaml: &str) -> Config {
    Config::parse(yaml, Path::new("test.yml"), &[]).unwrap()
}
