//! The store and the writer on SQLite in memory and in a file (PostgreSQL:
//! `tests/postgres.rs`).

use std::time::Duration;

use llm_api::breaker::{BreakerState, TransitionKind};
use llm_api::envelope::{FallbackReason, FallbackType};
use llm_api::history::{HealthState, HistoryEntry};

use test_support::postgres::Schema;

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

pub(crate) fn opened(service: &str, at_ms: i64) -> Record {
    Record::Breaker(BreakerRecord {
        service: service.into(),
        at_ms,
        from: BreakerState::Closed,
        to: BreakerState::Open,
        reason: TransitionKind::ConsecutiveFailures,
        failure_count: 5,
        success_count: 7,
        half_open_attempts: 0,
    })
}

pub(crate) fn sick(service: &str, at_ms: i64, change: bool) -> Record {
    Record::Health(HealthRecord {
        service: service.into(),
        at_ms,
        status: HealthState::Unhealthy,
        response_time_ms: Some(12),
        error: Some("connection refused".into()),
        change,
    })
}

pub(crate) fn answered(request_id: &str, at_ms: i64) -> Record {
    Record::Request(RequestRecord {
        request_id: request_id.into(),
        at_ms,
        endpoint: "generate",
        route: Some("default".into()),
        model: Some("sim".into()),
        served_by: Some("fallback_manager".into()),
        tier: Some("cache"),
        status_code: 200,
        fallback_type: Some(FallbackType::Cache),
        fallback_reason: Some(FallbackReason::CircuitOpen),
        response_time_ms: 3,
        tokens_used: Some(9),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    })
}

fn quick() -> WriterSettings {
    WriterSettings {
        flush_interval: Duration::from_millis(20),
        write_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_millis(500),
        backoff_max: Duration::from_millis(200),
        ..WriterSettings::default()
    }
}

#[test]
fn locations_parse_and_describe_themselves_without_credentials() -> TestResult {
    assert_eq!(Location::parse("off")?, Location::Off);
    assert_eq!(Location::parse("")?, Location::Off);
    assert_eq!(Location::parse("sqlite::memory:")?, Location::SqliteMemory);
    assert_eq!(
        Location::parse("sqlite://data/h.db?mode=rwc")?,
        Location::SqliteFile("data/h.db".into())
    );
    assert_eq!(
        Location::parse("sqlite:h.db")?,
        Location::SqliteFile("h.db".into())
    );
    let pg = Location::parse("postgresql://admin:s3cret@db.internal:5433/metrics")?;
    assert_eq!(pg.engine(), "postgres");
    assert_eq!(pg.describe(), "postgres://db.internal:5433/metrics");
    assert!(!pg.describe().contains("s3cret"));
    assert!(Location::parse("mysql://x").is_err());
    assert!(Location::parse("sqlite://").is_err());
    assert!(Location::parse("postgres://host:notaport/db").is_err());
    Ok(())
}

#[test]
fn settings_out_of_bounds_are_refused() {
    assert!(WriterSettings::default().problems().is_empty());
    let bad = WriterSettings {
        queue_capacity: 0,
        batch_size: 5000,
        write_timeout: Duration::ZERO,
        ..WriterSettings::default()
    };
    assert_eq!(bad.problems().len(), 3, "{:?}", bad.problems());
}

