//! [`History`]: the bounded queue in front of the database and the task that writes it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use llm_api::history::HistoryEntry;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, timeout, timeout_at};

use crate::record::Record;
use crate::store::{HistoryQuery, Store};
use crate::{Error, Location};

/// How the writer queues, batches, retries and forgets. Every wait has a deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterSettings {
    /// Rows waiting for the database at most; a row beyond is dropped (counted).
    pub queue_capacity: usize,
    /// Rows per transaction at most.
    pub batch_size: usize,
    /// How long the first row of a batch waits for others.
    pub flush_interval: Duration,
    /// A migration, a batch, a read or a retention round at most.
    pub write_timeout: Duration,
    /// Making a connection at most.
    pub connect_timeout: Duration,
    /// The longest pause between attempts while the database fails (doubling from 250 ms).
    pub backoff_max: Duration,
    /// Rows older than this are deleted (`None`: kept).
    pub retention: Option<Duration>,
    /// How often the retention round runs.
    pub retention_interval: Duration,
    /// Dropped rows are logged at most once per this interval.
    pub drop_log_interval: Duration,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            batch_size: 500,
            flush_interval: Duration::from_millis(200),
            write_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            backoff_max: Duration::from_secs(5),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_interval: Duration::from_secs(600),
            drop_log_interval: Duration::from_secs(10),
        }
    }
}

impl WriterSettings {
    /// What is wrong with these settings, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.queue_capacity == 0 {
            problems.push("the history queue needs room for at least one row".to_owned());
        }
        if !(1..=1000).contains(&self.batch_size) {
            problems.push("the history batch size is between 1 and 1000 rows".to_owned());
        }
        for (name, value) in [
            ("flush interval", self.flush_interval),
            ("write timeout", self.write_timeout),
            ("connect timeout", self.connect_timeout),
            ("backoff", self.backoff_max),
            ("retention interval", self.retention_interval),
        ] {
            if value.is_zero() {
                problems.push(format!("the history {name} must be above zero"));
            }
        }
        problems
    }
}

/// The writer's Prometheus series (`db_writer_*`).
#[derive(Debug, Clone)]
pub struct WriterMetrics {
    queue: IntGauge,
    written: IntCounterVec,
    dropped: IntCounterVec,
    batch: Histogram,
    up: IntGauge,
}

impl WriterMetrics {
    fn new() -> Result<Self, prometheus::Error> {
        let metrics = Self {
            queue: IntGauge::new(
                "db_writer_queue_length",
                "History rows waiting for the database.",
            )?,
            written: IntCounterVec::new(
                Opts::new(
                    "db_writer_rows_written_total",
                    "History rows written, by table.",
                ),
                &["table"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "db_writer_rows_dropped_total",
                    "History rows given up: queue_full (the database too slow or down for \
                     longer than the queue holds) or shutdown.",
                ),
                &["reason"],
            )?,
            batch: Histogram::with_opts(
                HistogramOpts::new(
                    "db_writer_batch_duration_seconds",
                    "Time to write one batch of history rows (one transaction).",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )?,
            up: IntGauge::new(
                "db_writer_up",
                "1 while the history database takes writes, 0 while it fails.",
            )?,
        };
        for reason in ["queue_full", "shutdown"] {
            metrics.dropped.with_label_values(&[reason]);
        }
        Ok(metrics)
    }

    /// Adds the series to `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.queue.clone()))?;
        registry.register(Box::new(self.written.clone()))?;
        registry.register(Box::new(self.dropped.clone()))?;
        registry.register(Box::new(self.batch.clone()))?;
        registry.register(Box::new(self.up.clone()))?;
        Ok(())
    }

    /// Rows dropped for `reason` so far.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.with_label_values(&[reason]).get()
    }

    /// Rows written to `table` so far.
    pub fn written(&self, table: &str) -> u64 {
        self.written.with_label_values(&[table]).get()
    }
}

/// How the writer is doing, for a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterStatus {
    /// `postgres` or `sqlite`.
    pub engine: &'static str,
    /// The location without credentials.
    pub location: String,
    /// The migrations ran.
    pub migrated: bool,
    /// The last attempt (migration or batch) succeeded.
    pub up: bool,
    /// Rows waiting.
    pub queued: usize,
    /// What the last failure was, in a few words (never the URL).
    pub last_error: Option<&'static str>,
}

enum Message {
    Row(Record),
    Flush(oneshot::Sender<()>),
}

/// State the writer task and the callers share.
#[derive(Debug)]
struct Shared {
    migrated: AtomicBool,
    up: AtomicBool,
    last_error: Mutex<Option<&'static str>>,
    drops_unlogged: AtomicU64,
    last_drop_log: Mutex<Option<Instant>>,
}

