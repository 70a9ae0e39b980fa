//! The relay of a live upstream stream to the client, one task per stream (rules 2-4 of
//! the chat module): events go out as the upstream wrote them; a malformed one is skipped
//! (counted, logged) up to a bound; `[DONE]` ends it, and a body that ends without `[DONE]`
//! after a finished choice is finalised; usage is always the last chunk before `[DONE]` (the
//! upstream's, or an estimate); a stream that breaks, ends truncated or stays silent past
//! the idle limit ends with an error event and no `[DONE]`. A client that stops reading for
//! longer than the idle limit is let go. A completed stream's text is kept for the cache
//! tier, up to a bound.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use llm_api::openai::{ChatCompletionChunk, DONE, Usage, completion_id, unix_seconds};
use resilience_core::fallback::CacheKey;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::chat::{json_event, prompt_tokens};
use super::errors::interrupted_event;
use crate::answer::WholeAnswer;
use crate::layers::Occupancy;
use crate::layers::rate_limit::TokenCharge;
use crate::pool::{GatewayRequest, LiveStream, StreamEnd};
use crate::routing::ModelLabel;
use crate::state::Gateway;
use crate::upstream::{StreamEvent, UpstreamError};

/// The longest streamed answer kept for the cache tier; a longer one is not cached (the
/// relay must not grow without bound on an endless stream).
const MAX_CACHED_ANSWER: usize = 64 * 1024;

/// Malformed events tolerated in one stream; past this the upstream is broken.
const MAX_MALFORMED_EVENTS: u32 = 32;

/// Events buffered between the relay task and the client connection.
const RELAY_BUFFER: usize = 32;

/// Relays a live upstream stream to the client (the module's rules).
pub(super) fn relay(
    gateway: &Arc<Gateway>,
    req: &GatewayRequest,
    live: LiveStream,
    charge: Option<TokenCharge>,
    model_label: ModelLabel,
) -> Response {
    let (tx, rx) = mpsc::channel(RELAY_BUFFER);
    let relay = Relay {
        gateway: Arc::clone(gateway),
        idle: gateway.settings.idle_timeout,
        prompt_tokens: prompt_tokens(req),
        key: crate::cache::cache_key(req),
        request_id: req.request_id.clone(),
        charge,
        model_label,
    };
    // A stream holds an in-flight slot until it ends, not only until its headers.
    let occupancy = Occupancy::enter(gateway);
    tokio::spawn(async move {
        relay.run(live, tx).await;
        drop(occupancy);
    });
    Sse::new(ReceiverStream::new(rx)).into_response()
}

/// What the relay task needs besides the stream.
struct Relay {
    gateway: Arc<Gateway>,
    idle: Duration,
    prompt_tokens: u32,
    key: Option<CacheKey>,
    request_id: String,
    /// The caller's tokens allowance, when its tier limits tokens.
    charge: Option<TokenCharge>,
    /// The request's model as the metrics name it.
    model_label: ModelLabel,
}

/// What the relay saw of the answer.
struct Seen {
    id: Option<String>,
    /// The answer so far, for the cache; `None` once it outgrew [`MAX_CACHED_ANSWER`].
    text: Option<String>,
    tokens: u32,
    usage: Option<Usage>,
    finished: bool,
}

type Sender = mpsc::Sender<Result<Event, Infallible>>;

/// How a relayed stream ended.
enum Ending {
    /// `[DONE]`.
    Completed,
    /// Ended without `[DONE]` after its answer finished; the gateway closed it.
    Finalized,
    /// The client left.
    Abandoned,
    /// Broke, stalled or ended truncated: the client got an error event.
    Interrupted(UpstreamError),
}

impl Ending {
    fn label(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Finalized => "finalized",
            Self::Abandoned => "abandoned",
            Self::Interrupted(_) => "interrupted",
        }
    }
}

impl Relay {
    async fn run(self, mut live: LiveStream, tx: Sender) {
        let gateway = Arc::clone(&self.gateway);
        let service = live.served_by.clone();
        let metrics = &gateway.metrics;
        metrics.first_token(&service, live.stream.first_token_after);
        for _ in 0..live.stream.skipped {
            metrics.malformed_event(&service);
        }
        let mut seen = Seen::default();
        if self.key.is_none() {
            seen.text = None; // nothing to cache it under
        }
        let head = std::mem::take(&mut live.stream.head);
        let mut ending = None;
        for chunk in head {
            seen.observe(&chunk);
            if !deliver(&tx, Event::default().data(chunk.raw), self.idle).await {
                ending = Some(Ending::Abandoned);
                break;
            }
        }
        let ending = match ending {
            Some(ending) => ending,
            None => self.pump(&mut live, &tx, &mut seen).await,
        };
        metrics.stream_ended(&service, ending.label());
        // What the client received: the upstream's usage, else the estimate.
        let usage = seen
            .usage
            .unwrap_or_else(|| Usage::new(self.prompt_tokens, seen.tokens));
        metrics.tokens_processed(&service, self.model_label.as_str(), usage);
        if let Some(charge) = &self.charge {
            charge.clone().charge(usage.total_tokens);
        }
        match ending {
            Ending::Completed | Ending::Finalized => {
                self.remember(&seen, &live);
                live.finish(StreamEnd::Completed);
            }
            Ending::Abandoned => live.finish(StreamEnd::Abandoned),
            Ending::Interrupted(error) => live.finish(StreamEnd::Failed(error)),
        }
    }

