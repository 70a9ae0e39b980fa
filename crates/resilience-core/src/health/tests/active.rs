use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::ManualClock;
use crate::health::{
    ActiveHealthChecker, BoxFuture, HealthCheckConfig, HealthProbe, HealthTracker, InstanceStatus,
    ProbeTarget,
};

const TIMEOUT: Duration = Duration::from_secs(2);
const INTERVAL: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Behaviour {
    Pass,
    Fail(&'static str),
    Hang,
    Delay(Duration),
    Panic,
}

/// A probe whose answer per instance id is set by the test; it records every call.
#[derive(Default)]
struct FakeProbe {
    behaviours: Mutex<HashMap<String, Behaviour>>,
    calls: Mutex<Vec<(String, String)>>,
}

impl FakeProbe {
    fn set(&self, id: &str, behaviour: Behaviour) {
        self.behaviours
            .lock()
            .unwrap()
            .insert(id.to_owned(), behaviour);
    }

    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }
}

impl HealthProbe for FakeProbe {
    fn probe<'a>(&'a self, id: &'a str, url: &'a str) -> BoxFuture<'a, Result<(), String>> {
        self.calls
            .lock()
            .unwrap()
            .push((id.to_owned(), url.to_owned()));
        let behaviour = self.behaviours.lock().unwrap().get(id).copied();
        Box::pin(async move {
            match behaviour.unwrap_or(Behaviour::Pass) {
                Behaviour::Pass => Ok(()),
                Behaviour::Fail(message) => Err(message.to_owned()),
                Behaviour::Hang => std::future::pending().await,
                Behaviour::Delay(delay) => {
                    tokio::time::sleep(delay).await;
                    Ok(())
                }
                Behaviour::Panic => panic!("probe bug"),
            }
        })
    }
}

fn setup() -> (ActiveHealthChecker, Arc<FakeProbe>, Arc<HealthTracker>) {
    let config = HealthCheckConfig {
        interval: INTERVAL,
        timeout: TIMEOUT,
        ..HealthCheckConfig::default()
    };
    let tracker = Arc::new(HealthTracker::new(config, ManualClock::new()).unwrap());
    let probe = Arc::new(FakeProbe::default());
    let checker = ActiveHealthChecker::new(Arc::clone(&tracker), probe.clone());
    (checker, probe, tracker)
}

