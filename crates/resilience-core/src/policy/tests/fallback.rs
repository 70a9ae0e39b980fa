//! The decisions between targets.

use std::time::Duration;

use crate::fallback::{AllTiersFailed, FallbackError, ProviderError, TierFailure, TierKind};
use crate::policy::{
    AttemptFailure, ChainStep, FailureClass, after_provider_failure, follow_context_fallback,
};

fn every_error(class: FailureClass) -> Vec<ProviderError> {
    let failure = AttemptFailure::new("a", class, "x");
    vec![
        ProviderError::CircuitOpen,
        ProviderError::NoneAvailable,
        ProviderError::Miss,
        ProviderError::Unavailable("store down".to_owned()),
        ProviderError::timeout(Duration::from_secs(1)),
        ProviderError::Timeout {
            after: Duration::from_secs(1),
            last: Some(Box::new(failure.clone())),
        },
        ProviderError::Upstream(Box::new(failure.clone())),
        ProviderError::Client(Box::new(failure)),
    ]
}

#[test]
fn only_a_refusal_of_the_request_stops_the_chain() {
    for class in FailureClass::ALL {
        for error in every_error(class) {
            let expected = if matches!(error, ProviderError::Client(_)) {
                ChainStep::Reject
            } else {
                ChainStep::NextProvider
            };
            assert_eq!(after_provider_failure(&error), expected, "{error:?}");
        }
    }
}

fn rejected(class: FailureClass) -> FallbackError {
    FallbackError::Rejected(TierFailure {
        tier: TierKind::Primary,
        provider: "pool".to_owned(),
        error: ProviderError::Client(Box::new(AttemptFailure::new("a", class, "no"))),
        elapsed: Duration::ZERO,
    })
}

#[test]
fn only_a_context_refusal_follows_the_larger_context_route_once() {
    for class in FailureClass::ALL {
        let error = rejected(class);
        let follows = class == FailureClass::ContextTooLong;
        assert_eq!(
            follow_context_fallback(&error, true, false),
            follows,
            "{class}"
        );
        assert!(
            !follow_context_fallback(&error, false, false),
            "no fallback named"
        );
        assert!(!follow_context_fallback(&error, true, true), "never twice");
    }
    let exhausted = FallbackError::AllTiersFailed(AllTiersFailed::default());
    assert!(!follow_context_fallback(&exhausted, true, false));
}
