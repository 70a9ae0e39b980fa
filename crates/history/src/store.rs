//! The database: PostgreSQL or SQLite behind one type. Every query is written once, for
//! both engines: [`on_pool!`] type-checks the same code against each pool, and the SQL is
//! the subset both accept (`QueryBuilder` writes each engine's placeholders).

use std::str::FromStr;
use std::time::Duration;

use llm_api::breaker::{BreakerState, TransitionKind};
use llm_api::history::{HealthState, HistoryEntry};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
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

/// The column list of each table's `INSERT` and, for one row, its values in that order:
/// `$bind` is `push_bind` (a multi-row `QueryBuilder`) or `bind` (a single-row query).
macro_rules! breaker_insert {
    () => {
        "INSERT INTO circuit_breaker_metrics (service_name, timestamp, state, previous_state, \
         reason, failure_count, success_count, half_open_attempts)"
    };
}
macro_rules! breaker_values {
    ($q:expr, $bind:ident, $b:expr) => {
        $q.$bind($b.service.as_str())
            .$bind(timestamp($b.at_ms))
            .$bind($b.to.as_str())
            .$bind($b.from.as_str())
            .$bind($b.reason.as_str())
            .$bind(int($b.failure_count))
            .$bind(int($b.success_count))
            .$bind(int($b.half_open_attempts))
    };
}
macro_rules! health_insert {
    () => {
        "INSERT INTO service_health_log (service_name, timestamp, status, response_time_ms, \
         error_message, is_change)"
    };
}
macro_rules! health_values {
    ($q:expr, $bind:ident, $h:expr) => {
        $q.$bind($h.service.as_str())
            .$bind(timestamp($h.at_ms))
            .$bind($h.status.as_str())
            .$bind($h.response_time_ms.map(int))
            .$bind($h.error.as_deref())
            .$bind($h.change)
    };
}
macro_rules! request_insert {
    () => {
        "INSERT INTO request_log (request_id, timestamp, endpoint, route, model, served_by, \
         tier, status_code, fallback_used, fallback_type, fallback_reason, response_time_ms, \
         tokens_used, trace_id)"
    };
}
macro_rules! request_values {
    ($q:expr, $bind:ident, $r:expr) => {
        $q.$bind($r.request_id.as_str())
            .$bind(timestamp($r.at_ms))
            .$bind($r.endpoint)
            .$bind($r.route.as_deref())
            .$bind($r.model.as_deref())
            .$bind($r.served_by.as_deref())
            .$bind($r.tier)
            .$bind(i32::from($r.status_code))
            .$bind($r.fallback_type.is_some())
            .$bind($r.fallback_type.map(|t| t.as_str()))
            .$bind($r.fallback_reason.map(|t| t.as_str()))
            .$bind(int($r.response_time_ms))
            .$bind($r.tokens_used.map(int))
            .$bind($r.trace_id.as_deref())
    };
}
macro_rules! experiment_insert {
    () => {
        "INSERT INTO chaos_experiments (experiment_id, name, target, started_at, ended_at, \
         outcome, journal)"
    };
}
macro_rules! experiment_values {
    ($q:expr, $bind:ident, $e:expr) => {
        $q.$bind($e.experiment_id.as_str())
            .$bind($e.name.as_str())
            .$bind($e.target.as_str())
            .$bind(timestamp($e.started_at_ms))
            .$bind(timestamp($e.ended_at_ms))
            .$bind($e.outcome.as_str())
            .$bind($e.journal.to_string())
    };
}

const BREAKER_INSERT: &str = concat!(breaker_insert!(), " ");
const HEALTH_INSERT: &str = concat!(health_insert!(), " ");
const REQUEST_INSERT: &str = concat!(request_insert!(), " ");
const EXPERIMENT_INSERT: &str = concat!(experiment_insert!(), " ");

