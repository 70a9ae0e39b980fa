//! [`UpstreamError`], why one call to an upstream failed, and its classification: the one
//! place an upstream's failure is judged retryable, the instance's fault or the client's.
//! Also how a reqwest failure or a non-2xx answer becomes one.

use std::error::Error as _;
use std::time::Duration;

use llm_api::openai::OpenAiError;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use resilience_core::policy::{AttemptFailure, FailureClass};
use serde::Deserialize;

use super::redact::redact;

/// How much of an error body is read to find its message.
const ERROR_BODY_LIMIT: usize = 8 * 1024;

/// Why one call to an upstream instance failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The connection could not be made, or broke before a full answer arrived.
    #[error("connection failed: {0}")]
    Connect(String),
    /// No full answer within the call's timeout.
    #[error("timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The upstream answered with a 4xx or 5xx status.
    #[error("HTTP {status}: {message}")]
    Status {
        /// The status code (400..=599).
        status: u16,
        /// The `Retry-After` header, when it held a number of seconds.
        retry_after: Option<Duration>,
        /// The upstream's error message (OpenAI or lab shape), or the start of its body,
        /// with secrets masked ([`redact`]): for logs, never for the client.
        message: String,
        /// OpenAI's `error.code` (`context_length_exceeded`, `content_filter`…), if given as
        /// a short identifier (`[a-z0-9_.-]`, at most 64 bytes).
        code: Option<String>,
        /// OpenAI's `error.type` (`invalid_request_error`…), if given as a short identifier.
        kind: Option<String>,
    },
    /// A 2xx whose body is not a generate answer, or a status that is neither 2xx, 4xx nor
    /// 5xx.
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// The lab's error shape, `{"status": "error", "error": {"message", ...}}`, or a bare
/// `{"message": ...}` / `{"detail": ...}`.
#[derive(Deserialize)]
struct OtherErrorBody {
    #[serde(default)]
    error: Option<MessageOnly>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Deserialize)]
struct MessageOnly {
    message: String,
}

impl UpstreamError {
    /// What kind of failure this is: the one place an upstream's error is classified.
    /// Connection failures, timeouts, 5xx, 408 (the upstream gave up waiting), 429 and
    /// malformed answers are the upstream's; 401/403/404/405 say the instance is
    /// misconfigured or not the service we think (its fault, not the request's); every
    /// other 4xx refuses the request itself — by its OpenAI `error.code`, a prompt too long
    /// for the context, refused content, or another refusal.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Connect(_) => FailureClass::Transport,
            Self::Timeout(_) => FailureClass::Timeout,
            Self::Malformed(_) => FailureClass::Malformed,
            Self::Status { status, code, .. } => match status {
                429 => FailureClass::RateLimited,
                408 => FailureClass::ServerError,
                401 | 403 | 404 | 405 => FailureClass::Misconfigured,
                400..=499 => match code.as_deref() {
                    Some("context_length_exceeded") => FailureClass::ContextTooLong,
                    Some("content_filter" | "content_policy_violation" | "content_policy") => {
                        FailureClass::ContentRefused
                    }
                    _ => FailureClass::Refused,
                },
                _ => FailureClass::ServerError,
            },
        }
    }

    /// The failure as a value, on `target`.
    pub fn failure(&self, target: &str) -> AttemptFailure {
        let (status, retry_after, message, code, kind) = match self {
            Self::Status {
                status,
                retry_after,
                message,
                code,
                kind,
            } => (
                Some(*status),
                *retry_after,
                message.clone(),
                code.clone(),
                kind.clone(),
            ),
            other => (None, None, other.to_string(), None, None),
        };
        AttemptFailure {
            target: target.to_owned(),
            class: self.class(),
            status,
            code,
            kind,
            message,
            detail: self.to_string(),
            retry_after,
            timeout: match self {
                Self::Timeout(after) => Some(*after),
                _ => None,
            },
        }
    }

    /// The metrics label: `connect`, `timeout`, `http_5xx`, `http_429`, `http_4xx` or
    /// `malformed`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Timeout(_) => "timeout",
            Self::Status { status: 429, .. } => "http_429",
            Self::Status { status, .. } if (400..500).contains(status) => "http_4xx",
            Self::Status { .. } => "http_5xx",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// A reqwest failure as an [`UpstreamError`]; `timeout` is the bound the call ran under.
pub(super) fn classify(error: &reqwest::Error, timeout: Duration) -> UpstreamError {
    if error.is_timeout() {
        UpstreamError::Timeout(timeout)
    } else if error.is_decode() {
        UpstreamError::Malformed(chain(error))
    } else {
        UpstreamError::Connect(chain(error))
    }
}

/// The error and its causes, `: `-separated (reqwest's own message names only the URL),
/// with secrets masked (a URL may carry credentials).
pub(super) fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    redact(&text)
}

/// The error for a non-2xx answer, with its message and `Retry-After`.
pub(super) async fn status_error(
    mut response: reqwest::Response,
    timeout: Duration,
) -> UpstreamError {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_LIMIT.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= ERROR_BODY_LIMIT {
                    break;
                }
            }
            Ok(None) => break,
            // The status already says what happened; a broken error body only loses the
            // message, unless it was the clock that broke it.
            Err(e) if e.is_timeout() => return UpstreamError::Timeout(timeout),
            Err(_) => break,
        }
    }
    let code = status.as_u16();
    if !(400..600).contains(&code) {
        return UpstreamError::Malformed(format!("unexpected status {code}"));
    }
    let said = error_message(&body).unwrap_or_else(|| Said {
        message: status.canonical_reason().unwrap_or("error").to_owned(),
        code: None,
        kind: None,
    });
    UpstreamError::Status {
        status: code,
        retry_after,
        message: redact(&said.message),
        code: said.code,
        kind: said.kind,
    }
}

/// What an error body said: its message (as written), and OpenAI's `error.code` and
/// `error.type` when they are [`identifier`]s.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Said {
    pub(super) message: String,
    pub(super) code: Option<String>,
    pub(super) kind: Option<String>,
}

/// The longest `error.code` or `error.type` passed on.
const IDENTIFIER_LIMIT: usize = 64;

/// `value` when it is a short identifier (`[a-z0-9_.-]`, at most [`IDENTIFIER_LIMIT`]
/// bytes), the only upstream words a client may see; anything else is dropped.
pub(super) fn identifier(value: Option<String>) -> Option<String> {
    value.filter(|v| {
        !v.is_empty()
            && v.len() <= IDENTIFIER_LIMIT
            && v.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            })
    })
}

/// What an error body said: OpenAI's `error.message`, `error.code` and `error.type`, the
/// lab's `error.message`, a top-level `message` or `detail`, else the body's first line of
/// text.
pub(super) fn error_message(body: &[u8]) -> Option<Said> {
    if let Ok(openai) = serde_json::from_slice::<OpenAiError>(body) {
        return Some(Said {
            message: openai.error.message,
            code: identifier(openai.error.code),
            kind: identifier(Some(openai.error.kind)),
        });
    }
    if let Ok(other) = serde_json::from_slice::<OtherErrorBody>(body)
        && let Some(message) = other
            .error
            .map(|e| e.message)
            .or(other.message)
            .or(other.detail)
    {
        return Some(Said {
            message,
            code: None,
            kind: None,
        });
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(Said {
        message: line.chars().take(200).collect(),
        code: None,
        kind: None,
    })
}

/// `Retry-After` as a number of seconds (an HTTP date is not honoured).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}
