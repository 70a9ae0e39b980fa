//! The relay of a live upstream stream to the client, one task per stream (rules 2-4 of
//! the chat module): events go out as the upstream wrote them; a malformed one is skipped
//! (counted, logged) up to a bound; `[DONE]` ends it, and a body that ends without `[DONE]`
//! after a finished choice is finalised; usage is always the last chunk before `[DONE]` (the
//! upstream's, or an estimate). A client that stops reading for longer than the idle limit
//! is let go. A completed stream's text is kept for the cache tier, up to a bound.
//!
//! A stream that breaks, ends truncated or stays silent past the idle limit is continued
//! when `resilience_core::policy::continuation::decide` allows it: the rest of the answer
//! is asked of the route's live targets (never the instance that broke), with the delivered
//! text as an assistant prefill or, for a target that takes none, by restarting the answer
//! there and splicing it (`Splice`). The client sees one stream: the first attempt's `id`
//! on every chunk, no role chunk again, one `finish_reason`, then the gateway's usage chunk
//! (`prompt_tokens` of the attempt that finished, `completion_tokens` of all the text
//! delivered — the upstreams' counts where they gave them, the delivered chunks otherwise)
//! naming the targets that served under `x_gateway`, and `[DONE]`. A stream that is not
//! continued, or whose restarted answer says something else, ends with an error event and
//! no `[DONE]`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use http_edge::otel::{self, Kind};
use llm_api::openai::{ChatCompletionChunk, DONE, Usage, completion_id, unix_seconds};
use resilience_core::fallback::CacheKey;
use resilience_core::policy::continuation::{self, Broken, GiveUp, Resume, Splice, Spliced};
use resilience_core::retry::RetryBudget;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::chat::{json_event, prompt_tokens};
use super::errors::interrupted_event;
use crate::answer::{Answer, WholeAnswer};
use crate::layers::Occupancy;
use crate::layers::rate_limit::TokenCharge;
use crate::pool::{Continuation, GatewayRequest, LiveStream, StreamEnd};
use crate::routing::{ModelLabel, Route};
use crate::state::Gateway;
use crate::upstream::{Chunk, Payload, StreamEvent, UpstreamError, count_words};

/// The longest streamed answer kept for the cache tier; a longer one is not cached (the
/// relay must not grow without bound on an endless stream).
const MAX_CACHED_ANSWER: usize = 64 * 1024;

/// The longest delivered text kept to continue a broken stream with; past it a broken
/// stream ends as it did before continuations.
const MAX_CONTINUED_ANSWER: usize = 256 * 1024;

/// Malformed events tolerated in one stream; past this the upstream is broken.
const MAX_MALFORMED_EVENTS: u32 = 32;

/// Events buffered between the relay task and the client connection.
const RELAY_BUFFER: usize = 32;

