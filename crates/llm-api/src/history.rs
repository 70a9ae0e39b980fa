//! The gateway's history as `GET /admin/history` answers it: breaker transitions and health
//! changes, oldest first, read back from the history database.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::breaker::{BreakerState, TransitionKind};

/// An instance's health as the history records it: JSON `healthy`, `degraded`,
/// `unhealthy` or `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Passing its checks.
    Healthy,
    /// Answering, but not well (used by samples of a whole service).
    Degraded,
    /// Failing its checks.
    Unhealthy,
    /// No result yet.
    Unknown,
}

impl HealthState {
    /// The JSON name, also the value stored in `service_health_log.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
            Self::Unknown => "unknown",
        }
    }

    /// The state a stored `status` names; `unknown` for anything else.
    pub fn parse(stored: &str) -> Self {
        match stored {
            "healthy" => Self::Healthy,
            "degraded" => Self::Degraded,
            "unhealthy" => Self::Unhealthy,
            _ => Self::Unknown,
        }
    }
}

/// One event of the history: JSON `kind` is `breaker` or `health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryEntry {
    /// A circuit breaker changed state.
    Breaker {
        /// Unix milliseconds.
        at_ms: i64,
        /// `llm-service` (the pool breaker), `instance:<id>` or `endpoint:<id>`.
        service: String,
        /// The state entered.
        state: BreakerState,
        /// The state left (absent in rows written by other tools).
        from: Option<BreakerState>,
        /// Why (absent in rows written by other tools).
        reason: Option<TransitionKind>,
        /// Failures counted by the breaker when it moved.
        failure_count: i64,
        /// Successes counted by the breaker when it moved.
        success_count: i64,
        /// Probe calls made while HALF_OPEN.
        half_open_attempts: i64,
    },
    /// An instance's health changed.
    Health {
        /// Unix milliseconds.
        at_ms: i64,
        /// The instance id.
        service: String,
        /// The status entered.
        status: HealthState,
        /// The duration of the check that decided, in milliseconds.
        response_time_ms: Option<i64>,
        /// What the check saw, when it failed.
        error: Option<String>,
    },
}

impl HistoryEntry {
    /// When it happened, in Unix milliseconds.
    pub fn at_ms(&self) -> i64 {
        match self {
            Self::Breaker { at_ms, .. } | Self::Health { at_ms, .. } => *at_ms,
        }
    }

    /// The breaker or instance it is about.
    pub fn service(&self) -> &str {
        match self {
            Self::Breaker { service, .. } | Self::Health { service, .. } => service,
        }
    }
}

/// The answer of `GET /admin/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// Oldest first; the latest `limit` entries that match.
    pub entries: Vec<HistoryEntry>,
    /// Where they were read: `postgres` or `sqlite`.
    pub database: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_tagged_by_kind() -> Result<(), serde_json::Error> {
        let opened = HistoryEntry::Breaker {
            at_ms: 1_700_000_000_000,
            service: "instance:a".into(),
            state: BreakerState::Open,
            from: Some(BreakerState::Closed),
            reason: Some(TransitionKind::ConsecutiveFailures),
            failure_count: 5,
            success_count: 0,
            half_open_attempts: 0,
        };
        let json = serde_json::to_value(&opened)?;
        assert_eq!(json["kind"], "breaker");
        assert_eq!(json["state"], "OPEN");
        assert_eq!(json["reason"], "consecutive_failures");
        assert_eq!(serde_json::from_value::<HistoryEntry>(json)?, opened);
        let sick = HistoryEntry::Health {
            at_ms: 1,
            service: "llm_service_1".into(),
            status: HealthState::Unhealthy,
            response_time_ms: Some(3),
            error: Some("connection refused".into()),
        };
        let json = serde_json::to_value(&sick)?;
        assert_eq!(json["kind"], "health");
        assert_eq!(json["status"], "unhealthy");
        assert_eq!(sick.service(), "llm_service_1");
        assert_eq!(sick.at_ms(), 1);
        Ok(())
    }

    #[test]
    fn stored_statuses_parse_and_unknown_ones_are_unknown() {
        for state in [
            HealthState::Healthy,
            HealthState::Degraded,
            HealthState::Unhealthy,
            HealthState::Unknown,
        ] {
            assert_eq!(HealthState::parse(state.as_str()), state);
        }
        assert_eq!(HealthState::parse("weird"), HealthState::Unknown);
    }
}
