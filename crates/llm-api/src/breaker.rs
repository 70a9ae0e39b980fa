//! A circuit breaker as the gateway's `/health`, `/metrics` and `/admin/*` show it.
//!
//! These mirror the gateway's breaker snapshots field for field (the gateway converts
//! them), so readers need no resilience library. Fields are declared in alphabetical
//! order: the gateway wrote these objects through `serde_json::Value`, whose objects sort
//! their keys, so the bytes stay the same.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A breaker's state: JSON `CLOSED`, `OPEN` or `HALF_OPEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are rejected without being made.
    Open,
    /// A few probe calls decide whether to close or re-open.
    HalfOpen,
}

impl BreakerState {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "CLOSED",
            Self::Open => "OPEN",
            Self::HalfOpen => "HALF_OPEN",
        }
    }

    /// The state a stored name (`CLOSED`, `OPEN`, `HALF_OPEN`) names.
    pub fn parse(stored: &str) -> Option<Self> {
        [Self::Closed, Self::Open, Self::HalfOpen]
            .into_iter()
            .find(|state| state.as_str() == stored)
    }
}

/// One breaker at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BreakerView {
    /// Failures in a row while CLOSED.
    pub consecutive_failures: u32,
    /// Lifetime counters.
    pub counters: BreakerCounters,
    /// Open until an operator resets it.
    pub forced_open: bool,
    /// Calls in flight that the breaker tracks.
    pub in_flight: u32,
    /// The breaker's name (`llm-service` for the pool breaker, else the instance id).
    pub name: String,
    /// Re-openings from HALF_OPEN since it last closed.
    pub reopens: u32,
    /// Milliseconds until probes are let through, when OPEN on a timer; else `null`.
    pub retry_after_ms: Option<u64>,
    /// The state.
    pub state: BreakerState,
    /// The rolling window.
    pub window: BreakerWindow,
}

/// A breaker's lifetime counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BreakerCounters {
    /// Calls that finished with a failure.
    pub failures: u64,
    /// Calls that finished and were ignored (client errors).
    pub ignored: u64,
    /// Calls rejected by the bulkhead.
    pub rejected_bulkhead: u64,
    /// Calls rejected because the breaker was open.
    pub rejected_open: u64,
    /// Calls rejected because the HALF_OPEN probe slots were taken.
    pub rejected_probe_limit: u64,
    /// Finished calls that were slow.
    pub slow: u64,
    /// Calls that finished with a success.
    pub successes: u64,
    /// Transitions so far.
    pub transitions: u64,
}

/// Calls, failures and slow calls in a breaker's rolling window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BreakerWindow {
    /// Counted calls in the window.
    pub calls: u32,
    /// failures / calls (0 with no calls).
    pub failure_rate: f64,
    /// Failures in the window.
    pub failures: u32,
    /// Slow calls in the window.
    pub slow: u32,
    /// slow / calls (0 with no calls).
    pub slow_call_rate: f64,
}

/// One transition of a breaker, as `/admin/status` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TransitionView {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// `llm-service` (the pool breaker) or `instance:<id>`.
    pub breaker: String,
    /// The state left.
    pub from: BreakerState,
    /// Why.
    pub reason: TransitionReason,
    /// The state entered.
    pub to: BreakerState,
}

/// Why a breaker moved: `kind`, with `count` or `rate` when the kind has one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TransitionReason {
    /// Failures in a row (`consecutive_failures`) or successful probes
    /// (`probes_succeeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// What happened.
    pub kind: TransitionKind,
    /// The window's rate, 0..=1 (`failure_rate`, `slow_call_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

/// The kinds of [`TransitionReason`], in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// Consecutive failures reached the threshold (with `count`).
    ConsecutiveFailures,
    /// The window's failure rate reached the threshold (with `rate`).
    FailureRate,
    /// The window's slow-call rate reached the threshold (with `rate`).
    SlowCallRate,
    /// The OPEN period ended.
    RecoveryTimeoutElapsed,
    /// A HALF_OPEN probe failed.
    ProbeFailed,
    /// Enough HALF_OPEN probes succeeded (with `count`).
    ProbesSucceeded,
    /// An operator reset the breaker.
    ManualReset,
    /// An operator forced the breaker open.
    ForcedOpen,
}

