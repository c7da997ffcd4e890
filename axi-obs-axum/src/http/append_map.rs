//! [`AppendMap`]: a bounded map that only grows, read without a lock. The layer's caches
//! (route labels, metric handles) are read on every request and written once per key.
//!
//! A `RwLock<HashMap>` costs every read two atomic read-modify-writes on one cache line
//! that all worker threads share, and a value has to be cloned out of it (more atomics for a
//! handle) unless the caller's code runs under the lock. Here a read is a hash and a few
//! acquire loads, and the value is borrowed for as long as the map lives: a recorder's code
//! runs under no lock of ours.
//!
//! Layout: levels of open-addressed slots, each level four times the size of the one before
//! and allocated when the one before overflows. A key lives in the first slot of its probe
//! sequence that was empty when it was inserted; slots are never emptied, so a reader that
//! meets an empty slot knows the key is not in the map. A slot is a `OnceLock`: two threads
//! inserting into the same empty slot are ordered by it (the loser sees the winner's key and
//! probes on), and a key is made at most once.

use std::borrow::Borrow;
use std::hash::{BuildHasher, BuildHasherDefault, Hash};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use axi_obs_core::__private::FxHasher;

/// Slots in the first level; each next level has four times as many.
const FIRST_LEVEL_BITS: u32 = 6;
/// Levels: 64 · (1 + 4 + ... + 4⁶) = 349,504 slots in all, allocated only as they fill.
const LEVELS: usize = 7;
/// Slots probed in a level before the next one is tried.
const PROBES: usize = 8;

type Slot<K, V> = OnceLock<Box<(K, V)>>;
/// One level's slots, allocated when first needed.
type Level<K, V> = OnceLock<Box<[Slot<K, V>]>>;

/// A concurrent map from `K` to `V` with at most `cap` entries, which are never removed or
/// replaced.
pub(crate) struct AppendMap<K, V> {
    levels: [Level<K, V>; LEVELS],
    len: AtomicUsize,
    cap: usize,
}

impl<K, V> AppendMap<K, V> {
    /// An empty map that takes at most `cap` entries (a little more when threads race for
    /// the last places). Nothing is allocated until the first insert.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            levels: Default::default(),
            len: AtomicUsize::new(0),
            cap,
        }
    }

    /// How many entries the map holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

impl<K: Hash + Eq, V> AppendMap<K, V> {
    /// The value of `key`, if the map has it.
    #[inline]
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = hash(key);
        for (level, slots) in self.levels.iter().enumerate() {
            let slots = slots.get()?;
            for slot in probe(slots, level, hash) {
                let (k, v) = &**slot.get()?;
                if k.borrow() == key {
                    return Some(v);
                }
            }
        }
        None
    }

    /// The value of `key`, made by `make` and inserted when the map does not have it yet;
    /// `None` when it does not and is full (or, at the cap, while another thread is inserting
    /// it: callers then make the value without the map, as they do when it is full). `make`
    /// runs at most once per key, for the thread that takes the key's slot, while other threads
    /// inserting into that slot wait (it must not use this map).
    pub(crate) fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> Option<&V> {
        let hash = hash(&key);
        let mut pending = Some((key, make));
        for (level, slots) in self.levels.iter().enumerate() {
            let full = || self.len.load(Ordering::Relaxed) >= self.cap;
            let slots = if full() {
                // A full map allocates no new level: the key could not go into it.
                slots.get()?
            } else {
                slots.get_or_init(|| {
                    (0..1usize << level_bits(level))
                        .map(|_| OnceLock::new())
                        .collect()
                })
            };
            for slot in probe(slots, level, hash) {
                // The key would take this slot if the map were not full. (A slot another
                // thread is filling reads as empty too: at the cap, a key inserted at this
                // moment by another thread can be reported as not inserted.)
                if slot.get().is_none() && full() {
                    return None;
                }
                let (k, v) = &**slot.get_or_init(|| {
                    let (key, make) = pending.take().expect("a key is inserted once");
                    // Counted once made: a `make` that panics leaves no entry and no count.
                    let value = make();
                    self.len.fetch_add(1, Ordering::Relaxed);
                    Box::new((key, value))
                });
                match &pending {
                    // Ours, just inserted.
                    None => return Some(v),
                    // Inserted by another thread first.
                    Some((key, _)) if k == key => return Some(v),
                    Some(_) => {}
                }
            }
        }
        // Every level's probes are taken: only with far more keys than any cap here.
        None
    }
}

