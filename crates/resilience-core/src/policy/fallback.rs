//! The decisions between targets: after a provider of the fallback chain failed, whether the
//! chain moves on or stops; after a route rejected a request, whether the request goes once
//! more through the route's larger-context fallback.

use crate::fallback::{FallbackError, ProviderError};

use super::outcome::FailureClass;

/// What the fallback chain does after one provider failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainStep {
    /// Record the failure and ask the next provider (the next tier's first when the tier has
    /// no other); when none is left, every tier failed.
    NextProvider,
    /// Stop at once with the failure as the request's rejection: the request itself was
    /// refused, so no later tier is asked and no upstream is blamed.
    Reject,
}

/// The chain's step after `error`, whatever tier the provider was in: a refusal of the
/// request stops the chain (a later tier would only mask the client's mistake); any other
/// failure — an open breaker, no instance, a timeout, an upstream failure, a cache miss —
/// moves on.
pub fn after_provider_failure(error: &ProviderError) -> ChainStep {
    if error.is_client() {
        ChainStep::Reject
    } else {
        ChainStep::NextProvider
    }
}

/// Whether a request the route answered with `result`'s error goes once more through the
/// route's `context_fallback`: only when a target refused the prompt as too long for its
/// context, the route names a fallback, and the request is not already on a fallback route
/// (a fallback's own fallback is not followed).
pub fn follow_context_fallback(
    error: &FallbackError,
    has_fallback: bool,
    already_followed: bool,
) -> bool {
    let too_long = matches!(error, FallbackError::Rejected(failure)
        if matches!(&failure.error, ProviderError::Client(f) if f.class == FailureClass::ContextTooLong));
    too_long && has_fallback && !already_followed
}
