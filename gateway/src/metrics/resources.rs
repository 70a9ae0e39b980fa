//! The process's own CPU and memory use, for `llm_resource_utilization`, read at scrape time
//! from `/proc/self` (Linux; elsewhere the two series are simply not exported).
//!
//! - CPU: the CPU time the process used since the previous reading, over the wall time
//!   between them times the cores available to it (`available_parallelism`, which honours
//!   a cgroup quota and the affinity mask): 1 is every available core busy. A baseline moves
//!   only once it is a second old, so a burst of scrapes still measures over a second or
//!   more.
//! - Memory: the resident set (`VmRSS`) over the memory the process may use (the cgroup's
//!   limit when lower than the machine's, as the `system_resources` health check reads it).

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use resilience_core::health::{ResourceSampler, SysinfoSampler};

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times (`USER_HZ`, fixed at 100 by the
/// Linux ABI on every architecture the gateway is built for).
const USER_HZ: f64 = 100.0;

/// The shortest interval a CPU reading's baseline covers before it moves.
const MIN_CPU_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the process's CPU and memory utilization.
#[derive(Debug)]
pub(super) struct ProcessUse {
    /// The previous CPU reading: when, and the CPU seconds used by then.
    baseline: Mutex<Option<(Instant, f64)>>,
    /// Cores available to the process.
    cores: f64,
    /// The memory the process may use, in bytes; read once, at the first scrape.
    memory_limit: OnceLock<Option<u64>>,
}

impl ProcessUse {
    /// A reader whose first CPU reading covers the time since now.
    pub(super) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self {
            baseline: Mutex::new(cpu_seconds().map(|cpu| (Instant::now(), cpu))),
            cores: f64::from(u32::try_from(cores).unwrap_or(u32::MAX)),
            memory_limit: OnceLock::new(),
        }
    }

    /// The share of the available cores used since the previous reading (0 to 1), if the
    /// platform tells.
    pub(super) fn cpu(&self) -> Option<f64> {
        let now = Instant::now();
        let cpu = cpu_seconds()?;
        let mut baseline = self.baseline.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((then, cpu_then)) = *baseline else {
            *baseline = Some((now, cpu));
            return None;
        };
        let wall = now.saturating_duration_since(then);
        if wall >= MIN_CPU_INTERVAL {
            *baseline = Some((now, cpu));
        }
        if wall.is_zero() {
            return None;
        }
        Some(cpu_share(cpu - cpu_then, wall, self.cores))
    }

    /// The resident memory over the memory the process may use (0 to 1), if the platform
    /// tells.
    pub(super) fn memory(&self) -> Option<f64> {
        let limit = (*self.memory_limit.get_or_init(memory_limit))?;
        let resident = resident_bytes()?;
        Some(ratio(resident as f64, limit as f64))
    }
}

/// `used / total`, within 0..=1; 0 when `total` is not positive.
pub(super) fn ratio(used: f64, total: f64) -> f64 {
    if total > 0.0 {
        (used / total).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// `cpu_seconds` used over `wall` on `cores` cores, within 0..=1.
fn cpu_share(cpu_seconds: f64, wall: Duration, cores: f64) -> f64 {
    ratio(cpu_seconds, wall.as_secs_f64() * cores)
}

/// The CPU time (user and system) the process used so far, in seconds.
fn cpu_seconds() -> Option<f64> {
    parse_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name: field 3 (state) is the first; utime and stime are fields 14 and 15.
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime) as f64 / USER_HZ)
}

/// The resident set size, in bytes.
fn resident_bytes() -> Option<u64> {
    parse_resident_bytes(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `VmRSS` of a `/proc/<pid>/status`, in bytes (the file says kB).
fn parse_resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The memory the process may use: the cgroup's limit when lower than the machine's.
fn memory_limit() -> Option<u64> {
    SysinfoSampler::new()
        .sample()
        .ok()
        .map(|sample| sample.memory_total_bytes)
        .filter(|total| *total > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_are_read_after_the_command_name_whatever_it_holds() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime ...
        let stat = "4242 (we) ird (name)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 8";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_cpu_seconds("4242 (cut short) S 1 2"), None);
        assert_eq!(parse_cpu_seconds("no name at all"), None);
    }

    #[test]
    fn the_resident_set_is_read_in_bytes() {
        let status = "Name:\tgateway\nVmPeak:\t  9000 kB\nVmRSS:\t   2048 kB\nThreads:\t4\n";
        assert_eq!(parse_resident_bytes(status), Some(2048 * 1024));
        assert_eq!(parse_resident_bytes("Name:\tgateway\n"), None);
    }

    #[test]
    fn shares_are_ratios_of_what_is_available() {
        // One core busy for the whole second, on four cores: a quarter.
        assert_eq!(cpu_share(1.0, Duration::from_secs(1), 4.0), 0.25);
        assert_eq!(cpu_share(9.0, Duration::from_secs(1), 4.0), 1.0);
        assert_eq!(ratio(5.0, 0.0), 0.0);
        assert_eq!(ratio(1.0, 4.0), 0.25);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reports_its_own_use() {
        let process = ProcessUse::new();
        let memory = process.memory().unwrap();
        assert!(memory > 0.0 && memory <= 1.0, "{memory}");
        // Burn some CPU so that the reading is above zero.
        let mut x = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let cpu = process.cpu().unwrap();
        assert!((0.0..=1.0).contains(&cpu), "{cpu}");
        assert!(cpu > 0.0, "100 ms of spinning shows");
    }
}