impl<K, V> std::fmt::Debug for AppendMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendMap")
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

fn level_bits(level: usize) -> u32 {
    FIRST_LEVEL_BITS + 2 * level as u32
}

fn hash<Q: Hash + ?Sized>(key: &Q) -> u64 {
    // Fx leaves its best-mixed bits at the top; multiplied once more so that the top bits
    // of a short key (an integer tuple) are mixed too.
    BuildHasherDefault::<FxHasher>::default()
        .hash_one(key)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The slots `hash` probes in `level`: `PROBES` in a row from the one its top bits name.
fn probe<S>(slots: &[S], level: usize, hash: u64) -> impl Iterator<Item = &S> {
    let mask = slots.len() - 1;
    let start = (hash >> (64 - level_bits(level))) as usize;
    (0..PROBES).filter_map(move |i| slots.get((start + i) & mask))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn values_are_found_again_across_levels() {
        let map = AppendMap::<u64, u64>::new(100_000);
        for i in 0..20_000 {
            assert_eq!(map.get_or_insert_with(i, || i * 3), Some(&(i * 3)));
        }
        assert_eq!(map.len(), 20_000);
        for i in 0..20_000 {
            assert_eq!(map.get(&i), Some(&(i * 3)), "{i}");
            // Present keys are not made again.
            assert_eq!(map.get_or_insert_with(i, || unreachable!()), Some(&(i * 3)));
        }
        assert_eq!(map.get(&20_000), None);
        // More than the first levels hold: the later ones were used.
        assert!(map.levels[2].get().is_some());
    }

    #[test]
    fn borrowed_keys_find_owned_ones() {
        let map = AppendMap::<Box<str>, usize>::new(10);
        map.get_or_insert_with("/users/{id}".into(), || 1);
        assert_eq!(map.get("/users/{id}"), Some(&1));
        assert_eq!(map.get("/users"), None);
    }

    #[test]
    fn a_full_map_takes_no_new_keys_but_keeps_its_own() {
        let map = AppendMap::<u32, u32>::new(3);
        for i in 0..3 {
            assert!(map.get_or_insert_with(i, || i).is_some());
        }
        let mut made = false;
        assert_eq!(
            map.get_or_insert_with(3, || {
                made = true;
                3
            }),
            None
        );
        assert!(!made);
        assert_eq!(map.len(), 3);
        assert_eq!(map.get_or_insert_with(1, || 9), Some(&1));
        assert_eq!(map.get(&3), None);
    }

    #[test]
    fn a_full_map_allocates_no_new_level() {
        // A full map whose first level is taken in every slot: each new key's probes all
        // meet other keys, so it would go to the next level if there were room.
        let map = AppendMap::<u32, u32>::new(0);
        let first = map.levels[0].get_or_init(|| (0..64).map(|_| OnceLock::new()).collect());
        for (i, slot) in first.iter().enumerate() {
            let k = 1_000_000 + i as u32;
            assert!(slot.set(Box::new((k, k))).is_ok());
        }
        for k in 0..100 {
            assert_eq!(map.get_or_insert_with(k, || k), None);
        }
        assert!(map.levels[1].get().is_none());
    }

    #[test]
    fn a_make_that_panics_leaves_no_entry() {
        let map = AppendMap::<u32, u32>::new(1);
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            map.get_or_insert_with(7, || panic!("recorder failed"))
        }));
        assert!(failed.is_err());
        assert_eq!(map.len(), 0);
        assert_eq!(map.get(&7), None);
        // The slot and the one place are still free.
        assert_eq!(map.get_or_insert_with(7, || 8), Some(&8));
    }

    #[test]
    fn racing_threads_make_each_key_once() {
        let map = Arc::new(AppendMap::<u32, u32>::new(10_000));
        let made = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (map, made) = (map.clone(), made.clone());
                std::thread::spawn(move || {
                    // Every thread inserts every key, in different orders.
                    for i in 0..2_000u32 {
                        let k = if t % 2 == 0 { i } else { 1_999 - i };
                        let v = map.get_or_insert_with(k, || {
                            made.fetch_add(1, Ordering::Relaxed);
                            k + 1
                        });
                        assert_eq!(v, Some(&(k + 1)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(made.load(Ordering::Relaxed), 2_000);
        assert_eq!(map.len(), 2_000);
        for k in 0..2_000 {
            assert_eq!(map.get(&k), Some(&(k + 1)));
        }
    }
}
