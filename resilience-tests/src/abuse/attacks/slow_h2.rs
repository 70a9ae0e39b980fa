//! Slow streams over HTTP/2 (h2c, prior knowledge): one connection tries to open many
//! streams, each a valid POST whose body trickles a byte a second. A stream counts as
//! opened when the connection first asks its body for data (HTTP/2 sends a stream's data
//! only once the stream is open), so the report says how many streams the server let
//! open at once (an upper bound: a stream the server queues may be asked for data too).
//! Streams still open at the end count as queued by the server when others ended in time
//! ([`rules::queued_streams`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::StreamBody;
use hyper::body::{Bytes, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::raw;
use super::super::report::Findings;
use super::super::rules::{self, Ending, EndingTally};
use super::Ctx;
use super::slow::{padded_body, trickle_len};

/// A byte every this long.
const TRICKLE_EVERY: Duration = Duration::from_secs(1);
/// How long the HTTP/2 handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Streams open now and the most open at once.
#[derive(Debug, Default)]
struct Concurrency {
    open: AtomicUsize,
    most: AtomicUsize,
    opened: AtomicUsize,
}

impl Concurrency {
    fn opened(&self) {
        let now = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.opened.fetch_add(1, Ordering::SeqCst);
    }

    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Pass when every stream the server opened got 408 (or a reset) within the body deadline
/// + slack, and the well-behaved client stays within its bar.
pub async fn run(ctx: &Ctx, findings: &mut Findings) {
    let limit = ctx.body_deadline + ctx.slack;
    let client = ctx.client.start(ctx.rate);
    let endings = attack(ctx, limit, findings).await;
    let figures = client.stop().await;
    findings.fail_all(figures.problems(Some(ctx.bar)));
    findings.client = Some(figures);
    let Some(endings) = endings else {
        return;
    };
    let mut tally = EndingTally::of(&endings, limit, &[408]);
    let queued = rules::queued_streams(&mut tally);
    findings.figure("streams_tried", ctx.sizes.h2_streams);
    findings.figure("limit_s", limit.as_secs_f64());
    findings.figure("ended", &tally);
    findings.figure("queued_at_end", queued);
    findings.fail_all(tally.problems("HTTP/2 streams", limit));
}

/// Opens the connection and the streams; `None` when the server would not speak HTTP/2.
async fn attack(ctx: &Ctx, limit: Duration, findings: &mut Findings) -> Option<Vec<Ending>> {
    let Ok(stream) = raw::connect(ctx.target.addr).await else {
        findings.fail("cannot connect for HTTP/2");
        return None;
    };
    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, StreamBody<TrickleStream>>(TokioIo::new(stream));
    let (sender, connection) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(parts)) => parts,
        Ok(Err(error)) => {
            findings.fail(format!("the HTTP/2 (h2c) handshake failed: {error}"));
            return None;
        }
        Err(_) => {
            findings.fail("the HTTP/2 (h2c) handshake timed out");
            return None;
        }
    };
    let driver = tokio::spawn(connection);

    let body = Arc::new(padded_body(ctx, trickle_len(limit)));
    let concurrency = Arc::new(Concurrency::default());
    let watch_until = Instant::now() + limit + ctx.slack;
    let uri = format!("http://{}{}", ctx.target.host, ctx.target.path());
    let mut streams = JoinSet::new();
    for _ in 0..ctx.sizes.h2_streams {
        let mut sender = sender.clone();
        let (body, concurrency, uri) = (body.clone(), concurrency.clone(), uri.clone());
        streams.spawn(async move {
            let opened_at = Arc::new(std::sync::OnceLock::new());
            let request = hyper::Request::post(uri)
                .header("content-type", "application/json")
                .header("content-length", body.len())
                .body(StreamBody::new(trickle(
                    body,
                    opened_at.clone(),
                    concurrency.clone(),
                )));
            let Ok(request) = request else {
                return Ending::NotOpened;
            };
            let answer = tokio::time::timeout_at(watch_until, async {
                if sender.ready().await.is_err() {
                    return None;
                }
                Some(sender.send_request(request).await)
            })
            .await;
            let ending = match (answer, opened_at.get().copied()) {
                (_, None) => Ending::NotOpened,
                // Opened too late to have outlived its limit: not judged.
                (Err(_), Some(at)) if at.elapsed() <= limit => Ending::NotOpened,
                (Err(_), Some(_)) => Ending::StillOpen,
                (Ok(None), Some(at)) => Ending::Closed(at.elapsed()),
                (Ok(Some(Ok(response))), Some(at)) => {
                    Ending::Answered(response.status().as_u16(), at.elapsed())
                }
                (Ok(Some(Err(_))), Some(at)) => Ending::Closed(at.elapsed()),
            };
            if opened_at.get().is_some() {
                concurrency.closed();
            }
            ending
        });
    }
    let mut endings = Vec::with_capacity(ctx.sizes.h2_streams);
    while let Some(joined) = streams.join_next().await {
        endings.push(joined.unwrap_or(Ending::StillOpen));
    }
    driver.abort();
    findings.figure("streams_opened", concurrency.opened.load(Ordering::SeqCst));
    findings.figure("most_open_at_once", concurrency.most.load(Ordering::SeqCst));
    Some(endings)
}

/// The body stream of one slow stream.
type TrickleStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>> + Send>,
>;

/// `body`, a byte every [`TRICKLE_EVERY`]; the first poll marks the stream opened.
fn trickle(
    body: Arc<Vec<u8>>,
    opened_at: Arc<std::sync::OnceLock<Instant>>,
    concurrency: Arc<Concurrency>,
) -> TrickleStream {
    Box::pin(futures::stream::unfold(0_usize, move |sent| {
        let (body, opened_at, concurrency) = (body.clone(), opened_at.clone(), concurrency.clone());
        async move {
            if sent == 0 {
                if opened_at.set(Instant::now()).is_ok() {
                    concurrency.opened();
                }
            } else {
                tokio::time::sleep(TRICKLE_EVERY).await;
            }
            let byte = body.get(sent..=sent)?;
            Some((Ok(Frame::data(Bytes::copy_from_slice(byte))), sent + 1))
        }
    }))
}
