//! From the resilience library's snapshots to the wire types of `llm_api` the gateway
//! writes (`llm_api::breaker`, `llm_api::gateway`, `llm_api::stats`, `llm_api::envelope`).
//!
//! `llm_api` depends on serde only, so it mirrors these snapshots; each function here is
//! the one place a field crosses over, and the tests hold the two JSON forms equal.
//! An upstream's URL crosses through [`public_url`] only: `/health` and `/admin/status`
//! never show its credentials, query or fragment.

use std::collections::BTreeMap;

use llm_api::breaker::{
    BreakerCounters, BreakerState, BreakerView, BreakerWindow, TransitionKind, TransitionReason,
    TransitionView,
};
use llm_api::envelope::{FallbackReason, FallbackType};
use llm_api::gateway::{CheckView, HealthStatus, ServiceView};
use llm_api::stats::{CacheStats, FallbackStats, LatencyStats, ProviderStats, TierStats};
use resilience_core::breaker::{self as core_breaker, BreakerSnapshot, StateKind};
use resilience_core::fallback::{self as core_fallback, TierKind};
use resilience_core::health::{self as core_health, CheckReport};

use crate::pool::InstanceView;
use crate::state::TransitionEntry;

/// A count as JSON's unsigned integer.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A breaker state.
pub fn state(state: StateKind) -> BreakerState {
    match state {
        StateKind::Closed => BreakerState::Closed,
        StateKind::Open => BreakerState::Open,
        StateKind::HalfOpen => BreakerState::HalfOpen,
    }
}

/// A breaker snapshot.
pub fn breaker(s: &BreakerSnapshot) -> BreakerView {
    let c = &s.counters;
    let w = &s.window;
    BreakerView {
        consecutive_failures: s.consecutive_failures,
        counters: BreakerCounters {
            failures: c.failures,
            ignored: c.ignored,
            rejected_bulkhead: c.rejected_bulkhead,
            rejected_open: c.rejected_open,
            rejected_probe_limit: c.rejected_probe_limit,
            slow: c.slow,
            successes: c.successes,
            transitions: c.transitions,
        },
        forced_open: s.forced_open,
        in_flight: s.in_flight,
        name: s.name.clone(),
        reopens: s.reopens,
        retry_after_ms: s.retry_after_ms,
        state: state(s.state),
        window: BreakerWindow {
            calls: w.calls,
            failure_rate: w.failure_rate,
            failures: w.failures,
            slow: w.slow,
            slow_call_rate: w.slow_call_rate,
        },
    }
}

/// Breaker snapshots by id.
pub fn breakers(snapshots: &BTreeMap<String, BreakerSnapshot>) -> BTreeMap<String, BreakerView> {
    snapshots
        .iter()
        .map(|(id, s)| (id.clone(), breaker(s)))
        .collect()
}

/// Why a breaker moved.
pub fn reason(reason: core_breaker::TransitionReason) -> TransitionReason {
    use core_breaker::TransitionReason as R;
    let (kind, count, rate) = match reason {
        R::ConsecutiveFailures { count } => {
            (TransitionKind::ConsecutiveFailures, Some(count), None)
        }
        R::FailureRate { rate } => (TransitionKind::FailureRate, None, Some(rate)),
        R::SlowCallRate { rate } => (TransitionKind::SlowCallRate, None, Some(rate)),
        R::RecoveryTimeoutElapsed => (TransitionKind::RecoveryTimeoutElapsed, None, None),
        R::ProbeFailed => (TransitionKind::ProbeFailed, None, None),
        R::ProbesSucceeded { count } => (TransitionKind::ProbesSucceeded, Some(count), None),
        R::ManualReset => (TransitionKind::ManualReset, None, None),
        R::ForcedOpen => (TransitionKind::ForcedOpen, None, None),
    };
    TransitionReason { count, kind, rate }
}

/// One entry of the transition log.
pub fn transition(t: &TransitionEntry) -> TransitionView {
    TransitionView {
        at_ms: t.at_ms,
        breaker: t.breaker.clone(),
        from: state(t.from),
        reason: reason(t.reason),
        to: state(t.to),
    }
}

/// A health verdict.
pub fn health(status: core_health::HealthStatus) -> HealthStatus {
    match status {
        core_health::HealthStatus::Healthy => HealthStatus::Healthy,
        core_health::HealthStatus::Degraded => HealthStatus::Degraded,
        core_health::HealthStatus::Unhealthy => HealthStatus::Unhealthy,
    }
}

/// Each dependency check, by name.
pub fn checks(checks: &BTreeMap<String, CheckReport>) -> BTreeMap<String, CheckView> {
    checks
        .iter()
        .map(|(name, c)| {
            let view = CheckView {
                critical: c.critical,
                details: c.details.clone(),
                duration_ms: c.duration_ms,
                message: c.message.clone(),
                status: health(c.status),
            };
            (name.clone(), view)
        })
        .collect()
}

