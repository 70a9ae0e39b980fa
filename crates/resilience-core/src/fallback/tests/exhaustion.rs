//! Client errors that stop the chain, exhaustion with every cause, and invalid chains.

use std::time::Duration;

use super::support::{Scripted, req, tier};
use crate::Error;
use crate::error::Fault;
use crate::fallback::TierKind::{Cache, Primary, Secondary, Template};
use crate::fallback::{
    FallbackChain, FallbackError, FallbackReason, ProviderError, TierFailure, TierKind,
};
use crate::policy::{AttemptFailure, FailureClass};

fn upstream(text: &str) -> ProviderError {
    ProviderError::Upstream(Box::new(AttemptFailure::new(
        "test",
        FailureClass::ServerError,
        text,
    )))
}

#[tokio::test(start_paused = true)]
async fn client_error_short_circuits_and_later_tiers_are_not_called() {
    let primary = Scripted::failing(
        "pool",
        ProviderError::Client(Box::new(AttemptFailure::new(
            "test",
            FailureClass::Refused,
            "prompt is empty",
        ))),
    );
    let secondary = Scripted::answering("backup", "from secondary");
    let cache = Scripted::answering("memory", "cached");
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]),
        tier(Secondary, &[&secondary]),
        tier(Cache, &[&cache]),
        tier(Template, &[&template]),
    ])
    .unwrap();

    let err = chain.execute(&req("")).await.unwrap_err();

    let FallbackError::Rejected(failure) = &err else {
        panic!("expected a rejection, got {err:?}");
    };
    assert_eq!((failure.tier, failure.provider.as_str()), (Primary, "pool"));
    assert_eq!(err.client_message(), Some("prompt is empty"));
    assert_eq!(err.fault(), Fault::Client);
    assert!(!err.is_retryable());
    assert_eq!(primary.calls(), 1);
    assert_eq!(secondary.calls() + cache.calls() + template.calls(), 0);
    let stats = chain.stats();
    assert_eq!((stats.rejected, stats.tiers["primary"].failures), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn client_error_from_a_later_tier_still_short_circuits() {
    let primary = Scripted::failing("pool", ProviderError::CircuitOpen);
    let secondary = Scripted::failing(
        "backup",
        ProviderError::Client(Box::new(AttemptFailure::new(
            "test",
            FailureClass::Refused,
            "max_tokens too large",
        ))),
    );
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]),
        tier(Secondary, &[&secondary]),
        tier(Template, &[&template]),
    ])
    .unwrap();

    let err = chain.execute(&req("hi")).await.unwrap_err();

    assert!(matches!(&err, FallbackError::Rejected(f) if f.tier == Secondary));
    assert_eq!(
        err.to_string(),
        "request rejected by secondary/backup: invalid request: max_tokens too large"
    );
    assert_eq!(template.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn all_tiers_failed_keeps_every_cause_in_order() {
    let pool_a = Scripted::failing("pool-a", upstream("503"));
    let pool_b = Scripted::failing("pool-b", ProviderError::CircuitOpen);
    let backup = Scripted::hanging("backup");
    let cache = Scripted::failing("memory", ProviderError::Miss);
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([
        tier(Primary, &[&pool_a, &pool_b]),
        tier(Secondary, &[&backup]).with_timeout(Duration::from_millis(100)),
        tier(Cache, &[&cache]),
        tier(Template, &[&template]).with_enabled(false),
    ])
    .unwrap();

    let err = chain.execute(&req("hi")).await.unwrap_err();

    let FallbackError::AllTiersFailed(all) = &err else {
        panic!("expected exhaustion, got {err:?}");
    };
    let causes: Vec<(TierKind, &str, &ProviderError)> = all
        .failures
        .iter()
        .map(|f: &TierFailure| (f.tier, f.provider.as_str(), &f.error))
        .collect();
    assert_eq!(
        causes,
        [
            (Primary, "pool-a", &upstream("503")),
            (Primary, "pool-b", &ProviderError::CircuitOpen),
            (
                Secondary,
                "backup",
                &ProviderError::Timeout {
                    after: Duration::from_millis(100),
                    last: None,
                }
            ),
            (Cache, "memory", &ProviderError::Miss),
        ]
    );
    assert_eq!(all.disabled, [Template]);
    assert_eq!(all.failures[2].elapsed, Duration::from_millis(100));
    assert_eq!(
        err.to_string(),
        "every fallback tier failed: primary/pool-a: upstream error: test: 503; \
         primary/pool-b: circuit open; secondary/backup: timed out after 100 ms; \
         cache/memory: miss (disabled: template)"
    );
    assert_eq!(all.fallback_reason(), FallbackReason::CircuitOpen);
    assert_eq!(err.fault(), Fault::Upstream);
    assert!(err.is_retryable());
    assert_eq!(err.client_message(), None);
    assert_eq!(template.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn every_tier_disabled_fails_without_calling_anyone() {
    let primary = Scripted::answering("pool", "ok");
    let template = Scripted::answering("degraded", "sorry");
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]).with_enabled(false),
        tier(Template, &[&template]).with_enabled(false),
    ])
    .unwrap();

    let err = chain.execute(&req("hi")).await.unwrap_err();

    assert_eq!(
        err.to_string(),
        "every fallback tier failed: no enabled tier had a provider (disabled: primary, template)"
    );
    assert_eq!(primary.calls() + template.calls(), 0);
    assert_eq!(chain.stats().exhausted, 1);
}

#[test]
fn new_rejects_duplicate_tiers_and_provider_names_all_at_once() {
    let a = Scripted::answering("pool", "a");
    let b = Scripted::answering("pool", "b");
    let err = FallbackChain::new([tier(Primary, &[&a, &b]), tier(Primary, &[])]).unwrap_err();

    let Error::InvalidConfig { setting, reason } = &err else {
        panic!("expected InvalidConfig, got {err:?}");
    };
    assert_eq!(setting, "fallback.tiers");
    assert!(
        reason.contains("tier `primary` appears more than once"),
        "{reason}"
    );
    assert!(
        reason.contains("tier `primary` has two providers named `pool`"),
        "{reason}"
    );
}

#[test]
fn new_rejects_an_empty_chain() {
    let err = FallbackChain::<super::support::Req, String>::new([]).unwrap_err();
    assert!(err.to_string().contains("at least one tier"), "{err}");
}
