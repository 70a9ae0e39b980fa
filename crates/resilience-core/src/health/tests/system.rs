use crate::health::{
    HealthCheck, HealthStatus, ResourceSample, ResourceSampler, SysinfoSampler,
    SystemResourcesCheck,
};

const MB: u64 = 1024 * 1024;

/// A check over a fake sampler reading `cpu` % CPU and `memory_permille` ‰ memory of 10 GB.
fn check_with(cpu: f64, memory_permille: u64) -> SystemResourcesCheck {
    let sample = ResourceSample {
        cpu_percent: cpu,
        memory_used_bytes: memory_permille * 10 * MB,
        memory_total_bytes: 1000 * 10 * MB,
    };
    SystemResourcesCheck::with_sampler(move || Ok(sample))
}

#[test]
fn memory_just_below_the_threshold_is_healthy() {
    let outcome = check_with(10.0, 949).evaluate();
    assert_eq!(outcome.status, HealthStatus::Healthy);
    assert_eq!(outcome.details.unwrap()["memory_percent"], 94.9);
}

#[test]
fn memory_exactly_at_the_threshold_is_healthy() {
    assert_eq!(
        check_with(10.0, 950).evaluate().status,
        HealthStatus::Healthy
    );
}

#[test]
fn memory_just_above_the_threshold_degrades() {
    let outcome = check_with(10.0, 951).evaluate();
    assert_eq!(outcome.status, HealthStatus::Degraded);
    assert!(outcome.message.unwrap().contains("95.1"));
}

#[test]
fn full_cpu_never_degrades() {
    let outcome = check_with(100.0, 500).evaluate();
    assert_eq!(outcome.status, HealthStatus::Healthy);
    assert_eq!(outcome.details.unwrap()["cpu_percent"], 100.0);
}

#[test]
fn the_memory_threshold_is_configurable() {
    let check = check_with(0.0, 900).with_memory_threshold(80.0);
    assert_eq!(check.evaluate().status, HealthStatus::Degraded);
}

#[test]
fn details_carry_the_readings() {
    let details = check_with(42.5, 500).evaluate().details.unwrap();
    assert_eq!(details["cpu_percent"], 42.5);
    assert_eq!(details["memory_percent"], 50.0);
    assert_eq!(details["memory_used_mb"], 5000);
    assert_eq!(details["memory_total_mb"], 10000);
    assert_eq!(details["memory_threshold_percent"], 95.0);
}

#[test]
fn a_failing_sampler_reports_healthy_with_the_error() {
    let check = SystemResourcesCheck::with_sampler(|| Err("no /proc".to_owned()));
    let outcome = check.evaluate();
    assert_eq!(outcome.status, HealthStatus::Healthy);
    assert_eq!(
        outcome.message.as_deref(),
        Some("resource usage unavailable: no /proc")
    );
}

#[tokio::test]
async fn the_check_is_non_critical_and_named_system_resources() {
    let check = check_with(100.0, 990);
    assert_eq!(check.name(), "system_resources");
    assert!(!check.critical());
    assert_eq!(check.check().await.status, HealthStatus::Degraded);
}

#[test]
fn memory_percent_of_an_unknown_total_is_zero() {
    let sample = ResourceSample {
        cpu_percent: 0.0,
        memory_used_bytes: 5,
        memory_total_bytes: 0,
    };
    assert_eq!(sample.memory_percent(), 0.0);
}

#[test]
fn the_real_sampler_reads_sane_values() {
    let sampler = SysinfoSampler::new();
    for _ in 0..2 {
        let sample = sampler.sample().unwrap();
        assert!((0.0..=100.0).contains(&sample.cpu_percent), "{sample:?}");
        assert!(
            (0.0..=100.0).contains(&sample.memory_percent()),
            "{sample:?}"
        );
        assert!(sample.memory_total_bytes > 0);
        assert!(sample.memory_used_bytes <= sample.memory_total_bytes);
    }
    let details = SystemResourcesCheck::new().evaluate().details.unwrap();
    for key in [
        "cpu_percent",
        "memory_percent",
        "memory_used_mb",
        "memory_total_mb",
    ] {
        assert!(details[key].is_number(), "{key} missing: {details}");
    }
}
