//! Counters after a sequence of requests, and their JSON shape.

use std::time::Duration;

use super::support::{Scripted, Step, req, tier};
use crate::fallback::TierKind::{Primary, Secondary, Template};
use crate::fallback::{FallbackChain, ProviderError};
use crate::policy::{AttemptFailure, FailureClass};

#[tokio::test(start_paused = true)]
async fn stats_count_every_outcome_after_a_sequence() {
    let primary = Scripted::new("pool", Step::Delay(Duration::from_millis(100), "p".into()));
    let secondary = Scripted::answering("backup", "s");
    let template = Scripted::answering("degraded", "t");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]).with_timeout(Duration::from_millis(200)),
        tier(Secondary, &[&secondary]),
        tier(Template, &[&template]),
    ])
    .unwrap();

    // 1: primary answers after 100 ms.
    assert_eq!(chain.execute(&req("a")).await.unwrap().tier, Primary);
    // 2: primary fails, secondary answers.
    primary.set(Step::Fail(ProviderError::Upstream(Box::new(
        AttemptFailure::new("test", FailureClass::ServerError, "500"),
    ))));
    assert_eq!(chain.execute(&req("b")).await.unwrap().tier, Secondary);
    // 3: primary hangs past its 200 ms timeout, secondary answers.
    primary.set(Step::Hang);
    assert_eq!(chain.execute(&req("c")).await.unwrap().tier, Secondary);
    // 4: secondary disabled, primary fails, template answers.
    chain.set_enabled(Secondary, false);
    primary.set(Step::Fail(ProviderError::CircuitOpen));
    assert_eq!(chain.execute(&req("d")).await.unwrap().tier, Template);
    // 5: a client error stops everything.
    primary.set(Step::Fail(ProviderError::Client(Box::new(
        AttemptFailure::new("test", FailureClass::Refused, "bad"),
    ))));
    assert!(chain.execute(&req("e")).await.is_err());

    let stats = chain.stats();
    assert_eq!(
        (
            stats.requests,
            stats.served,
            stats.served_by_fallback,
            stats.rejected,
            stats.exhausted
        ),
        (5, 4, 3, 1, 0)
    );
    let p = &stats.tiers["primary"];
    assert_eq!(
        (p.successes, p.failures, p.timeouts, p.rejected, p.skipped),
        (1, 3, 1, 1, 0)
    );
    assert_eq!(p.latency.count, 5);
    assert_eq!(p.latency.max_ms, 200.0);
    assert_eq!(p.latency.total_ms, 300.0);
    assert_eq!(p.latency.mean_ms, 60.0);
    assert_eq!((p.position, p.timeout_ms, p.enabled), (0, 200, true));
    assert_eq!(p.providers["pool"].successes, 1);
    assert_eq!(p.providers["pool"].timeouts, 1);
    let s = &stats.tiers["secondary"];
    assert_eq!(
        (s.successes, s.failures, s.skipped, s.enabled),
        (2, 0, 1, false)
    );
    let t = &stats.tiers["template"];
    assert_eq!((t.successes, t.position), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn stats_serialise_keyed_by_tier_and_provider_name() {
    let a = Scripted::failing("pool-a", ProviderError::NoneAvailable);
    let b = Scripted::answering("pool-b", "ok");
    let chain = FallbackChain::new([tier(Primary, &[&a, &b])]).unwrap();

    chain.execute(&req("hi")).await.unwrap();

    let json = serde_json::to_value(chain.stats()).unwrap();
    assert_eq!(json["requests"], 1);
    assert_eq!(json["tiers"]["primary"]["successes"], 1);
    assert_eq!(json["tiers"]["primary"]["failures"], 1);
    assert_eq!(
        json["tiers"]["primary"]["providers"]["pool-a"]["failures"],
        1
    );
    assert_eq!(
        json["tiers"]["primary"]["providers"]["pool-b"]["successes"],
        1
    );
    assert_eq!(json["tiers"]["primary"]["latency"]["count"], 2);
    assert_eq!(json["tiers"]["primary"]["timeout_ms"], 30_000);
}

#[test]
fn fresh_chain_reports_zeroes_for_every_tier() {
    let primary = Scripted::answering("pool", "ok");
    let chain = FallbackChain::new([tier(Primary, &[&primary]), tier(Template, &[])]).unwrap();

    let stats = chain.stats();

    assert_eq!(stats.requests, 0);
    assert_eq!(
        stats.tiers.keys().collect::<Vec<_>>(),
        ["primary", "template"]
    );
    assert_eq!(stats.tiers["primary"].latency.mean_ms, 0.0);
    assert!(stats.tiers["template"].providers.is_empty());
}
