//! The `/proc` parsers of axi-node-collector against the `procfs-core` crate (the parsing half
//! of `procfs`, which reads from any `Read` without touching `/proc`), side by side in one run
//! on the same texts.
//!
//! The texts are captured from this machine's `/proc` once at start (`/proc/stat`,
//! `/proc/meminfo`, `/proc/net/dev`, `/proc/diskstats`, `/proc/loadavg`, `/proc/self/mounts`;
//! sizes printed), so both sides parse exactly the same bytes and no file I/O is timed.
//!
//! The two sides do not produce the same thing, and the rows say so: ours goes from text to
//! node_exporter's metric families (names, HELP, labels, values in seconds and bytes: what a
//! scrape renders), procfs-core from text to its typed structs (which an exporter would then
//! still have to turn into families). Each peer row calls `FromBufRead::from_buf_read` on the
//! byte slice directly (no `BufReader` allocation), or `FromRead::from_read` where that is the
//! only entry point (`LoadAverage`).

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use node_collector::{Families, parse};
use procfs_core::{FromBufRead, FromBufReadSI, FromRead};

/// Reads one captured file; the bench cannot run without it.
fn capture(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot capture {path}: {e}"))
}

/// What procfs-core's `KernelStats` needs besides the text (only the tick rate matters to
/// parsing; it is 100 on Linux, as our parser assumes).
fn system_info() -> procfs_core::ExplicitSystemInfo {
    procfs_core::ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    }
}

/// Runs one file's pair of rows: ours (`axi`) and procfs-core's. `describe` summarises our
/// output for the printed header.
fn pair<O>(
    c: &mut Criterion,
    file: &str,
    what: &str,
    ours: impl Fn(&str, &Path) -> O,
    describe: impl Fn(O) -> String,
    peer_name: &str,
    peer: impl Fn(&[u8]),
) {
    let text = capture(file);
    let path = Path::new(file);
    // Both sides must accept the capture, or the comparison means nothing.
    println!(
        "{file}: {} bytes, {} lines -> {}",
        text.len(),
        text.lines().count(),
        describe(ours(&text, path))
    );
    peer(text.as_bytes());
    let mut g = c.benchmark_group(format!("proc_parsers/{what}"));
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("axi node_collector::parse", |b| {
        b.iter(|| ours(black_box(&text), path))
    });
    g.bench_function(peer_name, |b| b.iter(|| peer(black_box(text.as_bytes()))));
    g.finish();
}

/// "N series in M families".
fn series(f: Families) -> String {
    let v = f.into_vec();
    let n: usize = v.iter().map(|f| f.series.len()).sum();
    format!("{n} series in {} families", v.len())
}

fn families(f: impl FnOnce(&mut Families) -> Result<(), parse::CollectError>) -> Families {
    let mut out = Families::default();
    f(&mut out).unwrap();
    out
}

fn proc_parsers(c: &mut Criterion) {
    let si = system_info();
    pair(
        c,
        "/proc/stat",
        "stat",
        |t, p| {
            families(|out| {
                parse::cpu(t, p, out)?;
                parse::stat(t, p, out)
            })
        },
        series,
        "procfs-core KernelStats",
        |b| {
            black_box(procfs_core::KernelStats::from_buf_read(b, &si).unwrap());
        },
    );
    pair(
        c,
        "/proc/meminfo",
        "meminfo",
        |t, p| families(|out| parse::meminfo(t, p, out)),
        series,
        "procfs-core Meminfo",
        |b| {
            black_box(procfs_core::Meminfo::from_buf_read(b).unwrap());
        },
    );
    pair(
        c,
        "/proc/net/dev",
        "net_dev",
        |t, p| families(|out| parse::netdev(t, p, out)),
        series,
        "procfs-core InterfaceDeviceStatus",
        |b| {
            black_box(procfs_core::net::InterfaceDeviceStatus::from_buf_read(b).unwrap());
        },
    );
    pair(
        c,
        "/proc/diskstats",
        "diskstats",
        |t, p| families(|out| parse::diskstats(t, p, out)),
        series,
        "procfs-core DiskStats",
        |b| {
            black_box(procfs_core::DiskStats::from_buf_read(b).unwrap());
        },
    );
    pair(
        c,
        "/proc/loadavg",
        "loadavg",
        |t, p| families(|out| parse::loadavg(t, p, out)),
        series,
        "procfs-core LoadAverage",
        |b| {
            black_box(procfs_core::LoadAverage::from_read(b).unwrap());
        },
    );
    pair(
        c,
        "/proc/self/mounts",
        "mounts",
        |t, _| parse::mounts(t),
        |m| format!("{} mounts", m.len()),
        "procfs-core Vec<MountEntry>",
        |b| {
            black_box(Vec::<procfs_core::MountEntry>::from_buf_read(b).unwrap());
        },
    );
}

criterion_group!(benches, proc_parsers);
criterion_main!(benches);
