//! `POST /v1/chat/completions` (whole answers and server-sent events) and `GET /v1/models`,
//! OpenAI-compatible, through the model's route.
//!
//! Stream safety, in the order a stream lives:
//! 1. Until the first token nothing is sent to the client: the pools fail over on an error
//!    status, a reset, a stream that ends early, or no token within the first-token limit.
//! 2. Then events are relayed as the upstream wrote them; a malformed one is skipped
//!    (counted, logged) and the stream goes on.
//! 3. `[DONE]` ends it; a body that ends without `[DONE]` after a finished choice is
//!    finalised at once. Usage is always the last chunk before `[DONE]` (the upstream's, or
//!    the gateway's estimate).
//! 4. A stream that breaks, ends before its answer finished, or stays silent longer than
//!    the idle limit ends with an error event and no `[DONE]`: a truncated answer never
//!    looks complete.
//!
//! A stream answered by a fallback tier (cache, template) is the whole answer as a short
//! stream. Answers carry `x-served-by` and, from a fallback, `x-fallback-tier`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http_edge::{BadInput, JsonBody};
use llm_api::openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice, DONE,
    Delta, Model, ModelList, OpenAiError, Usage,
};
use resilience_core::fallback::{CacheKey, FallbackError};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::generate::log_fallback;
use super::tag;
use crate::metrics::Answered;
use crate::middleware::{Occupancy, RequestId};
use crate::pool::{Answer, AttemptRecord, GatewayRequest, LiveStream, StreamEnd};
use crate::state::Gateway;
use crate::upstream::{Payload, StreamEvent, UpstreamError, count_words};

/// The metrics label of this endpoint.
const ENDPOINT: &str = "chat_completions";

/// The longest streamed answer kept for the cache tier; a longer one is not cached (the
/// relay must not grow without bound on an endless stream).
const MAX_CACHED_ANSWER: usize = 64 * 1024;

/// Malformed events tolerated in one stream; past this the upstream is broken.
const MAX_MALFORMED_EVENTS: u32 = 32;

/// Events buffered between the relay task and the client connection.
const RELAY_BUFFER: usize = 32;

/// Answers a chat completion from the model's route (see the module's rules).
pub async fn chat_completions(
    State(gateway): State<Arc<Gateway>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: Result<JsonBody<ChatCompletionRequest>, BadInput>,
) -> Response {
    let started = Instant::now();
    let request = match super::validated(&gateway, body, ChatCompletionRequest::validate) {
        Ok(request) => request,
        Err(bad) => return bad.openai(),
    };
    let stream = request.stream;
    let req = GatewayRequest::new(
        Payload::Chat(request),
        request_id.clone(),
        gateway.config.request_timeout(),
    );
    let (_route, result) = gateway.routes.serve(&req).await;
    match result {
        Ok(served) => {
            log_fallback(&served, &request_id);
            let mut response = match served.response.stream.as_ref().and_then(|s| s.take()) {
                Some(live) => relay(&gateway, &req, live),
                None if stream => replay(&served.response, &req),
                None => Json(whole(&served.response, &req)).into_response(),
            };
            if !stream && served.tier.is_live() {
                gateway.share_answer(&req, &served.response);
            }
            gateway.metrics.answered(Answered {
                service: &served.response.served_by,
                model: &served.response.model_used,
                status: 200,
                tier: served.tier.as_str(),
                endpoint: ENDPOINT,
                took: started.elapsed(),
            });
            tag(&mut response, &served);
            response
        }
        Err(FallbackError::Rejected(failure)) => {
            let response = refused(req.log.last_refusal(), &failure.error.to_string());
            gateway
                .metrics
                .gateway_error("rejected_upstream", response.status().as_u16());
            response
        }
        Err(FallbackError::AllTiersFailed(failed)) => {
            gateway.metrics.gateway_error("exhausted", 503);
            tracing::error!(request_id = %request_id, error = %failed, "no tier could answer");
            exhausted(
                req.log.last(),
                gateway.config.args.circuit_breaker_recovery_timeout,
            )
        }
    }
}

/// The models clients may ask for: every route, and the models discovered instances serve
/// (which the `default` route takes).
pub async fn models(State(gateway): State<Arc<Gateway>>) -> Json<ModelList> {
    let mut data: Vec<Model> = Vec::new();
    let mut add = |id: String, owned_by: &str| {
        if !data.iter().any(|m| m.id == id) {
            data.push(Model {
                id,
                object: "model".to_owned(),
                created: 0,
                owned_by: owned_by.to_owned(),
            });
        }
    };
    for route in gateway.routes.iter() {
        add(route.name.clone(), "gateway");
    }
    for pool in gateway.pools.values() {
        for instance in pool.instances() {
            if let Some(model) = instance.model {
                add(model, "llm-service");
            }
        }
    }
    Json(ModelList {
        object: "list".to_owned(),
        data,
    })
}

