//! Accumulates metric families by name while collectors run.

use std::collections::BTreeMap;

use axi_obs_core::metrics::{Family, MetricKind, Series, Value};

/// Families being collected, keyed by name; series are added one at a time.
#[derive(Debug, Default)]
pub struct Families {
    map: BTreeMap<String, Family>,
}

impl Families {
    /// Adds one sample to family `name` (created on first use with `kind` and `help`).
    pub fn add(
        &mut self,
        name: &str,
        kind: MetricKind,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        // Look up before inserting: most samples join a family that exists, and the key would
        // otherwise be allocated for nothing.
        let family = match self.map.get_mut(name) {
            Some(f) => f,
            None => self.map.entry(name.to_owned()).or_insert_with(|| Family {
                name: name.to_owned(),
                kind,
                unit: None,
                help: Some(help.to_owned()),
                series: Vec::new(),
            }),
        };
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        // Collectors pass their labels in name order; sort only what is not.
        if !labels.is_sorted() {
            labels.sort();
        }
        family.series.push(Series {
            labels,
            // Counters carry float totals (seconds, bytes): `Value::Gauge` holds the float and
            // the family's kind decides how it is rendered.
            value: Value::Gauge(value),
        });
    }

    /// A gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(name, MetricKind::Gauge, help, labels, value);
    }

    /// A counter sample.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(name, MetricKind::Counter, help, labels, value);
    }

    /// An untyped sample (node_exporter's `untyped` families).
    pub fn untyped(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(name, MetricKind::Untyped, help, labels, value);
    }

    /// The families, sorted by name.
    pub fn into_vec(self) -> Vec<Family> {
        self.map.into_values().collect()
    }

    /// The family `name`, if collected.
    pub fn get(&self, name: &str) -> Option<&Family> {
        self.map.get(name)
    }
}
