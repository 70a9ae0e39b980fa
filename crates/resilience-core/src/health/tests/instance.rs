use std::time::{Duration, Instant};

use crate::health::{HealthCheckConfig, HealthTransition, InstanceHealth, InstanceStatus};

const MS: Duration = Duration::from_millis(1);

fn config() -> HealthCheckConfig {
    HealthCheckConfig::default()
}

/// An instance made healthy by a first passing check at `t0`.
fn healthy(t0: Instant) -> InstanceHealth {
    let mut health = InstanceHealth::new(config());
    assert!(health.record_active(t0, MS, Ok(())).is_some());
    health
}

/// An instance made unhealthy by a first failing check at `t0`.
fn unhealthy(t0: Instant) -> InstanceHealth {
    let mut health = InstanceHealth::new(config());
    assert!(health.record_active(t0, MS, Err("down".into())).is_some());
    health
}

fn fail(health: &mut InstanceHealth, at: Instant) -> Option<HealthTransition> {
    health.record_active(at, MS, Err("connection refused".into()))
}

fn pass(health: &mut InstanceHealth, at: Instant) -> Option<HealthTransition> {
    health.record_active(at, MS, Ok(()))
}

#[test]
fn a_new_instance_is_unknown_and_not_healthy() {
    let health = InstanceHealth::new(config());
    assert_eq!(health.status(), InstanceStatus::Unknown);
    assert!(!health.is_healthy());
    assert_eq!(health.last_check(), None);
    assert_eq!(health.last_error(), None);
    assert_eq!(health.last_latency(), None);
}

#[test]
fn first_success_makes_unknown_healthy_at_once() {
    let t0 = Instant::now();
    let mut health = InstanceHealth::new(config());
    let transition = pass(&mut health, t0).expect("first result decides");
    assert_eq!(transition.from, InstanceStatus::Unknown);
    assert_eq!(transition.to, InstanceStatus::Healthy);
    assert_eq!(transition.at, t0);
    assert_eq!(transition.reason, "first check passed");
    assert!(health.is_healthy());
}

#[test]
fn first_failure_makes_unknown_unhealthy_at_once() {
    let t0 = Instant::now();
    let mut health = InstanceHealth::new(config());
    let transition = fail(&mut health, t0).expect("first result decides");
    assert_eq!(
        (transition.from, transition.to),
        (InstanceStatus::Unknown, InstanceStatus::Unhealthy)
    );
    assert!(
        transition.reason.contains("connection refused"),
        "{}",
        transition.reason
    );
    assert_eq!(health.status(), InstanceStatus::Unhealthy);
}

#[test]
fn healthy_survives_one_failure_short_of_the_threshold() {
    let t0 = Instant::now();
    let mut health = healthy(t0);
    assert_eq!(fail(&mut health, t0 + 1000 * MS), None);
    assert_eq!(fail(&mut health, t0 + 2000 * MS), None);
    assert!(health.is_healthy());
    assert_eq!(health.consecutive_failures(), 2);
}

#[test]
fn healthy_turns_unhealthy_exactly_at_the_failure_threshold() {
    let t0 = Instant::now();
    let mut health = healthy(t0);
    fail(&mut health, t0 + 1000 * MS);
    fail(&mut health, t0 + 2000 * MS);
    let transition = fail(&mut health, t0 + 3000 * MS).expect("third failure flips");
    assert_eq!(transition.from, InstanceStatus::Healthy);
    assert_eq!(transition.to, InstanceStatus::Unhealthy);
    assert_eq!(transition.at, t0 + 3000 * MS);
    assert_eq!(
        transition.reason,
        "3 consecutive checks failed: connection refused"
    );
    assert_eq!(
        fail(&mut health, t0 + 4000 * MS),
        None,
        "no second transition"
    );
}

#[test]
fn a_success_restarts_the_failure_run() {
    let t0 = Instant::now();
    let mut health = healthy(t0);
    fail(&mut health, t0);
    fail(&mut health, t0);
    pass(&mut health, t0);
    assert_eq!(health.consecutive_failures(), 0);
    assert_eq!(fail(&mut health, t0), None);
    assert_eq!(fail(&mut health, t0), None);
    assert!(health.is_healthy());
}

#[test]
fn unhealthy_stays_out_one_success_short_of_the_threshold() {
    let t0 = Instant::now();
    let mut health = unhealthy(t0);
    assert_eq!(pass(&mut health, t0 + 1000 * MS), None);
    assert_eq!(health.status(), InstanceStatus::Unhealthy);
    assert_eq!(health.consecutive_successes(), 1);
}

#[test]
fn unhealthy_recovers_exactly_at_the_success_threshold() {
    let t0 = Instant::now();
    let mut health = unhealthy(t0);
    pass(&mut health, t0 + 1000 * MS);
    let transition = pass(&mut health, t0 + 2000 * MS).expect("second success flips");
    assert_eq!(transition.from, InstanceStatus::Unhealthy);
    assert_eq!(transition.to, InstanceStatus::Healthy);
    assert_eq!(transition.reason, "2 consecutive checks passed");
    assert_eq!(pass(&mut health, t0 + 3000 * MS), None);
}