/// The same checks on any engine: migrations twice, one row of each table, the history
/// read back with its filters, the retention delete.
async fn store_round_trip(store: &Store) -> TestResult {
    store.migrate().await?;
    store.migrate().await?;
    store
        .write(&[
            opened("instance:a", 1_000),
            sick("a", 2_000, true),
            sick("a", 2_500, false),
            opened("instance:b", 3_000),
            answered("req-1", 3_500),
        ])
        .await?;
    let all = store
        .history(&HistoryQuery {
            limit: 100,
            ..HistoryQuery::default()
        })
        .await?;
    let at: Vec<i64> = all.iter().map(HistoryEntry::at_ms).collect();
    assert_eq!(
        at,
        [1_000, 2_000, 3_000],
        "samples are not history: {all:?}"
    );
    assert_eq!(
        all[0],
        HistoryEntry::Breaker {
            at_ms: 1_000,
            service: "instance:a".into(),
            state: BreakerState::Open,
            from: Some(BreakerState::Closed),
            reason: Some(TransitionKind::ConsecutiveFailures),
            failure_count: 5,
            success_count: 7,
            half_open_attempts: 0,
        }
    );
    assert!(
        matches!(&all[1], HistoryEntry::Health { status: HealthState::Unhealthy, error: Some(e), .. } if e == "connection refused")
    );
    let latest = store
        .history(&HistoryQuery {
            limit: 2,
            ..HistoryQuery::default()
        })
        .await?;
    assert_eq!(
        latest.iter().map(HistoryEntry::at_ms).collect::<Vec<_>>(),
        [2_000, 3_000]
    );
    let since = store
        .history(&HistoryQuery {
            since_ms: Some(2_000),
            limit: 100,
            ..HistoryQuery::default()
        })
        .await?;
    assert_eq!(since.len(), 2);
    let one = store
        .history(&HistoryQuery {
            service: Some("instance:b".into()),
            limit: 100,
            ..HistoryQuery::default()
        })
        .await?;
    assert_eq!(
        one.iter().map(HistoryEntry::service).collect::<Vec<_>>(),
        ["instance:b"]
    );
    let sql = "SELECT route, tier, fallback_type, fallback_reason, tokens_used, trace_id FROM request_log";
    let request: (String, String, String, String, i32, String) = match store {
        Store::Sqlite(pool) => sqlx::query_as(sql).fetch_one(pool).await?,
        Store::Postgres(pool) => sqlx::query_as(sql).fetch_one(pool).await?,
    };
    assert_eq!(
        request,
        (
            "default".into(),
            "cache".into(),
            "cache".into(),
            "circuit_open".into(),
            9,
            "4bf92f3577b34da6a3ce929d0e0e4736".into()
        )
    );
    assert_eq!(
        store.delete_older_than(2_500).await?,
        2,
        "a transition and a health change"
    );
    let left = store
        .history(&HistoryQuery {
            limit: 100,
            ..HistoryQuery::default()
        })
        .await?;
    assert_eq!(left.len(), 1);
    // The request row's timestamp compares with the others' (SQLite: written as text).
    assert_eq!(
        store.delete_older_than(3_600).await?,
        3,
        "the sample, the second transition and the request"
    );
    // One batch of every run's size (256 + 64 + 16 + 4 + 1 rows): each row once, in order.
    let bulk: Vec<String> = (0..341).map(|i| format!("bulk-{i}")).collect();
    let rows: Vec<Record> = (10_000..)
        .zip(&bulk)
        .map(|(at_ms, id)| answered(id, at_ms))
        .collect();
    store.write(&rows).await?;
    let sql = "SELECT request_id FROM request_log ORDER BY timestamp, id";
    let written: Vec<String> = match store {
        Store::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await?,
        Store::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await?,
    };
    assert_eq!(written, bulk);
    // Migration 3: no index on the random request ids.
    let indexes: i64 = match store {
        Store::Sqlite(pool) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'request_log' AND name = 'idx_request_log_request_id'")
                .fetch_one(pool)
                .await?
        }
        Store::Postgres(pool) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'request_log' AND indexname = 'idx_request_log_request_id'")
                .fetch_one(pool)
                .await?
        }
    };
    assert_eq!(indexes, 0);
    Ok(())
}

#[test]
fn runs_take_the_largest_size_that_fits_and_cover_every_row_once() {
    let sizes = |n: usize| {
        let rows: Vec<usize> = (0..n).collect();
        let runs: Vec<&[usize]> = store::runs(&rows).collect();
        assert_eq!(runs.concat(), rows, "every row once, in order");
        runs.iter().map(|run| run.len()).collect::<Vec<_>>()
    };
    assert!(sizes(0).is_empty());
    assert_eq!(sizes(3), [1, 1, 1]);
    assert_eq!(sizes(500), [256, 64, 64, 64, 16, 16, 16, 4]);
    assert_eq!(sizes(341), [256, 64, 16, 4, 1]);
}

#[tokio::test]
async fn sqlite_migrates_twice_and_reads_rows_back_filtered_and_oldest_first() -> TestResult {
    let store =
        Store::connect_lazy(&Location::SqliteMemory, Duration::from_secs(1))?.ok_or("off")?;
    store_round_trip(&store).await
}

#[tokio::test]
async fn postgres_migrates_twice_and_reads_rows_back_filtered_and_oldest_first() -> TestResult {
    let schema = Schema::new().await;
    let store = Store::connect_lazy(&Location::parse(&schema.url())?, Duration::from_secs(3))?
        .ok_or("off")?;
    store_round_trip(&store).await?;
    schema.drop().await;
    Ok(())
}

