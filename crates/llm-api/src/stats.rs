//! The gateway's JSON `/metrics` (what the lab's `jq .circuit_breaker.state` reads), with
//! the fallback chain's and the response cache's counters it carries.
//!
//! Fields are declared in alphabetical order: the gateway wrote these objects through
//! `serde_json::Value`, whose objects sort their keys, so the bytes stay the same.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::breaker::BreakerView;
use crate::gateway::DiscoveryView;

/// `GET /metrics` as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GatewayMetrics {
    /// The pool breaker (the lab's "circuit breaker").
    pub circuit_breaker: BreakerView,
    /// Every instance and endpoint breaker, by id.
    pub circuit_breakers: BTreeMap<String, BreakerView>,
    /// The default route's fallback chain.
    pub fallback: FallbackStats,
    /// Requests over every route (a context fallback counts in both routes).
    pub requests: RequestCounts,
    /// Each route's fallback chain, by route name.
    pub routes: BTreeMap<String, FallbackStats>,
    /// Discovered instances.
    pub service_discovery: DiscoveryView,
}

/// The `requests` object of [`GatewayMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestCounts {
    /// Requests no tier answered.
    pub exhausted: u64,
    /// Requests being answered now.
    pub in_flight: u64,
    /// Requests answered by any tier.
    pub served: u64,
    /// The part of `served` answered by a fallback tier.
    pub served_by_fallback: u64,
    /// Requests received.
    pub total: u64,
}

/// A fallback chain's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FallbackStats {
    /// The response cache's counters, when the chain stores into one; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheStats>,
    /// Requests that no tier answered.
    pub exhausted: u64,
    /// Requests stopped by a client error.
    pub rejected: u64,
    /// Requests received.
    pub requests: u64,
    /// Requests answered by any tier.
    pub served: u64,
    /// The part of `served` answered by a tier other than primary.
    pub served_by_fallback: u64,
    /// Per tier, by lowercase name (`primary`, `secondary`, `cache`, `template`).
    pub tiers: BTreeMap<String, TierStats>,
}

/// One tier's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TierStats {
    /// Whether the tier is enabled now.
    pub enabled: bool,
    /// Failed attempts (timeouts included).
    pub failures: u64,
    /// Latency of every attempt.
    pub latency: LatencyStats,
    /// Position in the chain, from 0.
    pub position: u64,
    /// Per provider, by name.
    pub providers: BTreeMap<String, ProviderStats>,
    /// Attempts that found the request invalid.
    pub rejected: u64,
    /// Requests that reached the tier while it was disabled.
    pub skipped: u64,
    /// Answers given.
    pub successes: u64,
    /// The per-provider timeout, in milliseconds.
    pub timeout_ms: u64,
    /// The part of `failures` that were timeouts.
    pub timeouts: u64,
}

/// One provider's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderStats {
    /// Failed attempts (timeouts included).
    pub failures: u64,
    /// Latency of every attempt.
    pub latency: LatencyStats,
    /// Attempts that found the request invalid.
    pub rejected: u64,
    /// Answers given.
    pub successes: u64,
    /// The part of `failures` that were timeouts.
    pub timeouts: u64,
}

/// Count, maximum, mean and total of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatencyStats {
    /// Attempts measured.
    pub count: u64,
    /// The slowest.
    pub max_ms: f64,
    /// `total_ms / count`, or 0.
    pub mean_ms: f64,
    /// The sum.
    pub total_ms: f64,
}