/// Relays a live upstream stream to the client (the module's rules); `req` is the request
/// and `route` the route that served it, for continuations.
pub(super) fn relay(
    gateway: &Arc<Gateway>,
    req: GatewayRequest,
    live: LiveStream,
    charge: Option<TokenCharge>,
    model_label: ModelLabel,
    route: Arc<Route>,
) -> Response {
    let (tx, rx) = mpsc::channel(RELAY_BUFFER);
    let single_choice = match &req.payload {
        Payload::Chat(chat) => chat.extra.get("n").and_then(Value::as_u64).unwrap_or(1) <= 1,
        Payload::Generate(_) => true,
    };
    let relay = Relay {
        gateway: Arc::clone(gateway),
        idle: gateway.settings.idle_timeout,
        prompt_tokens: prompt_tokens(&req),
        key: crate::cache::cache_key(&req),
        request_id: req.request_id.clone(),
        charge,
        model_label,
        single_choice,
        req,
        route,
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
    /// Whether the request asked for one choice (`n` ≤ 1): only such streams continue.
    single_choice: bool,
    /// The request, asked again for a continuation.
    req: GatewayRequest,
    /// The route that served it.
    route: Arc<Route>,
}

/// What the relay delivered of the answer, over every attempt.
struct Seen {
    id: Option<String>,
    /// The text delivered; `None` once it outgrew [`MAX_CONTINUED_ANSWER`].
    text: Option<String>,
    /// Chunks that carried text to the client.
    tokens: u32,
    /// The upstream's usage chunk, in a stream that was never continued.
    usage: Option<Usage>,
    finished: bool,
    /// Whether a tool call went out.
    tool_call: bool,
}

/// One upstream stream of the answer: the first, or a continuation.
#[derive(Default)]
struct Attempt {
    /// How it was asked for; `None` for the first.
    resumed: Option<Resume>,
    /// For a restarted answer, what of it the client has already.
    splice: Option<Splice>,
    /// Chunks with text it delivered to the client.
    delivered: u32,
    /// Chunks with text the splice held back (the client had them).
    skipped: u32,
    /// The usage it reported (a continuation's is not forwarded).
    usage: Option<Usage>,
    /// Words of the prefill it was sent (its prompt's part beyond the request's).
    prefill_words: u32,
}

/// The continuations of the answer so far.
#[derive(Default)]
struct Course {
    /// Each break, in order.
    breaks: Vec<Break>,
    /// The streams' targets, in order.
    served_by: Vec<String>,
    /// Chunks with text the broken attempts delivered.
    earlier_tokens: u32,
}

/// Where a stream broke and how it went on (the final chunk's `x_gateway.breaks`).
#[derive(Debug, Clone, Serialize)]
struct Break {
    /// The target whose stream broke.
    served_by: String,
    /// Text chunks the client had when it broke.
    after_tokens: u32,
    /// `transport`, `timeout`, `malformed`…
    cause: &'static str,
    /// `prefill` or `restart`.
    resumed: &'static str,
}

/// The final chunk's extension in a continued stream.
#[derive(Debug, Serialize)]
struct Extension<'a> {
    served_by: &'a [String],
    breaks: &'a [Break],
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
    /// Broke, stalled or ended truncated.
    Interrupted(UpstreamError),
    /// A restarted answer that does not begin with the delivered text.
    Diverged,
}

impl Ending {
    fn label(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Finalized => "finalized",
            Self::Abandoned => "abandoned",
            Self::Diverged => "diverged",
            Self::Interrupted(_) => "interrupted",
        }
    }
}

impl Relay {
    async fn run(self, mut live: LiveStream, tx: Sender) {
        let gateway = Arc::clone(&self.gateway);
        let metrics = &gateway.metrics;
        let mut seen = Seen::default();
        let mut course = Course::default();
        let mut attempt = Attempt::default();
        let ending = loop {
            let service = live.served_by.clone();
            metrics.first_token(&service, live.stream.first_token_after);
            for _ in 0..live.stream.skipped {
                metrics.malformed_event(&service);
            }
            course.served_by.push(service.clone());
            let ending = self
                .stream(&mut live, &tx, &mut seen, (&course, &mut attempt))
                .await;
            metrics.stream_ended(&service, ending.label());
            let error = match ending {
                Ending::Interrupted(error) => error,
                Ending::Diverged => {
                    let error = UpstreamError::Malformed(
                        "the restarted answer does not begin with the text delivered".to_owned(),
                    );
                    self.give_up(&tx, &service, &error, GiveUp::Mismatch).await;
                    break Ending::Diverged;
                }
                other => break other,
            };
            let budget = live.budget.clone();
            let next = tokio::select! {
                next = self.continuation(&seen, &course, (&service, budget), &error) => Some(next),
                () = tx.closed() => None,
            };
            // The client left while the rest was being asked for: the stream broke all the same.
            let Some(next) = next else {
                break Ending::Interrupted(error);
            };
            match next {
                Ok(next) => {
                    let how = next.resumed.unwrap_or(Resume::Restart);
                    course.breaks.push(Break {
                        served_by: service.clone(),
                        after_tokens: seen.tokens,
                        cause: error.class().as_str(),
                        resumed: how.as_str(),
                    });
                    course.earlier_tokens += attempt.delivered;
                    let outcome = match how {
                        Resume::Prefill => "continued",
                        Resume::Restart => "spliced",
                    };
                    metrics.stream_continuation(outcome, "none");
                    tracing::warn!(request_id = %self.request_id,
                        trace_id = self.req.trace.trace_id.hex().as_str(), upstream = %service,
                        after_tokens = seen.tokens, %error, continued_on = %next.served_by,
                        how = how.as_str(), "stream broke after it reached the client; continued");
                    attempt = Attempt::resuming(how, &seen);
                    std::mem::replace(&mut live, next).finish(StreamEnd::Failed(error));
                }
                Err(reason) => {
                    self.give_up(&tx, &service, &error, reason).await;
                    break Ending::Interrupted(error);
                }
            }
        };
        let usage = self.usage(&seen, &course, &attempt);
        let service = live.served_by.clone();
        metrics.tokens_processed(&service, self.model_label.as_str(), usage);
        if let Some(charge) = &self.charge {
            charge.clone().charge(usage.total_tokens);
        }
        match ending {
            Ending::Completed | Ending::Finalized => {
                self.remember(&seen, &live);
                live.finish(StreamEnd::Completed);
            }
            Ending::Abandoned | Ending::Diverged => live.finish(StreamEnd::Abandoned),
            Ending::Interrupted(error) => live.finish(StreamEnd::Failed(error)),
        }
    }

