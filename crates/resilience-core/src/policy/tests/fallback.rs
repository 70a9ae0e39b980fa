//! The decisions between targets.

use std::time::Duration;

use super::support::every_error;
use crate::fallback::{AllTiersFailed, FallbackError, ProviderError, TierFailure, TierKind};
use crate::policy::{
    AttemptFailure, ChainStep, FailureClass, after_provider_failure, follow_context_fallback,
};

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
