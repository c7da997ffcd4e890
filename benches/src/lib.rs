//! Criterion benchmarks for axi-obs; see `benches/` and BENCHMARKS.md at the workspace root.
//! Run with `cargo bench -p axi-obs-benches`.
