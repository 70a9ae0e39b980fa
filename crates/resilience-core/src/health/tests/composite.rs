use std::time::Duration;

use tokio::time::Instant;

use crate::ManualClock;
use crate::clock::Clock;
use crate::health::{
    CheckOutcome, CheckReport, CompositeHealthChecker, FnCheck, HealthReport, HealthStatus,
};

fn fixed(name: &str, critical: bool, outcome: CheckOutcome) -> impl crate::health::HealthCheck {
    FnCheck::new(name, critical, move || std::future::ready(outcome.clone()))
}

fn sleeping(name: &str, critical: bool, delay: Duration) -> impl crate::health::HealthCheck {
    FnCheck::new(name, critical, move || async move {
        tokio::time::sleep(delay).await;
        CheckOutcome::healthy()
    })
}

fn report(status: HealthStatus, critical: bool) -> CheckReport {
    CheckReport {
        status,
        critical,
        message: None,
        details: None,
        duration_ms: 0,
    }
}

#[test]
fn aggregation_table() {
    use HealthStatus::{Degraded, Healthy, Unhealthy};
    let cases: &[(&[(HealthStatus, bool)], HealthStatus)] = &[
        (&[], Healthy),
        (&[(Healthy, true), (Healthy, false)], Healthy),
        (&[(Unhealthy, true)], Unhealthy),
        (&[(Unhealthy, false)], Degraded),
        (&[(Degraded, true)], Degraded),
        (&[(Degraded, false)], Degraded),
        (&[(Healthy, true), (Unhealthy, false)], Degraded),
        (&[(Degraded, false), (Unhealthy, true)], Unhealthy),
        (
            &[(Unhealthy, false), (Unhealthy, false), (Healthy, true)],
            Degraded,
        ),
    ];
    for (checks, expected) in cases {
        let reports: Vec<CheckReport> = checks.iter().map(|(s, c)| report(*s, *c)).collect();
        assert_eq!(HealthReport::aggregate(&reports), *expected, "{checks:?}");
    }
}

#[test]
fn http_status_is_503_only_when_unhealthy() {
    assert_eq!(HealthStatus::Healthy.http_status(), 200);
    assert_eq!(HealthStatus::Degraded.http_status(), 200);
    assert_eq!(HealthStatus::Unhealthy.http_status(), 503);
    let report = HealthReport {
        overall_status: HealthStatus::Unhealthy,
        checks: Default::default(),
        checked_at_ms: 0,
    };
    assert_eq!(report.http_status(), 503);
}