#[test]
fn a_failure_restarts_the_recovery_run() {
    let t0 = Instant::now();
    let mut health = unhealthy(t0);
    pass(&mut health, t0);
    fail(&mut health, t0);
    assert_eq!(pass(&mut health, t0), None);
    assert_eq!(health.status(), InstanceStatus::Unhealthy);
    assert!(pass(&mut health, t0).is_some());
}

#[test]
fn thresholds_of_one_flip_on_a_single_result() {
    let t0 = Instant::now();
    let config = HealthCheckConfig {
        healthy_threshold: 1,
        unhealthy_threshold: 1,
        passive_failure_threshold: 1,
        ..config()
    };
    let mut health = InstanceHealth::new(config);
    pass(&mut health, t0);
    assert!(fail(&mut health, t0).is_some());
    assert!(pass(&mut health, t0).is_some());
    assert!(health.record_passive(t0, false).is_some());
}

#[test]
fn passive_failures_one_short_of_the_threshold_keep_it_healthy() {
    let t0 = Instant::now();
    let mut health = healthy(t0);
    for i in 1..=4 {
        assert_eq!(health.record_passive(t0 + i * MS, false), None);
    }
    assert!(health.is_healthy());
    assert_eq!(health.consecutive_passive_failures(), 4);
}

#[test]
fn passive_failures_at_the_threshold_mark_it_unhealthy() {
    let t0 = Instant::now();
    let mut health = healthy(t0);
    for i in 1..=4 {
        health.record_passive(t0 + i * MS, false);
    }
    let transition = health
        .record_passive(t0 + 5 * MS, false)
        .expect("fifth flips");
    assert_eq!(transition.from, InstanceStatus::Healthy);
    assert_eq!(transition.to, InstanceStatus::Unhealthy);
    assert_eq!(transition.at, t0 + 5 * MS);
    assert_eq!(transition.reason, "5 consecutive failed requests");
    assert_eq!(health.record_passive(t0 + 6 * MS, false), None);
}

#[test]
fn a_passive_success_restarts_the_passive_run() {
    let t0 = Instant::now();
    let mut health = healthy(t0);
    for _ in 0..4 {
        health.record_passive(t0, false);
    }
    assert_eq!(health.record_passive(t0, true), None);
    assert_eq!(health.consecutive_passive_failures(), 0);
    for _ in 0..4 {
        assert_eq!(health.record_passive(t0, false), None);
    }
    assert!(health.is_healthy());
}

#[test]
fn passive_successes_never_bring_an_instance_back() {
    let t0 = Instant::now();
    let mut health = unhealthy(t0);
    for _ in 0..20 {
        assert_eq!(health.record_passive(t0, true), None);
    }
    assert_eq!(health.status(), InstanceStatus::Unhealthy);
}

#[test]
fn after_passive_ejection_recovery_needs_a_full_active_run() {
    let t0 = Instant::now();
    let mut health = healthy(t0);
    pass(&mut health, t0);
    assert_eq!(health.consecutive_successes(), 2);
    for _ in 0..5 {
        health.record_passive(t0, false);
    }
    assert_eq!(health.status(), InstanceStatus::Unhealthy);
    assert_eq!(health.consecutive_successes(), 0);
    assert_eq!(pass(&mut health, t0), None, "one success is not enough");
    let transition = pass(&mut health, t0).expect("two successes recover");
    assert_eq!(
        (transition.from, transition.to),
        (InstanceStatus::Unhealthy, InstanceStatus::Healthy)
    );
}

#[test]
fn passive_failures_decide_an_unknown_instance_too() {
    let t0 = Instant::now();
    let mut health = InstanceHealth::new(config());
    for _ in 0..4 {
        assert_eq!(health.record_passive(t0, false), None);
    }
    let transition = health.record_passive(t0, false).expect("fifth flips");
    assert_eq!(transition.from, InstanceStatus::Unknown);
    assert_eq!(transition.to, InstanceStatus::Unhealthy);
}

#[test]
fn keeps_last_check_latency_and_error() {
    let t0 = Instant::now();
    let mut health = InstanceHealth::new(config());
    health.record_active(t0, 40 * MS, Err("HTTP 500".into()));
    assert_eq!(health.last_check(), Some(t0));
    assert_eq!(health.last_latency(), Some(40 * MS));
    assert_eq!(health.last_error(), Some("HTTP 500"));
    health.record_active(t0 + 5000 * MS, 12 * MS, Ok(()));
    assert_eq!(health.last_check(), Some(t0 + 5000 * MS));
    assert_eq!(health.last_latency(), Some(12 * MS));
    assert_eq!(health.last_error(), Some("HTTP 500"), "kept for operators");
}

#[test]
fn passive_signals_do_not_count_as_checks() {
    let t0 = Instant::now();
    let mut health = healthy(t0);
    health.record_passive(t0 + 1000 * MS, false);
    assert_eq!(health.last_check(), Some(t0));
    assert_eq!(health.consecutive_failures(), 0);
}

#[test]
fn statuses_serialize_lowercase() {
    for (status, text) in [
        (InstanceStatus::Unknown, "\"unknown\""),
        (InstanceStatus::Healthy, "\"healthy\""),
        (InstanceStatus::Unhealthy, "\"unhealthy\""),
    ] {
        assert_eq!(serde_json::to_string(&status).unwrap(), text);
        assert_eq!(format!("\"{status}\""), text);
    }
}
