//! The open-loop pacer (wrk2 and oha are not in Debian): requests scheduled at fixed
//! intervals, sent over a pool of kept-alive connections, each latency measured from its
//! *scheduled* send time, so a server that stalls is charged for every request that waited
//! (no coordinated omission).

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use http_body_util::BodyExt as _;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

use super::http::{Connection, JsonPost};

/// The longest one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest latency recorded, in µs (a minute).
const MAX_LATENCY_US: u64 = 60_000_000;

/// What a fixed-rate run measured.
#[derive(Debug, Clone)]
pub struct Paced {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests that failed (non-2xx, transport error, timeout).
    pub errors: u64,
    /// From the first scheduled send to the last answer.
    pub elapsed: Duration,
    /// Latency of the answered requests in µs, from their scheduled send time.
    pub latency: Histogram<u64>,
}

/// A latency histogram in µs.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?)
}

/// Sends `post` at `rate` per second for `duration` over at most `connections` connections.
pub async fn run(
    post: JsonPost,
    rate: f64,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<Paced> {
    anyhow::ensure!(rate > 0.0, "the rate must be positive");
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let (sender, receiver) = mpsc::unbounded_channel::<Instant>();
    let receiver = Arc::new(Mutex::new(receiver));
    let post = Arc::new(post);
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        let receiver = Arc::clone(&receiver);
        let post = Arc::clone(&post);
        workers.push(tokio::spawn(worker(post, receiver)));
    }
    // The schedule runs on its own thread: `std::thread::sleep` wakes within tens of µs,
    // where tokio's timer rounds every sleep up to the next millisecond, which would be
    // charged to every request as latency.
    let start = Instant::now() + Duration::from_millis(10);
    let scheduler = std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            let start_std = start.into_std();
            for n in 0..total {
                let at = start_std + interval.mul_f64(n as f64);
                let now = std::time::Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                if sender.send(Instant::from_std(at)).is_err() {
                    break;
                }
            }
        })?;
    let scheduled = tokio::task::spawn_blocking(move || scheduler.join().is_ok()).await?;
    anyhow::ensure!(scheduled, "the pacer's schedule thread panicked");
    let mut paced = Paced {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: histogram()?,
    };
    for worker in workers {
        let (ok, errors, latency) = worker.await??;
        paced.ok += ok;
        paced.errors += errors;
        paced.latency.add(&latency)?;
    }
    paced.elapsed = start.elapsed();
    Ok(paced)
}

/// One connection's loop: takes the next scheduled instant, sends, records.
async fn worker(
    post: Arc<JsonPost>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>,
) -> anyhow::Result<(u64, u64, Histogram<u64>)> {
    let mut latency = histogram()?;
    let (mut ok, mut errors) = (0, 0);
    let mut connection: Option<Connection> = None;
    loop {
        let Some(scheduled) = receiver.lock().await.recv().await else {
            break;
        };
        let answered = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let conn = match connection.as_mut() {
                Some(conn) => conn,
                None => connection.insert(Connection::open(post.addr).await?),
            };
            let answer = conn.send(&post).await?;
            let status = answer.status();
            answer.into_body().collect().await?;
            anyhow::Ok(status.is_success())
        })
        .await;
        match answered {
            Ok(Ok(true)) => {
                ok += 1;
                let us = u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX);
                latency.saturating_record(us.max(1));
            }
            Ok(Ok(false)) => errors += 1,
            Ok(Err(_)) | Err(_) => {
                errors += 1;
                connection = None;
            }
        }
    }
    Ok((ok, errors, latency))
}
