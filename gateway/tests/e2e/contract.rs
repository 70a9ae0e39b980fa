//! The lab contract: the `/generate` envelope and its types, request ids, `/health`,
//! `/metrics` (JSON and Prometheus text), `/live`, `/ready`, `/admin/status`; and the
//! load spread over two instances.

use serde_json::Value;

use crate::harness::{Answer, Gateway, GatewayExt, LlmExt, LlmService};

/// Asserts the `/generate` success envelope, `{"status": "success", "data": {…}}` (README.md,
/// "The gateway"), with the types clients parse: strings, integer `tokens_used` and
/// `response_time_ms`, a JSON boolean `fallback_used`, `fallback_type` null or a tier name.
/// Returns `data`.
pub fn assert_success_envelope(answer: &Answer) -> &Value {
    assert_eq!(answer.status, 200, "a 200 answer: {answer:?}");
    assert_eq!(
        answer.body["status"], "success",
        "envelope: {}",
        answer.body
    );
    let data = answer.data();
    assert!(data.is_object(), "`data` is an object: {}", answer.body);
    for field in ["response", "model_used", "served_by", "request_id"] {
        assert!(
            data[field].is_string(),
            "`data.{field}` is a string: {}",
            answer.body
        );
    }
    for field in ["tokens_used", "response_time_ms"] {
        assert!(
            data[field].is_u64(),
            "`data.{field}` is a non-negative integer: {}",
            answer.body
        );
    }
    assert!(
        data["fallback_used"].is_boolean(),
        "`data.fallback_used` is a JSON boolean: {}",
        answer.body
    );
    let tier = &data["fallback_type"];
    assert!(
        data.get("fallback_type").is_some()
            && (tier.is_null()
                || ["secondary", "cache", "template"].contains(&tier.as_str().unwrap_or("?"))),
        "`data.fallback_type` is null|secondary|cache|template: {}",
        answer.body
    );
    let reason = &data["fallback_reason"];
    assert!(
        data.get("fallback_reason").is_some()
            && (reason.is_null()
                || [
                    "circuit_open",
                    "no_services_available",
                    "upstream_error",
                    "timeout"
                ]
                .contains(&reason.as_str().unwrap_or("?"))),
        "`data.fallback_reason` is null|circuit_open|no_services_available|upstream_error|timeout: {}",
        answer.body
    );
    if data["fallback_used"] == false {
        assert!(
            tier.is_null() && reason.is_null(),
            "no fallback → null fallback_type and fallback_reason: {}",
            answer.body
        );
    } else {
        assert!(
            !tier.is_null() && !reason.is_null(),
            "a fallback names its tier and reason: {}",
            answer.body
        );
    }
    data
}

