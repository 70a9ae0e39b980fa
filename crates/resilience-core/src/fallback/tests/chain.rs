//! Execution order, per-tier timeouts and disabled tiers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::support::{CallLog, Scripted, Step, req, tier};
use crate::fallback::TierKind::{Cache, Primary, Secondary, Template};
use crate::fallback::{FallbackChain, FallbackReason, ProviderError, Tier};
use crate::policy::{AttemptFailure, FailureClass};

fn upstream(text: &str) -> ProviderError {
    ProviderError::Upstream(Box::new(AttemptFailure::new(
        "test",
        FailureClass::ServerError,
        text,
    )))
}

#[tokio::test(start_paused = true)]
async fn first_tier_success_is_served_by_primary_without_fallback() {
    let primary = Scripted::answering("pool", "from primary");
    let secondary = Scripted::answering("backup", "from secondary");
    let chain =
        FallbackChain::new([tier(Primary, &[&primary]), tier(Secondary, &[&secondary])]).unwrap();

    let served = chain.execute(&req("hi")).await.unwrap();

    assert_eq!(served.response, "from primary");
    assert_eq!(served.tier, Primary);
    assert_eq!(served.provider, "pool");
    assert!(served.failures.is_empty());
    assert!(!served.fallback_used());
    assert_eq!(served.fallback_type(), None);
    assert_eq!(served.fallback_reason(), None);
    assert_eq!(secondary.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn primary_failure_falls_through_to_secondary() {
    let primary = Scripted::failing("pool", upstream("502 bad gateway"));
    let secondary = Scripted::answering("backup", "from secondary");
    let chain =
        FallbackChain::new([tier(Primary, &[&primary]), tier(Secondary, &[&secondary])]).unwrap();

    let served = chain.execute(&req("hi")).await.unwrap();

    assert_eq!(served.response, "from secondary");
    assert_eq!(
        (served.tier, served.provider.as_str()),
        (Secondary, "backup")
    );
    assert_eq!(served.fallback_type(), Some(Secondary));
    assert_eq!(
        served.fallback_reason(),
        Some(FallbackReason::UpstreamError)
    );
    assert_eq!(served.failures.len(), 1);
    assert_eq!(
        served.failures[0].to_string(),
        "primary/pool: upstream error: test: 502 bad gateway"
    );
}

#[tokio::test(start_paused = true)]
async fn tiers_are_tried_in_order_primary_secondary_cache_template() {
    let log: CallLog = Arc::new(Mutex::new(Vec::new()));
    let primary = Scripted::logged("pool", Step::Fail(ProviderError::CircuitOpen), &log);
    let secondary = Scripted::logged("backup", Step::Fail(upstream("500")), &log);
    let cache = Scripted::logged("memory", Step::Fail(ProviderError::Miss), &log);
    let template = Scripted::logged("degraded", Step::Answer("sorry".into()), &log);
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]),
        tier(Secondary, &[&secondary]),
        tier(Cache, &[&cache]),
        tier(Template, &[&template]),
    ])
    .unwrap();

    let served = chain.execute(&req("hi")).await.unwrap();

    assert_eq!(
        *log.lock().unwrap(),
        ["pool", "backup", "memory", "degraded"]
    );
    assert_eq!(
        (served.tier, served.provider.as_str()),
        (Template, "degraded")
    );
    let tiers: Vec<_> = served.failures.iter().map(|f| f.tier).collect();
    assert_eq!(tiers, [Primary, Secondary, Cache]);
    assert_eq!(served.fallback_reason(), Some(FallbackReason::CircuitOpen));
}

