//! What can go wrong in a fallback chain, classified.
//!
//! A provider fails with a [`ProviderError`]; the chain records it as a [`TierFailure`] and
//! moves on, except for [`ProviderError::Client`], which stops the chain as
//! [`FallbackError::Rejected`] because invalid input must never reach (or be blamed on) an
//! upstream. When nothing answers, [`AllTiersFailed`] keeps every cause in the order it
//! happened, and [`FallbackReason`] condenses the primary tier's cause into the design's
//! `fallback_reason`.

use std::fmt;
use std::time::Duration;

use super::tier::TierKind;
use crate::error::Fault;
use crate::policy::AttemptFailure;

/// Why one provider did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider's circuit breaker is open; it was not called.
    #[error("circuit open")]
    CircuitOpen,
    /// The provider had no instance to send the request to.
    #[error("no instance available")]
    NoneAvailable,
    /// The provider did not answer in time: its last attempt's limit, its deadline, or its
    /// tier's timeout ran out.
    #[error("timed out after {} ms", .after.as_millis())]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
        /// The provider's last failed attempt, if it made one.
        last: Option<Box<AttemptFailure>>,
    },
    /// The upstream answered with an error or could not be reached: the last attempt.
    #[error("upstream error: {0}")]
    Upstream(Box<AttemptFailure>),
    /// A cache provider had no answer for the request.
    #[error("miss")]
    Miss,
    /// A provider that is no upstream (a shared cache store) could not be asked; the text
    /// says why, for logs. It carries no attempt: clients are never told of it.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request itself is invalid; later tiers are not tried. The refusal as the
    /// upstream gave it.
    #[error("invalid request: {}", .0.message)]
    Client(Box<AttemptFailure>),
}

impl ProviderError {
    /// Where the fault lies: [`Fault::Client`] for [`ProviderError::Client`], otherwise
    /// [`Fault::Upstream`] (a cache miss counts as "the source had nothing").
    pub fn fault(&self) -> Fault {
        match self {
            Self::Client(_) => Fault::Client,
            Self::CircuitOpen
            | Self::NoneAvailable
            | Self::Timeout { .. }
            | Self::Upstream(_)
            | Self::Unavailable(_)
            | Self::Miss => Fault::Upstream,
        }
    }

    /// Whether the same call may succeed if tried again soon: timeouts and upstream errors.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Upstream(_) | Self::Unavailable(_)
        )
    }

    /// Whether this is a client error, which stops the chain.
    pub fn is_client(&self) -> bool {
        matches!(self, Self::Client(_))
    }

    /// A timeout of `after` with no attempt behind it (a tier's own timeout).
    pub fn timeout(after: Duration) -> Self {
        Self::Timeout { after, last: None }
    }

    /// The last failed attempt behind this error, if the provider made one.
    pub fn attempt(&self) -> Option<&AttemptFailure> {
        match self {
            Self::Upstream(failure) | Self::Client(failure) => Some(failure),
            Self::Timeout { last, .. } => last.as_deref(),
            Self::CircuitOpen | Self::NoneAvailable | Self::Miss | Self::Unavailable(_) => None,
        }
    }

    /// The `fallback_reason` this failure explains when it is the primary tier's.
    ///
    /// A [`ProviderError::Miss`] maps to `no_services_available` (nothing could answer); a
    /// [`ProviderError::Client`] never leads to a fallback and maps to `upstream_error` only
    /// so that the mapping is total.
    pub fn reason(&self) -> FallbackReason {
        match self {
            Self::CircuitOpen => FallbackReason::CircuitOpen,
            Self::NoneAvailable | Self::Miss => FallbackReason::NoServicesAvailable,
            Self::Timeout { .. } => FallbackReason::Timeout,
            Self::Upstream(_) | Self::Unavailable(_) | Self::Client(_) => {
                FallbackReason::UpstreamError
            }
        }
    }
}

/// Why the primary tier did not answer, as the gateway reports `fallback_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// The primary pool's breaker was open.
    CircuitOpen,
    /// The primary tier had no instance (or was disabled, absent or empty).
    NoServicesAvailable,
    /// The primary upstream answered with an error.
    UpstreamError,
    /// The primary upstream did not answer in time.
    Timeout,
}