#[tokio::test]
async fn the_writer_writes_to_postgres_in_batches() -> TestResult {
    let schema = Schema::new().await;
    let history = History::start(&Location::parse(&schema.url())?, quick())?.ok_or("off")?;
    for i in 0..700 {
        history.record(answered(&format!("req-{i}"), 1_000 + i));
    }
    history.record(sick("llm_service_1", 9_000, true));
    let experiment = Record::Experiment(ExperimentRecord {
        experiment_id: "exp-1".into(),
        name: "errors".into(),
        target: "llm_service_1".into(),
        started_at_ms: 9_000,
        ended_at_ms: 19_000,
        outcome: "completed".into(),
        journal: serde_json::json!({"events": [{"kind": "rollback", "ok": true}]}),
    });
    history.record(experiment);
    assert!(history.flush(Duration::from_secs(10)).await);
    assert_eq!(history.metrics().written("request_log"), 700);
    assert_eq!(history.metrics().written("chaos_experiments"), 1);
    let Store::Postgres(pool) = history.store() else {
        return Err("not postgres".into());
    };
    let (requests,): (i64,) = sqlx::query_as("SELECT count(*) FROM request_log")
        .fetch_one(pool)
        .await?;
    assert_eq!(requests, 700);
    let (journal,): (String,) = sqlx::query_as("SELECT journal FROM chaos_experiments")
        .fetch_one(pool)
        .await?;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&journal)?["events"][0]["kind"],
        "rollback"
    );
    let entries = history
        .read(&HistoryQuery {
            limit: 5,
            ..HistoryQuery::default()
        })
        .await?;
    assert_eq!(entries.len(), 1);
    assert!(history.ping(Duration::from_secs(1)).await.is_ok());
    schema.drop().await;
    Ok(())
}

#[tokio::test]
async fn the_writer_writes_batches_and_a_file_keeps_them() -> TestResult {
    let dir = std::env::temp_dir().join(format!("history-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("h.sqlite3");
    let location = Location::SqliteFile(file.clone());
    {
        let history = History::start(&location, quick())?.ok_or("off")?;
        for i in 0..1200 {
            history.record(answered(&format!("req-{i}"), 1_000 + i));
        }
        history.record(opened("llm-service", 5_000));
        assert!(history.flush(Duration::from_secs(10)).await, "flushed");
        let status = history.status();
        assert!(status.migrated && status.up, "{status:?}");
        assert_eq!(status.queued, 0);
        assert_eq!(history.metrics().written("request_log"), 1200);
        assert_eq!(history.metrics().dropped("queue_full"), 0);
    }
    let again = History::start(&location, quick())?.ok_or("off")?;
    let entries = again
        .read(&HistoryQuery {
            limit: 10,
            ..HistoryQuery::default()
        })
        .await?;
    assert_eq!(
        entries.len(),
        1,
        "the transition outlived the process's writer: {entries:?}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn an_unreachable_database_drops_rows_beyond_the_queue_and_says_so() -> TestResult {
    // A port nothing listens on: every connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let location = Location::parse(&format!("postgres://nobody@127.0.0.1:{port}/none"))?;
    let settings = WriterSettings {
        queue_capacity: 4,
        ..quick()
    };
    let history = History::start(&location, settings)?.ok_or("off")?;
    for i in 0..10 {
        history.record(answered(&format!("req-{i}"), i));
    }
    assert_eq!(history.metrics().dropped("queue_full"), 6);
    assert!(
        !history.flush(Duration::from_millis(300)).await,
        "nothing can be written"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while history.status().up {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = history.status();
    assert!(!status.migrated);
    assert_eq!(status.last_error, Some("unreachable or refused"));
    assert!(history.ping(Duration::from_secs(1)).await.is_err());
    assert!(
        history
            .read(&HistoryQuery {
                limit: 1,
                ..HistoryQuery::default()
            })
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn the_retention_round_deletes_old_rows() -> TestResult {
    let settings = WriterSettings {
        retention: Some(Duration::from_secs(3600)),
        retention_interval: Duration::from_millis(50),
        ..quick()
    };
    let history = History::start(&Location::SqliteMemory, settings)?.ok_or("off")?;
    let now = sqlx::types::chrono::Utc::now().timestamp_millis();
    history.record(opened("instance:old", now - 7_200_000));
    history.record(opened("instance:new", now));
    assert!(history.flush(Duration::from_secs(5)).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = history
            .read(&HistoryQuery {
                limit: 10,
                ..HistoryQuery::default()
            })
            .await?;
        if left.iter().map(HistoryEntry::service).collect::<Vec<_>>() == ["instance:new"] {
            return Ok(());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old rows still there: {left:?}"
        );
        history.record(sick("nudge", now, false));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}
