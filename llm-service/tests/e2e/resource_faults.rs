//! Resource faults seen from outside the process, in `/proc/<pid>`: `cpu_burn` makes its
//! CPU time grow, `memory` its resident set, each only while the fault lasts. Kept small
//! (one thread, 128 MiB, 2 s) for a 2-core machine.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::faults::active_faults;
use crate::harness::{LlmExt, LlmService, eventually};

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`).
const TICKS_PER_SECOND: u64 = 100;
const MIB: u64 = 1024 * 1024;

/// The process's CPU time (user + system) in clock ticks: fields 14 and 15 of
/// `/proc/<pid>/stat`, counted after the `(comm)` field, which may hold spaces.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
    // Field 3 (state) is the first after `)`, so fields 14 and 15 are at 11 and 12.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    utime + stime
}

/// The names of the process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// The process's resident set (`VmRSS` of `/proc/<pid>/status`) in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .map(|kib| kib.trim().parse().unwrap())
        .expect("a VmRSS line");
    kib * 1024
}

#[tokio::test]
async fn cpu_burn_spins_a_thread_until_it_expires() {
    let llm = LlmService::builder().start().await;
    let pid = llm.pid();
    let start = Instant::now();
    llm.add_fault(json!({"kind": "cpu_burn", "threads": 1, "duration_s": 3}))
        .await;
    let burning_from = cpu_ticks(pid);
    let named = eventually(Duration::from_secs(2), || async {
        thread_names(pid).iter().any(|n| n == "cpu-burn-0")
    })
    .await;
    assert!(named, "{:?}", thread_names(pid));
    // One spinning thread earns 100 ticks a second on a free core; a third of a second is
    // enough to tell it from an idle server, even on a machine busy with other tests.
    let burned = eventually(Duration::from_millis(2500), || async {
        cpu_ticks(pid) - burning_from >= TICKS_PER_SECOND / 3
    })
    .await;
    assert!(
        burned,
        "CPU time grew by {} ticks only",
        cpu_ticks(pid) - burning_from
    );
    let (_, health) = llm.get_json("/health").await;
    assert_eq!(health["active_faults"], json!(["cpu_burn"]));

    let stopped = eventually(Duration::from_secs(4), || async {
        active_faults(&llm).await.is_empty()
            && !thread_names(pid).iter().any(|n| n.starts_with("cpu-burn"))
    })
    .await;
    let took = start.elapsed();
    assert!(
        stopped,
        "the fault and its thread are gone: {:?}",
        thread_names(pid)
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "{took:?}"
    );

    // A measuring window, not a wait for an event: an idle server earns next to nothing.
    let idle_from = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = cpu_ticks(pid) - idle_from;
    assert!(
        idle < 15,
        "CPU time still grows after expiry: {idle} ticks in 500 ms"
    );
}

#[tokio::test]
async fn memory_holds_resident_memory_until_deleted() {
    let llm = LlmService::builder().start().await;
    let pid = llm.pid();
    let before = rss_bytes(pid);
    let id = llm.add_fault(json!({"kind": "memory", "mb": 128})).await;
    // The memory is touched before the fault is acknowledged.
    let held = rss_bytes(pid);
    assert!(
        held >= before + 100 * MIB,
        "VmRSS {} MiB → {} MiB",
        before / MIB,
        held / MIB
    );
    let (_, health) = llm.get_json("/health").await;
    assert_eq!(health["active_faults"], json!(["memory"]));

    let deleted = llm
        .client
        .delete(format!("{}/chaos/faults/{id}", llm.url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let released = eventually(Duration::from_secs(2), || async {
        rss_bytes(pid) < before + 40 * MIB
    })
    .await;
    assert!(
        released,
        "VmRSS {} MiB after deletion, {} MiB before the fault",
        rss_bytes(pid) / MIB,
        before / MIB
    );
}
