use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::ManualClock;
use crate::clock::Clock;
use crate::health::{HealthCheckConfig, HealthTracker, InstanceStatus};

const MS: Duration = Duration::from_millis(1);

fn tracker() -> (HealthTracker, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let tracker = HealthTracker::new(HealthCheckConfig::default(), clock.clone()).unwrap();
    (tracker, clock)
}

#[test]
fn an_unknown_id_is_not_healthy() {
    let (tracker, _) = tracker();
    assert!(!tracker.is_healthy("nobody"));
    assert_eq!(tracker.status("nobody"), None);
    assert!(tracker.is_empty());
}

#[test]
fn a_tracked_instance_is_unknown_until_checked() {
    let (tracker, _) = tracker();
    assert!(tracker.track("a"));
    assert!(!tracker.track("a"), "second track is a no-op");
    assert_eq!(tracker.status("a"), Some(InstanceStatus::Unknown));
    assert!(!tracker.is_healthy("a"));
    assert_eq!(tracker.len(), 1);
}

#[test]
fn active_results_reach_the_hot_path_read() {
    let (tracker, clock) = tracker();
    let transition = tracker
        .record_active("a", 5 * MS, Ok(()))
        .expect("first result");
    assert_eq!(transition.at, clock.now());
    assert!(tracker.is_healthy("a"));
    for _ in 0..2 {
        assert_eq!(tracker.record_active("a", 5 * MS, Err("boom".into())), None);
        assert!(tracker.is_healthy("a"));
    }
    let transition = tracker
        .record_active("a", 5 * MS, Err("boom".into()))
        .expect("third");
    assert_eq!(
        (transition.from, transition.to),
        (InstanceStatus::Healthy, InstanceStatus::Unhealthy)
    );
    assert!(!tracker.is_healthy("a"));
}