impl Shared {
    fn succeeded(&self, metrics: &WriterMetrics) {
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!(target: "history", "the history database takes writes again");
        }
        metrics.up.set(1);
    }

    fn failed(&self, metrics: &WriterMetrics, what: &'static str, error: &Error) {
        let kind = match error {
            Error::Timeout(_) => "timed out",
            Error::Database(e) | Error::Migrate(sqlx::migrate::MigrateError::Execute(e))
                if is_connection(e) =>
            {
                "unreachable or refused"
            }
            Error::Migrate(_) => "migrations failed",
            _ => "query failed",
        };
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(kind);
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(target: "history", %error, what, "the history database fails; rows wait in the queue");
        }
        metrics.up.set(0);
    }
}

/// The history of one binary: a bounded queue and the task that writes it.
#[derive(Debug)]
pub struct History {
    tx: mpsc::Sender<Message>,
    store: Store,
    location: String,
    metrics: WriterMetrics,
    shared: Arc<Shared>,
    settings: WriterSettings,
}

impl History {
    /// Starts the writer for `location` (`None` for [`Location::Off`]); must run inside a
    /// Tokio runtime. Returns at once: the connection and the migrations are the writer's
    /// first steps, retried with backoff.
    pub fn start(
        location: &Location,
        settings: WriterSettings,
    ) -> Result<Option<Arc<Self>>, Error> {
        if let Some(problem) = settings.problems().into_iter().next() {
            return Err(Error::Location(problem));
        }
        let Some(store) = Store::connect_lazy(location, settings.connect_timeout)? else {
            return Ok(None);
        };
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let metrics = WriterMetrics::new()?;
        let shared = Arc::new(Shared {
            migrated: AtomicBool::new(false),
            up: AtomicBool::new(true),
            last_error: Mutex::new(None),
            drops_unlogged: AtomicU64::new(0),
            last_drop_log: Mutex::new(None),
        });
        let writer = Writer {
            rx,
            store: store.clone(),
            metrics: metrics.clone(),
            shared: Arc::clone(&shared),
            settings: settings.clone(),
        };
        tokio::spawn(writer.run());
        tracing::info!(target: "history", location = %location.describe(), "history database");
        Ok(Some(Arc::new(Self {
            tx,
            store,
            location: location.describe(),
            metrics,
            shared,
            settings,
        })))
    }

    /// Queues `record` and returns at once. A full queue drops it (counted in
    /// `db_writer_rows_dropped_total{reason="queue_full"}`, logged once per interval).
    pub fn record(&self, record: Record) {
        match self.tx.try_send(Message::Row(record)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.dropped("queue_full"),
            Err(mpsc::error::TrySendError::Closed(_)) => self.dropped("shutdown"),
        }
    }

