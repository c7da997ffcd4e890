//! Aggregation groups found by a hash of their labels, so an input series is grouped
//! without building its grouping label set (only each group's, once).

use super::fxhash::FxMap;
use super::value::{Labels, Projection, Sample};

/// Groups in order of first appearance (Prometheus's output order), each with its members.
#[derive(Default)]
pub(crate) struct Groups {
    /// Hash of a group's labels -> its first group; groups with the same hash are chained.
    by_hash: FxMap<u64, usize>,
    pub(crate) list: Vec<Group>,
}

/// One group: its labels and its members, whole (`topk`, `bottomk`) or as values.
pub(crate) struct Group {
    pub(crate) labels: Labels,
    pub(crate) samples: Vec<Sample>,
    pub(crate) values: Vec<f64>,
    /// The next group with the same hash.
    next: Option<usize>,
}

impl Groups {
    /// The group of a sample whose labels project to `projection`: found by the hash of the
    /// projected pairs, created (its labels built) when new.
    pub(crate) fn of(&mut self, labels: &Labels, projection: &Projection<'_>) -> usize {
        if let Projection::Keep([]) = projection {
            // No grouping labels (`sum(x)`): one group, without reading the labels.
            if self.list.is_empty() {
                self.find_or_insert(0, |_| true, Labels::new);
            }
            return 0;
        }
        self.find_or_insert(
            labels.projected_hash(projection),
            |g| labels.projects_to(projection, g),
            || labels.project(projection),
        )
    }

    /// The group with exactly these labels (built by the caller, as for `count_values`).
    pub(crate) fn of_key(&mut self, key: Labels) -> usize {
        self.find_or_insert(key.fx_hash(), |g| *g == key, || key.clone())
    }

    fn find_or_insert(
        &mut self,
        hash: u64,
        is: impl Fn(&Labels) -> bool,
        build: impl FnOnce() -> Labels,
    ) -> usize {
        let mut at = self.by_hash.get(&hash).copied();
        let mut last = None;
        while let Some(i) = at {
            if is(&self.list[i].labels) {
                return i;
            }
            last = Some(i);
            at = self.list[i].next;
        }
        let i = self.list.len();
        self.list.push(Group {
            labels: build(),
            samples: Vec::new(),
            values: Vec::new(),
            next: None,
        });
        match last {
            Some(l) => self.list[l].next = Some(i),
            None => {
                self.by_hash.insert(hash, i);
            }
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn groups_by_projection_in_order_of_appearance() {
        let by = ["job".to_owned()];
        let without = ["instance".to_owned()];
        let inputs = [
            ls(&[("__name__", "m"), ("job", "b"), ("instance", "1")]),
            ls(&[("__name__", "m"), ("job", "a"), ("instance", "1")]),
            ls(&[("__name__", "n"), ("job", "b"), ("instance", "2")]),
            ls(&[("__name__", "n"), ("instance", "3")]),
        ];
        for projection in [Projection::Keep(&by), Projection::Drop(&without)] {
            let mut g = Groups::default();
            let ids: Vec<usize> = inputs.iter().map(|l| g.of(l, &projection)).collect();
            assert_eq!(ids, [0, 1, 0, 2], "{projection:?}");
            for (l, i) in inputs.iter().zip(ids) {
                assert_eq!(g.list[i].labels, l.project(&projection));
            }
        }
        assert_eq!(g_labels(&inputs, Projection::Keep(&[])), [Labels::new()]);
    }

    fn g_labels(inputs: &[Labels], projection: Projection<'_>) -> Vec<Labels> {
        let mut g = Groups::default();
        for l in inputs {
            g.of(l, &projection);
        }
        g.list.into_iter().map(|g| g.labels).collect()
    }

    #[test]
    fn hash_collisions_are_told_apart() {
        let mut g = Groups::default();
        // Force every key onto one hash: the chain keeps them apart.
        let a = g.find_or_insert(7, |_| false, || ls(&[("a", "1")]));
        let b = g.find_or_insert(7, |l| l.get("a") == Some("2"), || ls(&[("a", "2")]));
        let a2 = g.find_or_insert(7, |l| l.get("a") == Some("1"), || unreachable!());
        let b2 = g.find_or_insert(7, |l| l.get("a") == Some("2"), || unreachable!());
        assert_eq!((a, b, a2, b2), (0, 1, 0, 1));
        assert_eq!(g.of_key(ls(&[("x", "1")])), 2);
        assert_eq!(g.of_key(ls(&[("x", "1")])), 2);
    }
}
