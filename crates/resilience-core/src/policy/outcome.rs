//! What one attempt came to, classified once: [`FailureClass`] says what kind of failure it
//! was, [`AttemptFailure`] carries it with what the upstream said, as a value the plan
//! consumes and the final error carries to the client's answer.

use std::fmt;
use std::time::Duration;

use crate::breaker::Outcome;

/// The kind of a failed attempt. The caller classifies its transport's errors into these
/// once (the gateway: `UpstreamError::classify`); every decision reads the class, never
/// the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// No connection, or it broke before a full answer: retryable.
    Transport,
    /// No answer (for a stream: no first token) within the attempt's limit: retryable on
    /// another target, never on the same one within the request.
    Timeout,
    /// The upstream answered 5xx, or with a 408 (it gave up waiting): retryable.
    ServerError,
    /// The upstream answered 429: overloaded; retryable, honouring its `Retry-After`.
    RateLimited,
    /// 401, 403, 404 or 405: the target is misconfigured or not what we think. A fault of
    /// the target, not of the request: retryable elsewhere.
    Misconfigured,
    /// A 2xx whose body is not an answer: retryable.
    Malformed,
    /// The prompt does not fit the model's context (`context_length_exceeded`): no target
    /// of the same model can take it; a route with a larger context may.
    ContextTooLong,
    /// The provider refused the content itself: every target would refuse it again.
    ContentRefused,
    /// Any other 4xx: the request was refused. It may be particular to one target (a
    /// smaller `MAX_TOKENS`), so an untried target may still take it.
    Refused,
}

impl FailureClass {
    /// Every class.
    pub const ALL: [Self; 9] = [
        Self::Transport,
        Self::Timeout,
        Self::ServerError,
        Self::RateLimited,
        Self::Misconfigured,
        Self::Malformed,
        Self::ContextTooLong,
        Self::ContentRefused,
        Self::Refused,
    ];

    /// Whether the request itself was refused: the class says nothing about the target's
    /// health, moves no breaker, and ends as the client's error when no target takes it.
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            Self::Refused | Self::ContextTooLong | Self::ContentRefused
        )
    }

    /// Whether the same request may be sent again (to another target, or later).
    pub fn is_retryable(self) -> bool {
        !self.is_refusal()
    }

    /// Whether a refusal fails the same way on every target of the model, so no other
    /// target is asked.
    pub fn is_final_refusal(self) -> bool {
        matches!(self, Self::ContextTooLong | Self::ContentRefused)
    }

    /// How the attempt counts for the target's breaker.
    pub fn breaker_outcome(self) -> Outcome {
        if self.is_refusal() {
            Outcome::Ignored
        } else {
            Outcome::Failure
        }
    }

    /// A refusal says the target is up and answering; anything else, that it is not: the
    /// passive health signal of the attempt.
    pub fn says_target_healthy(self) -> bool {
        self.is_refusal()
    }

    /// The snake_case name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transport => "transport",
            Self::Timeout => "timeout",
            Self::ServerError => "server_error",
            Self::RateLimited => "rate_limited",
            Self::Misconfigured => "misconfigured",
            Self::Malformed => "malformed",
            Self::ContextTooLong => "context_too_long",
            Self::ContentRefused => "content_refused",
            Self::Refused => "refused",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed attempt on one target, as a value: what the plan decides on, what the final
/// error carries, what the client's error answer is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFailure {
    /// The target tried (instance id or endpoint id).
    pub target: String,
    /// What kind of failure it was.
    pub class: FailureClass,
    /// The HTTP status the upstream answered with, if it answered with an error status.
    pub status: Option<u16>,
    /// The provider's error code (OpenAI's `error.code`), if it gave one.
    pub code: Option<String>,
    /// The provider's error type (OpenAI's `error.type`), if it gave one.
    pub kind: Option<String>,
    /// The upstream's own words for a status; otherwise what went wrong.
    pub message: String,
    /// The whole description (`HTTP 503: …`, `timed out after 200 ms`), for logs.
    pub detail: String,
    /// The wait the upstream asked for (`Retry-After`), if any.
    pub retry_after: Option<Duration>,
    /// For a timeout, the limit that ran out.
    pub timeout: Option<Duration>,
}

impl AttemptFailure {
    /// A failure of `class` on `target` with `message` as both its message and detail, and
    /// no status, code or `Retry-After` (for sources that are not HTTP upstreams).
    pub fn new(target: impl Into<String>, class: FailureClass, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            target: target.into(),
            class,
            status: None,
            code: None,
            kind: None,
            detail: message.clone(),
            message,
            retry_after: None,
            timeout: None,
        }
    }
}

impl fmt::Display for AttemptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.detail)
    }
}
