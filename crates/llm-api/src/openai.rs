//! OpenAI-compatible chat completions: request, answer, stream chunks, models and errors.
//!
//! Request types keep unknown fields in `extra` (flattened), so a gateway forwards `top_p`,
//! `stop`, `tools`, … untouched. Answer types follow OpenAI's field names and `object`
//! strings so that the official SDKs parse them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::FieldError;

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// The model asked for: at most 256 of `A–Z a–z 0–9 . _ : / @ -`.
    #[schema(min_length = 1, max_length = 256, pattern = r"^[A-Za-z0-9._:/@-]+$")]
    pub model: String,
    /// The conversation; at least one message.
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    /// Answer as server-sent events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Upper bound of tokens in the answer (legacy name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    /// Upper bound of tokens in the answer (current name; wins over `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, 0 ≤ t ≤ 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// Stream options; `include_usage` adds a usage chunk before `[DONE]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a final chunk with `usage` and no choices.
    #[serde(default)]
    pub include_usage: bool,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, `developer`.
    #[schema(pattern = "^(system|developer|user|assistant|tool)$")]
    pub role: String,
    /// A string, an array of content parts, or null.
    #[serde(default)]
    pub content: Value,
    /// Every other field (`name`, `tool_calls`, …), kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatMessage {
    /// A message with string content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: Value::String(content.into()),
            extra: Map::new(),
        }
    }

    /// The message's text: the string, or the `text` of its text parts joined by spaces.
    pub fn text(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        }
    }
}

impl ChatCompletionRequest {
    /// A non-streaming request with one user message.
    pub fn user(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            messages: vec![ChatMessage::new("user", prompt)],
            stream: false,
            max_tokens: None,
            max_completion_tokens: None,
            temperature: None,
            stream_options: None,
            extra: Map::new(),
        }
    }

    /// The token budget asked for: `max_completion_tokens`, else `max_tokens`.
    pub fn requested_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Checks the values (the types were checked by parsing) under the default
    /// [`InputLimits`](crate::limits::InputLimits) with `max_tokens_limit` as the server's
    /// token limit.
    pub fn validate(&self, max_tokens_limit: u32) -> Result<(), FieldError> {
        self.validate_within(&crate::limits::InputLimits::with_max_tokens(
            max_tokens_limit,
        ))
    }

    /// The last user message's text (what a simulated model answers).
    pub fn last_user_text(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .or(self.messages.last())
            .map(ChatMessage::text)
            .unwrap_or_default()
    }
}

/// Token counts of an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Tokens in the request's messages.
    pub prompt_tokens: u32,
    /// Tokens in the answer.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

impl Usage {
    /// Usage with `total_tokens` computed.
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

/// A whole answer (`object: "chat.completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// The answers (one here).
    pub choices: Vec<Choice>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Backend build identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

/// One answer of a [`ChatCompletion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Choice {
    /// Position among the choices.
    pub index: u32,
    /// The assistant's message.
    pub message: AssistantMessage,
    /// `stop`, `length`, `content_filter`, `tool_calls`.
    pub finish_reason: Option<String>,
    /// Always null here.
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// The assistant's message in an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The text.
    pub content: Option<String>,
    /// Other fields (`tool_calls`, `refusal`…), kept as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One server-sent event of a streamed answer (`object: "chat.completion.chunk"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// The same id on every chunk of one answer.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// The deltas (empty on a usage-only chunk).
    pub choices: Vec<ChunkChoice>,
    /// Token counts, on the usage chunk only.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// A new completion id: `chatcmpl-` and a random UUIDv4's 32 hex digits, from the thread's
/// random generator (no system call per id).
pub fn completion_id() -> String {
    format!(
        "chatcmpl-{}",
        uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .simple()
    )
}

/// Seconds since the Unix epoch (a completion's `created`); 0 on a clock before 1970.
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ChatCompletionChunk {
    /// A chunk of one choice carrying `delta`, and `finish_reason` when it ends the choice.
    pub fn delta(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        delta: Delta,
        finish_reason: Option<&str>,
    ) -> Self {
        Self {
            id: id.into(),
            object: "chat.completion.chunk".to_owned(),
            created,
            model: model.into(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
                logprobs: None,
            }],
            usage: None,
        }
    }