/// The response cache's counters and sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CacheStats {
    /// The estimated bytes of the learned entries held.
    #[serde(default)]
    pub bytes: u64,
    /// The maximum number of learned entries.
    pub capacity: u64,
    /// Learned entries held now.
    pub entries: u64,
    /// Learned entries removed to respect the size bound.
    pub evictions: u64,
    /// Learned entries removed because their TTL had passed.
    pub expirations: u64,
    /// Lookups that found an answer.
    pub hits: u64,
    /// Learned entries stored.
    pub inserts: u64,
    /// The bound of `bytes`.
    #[serde(default)]
    pub max_bytes: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Answers not cached because they alone were above the per-entry bound.
    #[serde(default)]
    pub oversized: u64,
    /// Seeded entries.
    pub seeded: u64,
    /// The part of `hits` served by seeded entries.
    pub seeded_hits: u64,
    /// The lifetime of a learned entry, in milliseconds.
    pub ttl_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::tests::closed;
    use crate::gateway::tests::discovery;

    fn latency() -> (LatencyStats, &'static str) {
        let stats = LatencyStats {
            count: 2,
            max_ms: 3.5,
            mean_ms: 2.25,
            total_ms: 4.5,
        };
        (
            stats,
            r#"{"count":2,"max_ms":3.5,"mean_ms":2.25,"total_ms":4.5}"#,
        )
    }

    fn chain(cache: Option<CacheStats>) -> FallbackStats {
        let (latency, _) = latency();
        let provider = ProviderStats {
            failures: 1,
            latency,
            rejected: 0,
            successes: 1,
            timeouts: 0,
        };
        let tier = TierStats {
            enabled: true,
            failures: 1,
            latency,
            position: 0,
            providers: BTreeMap::from([("pool".to_owned(), provider)]),
            rejected: 0,
            skipped: 0,
            successes: 1,
            timeout_ms: 30_000,
            timeouts: 0,
        };
        FallbackStats {
            cache,
            exhausted: 0,
            rejected: 0,
            requests: 2,
            served: 2,
            served_by_fallback: 1,
            tiers: BTreeMap::from([("primary".to_owned(), tier)]),
        }
    }

    #[test]
    fn a_chain_round_trips_and_leaves_out_an_absent_cache() {
        let (_, latency) = latency();
        let stats = chain(None);
        let json = format!(
            concat!(
                r#"{{"exhausted":0,"rejected":0,"requests":2,"served":2,"served_by_fallback":1,"#,
                r#""tiers":{{"primary":{{"enabled":true,"failures":1,"latency":{l},"position":0,"#,
                r#""providers":{{"pool":{{"failures":1,"latency":{l},"rejected":0,"successes":1,"#,
                r#""timeouts":0}}}},"rejected":0,"skipped":0,"successes":1,"timeout_ms":30000,"#,
                r#""timeouts":0}}}}}}"#
            ),
            l = latency
        );
        assert_eq!(serde_json::to_string(&stats).unwrap(), json);
        assert_eq!(serde_json::from_str::<FallbackStats>(&json).unwrap(), stats);
    }

    #[test]
    fn a_chain_with_a_cache_carries_its_counters_first() {
        let cache = CacheStats {
            capacity: 1000,
            entries: 3,
            hits: 4,
            inserts: 3,
            misses: 1,
            seeded: 10,
            seeded_hits: 2,
            ttl_ms: 300_000,
            ..CacheStats::default()
        };
        let stats = chain(Some(cache));
        let text = serde_json::to_string(&stats).unwrap();
        assert!(
            text.starts_with(concat!(
                r#"{"cache":{"bytes":0,"capacity":1000,"entries":3,"evictions":0,"#,
                r#""expirations":0,"hits":4,"inserts":3,"max_bytes":0,"misses":1,"#,
                r#""oversized":0,"seeded":10,"seeded_hits":2,"ttl_ms":300000},"exhausted":0,"#
            )),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<FallbackStats>(&text).unwrap(), stats);
    }

    #[test]
    fn the_metrics_document_round_trips() {
        let (breaker, breaker_json) = closed();
        let (discovery, discovery_json) = discovery();
        let metrics = GatewayMetrics {
            circuit_breaker: breaker.clone(),
            circuit_breakers: BTreeMap::from([("a".to_owned(), breaker)]),
            fallback: chain(None),
            requests: RequestCounts {
                exhausted: 0,
                in_flight: 1,
                served: 2,
                served_by_fallback: 1,
                total: 2,
            },
            routes: BTreeMap::from([("default".to_owned(), chain(None))]),
            service_discovery: discovery,
        };
        let fallback = serde_json::to_string(&chain(None)).unwrap();
        let json = format!(
            concat!(
                r#"{{"circuit_breaker":{b},"circuit_breakers":{{"a":{b}}},"fallback":{f},"#,
                r#""requests":{{"exhausted":0,"in_flight":1,"served":2,"served_by_fallback":1,"#,
                r#""total":2}},"routes":{{"default":{f}}},"service_discovery":{d}}}"#
            ),
            b = breaker_json,
            f = fallback,
            d = discovery_json
        );
        assert_eq!(serde_json::to_string(&metrics).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<GatewayMetrics>(&json).unwrap(),
            metrics
        );
    }
}
