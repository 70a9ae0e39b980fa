//! Log lines off the request path: [`BatchedLog`] gathers formatted lines in memory and one
//! thread of its own writes them out in batches, every [`FLUSH_INTERVAL`] or as soon as
//! [`FLUSH_BYTES`] are waiting, the way nginx's `access_log … buffer=… flush=…` does.
//!
//! A request's task only appends its line to a buffer under a lock held for a copy: no
//! system call, no wake-up of another thread (but when a batch fills). Writing each line
//! at once cost one `write` per request, and a queue with a waiting writer thread
//! (tracing-appender's) cost a wake-up per line when traffic is light and a spinning
//! `sched_yield` per line when it is not. Beyond [`MAX_PENDING_BYTES`] not yet written
//! (stdout blocked), lines are dropped and counted rather than slowing requests; the count
//! is logged with the next batch.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The longest a line waits before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes waiting that are written at once.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Bytes waiting beyond which new lines are dropped.
pub const MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;

/// The lines not yet written.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer `tracing_subscriber` formats lines into (see the module's rules).
#[derive(Clone)]
pub struct BatchedLog {
    shared: Arc<Shared>,
}

/// Writes what is still waiting, and stops the writer thread, when dropped.
#[must_use = "dropping the guard stops the log writer; keep it until the program ends"]
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchedLog {
    /// A batched writer into `out`, and the guard of its writer thread.
    ///
    /// Fails when the thread cannot be started.
    pub fn new<W: Write + Send + 'static>(out: W) -> io::Result<(Self, FlushGuard)> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || write_batches(&shared, out)
            })?;
        let guard = FlushGuard {
            shared: Arc::clone(&shared),
            thread: Some(thread),
        };
        Ok((Self { shared }, guard))
    }
}

impl Write for BatchedLog {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.bytes.len() + line.len() > MAX_PENDING_BYTES {
            pending.dropped += 1;
            return Ok(line.len());
        }
        let was_below = pending.bytes.len() < FLUSH_BYTES;
        pending.bytes.extend_from_slice(line);
        if was_below && pending.bytes.len() >= FLUSH_BYTES {
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedLog {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: waits for a full batch, the interval or the close, then writes
/// what waits; ends once closed and everything is written.
fn write_batches<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::with_capacity(FLUSH_BYTES);
    loop {
        let (dropped, closed) = {
            let mut pending = shared.lock();
            if pending.bytes.len() < FLUSH_BYTES && !pending.closed {
                pending = shared
                    .wake
                    .wait_timeout(pending, FLUSH_INTERVAL)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut pending.bytes, &mut batch);
            (std::mem::take(&mut pending.dropped), pending.closed)
        };
        if dropped > 0 {
            let _ = writeln!(
                out,
                "{{\"level\":\"WARN\",\"fields\":{{\"message\":\"log lines dropped: stdout is not keeping up\",\"dropped\":{dropped}}}}}"
            );
        }
        if !batch.is_empty() {
            // Nowhere to report a failed write to: the log is where it would go.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            if batch.capacity() > MAX_PENDING_BYTES {
                batch.shrink_to(FLUSH_BYTES);
            }
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A `Write` whose bytes the test reads.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn a_line_is_written_within_the_interval_without_a_flush() {
        let sink = Sink::default();
        let (mut log, _guard) = BatchedLog::new(sink.clone()).unwrap();
        log.write_all(b"one\n").unwrap();
        let started = Instant::now();
        while sink.text().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(2), "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "one\n");
    }

    #[test]
    fn dropping_the_guard_writes_everything_in_order() {
        let sink = Sink::default();
        let (log, guard) = BatchedLog::new(sink.clone()).unwrap();
        let mut expected = String::new();
        for i in 0..10_000 {
            let line = format!("line {i}\n");
            log.make_writer().write_all(line.as_bytes()).unwrap();
            expected.push_str(&line);
        }
        drop(guard);
        assert_eq!(sink.text(), expected);
    }

    /// A sink that blocks until released: stdout that does not keep up.
    struct Blocked(Arc<(Mutex<bool>, Condvar)>, Sink);

    impl Write for Blocked {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (released, cv) = &*self.0;
            let mut released = released.lock().unwrap();
            while !*released {
                released = cv.wait(released).unwrap();
            }
            self.1.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_beyond_the_bound_are_dropped_counted_and_reported() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (log, guard) = BatchedLog::new(Blocked(Arc::clone(&gate), sink.clone())).unwrap();
        let line = vec![b'x'; 1023];
        let mut writer = log.make_writer();
        // Far more than the bound while the writer is stuck: the callers never block.
        for _ in 0..(3 * MAX_PENDING_BYTES / 1024) {
            writer.write_all(&line).unwrap();
            writer.write_all(b"\n").unwrap();
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let text = sink.text();
        assert!(
            text.len() <= 2 * MAX_PENDING_BYTES + 1024,
            "{} bytes",
            text.len()
        );
        assert!(text.len() >= MAX_PENDING_BYTES / 2, "{} bytes", text.len());
        assert!(text.contains("log lines dropped"), "no drop report");
    }
}
