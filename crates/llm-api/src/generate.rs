//! The lab's `POST /generate`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::FieldError;

/// The request body: `{"prompt", "max_tokens"?, "temperature"?, "model"?, "user_id"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GenerateRequest {
    /// The text to answer; must not be blank.
    #[schema(min_length = 1)]
    pub prompt: String,
    /// Upper bound of tokens in the answer; 1 ≤ n ≤ the server's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 ≤ t ≤ 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// The model asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The caller's user, for rate limits and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// The answer's token budget when the request names none, as in the lab.
pub const DEFAULT_MAX_TOKENS: u32 = 150;

impl GenerateRequest {
    /// A request for `prompt` with every option unset.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            max_tokens: None,
            temperature: None,
            model: None,
            user_id: None,
        }
    }

    /// Checks the values (the types were checked by parsing) under the default
    /// [`InputLimits`](crate::limits::InputLimits) with `max_tokens_limit` as the server's
    /// `MAX_TOKENS`.
    pub fn validate(&self, max_tokens_limit: u32) -> Result<(), FieldError> {
        self.validate_within(&crate::limits::InputLimits::with_max_tokens(
            max_tokens_limit,
        ))
    }

    /// The token budget: `max_tokens`, or [`DEFAULT_MAX_TOKENS`] capped by `limit`.
    pub fn token_budget(&self, limit: u32) -> u32 {
        self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS.min(limit))
    }
}

/// llm-service's flat answer (no envelope): `response` with `text` as its alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GenerateResponse {
    /// The generated text.
    pub response: String,
    /// The same text, under the lab's older name.
    pub text: String,
    /// Tokens in `response`; never above the request's `max_tokens`.
    pub tokens_used: u32,
    /// The model that answered (the service's `MODEL_NAME`).
    pub model_used: String,
    /// Time spent answering, in milliseconds.
    pub processing_time_ms: u64,
    /// The answering instance's `SERVICE_ID`.
    pub service_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let limit = 4096;
        assert!(GenerateRequest::new("hi").validate(limit).is_ok());
        assert_eq!(
            GenerateRequest::new("  ")
                .validate(limit)
                .unwrap_err()
                .field,
            "prompt"
        );
        for bad in [0, 4097] {
            let req = GenerateRequest {
                max_tokens: Some(bad),
                ..GenerateRequest::new("hi")
            };
            assert_eq!(req.validate(limit).unwrap_err().field, "max_tokens");
        }
        let hot = GenerateRequest {
            temperature: Some(2.5),
            ..GenerateRequest::new("hi")
        };
        assert_eq!(hot.validate(limit).unwrap_err().field, "temperature");
    }

    #[test]
    fn budget_defaults_to_150_capped_by_the_limit() {
        assert_eq!(GenerateRequest::new("hi").token_budget(4096), 150);
        assert_eq!(GenerateRequest::new("hi").token_budget(100), 100);
        let asked = GenerateRequest {
            max_tokens: Some(7),
            ..GenerateRequest::new("hi")
        };
        assert_eq!(asked.token_budget(4096), 7);
    }

    #[test]
    fn negative_max_tokens_does_not_parse() {
        let parsed: Result<GenerateRequest, _> =
            serde_json::from_str(r#"{"prompt": "", "max_tokens": -1}"#);
        assert!(parsed.is_err());
    }
}