impl TransitionKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 8] = [
        Self::ConsecutiveFailures,
        Self::FailureRate,
        Self::SlowCallRate,
        Self::RecoveryTimeoutElapsed,
        Self::ProbeFailed,
        Self::ProbesSucceeded,
        Self::ManualReset,
        Self::ForcedOpen,
    ];

    /// The JSON name, also what the history database stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::FailureRate => "failure_rate",
            Self::SlowCallRate => "slow_call_rate",
            Self::RecoveryTimeoutElapsed => "recovery_timeout_elapsed",
            Self::ProbeFailed => "probe_failed",
            Self::ProbesSucceeded => "probes_succeeded",
            Self::ManualReset => "manual_reset",
            Self::ForcedOpen => "forced_open",
        }
    }

    /// The kind a stored name names.
    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == stored)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn stored_names_are_the_json_names_and_parse_back() -> Result<(), serde_json::Error> {
        for kind in TransitionKind::ALL {
            assert_eq!(serde_json::to_value(kind)?, kind.as_str());
            assert_eq!(TransitionKind::parse(kind.as_str()), Some(kind));
        }
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            assert_eq!(serde_json::to_value(state)?, state.as_str());
            assert_eq!(BreakerState::parse(state.as_str()), Some(state));
        }
        assert_eq!(TransitionKind::parse("nope"), None);
        assert_eq!(BreakerState::parse("open"), None);
        Ok(())
    }

    /// A closed breaker with a few calls, and its JSON.
    pub(crate) fn closed() -> (BreakerView, &'static str) {
        let view = BreakerView {
            consecutive_failures: 1,
            counters: BreakerCounters {
                failures: 1,
                successes: 3,
                transitions: 2,
                ..BreakerCounters::default()
            },
            forced_open: false,
            in_flight: 0,
            name: "llm-service".into(),
            reopens: 0,
            retry_after_ms: None,
            state: BreakerState::Closed,
            window: BreakerWindow {
                calls: 4,
                failure_rate: 0.25,
                failures: 1,
                slow: 0,
                slow_call_rate: 0.0,
            },
        };
        let json = concat!(
            r#"{"consecutive_failures":1,"counters":{"failures":1,"ignored":0,"#,
            r#""rejected_bulkhead":0,"rejected_open":0,"rejected_probe_limit":0,"slow":0,"#,
            r#""successes":3,"transitions":2},"forced_open":false,"in_flight":0,"#,
            r#""name":"llm-service","reopens":0,"retry_after_ms":null,"state":"CLOSED","#,
            r#""window":{"calls":4,"failure_rate":0.25,"failures":1,"slow":0,"#,
            r#""slow_call_rate":0.0}}"#
        );
        (view, json)
    }

    #[test]
    fn a_snapshot_round_trips() {
        let (view, json) = closed();
        assert_eq!(serde_json::to_string(&view).unwrap(), json);
        assert_eq!(serde_json::from_str::<BreakerView>(json).unwrap(), view);
    }

    #[test]
    fn states_serialise_in_capitals() {
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }

    #[test]
    fn a_transition_carries_only_the_reading_its_kind_has() {
        let opened = TransitionView {
            at_ms: 1_700_000_000_000,
            breaker: "instance:a".into(),
            from: BreakerState::Closed,
            reason: TransitionReason {
                count: Some(5),
                kind: TransitionKind::ConsecutiveFailures,
                rate: None,
            },
            to: BreakerState::Open,
        };
        let json = concat!(
            r#"{"at_ms":1700000000000,"breaker":"instance:a","from":"CLOSED","#,
            r#""reason":{"count":5,"kind":"consecutive_failures"},"to":"OPEN"}"#
        );
        assert_eq!(serde_json::to_string(&opened).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<TransitionView>(json).unwrap(),
            opened
        );

        let reset = r#"{"kind":"manual_reset"}"#;
        let reason: TransitionReason = serde_json::from_str(reset).unwrap();
        assert_eq!(
            (reason.kind, reason.count),
            (TransitionKind::ManualReset, None)
        );
        assert_eq!(serde_json::to_string(&reason).unwrap(), reset);
        let rate = r#"{"kind":"failure_rate","rate":0.5}"#;
        let reason: TransitionReason = serde_json::from_str(rate).unwrap();
        assert_eq!(serde_json::to_string(&reason).unwrap(), rate);
    }
}
