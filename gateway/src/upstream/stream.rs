//! Server-sent event streams from an upstream: opened until the first token, then read
//! event by event under an idle limit.
//!
//! Opening ([`UpstreamClient::open_stream`]) sends the chat request and reads events until
//! one carries content (text, a tool call, a finish reason), all within the time-to-first-token
//! limit: until then nothing has reached the client, so any failure — an error status, a
//! reset, silence, a stream that ends or says `[DONE]` empty-handed — is an ordinary failed
//! try that the pool may retry or fail over. Malformed events are skipped and counted.
//! Afterwards [`OpenStream::next`] yields each event, an idle gap longer than the limit
//! being a failure of its own.

use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::StreamExt;
use futures::stream::BoxStream;
use llm_api::openai::{DONE, Usage};
use serde_json::Value;

use super::error::{chain, classify, status_error};
use super::redact::redact;
use super::{Payload, Tags, Upstream, UpstreamClient, UpstreamError};

/// Malformed events tolerated before the first token; past this the upstream is broken.
const MALFORMED_BEFORE_FIRST_TOKEN: u32 = 16;

/// How much of a malformed event is kept for the log.
const MALFORMED_EXCERPT: usize = 120;

/// One chunk event, forwarded as the upstream wrote it, with what the gateway reads from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The event's `data`, unchanged.
    pub raw: String,
    /// The text it adds to the answer.
    pub text: Option<String>,
    /// Whether it carries anything beyond the role (text, a tool call, a finish reason).
    pub has_content: bool,
    /// Whether it ends a choice (`finish_reason` set).
    pub finished: bool,
    /// Whether it carries a tool call.
    pub tool_call: bool,
    /// Usage, when the chunk reports it.
    pub usage: Option<Usage>,
    /// The model it names.
    pub model: Option<String>,
}

/// What reading a stream gave next.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A chunk.
    Data(Chunk),
    /// `data: [DONE]`.
    Done,
    /// An event that is not a chunk; the text is an excerpt.
    Malformed(String),
    /// The body ended without `[DONE]`.
    End,
    /// The connection broke, the upstream sent an error event, or it fell silent for
    /// longer than the idle limit.
    Failed(UpstreamError),
}

/// A stream whose first token arrived.
pub struct OpenStream {
    /// The chunks read while opening, the first token last.
    pub head: Vec<Chunk>,
    /// Malformed events skipped while opening.
    pub skipped: u32,
    /// From sending the request to the first token.
    pub first_token_after: Duration,
    events: BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>,
}

impl std::fmt::Debug for OpenStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStream")
            .field("head", &self.head.len())
            .field("skipped", &self.skipped)
            .field("first_token_after", &self.first_token_after)
            .finish_non_exhaustive()
    }
}

impl UpstreamClient {
    /// Sends the chat `payload` (a stream request) and reads until its first token, all
    /// within `first_token` (see the module's rules).
    pub async fn open_stream<'t>(
        &self,
        upstream: &Upstream,
        payload: &Payload,
        first_token: Duration,
        tags: impl Into<Tags<'t>>,
    ) -> Result<OpenStream, UpstreamError> {
        let tags = tags.into();
        let request_id = tags.request_id;
        let protocol = upstream.protocol();
        let chat = payload.chat_for(protocol);
        let request = self.post_chat(upstream, &chat, None, tags)?;
        let url = upstream.base();
        let started = tokio::time::Instant::now();
        let open = async {
            let response = request
                .send()
                .await
                .map_err(|e| classify(&e, first_token))?;
            if !response.status().is_success() {
                return Err(status_error(response, first_token).await);
            }
            let mut events = response.bytes_stream().eventsource().boxed();
            let mut head = Vec::new();
            let mut skipped = 0;
            loop {
                match read(&mut events).await {
                    StreamEvent::Data(chunk) => {
                        let first_token = chunk.has_content;
                        head.push(chunk);
                        if first_token {
                            return Ok(OpenStream {
                                head,
                                skipped,
                                first_token_after: started.elapsed(),
                                events,
                            });
                        }
                    }
                    StreamEvent::Malformed(excerpt) => {
                        skipped += 1;
                        tracing::warn!(url = %redact(url), request_id, excerpt, "malformed stream event skipped");
                        if skipped > MALFORMED_BEFORE_FIRST_TOKEN {
                            return Err(UpstreamError::Malformed(format!(
                                "{skipped} malformed events and no token"
                            )));
                        }
                    }
                    StreamEvent::Done => {
                        return Err(UpstreamError::Malformed(
                            "the stream said [DONE] before any token".to_owned(),
                        ));
                    }
                    StreamEvent::End => {
                        return Err(UpstreamError::Connect(
                            "the stream ended before its first token".to_owned(),
                        ));
                    }
                    StreamEvent::Failed(error) => return Err(error),
                }
            }
        };
        tokio::time::timeout(first_token, open)
            .await
            .unwrap_or(Err(UpstreamError::Timeout(first_token)))
    }
}

