//! The crate's error type, classified by where the fault lies and whether a retry can help.

/// Where the fault behind an error lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// A dependency (an LLM backend, Redis, a database) failed.
    Upstream,
    /// The caller asked for something invalid; never counts against a breaker.
    Client,
    /// A bug or misconfiguration in this process.
    Internal,
}

/// Errors raised by `resilience-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range or inconsistent; names the setting.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidConfig {
        /// The setting's name, as the operator writes it.
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis answered with an error or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A registry entry could not be encoded or decoded.
    #[error("registry entry `{key}` is malformed: {reason}")]
    MalformedEntry {
        /// The Redis key (or other locator) of the entry.
        key: String,
        /// Why it could not be read.
        reason: String,
    },
    /// An operation did not finish within its time limit.
    #[error("{what} timed out after {after_ms} ms")]
    Timeout {
        /// What timed out.
        what: String,
        /// The limit, in milliseconds.
        after_ms: u64,
    },
    /// The operation is not offered by this backend (e.g. registering in a static list).
    #[error("{what} is not supported")]
    Unsupported {
        /// What was attempted, and on what.
        what: String,
    },
}

impl Error {
    /// Shorthand for [`Error::InvalidConfig`].
    pub fn invalid_config(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            setting: setting.into(),
            reason: reason.into(),
        }
    }

    /// Where the fault lies.
    pub fn fault(&self) -> Fault {
        match self {
            Self::InvalidConfig { .. } | Self::Unsupported { .. } => Fault::Internal,
            Self::Redis(_) | Self::MalformedEntry { .. } | Self::Timeout { .. } => Fault::Upstream,
        }
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Redis(e) => e.is_io_error() || e.is_timeout() || e.is_connection_dropped(),
            Self::Timeout { .. } => true,
            Self::InvalidConfig { .. } | Self::MalformedEntry { .. } | Self::Unsupported { .. } => {
                false
            }
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
