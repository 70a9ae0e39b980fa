//! A server-sent event as the OpenAPI documents describe one: what each event of a
//! `text/event-stream` answer is (a streamed chat completion), for contract tests to check.
//! Nothing parses or writes this type; the services write their events with axum's `Event`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One event of a streamed chat completion: `data:` is a
/// [`ChatCompletionChunk`](crate::openai::ChatCompletionChunk) as JSON, then `[DONE]`; a
/// stream that broke ends with an [`OpenAiError`](crate::openai::OpenAiError) instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerSentEvent {
    /// The event's data: a JSON chunk, an error object, or `[DONE]`.
    pub data: String,
    /// The event's type, when not `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The event's id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The reconnection time asked for, in milliseconds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u64>,
}