impl FallbackReason {
    /// The snake_case name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::NoServicesAvailable => "no_services_available",
            Self::UpstreamError => "upstream_error",
            Self::Timeout => "timeout",
        }
    }

    /// The reason explained by `failures`: the last failure of the primary tier, or
    /// `no_services_available` when the primary tier was never tried.
    pub fn from_failures(failures: &[TierFailure]) -> Self {
        failures
            .iter()
            .rev()
            .find(|f| f.tier == TierKind::Primary)
            .map_or(Self::NoServicesAvailable, |f| f.error.reason())
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One provider's failure, as the chain recorded it.
///
/// Displayed as `tier/provider: cause`, for example `primary/pool: circuit open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierFailure {
    /// The tier the provider belongs to.
    pub tier: TierKind,
    /// The provider's name.
    pub provider: String,
    /// What went wrong.
    pub error: ProviderError,
    /// How long the attempt took (the timeout itself for a timeout).
    pub elapsed: Duration,
}

impl fmt::Display for TierFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}: {}", self.tier, self.provider, self.error)
    }
}

/// Every enabled tier was tried and none answered.
///
/// Keeps each cause in the order it happened and the tiers that were skipped because they
/// were disabled; the gateway answers 503 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllTiersFailed {
    /// Every provider failure, in the order the providers were tried.
    pub failures: Vec<TierFailure>,
    /// The tiers skipped because they were disabled, in chain order.
    pub disabled: Vec<TierKind>,
}

impl AllTiersFailed {
    /// The `fallback_reason` the primary tier's failure explains; see
    /// [`FallbackReason::from_failures`].
    pub fn fallback_reason(&self) -> FallbackReason {
        FallbackReason::from_failures(&self.failures)
    }

    /// The last failed attempt on any upstream, if a provider made one.
    pub fn last_attempt(&self) -> Option<&AttemptFailure> {
        self.failures.iter().rev().find_map(|f| f.error.attempt())
    }
}

impl fmt::Display for AllTiersFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("every fallback tier failed: ")?;
        if self.failures.is_empty() {
            f.write_str("no enabled tier had a provider")?;
        }
        for (i, failure) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        if !self.disabled.is_empty() {
            f.write_str(" (disabled: ")?;
            for (i, kind) in self.disabled.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(kind.as_str())?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for AllTiersFailed {}

/// Why [`FallbackChain::execute`](super::FallbackChain::execute) returned no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FallbackError {
    /// A provider found the request invalid; no later tier was tried. Maps to 400/422.
    #[error("request rejected by {}/{}: {}", .0.tier, .0.provider, .0.error)]
    Rejected(TierFailure),
    /// Nothing answered. Maps to 503 with `Retry-After`.
    #[error(transparent)]
    AllTiersFailed(#[from] AllTiersFailed),
}

impl FallbackError {
    /// Where the fault lies: the client for a rejection, upstream when every tier failed.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Rejected(_) => Fault::Client,
            Self::AllTiersFailed(_) => Fault::Upstream,
        }
    }

    /// Whether a later retry may succeed: never for a rejection, yes when every tier failed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::AllTiersFailed(_))
    }

    /// The refusal behind a rejection; `None` otherwise.
    pub fn refusal(&self) -> Option<&AttemptFailure> {
        match self {
            Self::Rejected(TierFailure {
                error: ProviderError::Client(failure),
                ..
            }) => Some(failure),
            Self::Rejected(_) | Self::AllTiersFailed(_) => None,
        }
    }

    /// The provider's explanation of a rejection, in its own words (for logs: an upstream's
    /// text may hold anything, so an HTTP edge answers with its own); `None` otherwise.
    pub fn client_message(&self) -> Option<&str> {
        self.refusal().map(|failure| failure.message.as_str())
    }

    /// The last failed attempt on any upstream, in the order the tiers were tried: what the
    /// client is told when nothing answered.
    pub fn last_attempt(&self) -> Option<&AttemptFailure> {
        match self {
            Self::Rejected(failure) => failure.error.attempt(),
            Self::AllTiersFailed(failed) => failed.last_attempt(),
        }
    }
}
