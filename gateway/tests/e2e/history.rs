//! The history (issue #19): breaker transitions, health changes and one row per answer land
//! in SQLite and in PostgreSQL within about a second, `/admin/history` reads them back, and a
//! PostgreSQL that stops answering for 30 s (cut by chaos-monkey's fault proxy) fails no
//! request and loses no row: the queue holds them until it answers again.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Row, SqlitePool};
use test_support::postgres::Schema;
use test_support::{Address, Process, binary, free_port, unique_id};
use tokio::process::Command;

use crate::harness::{Gateway, GatewayExt, LlmService, poll, prometheus_sum};

/// The prompt of every request here: it must appear in no column of the history.
const PROMPT: &str = "history secret prompt zq";

async fn history(gw: &Gateway, query: &str) -> Value {
    let answer = gw
        .get(&format!("/admin/history{query}"), "application/json")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// Polls `/admin/history` until an entry satisfies `found`; how long it took.
async fn wait_for_entry(gw: &Gateway, query: &str, found: impl Fn(&Value) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let page = history(gw, query).await;
        if page["entries"]
            .as_array()
            .is_some_and(|e| e.iter().any(&found))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never in the history: {page}\n{}",
            gw.logs().tail(60)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pool_opened(entry: &Value) -> bool {
    entry["kind"] == "breaker" && entry["service"] == "llm-service" && entry["state"] == "OPEN"
}

/// Three failed requests open the pool breaker (threshold 3); the answers' request ids.
async fn trip_pool_breaker(gw: &Gateway, llm: &LlmService) -> Vec<String> {
    llm.add_fault(json!({"kind": "error", "status": 500, "rate": 1.0}))
        .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = unique_id("trip");
        gw.generate_with_id(&format!("{PROMPT} {n}"), &id).await;
        ids.push(id);
    }
    assert_eq!(gw.breaker_state().await, "OPEN");
    llm.clear_faults().await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_gets_transitions_health_and_answers_and_admin_history_reads_them() {
    let dir = std::env::temp_dir().join(unique_id("history"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("history.sqlite3");
    let llm = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&llm])
        .breaker(3, 30)
        .env("DATABASE_URL", format!("sqlite://{}", file.display()))
        .env("HISTORY_SAMPLE_INTERVAL_MS", 200)
        .start()
        .await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let id = unique_id("ok");
        assert!(
            gw.generate_with_id(&format!("{PROMPT} ok {n}"), &id)
                .await
                .is_primary_success()
        );
        ids.push(id);
    }
    ids.extend(trip_pool_breaker(&gw, &llm).await);
    let took = wait_for_entry(&gw, "", pool_opened).await;
    assert!(
        took < Duration::from_secs(2),
        "the transition took {took:?} to reach the database"
    );

    // A health change: the instance goes away.
    drop(llm);
    wait_for_entry(&gw, "?limit=1000", |e| {
        e["kind"] == "health" && e["status"] == "unhealthy"
    })
    .await;
    let page = history(&gw, "?service=llm-service&limit=5").await;
    let entries = page["entries"].as_array().unwrap();
    assert!(!entries.is_empty() && entries.len() <= 5, "{page}");
    assert!(
        entries.iter().all(|e| e["service"] == "llm-service"),
        "{page}"
    );
    assert_eq!(page["database"], "sqlite");
    let future = history(&gw, "?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["entries"], json!([]));
    for bad in [
        "?limit=0",
        "?limit=5000",
        "?since=yesterday",
        "?service=",
        "?limit=1&limit=2",
    ] {
        let answer = gw
            .get(&format!("/admin/history{bad}"), "application/json")
            .await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
        assert_eq!(answer.body["status"], "error", "{bad}: {}", answer.body);
    }
    let health = gw.get("/health", "application/json").await;
    let check = &health.body["health_checks"]["database"];
    assert_eq!(check["status"], "healthy", "{}", health.body);
    assert!(
        !health.body.to_string().contains(&dir.display().to_string()),
        "no path in /health"
    );

    // The rows themselves, read from the file.
    let db = SqlitePool::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT * FROM request_log")
        .fetch_all(&db)
        .await
        .unwrap();
    let logged: Vec<String> = rows
        .iter()
        .map(|r| r.get::<String, _>("request_id"))
        .collect();
    for id in &ids {
        assert!(
            logged.contains(id),
            "{id} has no request_log row: {logged:?}"
        );
    }
    let ok = rows
        .iter()
        .find(|r| r.get::<String, _>("request_id") == ids[0])
        .unwrap();
    assert_eq!(ok.get::<String, _>("endpoint"), "generate");
    assert_eq!(ok.get::<String, _>("route"), "default");
    assert_eq!(ok.get::<String, _>("tier"), "primary");
    assert_eq!(ok.get::<i32, _>("status_code"), 200);
    assert!(
        ok.get::<Option<i32>, _>("tokens_used")
            .is_some_and(|t| t > 0)
    );
    // The request's trace id (a new trace: the request sent no traceparent).
    assert!(
        ok.get::<Option<String>, _>("trace_id")
            .is_some_and(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())),
        "the row has the request's trace id"
    );
    let samples: i64 =
        sqlx::query_scalar("SELECT count(*) FROM service_health_log WHERE NOT is_change")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(samples > 0, "periodic health samples are written");
    for table in [
        "request_log",
        "circuit_breaker_metrics",
        "service_health_log",
    ] {
        let dump: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(&db)
            .await
            .unwrap()
            .iter()
            .flat_map(|row| {
                (0..row.len())
                    .filter_map(|i| row.try_get::<Option<String>, _>(i).ok().flatten())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            dump.iter().all(|v| !v.contains("secret prompt")),
            "{table} holds the prompt"
        );
    }
    db.close().await;
    drop(gw);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_history_off_the_gateway_serves_and_says_so() {
    let llm = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&llm])
        .env("DATABASE_URL", "off")
        .start()
        .await;
    assert!(gw.generate(PROMPT).await.is_primary_success());
    let answer = gw.get("/admin/history", "application/json").await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(
        answer.body["error"]["type"], "history_disabled",
        "{}",
        answer.body
    );
    let health = gw.get("/health", "application/json").await;
    assert!(
        health.body["health_checks"].get("database").is_none(),
        "{}",
        health.body
    );
}

/// `chaos-monkey proxy` with one proxy, `pg`, in front of the local PostgreSQL.
async fn pg_proxy() -> (Process, String, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let server = test_support::postgres::server_url();
    let upstream = server
        .split_once('@')
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    let mut command = Command::new(binary("chaos-monkey"));
    command
        .args(["proxy", "--listen", "127.0.0.1:0", "--proxy"])
        .arg(format!("pg={listen}={upstream}"))
        .env("LOG_FORMAT", "pretty")
        .env("RUST_LOG", "info");
    let proxy = Process::start(
        "chaos-monkey proxy",
        command,
        Address::FromLog,
        Some("/version"),
    )
    .await;
    let api = proxy.url().to_owned();
    (proxy, api, listen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gets_the_rows_and_a_30_second_outage_fails_no_request_and_loses_no_row() {
    let schema = Schema::new().await;
    let (_proxy, api, listen) = pg_proxy().await;
    let llm = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&llm])
        .breaker(3, 1)
        .env("DATABASE_URL", schema.url_via(&listen))
        .env("HISTORY_WRITE_TIMEOUT_MS", 1000)
        .start()
        .await;
    let db = schema.pool().await;
    let count = |table: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table}"
            )))
            .fetch_one(&db)
            .await
            .unwrap_or(0)
        }
    };
    let mut sent = 0_i64;
    for n in 0..5 {
        assert!(
            gw.generate(&format!("{PROMPT} {n}"))
                .await
                .is_primary_success()
        );
        sent += 1;
    }
    trip_pool_breaker(&gw, &llm).await;
    sent += 3;
    let landed = poll(
        Duration::from_secs(5),
        || count("request_log"),
        |n| *n == sent,
    )
    .await;
    assert!(landed.ok, "{} of {sent} rows in PostgreSQL", landed.value);
    assert!(count("circuit_breaker_metrics").await >= 1);

    // The database stops answering: every byte it sends is held (a blackhole, not a refusal).
    let web = reqwest::Client::new();
    let toxic = web
        .post(format!("{api}/proxies/pg/toxics"))
        .json(&json!({"name": "cut", "type": "timeout", "stream": "downstream", "attributes": {"timeout": 0}}))
        .send()
        .await
        .unwrap();
    assert!(
        toxic.status().is_success(),
        "{}",
        toxic.text().await.unwrap()
    );
    let cut = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut degraded = false;
    while cut.elapsed() < Duration::from_secs(30) {
        let started = Instant::now();
        let answer = gw
            .generate(&format!("{PROMPT} during the outage {sent}"))
            .await;
        assert_eq!(
            answer.status, 200,
            "a request failed while the database was down: {}",
            answer.body
        );
        slowest = slowest.max(started.elapsed());
        sent += 1;
        if sent % 10 == 0 {
            let health = gw.get("/health", "application/json").await;
            assert_eq!(
                health.status, 200,
                "the database is not critical: {}",
                health.body
            );
            degraded |= health.body["health_checks"]["database"]["status"] == "degraded";
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest < Duration::from_secs(1),
        "the slowest answer took {slowest:?}"
    );
    assert!(degraded, "/health never said the database was down");
    let metrics = gw.get("/metrics?format=prometheus", "text/plain").await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert_eq!(
        prometheus_sum(&text, "db_writer_up", &[]),
        0.0,
        "the writer knows"
    );
    assert!(prometheus_sum(&text, "db_writer_queue_length", &[]) > 0.0);

    // It answers again: the queued rows arrive; none was dropped.
    let healed = web
        .delete(format!("{api}/proxies/pg/toxics/cut"))
        .send()
        .await
        .unwrap();
    assert!(healed.status().is_success());
    let back = Instant::now();
    let caught_up = poll(
        Duration::from_secs(20),
        || count("request_log"),
        |n| *n == sent,
    )
    .await;
    assert!(
        caught_up.ok,
        "{} of {sent} rows after the outage",
        caught_up.value
    );
    let resumed = back.elapsed();
    let metrics = gw.get("/metrics?format=prometheus", "text/plain").await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert_eq!(
        prometheus_sum(&text, "db_writer_rows_dropped_total", &[]),
        0.0
    );
    assert_eq!(prometheus_sum(&text, "db_writer_up", &[]), 1.0);
    eprintln!(
        "{sent} answers, slowest during the outage {slowest:?}, rows caught up {resumed:?} after"
    );
    db.close().await;
    drop(gw);
    schema.drop().await;
}
