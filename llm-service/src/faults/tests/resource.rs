//! Resource faults start on `add` and stop however their fault leaves: removed, cleared,
//! expired, or the set dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use llm_api::fault::FaultKind;

use super::{eventually, spec};
use crate::faults::FaultSet;
use crate::faults::resource::{Resource, ResourceCounters};

const MIB: u64 = 1 << 20;

#[test]
fn cpu_burn_threads_run_until_the_fault_is_removed() {
    let set = FaultSet::new();
    let fault = set.add(spec(r#"{"kind":"cpu_burn","threads":2}"#)).unwrap();
    assert_eq!(
        set.burning_threads(),
        2,
        "counted from the moment `add` returns"
    );
    assert_eq!(set.active_kinds(), ["cpu_burn"]);
    assert!(set.remove(&fault.id));
    assert!(
        eventually(|| set.burning_threads() == 0),
        "the threads stop"
    );
}

#[test]
fn clearing_the_set_stops_the_burn() {
    let set = FaultSet::new();
    set.add(spec(r#"{"kind":"cpu_burn"}"#)).unwrap();
    assert_eq!(set.burning_threads(), 1);
    assert_eq!(set.clear(), 1);
    assert!(eventually(|| set.burning_threads() == 0));
}

#[test]
fn dropping_a_resource_stops_it() {
    // What dropping the whole set does to each of its entries.
    let counters = Arc::new(ResourceCounters::default());
    let burn = Resource::start(&FaultKind::CpuBurn { threads: 1 }, &counters).unwrap();
    let memory = Resource::start(&FaultKind::Memory { mb: 1 }, &counters).unwrap();
    assert_eq!(counters.burning_threads.load(Ordering::SeqCst), 1);
    assert_eq!(counters.held_bytes.load(Ordering::SeqCst), MIB);
    drop((burn, memory));
    assert_eq!(counters.held_bytes.load(Ordering::SeqCst), 0);
    assert!(eventually(|| counters
        .burning_threads
        .load(Ordering::SeqCst)
        == 0));
    assert!(
        Resource::start(&FaultKind::Hang, &counters)
            .unwrap()
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_cpu_burn_stops() {
    let set = FaultSet::new();
    set.add(spec(r#"{"kind":"cpu_burn","duration_s":1}"#))
        .unwrap();
    let reaper = set.spawn_reaper();
    tokio::time::sleep(Duration::from_millis(1_150)).await;
    assert!(set.list().is_empty());
    assert!(eventually(|| set.burning_threads() == 0));
    reaper.abort();
}

#[test]
fn a_memory_fault_holds_its_bytes_until_removed() {
    let set = FaultSet::new();
    let fault = set.add(spec(r#"{"kind":"memory","mb":3}"#)).unwrap();
    assert_eq!(set.held_memory_bytes(), 3 * MIB);
    set.add(spec(r#"{"kind":"memory","mb":1}"#)).unwrap();
    assert_eq!(set.held_memory_bytes(), 4 * MIB);
    assert!(set.remove(&fault.id));
    assert_eq!(set.held_memory_bytes(), MIB);
    assert_eq!(set.clear(), 1);
    assert_eq!(set.held_memory_bytes(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_expired_memory_fault_is_freed_on_the_next_access() {
    let set = FaultSet::new();
    set.add(spec(r#"{"kind":"memory","mb":2,"duration_s":1}"#))
        .unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        set.held_memory_bytes(),
        2 * MIB,
        "nobody looked yet, no reaper"
    );
    assert!(set.for_request(false).is_empty());
    assert_eq!(set.held_memory_bytes(), 0);
}

#[test]
fn a_memory_fault_larger_than_half_the_available_memory_is_refused() {
    let set = FaultSet::new();
    // 64 GiB: more than half of what this machine (or any CI runner here) has available.
    let refused = set
        .add(spec(r#"{"kind":"memory","mb":65536}"#))
        .unwrap_err();
    assert_eq!(refused.field, "mb");
    assert!(refused.message.contains("half"), "{}", refused.message);
    assert_eq!(set.held_memory_bytes(), 0);
    assert!(set.list().is_empty());
}