/// Contract checks that do not stop at the first violation, so one run lists them all.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} contract violation(s):\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_health_and_metrics_answer_the_lab_contract() {
    let a = LlmService::builder().start().await;
    let b = LlmService::builder().start().await;
    let gw = Gateway::builder().upstreams(&[&a, &b]).start().await;
    let mut checks = Checks::default();

    // /generate with a client request id: echoed in the header and the body.
    let answer = gw
        .generate_with_id("What is a circuit breaker?", "e2e-contract-42")
        .await;
    let data = assert_success_envelope(&answer);
    assert_eq!(
        data["fallback_used"], false,
        "served by the pool: {}",
        answer.body
    );
    checks.check(!data["response"].as_str().unwrap().is_empty(), || {
        format!("a non-empty response: {}", answer.body)
    });
    checks.check(data["tokens_used"].as_u64().unwrap() >= 1, || {
        format!("tokens_used ≥ 1: {}", answer.body)
    });
    let served_by = data["served_by"].as_str().unwrap();
    checks.check(
        served_by == a.service_id || served_by == b.service_id,
        || {
            format!(
                "served_by is the answering instance's SERVICE_ID ({} or {}), got {served_by:?}",
                a.service_id, b.service_id
            )
        },
    );
    checks.check(data["request_id"] == "e2e-contract-42", || {
        format!("the client's request id in the body: {}", answer.body)
    });
    checks.check(
        answer.header("x-request-id").as_deref() == Some("e2e-contract-42"),
        || format!("x-request-id echoed: {:?}", answer.headers),
    );

    // Without one, the gateway generates it and returns the same id in header and body.
    let answer = gw.generate("Hello there, gateway").await;
    let data = assert_success_envelope(&answer);
    let generated = answer.header("x-request-id");
    checks.check(
        generated.as_deref().is_some_and(|id| !id.is_empty()),
        || format!("a generated x-request-id header: {:?}", answer.headers),
    );
    checks.check(data["request_id"].as_str() == generated.as_deref(), || {
        format!(
            "the body's request_id is the header's: {} vs {generated:?}",
            data["request_id"]
        )
    });

    // /health
    let (status, health) = gw.health().await;
    checks.check(status == 200, || {
        format!("/health answers 200, got {status}")
    });
    checks.check(health["overall_status"] == "healthy", || {
        format!("overall_status healthy: {}", health["overall_status"])
    });
    checks.check(health["circuit_breaker"]["state"] == "CLOSED", || {
        format!(
            "/health circuit_breaker.state CLOSED: {}",
            health["circuit_breaker"]
        )
    });
    let discovery = &health["service_discovery"];
    checks.check(discovery["available_services"].as_u64() == Some(2), || {
        format!(
            "available_services is the integer 2: {}",
            discovery["available_services"]
        )
    });
    let services = discovery["services"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    checks.check(services.len() == 2, || {
        format!(
            "service_discovery.services lists two: {}",
            discovery["services"]
        )
    });
    for service in &services {
        for field in ["id", "url", "tier", "model", "healthy", "circuit_state"] {
            checks.check(service.get(field).is_some(), || {
                format!("services[] item has `{field}`: {service}")
            });
        }
        checks.check(service["id"].is_string(), || {
            format!("id is a string: {service}")
        });
        checks.check(service["tier"].is_string(), || {
            format!("tier is a string: {service}")
        });
        checks.check(service["healthy"] == true, || format!("healthy: {service}"));
        checks.check(service["circuit_state"] == "CLOSED", || {
            format!("circuit_state CLOSED: {service}")
        });
        let url = service["url"].as_str().unwrap_or("").trim_end_matches('/');
        checks.check(url == a.url || url == b.url, || {
            format!("url is one of ours ({}, {}): {service}", a.url, b.url)
        });
    }

    // /metrics as JSON (what the lab's `jq .circuit_breaker.state` reads) ...
    let metrics = gw.metrics_json().await;
    checks.check(metrics["circuit_breaker"]["state"] == "CLOSED", || {
        format!(
            "/metrics JSON circuit_breaker.state CLOSED: {}",
            metrics["circuit_breaker"]
        )
    });
    checks.check(
        metrics["requests"]["total"]
            .as_u64()
            .is_some_and(|n| n >= 1)
            && metrics["requests"]["served"].is_u64()
            && metrics["requests"]["in_flight"].is_u64(),
        || format!("/metrics JSON requests counts: {}", metrics["requests"]),
    );
    // ... and as Prometheus text.
    let (content_type, text) = gw.metrics_text().await;
    checks.check(content_type.starts_with("text/plain"), || {
        format!("Prometheus content type, got {content_type:?}")
    });
    for name in [
        "llm_requests_total",
        "llm_request_duration_seconds_bucket",
        "llm_errors_total{error_code=",
        "circuit_breaker_state",
        // The rest of the lab's names (issue 19): tokens, resources, breaker windows and
        // call durations, each pool's load.
        "llm_tokens_processed_total{model=\"default\",operation=\"prompt\",",
        "llm_resource_utilization{resource_type=\"in_flight\",service=\"gateway\"}",
        "circuit_breaker_failure_rate{service=\"llm-service\"}",
        "circuit_breaker_call_duration_seconds_bucket{outcome=\"success\",",
        "gateway_pool_queue_length{pool=\"primary\"}",
    ] {
        checks.check(text.contains(name), || {
            format!("/metrics text (Accept: text/plain) carries `{name}`")
        });
    }

    // /live, /ready, /admin/status
    let live = gw.get("/live", "*/*").await.status;
    checks.check(live == 200, || format!("/live answers 200, got {live}"));
    let ready = gw.ready_status().await;
    checks.check(ready == Some(200), || {
        format!("/ready answers 200, got {ready:?}")
    });
    let admin = gw.admin_status().await;
    checks.check(admin["transitions"].is_array(), || {
        format!("/admin/status lists `transitions`: {admin}")
    });
    checks.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_is_spread_over_both_instances() {
    let a = LlmService::builder().start().await;
    let b = LlmService::builder().start().await;
    let gw = Gateway::builder().upstreams(&[&a, &b]).start().await;

    let (mut on_a, mut on_b) = (0u32, 0u32);
    let mut other = Vec::new();
    for n in 0..200 {
        let answer = gw.generate(&format!("spread {n}")).await;
        assert!(
            answer.is_primary_success(),
            "request {n} served by the pool: {answer:?}"
        );
        let served_by = answer.served_by();
        if a.is(served_by) {
            on_a += 1;
        } else if b.is(served_by) {
            on_b += 1;
        } else {
            other.push(served_by.to_owned());
        }
    }
    assert!(other.is_empty(), "served_by names one of ours: {other:?}");
    for (name, count) in [("a", on_a), ("b", on_b)] {
        assert!(
            (70..=130).contains(&count),
            "each instance serves 35–65 % of 200: {name} served {count} (a {on_a}, b {on_b})"
        );
    }
}
