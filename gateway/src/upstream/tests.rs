//! The upstream client against a fake llm-service: classification, error bodies, lenient
//! answers, timeouts, connection failures and the health probe.

use std::time::{Duration, Instant};

use llm_api::generate::GenerateRequest;
use resilience_core::health::HealthProbe;
use resilience_core::policy::FailureClass;

use super::error::{Said, error_message, identifier};
use super::{HttpProbe, Upstream, UpstreamClient, UpstreamError, join, parse_answer};
use crate::pool::testing::{FakeLlm, Reply, closed_port_url};

fn client() -> UpstreamClient {
    UpstreamClient::new().unwrap()
}

fn status(status: u16) -> UpstreamError {
    UpstreamError::Status {
        status,
        retry_after: None,
        message: "m".into(),
        code: None,
        kind: None,
    }
}

#[test]
fn classification_table() {
    use FailureClass as C;
    let d = Duration::from_millis(5);
    let coded = |status, code: &str| UpstreamError::Status {
        status,
        retry_after: None,
        message: "m".into(),
        code: Some(code.to_owned()),
        kind: None,
    };
    // (error, class, metrics label)
    let table = [
        (
            UpstreamError::Connect("refused".into()),
            C::Transport,
            "connect",
        ),
        (UpstreamError::Timeout(d), C::Timeout, "timeout"),
        (
            UpstreamError::Malformed("x".into()),
            C::Malformed,
            "malformed",
        ),
        (status(500), C::ServerError, "http_5xx"),
        (status(503), C::ServerError, "http_5xx"),
        (status(429), C::RateLimited, "http_429"),
        (status(408), C::ServerError, "http_4xx"),
        (status(400), C::Refused, "http_4xx"),
        (status(404), C::Misconfigured, "http_4xx"),
        (status(401), C::Misconfigured, "http_4xx"),
        (status(403), C::Misconfigured, "http_4xx"),
        (status(405), C::Misconfigured, "http_4xx"),
        (status(413), C::Refused, "http_4xx"),
        (status(422), C::Refused, "http_4xx"),
        (
            coded(400, "context_length_exceeded"),
            C::ContextTooLong,
            "http_4xx",
        ),
        (coded(400, "content_filter"), C::ContentRefused, "http_4xx"),
        (
            coded(400, "content_policy_violation"),
            C::ContentRefused,
            "http_4xx",
        ),
        (
            coded(500, "context_length_exceeded"),
            C::ServerError,
            "http_5xx",
        ),
    ];
    for (error, class, label) in table {
        assert_eq!(error.class(), class, "{error}");
        assert_eq!(error.error_type(), label, "{error}");
    }
}

#[test]
fn a_failure_keeps_status_code_message_and_retry_after() {
    let error = UpstreamError::Status {
        status: 429,
        retry_after: Some(Duration::from_secs(3)),
        message: "slow down".into(),
        code: Some("rate_limit".into()),
        kind: Some("rate_limit_error".into()),
    };
    let failure = error.failure("llm-1");
    assert_eq!(failure.target, "llm-1");
    assert_eq!(failure.class, FailureClass::RateLimited);
    assert_eq!(failure.status, Some(429));
    assert_eq!(failure.code.as_deref(), Some("rate_limit"));
    assert_eq!(failure.kind.as_deref(), Some("rate_limit_error"));
    assert_eq!(failure.message, "slow down");
    assert_eq!(failure.detail, "HTTP 429: slow down");
    assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
    let timeout = UpstreamError::Timeout(Duration::from_millis(250)).failure("llm-2");
    assert_eq!(timeout.timeout, Some(Duration::from_millis(250)));
    assert_eq!(timeout.message, "timed out after 250 ms");
    assert_eq!(timeout.status, None);
}