#[test]
fn the_hot_path_read_takes_no_lock() {
    let (tracker, _) = tracker();
    tracker.record_active("a", MS, Ok(()));
    tracker.track("b");
    let tracker = Arc::new(tracker);
    let reader = Arc::clone(&tracker);
    let (tx, rx) = mpsc::channel();
    let read = tracker.with_locks_held("a", move || {
        std::thread::spawn(move || {
            let seen = (
                reader.is_healthy("a"),
                reader.status("b"),
                reader.healthy_count(),
                reader.is_healthy("nobody"),
            );
            tx.send(seen).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a read waited for a lock held by a writer")
    });
    assert_eq!(read, (true, Some(InstanceStatus::Unknown), 1, false));
}

#[test]
fn passive_failures_mark_a_tracked_instance_unhealthy() {
    let (tracker, _) = tracker();
    tracker.record_active("a", MS, Ok(()));
    for _ in 0..4 {
        assert_eq!(tracker.record_passive("a", false), None);
    }
    let transition = tracker.record_passive("a", false).expect("fifth");
    assert_eq!(transition.to, InstanceStatus::Unhealthy);
    assert!(!tracker.is_healthy("a"));
}

#[test]
fn passive_signals_for_untracked_ids_are_ignored() {
    let (tracker, _) = tracker();
    for _ in 0..10 {
        assert_eq!(tracker.record_passive("ghost", false), None);
    }
    assert_eq!(tracker.status("ghost"), None);
    assert!(tracker.is_empty());
}

#[test]
fn retain_drops_instances_that_left_discovery() {
    let (tracker, _) = tracker();
    for id in ["a", "b", "c"] {
        tracker.record_active(id, MS, Ok(()));
    }
    let dropped = tracker.retain(["a", "c", "new"]);
    assert_eq!(dropped, 1);
    assert_eq!(tracker.len(), 2);
    assert!(!tracker.is_healthy("b"));
    assert_eq!(tracker.status("b"), None);
    assert!(tracker.is_healthy("a"), "kept instances keep their state");
    assert_eq!(tracker.status("new"), None, "retain never adds");
    assert_eq!(tracker.retain(vec!["a".to_owned(), "c".to_owned()]), 0);
}

#[test]
fn healthy_count_counts_only_healthy() {
    let (tracker, _) = tracker();
    tracker.record_active("a", MS, Ok(()));
    tracker.record_active("b", MS, Err("x".into()));
    tracker.track("c");
    assert_eq!(tracker.healthy_count(), 1);
}

#[test]
fn snapshot_reports_each_instance_sorted_with_ages() {
    let (tracker, clock) = tracker();
    tracker.track("c");
    tracker.record_active("b", 30 * MS, Err("HTTP 503".into()));
    clock.advance(1500 * MS);
    tracker.record_active("a", 7 * MS, Ok(()));
    clock.advance(250 * MS);

    let snapshot = tracker.snapshot();
    let ids: Vec<&str> = snapshot.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);

    let (a, b, c) = (&snapshot[0], &snapshot[1], &snapshot[2]);
    assert_eq!(a.status, InstanceStatus::Healthy);
    assert!(a.healthy);
    assert_eq!(a.consecutive_successes, 1);
    assert_eq!(a.last_check_age_ms, Some(250));
    assert_eq!(a.last_latency_ms, Some(7));
    assert_eq!(a.last_error, None);

    assert_eq!(b.status, InstanceStatus::Unhealthy);
    assert!(!b.healthy);
    assert_eq!(b.consecutive_failures, 1);
    assert_eq!(b.last_check_age_ms, Some(1750));
    assert_eq!(b.last_error.as_deref(), Some("HTTP 503"));
    let b_wall = crate::clock::unix_millis(clock.wall()) - 1750;
    assert_eq!(b.last_check_at_ms, Some(b_wall));

    assert_eq!(c.status, InstanceStatus::Unknown);
    assert_eq!(c.last_check_age_ms, None);
    assert_eq!(c.last_check_at_ms, None);
}

#[test]
fn snapshot_serializes_with_lowercase_status() {
    let (tracker, _) = tracker();
    tracker.record_active("llm-1", 3 * MS, Ok(()));
    let json = serde_json::to_value(tracker.snapshot()).unwrap();
    let item = &json[0];
    assert_eq!(item["id"], "llm-1");
    assert_eq!(item["status"], "healthy");
    assert_eq!(item["healthy"], true);
    assert_eq!(item["consecutive_successes"], 1);
    assert_eq!(item["consecutive_failures"], 0);
    assert_eq!(item["consecutive_passive_failures"], 0);
    assert_eq!(item["last_error"], serde_json::Value::Null);
    assert_eq!(item["last_check_age_ms"], 0);
    assert_eq!(item["last_latency_ms"], 3);
}

#[test]
fn an_invalid_config_is_refused() {
    let config = HealthCheckConfig {
        unhealthy_threshold: 0,
        ..HealthCheckConfig::default()
    };
    let error = HealthTracker::new(config, ManualClock::new()).unwrap_err();
    assert!(
        error.to_string().contains("health.unhealthy_threshold"),
        "{error}"
    );
}

#[test]
fn concurrent_first_results_lose_no_instance() {
    let (tracker, _) = tracker();
    let tracker = Arc::new(tracker);
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let tracker = Arc::clone(&tracker);
            std::thread::spawn(move || {
                for i in 0..50 {
                    tracker.record_active(&format!("i-{t}-{i}"), MS, Ok(()));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(tracker.len(), 400);
    assert_eq!(tracker.healthy_count(), 400);
}

#[test]
fn the_hook_hears_every_transition_active_and_passive_and_nothing_else() {
    let clock = ManualClock::new();
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&heard);
    let tracker = HealthTracker::new(HealthCheckConfig::default(), clock)
        .unwrap()
        .with_hook(Arc::new(
            move |id: &str, t: &crate::health::HealthTransition| {
                log.lock().unwrap().push((id.to_owned(), t.from, t.to));
            },
        ));
    tracker.record_active("a", MS, Ok(()));
    tracker.record_active("a", MS, Ok(()));
    for _ in 0..5 {
        tracker.record_passive("a", false);
    }
    tracker.record_passive("ghost", false);
    assert_eq!(
        *heard.lock().unwrap(),
        [
            (
                "a".to_owned(),
                InstanceStatus::Unknown,
                InstanceStatus::Healthy
            ),
            (
                "a".to_owned(),
                InstanceStatus::Healthy,
                InstanceStatus::Unhealthy
            ),
        ]
    );
}
