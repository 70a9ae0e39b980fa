//! The error body of the lab's endpoints: `{"status": "error", "error": {type, message, field}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One invalid field of a request: which, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field's path in the body (`prompt`, `messages[0].content`), or `body` when the
    /// body as a whole is unreadable.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// `{"status": "error", "error": {...}, "request_id"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Always `"error"`.
    pub status: String,
    /// What went wrong.
    pub error: ErrorDetail,
    /// The request's id, when the server assigns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The `error` object of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A machine-readable kind: `validation_error`, `invalid_json`, `unsupported_media_type`,
    /// `upstream_error`…
    #[serde(rename = "type")]
    pub kind: String,
    /// For a person.
    pub message: String,
    /// The offending field, when one is to blame.
    #[serde(default)]
    pub field: Option<String>,
}

impl ErrorBody {
    /// An error of `kind` with `message`, blaming `field` if given.
    pub fn new(kind: impl Into<String>, message: impl Into<String>, field: Option<String>) -> Self {
        Self {
            status: "error".to_owned(),
            error: ErrorDetail {
                kind: kind.into(),
                message: message.into(),
                field,
            },
            request_id: None,
        }
    }

    /// A validation error from a [`FieldError`].
    pub fn validation(error: &FieldError) -> Self {
        Self::new(
            "validation_error",
            error.to_string(),
            Some(error.field.clone()),
        )
    }
}