#[test]
fn error_messages_are_read_from_every_known_shape() {
    let openai = br#"{"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#;
    let message = |body: &[u8]| error_message(body).map(|said| said.message);
    assert_eq!(message(openai).as_deref(), Some("boom"));
    let coded = br#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
    assert_eq!(
        error_message(coded),
        Some(Said {
            message: "too long".to_owned(),
            code: Some("context_length_exceeded".to_owned()),
            kind: Some("invalid_request_error".to_owned()),
        })
    );
    let lab = br#"{"status":"error","error":{"type":"validation_error","message":"bad prompt","field":"prompt"}}"#;
    assert_eq!(message(lab).as_deref(), Some("bad prompt"));
    assert_eq!(message(br#"{"detail":"nope"}"#).as_deref(), Some("nope"));
    assert_eq!(
        message(b"\n  upstream exploded\nmore").as_deref(),
        Some("upstream exploded")
    );
    assert_eq!(error_message(b""), None);
}

#[test]
fn only_short_identifiers_are_kept_as_code_and_type() {
    let odd =
        br#"{"error":{"message":"x","type":"Server Error <b>","code":"see postgres://a:b@h"}}"#;
    assert_eq!(
        error_message(odd),
        Some(Said {
            message: "x".to_owned(),
            code: None,
            kind: None,
        })
    );
    for kept in ["context_length_exceeded", "invalid_request_error", "v1.e-2"] {
        assert_eq!(identifier(Some(kept.to_owned())).as_deref(), Some(kept));
    }
    for dropped in ["", "Upper", "with space", "a/b", &"x".repeat(65)] {
        assert_eq!(identifier(Some(dropped.to_owned())), None, "{dropped}");
    }
}

#[test]
fn answers_are_read_leniently_but_not_blindly() {
    let only_text = parse_answer(br#"{"text":"hi","tokens_used":1}"#).unwrap();
    assert_eq!(
        (only_text.response.as_str(), only_text.text.as_str()),
        ("hi", "hi")
    );
    assert!(matches!(
        parse_answer(br#"{"tokens_used":1}"#),
        Err(UpstreamError::Malformed(_))
    ));
    assert!(matches!(
        parse_answer(br#"{"response": "trunc"#),
        Err(UpstreamError::Malformed(_))
    ));
}

#[test]
fn urls_are_joined_with_one_slash() {
    assert_eq!(join("http://a:1/", "/generate"), "http://a:1/generate");
    assert_eq!(join("http://a:1", "health"), "http://a:1/health");
    assert_eq!(join("http://a:1/v1", "/generate"), "http://a:1/v1/generate");
}

#[tokio::test]
async fn generate_returns_the_flat_answer_and_passes_the_request_id() {
    let llm = FakeLlm::start("llm-a", Reply::Ok).await;
    let answer = client()
        .generate(
            &Upstream::lab(&llm.url),
            &GenerateRequest::new("hello"),
            Duration::from_secs(5),
            "req-42",
        )
        .await
        .unwrap();
    assert_eq!(answer.service_id, "llm-a");
    assert_eq!(answer.model_used, "fake-model");
    assert!(answer.response.contains("hello"));
    assert_eq!(answer.tokens_used, 3);
    assert_eq!(llm.calls(), 1);
    assert_eq!(llm.last_request_id().as_deref(), Some("req-42"));
    assert_eq!(llm.last_prompt().as_deref(), Some("hello"));
}

#[tokio::test]
async fn error_statuses_keep_message_and_retry_after() {
    let llm = FakeLlm::start("llm-a", Reply::Status(503)).await;
    let c = client();
    let req = GenerateRequest::new("x");
    let t = Duration::from_secs(5);
    let err = c
        .generate(&Upstream::lab(&llm.url), &req, t, "r")
        .await
        .unwrap_err();
    assert_eq!(err.failure("a").status, Some(503));
    assert!(
        err.to_string().contains("Simulated upstream error"),
        "{err}"
    );
    assert_eq!(err.class(), FailureClass::ServerError);

    llm.set(Reply::RetryAfter(429, 7));
    let err = c
        .generate(&Upstream::lab(&llm.url), &req, t, "r")
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "http_429");
    assert_eq!(err.failure("a").retry_after, Some(Duration::from_secs(7)));

    llm.set(Reply::Status(400));
    let err = c
        .generate(&Upstream::lab(&llm.url), &req, t, "r")
        .await
        .unwrap_err();
    assert_eq!(err.class(), FailureClass::Refused);
    assert!(!err.class().is_retryable());
}

#[tokio::test]
async fn a_hanging_upstream_times_out_on_time() {
    let llm = FakeLlm::start("llm-a", Reply::Hang).await;
    let started = Instant::now();
    let err = client()
        .generate(
            &Upstream::lab(&llm.url),
            &GenerateRequest::new("x"),
            Duration::from_millis(200),
            "r",
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, UpstreamError::Timeout(Duration::from_millis(200)));
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test]
async fn connection_failures_are_connect_errors() {
    let c = client();
    let req = GenerateRequest::new("x");
    let t = Duration::from_secs(5);
    let refused = c
        .generate(&Upstream::lab(&closed_port_url().await), &req, t, "r")
        .await
        .unwrap_err();
    assert_eq!(refused.error_type(), "connect", "{refused}");

    let closing = FakeLlm::start_closing("llm-c").await;
    let closed = c
        .generate(&Upstream::lab(&closing.url), &req, t, "r")
        .await
        .unwrap_err();
    assert_eq!(closed.error_type(), "connect", "{closed}");
    assert!(closed.class().is_retryable());
    assert!(closing.calls() >= 1);
}

#[tokio::test]
async fn a_truncated_body_is_malformed() {
    let llm = FakeLlm::start("llm-a", Reply::Malformed).await;
    let err = client()
        .generate(
            &Upstream::lab(&llm.url),
            &GenerateRequest::new("x"),
            Duration::from_secs(5),
            "r",
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "malformed", "{err}");
    assert!(err.class().is_retryable());
}

#[tokio::test]
async fn an_answer_larger_than_the_limit_is_malformed_not_read_whole() {
    let llm = FakeLlm::start("llm-a", Reply::Huge).await;
    let err = client()
        .generate(
            &Upstream::lab(&llm.url),
            &GenerateRequest::new("x"),
            Duration::from_secs(10),
            "r",
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "malformed", "{err}");
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[tokio::test]
async fn http_probe_tells_up_from_down() {
    let llm = FakeLlm::start("llm-a", Reply::Ok).await;
    let probe = HttpProbe::new(client(), "/health").with_timeout(Duration::from_millis(300));
    assert_eq!(probe.probe("llm-a", &llm.url).await, Ok(()));

    llm.set_health(503);
    let down = probe.probe("llm-a", &llm.url).await.unwrap_err();
    assert_eq!(down, "HTTP 503");

    llm.set_health(0); // hang
    let started = Instant::now();
    let hung = probe.probe("llm-a", &llm.url).await.unwrap_err();
    assert!(hung.contains("timed out"), "{hung}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let refused = probe
        .probe("gone", &closed_port_url().await)
        .await
        .unwrap_err();
    assert!(refused.contains("connection failed"), "{refused}");

    let other_path = HttpProbe::new(client(), "/model/health");
    assert_eq!(other_path.path(), "/model/health");
    assert_eq!(
        other_path.probe("llm-a", &llm.url).await.unwrap_err(),
        "HTTP 404"
    );
}

#[tokio::test]
async fn a_base_url_that_does_not_parse_fails_each_try_as_a_connection_failure() {
    let upstream = Upstream::lab("http://exa mple:1");
    let err = client()
        .generate(
            &upstream,
            &GenerateRequest::new("x"),
            Duration::from_secs(1),
            "r",
        )
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "connect", "{err}");
    assert!(err.to_string().contains("invalid upstream URL"), "{err}");
}