    /// Relays events until the stream ends.
    async fn pump(&self, live: &mut LiveStream, tx: &Sender, seen: &mut Seen) -> Ending {
        let service = live.served_by.clone();
        let mut skipped = 0u32;
        loop {
            let event = tokio::select! {
                event = live.stream.next(self.idle) => event,
                () = tx.closed() => return Ending::Abandoned,
            };
            let error = match event {
                StreamEvent::Data(chunk) => {
                    seen.observe(&chunk);
                    if !deliver(tx, Event::default().data(chunk.raw), self.idle).await {
                        return Ending::Abandoned;
                    }
                    continue;
                }
                StreamEvent::Malformed(excerpt) => {
                    self.gateway.metrics.malformed_event(&service);
                    tracing::warn!(request_id = %self.request_id, upstream = %service, excerpt,
                        "malformed stream event skipped");
                    skipped += 1;
                    if skipped <= MAX_MALFORMED_EVENTS {
                        continue;
                    }
                    UpstreamError::Malformed(format!("{skipped} malformed events"))
                }
                StreamEvent::Done => {
                    return self.close(tx, seen, &live.model, Ending::Completed).await;
                }
                StreamEvent::End if seen.finished => {
                    tracing::warn!(request_id = %self.request_id, upstream = %service,
                        "stream ended without [DONE] after its answer finished; finalised");
                    return self.close(tx, seen, &live.model, Ending::Finalized).await;
                }
                StreamEvent::End => UpstreamError::Connect(
                    "the upstream stream ended before the answer finished".to_owned(),
                ),
                StreamEvent::Failed(error) => error,
            };
            tracing::error!(request_id = %self.request_id, upstream = %service, %error,
                "stream interrupted after it reached the client; ending it with an error event");
            let body = interrupted_event(&error, &self.request_id);
            // The client may be gone already; the stream is over either way.
            deliver(tx, json_event(&body), self.idle).await;
            return Ending::Interrupted(error);
        }
    }

    /// Sends the usage chunk (the upstream's, or an estimate when it sent none) and
    /// `[DONE]`; `Abandoned` if the client left meanwhile.
    async fn close(&self, tx: &Sender, seen: &Seen, model: &str, ending: Ending) -> Ending {
        if seen.usage.is_none() {
            let chunk = ChatCompletionChunk::usage(
                seen.id.clone().unwrap_or_else(completion_id),
                unix_seconds(),
                model,
                Usage::new(self.prompt_tokens, seen.tokens),
            );
            if !deliver(tx, json_event(&chunk), self.idle).await {
                return Ending::Abandoned;
            }
        }
        if !deliver(tx, Event::default().data(DONE), self.idle).await {
            return Ending::Abandoned;
        }
        ending
    }

    /// Keeps a completed stream's text for the cache tier.
    fn remember(&self, seen: &Seen, live: &LiveStream) {
        let Some(key) = self.key.clone() else {
            return;
        };
        let Some(text) = seen.text.clone().filter(|t| !t.is_empty()) else {
            return;
        };
        let answer = WholeAnswer::text(
            text,
            live.model.clone(),
            seen.tokens,
            live.served_by.clone(),
        );
        self.gateway.cache.remember_stream(key, answer);
    }
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            id: None,
            text: Some(String::new()),
            tokens: 0,
            usage: None,
            finished: false,
        }
    }
}

impl Seen {
    fn observe(&mut self, chunk: &crate::upstream::Chunk) {
        if self.id.is_none() {
            self.id = serde_json::from_str::<Value>(&chunk.raw)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
        }
        if let Some(text) = &chunk.text {
            if let Some(kept) = &mut self.text {
                if kept.len() + text.len() > MAX_CACHED_ANSWER {
                    self.text = None;
                } else {
                    kept.push_str(text);
                }
            }
            self.tokens = self.tokens.saturating_add(1);
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        self.finished |= chunk.finished;
    }
}

/// Hands `event` to the client's connection; false when the client left, or stopped reading
/// for longer than `patience` (a stalled reader must not hold the upstream and a slot).
async fn deliver(tx: &Sender, event: Event, patience: Duration) -> bool {
    matches!(
        tokio::time::timeout(patience, tx.send(Ok(event))).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests;
