//! The history of the stack in a database: every circuit-breaker transition, every health
//! change of an instance plus periodic samples, one row per answer of the gateway (never the
//! prompt), and chaos-monkey's experiment journals.
//!
//! - [`Location`]: where — PostgreSQL (`postgres://…`) or a SQLite file (`sqlite://PATH`,
//!   `sqlite::memory:` for tests), or `off`.
//! - [`Store`]: the database itself — connecting (lazily, with deadlines), the migrations
//!   (`sql/migrations/<engine>/`, embedded in the binary, run at start-up), batched inserts,
//!   reading the history back, deleting rows past their retention.
//! - [`History`]: what the binaries use — [`History::record`] puts a [`Record`] on a bounded
//!   queue and returns at once; a task of its own writes the queue in batches. The request
//!   path never waits for the database: a full queue drops the row (counted, logged once per
//!   interval), a failing database is retried with backoff while the queue buffers.
//!
//! ```no_run
//! # async fn example() -> Result<(), history::Error> {
//! use history::{History, Location, WriterSettings};
//! let history = History::start(&Location::parse("sqlite::memory:")?, WriterSettings::default())?;
//! # Ok(()) }
//! ```

mod location;
mod migrations;
mod record;
mod store;
mod writer;

pub use location::{DEFAULT_SQLITE_FILE, Location};
pub use record::{BreakerRecord, ExperimentRecord, HealthRecord, Record, RequestRecord};
pub use store::{HistoryQuery, MAX_HISTORY_LIMIT, Store};
pub use writer::{History, WriterMetrics, WriterSettings, WriterStatus};

/// What can go wrong with the history database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The location is not a database URL this crate knows.
    #[error("{0}")]
    Location(String),
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A wait ran past its deadline.
    #[error("the database did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The writer's metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// An instant given as Unix milliseconds or RFC 3339, in Unix milliseconds.
pub fn parse_instant(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    if let Ok(ms) = raw.parse::<i64>() {
        return (ms >= 0).then_some(ms);
    }
    sqlx::types::chrono::DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|at| at.timestamp_millis())
}

#[cfg(test)]
mod tests;
