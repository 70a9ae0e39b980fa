//! CPU time and resident memory of the servers under test, from `/proc` (Linux only): a
//! server is its process and its children (nginx's master and workers).

use std::process::Command;

/// Clock ticks per second when `getconf CLK_TCK` cannot say: 100 on every Linux
/// architecture the bench runs on (`USER_HZ`).
const DEFAULT_CLK_TCK: u64 = 100;

/// The fields of `/proc/<pid>/stat` the bench reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 4: the parent's pid.
    pub ppid: u32,
    /// Fields 14 and 15: user plus system time, in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and
/// may hold spaces and parentheses itself, so the fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let close = text.rfind(')')?;
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // fields[0] is field 3 (the state).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        ppid,
        cpu_ticks: utime.saturating_add(stime),
    })
}

/// `VmRSS` of the text of `/proc/<pid>/status`, in bytes.
pub fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Clock ticks per second (`getconf CLK_TCK`, read once by the caller), else 100.
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(DEFAULT_CLK_TCK)
}

/// The stat of process `pid`, `None` once it is gone.
fn stat_of(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `root` and its direct children (nginx's workers), found by scanning `/proc/*/stat`.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut pids = vec![root];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != root && stat_of(pid).is_some_and(|stat| stat.ppid == root) {
            pids.push(pid);
        }
    }
    pids
}

/// A server's CPU time and memory at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of all its processes, in clock ticks.
    pub cpu_ticks: u64,
    /// Summed `VmRSS` of all its processes, in bytes.
    pub rss_bytes: u64,
    /// The processes counted.
    pub pids: Vec<u32>,
}

/// The usage of the server whose main process is `root` (with its children); `None` when
/// the main process is gone.
pub fn sample(root: u32) -> Option<Usage> {
    stat_of(root)?;
    let pids = process_tree(root);
    let mut usage = Usage {
        cpu_ticks: 0,
        rss_bytes: 0,
        pids: Vec::with_capacity(pids.len()),
    };
    for pid in pids {
        let (Some(stat), Some(rss)) = (
            stat_of(pid),
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| vm_rss_bytes(&s)),
        ) else {
            continue;
        };
        usage.cpu_ticks = usage.cpu_ticks.saturating_add(stat.cpu_ticks);
        usage.rss_bytes = usage.rss_bytes.saturating_add(rss);
        usage.pids.push(pid);
    }
    Some(usage)
}

/// CPU µs per request between two samples: Δticks converted at `clk_tck` per second,
/// divided by `requests`; `None` without requests.
pub fn cpu_us_per_request(before: u64, after: u64, clk_tck: u64, requests: u64) -> Option<f64> {
    if requests == 0 || clk_tck == 0 {
        return None;
    }
    let ticks = after.saturating_sub(before) as f64;
    Some(ticks * 1_000_000.0 / clk_tck as f64 / requests as f64)
}
