//! Streaming a chat completion as server-sent events, faults included.
//!
//! A role chunk, one chunk per token every `SIM_TOKEN_INTERVAL_MS`, a final chunk with
//! `finish_reason`, an optional usage chunk, then `data: [DONE]`. Stream faults bend this:
//! a slow first token, a stall, a malformed event, no `[DONE]`, or a cut (the body ends
//! with an error, so the connection closes without the final chunk).

use std::time::{Duration, Instant};

use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use llm_api::openai::{ChatCompletionChunk, DONE, Delta, Usage, unix_seconds};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::chat::ENDPOINT;
use crate::faults::StreamFaults;
use crate::sim::Generation;
use crate::state::{AppState, InFlightGuard};

/// Everything a stream needs; the stream owns it until it ends.
pub struct StreamPlan {
    /// For metrics and the token interval.
    pub state: AppState,
    /// The completion id, on every chunk.
    pub id: String,
    /// What to send.
    pub generation: Generation,
    /// Sent as a last chunk when the client asked for it.
    pub usage: Option<Usage>,
    /// How to misbehave.
    pub faults: StreamFaults,
    /// When the request arrived.
    pub started: Instant,
    /// Counts the stream as in flight until it ends.
    pub in_flight: InFlightGuard,
}

/// Why a stream was cut on purpose.
#[derive(Debug, thiserror::Error)]
#[error("stream cut by an injected fault")]
pub struct StreamCut;

type Item = Result<Event, StreamCut>;

/// The SSE response; the events are produced by a task that stops if the client leaves.
pub fn respond(plan: StreamPlan) -> Response {
    let (tx, rx) = mpsc::channel::<Item>(16);
    tokio::spawn(produce(plan, tx));
    Sse::new(ReceiverStream::new(rx)).into_response()
}

/// The client went away: the stream is over.
struct Gone;

/// The chunks of one completion: its id, creation time and model on each.
struct Chunks {
    id: String,
    created: u64,
    model: String,
}

impl Chunks {
    /// A delta chunk (with `finish`), or the usage chunk when `usage` is given alone.
    fn event(&self, delta: Delta, finish: Option<&str>, usage: Option<Usage>) -> Event {
        let (id, model) = (self.id.clone(), self.model.clone());
        let chunk = match usage {
            Some(usage) if finish.is_none() && delta == Delta::default() => {
                ChatCompletionChunk::usage(id, self.created, model, usage)
            }
            _ => ChatCompletionChunk::delta(id, self.created, model, delta, finish),
        };
        Event::default()
            .json_data(&chunk)
            .unwrap_or_else(|_| Event::default().data("{}"))
    }
}

async fn produce(plan: StreamPlan, tx: mpsc::Sender<Item>) {
    let StreamPlan {
        state,
        id,
        generation,
        usage,
        faults,
        started,
        in_flight,
    } = plan;
    let chunks = Chunks {
        id,
        created: unix_seconds(),
        model: state.config.model_name.clone(),
    };
    let interval = state.sim.token_interval();
    let status = match play(&tx, &chunks, &generation, usage, &faults, interval).await {
        Ok(()) => 200,
        Err(Gone) => 499,
    };
    state.metrics.observe(ENDPOINT, status, started.elapsed());
    drop(in_flight);
}

/// The whole stream: role, tokens with the faults at their positions, the final chunk,
/// usage, `[DONE]`.
async fn play(
    tx: &mpsc::Sender<Item>,
    chunks: &Chunks,
    generation: &Generation,
    usage: Option<Usage>,
    faults: &StreamFaults,
    interval: Duration,
) -> Result<(), Gone> {
    let role = Delta {
        role: Some("assistant".to_owned()),
        content: Some(String::new()),
    };
    send(tx, chunks.event(role, None, None)).await?;
    if let Some(delay) = faults.slow_first_token {
        pause(tx, delay).await?;
    }
    let total = generation.len();
    // Positions 0..=total: a fault set at or past the end plays before the final chunk.
    for sent in 0..=total {
        if let Position::Cut = faults_at(tx, faults, sent, total).await? {
            return Ok(());
        }
        let Some(token) = generation.tokens.get(sent as usize) else {
            break;
        };
        if sent > 0 && !interval.is_zero() {
            pause(tx, interval).await?;
        }
        let delta = Delta {
            role: None,
            content: Some(token.clone()),
        };
        send(tx, chunks.event(delta, None, None)).await?;
    }
    let finish = Some(generation.finish_reason);
    send(tx, chunks.event(Delta::default(), finish, None)).await?;
    if let Some(usage) = usage {
        send(tx, chunks.event(Delta::default(), None, Some(usage))).await?;
    }
    if faults.no_done {
        tracing::warn!("fault: ending the stream without [DONE]");
        return Ok(());
    }
    send(tx, Event::default().data(DONE)).await
}

/// What the faults did at one position of the stream.
enum Position {
    /// The stream goes on.
    Continue,
    /// The stream was cut.
    Cut,
}

/// Plays the faults set at position `sent` of `total` tokens: a cut, a malformed event, a
/// stall.
async fn faults_at(
    tx: &mpsc::Sender<Item>,
    faults: &StreamFaults,
    sent: u32,
    total: u32,
) -> Result<Position, Gone> {
    let here = |after: u32| after == sent || (sent == total && after > total);
    if faults.cut_after.is_some_and(here) {
        tracing::warn!(after_tokens = sent, "fault: cutting the stream");
        cut(tx).await;
        return Ok(Position::Cut);
    }
    if faults.malformed_after.is_some_and(here) {
        tracing::warn!(after_tokens = sent, "fault: sending a malformed event");
        send(tx, Event::default().data("{\"choices\": [{\"delta\": ")).await?;
    }
    if let Some((after, stall)) = faults.stall
        && here(after)
    {
        tracing::warn!(after_tokens = sent, "fault: stalling the stream");
        pause(tx, stall).await?;
    }
    Ok(Position::Continue)
}

/// Sends `event`; `Gone` when the client left.
async fn send(tx: &mpsc::Sender<Item>, event: Event) -> Result<(), Gone> {
    tx.send(Ok(event)).await.map_err(|_| Gone)
}

/// Waits `duration`, or less if the client goes away; `Gone` when it went away.
async fn pause(tx: &mpsc::Sender<Item>, duration: Duration) -> Result<(), Gone> {
    tokio::select! {
        () = tokio::time::sleep(duration) => Ok(()),
        () = tx.closed() => Err(Gone),
    }
}

/// Ends the body with an error, which makes hyper drop the connection, but only once the
/// chunks already sent left hyper's buffer: hyper flushes when the body has nothing more to
/// give and throws its unflushed buffer away on an error, so cutting at once would lose
/// them. Waiting for the channel to drain, then a moment with the body idle, lets it flush.
async fn cut(tx: &mpsc::Sender<Item>) {
    let deadline = tokio::time::Instant::now() + FLUSH_WAIT;
    while tx.capacity() < tx.max_capacity() && tokio::time::Instant::now() < deadline {
        if pause(tx, Duration::from_millis(1)).await.is_err() {
            return;
        }
    }
    if pause(tx, IDLE_BEFORE_CUT).await.is_ok() {
        let _ = tx.send(Err(StreamCut)).await;
    }
}

/// The longest wait for the client to take the chunks before a cut.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// How long the body stays idle before a cut, for hyper to flush what it holds.
const IDLE_BEFORE_CUT: Duration = Duration::from_millis(100);
