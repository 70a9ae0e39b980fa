//! Each conversion writes the JSON the library's own snapshot serialises to.

use std::collections::BTreeMap;

use resilience_core::breaker::{Breaker, BreakerConfig, StateKind, TransitionReason};
use resilience_core::clock::SystemClock;
use resilience_core::fallback::{
    CacheStats, FallbackReason, FallbackStats, LatencyStats, ProviderStats, TierKind, TierStats,
};
use resilience_core::health::{CheckReport, HealthStatus};
use serde::Serialize;
use serde_json::{Value, json};

use super::*;

fn same(core: impl Serialize, wire: impl Serialize) {
    let (core, wire) = (
        serde_json::to_string(&serde_json::to_value(core).unwrap()).unwrap(),
        serde_json::to_string(&wire).unwrap(),
    );
    assert_eq!(wire, core);
}

#[test]
fn breaker_snapshots_are_written_as_before_in_every_state() {
    let breaker = Breaker::new(
        "llm-service",
        BreakerConfig::default(),
        SystemClock::shared(),
    )
    .unwrap();
    breaker.try_acquire().unwrap().success();
    breaker.try_acquire().unwrap().failure();
    same(breaker.snapshot(), super::breaker(&breaker.snapshot()));
    breaker.force_open();
    let open = breaker.snapshot();
    assert_eq!(open.state, StateKind::Open);
    same(&open, super::breaker(&open));
    let by_id = BTreeMap::from([("a".to_owned(), open)]);
    same(&by_id, breakers(&by_id));
    for kind in [StateKind::Closed, StateKind::Open, StateKind::HalfOpen] {
        same(kind, state(kind));
    }
}

#[test]
fn every_transition_reason_is_written_as_before() {
    for r in [
        TransitionReason::ConsecutiveFailures { count: 5 },
        TransitionReason::FailureRate { rate: 0.5 },
        TransitionReason::SlowCallRate { rate: 0.75 },
        TransitionReason::RecoveryTimeoutElapsed,
        TransitionReason::ProbeFailed,
        TransitionReason::ProbesSucceeded { count: 3 },
        TransitionReason::ManualReset,
        TransitionReason::ForcedOpen,
    ] {
        same(r, reason(r));
        let entry = TransitionEntry {
            breaker: "instance:a".into(),
            from: StateKind::Closed,
            to: StateKind::Open,
            at_ms: 1_700_000_000_000,
            reason: r,
        };
        same(&entry, transition(&entry));
    }
}

#[test]
fn health_checks_are_written_as_before() {
    let report = |status, message: Option<&str>, details: Option<Value>| CheckReport {
        status,
        critical: status == HealthStatus::Unhealthy,
        message: message.map(str::to_owned),
        details,
        duration_ms: 3,
    };
    let reports = BTreeMap::from([
        (
            "redis".to_owned(),
            report(HealthStatus::Healthy, None, None),
        ),
        (
            "system_resources".to_owned(),
            report(
                HealthStatus::Degraded,
                Some("memory"),
                Some(json!({"mem": 96.5})),
            ),
        ),
        (
            "db".to_owned(),
            report(HealthStatus::Unhealthy, Some("down"), None),
        ),
    ]);
    same(&reports, checks(&reports));
}

#[test]
fn instances_are_written_as_before() {
    let instances = vec![
        InstanceView {
            id: "a".into(),
            url: "http://127.0.0.1:1".into(),
            tier: "primary".into(),
            model: Some("sim".into()),
            healthy: true,
            circuit_state: StateKind::HalfOpen,
        },
        InstanceView {
            id: "b".into(),
            url: "http://127.0.0.1:2".into(),
            tier: "secondary".into(),
            model: None,
            healthy: false,
            circuit_state: StateKind::Open,
        },
    ];
    same(&instances, services(&instances));
}

#[test]
fn fallback_counters_are_written_as_before_with_and_without_a_cache() {
    let latency = LatencyStats {
        count: 3,
        total_ms: 7.5,
        mean_ms: 2.5,
        max_ms: 4.0,
    };
    let provider = ProviderStats {
        successes: 2,
        failures: 1,
        timeouts: 1,
        rejected: 0,
        latency,
    };
    let tier = TierStats {
        position: 1,
        enabled: true,
        timeout_ms: 1000,
        successes: 2,
        failures: 1,
        timeouts: 1,
        rejected: 0,
        skipped: 4,
        latency,
        providers: BTreeMap::from([("cache".to_owned(), provider)]),
    };
    let cache_stats = CacheStats {
        hits: 5,
        seeded_hits: 2,
        misses: 1,
        inserts: 3,
        evictions: 0,
        expirations: 1,
        oversized: 1,
        entries: 2,
        bytes: 4096,
        max_bytes: 1 << 20,
        seeded: 12,
        capacity: 1000,
        ttl_ms: 300_000,
    };
    let mut stats = FallbackStats {
        requests: 9,
        served: 8,
        served_by_fallback: 3,
        rejected: 0,
        exhausted: 1,
        tiers: BTreeMap::from([("cache".to_owned(), tier)]),
        cache: None,
    };
    same(&stats, fallback(&stats));
    stats.cache = Some(cache_stats.clone());
    same(&stats, fallback(&stats));
    same(&cache_stats, cache(&cache_stats));
}

#[test]
fn fallback_tiers_and_reasons_are_written_as_before() {
    assert_eq!(fallback_type(TierKind::Primary), None);
    for kind in [TierKind::Secondary, TierKind::Cache, TierKind::Template] {
        same(kind, fallback_type(kind));
    }
    for r in [
        FallbackReason::CircuitOpen,
        FallbackReason::NoServicesAvailable,
        FallbackReason::UpstreamError,
        FallbackReason::Timeout,
    ] {
        same(r, fallback_reason(r));
    }
    for status in [
        HealthStatus::Healthy,
        HealthStatus::Degraded,
        HealthStatus::Unhealthy,
    ] {
        same(status, health(status));
    }
}