#[tokio::test(start_paused = true)]
async fn no_checks_is_healthy() {
    let report = CompositeHealthChecker::new().check().await;
    assert_eq!(report.overall_status, HealthStatus::Healthy);
    assert!(report.checks.is_empty());
    assert_eq!(report.http_status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_failing_critical_check_makes_it_unhealthy() {
    let checker = CompositeHealthChecker::new()
        .with_check(fixed("db", true, CheckOutcome::unhealthy("refused")))
        .with_check(fixed("cache", false, CheckOutcome::healthy()));
    let report = checker.check().await;
    assert_eq!(report.overall_status, HealthStatus::Unhealthy);
    assert_eq!(report.http_status(), 503);
    let db = &report.checks["db"];
    assert_eq!(db.status, HealthStatus::Unhealthy);
    assert!(db.critical);
    assert_eq!(db.message.as_deref(), Some("refused"));
    assert!(!report.checks["cache"].critical);
}

#[tokio::test(start_paused = true)]
async fn a_failing_non_critical_check_only_degrades() {
    let checker = CompositeHealthChecker::new()
        .with_check(fixed("db", true, CheckOutcome::healthy()))
        .with_check(fixed("redis", false, CheckOutcome::unhealthy("refused")));
    let report = checker.check().await;
    assert_eq!(report.overall_status, HealthStatus::Degraded);
    assert_eq!(report.http_status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_degraded_critical_check_only_degrades() {
    let checker =
        CompositeHealthChecker::new().with_check(fixed("db", true, CheckOutcome::degraded("slow")));
    assert_eq!(checker.check().await.overall_status, HealthStatus::Degraded);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_times_out_as_unhealthy() {
    let checker = CompositeHealthChecker::new()
        .with_default_timeout(Duration::from_millis(500))
        .with_check(FnCheck::new("stuck", true, || {
            std::future::pending::<CheckOutcome>()
        }));
    let started = Instant::now();
    let report = checker.check().await;
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    let stuck = &report.checks["stuck"];
    assert_eq!(stuck.status, HealthStatus::Unhealthy);
    assert_eq!(stuck.message.as_deref(), Some("timed out after 500 ms"));
    assert_eq!(stuck.duration_ms, 500);
    assert_eq!(report.overall_status, HealthStatus::Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn a_check_may_have_its_own_timeout() {
    let checker = CompositeHealthChecker::new()
        .with_check_timeout(
            sleeping("slow", false, Duration::from_secs(3)),
            Duration::from_secs(4),
        )
        .with_check(sleeping("other", false, Duration::from_secs(3)));
    let report = checker.check().await;
    assert_eq!(report.checks["slow"].status, HealthStatus::Healthy);
    assert_eq!(report.checks["slow"].duration_ms, 3000);
    assert_eq!(
        report.checks["other"].message.as_deref(),
        Some("timed out after 2000 ms"),
        "default timeout is 2 s"
    );
    assert_eq!(report.overall_status, HealthStatus::Degraded);
}

#[tokio::test(start_paused = true)]
async fn checks_run_concurrently() {
    let checker = CompositeHealthChecker::new()
        .with_check(sleeping("a", true, Duration::from_secs(1)))
        .with_check(sleeping("b", true, Duration::from_secs(1)))
        .with_check(sleeping("c", true, Duration::from_secs(1)));
    let started = Instant::now();
    let report = checker.check().await;
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(report.overall_status, HealthStatus::Healthy);
    assert!(report.checks.values().all(|c| c.duration_ms == 1000));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_check_is_unhealthy_not_a_crash() {
    let checker = CompositeHealthChecker::new()
        .with_check(FnCheck::new("buggy", false, || async {
            panic!("check bug")
        }))
        .with_check(fixed("fine", true, CheckOutcome::healthy()));
    let report = checker.check().await;
    assert_eq!(report.checks["buggy"].status, HealthStatus::Unhealthy);
    assert_eq!(
        report.checks["buggy"].message.as_deref(),
        Some("check panicked")
    );
    assert_eq!(report.overall_status, HealthStatus::Degraded);
}

#[tokio::test(start_paused = true)]
async fn a_check_with_the_same_name_replaces_the_earlier_one() {
    let checker = CompositeHealthChecker::new()
        .with_check(fixed("redis", true, CheckOutcome::unhealthy("old")))
        .with_check(fixed("redis", false, CheckOutcome::healthy()));
    assert_eq!(checker.len(), 1);
    assert_eq!(checker.names(), ["redis"]);
    let report = checker.check().await;
    assert_eq!(report.overall_status, HealthStatus::Healthy);
    assert!(!report.checks["redis"].critical);
}

#[tokio::test(start_paused = true)]
async fn the_report_serializes_with_pinned_field_names() {
    let clock = ManualClock::new();
    let checker = CompositeHealthChecker::new()
        .with_clock(clock.clone())
        .with_check(fixed(
            "redis",
            false,
            CheckOutcome::degraded("slow").with_details(serde_json::json!({"latency_ms": 900})),
        ));
    let report = checker.check().await;
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["overall_status"], "degraded");
    assert_eq!(
        json["checked_at_ms"],
        crate::clock::unix_millis(clock.wall())
    );
    let redis = &json["checks"]["redis"];
    assert_eq!(redis["status"], "degraded");
    assert_eq!(redis["critical"], false);
    assert_eq!(redis["message"], "slow");
    assert_eq!(redis["details"]["latency_ms"], 900);
    assert_eq!(redis["duration_ms"], 0);

    let back: HealthReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn statuses_serialize_lowercase_and_order_best_to_worst() {
    for (status, text) in [
        (HealthStatus::Healthy, "healthy"),
        (HealthStatus::Degraded, "degraded"),
        (HealthStatus::Unhealthy, "unhealthy"),
    ] {
        assert_eq!(serde_json::to_value(status).unwrap(), text);
        assert_eq!(status.to_string(), text);
        let parsed: HealthStatus = serde_json::from_value(text.into()).unwrap();
        assert_eq!(parsed, status);
    }
    assert!(HealthStatus::Healthy < HealthStatus::Degraded);
    assert!(HealthStatus::Degraded < HealthStatus::Unhealthy);
}

#[test]
fn outcome_constructors_set_status_and_message() {
    assert_eq!(CheckOutcome::healthy().status, HealthStatus::Healthy);
    assert_eq!(CheckOutcome::healthy().message, None);
    let degraded = CheckOutcome::degraded("slow");
    assert_eq!(
        (degraded.status, degraded.message.as_deref()),
        (HealthStatus::Degraded, Some("slow"))
    );
    let unhealthy = CheckOutcome::unhealthy("down").with_message("really down");
    assert_eq!(unhealthy.status, HealthStatus::Unhealthy);
    assert_eq!(unhealthy.message.as_deref(), Some("really down"));
}
