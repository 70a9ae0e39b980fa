//! The target's resident memory: its process is `--pid`, or, for a loopback target, the
//! process holding the socket that listens on the target's port (found through
//! `/proc/net/tcp{,6}` and `/proc/*/fd`). Linux only; elsewhere RSS checks are skipped.

use std::path::Path;

/// The TCP state `LISTEN` in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";
/// At most this many `/proc` entries are looked at when searching for the socket's owner.
const MAX_PROCESSES: usize = 100_000;

/// Where the target's RSS is read from.
#[derive(Debug, Clone)]
pub struct RssSource {
    pid: u32,
}

impl RssSource {
    /// The process `pid`, when its RSS can be read.
    pub fn pid(pid: u32) -> Option<Self> {
        let source = Self { pid };
        source.sample().map(|_| source)
    }

    /// The process listening on TCP `port` (any local address), other than this one.
    pub fn listening_on(port: u16) -> Option<Self> {
        let mut inodes = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = std::fs::read_to_string(table) {
                inodes.extend(listening_inodes(&text, port));
            }
        }
        if inodes.is_empty() {
            return None;
        }
        let own = std::process::id();
        let entries = std::fs::read_dir("/proc").ok()?;
        for entry in entries.flatten().take(MAX_PROCESSES) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != own && holds_socket(&entry.path().join("fd"), &inodes) {
                return Self::pid(pid);
            }
        }
        None
    }

    /// The process id.
    pub fn process_id(&self) -> u32 {
        self.pid
    }

    /// The process's RSS in bytes now; `None` once it is gone.
    pub fn sample(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        vm_rss_bytes(&status)
    }
}

/// True when one of the descriptors in `fd_dir` is a socket with one of `inodes`.
fn holds_socket(fd_dir: &Path, inodes: &[u64]) -> bool {
    let Ok(fds) = std::fs::read_dir(fd_dir) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .and_then(|target| socket_inode(&target.to_string_lossy()))
            .is_some_and(|inode| inodes.contains(&inode))
    })
}

/// The inodes of the sockets in LISTEN state on local port `port`, from the text of
/// `/proc/net/tcp` or `/proc/net/tcp6`.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            let (_, port_hex) = local.rsplit_once(':')?;
            let local_port = u16::from_str_radix(port_hex, 16).ok()?;
            (local_port == port && *state == TCP_LISTEN)
                .then(|| inode.parse::<u64>().ok())
                .flatten()
                .filter(|inode| *inode != 0)
        })
        .collect()
}

/// The inode of a descriptor's link target `socket:[12345]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}
