//! Sends the load: closed loop (N workers, each sending its next request when the last one
//! is answered) or open loop (a fixed rate, whatever the gateway's pace).
//!
//! In the open loop a tick that finds `max_in_flight` requests still waiting is skipped
//! and counted, rather than delayed: the schedule never slows down to the gateway's pace,
//! so a slow gateway shows up as latency and skips instead of as a lower offered rate.
//! Either way the run stops sending after the duration (or on `stop`) and then waits for
//! the requests in flight, each bounded by `--timeout`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::client::LoadClient;
use super::stats::{Recorder, Sample};

/// How the load is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `workers` loops, each with one request in flight.
    Closed {
        /// Concurrent workers.
        workers: usize,
    },
    /// One request every `period`, at most `max_in_flight` waiting at once.
    Open {
        /// The time between two requests (1 / `--rps`).
        period: Duration,
        /// Requests in flight at most; ticks beyond are skipped.
        max_in_flight: usize,
    },
}

/// The recorder, shared by every request task and the progress bar.
#[derive(Debug, Clone)]
pub struct SharedRecorder(Arc<Mutex<Recorder>>);

/// How the sending ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Driven {
    /// From the first request sent to the last one finished.
    pub elapsed: Duration,
    /// `stop` fired before the duration was over.
    pub interrupted: bool,
}

impl SharedRecorder {
    /// Shares `recorder`.
    pub fn new(recorder: Recorder) -> Self {
        Self(Arc::new(Mutex::new(recorder)))
    }

    /// Locks the recorder. A task that panicked while holding it left consistent counts
    /// (every update is a plain increment), so a poisoned lock is used as it is.
    pub fn lock(&self) -> MutexGuard<'_, Recorder> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends the load from `start` for `duration` in `mode`, recording every request; stops
/// sending early when `stop` completes.
pub async fn drive(
    client: &LoadClient,
    mode: Mode,
    start: Instant,
    duration: Duration,
    recorder: &SharedRecorder,
    stop: impl Future<Output = ()>,
) -> Driven {
    let stopped = Arc::new(AtomicBool::new(false));
    let sending = async {
        match mode {
            Mode::Closed { workers } => {
                closed_loop(client, workers, start, duration, recorder, &stopped).await;
            }
            Mode::Open {
                period,
                max_in_flight,
            } => {
                let load = OpenLoad {
                    period,
                    max_in_flight,
                    start,
                    duration,
                };
                open_loop(client, load, recorder, &stopped).await;
            }
        }
    };
    let interrupted = {
        tokio::pin!(sending);
        tokio::select! {
            () = &mut sending => false,
            () = stop => {
                stopped.store(true, Ordering::Relaxed);
                sending.await;
                true
            }
        }
    };
    Driven {
        elapsed: start.elapsed(),
        interrupted,
    }
}

/// Sends request `n` and records it.
async fn send_one(client: &LoadClient, n: u64, start: Instant, recorder: &SharedRecorder) {
    let sent = Instant::now();
    let offset = sent.duration_since(start);
    recorder.lock().begin(offset);
    let outcome = client.send(n).await;
    let latency = sent.elapsed();
    let sample = Sample {
        start: offset,
        latency,
        outcome,
    };
    recorder.lock().record(&sample, start.elapsed());
}

async fn closed_loop(
    client: &LoadClient,
    workers: usize,
    start: Instant,
    duration: Duration,
    recorder: &SharedRecorder,
    stopped: &AtomicBool,
) {
    let next = AtomicU64::new(0);
    let worker = || async {
        while !stopped.load(Ordering::Relaxed) && start.elapsed() < duration {
            let n = next.fetch_add(1, Ordering::Relaxed);
            send_one(client, n, start, recorder).await;
        }
    };
    futures::future::join_all((0..workers).map(|_| worker())).await;
}

struct OpenLoad {
    period: Duration,
    max_in_flight: usize,
    start: Instant,
    duration: Duration,
}

async fn open_loop(
    client: &LoadClient,
    load: OpenLoad,
    recorder: &SharedRecorder,
    stopped: &AtomicBool,
) {
    let OpenLoad {
        period,
        max_in_flight,
        start,
        duration,
    } = load;
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = JoinSet::new();
    let mut ticks = tokio::time::interval_at(start, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut n = 0_u64;
    loop {
        let tick = ticks.tick().await;
        let offset = tick.duration_since(start);
        if offset >= duration || stopped.load(Ordering::Relaxed) {
            break;
        }
        // Reap finished tasks so that a long run does not keep one handle per request.
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            recorder.lock().skip(start.elapsed());
            continue;
        };
        let client = client.clone();
        let recorder = recorder.clone();
        tasks.spawn(async move {
            send_one(&client, n, start, &recorder).await;
            drop(permit);
        });
        n += 1;
    }
    while tasks.join_next().await.is_some() {}
}
