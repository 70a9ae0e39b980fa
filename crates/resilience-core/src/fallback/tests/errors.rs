//! Classification of provider errors, the `fallback_reason` mapping and tier names.

use std::time::Duration;

use super::support::{Scripted, req, tier};
use crate::error::Fault;
use crate::fallback::TierKind::{Cache, Primary, Secondary, Template};
use crate::fallback::{
    AllTiersFailed, FallbackChain, FallbackReason, ProviderError, TierFailure, TierKind,
};
use crate::policy::{AttemptFailure, FailureClass};

#[tokio::test(start_paused = true)]
async fn fallback_reason_follows_the_primary_failure() {
    let cases = [
        (
            ProviderError::CircuitOpen,
            FallbackReason::CircuitOpen,
            "circuit_open",
        ),
        (
            ProviderError::NoneAvailable,
            FallbackReason::NoServicesAvailable,
            "no_services_available",
        ),
        (
            ProviderError::Upstream(Box::new(AttemptFailure::new(
                "test",
                FailureClass::ServerError,
                "500",
            ))),
            FallbackReason::UpstreamError,
            "upstream_error",
        ),
        (
            ProviderError::Timeout {
                after: Duration::from_secs(1),
                last: None,
            },
            FallbackReason::Timeout,
            "timeout",
        ),
        (
            ProviderError::Miss,
            FallbackReason::NoServicesAvailable,
            "no_services_available",
        ),
    ];
    for (error, reason, name) in cases {
        let primary = Scripted::failing("pool", error.clone());
        let template = Scripted::answering("degraded", "sorry");
        let chain =
            FallbackChain::new([tier(Primary, &[&primary]), tier(Template, &[&template])]).unwrap();

        let served = chain.execute(&req("hi")).await.unwrap();

        assert_eq!(served.fallback_reason(), Some(reason), "{error}");
        assert_eq!(reason.as_str(), name);
        assert_eq!(reason.to_string(), name);
        assert_eq!(serde_json::to_value(reason).unwrap(), name);
    }
}

#[test]
fn fallback_reason_uses_the_last_primary_failure_and_ignores_other_tiers() {
    let failure = |tier, error| TierFailure {
        tier,
        provider: "p".into(),
        error,
        elapsed: Duration::ZERO,
    };
    let failures = [
        failure(Primary, ProviderError::CircuitOpen),
        failure(
            Primary,
            ProviderError::Timeout {
                after: Duration::from_secs(2),
                last: None,
            },
        ),
        failure(
            Secondary,
            ProviderError::Upstream(Box::new(AttemptFailure::new(
                "test",
                FailureClass::ServerError,
                "x",
            ))),
        ),
    ];
    assert_eq!(
        FallbackReason::from_failures(&failures),
        FallbackReason::Timeout
    );
    assert_eq!(
        FallbackReason::from_failures(&failures[2..]),
        FallbackReason::NoServicesAvailable
    );
    let all = AllTiersFailed {
        failures: failures.to_vec(),
        disabled: vec![],
    };
    assert_eq!(all.fallback_reason(), FallbackReason::Timeout);
}

#[test]
fn provider_errors_are_classified() {
    let client = ProviderError::Client(Box::new(AttemptFailure::new(
        "test",
        FailureClass::Refused,
        "empty prompt",
    )));
    assert_eq!(client.fault(), Fault::Client);
    assert!(client.is_client() && !client.is_retryable());
    assert_eq!(client.to_string(), "invalid request: empty prompt");

    let timeout = ProviderError::Timeout {
        after: Duration::from_millis(1500),
        last: None,
    };
    assert_eq!(timeout.fault(), Fault::Upstream);
    assert!(timeout.is_retryable() && !timeout.is_client());
    assert_eq!(timeout.to_string(), "timed out after 1500 ms");

    assert!(
        ProviderError::Upstream(Box::new(AttemptFailure::new(
            "test",
            FailureClass::ServerError,
            "reset"
        )))
        .is_retryable()
    );
    for error in [
        ProviderError::CircuitOpen,
        ProviderError::NoneAvailable,
        ProviderError::Miss,
    ] {
        assert_eq!(error.fault(), Fault::Upstream, "{error}");
        assert!(!error.is_retryable(), "{error}");
    }
}

#[test]
fn tier_kinds_serialise_lowercase_and_only_primary_is_not_a_fallback() {
    let names: Vec<_> = TierKind::ALL
        .iter()
        .map(|k| serde_json::to_value(k).unwrap())
        .collect();
    assert_eq!(names, ["primary", "secondary", "cache", "template"]);
    let parsed: TierKind = serde_json::from_str("\"template\"").unwrap();
    assert_eq!(parsed, Template);
    assert!(serde_json::from_str::<TierKind>("\"Primary\"").is_err());
    assert_eq!(Cache.to_string(), "cache");
    assert!(!Primary.is_fallback());
    assert!(Secondary.is_fallback() && Cache.is_fallback() && Template.is_fallback());
    assert!(Primary.is_live() && Secondary.is_live() && !Cache.is_live() && !Template.is_live());
}
