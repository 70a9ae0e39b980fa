//! The gateway's `POST /generate` success envelope: `{"data": {...}, "status": "success"}`.
//!
//! Its error envelope is [`crate::ErrorBody`] (`{"status": "error", "error": {...}}`).
//! Fields are declared in alphabetical order: the gateway wrote this body through
//! `serde_json::Value`, whose objects sort their keys, so the bytes stay the same.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A 200 answer of `/generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GenerateSuccess {
    /// The answer and how it was served.
    pub data: GenerateData,
    /// Always `success`.
    pub status: SuccessStatus,
}

impl GenerateSuccess {
    /// The envelope around `data`.
    pub fn new(data: GenerateData) -> Self {
        Self {
            data,
            status: SuccessStatus::Success,
        }
    }
}

/// The `status` of a [`GenerateSuccess`]: only `success` parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SuccessStatus {
    /// `success`.
    Success,
}

/// The `data` object of a [`GenerateSuccess`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GenerateData {
    /// Why the primary tier did not answer; `null` when it did.
    pub fallback_reason: Option<FallbackReason>,
    /// The fallback tier that answered; `null` when the primary tier did.
    pub fallback_type: Option<FallbackType>,
    /// Whether a tier other than the primary answered.
    pub fallback_used: bool,
    /// The model that answered.
    pub model_used: String,
    /// The request's id (the client's `x-request-id`, or one the gateway made).
    pub request_id: String,
    /// The generated text.
    pub response: String,
    /// Time spent in the gateway, in milliseconds.
    pub response_time_ms: u64,
    /// The answering instance's `SERVICE_ID`, or the fallback provider's name.
    pub served_by: String,
    /// Tokens in `response`.
    pub tokens_used: u32,
}

/// The fallback tier that answered: JSON `secondary`, `cache` or `template`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FallbackType {
    /// Backup upstreams: the route's other targets.
    Secondary,
    /// An earlier answer or a seeded one.
    Cache,
    /// A degraded answer built from the request alone.
    Template,
}

impl FallbackType {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secondary => "secondary",
            Self::Cache => "cache",
            Self::Template => "template",
        }
    }
}

/// Why the primary tier did not answer: JSON `circuit_open`, `no_services_available`,
/// `upstream_error` or `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// The primary pool's breaker was open.
    CircuitOpen,
    /// The primary tier had no instance.
    NoServicesAvailable,
    /// The primary upstream answered with an error.
    UpstreamError,
    /// The primary upstream did not answer in time.
    Timeout,
}

impl FallbackReason {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::NoServicesAvailable => "no_services_available",
            Self::UpstreamError => "upstream_error",
            Self::Timeout => "timeout",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> GenerateData {
        GenerateData {
            fallback_reason: None,
            fallback_type: None,
            fallback_used: false,
            model_used: "sim".into(),
            request_id: "req-1".into(),
            response: "an answer".into(),
            response_time_ms: 12,
            served_by: "llm_service_1".into(),
            tokens_used: 2,
        }
    }

    #[test]
    fn a_primary_answer_round_trips_with_null_fallback_fields() {
        let envelope = GenerateSuccess::new(data());
        let text = serde_json::to_string(&envelope).unwrap();
        assert_eq!(
            text,
            r#"{"data":{"fallback_reason":null,"fallback_type":null,"fallback_used":false,"model_used":"sim","request_id":"req-1","response":"an answer","response_time_ms":12,"served_by":"llm_service_1","tokens_used":2},"status":"success"}"#
        );
        assert_eq!(
            serde_json::from_str::<GenerateSuccess>(&text).unwrap(),
            envelope
        );
    }

    #[test]
    fn a_fallback_answer_names_its_tier_and_reason() {
        let envelope = GenerateSuccess::new(GenerateData {
            fallback_reason: Some(FallbackReason::NoServicesAvailable),
            fallback_type: Some(FallbackType::Cache),
            fallback_used: true,
            served_by: "fallback_manager".into(),
            ..data()
        });
        let value = serde_json::to_value(&envelope).unwrap();
        assert_eq!(value["data"]["fallback_type"], "cache");
        assert_eq!(value["data"]["fallback_reason"], "no_services_available");
        assert_eq!(
            serde_json::from_value::<GenerateSuccess>(value).unwrap(),
            envelope
        );
    }

    #[test]
    fn every_value_serialises_as_its_name() {
        for tier in [
            FallbackType::Secondary,
            FallbackType::Cache,
            FallbackType::Template,
        ] {
            assert_eq!(serde_json::to_value(tier).unwrap(), tier.as_str());
        }
        for reason in [
            FallbackReason::CircuitOpen,
            FallbackReason::NoServicesAvailable,
            FallbackReason::UpstreamError,
            FallbackReason::Timeout,
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }

    #[test]
    fn readers_ignore_unknown_fields_and_refuse_an_error_envelope() {
        let newer = r#"{"status":"success","extra":1,"data":{"fallback_reason":null,
            "fallback_type":null,"fallback_used":false,"model_used":"m","request_id":"r",
            "response":"x","response_time_ms":1,"served_by":"s","tokens_used":1,"new":true}}"#;
        assert!(serde_json::from_str::<GenerateSuccess>(newer).is_ok());
        let error = r#"{"status":"error","data":{}}"#;
        assert!(serde_json::from_str::<GenerateSuccess>(error).is_err());
    }
}
