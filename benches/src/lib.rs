//! Criterion benchmarks for axi-obs; see `benches/` and BENCHMARKS.md at the workspace root.
//! Run with `cargo bench -p axi-obs-benches`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

/// A peer's binary (`prometheus`, `alertmanager` ...) from `$AXI_PEERS_BIN`
/// (`scripts/install-peers.sh`) or `PATH`; `None` when it is in neither.
pub fn peer(name: &str) -> Option<PathBuf> {
    std::env::var_os("AXI_PEERS_BIN")
        .into_iter()
        .chain(std::env::var_os("PATH"))
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A free loopback port (bound, read and released).
///
/// # Panics
///
/// When no port can be bound on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A child process (a peer, a server a bench started) killed and reaped when dropped.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bare HTTP/1.1 GET to 127.0.0.1:`port` (a peer's API); the body, or `None` when the peer
/// does not answer.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf.split_once("\r\n\r\n")?.1.to_owned())
}