#[tokio::test(start_paused = true)]
async fn execute_live_asks_the_live_tiers_only_and_is_not_another_request() {
    let log: CallLog = Arc::new(Mutex::new(Vec::new()));
    let primary = Scripted::logged("pool", Step::Fail(ProviderError::CircuitOpen), &log);
    let secondary = Scripted::logged("backup", Step::Fail(upstream("500")), &log);
    let cache = Scripted::logged("memory", Step::Answer("cached".into()), &log);
    let template = Scripted::logged("degraded", Step::Answer("sorry".into()), &log);
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]),
        tier(Secondary, &[&secondary]),
        tier(Cache, &[&cache]),
        tier(Template, &[&template]),
    ])
    .unwrap();

    let error = chain.execute_live(&req("hi")).await.unwrap_err();

    assert_eq!(*log.lock().unwrap(), ["pool", "backup"]);
    let crate::fallback::FallbackError::AllTiersFailed(all) = error else {
        panic!("every live tier failed: {error:?}");
    };
    let tiers: Vec<_> = all.failures.iter().map(|f| f.tier).collect();
    assert_eq!(tiers, [Primary, Secondary]);
    let stats = chain.stats();
    assert_eq!(
        (stats.requests, stats.served, stats.exhausted),
        (0, 0, 0),
        "{stats:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn cache_tier_answers_before_template() {
    let primary = Scripted::failing("pool", ProviderError::NoneAvailable);
    let cache = Scripted::answering("memory", "cached answer");
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]),
        tier(Cache, &[&cache]),
        tier(Template, &[&template]),
    ])
    .unwrap();

    let served = chain.execute(&req("hi")).await.unwrap();

    assert_eq!((served.tier, served.provider.as_str()), (Cache, "memory"));
    assert_eq!(served.response, "cached answer");
    assert_eq!(
        served.fallback_reason(),
        Some(FallbackReason::NoServicesAvailable)
    );
    assert_eq!(template.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn providers_within_a_tier_are_tried_in_order() {
    let log: CallLog = Arc::new(Mutex::new(Vec::new()));
    let a = Scripted::logged("a", Step::Fail(upstream("down")), &log);
    let b = Scripted::logged("b", Step::Fail(ProviderError::CircuitOpen), &log);
    let c = Scripted::logged("c", Step::Answer("from c".into()), &log);
    let d = Scripted::logged("d", Step::Answer("from d".into()), &log);
    let chain = FallbackChain::new([tier(Primary, &[&a, &b, &c, &d])]).unwrap();

    let served = chain.execute(&req("hi")).await.unwrap();

    assert_eq!(*log.lock().unwrap(), ["a", "b", "c"]);
    assert_eq!((served.tier, served.provider.as_str()), (Primary, "c"));
    assert!(
        !served.fallback_used(),
        "another primary provider is not a fallback"
    );
    assert_eq!(served.failures.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn tier_timeout_fires_and_next_tier_answers() {
    let primary = Scripted::hanging("pool");
    let secondary = Scripted::answering("backup", "from secondary");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]).with_timeout(Duration::from_millis(250)),
        tier(Secondary, &[&secondary]),
    ])
    .unwrap();

    let served = chain.execute(&req("hi")).await.unwrap();

    assert_eq!(served.tier, Secondary);
    let failure = &served.failures[0];
    assert_eq!(
        failure.error,
        ProviderError::Timeout {
            after: Duration::from_millis(250),
            last: None,
        }
    );
    assert_eq!(failure.to_string(), "primary/pool: timed out after 250 ms");
    assert_eq!(failure.elapsed, Duration::from_millis(250));
    assert_eq!(served.elapsed, Duration::from_millis(250));
    assert_eq!(served.fallback_reason(), Some(FallbackReason::Timeout));
}

#[tokio::test(start_paused = true)]
async fn each_tier_uses_its_own_timeout() {
    let primary = Scripted::hanging("pool");
    let secondary = Scripted::hanging("backup");
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]).with_timeout(Duration::from_secs(1)),
        tier(Secondary, &[&secondary]).with_timeout(Duration::from_millis(100)),
        tier(Template, &[&template]),
    ])
    .unwrap();

    let served = chain.execute(&req("hi")).await.unwrap();

    let timeouts: Vec<_> = served.failures.iter().map(|f| f.error.clone()).collect();
    assert_eq!(
        timeouts,
        [
            ProviderError::Timeout {
                after: Duration::from_secs(1),
                last: None,
            },
            ProviderError::Timeout {
                after: Duration::from_millis(100),
                last: None,
            },
        ]
    );
    assert_eq!(served.elapsed, Duration::from_millis(1100));
    assert_eq!(served.tier, Template);
}