impl OpenStream {
    /// The next event; [`StreamEvent::Failed`] with a timeout when none comes within `idle`.
    pub async fn next(&mut self, idle: Duration) -> StreamEvent {
        tokio::time::timeout(idle, read(&mut self.events))
            .await
            .unwrap_or(StreamEvent::Failed(UpstreamError::Timeout(idle)))
    }
}

/// Reads the next meaningful event (empty keep-alive events are passed over).
async fn read(
    events: &mut BoxStream<'static, Result<Event, EventStreamError<reqwest::Error>>>,
) -> StreamEvent {
    loop {
        let event = match events.next().await {
            None => return StreamEvent::End,
            Some(Ok(event)) => event,
            Some(Err(EventStreamError::Transport(error))) => {
                // A body that breaks mid-stream is a broken connection, whatever reqwest
                // calls it (it reports a cut as a decode error).
                return StreamEvent::Failed(UpstreamError::Connect(chain(&error)));
            }
            Some(Err(error)) => {
                return StreamEvent::Failed(UpstreamError::Malformed(redact(&format!(
                    "not an event stream: {error}"
                ))));
            }
        };
        let data = event.data.trim();
        if data.is_empty() {
            continue;
        }
        return parse_event(data);
    }
}

/// One event's data as a [`StreamEvent`].
pub(crate) fn parse_event(data: &str) -> StreamEvent {
    if data == DONE {
        return StreamEvent::Done;
    }
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        return StreamEvent::Malformed(redact(
            &data.chars().take(MALFORMED_EXCERPT).collect::<String>(),
        ));
    };
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message");
        return StreamEvent::Failed(UpstreamError::Malformed(redact(&format!(
            "the upstream sent an error event: {message}"
        ))));
    }
    let Some(choices) = value.get("choices").and_then(Value::as_array) else {
        return StreamEvent::Malformed(redact(
            &data.chars().take(MALFORMED_EXCERPT).collect::<String>(),
        ));
    };
    let mut chunk = Chunk {
        raw: data.to_owned(),
        text: None,
        has_content: false,
        finished: false,
        tool_call: false,
        usage: value
            .get("usage")
            .and_then(|u| serde_json::from_value(u.clone()).ok()),
        model: value
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    for choice in choices {
        if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
            chunk.finished = true;
            chunk.has_content = true;
        }
        let Some(delta) = choice.get("delta").and_then(Value::as_object) else {
            continue;
        };
        for (key, field) in delta {
            let empty = field.is_null() || field.as_str().is_some_and(str::is_empty);
            if key != "role" && !empty {
                chunk.has_content = true;
                chunk.tool_call |= key == "tool_calls";
            }
        }
        if let Some(text) = delta.get("content").and_then(Value::as_str)
            && !text.is_empty()
        {
            chunk.text.get_or_insert_with(String::new).push_str(text);
        }
    }
    StreamEvent::Data(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_told_apart() {
        assert_eq!(parse_event("[DONE]"), StreamEvent::Done);
        assert!(matches!(
            parse_event("{\"choices\": [{\"delta\": "),
            StreamEvent::Malformed(_)
        ));
        assert!(matches!(
            parse_event(r#"{"object": "x"}"#),
            StreamEvent::Malformed(_)
        ));
        assert!(matches!(
            parse_event(r#"{"error": {"message": "overloaded"}}"#),
            StreamEvent::Failed(UpstreamError::Malformed(m)) if m.contains("overloaded")
        ));
    }

    #[test]
    fn a_role_chunk_is_not_a_token_but_text_tools_and_finish_are() {
        let chunk = |data: &str| match parse_event(data) {
            StreamEvent::Data(chunk) => chunk,
            other => panic!("{other:?}"),
        };
        let role =
            chunk(r#"{"model":"m","choices":[{"delta":{"role":"assistant","content":""}}]}"#);
        assert!(!role.has_content);
        assert_eq!(role.model.as_deref(), Some("m"));
        let text = chunk(r#"{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}"#);
        assert!(text.has_content && !text.finished);
        assert_eq!(text.text.as_deref(), Some("Hi"));
        let tool = chunk(r#"{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}"#);
        assert!(tool.has_content && tool.tool_call);
        assert!(!text.tool_call);
        let finish = chunk(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#);
        assert!(finish.has_content && finish.finished);
        let usage = chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#,
        );
        assert_eq!(usage.usage, Some(Usage::new(3, 5)));
        assert!(!usage.has_content);
        assert_eq!(usage.raw.len(), usage.raw.trim().len());
    }
}
