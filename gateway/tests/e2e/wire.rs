//! Every JSON document of the lab's contract is exactly its `llm_api` type: read back and
//! written again, the gateway's bytes come out the same (every field known, in its type,
//! in the same order). Covers the `/generate` success envelope (from the pool and from a
//! fallback tier) and error envelope, `/health`, JSON `/metrics`, `/admin/status` (with
//! transitions) and `POST /admin/reset-circuit-breaker`.

use llm_api::ErrorBody;
use llm_api::breaker::BreakerState;
use llm_api::envelope::{FallbackType, GenerateSuccess};
use llm_api::gateway::{AdminStatus, GatewayHealth, ResetAnswer};
use llm_api::stats::GatewayMetrics;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::harness::{Gateway, LlmService};

/// The body of `request`, asserting its status.
async fn text(request: reqwest::RequestBuilder, status: u16) -> String {
    let response = request.send().await.expect("answered");
    assert_eq!(response.status().as_u16(), status);
    response.text().await.expect("a body")
}

/// Parses `body` as `T` and asserts that writing it again gives the same bytes.
fn exactly<T: Serialize + DeserializeOwned>(body: &str) -> T {
    let parsed: T = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{}: {e}: {body}", std::any::type_name::<T>()));
    let again = serde_json::to_string(&parsed).unwrap();
    assert_eq!(
        again,
        body,
        "{} drops or changes a field",
        std::any::type_name::<T>()
    );
    parsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_document_is_exactly_its_type() {
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .breaker(2, 30)
        .start()
        .await;
    let http = gw.client();
    let url = &gw.url;
    let generate = |body: serde_json::Value| http.post(format!("{url}/generate")).json(&body);

    let ok = text(
        generate(json!({"prompt": "wire types", "max_tokens": 8})),
        200,
    )
    .await;
    let ok: GenerateSuccess = exactly(&ok);
    assert!(!ok.data.fallback_used && ok.data.fallback_type.is_none());

    let bad = text(generate(json!({"prompt": " "})), 422).await;
    let bad: ErrorBody = exactly(&bad);
    assert_eq!(bad.error.field.as_deref(), Some("prompt"));

    let health = text(http.get(format!("{url}/health")), 200).await;
    let health: GatewayHealth = exactly(&health);
    assert_eq!(health.service_discovery.services.len(), 1);
    let metrics = http
        .get(format!("{url}/metrics"))
        .header("accept", "application/json");
    let metrics: GatewayMetrics = exactly(&text(metrics, 200).await);
    assert!(metrics.requests.total >= 1);

    // Open the pool breaker: fallback answers, then transitions in /admin/status.
    a.add_fault(json!({"kind": "error", "status": 500, "rate": 1.0}))
        .await;
    for n in 0..4 {
        let body = text(
            generate(json!({"prompt": format!("wire fallback {n}")})),
            200,
        )
        .await;
        let answer: GenerateSuccess = exactly(&body);
        assert_eq!(answer.data.fallback_type, Some(FallbackType::Template));
        assert!(answer.data.fallback_reason.is_some());
    }
    let metrics = http
        .get(format!("{url}/metrics"))
        .header("accept", "application/json");
    let metrics: GatewayMetrics = exactly(&text(metrics, 200).await);
    assert_eq!(metrics.circuit_breaker.state, BreakerState::Open);
    let admin: AdminStatus = exactly(&text(http.get(format!("{url}/admin/status")), 200).await);
    assert!(!admin.transitions.is_empty(), "{admin:?}");

    let reset = http.post(format!("{url}/admin/reset-circuit-breaker"));
    let reset: ResetAnswer = exactly(&text(reset, 200).await);
    assert_eq!(reset.state, BreakerState::Closed);
}