    /// The usage chunk that ends a stream (`stream_options.include_usage`): no choice.
    pub fn usage(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        usage: Usage,
    ) -> Self {
        Self {
            id: id.into(),
            object: "chat.completion.chunk".to_owned(),
            created,
            model: model.into(),
            choices: Vec::new(),
            usage: Some(usage),
        }
    }
}

/// One delta of a [`ChatCompletionChunk`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChunkChoice {
    /// Position among the choices.
    pub index: u32,
    /// What this chunk adds.
    pub delta: Delta,
    /// Set on the last chunk of the choice.
    pub finish_reason: Option<String>,
    /// Always null here.
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// The part of a message one chunk adds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delta {
    /// On the first chunk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Text added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// The SSE payload that ends a stream.
pub const DONE: &str = "[DONE]";

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<Model>,
}

/// One model of a [`ModelList`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Model {
    /// The model's name.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Who serves it.
    pub owned_by: String,
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenAiError {
    /// The error.
    pub error: OpenAiErrorDetail,
}

/// The `error` object of [`OpenAiError`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenAiErrorDetail {
    /// For a person.
    pub message: String,
    /// `invalid_request_error`, `server_error`, `rate_limit_error`…
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter.
    #[serde(default)]
    pub param: Option<String>,
    /// A machine-readable code (`context_length_exceeded`, `rate_limit_exceeded`…).
    #[serde(default)]
    pub code: Option<String>,
}

impl OpenAiError {
    /// An error of `kind` with `message`, optionally blaming `param` and carrying `code`.
    pub fn new(
        kind: impl Into<String>,
        message: impl Into<String>,
        param: Option<String>,
        code: Option<String>,
    ) -> Self {
        Self {
            error: OpenAiErrorDetail {
                message: message.into(),
                kind: kind.into(),
                param,
                code,
            },
        }
    }

    /// An `invalid_request_error` from a [`FieldError`].
    pub fn invalid_request(error: &FieldError) -> Self {
        Self::new(
            "invalid_request_error",
            error.to_string(),
            Some(error.field.clone()),
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_ids_are_random_uuid_v4s_behind_the_prefix() {
        let ids: Vec<String> = (0..100).map(|_| completion_id()).collect();
        for id in &ids {
            let hex = id.strip_prefix("chatcmpl-").expect("the prefix");
            let uuid = uuid::Uuid::parse_str(hex).expect("32 hex digits");
            assert_eq!((hex.len(), uuid.get_version_num()), (32, 4), "{id}");
        }
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn unknown_request_fields_are_kept_and_forwarded() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi","name":"bob"}],
            "top_p":0.5,"stop":["x"],"tools":[{"type":"function"}],"stream_options":{"include_usage":true,"x":1}}"#;
        let req: ChatCompletionRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.extra["top_p"], 0.5);
        assert_eq!(req.messages[0].extra["name"], "bob");
        let back = serde_json::to_value(&req).unwrap();
        assert_eq!(back["stop"], serde_json::json!(["x"]));
        assert_eq!(back["tools"][0]["type"], "function");
        assert_eq!(back["stream_options"]["x"], 1);
        assert_eq!(back["stream_options"]["include_usage"], true);
    }

    #[test]
    fn content_parts_are_read_as_text() {
        let msg: ChatMessage = serde_json::from_str(
            r#"{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"},{"type":"text","text":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(msg.text(), "a b");
    }

    #[test]
    fn validation_names_the_field() {
        let mut req = ChatCompletionRequest::user("m", "hi");
        assert!(req.validate(100).is_ok());
        req.max_tokens = Some(101);
        assert_eq!(req.validate(100).unwrap_err().field, "max_tokens");
        req.max_tokens = None;
        req.messages[0].content = serde_json::json!(5);
        assert_eq!(req.validate(100).unwrap_err().field, "messages[0].content");
        req.messages.clear();
        assert_eq!(req.validate(100).unwrap_err().field, "messages");
    }

    #[test]
    fn errors_have_openai_shape() {
        let e = OpenAiError::new("server_error", "boom", None, Some("x".into()));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "x");
        assert!(v["error"]["param"].is_null());
    }
}
