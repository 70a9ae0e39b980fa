//! The set: which kinds touch which requests, rates, counts, expiry, listing, removal.

use std::time::Duration;

use llm_api::fault::FaultKind;

use super::spec;
use crate::faults::{ErrorFault, FaultSet, RequestFaults, StreamFaults};

fn with(body: &str) -> std::sync::Arc<FaultSet> {
    let set = FaultSet::new();
    set.add(spec(body)).unwrap();
    set
}

#[test]
fn request_kinds_map_to_their_fields() {
    let latency = with(r#"{"kind":"latency","ms":250}"#).for_request(false);
    assert_eq!(latency.latency, Some(Duration::from_millis(250)));

    let error = with(r#"{"kind":"error","status":429,"code":"rate_limit_exceeded","message":"slow down","retry_after_s":3}"#)
        .for_request(false);
    let expected = ErrorFault {
        status: 429,
        code: Some("rate_limit_exceeded".into()),
        message: Some("slow down".into()),
        retry_after_s: Some(3),
    };
    assert_eq!(error.error, Some(expected));

    assert!(with(r#"{"kind":"hang"}"#).for_request(false).hang);
    assert!(with(r#"{"kind":"reset"}"#).for_request(false).reset);
    assert!(with(r#"{"kind":"malformed"}"#).for_request(false).malformed);
    // Request faults touch streams too.
    assert!(with(r#"{"kind":"reset"}"#).for_request(true).reset);
}

#[test]
fn a_latency_range_draws_within_its_bounds() {
    let set = with(r#"{"kind":"latency","min_ms":100,"max_ms":200}"#);
    let draws: Vec<Duration> = (0..500)
        .filter_map(|_| set.for_request(false).latency)
        .collect();
    assert_eq!(draws.len(), 500);
    let (lo, hi) = (Duration::from_millis(100), Duration::from_millis(200));
    assert!(draws.iter().all(|d| (lo..=hi).contains(d)));
    assert!(
        draws.iter().any(|d| *d != draws[0]),
        "the delay is drawn, not fixed"
    );
}

#[test]
fn stream_kinds_touch_streaming_requests_only() {
    let cases = [
        (
            r#"{"kind":"slow_first_token","ms":700}"#,
            StreamFaults {
                slow_first_token: Some(Duration::from_millis(700)),
                ..Default::default()
            },
        ),
        (
            r#"{"kind":"stream_cut","after_tokens":3}"#,
            StreamFaults {
                cut_after: Some(3),
                ..Default::default()
            },
        ),
        (
            r#"{"kind":"stream_stall","after_tokens":2,"ms":900}"#,
            StreamFaults {
                stall: Some((2, Duration::from_millis(900))),
                ..Default::default()
            },
        ),
        (
            r#"{"kind":"stream_malformed","after_tokens":4}"#,
            StreamFaults {
                malformed_after: Some(4),
                ..Default::default()
            },
        ),
        (
            r#"{"kind":"no_done"}"#,
            StreamFaults {
                no_done: true,
                ..Default::default()
            },
        ),
    ];
    for (body, expected) in cases {
        let set = with(&body.replace('}', r#","count":1}"#));
        assert!(set.for_request(false).is_empty(), "{body}");
        assert_eq!(
            set.list()[0].remaining,
            Some(1),
            "a plain request uses no count: {body}"
        );
        assert_eq!(set.for_request(true).stream, expected, "{body}");
        assert!(set.list().is_empty(), "{body}");
    }
}

#[test]
fn health_and_resource_kinds_touch_no_request() {
    let set = FaultSet::new();
    set.add(spec(r#"{"kind":"unhealthy"}"#)).unwrap();
    set.add(spec(r#"{"kind":"memory","mb":1}"#)).unwrap();
    assert_eq!(set.for_request(false), RequestFaults::default());
    assert_eq!(set.for_request(true), RequestFaults::default());
    assert!(set.list().iter().all(|f| f.hits == 0));
}

#[test]
fn rate_one_always_hits() {
    let set = with(r#"{"kind":"hang","rate":1.0}"#);
    assert!((0..1_000).all(|_| set.for_request(false).hang));
    assert_eq!(set.list()[0].hits, 1_000);
}

#[test]
fn a_low_rate_hits_about_its_share() {
    let set = with(r#"{"kind":"malformed","rate":0.1}"#);
    let hits = (0..10_000)
        .filter(|_| set.for_request(false).malformed)
        .count();
    assert!(
        (700..=1_300).contains(&hits),
        "{hits} hits out of 10000 at rate 0.1"
    );
    assert_eq!(set.list()[0].hits, hits as u64);
}

#[test]
fn a_count_is_used_exactly_then_the_fault_leaves() {
    let set = with(r#"{"kind":"error","status":503,"count":3}"#);
    assert_eq!(set.list()[0].remaining, Some(3));
    assert!(set.for_request(false).error.is_some());
    assert_eq!(set.list()[0].remaining, Some(2));
    assert_eq!(set.list()[0].hits, 1);
    assert!(set.for_request(true).error.is_some());
    assert!(set.for_request(false).error.is_some());
    assert!(set.list().is_empty());
    assert!(set.for_request(false).is_empty());
}

#[test]
fn a_count_covers_the_next_requests_whether_or_not_the_rate_hits() {
    let set = with(r#"{"kind":"error","status":503,"rate":0.5,"count":40}"#);
    let failed = (0..40)
        .filter(|_| set.for_request(false).error.is_some())
        .count();
    assert!(set.list().is_empty(), "gone after 40 requests, not 40 hits");
    assert!((8..=32).contains(&failed), "{failed} of 40 at 50 %");
    assert!(set.for_request(false).is_empty());
}

#[test]
fn the_oldest_error_wins_and_latencies_add() {
    let set = FaultSet::new();
    for body in [
        r#"{"kind":"latency","ms":100}"#,
        r#"{"kind":"error","status":503}"#,
        r#"{"kind":"latency","min_ms":50,"max_ms":50}"#,
        r#"{"kind":"error","status":429}"#,
        r#"{"kind":"stream_cut","after_tokens":5}"#,
        r#"{"kind":"stream_cut","after_tokens":2}"#,
    ] {
        set.add(spec(body)).unwrap();
    }
    let faults = set.for_request(true);
    assert_eq!(faults.latency, Some(Duration::from_millis(150)));
    assert_eq!(faults.error.map(|e| e.status), Some(503));
    assert_eq!(faults.stream.cut_after, Some(2), "the earliest cut");
}

#[tokio::test(start_paused = true)]
async fn a_duration_expires_lazily_without_a_reaper() {
    let set = with(r#"{"kind":"error","duration_s":1}"#);
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(set.for_request(false).error.is_some());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(set.for_request(false).is_empty());
    assert!(set.list().is_empty());
    assert!(set.active_kinds().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_reaper_removes_expired_faults_nobody_asks_about() {
    let set = with(r#"{"kind":"memory","mb":1,"duration_s":0.5}"#);
    let reaper = set.spawn_reaper();
    assert_eq!(set.held_memory_bytes(), 1 << 20);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(set.held_memory_bytes(), 1 << 20, "not expired yet");
    // Paused time: this sleep advances the clock at once; the reaper runs within 100 ms.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(set.held_memory_bytes(), 0);
    assert_eq!(set.reap(), 0, "the reaper already took it");
    reaper.abort();
}

#[tokio::test(start_paused = true)]
async fn the_reaper_ends_with_the_set() {
    let set = FaultSet::new();
    let reaper = set.spawn_reaper();
    drop(set);
    tokio::time::timeout(Duration::from_secs(1), reaper)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_list_shows_expiry_remaining_and_hits() {
    let set = FaultSet::new();
    let added = set
        .add(spec(
            r#"{"kind":"latency","ms":5,"duration_s":2,"count":4}"#,
        ))
        .unwrap();
    assert_eq!(
        (
            added.id.as_str(),
            added.expires_in_ms,
            added.remaining,
            added.hits
        ),
        ("f-1", Some(2_000), Some(4), 0)
    );
    set.add(spec(r#"{"kind":"hang","rate":0.5}"#)).unwrap();

    tokio::time::advance(Duration::from_millis(500)).await;
    set.for_request(false);
    let list = set.list();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0].expires_in_ms, list[0].remaining, list[0].hits),
        (Some(1_500), Some(3), 1)
    );
    assert_eq!(
        (
            list[1].id.as_str(),
            list[1].expires_in_ms,
            list[1].remaining
        ),
        ("f-2", None, None)
    );
    assert_eq!(list[1].spec.kind, FaultKind::Hang);

    tokio::time::advance(Duration::from_millis(700)).await;
    assert_eq!(set.list()[0].expires_in_ms, Some(800));
}

#[test]
fn ids_are_new_for_every_fault() {
    let set = FaultSet::new();
    let ids: Vec<String> = (0..3)
        .map(|_| set.add(spec(r#"{"kind":"hang"}"#)).unwrap().id)
        .collect();
    assert_eq!(ids, ["f-1", "f-2", "f-3"]);
    set.clear();
    assert_eq!(
        set.add(spec(r#"{"kind":"hang"}"#)).unwrap().id,
        "f-4",
        "ids are never reused"
    );
}

#[test]
fn an_invalid_spec_is_refused_naming_the_field() {
    let set = FaultSet::new();
    let error = set.add(spec(r#"{"kind":"error","rate":1.5}"#)).unwrap_err();
    assert_eq!(error.field, "rate");
    assert!(set.list().is_empty());
}

#[test]
fn remove_and_clear() {
    let set = FaultSet::new();
    let first = set.add(spec(r#"{"kind":"hang"}"#)).unwrap();
    set.add(spec(r#"{"kind":"reset"}"#)).unwrap();
    set.add(spec(r#"{"kind":"unhealthy"}"#)).unwrap();
    assert_eq!(set.active_kinds(), ["hang", "reset", "unhealthy"]);

    assert!(set.remove(&first.id));
    assert!(!set.remove(&first.id), "already gone");
    assert!(!set.remove("f-99"));
    assert_eq!(set.active_kinds(), ["reset", "unhealthy"]);

    assert_eq!(set.clear(), 2);
    assert_eq!(set.clear(), 0);
    assert!(set.list().is_empty());
    assert!(set.for_request(false).is_empty());
}

#[tokio::test(start_paused = true)]
async fn is_unhealthy_follows_the_fault() {
    let set = FaultSet::new();
    assert!(!set.is_unhealthy());
    let fault = set
        .add(spec(r#"{"kind":"unhealthy","duration_s":1}"#))
        .unwrap();
    set.add(spec(r#"{"kind":"error"}"#)).unwrap();
    assert!(set.is_unhealthy());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!set.is_unhealthy(), "expired");
    assert!(!set.remove(&fault.id), "an expired fault is gone");

    let again = set.add(spec(r#"{"kind":"unhealthy"}"#)).unwrap();
    assert!(set.remove(&again.id));
    assert!(!set.is_unhealthy());
}
