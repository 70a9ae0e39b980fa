//! Why the shared rate-limit store gave no decision.

use std::time::Duration;

/// A failed check against the shared store; the caller applies its failure mode.
///
/// Messages never carry the Redis URL or its password, nor the key checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The store did not answer within the operation timeout.
    #[error("rate-limit store did not answer within {after_ms} ms")]
    Timeout {
        /// The operation timeout, in milliseconds.
        after_ms: u64,
    },
    /// The store answered with an error, an unexpected reply, or could not be reached.
    #[error("rate-limit store: {0}")]
    Redis(String),
}

impl LimitError {
    /// The timeout error for a limit of `after`.
    pub(crate) fn timeout(after: Duration) -> Self {
        Self::Timeout {
            after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl From<redis::RedisError> for LimitError {
    /// Keeps the error's kind and description, with anything shaped like a URL masked.
    fn from(error: redis::RedisError) -> Self {
        Self::Redis(mask_urls(&error.to_string()))
    }
}

/// `text` with every word containing `://` (a URL, which may carry a password) masked.
fn mask_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| if word.contains("://") { "<url>" } else { word })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_redis_errors_are_masked() {
        let error = redis::RedisError::from((
            redis::ErrorKind::Io,
            "connect failed",
            "redis://user:hunter2@cache:6379/0 refused".to_owned(),
        ));
        let message = LimitError::from(error).to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("<url> refused"), "{message}");
    }

    #[test]
    fn timeouts_say_how_long() {
        let message = LimitError::timeout(Duration::from_millis(250)).to_string();
        assert!(message.contains("250 ms"), "{message}");
    }
}