/// One instance of a pool.
pub fn service(i: &InstanceView) -> ServiceView {
    ServiceView {
        circuit_state: state(i.circuit_state),
        healthy: i.healthy,
        id: i.id.clone(),
        model: i.model.clone(),
        tier: i.tier.clone(),
        url: public_url(&i.url),
    }
}

/// `url` as it may be shown: without `user:password@`, `?query` and `#fragment` (an
/// endpoint's key may sit in any of them); the rest as it was written. Text that is no URL
/// loses the same parts.
pub fn public_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    match url[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}{}",
            &url[..authority_start],
            &url[authority_start + at + 1..]
        ),
        None => url.to_owned(),
    }
}

/// The instances of a pool.
pub fn services(instances: &[InstanceView]) -> Vec<ServiceView> {
    instances.iter().map(service).collect()
}

/// The response cache's counters.
pub fn cache(c: &core_fallback::CacheStats) -> CacheStats {
    CacheStats {
        bytes: count(c.bytes),
        capacity: count(c.capacity),
        entries: count(c.entries),
        evictions: c.evictions,
        expirations: c.expirations,
        hits: c.hits,
        inserts: c.inserts,
        max_bytes: count(c.max_bytes),
        misses: c.misses,
        oversized: c.oversized,
        seeded: count(c.seeded),
        seeded_hits: c.seeded_hits,
        ttl_ms: c.ttl_ms,
    }
}

fn latency(l: &core_fallback::LatencyStats) -> LatencyStats {
    LatencyStats {
        count: l.count,
        max_ms: l.max_ms,
        mean_ms: l.mean_ms,
        total_ms: l.total_ms,
    }
}

fn provider(p: &core_fallback::ProviderStats) -> ProviderStats {
    ProviderStats {
        failures: p.failures,
        latency: latency(&p.latency),
        rejected: p.rejected,
        successes: p.successes,
        timeouts: p.timeouts,
    }
}

fn tier(t: &core_fallback::TierStats) -> TierStats {
    TierStats {
        enabled: t.enabled,
        failures: t.failures,
        latency: latency(&t.latency),
        position: count(t.position),
        providers: t
            .providers
            .iter()
            .map(|(name, p)| (name.clone(), provider(p)))
            .collect(),
        rejected: t.rejected,
        skipped: t.skipped,
        successes: t.successes,
        timeout_ms: t.timeout_ms,
        timeouts: t.timeouts,
    }
}

/// A fallback chain's counters.
pub fn fallback(s: &core_fallback::FallbackStats) -> FallbackStats {
    FallbackStats {
        cache: s.cache.as_ref().map(cache),
        exhausted: s.exhausted,
        rejected: s.rejected,
        requests: s.requests,
        served: s.served,
        served_by_fallback: s.served_by_fallback,
        tiers: s
            .tiers
            .iter()
            .map(|(name, t)| (name.clone(), tier(t)))
            .collect(),
    }
}

/// The fallback tier that answered; `None` for the primary tier, which is no fallback.
pub fn fallback_type(kind: TierKind) -> Option<FallbackType> {
    match kind {
        TierKind::Primary => None,
        TierKind::Secondary => Some(FallbackType::Secondary),
        TierKind::Cache => Some(FallbackType::Cache),
        TierKind::Template => Some(FallbackType::Template),
    }
}

/// Why the primary tier did not answer.
pub fn fallback_reason(reason: core_fallback::FallbackReason) -> FallbackReason {
    use core_fallback::FallbackReason as R;
    match reason {
        R::CircuitOpen => FallbackReason::CircuitOpen,
        R::NoServicesAvailable => FallbackReason::NoServicesAvailable,
        R::UpstreamError => FallbackReason::UpstreamError,
        R::Timeout => FallbackReason::Timeout,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod public_url_tests {
    use super::public_url;

    #[test]
    fn credentials_query_and_fragment_are_dropped() {
        for (url, shown) in [
            ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
            ("https://api.example.com/v1", "https://api.example.com/v1"),
            (
                "https://user:pass@api.example.com/v1?key=secret",
                "https://api.example.com/v1",
            ),
            ("http://token@host:80/v1#frag", "http://host:80/v1"),
            ("http://h/v1?key=secret#x", "http://h/v1"),
            ("http://u:p%40ss@h/v1", "http://h/v1"),
            ("http://h/path@with-at", "http://h/path@with-at"),
            ("http://[::1]:8000/v1?a=b", "http://[::1]:8000/v1"),
            ("user:pass@host/x?y", "host/x"),
        ] {
            assert_eq!(public_url(url), shown, "{url}");
        }
    }
}
