//! The text parsers behind the collectors, public so benchmarks (`benches/benches/proc_parsers.rs`
//! compares them with the `procfs-core` crate) and fuzzers can drive them with captured files
//! instead of the live `/proc`.
//!
//! Each takes the whole text of one file and the path it came from (named in errors) and appends
//! node_exporter's families to a [`Families`], exactly as the collector does at a scrape: the
//! work measured is parsing plus building the exposition model. [`mounts`] returns the parsed
//! mounts instead (the filesystem collector then calls `statvfs` on each).
//!
//! ```
//! use node_collector::{Families, parse};
//!
//! let mut out = Families::default();
//! parse::loadavg("0.52 0.58 0.59 2/397 12345\n", "/proc/loadavg".as_ref(), &mut out)?;
//! let load1 = out.get("node_load1").and_then(|f| f.series[0].value.as_gauge());
//! assert_eq!(load1, Some(0.52));
//! # Ok::<(), node_collector::CollectError>(())
//! ```

pub use crate::collectors::conntrack::parse_conntrack_stat as conntrack_stat;
pub use crate::collectors::disk::parse_diskstats as diskstats;
pub use crate::collectors::filesystem::{Mount, parse_mounts as mounts};
pub use crate::collectors::kernel::parse_loadavg as loadavg;
pub use crate::collectors::memory::parse_meminfo as meminfo;
pub use crate::collectors::network::parse_netdev as netdev;
pub use crate::collectors::schedstat::parse_schedstat as schedstat;
pub use crate::collectors::stat::{parse_cpu as cpu, parse_stat as stat};
pub use crate::collectors::udp_queues::parse_udp_queues as udp_queues;

#[doc(no_inline)]
pub use crate::{CollectError, Families};
