//! End to end: `run` against a tiny in-process gateway on port 0, reading back the report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use llm_api::ErrorBody;
use llm_api::envelope::{FallbackReason, FallbackType, GenerateData, GenerateSuccess};
use llm_api::openai::{AssistantMessage, ChatCompletion, Choice};

use super::report::Report;
use super::*;

/// What the fake gateway answered, to compare with the report.
#[derive(Debug, Default)]
struct Served {
    total: AtomicU64,
    unavailable: AtomicU64,
    cache: AtomicU64,
    template: AtomicU64,
}

/// A lab-shaped gateway: `/generate` answers 503 every 5th request and from the cache every
/// 3rd; chat answers take 20 ms and every 3rd says `x-fallback-tier: template`.
struct FakeGateway {
    addr: SocketAddr,
    served: Arc<Served>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeGateway {
    async fn start() -> Self {
        let served = Arc::new(Served::default());
        let app = Router::new()
            .route("/generate", post(generate))
            .route("/v1/chat/completions", post(chat))
            .with_state(Arc::clone(&served));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            served,
            server,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn count(&self, counter: fn(&Served) -> &AtomicU64) -> u64 {
        counter(&self.served).load(Ordering::SeqCst)
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn generate(State(served): State<Arc<Served>>) -> Response {
    let n = served.total.fetch_add(1, Ordering::SeqCst);
    if n % 5 == 4 {
        served.unavailable.fetch_add(1, Ordering::SeqCst);
        let body = ErrorBody::new("service_unavailable", "no tier answered", None);
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let fallback_type = if n % 3 == 2 {
        served.cache.fetch_add(1, Ordering::SeqCst);
        Some(FallbackType::Cache)
    } else {
        None
    };
    Json(GenerateSuccess::new(GenerateData {
        fallback_reason: fallback_type.map(|_| FallbackReason::UpstreamError),
        fallback_type,
        fallback_used: fallback_type.is_some(),
        model_used: "llama".into(),
        request_id: n.to_string(),
        response: "x".into(),
        response_time_ms: 1,
        served_by: "llm_service_1".into(),
        tokens_used: 1,
    }))
    .into_response()
}

async fn chat(State(served): State<Arc<Served>>) -> Response {
    let n = served.total.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let body = Json(ChatCompletion {
        id: "x".into(),
        object: "chat.completion".into(),
        created: 0,
        model: "default".into(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".into(),
                content: Some("x".into()),
                extra: serde_json::Map::new(),
            },
            finish_reason: Some("stop".into()),
            logprobs: None,
        }],
        usage: None,
        system_fingerprint: None,
    });
    if n % 3 == 2 {
        served.template.fetch_add(1, Ordering::SeqCst);
        ([("x-fallback-tier", "template")], body).into_response()
    } else {
        body.into_response()
    }
}

fn report_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("load-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn args(gateway: String, report: PathBuf) -> LoadArgs {
    LoadArgs {
        gateway,
        concurrent: None,
        duration: 2,
        rps: None,
        endpoint: Endpoint::Generate,
        prompt: "Load test request {n}".to_owned(),
        model: None,
        report,
        timeout: 5.0,
        quiet: true,
        min_availability: None,
    }
}

fn read_report(dir: &std::path::Path) -> Report {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn an_open_loop_run_reports_what_the_gateway_answered() {
    let gateway = FakeGateway::start().await;
    let dir = report_dir("open");
    let args = LoadArgs {
        rps: Some(10.0),
        min_availability: Some(99.0),
        ..args(gateway.url(), dir.clone())
    };

    let code = run(args).await.unwrap();

    assert_eq!(code, ExitCode::FAILURE, "a 503 in 5 is below 99 %");
    let report = read_report(&dir);
    let totals = &report.results.totals;
    let served = gateway.count(|s| &s.total);
    // 10 ticks a second for 2 s, scheduled from the start whatever the pace.
    assert_eq!(totals.requests + totals.skipped, 20);
    assert_eq!(totals.requests, served);
    let statuses = &report.results.status_counts;
    assert_eq!(statuses["503"], gateway.count(|s| &s.unavailable));
    assert_eq!(statuses["200"] + statuses["503"], served);
    assert_eq!(totals.answered_2xx, statuses["200"]);
    let tiers = &report.results.fallback_tiers;
    assert_eq!(tiers["cache"], gateway.count(|s| &s.cache));
    assert_eq!(tiers["cache"] + tiers["none"], statuses["200"]);
    let expected = statuses["200"] as f64 * 100.0 / served as f64;
    assert!((totals.availability_pct - expected).abs() < 1e-9);
    let series = &report.results.series;
    assert_eq!(series.iter().map(|s| s.requests).sum::<u64>(), served);
    assert_eq!(
        series.iter().map(|s| s.errors).sum::<u64>(),
        statuses["503"]
    );
    assert_eq!(report.parameters.mode, "open_loop");
    assert!(report.started_at.ends_with('Z'));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_closed_loop_chat_run_reads_the_fallback_header() {
    let gateway = FakeGateway::start().await;
    let root = report_dir("chat");
    // `--report` may name directories that do not exist yet, nested.
    let dir = root.join("nested").join("report");
    let args = LoadArgs {
        concurrent: Some(2),
        duration: 1,
        endpoint: Endpoint::Chat,
        min_availability: Some(100.0),
        ..args(gateway.url(), dir.clone())
    };

    let code = run(args).await.unwrap();

    assert_eq!(code, ExitCode::SUCCESS);
    let report = read_report(&dir);
    let served = gateway.count(|s| &s.total);
    assert!(served >= 2, "each worker sent at least one request");
    assert_eq!(report.results.totals.requests, served);
    assert_eq!(report.results.status_counts["200"], served);
    let tiers = &report.results.fallback_tiers;
    assert_eq!(
        tiers.get("template").copied().unwrap_or(0),
        gateway.count(|s| &s.template)
    );
    assert_eq!(tiers.values().sum::<u64>(), served);
    assert!(report.results.latency_ms.p50 >= 20.0);
    assert!(dir.join("report.html").exists());
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn an_unreachable_gateway_is_an_error() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let dir = report_dir("unreachable");

    let error = run(args(format!("http://{closed}"), dir.clone()))
        .await
        .unwrap_err();

    assert!(format!("{error:#}").contains("not reachable"), "{error:#}");
    assert!(!dir.exists(), "no report for a run that never started");
}

#[test]
fn options_are_checked_together() {
    let bad = LoadArgs {
        duration: 0,
        timeout: -1.0,
        rps: Some(0.0),
        min_availability: Some(150.0),
        ..args("http://127.0.0.1:1".to_owned(), PathBuf::from("unused"))
    };
    let message = Plan::from_args(&bad).unwrap_err().to_string();
    for option in ["--duration", "--timeout", "--rps", "--min-availability"] {
        assert!(message.contains(option), "{message}");
    }
}

#[test]
fn the_open_loop_caps_in_flight_by_rate_and_timeout() {
    let plan = |rps: f64, concurrent: Option<usize>| {
        let args = LoadArgs {
            rps: Some(rps),
            concurrent,
            ..args("http://127.0.0.1:1".to_owned(), PathBuf::from("unused"))
        };
        Plan::from_args(&args).unwrap().mode
    };
    let cap = |mode| match mode {
        Mode::Open { max_in_flight, .. } => max_in_flight,
        Mode::Closed { .. } => panic!("open loop expected"),
    };
    assert_eq!(cap(plan(10.0, None)), 50);
    assert_eq!(cap(plan(1000.0, None)), MAX_DEFAULT_IN_FLIGHT);
    assert_eq!(cap(plan(10.0, Some(3))), 3);
}
