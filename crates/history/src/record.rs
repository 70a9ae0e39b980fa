//! What the binaries record: typed rows, one type per table.

use llm_api::breaker::{BreakerState, TransitionKind};
use llm_api::envelope::{FallbackReason, FallbackType};
use llm_api::history::HealthState;

/// One row for one table.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `circuit_breaker_metrics`.
    Breaker(BreakerRecord),
    /// `service_health_log`.
    Health(HealthRecord),
    /// `request_log`.
    Request(RequestRecord),
    /// `chaos_experiments`.
    Experiment(ExperimentRecord),
}

impl Record {
    /// The table it goes to (the `table` label of the writer's metrics).
    pub fn table(&self) -> &'static str {
        match self {
            Self::Breaker(_) => "circuit_breaker_metrics",
            Self::Health(_) => "service_health_log",
            Self::Request(_) => "request_log",
            Self::Experiment(_) => "chaos_experiments",
        }
    }
}

/// A circuit breaker changed state.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerRecord {
    /// `llm-service` (the pool breaker), `instance:<id>` or `endpoint:<id>`.
    pub service: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// Why.
    pub reason: TransitionKind,
    /// Failures the breaker counted (lifetime).
    pub failure_count: i64,
    /// Successes the breaker counted (lifetime).
    pub success_count: i64,
    /// Probe calls made while HALF_OPEN (lifetime).
    pub half_open_attempts: i64,
}

/// An instance's health: a change, or a periodic sample.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthRecord {
    /// The instance id.
    pub service: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Its status.
    pub status: HealthState,
    /// How long the deciding check took.
    pub response_time_ms: Option<i64>,
    /// What a failed check saw (never a secret: the checker's own words).
    pub error: Option<String>,
    /// A change of status (true) or a sample (false).
    pub change: bool,
}

/// One answer of the gateway. Never the prompt, nor the answer's text.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// The request id the client saw.
    pub request_id: String,
    /// Unix milliseconds when the answer started.
    pub at_ms: i64,
    /// `generate` or `chat_completions`.
    pub endpoint: &'static str,
    /// The model route that served it (a configured name, never raw client text).
    pub route: Option<String>,
    /// The model that answered.
    pub model: Option<String>,
    /// The instance, endpoint or `fallback_manager` that answered.
    pub served_by: Option<String>,
    /// `primary`, `secondary`, `cache` or `template`.
    pub tier: Option<&'static str>,
    /// The HTTP status.
    pub status_code: u16,
    /// The fallback tier, when one answered.
    pub fallback_type: Option<FallbackType>,
    /// Why the primary tier did not answer.
    pub fallback_reason: Option<FallbackReason>,
    /// Time to answer (a stream: to its first byte).
    pub response_time_ms: i64,
    /// Tokens of the answer, when known when it starts (not for streams).
    pub tokens_used: Option<i64>,
    /// The W3C trace id (32 hex digits).
    pub trace_id: Option<String>,
}

/// One chaos experiment, when it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentRecord {
    /// The experiment's own id.
    pub experiment_id: String,
    /// Its name (`errors`, `latency`…).
    pub name: String,
    /// The service it broke.
    pub target: String,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// Unix milliseconds.
    pub ended_at_ms: i64,
    /// `completed`, `aborted` or `failed`.
    pub outcome: String,
    /// The whole journal.
    pub journal: serde_json::Value,
}