/// A whole answer: the upstream's own completion when it sent one, else one built from the
/// answer (fallback tiers, endpoints reached through `/generate`'s shape).
fn whole(answer: &Answer, req: &GatewayRequest) -> ChatCompletion {
    if let Some(completion) = &answer.completion {
        let mut completion = completion.as_ref().clone();
        if completion.usage.is_none() {
            completion.usage = Some(estimate(req, answer.tokens_used));
        }
        return completion;
    }
    ChatCompletion {
        id: completion_id(),
        object: "chat.completion".to_owned(),
        created: unix_seconds(),
        model: answer.model_used.clone(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".to_owned(),
                content: Some(answer.response.clone()),
                extra: Map::new(),
            },
            finish_reason: Some("stop".to_owned()),
            logprobs: None,
        }],
        usage: Some(
            answer
                .usage
                .unwrap_or_else(|| estimate(req, answer.tokens_used)),
        ),
        system_fingerprint: None,
    }
}

/// A whole answer as a stream: role, content, finish, usage, `[DONE]`.
fn replay(answer: &Answer, req: &GatewayRequest) -> Response {
    let id = completion_id();
    let created = unix_seconds();
    let model = answer.model_used.as_str();
    let chunk = |delta: Delta, finish: Option<&str>| {
        ChatCompletionChunk::delta(id.as_str(), created, model, delta, finish)
    };
    let usage = answer
        .usage
        .unwrap_or_else(|| estimate(req, answer.tokens_used));
    let chunks = [
        chunk(
            Delta {
                role: Some("assistant".to_owned()),
                content: Some(String::new()),
            },
            None,
        ),
        chunk(
            Delta {
                role: None,
                content: Some(answer.response.clone()),
            },
            None,
        ),
        chunk(Delta::default(), Some("stop")),
        ChatCompletionChunk::usage(id.as_str(), created, model, usage),
    ];
    let events: Vec<Result<Event, Infallible>> = chunks
        .iter()
        .map(|c| Ok(json_event(c)))
        .chain(std::iter::once(Ok(Event::default().data(DONE))))
        .collect();
    Sse::new(futures::stream::iter(events)).into_response()
}