#[tokio::test(start_paused = true)]
async fn provider_answering_within_its_timeout_is_served() {
    let primary = Scripted::new(
        "pool",
        Step::Delay(Duration::from_millis(200), "slow".into()),
    );
    let secondary = Scripted::answering("backup", "from secondary");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]).with_timeout(Duration::from_millis(250)),
        tier(Secondary, &[&secondary]),
    ])
    .unwrap();

    let served = chain.execute(&req("hi")).await.unwrap();

    assert_eq!((served.tier, served.response.as_str()), (Primary, "slow"));
    assert_eq!(served.elapsed, Duration::from_millis(200));
    assert_eq!(secondary.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn default_timeouts_follow_the_tier_kind() {
    let live: Tier<super::support::Req, String> = Tier::new(Primary);
    let local: Tier<super::support::Req, String> = Tier::new(Template);
    assert_eq!(live.timeout(), Duration::from_secs(30));
    assert_eq!(local.timeout(), Duration::from_secs(1));
    assert!(live.is_enabled());
}

#[tokio::test(start_paused = true)]
async fn disabled_tier_is_skipped_and_not_called() {
    let primary = Scripted::failing("pool", upstream("500"));
    let secondary = Scripted::answering("backup", "from secondary");
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]),
        tier(Secondary, &[&secondary]),
        tier(Template, &[&template]),
    ])
    .unwrap();

    assert!(chain.set_enabled(Secondary, false));
    let served = chain.execute(&req("hi")).await.unwrap();

    assert_eq!(served.tier, Template);
    assert_eq!(secondary.calls(), 0);
    assert_eq!(chain.stats().tiers["secondary"].skipped, 1);
    assert!(!chain.stats().tiers["secondary"].enabled);
}

#[tokio::test(start_paused = true)]
async fn re_enabled_tier_answers_again() {
    let primary = Scripted::failing("pool", upstream("500"));
    let secondary = Scripted::answering("backup", "from secondary");
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]),
        tier(Secondary, &[&secondary]).with_enabled(false),
        tier(Template, &[&template]),
    ])
    .unwrap();

    assert_eq!(chain.execute(&req("hi")).await.unwrap().tier, Template);
    assert!(chain.set_enabled(Secondary, true));
    assert_eq!(chain.execute(&req("hi")).await.unwrap().tier, Secondary);
    assert_eq!(chain.tier(Secondary).map(Tier::is_enabled), Some(true));
}

#[tokio::test(start_paused = true)]
async fn set_enabled_reports_a_missing_tier() {
    let primary = Scripted::answering("pool", "ok");
    let chain = FallbackChain::new([tier(Primary, &[&primary])]).unwrap();
    assert!(!chain.set_enabled(Cache, false));
    assert!(chain.tier(Cache).is_none());
}

#[tokio::test(start_paused = true)]
async fn disabled_primary_gives_no_services_available() {
    let primary = Scripted::answering("pool", "from primary");
    let template = Scripted::answering("degraded", "sorry");
    let chain =
        FallbackChain::new([tier(Primary, &[&primary]), tier(Template, &[&template])]).unwrap();
    chain.set_enabled(Primary, false);

    let served = chain.execute(&req("hi")).await.unwrap();

    assert_eq!(primary.calls(), 0);
    assert!(served.failures.is_empty());
    assert_eq!(
        served.fallback_reason(),
        Some(FallbackReason::NoServicesAvailable)
    );
}

#[tokio::test(start_paused = true)]
async fn tier_without_providers_is_passed_over() {
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([tier(Primary, &[]), tier(Template, &[&template])]).unwrap();

    let served = chain.execute(&req("hi")).await.unwrap();

    assert_eq!(served.tier, Template);
    assert_eq!(
        served.fallback_reason(),
        Some(FallbackReason::NoServicesAvailable)
    );
}

#[test]
fn execute_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let primary = Scripted::answering("pool", "ok");
    let chain = FallbackChain::new([tier(Primary, &[&primary])]).unwrap();
    let request = req("hi");
    let future = chain.execute(&request);
    assert_send(&future);
}