fn targets(ids: &[&str]) -> Vec<ProbeTarget> {
    ids.iter()
        .map(|id| ProbeTarget::new(*id, format!("http://{id}.test")))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_round_records_every_result() {
    let (checker, probe, tracker) = setup();
    probe.set("b", Behaviour::Fail("HTTP 500"));
    let report = checker.check_round(&targets(&["a", "b"])).await;

    assert_eq!(report.checked, 2);
    assert_eq!(report.passed, 1);
    let mut moved: Vec<(&str, InstanceStatus, InstanceStatus)> = report
        .transitions
        .iter()
        .map(|(id, t)| (id.as_str(), t.from, t.to))
        .collect();
    moved.sort_by_key(|(id, _, _)| *id);
    assert_eq!(
        moved,
        [
            ("a", InstanceStatus::Unknown, InstanceStatus::Healthy),
            ("b", InstanceStatus::Unknown, InstanceStatus::Unhealthy),
        ]
    );
    assert!(tracker.is_healthy("a"));
    assert!(!tracker.is_healthy("b"));
    assert_eq!(
        tracker.snapshot()[1].last_error.as_deref(),
        Some("HTTP 500")
    );
}

#[tokio::test(start_paused = true)]
async fn the_probe_gets_each_target_url() {
    let (checker, probe, _) = setup();
    checker.check_round(&targets(&["a"])).await;
    assert_eq!(
        probe.calls(),
        [("a".to_owned(), "http://a.test".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_probe_times_out_as_a_failure() {
    let (checker, probe, tracker) = setup();
    probe.set("stuck", Behaviour::Hang);
    let started = Instant::now();
    let report = checker.check_round(&targets(&["ok", "stuck"])).await;

    assert_eq!(
        started.elapsed(),
        TIMEOUT,
        "the round waits one timeout, no more"
    );
    assert_eq!(report.passed, 1);
    assert_eq!(tracker.status("stuck"), Some(InstanceStatus::Unhealthy));
    let stuck = &tracker.snapshot()[1];
    assert_eq!(stuck.last_error.as_deref(), Some("timed out after 2000 ms"));
    assert_eq!(stuck.last_latency_ms, Some(2000));
    assert!(tracker.is_healthy("ok"));
}

#[tokio::test(start_paused = true)]
async fn a_probe_just_inside_the_timeout_passes() {
    let (checker, probe, tracker) = setup();
    probe.set("slow", Behaviour::Delay(TIMEOUT - Duration::from_millis(1)));
    let report = checker.check_round(&targets(&["slow"])).await;
    assert_eq!(report.passed, 1);
    assert!(tracker.is_healthy("slow"));
    assert_eq!(tracker.snapshot()[0].last_latency_ms, Some(1999));
}

#[tokio::test(start_paused = true)]
async fn probes_run_concurrently() {
    let (checker, probe, tracker) = setup();
    for id in ["a", "b", "c", "d"] {
        probe.set(id, Behaviour::Delay(Duration::from_secs(1)));
    }
    let started = Instant::now();
    checker.check_round(&targets(&["a", "b", "c", "d"])).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "not 4 s: probes overlap"
    );
    assert_eq!(tracker.healthy_count(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_probe_is_a_failure_not_a_crash() {
    let (checker, probe, tracker) = setup();
    probe.set("buggy", Behaviour::Panic);
    let report = checker.check_round(&targets(&["buggy", "fine"])).await;
    assert_eq!(report.checked, 2);
    assert_eq!(tracker.status("buggy"), Some(InstanceStatus::Unhealthy));
    assert_eq!(
        tracker.snapshot()[0].last_error.as_deref(),
        Some("probe panicked")
    );
    assert!(tracker.is_healthy("fine"));
}

#[tokio::test(start_paused = true)]
async fn duplicate_ids_are_probed_once() {
    let (checker, probe, _) = setup();
    let report = checker.check_round(&targets(&["a", "a", "b"])).await;
    assert_eq!(report.checked, 2);
    assert_eq!(probe.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_empty_round_does_nothing() {
    let (checker, probe, tracker) = setup();
    let report = checker.check_round(&[]).await;
    assert_eq!(report, crate::health::RoundReport::default());
    assert!(probe.calls().is_empty());
    assert!(tracker.is_empty());
}

#[tokio::test(start_paused = true)]
async fn health_flips_only_after_three_failing_rounds() {
    let (checker, probe, tracker) = setup();
    let list = targets(&["a"]);
    checker.check_round(&list).await;
    probe.set("a", Behaviour::Fail("refused"));
    for round in 1..=2 {
        let report = checker.check_round(&list).await;
        assert!(report.transitions.is_empty(), "round {round} must not flip");
        assert!(tracker.is_healthy("a"));
    }
    let report = checker.check_round(&list).await;
    let (id, transition) = &report.transitions[0];
    assert_eq!(id, "a");
    assert_eq!(
        (transition.from, transition.to),
        (InstanceStatus::Healthy, InstanceStatus::Unhealthy)
    );
    assert!(!tracker.is_healthy("a"));
}

#[tokio::test(start_paused = true)]
async fn the_hook_hears_every_transition() {
    let (checker, probe, _) = setup();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    let checker = checker.on_transition(move |id, t| {
        sink.lock().unwrap().push((id.to_owned(), t.to));
    });
    probe.set("b", Behaviour::Fail("x"));
    checker.check_round(&targets(&["a", "b"])).await;
    checker.check_round(&targets(&["a", "b"])).await;
    let mut heard = heard.lock().unwrap().clone();
    heard.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        heard,
        [
            ("a".to_owned(), InstanceStatus::Healthy),
            ("b".to_owned(), InstanceStatus::Unhealthy)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_loop_reports_its_first_round_after_a_hung_probe_times_out() {
    let (checker, probe, tracker) = setup();
    probe.set("stuck", Behaviour::Hang);
    let started = Instant::now();
    let handle = checker.spawn(|| targets(&["ok", "stuck"]));
    assert_eq!(handle.rounds_completed(), 0);
    assert!(handle.first_round().await);
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(handle.rounds_completed(), 1);
    assert!(tracker.is_healthy("ok"));
    assert_eq!(tracker.status("stuck"), Some(InstanceStatus::Unhealthy));
    assert!(
        handle.first_round().await,
        "answers at once once a round is done"
    );
    handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_loop_runs_a_round_every_interval() {
    let (checker, probe, _) = setup();
    let started = Instant::now();
    let handle = checker.spawn(|| targets(&["a"]));
    assert!(handle.wait_rounds(3, Duration::from_secs(60)).await);
    assert_eq!(started.elapsed(), 2 * INTERVAL, "rounds at 0, 5 s and 10 s");
    assert_eq!(probe.calls().len(), 3);
    assert!(
        !handle
            .wait_rounds(4, INTERVAL - Duration::from_millis(1))
            .await
    );
    handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_loop_forgets_instances_that_left_discovery() {
    let (checker, _, tracker) = setup();
    let current = Arc::new(Mutex::new(targets(&["a", "b"])));
    let source = Arc::clone(&current);
    let handle = checker.spawn(move || source.lock().unwrap().clone());
    assert!(handle.first_round().await);
    assert!(tracker.is_healthy("b"));

    *current.lock().unwrap() = targets(&["a"]);
    assert!(handle.wait_rounds(2, Duration::from_secs(60)).await);
    assert_eq!(tracker.status("b"), None);
    assert!(!tracker.is_healthy("b"));
    assert!(tracker.is_healthy("a"));
    handle.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stopping_or_dropping_the_handle_ends_the_loop() {
    let (checker, probe, _) = setup();
    let handle = checker.spawn(|| targets(&["a"]));
    assert!(handle.first_round().await);
    handle.stop().await;
    tokio::time::sleep(3 * INTERVAL).await;
    assert_eq!(probe.calls().len(), 1);

    let (checker, probe, _) = setup();
    let handle = checker.spawn(|| targets(&["a"]));
    let rounds = handle.subscribe();
    assert!(handle.first_round().await);
    drop(handle);
    tokio::time::sleep(3 * INTERVAL).await;
    assert_eq!(probe.calls().len(), 1);
    assert_eq!(*rounds.borrow(), 1);
}

#[test]
fn targets_convert_from_pairs() {
    let target: ProbeTarget = ("id-1", "http://x").into();
    assert_eq!(
        target,
        ProbeTarget::new("id-1".to_owned(), "http://x".to_owned())
    );
}
