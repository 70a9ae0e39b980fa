//! The bounds of a request's values, checked in one place for every server that parses the
//! request types (the gateway's validation layer, llm-service's routes).
//!
//! Parsing bounds the shapes (the body layer bounds the size); these bound what a client can
//! make a server hold, log, key a cache on or forward upstream: the model name (length and
//! characters), the number of messages, the prompt's characters, `n`, `max_tokens`, `stop`,
//! `user_id`, and the roles a message may have. Each bound has a named default; servers
//! with settings build an [`InputLimits`] from them. An error names the field and never
//! echoes an oversized value back (it says its length instead).

use serde_json::Value;

use crate::FieldError;
use crate::generate::GenerateRequest;
use crate::openai::ChatCompletionRequest;

/// Default longest model name, in characters.
pub const MAX_MODEL_CHARS: usize = 256;

/// Default most messages in one chat request: room for long agent transcripts (tool calls
/// and their results each take a message), far below what the 1 MiB body could carry.
pub const MAX_MESSAGES: usize = 1024;

/// Default most characters in a request's prompt: the sum over a chat's messages (string
/// content and the `text` of content parts), or `/generate`'s `prompt`. About a
/// 128k-token context, and below what the body limit could carry.
pub const MAX_PROMPT_CHARS: usize = 512 * 1024;

/// Default largest `n` (choices per chat request). Each choice is a whole answer the
/// upstream generates and the gateway relays; 8 covers sampling a few candidates, while
/// `n = 1000000` would ask one request for a million answers.
pub const MAX_CHOICES: u32 = 8;

/// Most `stop` sequences, as OpenAI's API documents (a protocol bound, not a setting).
pub const MAX_STOP_SEQUENCES: usize = 4;

/// Longest `stop` sequence, in characters (a protocol-level bound, not a setting).
pub const MAX_STOP_CHARS: usize = 256;

/// Longest `/generate` `user_id`, in characters (it goes to logs and rate limits).
pub const MAX_USER_ID_CHARS: usize = 256;

/// The roles a chat message may have.
pub const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// The bounds one server applies to requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Largest `max_tokens` (and `max_completion_tokens`).
    pub max_tokens: u32,
    /// Longest model name, in characters.
    pub max_model_chars: usize,
    /// Most messages in a chat request.
    pub max_messages: usize,
    /// Most characters in a prompt (all of a chat's messages together).
    pub max_prompt_chars: usize,
    /// Largest `n`.
    pub max_choices: u32,
}

impl InputLimits {
    /// The default bounds with `max_tokens` as the token limit.
    pub fn with_max_tokens(max_tokens: u32) -> Self {
        Self {
            max_tokens,
            max_model_chars: MAX_MODEL_CHARS,
            max_messages: MAX_MESSAGES,
            max_prompt_chars: MAX_PROMPT_CHARS,
            max_choices: MAX_CHOICES,
        }
    }
}

/// Whether `c` may appear in a model name: `A–Z a–z 0–9 . _ : / @ -`.
pub fn is_model_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '@' | '-')
}

/// A model name: not blank, at most `max_chars` characters, each a [`is_model_char`].
/// `llama3.1:8b`, `org/model` and `gpt-4o-mini@2024` pass.
pub(crate) fn model(field: &str, name: &str, max_chars: usize) -> Result<(), FieldError> {
    if name.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    // Counting stops one past the limit, so a huge name costs no more than a short one.
    if name.chars().take(max_chars.saturating_add(1)).count() > max_chars {
        return Err(FieldError::new(
            field,
            format!(
                "must be at most {max_chars} characters, got {} bytes",
                name.len()
            ),
        ));
    }
    if let Some(bad) = name.chars().position(|c| !is_model_char(c)) {
        return Err(FieldError::new(
            field,
            format!(
                "may hold only A-Z a-z 0-9 . _ : / @ - (character {} is not one)",
                bad + 1
            ),
        ));
    }
    Ok(())
}

/// A chat message's role: one of [`ROLES`].
pub(crate) fn role(field: &str, role: &str) -> Result<(), FieldError> {
    if ROLES.contains(&role) {
        return Ok(());
    }
    Err(FieldError::new(
        field,
        format!("must be one of {}", ROLES.join(", ")),
    ))
}

