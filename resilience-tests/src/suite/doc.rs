//! A JSON document the stack answered with, read through its `llm-api` type ([`Doc`]).
//!
//! The checks read the typed value; the raw body stays beside it for the few checks that
//! grade a body which is not the type field by field, or that accept other names for a
//! reading (each says so where it reads [`Doc::raw`]).

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::client::truncate;

/// An answer's HTTP status and JSON body, read as `T` when it is one.
#[derive(Debug, Clone)]
pub struct Doc<T> {
    /// The HTTP status.
    pub status: u16,
    /// The body as `T`, or why it is not one.
    pub parsed: Result<T, String>,
    /// The body as received.
    pub raw: Value,
}

impl<T: DeserializeOwned> Doc<T> {
    /// Reads `raw` as `T`.
    pub fn new(status: u16, raw: Value) -> Self {
        let parsed = T::deserialize(&raw).map_err(|error| error.to_string());
        Self {
            status,
            parsed,
            raw,
        }
    }
}

impl<T> Doc<T> {
    /// The typed body, if the body is one.
    pub fn get(&self) -> Option<&T> {
        self.parsed.as_ref().ok()
    }

    /// The typed body, or an error naming what does not fit and the start of the body;
    /// `what` names the document (`GET /health`).
    pub fn typed(&self, what: &str) -> anyhow::Result<&T> {
        self.parsed.as_ref().map_err(|error| {
            anyhow::anyhow!(
                "{what} answered HTTP {} with a body that is not its llm-api type ({error}): {}",
                self.status,
                truncate(&self.raw.to_string(), 160)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use llm_api::gateway::ResetAnswer;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_body_of_the_type_is_read_and_another_is_kept_with_the_reason() {
        let good: Doc<ResetAnswer> = Doc::new(200, json!({"message": "reset", "state": "CLOSED"}));
        assert_eq!(good.get().map(|a| a.message.as_str()), Some("reset"));
        assert!(good.typed("POST /reset").is_ok());

        let bad: Doc<ResetAnswer> = Doc::new(200, json!({"state": "SHUT"}));
        assert!(bad.get().is_none());
        assert_eq!(bad.raw["state"], "SHUT", "the raw body is kept");
        let error = format!("{:#}", bad.typed("POST /reset").unwrap_err());
        assert!(
            error.starts_with("POST /reset answered HTTP 200 with a body that is not")
                && error.contains("SHUT")
                && error.ends_with(r#"{"state":"SHUT"}"#),
            "{error}"
        );
    }
}
