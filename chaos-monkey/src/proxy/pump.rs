//! One direction of one connection, as its own task: a reader that stamps each chunk with
//! the instant it was read, and a writer that runs the chunk through the toxics of that
//! direction and writes the plan out.
//!
//! The two are joined by a channel of [`CHUNKS_IN_FLIGHT`] chunks, so a delayed chunk does
//! not stop the next ones from being read (latency shifts the stream in time, it does not
//! cut its throughput), while a slow destination still stops the reader: at most
//! `CHUNKS_IN_FLIGHT × CHUNK_BYTES` bytes wait per direction, and then TCP's own window
//! pushes back on the sender.
//!
//! The writer reads the proxy's toxics afresh before each chunk and whenever they change,
//! so a toxic added or removed acts on open connections from their next chunk on.

use rand::rngs::SmallRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::toxic::plan::{self, Abort, ToxicRun, Write};
use super::toxic::{Stream, ToxicList};

/// The most bytes one read takes.
const CHUNK_BYTES: usize = 32 * 1024;
/// Chunks read and not yet written, per direction.
const CHUNKS_IN_FLIGHT: usize = 8;

/// How a direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Its source closed; the close was passed on (after any `slow_close`).
    Eof,
    /// A read or write failed, or a toxic (`timeout`, `limit_data`) closes the connection.
    Close,
    /// A toxic (`reset_peer`) resets the connection.
    Reset,
    /// Told to stop.
    Stopped,
}

/// A direction that ended, with its halves back for the connection to close.
#[derive(Debug)]
pub struct Pumped {
    pub end: End,
    pub src: OwnedReadHalf,
    pub dst: OwnedWriteHalf,
}

/// The toxic side of a direction: its view of the proxy's toxics and their state.
struct Writer {
    stream: Stream,
    toxics: watch::Receiver<ToxicList>,
    runs: Vec<ToxicRun>,
    rng: SmallRng,
}

enum Event {
    Data { data: Vec<u8>, at: Instant },
    Failed,
}

/// Copies `src` to `dst` through the toxics of `stream` until the source closes, a toxic
/// or an error ends the connection, or `stop` turns true (or its sender goes).
pub async fn pump(
    mut src: OwnedReadHalf,
    mut dst: OwnedWriteHalf,
    stream: Stream,
    toxics: watch::Receiver<ToxicList>,
    mut stop: watch::Receiver<bool>,
    rng: SmallRng,
) -> Pumped {
    let end = {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let writer = Writer {
            stream,
            toxics,
            runs: Vec::new(),
            rng,
        };
        let read = read_chunks(&mut src, tx);
        let write = writer.run(&mut dst, rx);
        tokio::pin!(read, write);
        let mut reading = true;
        loop {
            tokio::select! {
                end = &mut write => break end,
                () = &mut read, if reading => reading = false,
                _ = stop.wait_for(|stop| *stop) => break End::Stopped,
            }
        }
    };
    Pumped { end, src, dst }
}

/// Reads chunks into `tx` until the source closes (then `tx` goes, which the writer sees
/// as the end) or fails.
async fn read_chunks(src: &mut OwnedReadHalf, tx: mpsc::Sender<Event>) {
    let mut buf = vec![0_u8; CHUNK_BYTES];
    loop {
        let event = match src.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => Event::Data {
                data: buf[..n].to_vec(),
                at: Instant::now(),
            },
            Err(_) => Event::Failed,
        };
        let failed = matches!(event, Event::Failed);
        if tx.send(event).await.is_err() || failed {
            return;
        }
    }
}

impl Writer {
    async fn run(mut self, dst: &mut OwnedWriteHalf, mut rx: mpsc::Receiver<Event>) -> End {
        let mut watching = true;
        loop {
            self.refresh();
            let deadline = plan::deadline(&self.runs);
            let event = tokio::select! {
                () = sleep_until(deadline) => return ended_by(deadline),
                changed = self.toxics.changed(), if watching => {
                    watching = changed.is_ok();
                    continue;
                }
                event = rx.recv() => event,
            };
            match event {
                Some(Event::Data { data, at }) => {
                    let now = Instant::now();
                    let plan = plan::plan(&mut self.runs, data, at, now, &mut self.rng);
                    let deadline = plan::deadline(&self.runs);
                    tokio::select! {
                        written = write_all(dst, plan.writes) => {
                            if !written || plan.close {
                                return End::Close;
                            }
                        }
                        () = sleep_until(deadline) => return ended_by(deadline),
                    }
                }
                Some(Event::Failed) => return End::Close,
                None => {
                    let delay = plan::close_delay(&self.runs);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = sleep_until(deadline) => return ended_by(deadline),
                    }
                    let _ = dst.shutdown().await;
                    return End::Eof;
                }
            }
        }
    }

    /// Takes in the proxy's current toxics. The borrow is a read lock: cloned, then dropped.
    fn refresh(&mut self) {
        let toxics = ToxicList::clone(&self.toxics.borrow_and_update());
        plan::sync(
            &mut self.runs,
            &toxics,
            self.stream,
            Instant::now(),
            &mut self.rng,
        );
    }
}

/// Makes the writes at their instants; false when the destination failed.
async fn write_all(dst: &mut OwnedWriteHalf, writes: Vec<Write>) -> bool {
    for write in writes {
        tokio::time::sleep_until(write.at).await;
        if dst.write_all(&write.data).await.is_err() {
            return false;
        }
    }
    true
}

/// Sleeps until the deadline, or forever without one.
async fn sleep_until(deadline: Option<(Instant, Abort)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn ended_by(deadline: Option<(Instant, Abort)>) -> End {
    match deadline {
        Some((_, Abort::Reset)) => End::Reset,
        _ => End::Close,
    }
}
