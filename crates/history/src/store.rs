//! The database: PostgreSQL or SQLite behind one type. Every query is written once, for
//! both engines: [`on_pool!`] type-checks the same code against each pool, and the SQL is
//! the subset both accept (`QueryBuilder` writes each engine's placeholders).

use std::str::FromStr;
use std::time::Duration;

use llm_api::breaker::{BreakerState, TransitionKind};
use llm_api::history::{HealthState, HistoryEntry};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{Executor, QueryBuilder};

use crate::record::{BreakerRecord, ExperimentRecord, HealthRecord, Record, RequestRecord};
use crate::{Error, Location};

/// The most entries one history read returns.
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// Runs `$body` with `$pool` bound to the store's pool, whichever engine it is.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Postgres($pool) => $body,
            Store::Sqlite($pool) => $body,
        }
    };
}

/// Each table's `INSERT` column list, and one row's values in that order for a multi-row
/// `QueryBuilder` (`push_values`).
const BREAKER_INSERT: &str = "INSERT INTO circuit_breaker_metrics (service_name, timestamp, \
     state, previous_state, reason, failure_count, success_count, half_open_attempts) ";
macro_rules! breaker_values {
    ($row:expr, $b:expr) => {
        $row.push_bind($b.service.as_str())
            .push_bind(timestamp($b.at_ms))
            .push_bind($b.to.as_str())
            .push_bind($b.from.as_str())
            .push_bind($b.reason.as_str())
            .push_bind(int($b.failure_count))
            .push_bind(int($b.success_count))
            .push_bind(int($b.half_open_attempts))
    };
}
const HEALTH_INSERT: &str = "INSERT INTO service_health_log (service_name, timestamp, status, \
     response_time_ms, error_message, is_change) ";
macro_rules! health_values {
    ($row:expr, $h:expr) => {
        $row.push_bind($h.service.as_str())
            .push_bind(timestamp($h.at_ms))
            .push_bind($h.status.as_str())
            .push_bind($h.response_time_ms.map(int))
            .push_bind($h.error.as_deref())
            .push_bind($h.change)
    };
}
const REQUEST_INSERT: &str = "INSERT INTO request_log (request_id, timestamp, endpoint, route, \
     model, served_by, tier, status_code, fallback_used, fallback_type, fallback_reason, \
     response_time_ms, tokens_used, trace_id) ";
macro_rules! request_values {
    ($row:expr, $r:expr) => {
        $row.push_bind($r.request_id.as_str())
            .push_bind(timestamp($r.at_ms))
            .push_bind($r.endpoint)
            .push_bind($r.route.as_deref())
            .push_bind($r.model.as_deref())
            .push_bind($r.served_by.as_deref())
            .push_bind($r.tier)
            .push_bind(i32::from($r.status_code))
            .push_bind($r.fallback_type.is_some())
            .push_bind($r.fallback_type.map(|t| t.as_str()))
            .push_bind($r.fallback_reason.map(|t| t.as_str()))
            .push_bind(int($r.response_time_ms))
            .push_bind($r.tokens_used.map(int))
            .push_bind($r.trace_id.as_deref())
    };
}
const EXPERIMENT_INSERT: &str = "INSERT INTO chaos_experiments (experiment_id, name, target, \
     started_at, ended_at, outcome, journal) ";
macro_rules! experiment_values {
    ($row:expr, $e:expr) => {
        $row.push_bind($e.experiment_id.as_str())
            .push_bind($e.name.as_str())
            .push_bind($e.target.as_str())
            .push_bind(timestamp($e.started_at_ms))
            .push_bind(timestamp($e.ended_at_ms))
            .push_bind($e.outcome.as_str())
            .push_bind($e.journal.to_string())
    };
}

/// Inserts `$rows` into one table inside the transaction `$tx`, in [`runs`]: one
/// multi-row `INSERT` per run.
macro_rules! insert_runs {
    ($tx:expr, $insert:expr, $rows:expr, $values:ident) => {
        for run in runs(&$rows) {
            QueryBuilder::new($insert)
                .push_values(run, |mut row, r| {
                    $values!(row, r);
                })
                .build()
                .execute(&mut *$tx)
                .await?;
        }
    };
}