/// SQLite: request rows from a JSON array of arrays, in `request_insert!`'s column order
/// (see [`requests_json`]).
const SQLITE_REQUESTS_FROM_JSON: &str = concat!(
    request_insert!(),
    " SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
     value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, \
     value ->> 12, value ->> 13 FROM json_each($1)"
);

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

    /// Writes `batch` in one transaction: all of it or none. PostgreSQL takes one multi-row
    /// `INSERT` per table (one round trip each); SQLite one cached single-row statement per
    /// row (in process: parsing a statement of hundreds of rows cost more than the rows).
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
        match self {
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                if !breakers.is_empty() {
                    QueryBuilder::new(BREAKER_INSERT)
                        .push_values(breakers, |mut row, b| {
                            breaker_values!(row, push_bind, b);
                        })
                        .build()
                        .execute(&mut *tx)
                        .await?;
                }
                if !health.is_empty() {
                    QueryBuilder::new(HEALTH_INSERT)
                        .push_values(health, |mut row, h| {
                            health_values!(row, push_bind, h);
                        })
                        .build()
                        .execute(&mut *tx)
                        .await?;
                }
                if !requests.is_empty() {
                    QueryBuilder::new(REQUEST_INSERT)
                        .push_values(requests, |mut row, r| {
                            request_values!(row, push_bind, r);
                        })
                        .build()
                        .execute(&mut *tx)
                        .await?;
                }
                if !experiments.is_empty() {
                    QueryBuilder::new(EXPERIMENT_INSERT)
                        .push_values(experiments, |mut row, e| {
                            experiment_values!(row, push_bind, e);
                        })
                        .build()
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            Self::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for b in breakers {
                    let sql = concat!(
                        breaker_insert!(),
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                    );
                    breaker_values!(sqlx::query(sql), bind, b)
                        .execute(&mut *tx)
                        .await?;
                }
                for h in health {
                    let sql = concat!(health_insert!(), " VALUES ($1, $2, $3, $4, $5, $6)");
                    health_values!(sqlx::query(sql), bind, h)
                        .execute(&mut *tx)
                        .await?;
                }
                // The busy table: the whole batch as one JSON text that SQLite expands
                // itself (`json_each`), through one cached statement: one bind per batch
                // instead of fourteen per row.
                if !requests.is_empty() {
                    sqlx::query(SQLITE_REQUESTS_FROM_JSON)
                        .bind(requests_json(&requests)?)
                        .execute(&mut *tx)
                        .await?;
                }
                for e in experiments {
                    let sql = concat!(experiment_insert!(), " VALUES ($1, $2, $3, $4, $5, $6, $7)");
                    experiment_values!(sqlx::query(sql), bind, e)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
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

/// One request row for [`SQLITE_REQUESTS_FROM_JSON`]: a JSON array in the insert's column
/// order, the timestamp written as sqlx writes one to SQLite (RFC 3339, `+00:00`), so rows
/// written either way compare as text.
#[derive(serde::Serialize)]
struct RequestJson<'a>(
    &'a str,
    String,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    u16,
    u8,
    Option<&'static str>,
    Option<&'static str>,
    i64,
    Option<i64>,
    Option<&'a str>,
);

fn requests_json(rows: &[&RequestRecord]) -> Result<String, Error> {
    let rows: Vec<RequestJson<'_>> = rows
        .iter()
        .map(|r| {
            RequestJson(
                &r.request_id,
                timestamp(r.at_ms)
                    .format("%Y-%m-%dT%H:%M:%S%.f+00:00")
                    .to_string(),
                r.endpoint,
                r.route.as_deref(),
                r.model.as_deref(),
                r.served_by.as_deref(),
                r.tier,
                r.status_code,
                u8::from(r.fallback_type.is_some()),
                r.fallback_type.map(|t| t.as_str()),
                r.fallback_reason.map(|t| t.as_str()),
                r.response_time_ms,
                r.tokens_used,
                r.trace_id.as_deref(),
            )
        })
        .collect();
    serde_json::to_string(&rows).map_err(|e| Error::Location(format!("a request row: {e}")))
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