    fn dropped(&self, reason: &'static str) {
        self.metrics.dropped.with_label_values(&[reason]).inc();
        let unlogged = self.shared.drops_unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut last) = self.shared.last_drop_log.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_none_or(|at| now.duration_since(at) >= self.settings.drop_log_interval) {
            *last = Some(now);
            self.shared
                .drops_unlogged
                .fetch_sub(unlogged, Ordering::Relaxed);
            tracing::warn!(target: "history", dropped = unlogged, reason, "history rows dropped");
        }
    }

    /// Waits (at most `deadline`) until every row queued before this call is written;
    /// false when the deadline passed first.
    pub async fn flush(&self, deadline: Duration) -> bool {
        let (done, written) = oneshot::channel();
        let until = Instant::now() + deadline;
        let Ok(Ok(())) = timeout_at(until, self.tx.send(Message::Flush(done))).await else {
            return false;
        };
        matches!(timeout_at(until, written).await, Ok(Ok(())))
    }

    /// Breaker transitions and health changes, read back (within the write timeout).
    pub async fn read(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>, Error> {
        let deadline = self.settings.write_timeout;
        timeout(deadline, self.store.history(query))
            .await
            .map_err(|_| Error::Timeout(deadline))?
    }

    /// One round trip to the database, within `deadline`.
    pub async fn ping(&self, deadline: Duration) -> Result<(), Error> {
        timeout(deadline, self.store.ping())
            .await
            .map_err(|_| Error::Timeout(deadline))?
    }

    /// How the writer is doing.
    pub fn status(&self) -> WriterStatus {
        WriterStatus {
            engine: self.store.engine(),
            location: self.location.clone(),
            migrated: self.shared.migrated.load(Ordering::Acquire),
            up: self.shared.up.load(Ordering::Acquire),
            queued: self.queued(),
            last_error: *self
                .shared
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        }
    }

    fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The writer's series; [`WriterMetrics::register`] adds them to a registry.
    pub fn metrics(&self) -> &WriterMetrics {
        &self.metrics
    }

    /// Brings `db_writer_queue_length` up to date (before a scrape renders it).
    pub fn observe_queue(&self) {
        self.metrics
            .queue
            .set(i64::try_from(self.queued()).unwrap_or(i64::MAX));
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// The task behind a [`History`].
struct Writer {
    rx: mpsc::Receiver<Message>,
    store: Store,
    metrics: WriterMetrics,
    shared: Arc<Shared>,
    settings: WriterSettings,
}

/// The first pause after a failure; it doubles up to `backoff_max`.
const BACKOFF_MIN: Duration = Duration::from_millis(250);

impl Writer {
    async fn run(mut self) {
        let mut rows: Vec<Record> = Vec::with_capacity(self.settings.batch_size);
        let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
        let mut backoff = BACKOFF_MIN;
        let mut next_retention =
            Instant::now() + self.settings.retention_interval.min(Duration::from_secs(5));
        let mut open = true;
        loop {
            if !self.shared.migrated.load(Ordering::Acquire) {
                if self.rx.is_closed() {
                    return;
                }
                match self.bounded(self.store.migrate()).await {
                    Ok(()) => {
                        self.shared.migrated.store(true, Ordering::Release);
                        self.shared.succeeded(&self.metrics);
                        backoff = BACKOFF_MIN;
                    }
                    Err(error) => {
                        self.shared.failed(&self.metrics, "migrate", &error);
                        backoff = self.pause(backoff).await;
                        continue;
                    }
                }
            }
            if rows.is_empty() && waiting.is_empty() {
                if !open {
                    return;
                }
                open = self.gather(&mut rows, &mut waiting).await;
            } else {
                // Retrying a failed batch: top it up with what queued meanwhile.
                while rows.len() < self.settings.batch_size && waiting.is_empty() {
                    match self.rx.try_recv() {
                        Ok(message) => take(message, &mut rows, &mut waiting),
                        Err(_) => break,
                    }
                }
            }
            if !rows.is_empty() {
                let started = Instant::now();
                match self.bounded(self.store.write(&rows)).await {
                    Ok(()) => {
                        self.metrics.batch.observe(started.elapsed().as_secs_f64());
                        for row in &rows {
                            self.metrics.written.with_label_values(&[row.table()]).inc();
                        }
                        rows.clear();
                        self.shared.succeeded(&self.metrics);
                        backoff = BACKOFF_MIN;
                    }
                    Err(error) => {
                        self.shared.failed(&self.metrics, "write", &error);
                        backoff = self.pause(backoff).await;
                        continue;
                    }
                }
            }
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
            if let Some(retention) = self.settings.retention
                && Instant::now() >= next_retention
            {
                next_retention = Instant::now() + self.settings.retention_interval;
                self.forget(retention).await;
            }
        }
    }

    /// Waits for a first message, then gathers what arrived within the flush interval (at
    /// once when a batch is already queued or a flush was asked). False once every sender is
    /// gone.
    async fn gather(
        &mut self,
        rows: &mut Vec<Record>,
        waiting: &mut Vec<oneshot::Sender<()>>,
    ) -> bool {
        let first = match self.settings.retention {
            // Wake for the retention round even when nothing is recorded.
            Some(_) => match timeout(self.settings.retention_interval, self.rx.recv()).await {
                Ok(message) => message,
                Err(_) => return true,
            },
            None => self.rx.recv().await,
        };
        let Some(first) = first else {
            return false;
        };
        take(first, rows, waiting);
        // The rest of the batch is collected once, after the flush interval (or at once when
        // a batch is already queued, or a flush asked): waiting on `recv` would have every
        // row wake this task, a cross-thread wake per request.
        if waiting.is_empty() && rows.len() + self.rx.len() < self.settings.batch_size {
            sleep(self.settings.flush_interval).await;
        }
        while rows.len() < self.settings.batch_size && waiting.is_empty() {
            match self.rx.try_recv() {
                Ok(message) => take(message, rows, waiting),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// Deletes rows past their retention.
    async fn forget(&self, retention: Duration) {
        let now_ms = sqlx::types::chrono::Utc::now().timestamp_millis();
        let cutoff = now_ms - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        match self.bounded(self.store.delete_older_than(cutoff)).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(target: "history", deleted, "history rows past their retention deleted")
            }
            Err(error) => {
                tracing::warn!(target: "history", %error, "history retention round failed")
            }
        }
    }

    /// `work` within the write timeout.
    async fn bounded<T>(&self, work: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let deadline = self.settings.write_timeout;
        timeout(deadline, work)
            .await
            .map_err(|_| Error::Timeout(deadline))?
    }

    /// Sleeps `backoff`; returns the next one.
    async fn pause(&self, backoff: Duration) -> Duration {
        sleep(backoff).await;
        (backoff * 2).min(self.settings.backoff_max)
    }
}

/// The error says the database could not be reached (rather than that it refused a query).
fn is_connection(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

fn take(message: Message, rows: &mut Vec<Record>, waiting: &mut Vec<oneshot::Sender<()>>) {
    match message {
        Message::Row(row) => rows.push(row),
        Message::Flush(done) => waiting.push(done),
    }
}