/// A history database.
#[derive(Debug, Clone)]
pub enum Store {
    /// A PostgreSQL server.
    Postgres(PgPool),
    /// A SQLite file or memory database.
    Sqlite(SqlitePool),
}

/// What a history read asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only entries at or after this instant (Unix milliseconds).
    pub since_ms: Option<i64>,
    /// Only this breaker or instance.
    pub service: Option<String>,
    /// At most this many (the latest), capped at [`MAX_HISTORY_LIMIT`].
    pub limit: usize,
}

/// A row of `circuit_breaker_metrics` as read back.
type BreakerRow = (
    String,
    DateTime<Utc>,
    String,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
);

/// A row of `service_health_log` as read back.
type HealthRow = (String, DateTime<Utc>, String, Option<i32>, Option<String>);

impl Store {
    /// A store for `location` (`None` for [`Location::Off`]). Connections are made when
    /// first needed, each within `connect_timeout`, so a database that is down does not
    /// hold up the start.
    pub fn connect_lazy(
        location: &Location,
        connect_timeout: Duration,
    ) -> Result<Option<Self>, Error> {
        Ok(Some(match location {
            Location::Off => return Ok(None),
            Location::Postgres(url) => {
                let options = PgConnectOptions::from_str(url)?
                    // A statement that hangs (a lock, a stalled server) ends server-side too.
                    .options([("statement_timeout", "10s")]);
                Self::Postgres(
                    PgPoolOptions::new()
                        .max_connections(4)
                        .min_connections(0)
                        .acquire_timeout(connect_timeout)
                        .idle_timeout(Some(Duration::from_secs(60)))
                        .connect_lazy_with(options),
                )
            }
            Location::SqliteFile(path) => Self::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(connect_timeout)
                    .connect_lazy_with(
                        SqliteConnectOptions::new()
                            .filename(path)
                            .create_if_missing(true)
                            .journal_mode(SqliteJournalMode::Wal)
                            // In WAL mode NORMAL cannot corrupt the file; a power cut may lose
                            // the last batches (the history, not the answers), and a commit
                            // waits for no fsync.
                            .synchronous(SqliteSynchronous::Normal)
                            .busy_timeout(Duration::from_secs(5)),
                    ),
            ),
            // One connection, kept for the life of the pool: the database lives in it.
            Location::SqliteMemory => Self::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(connect_timeout)
                    .connect_lazy_with(SqliteConnectOptions::from_str("sqlite::memory:")?),
            ),
        }))
    }

    /// `postgres` or `sqlite`.
    pub fn engine(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Runs the migrations not yet applied (PostgreSQL: under an advisory lock, so several
    /// binaries may start at once).
    pub async fn migrate(&self) -> Result<(), Error> {
        let migrator = crate::migrations::migrator(matches!(self, Self::Postgres(_)));
        on_pool!(self, pool => migrator.run(pool).await?);
        Ok(())
    }

    /// One round trip.
    pub async fn ping(&self) -> Result<(), Error> {
        on_pool!(self, pool => pool.execute("SELECT 1").await.map(|_| ())?);
        Ok(())
    }

    /// Writes `batch` in one transaction: all of it or none, each table's rows in [`runs`]
    /// of one multi-row `INSERT` each.
    pub async fn write(&self, batch: &[Record]) -> Result<(), Error> {
        let breakers: Vec<&BreakerRecord> = pick(batch, |r| match r {
            Record::Breaker(row) => Some(row),
            _ => None,
        });
        let health: Vec<&HealthRecord> = pick(batch, |r| match r {
            Record::Health(row) => Some(row),
            _ => None,
        });
        let requests: Vec<&RequestRecord> = pick(batch, |r| match r {
            Record::Request(row) => Some(row),
            _ => None,
        });
        let experiments: Vec<&ExperimentRecord> = pick(batch, |r| match r {
            Record::Experiment(row) => Some(row),
            _ => None,
        });
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            insert_runs!(tx, BREAKER_INSERT, breakers, breaker_values);
            insert_runs!(tx, HEALTH_INSERT, health, health_values);
            insert_runs!(tx, REQUEST_INSERT, requests, request_values);
            insert_runs!(tx, EXPERIMENT_INSERT, experiments, experiment_values);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Breaker transitions and health changes (not samples) that match `query`: the latest
    /// `limit`, oldest first.
    pub async fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>, Error> {
        let limit = i64::try_from(query.limit.min(MAX_HISTORY_LIMIT)).unwrap_or(100);
        let (breakers, health): (Vec<BreakerRow>, Vec<HealthRow>) = on_pool!(self, pool => {
            let mut breakers = QueryBuilder::new(
                "SELECT service_name, timestamp, state, previous_state, reason, failure_count, \
                 success_count, half_open_attempts FROM circuit_breaker_metrics WHERE 1 = 1",
            );
            let mut health = QueryBuilder::new(
                "SELECT service_name, timestamp, status, response_time_ms, error_message \
                 FROM service_health_log WHERE is_change",
            );
            for builder in [&mut breakers, &mut health] {
                if let Some(since) = query.since_ms {
                    builder.push(" AND timestamp >= ").push_bind(timestamp(since));
                }
                if let Some(service) = &query.service {
                    builder.push(" AND service_name = ").push_bind(service.clone());
                }
                builder.push(" ORDER BY timestamp DESC, id DESC LIMIT ").push_bind(limit);
            }
            (
                breakers.build_query_as().fetch_all(pool).await?,
                health.build_query_as().fetch_all(pool).await?,
            )
        });
        let mut entries: Vec<HistoryEntry> = breakers
            .into_iter()
            .filter_map(
                |(service, at, state, from, reason, failures, successes, probes)| {
                    Some(HistoryEntry::Breaker {
                        at_ms: at.timestamp_millis(),
                        service,
                        state: BreakerState::parse(&state)?,
                        from: from.as_deref().and_then(BreakerState::parse),
                        reason: reason.as_deref().and_then(TransitionKind::parse),
                        failure_count: failures.map_or(0, i64::from),
                        success_count: successes.map_or(0, i64::from),
                        half_open_attempts: probes.map_or(0, i64::from),
                    })
                },
            )
            .chain(
                health
                    .into_iter()
                    .map(|(service, at, status, took, error)| HistoryEntry::Health {
                        at_ms: at.timestamp_millis(),
                        service,
                        status: HealthState::parse(&status),
                        response_time_ms: took.map(i64::from),
                        error,
                    }),
            )
            .collect();
        // The latest `limit` of both tables, then oldest first: a timeline.
        entries.sort_by_key(|e| std::cmp::Reverse(e.at_ms()));
        entries.truncate(query.limit.min(MAX_HISTORY_LIMIT));
        entries.reverse();
        Ok(entries)
    }

    /// Deletes every row older than `cutoff_ms` (Unix milliseconds); returns how many.
    pub async fn delete_older_than(&self, cutoff_ms: i64) -> Result<u64, Error> {
        let cutoff = timestamp(cutoff_ms);
        let mut deleted = 0;
        on_pool!(self, pool => {
            for sql in [
                "DELETE FROM circuit_breaker_metrics WHERE timestamp < $1",
                "DELETE FROM service_health_log WHERE timestamp < $1",
                "DELETE FROM request_log WHERE timestamp < $1",
                "DELETE FROM chaos_experiments WHERE started_at < $1",
            ] {
                deleted += sqlx::query(sql).bind(cutoff).execute(pool).await?.rows_affected();
            }
        });
        Ok(deleted)
    }
}

/// `rows` in runs of 256, 64, 16, 4 and 1 rows, largest first: few statements per batch, and
/// at most five shapes of statement per table, each prepared once per connection and then
/// taken from sqlx's statement cache (parsing a fresh statement of hundreds of rows costs
/// more than writing them; extracting the rows from one JSON text in SQLite cost twice the
/// inserts). 256 rows of 14 values stay far below either engine's limit on parameters.
pub(crate) fn runs<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = [256, 64, 16, 4, 1]
            .into_iter()
            .find(|size| rows.len() >= *size)?;
        let (run, rest) = rows.split_at(size);
        rows = rest;
        Some(run)
    })
}

fn pick<'a, T>(batch: &'a [Record], f: impl Fn(&'a Record) -> Option<&'a T>) -> Vec<&'a T> {
    batch.iter().filter_map(f).collect()
}

/// Unix milliseconds as a timestamp (the epoch for values out of range).
fn timestamp(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A count for an `INTEGER` column, saturated.
fn int(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
}
