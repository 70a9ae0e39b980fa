//! The stream client: streamed chat completions over kept-alive connections, measuring the
//! time to the first content token (TTFT) and the gaps between later chunks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use http_body_util::BodyExt as _;
use tokio::time::Instant;

use super::http::{Connection, JsonPost};
use super::pacer::histogram;

/// The longest one stream may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// What a batch of streams measured.
#[derive(Debug, Clone)]
pub struct Streamed {
    /// Streams that delivered a first content token and ended.
    pub ok: u64,
    /// Streams that failed (status, transport, no content, timeout).
    pub errors: u64,
    /// Time to first content token, µs.
    pub ttft: Histogram<u64>,
    /// Gaps between chunks after the first content token, µs.
    pub gaps: Histogram<u64>,
}

impl Streamed {
    /// An empty result.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            ok: 0,
            errors: 0,
            ttft: histogram()?,
            gaps: histogram()?,
        })
    }

    /// Adds `other`'s streams.
    pub fn add(&mut self, other: &Self) -> anyhow::Result<()> {
        self.ok += other.ok;
        self.errors += other.errors;
        self.ttft.add(&other.ttft)?;
        self.gaps.add(&other.gaps)?;
        Ok(())
    }
}

/// True when a chunk of server-sent events holds a non-empty `"content"` delta.
pub fn has_content(chunk: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\":\"";
    chunk
        .windows(KEY.len() + 1)
        .any(|w| w.starts_with(KEY) && w.last() != Some(&b'"'))
}

/// Runs `streams` streams of `post`, `concurrency` at a time (one connection each).
pub async fn run(post: JsonPost, streams: usize, concurrency: usize) -> anyhow::Result<Streamed> {
    let next = Arc::new(AtomicUsize::new(0));
    let post = Arc::new(post);
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, streams.max(1)) {
        let (next, post) = (Arc::clone(&next), Arc::clone(&post));
        workers.push(tokio::spawn(async move {
            let mut result = Streamed::new()?;
            let mut connection: Option<Connection> = None;
            while next.fetch_add(1, Ordering::Relaxed) < streams {
                let measured =
                    tokio::time::timeout(STREAM_TIMEOUT, one(&post, &mut connection, &mut result))
                        .await;
                if !matches!(measured, Ok(Ok(true))) {
                    result.errors += 1;
                    connection = None;
                }
            }
            anyhow::Ok(result)
        }));
    }
    let mut total = Streamed::new()?;
    for worker in workers {
        total.add(&worker.await??)?;
    }
    Ok(total)
}

/// One stream: `Ok(true)` when it delivered content and ended.
async fn one(
    post: &JsonPost,
    connection: &mut Option<Connection>,
    result: &mut Streamed,
) -> anyhow::Result<bool> {
    let conn = match connection.as_mut() {
        Some(conn) => conn,
        None => connection.insert(Connection::open(post.addr).await?),
    };
    let started = Instant::now();
    let answer = conn.send(post).await?;
    if !answer.status().is_success() {
        answer.into_body().collect().await?;
        return Ok(false);
    }
    let mut body = answer.into_body();
    let mut last: Option<Instant> = None;
    let mut ttft = None;
    let mut gaps = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = Instant::now();
        match last {
            None if has_content(&data) => {
                ttft = Some(now - started);
                last = Some(now);
            }
            None => {}
            Some(previous) => {
                gaps.push(now - previous);
                last = Some(now);
            }
        }
    }
    let Some(ttft) = ttft else {
        return Ok(false);
    };
    result.ok += 1;
    result.ttft.saturating_record(micros(ttft));
    for gap in gaps {
        result.gaps.saturating_record(micros(gap));
    }
    Ok(true)
}

/// `d` in whole µs, at least 1.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}