/// Relays a live upstream stream to the client (rules 2-4 of the module).
fn relay(gateway: &Arc<Gateway>, req: &GatewayRequest, live: LiveStream) -> Response {
    let (tx, rx) = mpsc::channel(RELAY_BUFFER);
    let relay = Relay {
        gateway: Arc::clone(gateway),
        idle: gateway.config.idle_timeout(),
        prompt_tokens: prompt_tokens(req),
        key: crate::redis_cache::cache_key(req),
        request_id: req.request_id.clone(),
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
            let message = match &error {
                UpstreamError::Timeout(idle) => format!(
                    "the upstream stream stalled: no event for {} ms",
                    idle.as_millis()
                ),
                other => format!("the upstream stream broke: {other}"),
            };
            tracing::error!(request_id = %self.request_id, upstream = %service, %error,
                "stream interrupted after it reached the client; ending it with an error event");
            let body = OpenAiError::new(
                "upstream_error",
                message,
                None,
                Some("stream_interrupted".to_owned()),
            );
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
        let answer = Answer::text(
            text,
            live.model.clone(),
            seen.tokens,
            live.served_by.clone(),
        );
        if let Some(redis_cache) = &self.gateway.redis_cache {
            redis_cache.store_in_background(key.clone(), answer.clone());
        }
        self.gateway.cache.insert(key, answer);
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

/// A refusal of the request itself, passed through: the upstream's status (400 unless it
/// said another 4xx), message and code.
fn refused(refusal: Option<AttemptRecord>, fallback_message: &str) -> Response {
    let (status, message, code) = match refusal {
        Some(r) => (
            r.status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(StatusCode::is_client_error)
                .unwrap_or(StatusCode::BAD_REQUEST),
            r.message,
            r.code,
        ),
        None => (StatusCode::BAD_REQUEST, fallback_message.to_owned(), None),
    };
    let body = OpenAiError::new("invalid_request_error", message, None, code);
    (status, Json(body)).into_response()
}

/// Nothing could answer: the last upstream failure surfaced as it was — its status for a
/// 429 or 5xx, 504 for silence, 502 for a broken answer, 503 when nothing could be tried —
/// with its message and code, and `Retry-After`: the upstream's own when it gave one, else
/// `retry_after_s`.
fn exhausted(last: Option<AttemptRecord>, retry_after_s: u64) -> Response {
    let retry_after_s = last
        .as_ref()
        .and_then(|r| r.retry_after)
        .map_or(retry_after_s, |asked| asked.as_secs().max(1));
    let (status, message, code) = match last {
        Some(r) => {
            let status = match (r.status, r.error_type) {
                (Some(s), _) if s == 429 || s >= 500 => {
                    StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY)
                }
                (_, "timeout") => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            let code = r.code.unwrap_or_else(|| "upstream_error".to_owned());
            (status, format!("{}: {}", r.target, r.message), code)
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no upstream is available and no fallback could answer".to_owned(),
            "no_upstream_available".to_owned(),
        ),
    };
    let kind = if status == StatusCode::TOO_MANY_REQUESTS {
        "rate_limit_error"
    } else {
        "upstream_error"
    };
    let body = OpenAiError::new(kind, message, None, Some(code));
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    response
}

/// An SSE event carrying `value` as JSON.
fn json_event(value: &impl serde::Serialize) -> Event {
    Event::default().data(serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned()))
}

/// The gateway's usage estimate: prompt words and the answer's tokens.
fn estimate(req: &GatewayRequest, completion_tokens: u32) -> Usage {
    Usage::new(prompt_tokens(req), completion_tokens)
}

fn prompt_tokens(req: &GatewayRequest) -> u32 {
    match &req.payload {
        Payload::Chat(chat) => chat
            .messages
            .iter()
            .map(|m| count_words(&m.text()))
            .fold(0, u32::saturating_add),
        Payload::Generate(generate) => count_words(&generate.prompt),
    }
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Chunk;

    fn chunk(text: &str, finished: bool) -> Chunk {
        Chunk {
            raw: format!(r#"{{"id":"c-1","choices":[{{"delta":{{"content":"{text}"}}}}]}}"#),
            text: Some(text.to_owned()),
            has_content: true,
            finished,
            usage: None,
            model: None,
        }
    }

    #[test]
    fn the_relay_keeps_the_answer_for_the_cache_only_up_to_its_bound() {
        let mut seen = Seen::default();
        seen.observe(&chunk("Hello", false));
        seen.observe(&chunk(" world", true));
        assert_eq!(seen.text.as_deref(), Some("Hello world"));
        assert_eq!(seen.id.as_deref(), Some("c-1"));
        assert_eq!(seen.tokens, 2);
        assert!(seen.finished);

        let big = "x".repeat(MAX_CACHED_ANSWER / 2 + 1);
        seen.observe(&chunk(&big, false));
        seen.observe(&chunk(&big, false));
        assert_eq!(seen.text, None, "too long to cache: dropped, not grown");
        seen.observe(&chunk("more", false));
        assert_eq!(seen.text, None);
        assert_eq!(seen.tokens, 5, "tokens are still counted for usage");
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_let_go_after_the_idle_limit() {
        let (tx, _rx) = mpsc::channel(1);
        assert!(deliver(&tx, Event::default().data("1"), Duration::from_millis(50)).await);
        let started = std::time::Instant::now();
        let delivered = deliver(&tx, Event::default().data("2"), Duration::from_millis(50)).await;
        assert!(!delivered, "the buffer is full and nobody reads");
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(_rx);
        assert!(!deliver(&tx, Event::default().data("3"), Duration::from_secs(5)).await);
    }

    #[test]
    fn exhaustion_surfaces_the_last_upstream_error_with_a_fitting_status() {
        let record = |status: Option<u16>, error_type: &'static str| AttemptRecord {
            target: "llm-1".into(),
            status,
            code: None,
            message: "boom".into(),
            refused: false,
            error_type,
            retry_after: None,
        };
        for (last, expected) in [
            (Some(record(Some(503), "http_5xx")), 503),
            (Some(record(Some(429), "http_429")), 429),
            (Some(record(None, "timeout")), 504),
            (Some(record(None, "connect")), 502),
            (Some(record(Some(404), "http_4xx")), 502),
            (None, 503),
        ] {
            let response = exhausted(last, 7);
            assert_eq!(response.status().as_u16(), expected);
            assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        }
        let asked = AttemptRecord {
            retry_after: Some(Duration::from_secs(20)),
            ..record(Some(429), "http_429")
        };
        let response = exhausted(Some(asked), 7);
        assert_eq!(
            response.headers()[header::RETRY_AFTER],
            "20",
            "the upstream's own wait"
        );
    }
}