    /// Ends a broken stream that is not continued: counted with `reason`, logged, and the
    /// error event sent (the client may be gone already; the stream is over either way).
    async fn give_up(&self, tx: &Sender, service: &str, error: &UpstreamError, reason: GiveUp) {
        self.gateway
            .metrics
            .stream_continuation("gave_up", reason.as_str());
        tracing::error!(request_id = %self.request_id,
            trace_id = self.req.trace.trace_id.hex().as_str(), upstream = %service,
            %error, reason = reason.as_str(),
            "stream interrupted after it reached the client and not continued; \
             ending it with an error event");
        let body = interrupted_event(error, &self.request_id);
        deliver(tx, json_event(&body), self.idle).await;
    }

    /// Relays one upstream stream's events until it ends.
    async fn stream(
        &self,
        live: &mut LiveStream,
        tx: &Sender,
        seen: &mut Seen,
        (course, attempt): (&Course, &mut Attempt),
    ) -> Ending {
        for chunk in std::mem::take(&mut live.stream.head) {
            if let Some(ending) = self.forward(chunk, tx, seen, attempt).await {
                return ending;
            }
        }
        let service = live.served_by.clone();
        let mut skipped = 0u32;
        loop {
            let event = tokio::select! {
                event = live.stream.next(self.idle) => event,
                () = tx.closed() => return Ending::Abandoned,
            };
            return match event {
                StreamEvent::Data(chunk) => {
                    if let Some(ending) = self.forward(chunk, tx, seen, attempt).await {
                        return ending;
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
                    Ending::Interrupted(UpstreamError::Malformed(format!(
                        "{skipped} malformed events"
                    )))
                }
                StreamEvent::Done if attempt.splice.as_ref().is_some_and(|s| !s.is_done()) => {
                    Ending::Diverged
                }
                StreamEvent::Done => {
                    self.close(tx, seen, &live.model, Ending::Completed, (course, attempt))
                        .await
                }
                StreamEvent::End if seen.finished => {
                    tracing::warn!(request_id = %self.request_id, upstream = %service,
                        "stream ended without [DONE] after its answer finished; finalised");
                    self.close(tx, seen, &live.model, Ending::Finalized, (course, attempt))
                        .await
                }
                StreamEvent::End => Ending::Interrupted(UpstreamError::Connect(
                    "the upstream stream ended before the answer finished".to_owned(),
                )),
                StreamEvent::Failed(error) => Ending::Interrupted(error),
            };
        }
    }

    /// Hands one chunk to the client: as it is in the first attempt; in a continuation
    /// with the stream's `id`, without its role chunk or usage, and spliced when restarted.
    /// `Some` when the stream is over.
    async fn forward(
        &self,
        chunk: Chunk,
        tx: &Sender,
        seen: &mut Seen,
        attempt: &mut Attempt,
    ) -> Option<Ending> {
        if attempt.resumed.is_none() {
            seen.observe(chunk.text.as_deref(), &chunk);
            if chunk.text.is_some() {
                attempt.delivered += 1;
            }
            return (!deliver(tx, Event::default().data(chunk.raw), self.idle).await)
                .then_some(Ending::Abandoned);
        }
        if chunk.usage.is_some() {
            attempt.usage = chunk.usage;
        }
        if !chunk.has_content {
            return None; // a role chunk, or the usage the gateway reports itself
        }
        let mut text = chunk.text.as_deref();
        if let Some(splice) = &mut attempt.splice {
            let was_done = splice.is_done();
            match text.map(|t| splice.feed(t)) {
                Some(Spliced::Mismatch) => return Some(Ending::Diverged),
                Some(Spliced::Hold) => {
                    attempt.skipped += 1;
                    if !chunk.finished {
                        return None;
                    }
                    text = None;
                }
                Some(Spliced::Pass(rest)) => text = Some(rest),
                None => {}
            }
            if chunk.finished && !splice.is_done() {
                return Some(Ending::Diverged);
            }
            if !was_done && text.is_none() && !chunk.finished {
                return None;
            }
        }
        let id = seen.id.clone().unwrap_or_default();
        seen.observe(text, &chunk);
        if text.is_some() {
            attempt.delivered += 1;
        }
        let event = continued_event(&chunk.raw, &id, text);
        (!deliver(tx, event, self.idle).await).then_some(Ending::Abandoned)
    }

    /// The next stream of the answer, from the route's live targets, when the policy allows
    /// a continuation; or why not.
    async fn continuation(
        &self,
        seen: &Seen,
        course: &Course,
        (broke_at, budget): (&str, Option<Arc<RetryBudget>>),
        error: &UpstreamError,
    ) -> Result<LiveStream, GiveUp> {
        let requested = match &self.req.payload {
            Payload::Chat(chat) => chat.requested_tokens(),
            Payload::Generate(_) => None,
        };
        let broken = Broken {
            continuations: u32::try_from(course.breaks.len()).unwrap_or(u32::MAX),
            max_continuations: self.gateway.settings.max_continuations,
            text_only: self.single_choice && !seen.tool_call,
            text_kept: seen.text.is_some(),
            tokens_left: continuation::remaining_tokens(requested, seen.tokens),
            now: std::time::Instant::now(),
            deadline: self.req.deadline.into_std(),
        };
        let Some(budget) = budget else {
            return Err(GiveUp::NoTarget);
        };
        continuation::decide(&broken, &budget)?;
        let mut span = otel::start("stream.continuation", Kind::Internal, Some(self.req.trace));
        span.set_with("broke_at", || broke_at.to_owned());
        span.set("after_tokens", i64::from(seen.tokens));
        span.set("cause", error.class().as_str());
        let mut req = self.req.clone().in_trace(span.context());
        let mut avoid: Vec<String> = course.breaks.iter().map(|b| b.served_by.clone()).collect();
        avoid.push(broke_at.to_owned());
        req.continuation = Some(Arc::new(Continuation {
            delivered: seen.text.clone().unwrap_or_default(),
            delivered_tokens: seen.tokens,
            avoid,
        }));
        let (_, result) = self.gateway.routes.continue_on(&self.route, &req).await;
        let next = match result {
            Ok(served) => match served.response {
                Answer::Stream(next) => Ok(next),
                Answer::Whole(_) => Err(GiveUp::NoTarget),
            },
            Err(error) => {
                tracing::debug!(request_id = %self.request_id, %error, "no target continued the stream");
                Err(GiveUp::NoTarget)
            }
        };
        match &next {
            Ok(next) => {
                span.set_with("continued_on", || next.served_by.clone());
                span.set("how", next.resumed.unwrap_or(Resume::Restart).as_str());
            }
            Err(reason) => span.error(|| format!("not continued: {}", reason.as_str())),
        }
        span.end();
        next
    }

    /// What the client is told the answer used: the upstream's usage, else the estimate;
    /// for a continued stream, the prompt of the attempt that finished and the completion
    /// tokens of every text delivered (the module's rules).
    fn usage(&self, seen: &Seen, course: &Course, attempt: &Attempt) -> Usage {
        if course.breaks.is_empty() {
            return seen
                .usage
                .unwrap_or_else(|| Usage::new(self.prompt_tokens, seen.tokens));
        }
        let prompt = attempt.usage.map_or(
            self.prompt_tokens.saturating_add(attempt.prefill_words),
            |u| u.prompt_tokens,
        );
        let last = attempt.usage.map_or(attempt.delivered, |u| {
            u.completion_tokens.saturating_sub(attempt.skipped)
        });
        Usage::new(prompt, course.earlier_tokens.saturating_add(last))
    }

    /// Sends the usage chunk (the upstream's, or the gateway's when it sent none or the
    /// stream was continued) and `[DONE]`; `Abandoned` if the client left meanwhile.
    async fn close(
        &self,
        tx: &Sender,
        seen: &Seen,
        model: &str,
        ending: Ending,
        (course, attempt): (&Course, &Attempt),
    ) -> Ending {
        if attempt.resumed.is_some() || seen.usage.is_none() {
            let chunk = ChatCompletionChunk::usage(
                seen.id.clone().unwrap_or_else(completion_id),
                unix_seconds(),
                model,
                Usage::new(self.prompt_tokens, seen.tokens),
            );
            let event = match attempt.resumed {
                None => json_event(&chunk),
                Some(_) => self.final_chunk(chunk, seen, course, attempt),
            };
            if !deliver(tx, event, self.idle).await {
                return Ending::Abandoned;
            }
        }
        if !deliver(tx, Event::default().data(DONE), self.idle).await {
            return Ending::Abandoned;
        }
        ending
    }

    /// The usage chunk of a continued stream: its usage, and `x_gateway` naming the targets
    /// that served it and where it broke.
    fn final_chunk(
        &self,
        mut chunk: ChatCompletionChunk,
        seen: &Seen,
        course: &Course,
        attempt: &Attempt,
    ) -> Event {
        chunk.usage = Some(self.usage(seen, course, attempt));
        let extension = Extension {
            served_by: &course.served_by,
            breaks: &course.breaks,
        };
        let mut value = serde_json::to_value(&chunk).unwrap_or(Value::Null);
        if let (Some(object), Ok(extension)) =
            (value.as_object_mut(), serde_json::to_value(extension))
        {
            object.insert("x_gateway".to_owned(), extension);
        }
        json_event(&value)
    }

    /// Keeps a completed stream's text for the cache tier.
    fn remember(&self, seen: &Seen, live: &LiveStream) {
        let Some(key) = self.key.clone() else {
            return;
        };
        let Some(text) = seen
            .text
            .clone()
            .filter(|t| !t.is_empty() && t.len() <= MAX_CACHED_ANSWER)
        else {
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

impl Attempt {
    /// A continuation asked for as `how`, after what `seen` delivered.
    fn resuming(how: Resume, seen: &Seen) -> Self {
        let delivered = seen.text.as_deref().unwrap_or_default();
        Self {
            resumed: Some(how),
            splice: (how == Resume::Restart).then(|| Splice::new(delivered)),
            prefill_words: match how {
                Resume::Prefill => count_words(delivered),
                Resume::Restart => 0,
            },
            ..Self::default()
        }
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
            tool_call: false,
        }
    }
}

impl Seen {
    /// Notes a chunk that went to the client with `text` of its content.
    fn observe(&mut self, text: Option<&str>, chunk: &Chunk) {
        if self.id.is_none() {
            self.id = serde_json::from_str::<Value>(&chunk.raw)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
        }
        if let Some(text) = text {
            if let Some(kept) = &mut self.text {
                if kept.len() + text.len() > MAX_CONTINUED_ANSWER {
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
        self.tool_call |= chunk.tool_call;
    }
}

/// A continuation's chunk as the client gets it: the stream's `id`, and `text` as its
/// content (what the splice left of it).
fn continued_event(raw: &str, id: &str, text: Option<&str>) -> Event {
    let Ok(mut value) = serde_json::from_str::<Value>(raw) else {
        return Event::default().data(raw);
    };
    if let Some(object) = value.as_object_mut() {
        object.insert("id".to_owned(), Value::String(id.to_owned()));
        object.remove("usage");
    }
    if let Some(delta) = value
        .pointer_mut("/choices/0/delta")
        .and_then(Value::as_object_mut)
    {
        delta.remove("role");
        match text {
            Some(text) => {
                delta.insert("content".to_owned(), Value::String(text.to_owned()));
            }
            None => {
                delta.remove("content");
            }
        }
    }
    json_event(&value)
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
