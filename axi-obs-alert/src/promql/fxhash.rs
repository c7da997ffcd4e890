//! The Fx hash maps and sets the evaluator groups and matches label sets by; the hasher is
//! axi-obs-core's (one copy for the workspace).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

pub(crate) use axi_obs_core::__private::FxHasher;

pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
pub(crate) type FxSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;
