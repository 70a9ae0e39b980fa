//! Each family's values after the calls that move it, the label bounds, and the whole
//! gateway's exposition after real requests (a fake llm-service behind it).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use llm_api::openai::Usage;
use resilience_core::breaker::{Breaker, BreakerConfig, BreakerSnapshot, Outcome, StateKind};
use resilience_core::clock::SystemClock;
use serde_json::json;
use tower::ServiceExt;

use super::*;
use crate::config::Settings;
use crate::pool::testing::{FakeLlm, Reply};
use crate::state::Gateway;

fn metrics() -> Metrics {
    Metrics::new().unwrap()
}

fn render(metrics: &Metrics) -> String {
    metrics.render(&Scrape::default()).unwrap()
}

/// The value of the sample `series` (name and labels, as written) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

/// The samples of `name` (with any labels) in `text`.
fn samples<'t>(text: &'t str, name: &str) -> Vec<&'t str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

fn status(status: u16) -> UpstreamError {
    UpstreamError::Status {
        status,
        retry_after: None,
        message: "no".to_owned(),
        code: None,
        kind: None,
    }
}

#[test]
fn errors_carry_the_http_status_as_their_error_code() {
    let metrics = metrics();
    let took = Duration::from_millis(5);
    metrics.attempt("a", "m", Err(&status(503)), took);
    metrics.attempt("a", "m", Err(&status(503)), took);
    metrics.attempt("a", "m", Err(&status(429)), took);
    metrics.attempt("a", "m", Err(&status(418)), took);
    metrics.attempt("a", "m", Err(&UpstreamError::Timeout(took)), took);
    metrics.attempt(
        "a",
        "m",
        Err(&UpstreamError::Connect("refused".into())),
        took,
    );
    metrics.attempt("a", "m", Ok(200), took);
    metrics.gateway_error("validation", 422);
    metrics.gateway_error("overloaded", 503);
    let text = render(&metrics);
    for (series, value) in [
        (
            r#"{error_code="503",error_type="http_5xx",service="a"}"#,
            2.0,
        ),
        (
            r#"{error_code="429",error_type="http_429",service="a"}"#,
            1.0,
        ),
        // An odd status is its class: no series per status a server makes up.
        (
            r#"{error_code="4xx",error_type="http_4xx",service="a"}"#,
            1.0,
        ),
        (
            r#"{error_code="none",error_type="timeout",service="a"}"#,
            1.0,
        ),
        (
            r#"{error_code="none",error_type="connect",service="a"}"#,
            1.0,
        ),
        (
            r#"{error_code="422",error_type="validation",service="gateway"}"#,
            1.0,
        ),
        (
            r#"{error_code="503",error_type="overloaded",service="gateway"}"#,
            1.0,
        ),
        // Seeded at 0 before the first of its kind.
        (
            r#"{error_code="503",error_type="exhausted",service="gateway"}"#,
            0.0,
        ),
    ] {
        let series = format!("llm_errors_total{series}");
        assert_eq!(sample(&text, &series), Some(value), "{series} in\n{text}");
    }
    assert_eq!(samples(&text, "llm_errors_total").len(), 9, "{text}");
    // The gateway's own answers carry the same status label in the requests.
    assert_eq!(
        sample(
            &text,
            r#"llm_requests_total{model="none",service="gateway",status_code="422"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn status_labels_are_a_bounded_set() {
    assert_eq!(status_label(200), "200");
    assert_eq!(status_label(504), "504");
    assert_eq!(status_label(299), "2xx");
    assert_eq!(status_label(599), "5xx");
    assert_eq!(status_label(0), "other");
    assert_eq!(status_label(1000), "other");
    let distinct: std::collections::BTreeSet<_> = (0..=u16::MAX).map(status_label).collect();
    assert!(distinct.len() <= 25, "{distinct:?}");
}

fn answered<'a>(service: &'a str, model_label: &'a str, tokens: Option<Usage>) -> Answered<'a> {
    Answered {
        service,
        model: "fake-model",
        status: 200,
        tier: "primary",
        endpoint: "chat_completions",
        took: Duration::from_millis(20),
        model_label,
        tokens,
    }
}

#[test]
fn tokens_are_counted_by_service_model_and_operation() {
    let metrics = metrics();
    metrics.answered(answered("llm-a", "default", Some(Usage::new(5, 7))));
    metrics.answered(answered("llm-a", "default", Some(Usage::new(1, 2))));
    metrics.answered(answered("llm-b", "other", Some(Usage::new(4, 0))));
    // A fallback answer carries no tokens: no series for it.
    metrics.answered(answered("fallback_manager", "default", None));
    metrics.tokens_processed("llm-b", "other", Usage::new(0, 3));
    let text = render(&metrics);
    for (series, value) in [
        (
            r#"{model="default",operation="prompt",service="llm-a"}"#,
            6.0,
        ),
        (
            r#"{model="default",operation="completion",service="llm-a"}"#,
            9.0,
        ),
        (r#"{model="other",operation="prompt",service="llm-b"}"#, 4.0),
        (
            r#"{model="other",operation="completion",service="llm-b"}"#,
            3.0,
        ),
    ] {
        let series = format!("llm_tokens_processed_total{series}");
        assert_eq!(sample(&text, &series), Some(value), "{series} in\n{text}");
    }
    assert_eq!(samples(&text, "llm_tokens_processed_total").len(), 4);
    assert_eq!(
        sample(
            &text,
            r#"llm_requests_total{model="fake-model",service="llm-a",status_code="200"}"#
        ),
        Some(2.0)
    );
}

#[test]
fn resource_utilization_is_slots_connections_cpu_and_memory_as_ratios() {
    let metrics = metrics();
    metrics.in_flight.set(5);
    metrics.edge(
        http_edge::ConnectionStats {
            open: 3,
            cap: 12,
            closed: [0; 4],
        },
        http_edge::UploadStats {
            reading: 0,
            too_slow: 0,
            too_large: 0,
            turned_away: 0,
        },
    );
    let text = metrics
        .render(&Scrape {
            max_in_flight: 20,
            ..Scrape::default()
        })
        .unwrap();
    let utilization = |kind: &str| {
        sample(
            &text,
            &format!(r#"llm_resource_utilization{{resource_type="{kind}",service="gateway"}}"#),
        )
    };
    assert_eq!(utilization("in_flight"), Some(0.25), "{text}");
    assert_eq!(utilization("connections"), Some(0.25), "{text}");
    if cfg!(target_os = "linux") {
        for kind in ["cpu", "memory"] {
            let value = utilization(kind).unwrap_or_else(|| panic!("{kind} in\n{text}"));
            assert!((0.0..=1.0).contains(&value), "{kind}: {value}");
        }
        assert!(
            utilization("memory") > Some(0.0),
            "a process has resident memory"
        );
    }
    // No cap known: 0, not a division by zero.
    let text = render(&metrics);
    assert_eq!(
        sample(
            &text,
            r#"llm_resource_utilization{resource_type="in_flight",service="gateway"}"#
        ),
        Some(0.0)
    );
}

/// A snapshot of a breaker with `window`'s counts.
fn snapshot(state: StateKind, calls: u32, failures: u32, slow: u32) -> BreakerSnapshot {
    let breaker = Breaker::new("b", BreakerConfig::default(), SystemClock::shared()).unwrap();
    let mut snapshot = breaker.snapshot();
    snapshot.state = state;
    snapshot.window.calls = calls;
    snapshot.window.failures = failures;
    snapshot.window.slow = slow;
    snapshot.window.failure_rate = f64::from(failures) / f64::from(calls);
    snapshot.window.slow_call_rate = f64::from(slow) / f64::from(calls);
    snapshot
}

#[test]
fn breaker_rates_are_read_from_the_snapshots_and_leave_with_their_breaker() {
    let metrics = metrics();
    let breakers = [
        (
            "llm-service".to_owned(),
            snapshot(StateKind::Closed, 4, 1, 2),
        ),
        (
            "instance:a".to_owned(),
            snapshot(StateKind::HalfOpen, 8, 8, 0),
        ),
    ];
    let text = metrics
        .render(&Scrape {
            breakers: &breakers,
            ..Scrape::default()
        })
        .unwrap();
    for (series, value) in [
        (r#"circuit_breaker_state{service="instance:a"}"#, 2.0),
        (
            r#"circuit_breaker_failure_rate{service="llm-service"}"#,
            0.25,
        ),
        (
            r#"circuit_breaker_slow_call_rate{service="llm-service"}"#,
            0.5,
        ),
        (
            r#"circuit_breaker_window_calls{service="llm-service"}"#,
            4.0,
        ),
        (r#"circuit_breaker_failure_rate{service="instance:a"}"#, 1.0),
        (
            r#"circuit_breaker_slow_call_rate{service="instance:a"}"#,
            0.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    // The instance left discovery: its series go with it.
    let text = metrics
        .render(&Scrape {
            breakers: &breakers[..1],
            ..Scrape::default()
        })
        .unwrap();
    assert!(!text.contains("instance:a"), "{text}");
    assert_eq!(samples(&text, "circuit_breaker_failure_rate").len(), 1);
}

#[test]
fn a_real_breakers_window_shows_in_its_rates() {
    let breaker = Breaker::new(
        "instance:a",
        BreakerConfig {
            failure_threshold: 100,
            ..BreakerConfig::default()
        },
        SystemClock::shared(),
    )
    .unwrap();
    for outcome in [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Success,
        Outcome::Success,
    ] {
        breaker.try_acquire().unwrap().record(outcome);
    }
    let metrics = metrics();
    let breakers = [("instance:a".to_owned(), breaker.snapshot())];
    let text = metrics
        .render(&Scrape {
            breakers: &breakers,
            ..Scrape::default()
        })
        .unwrap();
    assert_eq!(
        sample(
            &text,
            r#"circuit_breaker_failure_rate{service="instance:a"}"#
        ),
        Some(0.25),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"circuit_breaker_window_calls{service="instance:a"}"#
        ),
        Some(4.0)
    );
}

#[test]
fn breaker_call_durations_are_a_histogram_by_breaker_and_outcome() {
    let metrics = metrics();
    metrics.breaker_call("instance:a", Outcome::Success, Duration::from_millis(30));
    metrics.breaker_call("instance:a", Outcome::Success, Duration::from_millis(70));
    metrics.breaker_call("instance:a", Outcome::Failure, Duration::from_secs(3));
    // An ignored call says nothing of the dependency: not observed.
    metrics.breaker_call("llm-service", Outcome::Ignored, Duration::from_secs(1));
    let text = render(&metrics);
    let family = "circuit_breaker_call_duration_seconds";
    for (series, value) in [
        (r#"_count{outcome="success",service="instance:a"}"#, 2.0),
        (
            r#"_bucket{outcome="success",service="instance:a",le="0.05"}"#,
            1.0,
        ),
        (
            r#"_bucket{outcome="success",service="instance:a",le="0.1"}"#,
            2.0,
        ),
        (r#"_count{outcome="failure",service="instance:a"}"#, 1.0),
        (
            r#"_bucket{outcome="failure",service="instance:a",le="2"}"#,
            0.0,
        ),
        (r#"_sum{outcome="failure",service="instance:a"}"#, 3.0),
    ] {
        let series = format!("{family}{series}");
        assert_eq!(sample(&text, &series), Some(value), "{series} in\n{text}");
    }
    assert!(!text.contains(r#"service="llm-service""#), "{text}");
}

#[test]
fn pools_show_their_calls_in_flight_and_their_queue() {
    let metrics = metrics();
    let pools = [
        (
            "primary",
            PoolLoad {
                in_flight: 3,
                queued: 1,
            },
        ),
        ("secondary", PoolLoad::default()),
    ];
    let text = metrics
        .render(&Scrape {
            pools: &pools,
            ..Scrape::default()
        })
        .unwrap();
    for (series, value) in [
        (r#"gateway_pool_in_flight{pool="primary"}"#, 3.0),
        (r#"gateway_pool_queue_length{pool="primary"}"#, 1.0),
        (r#"gateway_pool_in_flight{pool="secondary"}"#, 0.0),
        (r#"gateway_pool_queue_length{pool="secondary"}"#, 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
}

#[test]
fn every_family_has_help_and_a_type() {
    let metrics = metrics();
    metrics.answered(answered("llm-a", "default", Some(Usage::new(1, 1))));
    metrics.breaker_call("instance:a", Outcome::Success, Duration::from_millis(1));
    let text = metrics
        .render(&Scrape {
            breakers: &[("llm-service".to_owned(), snapshot(StateKind::Open, 1, 1, 1))],
            pools: &[("primary", PoolLoad::default())],
            ..Scrape::default()
        })
        .unwrap();
    for family in [
        "llm_errors_total",
        "llm_tokens_processed_total",
        "llm_resource_utilization",
        "circuit_breaker_failure_rate",
        "circuit_breaker_slow_call_rate",
        "circuit_breaker_window_calls",
        "circuit_breaker_call_duration_seconds",
        "gateway_pool_in_flight",
        "gateway_pool_queue_length",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "HELP of {family}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "TYPE of {family}"
        );
    }
}

/// A gateway over `llm`, with a route named `small` besides `default`; ready (its first
/// health round done).
async fn gateway_over(llm: &FakeLlm) -> Arc<Gateway> {
    let path = std::env::temp_dir().join(format!(
        "gateway-metrics-{}-{}.toml",
        std::process::id(),
        llm.url.rsplit(':').next().unwrap()
    ));
    std::fs::write(
        &path,
        "[routes.small]\ntargets = [{ pool = \"primary\" }]\n",
    )
    .unwrap();
    let settings = Settings::from_sources::<_, &str>(
        [],
        &[
            ("LLM_SERVICE_URLS", llm.url.as_str()),
            ("GATEWAY_CONFIG", &path.display().to_string()),
        ],
    );
    std::fs::remove_file(&path).ok();
    let gateway = Gateway::start(settings.unwrap()).await.unwrap();
    assert!(gateway.checker.first_round().await);
    gateway
}

async fn post(gateway: &Arc<Gateway>, path: &str, body: serde_json::Value) -> StatusCode {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = crate::routes::app(Arc::clone(gateway))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    status
}

async fn scrape(gateway: &Arc<Gateway>) -> String {
    let request = Request::get("/metrics?format=prometheus")
        .body(Body::empty())
        .unwrap();
    let response = crate::routes::app(Arc::clone(gateway))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_model_no_route_names_is_counted_as_other_and_makes_no_series_of_its_own() {
    let llm = FakeLlm::start("llm-a", Reply::Ok).await;
    let gateway = gateway_over(&llm).await;
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    for model in ["small", "client-made-this-up-1", "client-made-this-up-2"] {
        assert_eq!(
            post(&gateway, "/v1/chat/completions", chat(model)).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        post(&gateway, "/generate", json!({"prompt": "three words here"})).await,
        StatusCode::OK
    );
    let text = scrape(&gateway).await;
    let tokens = samples(&text, "llm_tokens_processed_total");
    // A chat answer is served by the instance's id (its address: the fake's chat names no
    // service id), a /generate answer by the service id the fake gives.
    let id = llm.url.trim_start_matches("http://");
    assert!(
        tokens
            .iter()
            .all(|line| !line.contains("client-made-this-up")),
        "{tokens:#?}"
    );
    // The fake counts 2 prompt and 3 completion tokens per chat; /generate is estimated
    // (3 prompt words) and says 3 tokens of answer.
    for (model, operation, service, value) in [
        ("small", "prompt", id, 2.0),
        ("other", "prompt", id, 4.0),
        ("other", "completion", id, 6.0),
        ("default", "prompt", "llm-a", 3.0),
        ("default", "completion", "llm-a", 3.0),
    ] {
        let series = format!(
            r#"llm_tokens_processed_total{{model="{model}",operation="{operation}",service="{service}"}}"#
        );
        assert_eq!(
            sample(&text, &series),
            Some(value),
            "{series} in\n{tokens:#?}"
        );
    }
    assert_eq!(tokens.len(), 6, "{tokens:#?}");

    // The scrape read the gateway's state: the pool breaker and the instance's, their
    // calls, the pools and the resources.
    let instance = format!("instance:{id}");
    for series in [
        r#"circuit_breaker_failure_rate{service="llm-service"}"#.to_owned(),
        format!(r#"circuit_breaker_window_calls{{service="{instance}"}}"#),
        r#"gateway_pool_in_flight{pool="primary"}"#.to_owned(),
        r#"gateway_pool_queue_length{pool="secondary"}"#.to_owned(),
        r#"llm_resource_utilization{resource_type="connections",service="gateway"}"#.to_owned(),
    ] {
        assert!(sample(&text, &series).is_some(), "{series} in\n{text}");
    }
    assert_eq!(
        sample(
            &text,
            &format!(
                r#"circuit_breaker_call_duration_seconds_count{{outcome="success",service="{instance}"}}"#
            )
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"circuit_breaker_call_duration_seconds_count{outcome="success",service="llm-service"}"#
        ),
        Some(4.0),
        "the pool breaker in front of the primary pool saw every request"
    );
}
