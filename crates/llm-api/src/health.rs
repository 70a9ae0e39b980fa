//! llm-service's `/health` body. `overall_status` is the field every check reads; HTTP 200
//! when healthy or degraded, 503 when unhealthy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `GET /health` of an llm-service instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServiceHealth {
    /// `healthy`, `degraded` or `unhealthy`.
    pub overall_status: String,
    /// The instance's `SERVICE_ID`.
    pub service_id: String,
    /// The model it serves.
    pub model: String,
    /// Its `SERVICE_VERSION`.
    pub version: String,
    /// `primary` or `secondary`.
    pub tier: String,
    /// Seconds since it started.
    pub uptime_s: f64,
    /// Requests being answered now.
    pub in_flight: u64,
    /// Kinds of the active faults (`error`, `latency`…).
    pub active_faults: Vec<String>,
    /// Its registration in the service registry.
    pub registration: RegistrationHealth,
    /// Each check: `status`, `critical`, `message`, `details`, `duration_ms`.
    pub checks: BTreeMap<String, Value>,
    /// Unix milliseconds of this report.
    pub timestamp_ms: u64,
}

/// The registration part of [`ServiceHealth`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegistrationHealth {
    /// `redis` when registering, `none` when no `REDIS_URL` is set.
    pub backend: String,
    /// Whether the entry is known to be in the registry.
    pub registered: bool,
    /// The last error, if the last attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
}
