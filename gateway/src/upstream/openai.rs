//! What is sent upstream ([`Payload`]), in which protocol, and the whole answer that comes
//! back ([`Completed`]).
//!
//! - A `/generate` request goes to a lab instance's `/generate`; to an OpenAI-compatible
//!   endpoint it becomes a one-message chat with the same token budget and temperature.
//! - A chat request goes to a lab instance's `/v1/chat/completions` with the client's model
//!   name, and to an endpoint's `{base}/chat/completions` with the endpoint's model name.
//!   Fields the gateway does not know (`tools`, `stop`, `top_p`…) travel unchanged.

use std::time::Duration;

use llm_api::generate::GenerateRequest;
use llm_api::openai::{ChatCompletion, ChatCompletionRequest, StreamOptions, Usage};
use reqwest::header::AUTHORIZATION;
use serde::Serialize;
use serde_json::Map;

use super::error::{classify, status_error};
use super::{Protocol, Tags, Upstream, UpstreamClient, UpstreamError};

/// A request as sent upstream.
#[derive(Debug, Clone)]
pub enum Payload {
    /// The lab's `/generate`.
    Generate(GenerateRequest),
    /// OpenAI's chat completion (streamed when `stream` is set).
    Chat(ChatCompletionRequest),
}

/// A whole answer from an upstream, in either protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    /// The generated text.
    pub text: String,
    /// The model that answered, as the upstream named it.
    pub model: String,
    /// Tokens in the answer.
    pub tokens_used: u32,
    /// The instance's `SERVICE_ID`, when it gave one.
    pub service_id: String,
    /// Prompt and completion tokens, when the upstream counted them.
    pub usage: Option<Usage>,
    /// The chat completion as the upstream sent it (for chat requests), to pass on whole.
    pub completion: Option<ChatCompletion>,
}

impl Payload {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        matches!(self, Self::Chat(chat) if chat.stream)
    }

    /// The model the client asked for, if any.
    pub fn model(&self) -> Option<&str> {
        match self {
            Self::Generate(generate) => generate.model.as_deref(),
            Self::Chat(chat) => Some(chat.model.as_str()),
        }
    }

    /// The text a cache key and a template answer are made from: the prompt, or the chat's
    /// messages (a single user message is its text alone, so that it matches a prompt).
    pub fn prompt_text(&self) -> String {
        match self {
            Self::Generate(generate) => generate.prompt.clone(),
            Self::Chat(chat) => match chat.messages.as_slice() {
                [only] => only.text(),
                messages => messages
                    .iter()
                    .map(|m| format!("{}: {}", m.role, m.text()))
                    .collect::<Vec<_>>()
                    .join("\n"),
            },
        }
    }

    /// The same chat request asking for the rest of an answer that began with `delivered`
    /// (`delivered_tokens` of it): `delivered` as a trailing assistant message (a prefill),
    /// and the token budget, when the request set one, less what was delivered. A
    /// `/generate` request is returned as it is (it is never streamed).
    pub(crate) fn with_prefill(&self, delivered: &str, delivered_tokens: u32) -> Self {
        let Self::Chat(chat) = self else {
            return self.clone();
        };
        let mut chat = chat.clone();
        chat.messages
            .push(llm_api::openai::ChatMessage::new("assistant", delivered));
        let left = resilience_core::policy::continuation::remaining_tokens(
            chat.requested_tokens(),
            delivered_tokens,
        );
        if chat.max_completion_tokens.is_some() {
            chat.max_completion_tokens = left;
        } else if chat.max_tokens.is_some() {
            chat.max_tokens = left;
        }
        Self::Chat(chat)
    }

    /// The chat request for an upstream speaking `protocol`: the endpoint's model name, and
    /// for a stream, usage asked for (the gateway reports it at the end of every stream).
    pub(crate) fn chat_for(&self, protocol: &Protocol) -> ChatCompletionRequest {
        let mut chat = match self {
            Self::Chat(chat) => chat.clone(),
            Self::Generate(generate) => {
                let mut chat = ChatCompletionRequest::user(
                    generate.model.clone().unwrap_or_default(),
                    generate.prompt.clone(),
                );
                chat.max_tokens = generate.max_tokens;
                chat.temperature = generate.temperature;
                chat
            }
        };
        if let Protocol::OpenAi { model, .. } = protocol {
            chat.model.clone_from(model);
        }
        if chat.stream {
            let options = chat.stream_options.get_or_insert_with(|| StreamOptions {
                include_usage: true,
                extra: Map::new(),
            });
            options.include_usage = true;
        }
        chat
    }
}

impl UpstreamClient {
    /// Sends `payload` (not a stream) to `upstream` in its protocol, bounded
    /// by `timeout` from sending to the last byte of the answer.
    pub async fn call<'t>(
        &self,
        upstream: &Upstream,
        payload: &Payload,
        timeout: Duration,
        tags: impl Into<Tags<'t>>,
    ) -> Result<Completed, UpstreamError> {
        let tags = tags.into();
        let protocol = upstream.protocol();
        match (protocol, payload) {
            (Protocol::Lab, Payload::Generate(generate)) => {
                let answer = self.generate(upstream, generate, timeout, tags).await?;
                Ok(Completed {
                    text: answer.response,
                    model: answer.model_used,
                    tokens_used: answer.tokens_used,
                    service_id: answer.service_id,
                    usage: None,
                    completion: None,
                })
            }
            _ => {
                let chat = payload.chat_for(protocol);
                let request = self.post_chat(upstream, &chat, Some(timeout), tags)?;
                let call = async {
                    let response = request.send().await.map_err(|e| classify(&e, timeout))?;
                    if !response.status().is_success() {
                        return Err(status_error(response, timeout).await);
                    }
                    let body = super::read_answer(response, timeout).await?;
                    parse_completion(&body, payload)
                };
                tokio::time::timeout(timeout, call)
                    .await
                    .unwrap_or(Err(UpstreamError::Timeout(timeout)))
            }
        }
    }

    /// A POST of `body` as JSON to `upstream`'s chat URL, with the request id and trace context, for an
    /// endpoint with a key, its `Authorization`; `timeout` bounds the whole exchange (none
    /// for a stream).
    pub(super) fn post_chat(
        &self,
        upstream: &Upstream,
        body: &impl Serialize,
        timeout: Option<Duration>,
        tags: Tags<'_>,
    ) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let mut builder = tags.apply(self.http.post(upstream.chat_url()?).json(body));
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        if let Some(authorization) = upstream.authorization() {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        Ok(builder)
    }
}

/// A 2xx chat body as a [`Completed`] answer to `payload`.
fn parse_completion(body: &[u8], payload: &Payload) -> Result<Completed, UpstreamError> {
    let completion: ChatCompletion = serde_json::from_slice(body).map_err(|e| {
        UpstreamError::Malformed(super::redact(&format!("not a chat completion: {e}")))
    })?;
    let text = completion
        .choices
        .first()
        .and_then(|c| c.message.content.clone())
        .unwrap_or_default();
    let tokens_used = completion
        .usage
        .map(|u| u.completion_tokens)
        .unwrap_or_else(|| count_words(&text));
    Ok(Completed {
        model: completion.model.clone(),
        tokens_used,
        service_id: String::new(),
        usage: completion.usage,
        text,
        completion: matches!(payload, Payload::Chat(_)).then_some(completion),
    })
}

/// Whitespace-separated words: the gateway's token estimate where an upstream gave none.
pub fn count_words(text: &str) -> u32 {
    u32::try_from(text.split_whitespace().count()).unwrap_or(u32::MAX)
}
