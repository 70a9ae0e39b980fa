use std::time::Duration;

use resilience_core::fallback::{AllTiersFailed, ProviderError, TierFailure, TierKind};

use super::*;

fn failure(status: Option<u16>, class: FailureClass) -> AttemptFailure {
    AttemptFailure {
        status,
        ..AttemptFailure::new("llm-1", class, "boom")
    }
}

fn tier(error: ProviderError) -> TierFailure {
    TierFailure {
        tier: TierKind::Primary,
        provider: "primary".to_owned(),
        error,
        elapsed: Duration::ZERO,
    }
}

fn exhausted(errors: Vec<ProviderError>) -> FallbackError {
    FallbackError::AllTiersFailed(AllTiersFailed {
        failures: errors.into_iter().map(tier).collect(),
        disabled: Vec::new(),
    })
}

async fn body(response: Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn exhaustion_surfaces_the_last_upstream_failure_with_a_fitting_status() {
    for (errors, expected) in [
        (
            vec![ProviderError::Upstream(Box::new(failure(
                Some(503),
                FailureClass::ServerError,
            )))],
            503,
        ),
        (
            vec![ProviderError::Upstream(Box::new(failure(
                Some(429),
                FailureClass::RateLimited,
            )))],
            429,
        ),
        (
            vec![ProviderError::Timeout {
                after: Duration::from_secs(1),
                last: Some(Box::new(failure(None, FailureClass::Timeout))),
            }],
            504,
        ),
        (
            vec![ProviderError::Upstream(Box::new(failure(
                None,
                FailureClass::Transport,
            )))],
            502,
        ),
        (
            vec![ProviderError::Upstream(Box::new(failure(
                Some(404),
                FailureClass::Misconfigured,
            )))],
            502,
        ),
        (vec![ProviderError::CircuitOpen, ProviderError::Miss], 503),
        // The last attempt of any tier, not the last tier's (which made none).
        (
            vec![
                ProviderError::Upstream(Box::new(failure(Some(502), FailureClass::ServerError))),
                ProviderError::NoneAvailable,
                ProviderError::Unavailable("redis".to_owned()),
            ],
            502,
        ),
    ] {
        let error = exhausted(errors);
        let attempted = error.last_attempt().is_some();
        let response = OpenAiFailure::new(&error, "req-9", 7).into_response();
        assert_eq!(response.status().as_u16(), expected);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        let body = body(response).await;
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.ends_with("(request id req-9)"), "{message}");
        assert!(
            !message.contains("boom") && !message.contains("llm-1"),
            "{message}"
        );
        if !attempted {
            assert_eq!(body["error"]["code"], "no_upstream_available");
        } else {
            assert_eq!(body["error"]["code"], "upstream_error");
        }
    }
    let asked = AttemptFailure {
        retry_after: Some(Duration::from_secs(20)),
        ..failure(Some(429), FailureClass::RateLimited)
    };
    let response = OpenAiFailure::new(
        &exhausted(vec![ProviderError::Upstream(Box::new(asked))]),
        "req-9",
        7,
    )
    .into_response();
    assert_eq!(
        response.headers()[header::RETRY_AFTER],
        "20",
        "the upstream's own wait"
    );
    assert_eq!(body(response).await["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn a_refusal_passes_its_status_type_and_code_but_not_its_message() {
    let refusal = AttemptFailure {
        status: Some(413),
        code: Some("context_length_exceeded".to_owned()),
        kind: Some("invalid_request_error".to_owned()),
        message: "too long for postgres://***@db.internal".to_owned(),
        ..AttemptFailure::new("llm-1", FailureClass::ContextTooLong, "too long")
    };
    let rejected = FallbackError::Rejected(tier(ProviderError::Client(Box::new(refusal))));
    let response = OpenAiFailure::new(&rejected, "req-1", 7).into_response();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.headers().get(header::RETRY_AFTER).is_none());
    let body = body(response).await;
    assert_eq!(
        body["error"]["message"],
        "the prompt does not fit the model's context (HTTP 4xx) (request id req-1)"
    );
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let typed = AttemptFailure {
        status: Some(400),
        kind: Some("moderation_error".to_owned()),
        ..AttemptFailure::new("llm-1", FailureClass::Refused, "no")
    };
    let rejected = FallbackError::Rejected(tier(ProviderError::Client(Box::new(typed))));
    let typed = self::body(OpenAiFailure::new(&rejected, "req-1", 7).into_response()).await;
    assert_eq!(
        typed["error"]["type"], "moderation_error",
        "the upstream's type"
    );
    assert_eq!(typed["error"]["code"], serde_json::Value::Null);

    let odd = AttemptFailure {
        status: Some(200),
        ..AttemptFailure::new("llm-1", FailureClass::Refused, "no")
    };
    let rejected = FallbackError::Rejected(tier(ProviderError::Client(Box::new(odd))));
    assert_eq!(
        OpenAiFailure::new(&rejected, "req-1", 7).status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_lab_gets_422_for_a_refusal_and_503_with_retry_after_otherwise() {
    let refusal = AttemptFailure {
        status: Some(400),
        code: Some("max_tokens_too_large".to_owned()),
        ..AttemptFailure::new("llm-1", FailureClass::Refused, "max_tokens too large")
    };
    let rejected = FallbackError::Rejected(tier(ProviderError::Client(Box::new(refusal))));
    let response = LabFailure::new(&rejected, "req-1", 30).into_response();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.headers().get(header::RETRY_AFTER).is_none());
    let body422 = body(response).await;
    assert_eq!(body422["status"], "error");
    assert_eq!(body422["error"]["type"], "invalid_request");
    assert_eq!(
        body422["error"]["message"],
        "the upstream refused the request (HTTP 4xx) [max_tokens_too_large]"
    );
    assert_eq!(body422["request_id"], "req-1");

    let response =
        LabFailure::new(&exhausted(vec![ProviderError::CircuitOpen]), "req-2", 30).into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    let body503 = body(response).await;
    assert_eq!(body503["error"]["type"], "service_unavailable");
    assert_eq!(body503["request_id"], "req-2");
}

#[test]
fn a_broken_stream_ends_with_an_event_saying_stalled_or_broken() {
    let stalled = interrupted_event(&UpstreamError::Timeout(Duration::from_millis(1500)), "r");
    assert_eq!(
        stalled.error.message,
        "the upstream stream stalled: no event for 1500 ms (request id r)"
    );
    assert_eq!(stalled.error.code.as_deref(), Some("stream_interrupted"));
    let broken = interrupted_event(
        &UpstreamError::Malformed("the upstream sent an error event: pwd=***".to_owned()),
        "r",
    );
    assert_eq!(
        broken.error.message,
        "the upstream stream broke before the answer finished (request id r)"
    );
}