/// Characters in a message's content: a string's, or the `text` of each content part.
pub(crate) fn content_chars(content: &Value) -> usize {
    match content {
        Value::String(s) => s.chars().count(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(|t| t.chars().count())
            .fold(0, usize::saturating_add),
        _ => 0,
    }
}

/// A prompt of `chars` characters, at most `max_chars`.
pub(crate) fn prompt_chars(field: &str, chars: usize, max_chars: usize) -> Result<(), FieldError> {
    if chars > max_chars {
        return Err(FieldError::new(
            field,
            format!("must be at most {max_chars} characters in all, got {chars}"),
        ));
    }
    Ok(())
}

/// `n`, when given (null counts as absent): a whole number from 1 to `max`.
pub(crate) fn choices(n: Option<&Value>, max: u32) -> Result<(), FieldError> {
    match n {
        None | Some(Value::Null) => Ok(()),
        Some(value) => match value.as_u64() {
            Some(n) if (1..=u64::from(max)).contains(&n) => Ok(()),
            _ => Err(FieldError::new(
                "n",
                format!("must be a whole number from 1 to {max}"),
            )),
        },
    }
}

/// `stop`, when given (null counts as absent): a string, or an array of at most
/// [`MAX_STOP_SEQUENCES`] strings, each at most [`MAX_STOP_CHARS`] characters.
pub(crate) fn stop(stop: Option<&Value>) -> Result<(), FieldError> {
    let sequence = |field: String, s: &str| {
        if s.chars().take(MAX_STOP_CHARS + 1).count() > MAX_STOP_CHARS {
            Err(FieldError::new(
                field,
                format!("must be at most {MAX_STOP_CHARS} characters"),
            ))
        } else {
            Ok(())
        }
    };
    match stop {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => sequence("stop".to_owned(), s),
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP_SEQUENCES {
                return Err(FieldError::new(
                    "stop",
                    format!(
                        "must hold at most {MAX_STOP_SEQUENCES} sequences, got {}",
                        items.len()
                    ),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                let Value::String(s) = item else {
                    return Err(FieldError::new(format!("stop[{i}]"), "must be a string"));
                };
                sequence(format!("stop[{i}]"), s)?;
            }
            Ok(())
        }
        Some(_) => Err(FieldError::new(
            "stop",
            "must be a string or an array of strings",
        )),
    }
}

/// `user_id`, when given: at most [`MAX_USER_ID_CHARS`] characters.
pub(crate) fn user_id(user_id: Option<&str>) -> Result<(), FieldError> {
    match user_id {
        Some(id) if id.chars().take(MAX_USER_ID_CHARS + 1).count() > MAX_USER_ID_CHARS => {
            Err(FieldError::new(
                "user_id",
                format!(
                    "must be at most {MAX_USER_ID_CHARS} characters, got {} bytes",
                    id.len()
                ),
            ))
        }
        _ => Ok(()),
    }
}

impl ChatCompletionRequest {
    /// Checks the values under `limits` (the types were checked by parsing); the error
    /// names the first field at fault.
    pub fn validate_within(&self, limits: &InputLimits) -> Result<(), FieldError> {
        model("model", &self.model, limits.max_model_chars)?;
        if self.messages.is_empty() {
            return Err(FieldError::new(
                "messages",
                "must hold at least one message",
            ));
        }
        if self.messages.len() > limits.max_messages {
            return Err(FieldError::new(
                "messages",
                format!(
                    "must hold at most {} messages, got {}",
                    limits.max_messages,
                    self.messages.len()
                ),
            ));
        }
        let mut chars: usize = 0;
        for (i, message) in self.messages.iter().enumerate() {
            role(&format!("messages[{i}].role"), &message.role)?;
            if !matches!(
                message.content,
                Value::String(_) | Value::Array(_) | Value::Null
            ) {
                return Err(FieldError::new(
                    format!("messages[{i}].content"),
                    "must be a string, an array of content parts, or null",
                ));
            }
            chars = chars.saturating_add(content_chars(&message.content));
            prompt_chars("messages", chars, limits.max_prompt_chars)?;
        }
        crate::checks::token_budget("max_tokens", self.max_tokens, limits.max_tokens)?;
        crate::checks::token_budget(
            "max_completion_tokens",
            self.max_completion_tokens,
            limits.max_tokens,
        )?;
        crate::checks::temperature(self.temperature)?;
        choices(self.extra.get("n"), limits.max_choices)?;
        stop(self.extra.get("stop"))
    }
}

impl GenerateRequest {
    /// Checks the values under `limits` (the types were checked by parsing); the error
    /// names the first field at fault. A blank or absent `model` is allowed (the default
    /// route serves it).
    pub fn validate_within(&self, limits: &InputLimits) -> Result<(), FieldError> {
        if self.prompt.trim().is_empty() {
            return Err(FieldError::new("prompt", "must not be empty"));
        }
        let chars = self
            .prompt
            .chars()
            .take(limits.max_prompt_chars.saturating_add(1))
            .count();
        prompt_chars("prompt", chars, limits.max_prompt_chars)?;
        if let Some(name) = self.model.as_deref().filter(|m| !m.trim().is_empty()) {
            model("model", name, limits.max_model_chars)?;
        }
        user_id(self.user_id.as_deref())?;
        crate::checks::token_budget("max_tokens", self.max_tokens, limits.max_tokens)?;
        crate::checks::temperature(self.temperature)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
