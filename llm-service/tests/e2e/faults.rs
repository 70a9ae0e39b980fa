//! Request faults (`latency`, `error`, `hang`, `reset`, `malformed`) and `unhealthy`, seen
//! from outside as a client sees them, with their expiry; and the `/chaos` API itself: the
//! list, deletion, bad bodies, `/chaos/inject-failure`, `CHAOS_ENABLED`, `CHAOS_TOKEN` and
//! the WARN line.
//!
//! Stream faults are in `stream_faults`, resource faults in `resource_faults`; both use the
//! helpers here.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{LlmExt, LlmService, eventually};

/// A `/generate` body.
pub(crate) fn prompt() -> Value {
    json!({"prompt": "What is resilience?", "max_tokens": 10})
}

/// A chat body asking for 10 tokens, streamed or not.
pub(crate) fn chat(stream: bool) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "Explain retries"}],
           "max_tokens": 10, "stream": stream})
}

/// The active faults, as `GET /chaos/faults` lists them.
pub(crate) async fn active_faults(llm: &LlmService) -> Vec<Value> {
    let (status, body) = llm.get_json("/chaos/faults").await;
    assert_eq!(status, 200, "{body}");
    body["faults"].as_array().expect("a `faults` array").clone()
}

/// A client of its own (no pooled connection) that gives up after `limit`.
pub(crate) fn client_with_timeout(limit: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(limit).build().unwrap()
}

/// `POST path`, timed from before the request to the end of the body.
async fn timed_post(llm: &LlmService, path: &str, body: Value) -> (Duration, u16, String) {
    let start = Instant::now();
    let response = llm.post_json(path, body).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (start.elapsed(), status, text)
}

/// `POST /generate`'s status, with a client that gives up after `limit` (then `None`).
async fn generate_status(llm: &LlmService, limit: Duration) -> Option<u16> {
    client_with_timeout(limit)
        .post(format!("{}/generate", llm.url))
        .json(&prompt())
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn a_fixed_latency_delays_the_next_requests_then_its_count_runs_out() {
    let llm = LlmService::builder().start().await;
    llm.add_fault(json!({"kind": "latency", "ms": 400, "count": 2}))
        .await;
    for (path, body) in [
        ("/generate", prompt()),
        ("/v1/chat/completions", chat(false)),
    ] {
        let (took, status, text) = timed_post(&llm, path, body).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(1900),
            "{path} took {took:?}, the fault adds 400 ms"
        );
    }
    let (took, status, _) = timed_post(&llm, "/generate", prompt()).await;
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_millis(350),
        "the third request is fast: {took:?}"
    );
    assert!(
        active_faults(&llm).await.is_empty(),
        "used up after 2 requests"
    );
}

#[tokio::test]
async fn a_latency_range_delays_each_request_within_it() {
    let llm = LlmService::builder().start().await;
    llm.add_fault(json!({"kind": "latency", "min_ms": 200, "max_ms": 450, "duration_s": 30}))
        .await;
    for _ in 0..3 {
        let (took, status, _) = timed_post(&llm, "/generate", prompt()).await;
        assert_eq!(status, 200);
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(1450),
            "took {took:?}, the fault adds 200–450 ms"
        );
    }
    let listed = active_faults(&llm).await;
    assert_eq!(listed[0]["hits"], 3, "{listed:?}");
}

#[tokio::test]
async fn error_faults_answer_the_chosen_status_code_and_retry_after() {
    let llm = LlmService::builder().start().await;
    // (fault, status, OpenAI type, code, Retry-After)
    let cases = [
        (
            json!({"kind": "error", "status": 429, "code": "rate_limit_exceeded",
                   "retry_after_s": 2}),
            429,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
            Some("2"),
        ),
        (
            json!({"kind": "error", "status": 400, "code": "context_length_exceeded",
                   "message": "This model's maximum context length is 4096 tokens"}),
            400,
            "invalid_request_error",
            Some("context_length_exceeded"),
            None,
        ),
        (
            json!({"kind": "error", "status": 400, "code": "content_policy_violation"}),
            400,
            "invalid_request_error",
            Some("content_policy_violation"),
            None,
        ),
        (
            json!({"kind": "error", "status": 503}),
            503,
            "server_error",
            None,
            None,
        ),
    ];
    for (mut fault, status, kind, code, retry_after) in cases {
        // One request per endpoint, then the fault is used up.
        fault["count"] = json!(2);
        llm.add_fault(fault.clone()).await;
        for (path, body) in [
            ("/v1/chat/completions", chat(false)),
            ("/generate", prompt()),
        ] {
            let response = llm.post_json(path, body).await;
            assert_eq!(response.status(), status, "{fault} on {path}");
            let header = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(header.as_deref(), retry_after, "{fault} on {path}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["type"], kind, "{fault} on {path}: {error}");
            assert_eq!(
                error["error"]["code"],
                json!(code),
                "{fault} on {path}: {error}"
            );
            assert!(error["error"]["message"].is_string(), "{error}");
            if let Some(message) = fault.get("message") {
                assert_eq!(&error["error"]["message"], message);
            }
        }
        let (_, after, text) = timed_post(&llm, "/generate", prompt()).await;
        assert_eq!(after, 200, "{fault} used up after its count: {text}");
    }
}

#[tokio::test]
async fn an_error_rate_of_one_fails_every_request_and_a_half_rate_about_half() {
    let llm = LlmService::builder().start().await;
    let every = llm
        .add_fault(json!({"kind": "error", "status": 503, "rate": 1.0}))
        .await;
    for n in 0..20 {
        let (_, status, _) = timed_post(&llm, "/generate", prompt()).await;
        assert_eq!(status, 503, "request {n}");
    }
    assert_eq!(active_faults(&llm).await[0]["hits"], 20);
    llm.client
        .delete(format!("{}/chaos/faults/{every}", llm.url))
        .send()
        .await
        .unwrap();

    llm.add_fault(json!({"kind": "error", "status": 503, "rate": 0.5}))
        .await;
    let mut failed = 0;
    for _ in 0..200 {
        let (_, status, _) = timed_post(&llm, "/generate", prompt()).await;
        assert!(status == 200 || status == 503, "{status}");
        failed += u64::from(status == 503);
    }
    // 200 draws at 0.5: outside 50..=150 has a probability below 1e-12.
    assert!(
        (50..=150).contains(&failed),
        "{failed} of 200 failed at rate 0.5"
    );
    assert_eq!(
        active_faults(&llm).await[0]["hits"],
        failed,
        "hits counts what failed"
    );
}

#[tokio::test]
async fn an_error_fault_with_a_duration_expires_on_time() {
    let llm = LlmService::builder().start().await;
    let start = Instant::now();
    let id = llm
        .add_fault(json!({"kind": "error", "status": 503, "duration_s": 1}))
        .await;
    let (_, status, _) = timed_post(&llm, "/generate", prompt()).await;
    assert_eq!(status, 503);
    let listed = active_faults(&llm).await;
    assert_eq!(listed[0]["id"], id);
    let left = listed[0]["expires_in_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 1000, "expires_in_ms {left}");

    let recovered = eventually(Duration::from_secs(3), || async {
        llm.post_json("/generate", prompt()).await.status() == 200
    })
    .await;
    let took = start.elapsed();
    assert!(recovered, "requests succeed again once the fault expired");
    assert!(
        took >= Duration::from_secs(1),
        "not before its duration: {took:?}"
    );
    assert!(took < Duration::from_millis(2500), "expired late: {took:?}");
    assert!(active_faults(&llm).await.is_empty(), "no longer listed");
}

#[tokio::test]
async fn a_hang_never_answers_while_health_does_until_it_expires() {
    let llm = LlmService::builder().start().await;
    let start = Instant::now();
    llm.add_fault(json!({"kind": "hang", "duration_s": 3}))
        .await;
    let hung = client_with_timeout(Duration::from_secs(1))
        .post(format!("{}/generate", llm.url))
        .json(&prompt())
        .send()
        .await;
    let error = hung.expect_err("a hung request is never answered");
    assert!(error.is_timeout(), "the client's timeout fires: {error:?}");
    let (status, health) = llm.get_json("/health").await;
    assert_eq!(status, 200, "/health is not hung: {health}");
    assert_eq!(health["active_faults"], json!(["hang"]));

    let answered = eventually(Duration::from_secs(5), || async {
        generate_status(&llm, Duration::from_millis(300)).await == Some(200)
    })
    .await;
    assert!(answered, "requests answer once the hang expired");
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert!(active_faults(&llm).await.is_empty());
}

#[tokio::test]
async fn a_reset_is_a_tcp_rst_before_any_byte() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let llm = LlmService::builder().start().await;
    llm.add_fault(json!({"kind": "reset", "count": 1})).await;
    let address = llm.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = prompt().to_string();
    let request = format!(
        "POST /generate HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut received))
        .await
        .expect("the connection ends at once");
    let error = outcome.expect_err("a reset, not a clean close");
    assert_eq!(
        error.kind(),
        std::io::ErrorKind::ConnectionReset,
        "{error:?}"
    );
    assert!(
        received.is_empty(),
        "no byte before the reset: {received:?}"
    );
}

#[tokio::test]
async fn a_reset_fails_the_request_without_a_status_and_the_server_stays_up() {
    let llm = LlmService::builder().start().await;
    llm.add_fault(json!({"kind": "reset", "count": 2})).await;
    for (path, body) in [
        ("/generate", prompt()),
        ("/v1/chat/completions", chat(false)),
    ] {
        // A fresh connection: nothing for the client to retry on.
        let error = client_with_timeout(Duration::from_secs(5))
            .post(format!("{}{path}", llm.url))
            .json(&body)
            .send()
            .await
            .expect_err("a reset connection gives no answer");
        assert!(error.status().is_none(), "{path}: {error:?}");
        assert!(!error.is_timeout(), "reset at once, not hung: {error:?}");
        assert!(error.is_request(), "{path}: {error:?}");
    }
    let (status, health) = llm.get_json("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        generate_status(&llm, Duration::from_secs(5)).await,
        Some(200)
    );
    assert!(
        active_faults(&llm).await.is_empty(),
        "used up after 2 requests"
    );
}

#[tokio::test]
async fn malformed_answers_200_with_a_body_that_is_not_json() {
    let llm = LlmService::builder().start().await;
    llm.add_fault(json!({"kind": "malformed", "count": 2}))
        .await;
    for (path, body) in [
        ("/generate", prompt()),
        ("/v1/chat/completions", chat(false)),
    ] {
        let (_, status, text) = timed_post(&llm, path, body).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            serde_json::from_str::<Value>(&text).is_err(),
            "{path} answered valid JSON: {text}"
        );
    }
    let (_, status, text) = timed_post(&llm, "/generate", prompt()).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
}

#[tokio::test]
async fn unhealthy_fails_health_but_not_requests_until_it_expires() {
    let llm = LlmService::builder().start().await;
    let start = Instant::now();
    llm.add_fault(json!({"kind": "unhealthy", "duration_s": 1.5}))
        .await;
    let (status, health) = llm.get_json("/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["overall_status"], "unhealthy");
    assert_eq!(health["active_faults"], json!(["unhealthy"]));
    let (status, model) = llm.get_json("/model/health").await;
    assert_eq!(status, 503, "{model}");
    assert_eq!(model["status"], "unhealthy");
    let (_, status, text) = timed_post(&llm, "/generate", prompt()).await;
    assert_eq!(status, 200, "requests still answer: {text}");

    let healthy = eventually(Duration::from_secs(3), || async {
        let (status, health) = llm.get_json("/health").await;
        status == 200 && health["overall_status"] == "healthy"
    })
    .await;
    assert!(healthy, "healthy again once the fault expired");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let (status, model) = llm.get_json("/model/health").await;
    assert_eq!(status, 200, "{model}");
    assert_eq!(model["status"], "healthy");
}

#[tokio::test]
async fn the_fault_list_shows_expiry_remaining_and_hits() {
    let llm = LlmService::builder().start().await;
    let response = llm
        .post_json(
            "/chaos/faults",
            json!({"kind": "latency", "ms": 1, "duration_s": 30}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let latency = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/chaos/faults/{latency}"));
    assert_eq!(created["kind"], "latency");
    let error = llm
        .add_fault(json!({"kind": "error", "status": 500, "count": 3}))
        .await;

    let listed = active_faults(&llm).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["id"], latency, "oldest first");
    assert_eq!(listed[0]["ms"], 1);
    assert_eq!(listed[0]["rate"], 1.0);
    let left = listed[0]["expires_in_ms"].as_u64().unwrap();
    assert!(left > 25_000 && left <= 30_000, "expires_in_ms {left}");
    assert_eq!(listed[0]["remaining"], Value::Null);
    assert_eq!(listed[0]["hits"], 0);
    assert_eq!(listed[1]["id"], error);
    assert_eq!(listed[1]["kind"], "error");
    assert_eq!(listed[1]["expires_in_ms"], Value::Null);
    assert_eq!(listed[1]["remaining"], 3);
    assert_eq!(listed[1]["hits"], 0);

    let (_, status, _) = timed_post(&llm, "/generate", prompt()).await;
    assert_eq!(status, 500);
    let listed = active_faults(&llm).await;
    assert_eq!(
        (&listed[0]["hits"], &listed[0]["remaining"]),
        (&json!(1), &Value::Null)
    );
    assert_eq!(
        (&listed[1]["hits"], &listed[1]["remaining"]),
        (&json!(1), &json!(2))
    );
    let (status, health) = llm.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["active_faults"], json!(["latency", "error"]));
}

#[tokio::test]
async fn faults_are_deleted_one_by_one_or_all_at_once() {
    let llm = LlmService::builder().start().await;
    let delete = |path: String| {
        let request = llm.client.delete(format!("{}{path}", llm.url));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let first = llm.add_fault(json!({"kind": "error", "status": 503})).await;
    let second = llm.add_fault(json!({"kind": "latency", "ms": 1})).await;
    let third = llm.add_fault(json!({"kind": "malformed"})).await;

    assert_eq!(
        delete(format!("/chaos/faults/{first}")).await,
        (200, json!({"removed": 1}))
    );
    let ids: Vec<Value> = active_faults(&llm)
        .await
        .iter()
        .map(|f| f["id"].clone())
        .collect();
    assert_eq!(ids, [json!(second), json!(third)]);
    let (_, status, text) = timed_post(&llm, "/generate", json!({"prompt": "hi"})).await;
    assert_eq!(status, 200, "the error fault is gone");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "the malformed one is not"
    );

    for unknown in [first.clone(), "f-999".to_owned()] {
        let (status, body) = delete(format!("/chaos/faults/{unknown}")).await;
        assert_eq!(status, 404, "{unknown}: {body}");
        assert_eq!(body["error"]["field"], "id", "{body}");
    }

    assert_eq!(
        delete("/chaos/faults".to_owned()).await,
        (200, json!({"removed": 2}))
    );
    assert!(active_faults(&llm).await.is_empty());
    let (_, status, text) = timed_post(&llm, "/generate", prompt()).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
    assert_eq!(
        delete("/chaos/faults".to_owned()).await,
        (200, json!({"removed": 0}))
    );
}

#[tokio::test]
async fn invalid_fault_bodies_are_refused_naming_the_field() {
    let llm = LlmService::builder().start().await;
    let cases = [
        (json!({"kind": "teleport"}), "kind"),
        (json!({"kind": 5}), "kind"),
        (json!({"rate": 1.0}), "kind"),
        (json!(["error"]), "body"),
        (json!({"kind": "latency"}), "ms"),
        (json!({"kind": "latency", "ms": -5}), "ms"),
        (
            json!({"kind": "latency", "min_ms": 900, "max_ms": 100}),
            "min_ms",
        ),
        (json!({"kind": "error", "status": 200}), "status"),
        (json!({"kind": "error", "rate": 0}), "rate"),
        (json!({"kind": "error", "rate": 1.5}), "rate"),
        (json!({"kind": "error", "duration_s": -1}), "duration_s"),
        (json!({"kind": "error", "duration_s": "soon"}), "duration_s"),
        (json!({"kind": "error", "count": 0}), "count"),
        (json!({"kind": "slow_first_token"}), "ms"),
        (
            json!({"kind": "stream_cut", "after_tokens": "three"}),
            "after_tokens",
        ),
        (json!({"kind": "stream_stall", "after_tokens": 2}), "ms"),
        (json!({"kind": "cpu_burn", "threads": 0}), "threads"),
        (json!({"kind": "memory", "mb": 0}), "mb"),
        (json!({"kind": "unhealthy", "count": 3}), "count"),
    ];
    for (body, field) in cases {
        let response = llm.post_json("/chaos/faults", body.clone()).await;
        let status = response.status().as_u16();
        let error: Value = response.json().await.unwrap();
        assert!((400..500).contains(&status), "{body}: {status} {error}");
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
        assert!(error["error"]["message"].is_string(), "{error}");
    }
    let broken = llm
        .client
        .post(format!("{}/chaos/faults", llm.url))
        .header("content-type", "application/json")
        .body(r#"{"kind": "#)
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let error: Value = broken.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_json", "{error}");
    assert_eq!(error["error"]["field"], "body", "{error}");
    assert!(active_faults(&llm).await.is_empty(), "nothing was added");
}

#[tokio::test]
async fn inject_failure_answers_at_once_and_fails_requests_until_it_expires() {
    let llm = LlmService::builder().start().await;
    let start = Instant::now();
    let (status, injected) = llm.get_json("/chaos/inject-failure?duration_s=1").await;
    let answered_in = start.elapsed();
    assert_eq!(status, 200, "{injected}");
    assert!(
        answered_in < Duration::from_millis(500),
        "answered at once: {answered_in:?}"
    );
    assert!(
        injected["message"].as_str().unwrap().contains('1'),
        "{injected}"
    );
    assert_eq!(injected["service_id"], llm.service_id.as_str());
    let id = injected["fault_id"].as_str().unwrap();
    assert_eq!(active_faults(&llm).await[0]["id"], id);

    for (path, body) in [
        ("/generate", prompt()),
        ("/v1/chat/completions", chat(false)),
    ] {
        let (_, status, text) = timed_post(&llm, path, body).await;
        assert_eq!(status, 500, "{path}: {text}");
    }
    let recovered = eventually(Duration::from_secs(3), || async {
        llm.post_json("/generate", prompt()).await.status() == 200
    })
    .await;
    let took = start.elapsed();
    assert!(recovered, "requests succeed once the failure expired");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert!(active_faults(&llm).await.is_empty());

    let (status, error) = llm.get_json("/chaos/inject-failure?duration_s=never").await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "duration_s");
}

#[tokio::test]
async fn without_chaos_enabled_the_fault_api_refuses_and_injects_nothing() {
    // The service's own default: test-support turns the API on unless told otherwise.
    let llm = LlmService::builder().without_chaos().start().await;
    let client = &llm.client;

    let inject = client
        .get(format!("{}/chaos/inject-failure?duration_s=30", llm.url))
        .send()
        .await
        .unwrap();
    assert_eq!(inject.status(), 403);
    let body: Value = inject.json().await.unwrap();
    assert_eq!(body["error"]["type"], "chaos_disabled", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CHAOS_ENABLED=true"),
        "{body}"
    );
    let posted = client
        .post(format!("{}/chaos/faults", llm.url))
        .json(&json!({"kind": "error", "status": 500, "duration_s": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 403);
    let (status, _) = llm.get_json("/chaos/faults").await;
    assert_eq!(status, 403);

    // Nothing was injected: every request still succeeds.
    for _ in 0..5 {
        let answer = llm.post_json("/generate", prompt()).await;
        assert_eq!(answer.status(), 200);
    }
    assert!(
        llm.logs()
            .settled()
            .await
            .iter()
            .any(|line| line.contains("fault-injection API off")),
        "the start says the API is off: {:#?}",
        llm.logs().lines()
    );
}

#[tokio::test]
async fn the_chaos_token_admits_only_its_bearer_and_guards_nothing_else() {
    let llm = LlmService::builder().chaos_token("s3cret").start().await;
    let faults = format!("{}/chaos/faults", llm.url);
    let client = &llm.client;
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.unwrap().status().as_u16()
    };
    let error = json!({"kind": "error", "status": 500, "duration_s": 30});

    // Refused: no token, a wrong one, the token in the old `X-Chaos-Token` header.
    assert_eq!(status(client.get(&faults)).await, 401);
    assert_eq!(status(client.get(&faults).bearer_auth("wrong")).await, 401);
    assert_eq!(
        status(client.get(&faults).header("x-chaos-token", "s3cret")).await,
        401
    );
    for request in [
        client.post(&faults).json(&error),
        client.post(&faults).json(&error).bearer_auth("s3cre"),
        client
            .post(&faults)
            .json(&error)
            .header("x-chaos-token", "s3cret"),
    ] {
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.headers()["www-authenticate"], "Bearer");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["type"], "unauthorized", "{body}");
    }
    let inject = format!("{}/chaos/inject-failure?duration_s=30", llm.url);
    assert_eq!(status(client.get(&inject)).await, 401);
    assert_eq!(
        status(client.get(&inject).header("x-chaos-token", "s3cret")).await,
        401
    );
    assert_eq!(status(client.delete(&faults)).await, 401);
    // Nothing of that was injected.
    assert_eq!(
        status(client.post(format!("{}/generate", llm.url)).json(&prompt())).await,
        200
    );

    // With the bearer token: it works.
    assert_eq!(status(client.get(&faults).bearer_auth("s3cret")).await, 200);
    let added = client
        .post(&faults)
        .bearer_auth("s3cret")
        .json(&json!({"kind": "latency", "ms": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let listed: Value = client
        .get(&faults)
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["faults"].as_array().unwrap().len(),
        1,
        "only the authorized add"
    );

    assert_eq!(
        status(client.post(format!("{}/generate", llm.url)).json(&prompt())).await,
        200
    );
    assert_eq!(
        status(
            client
                .post(format!("{}/v1/chat/completions", llm.url))
                .json(&chat(false))
        )
        .await,
        200
    );
    assert_eq!(status(client.get(format!("{}/health", llm.url))).await, 200);
    let lines = llm.logs().settled().await;
    assert!(
        !lines.iter().any(|line| line.contains("s3cret")),
        "the token is never logged: {lines:#?}"
    );
}

#[tokio::test]
async fn adding_a_fault_and_its_expiry_log_warn_lines() {
    let llm = LlmService::builder().start().await;
    let id = llm
        .add_fault(json!({"kind": "latency", "ms": 1, "duration_s": 0.2}))
        .await;
    let warned = |what: &'static str| {
        let id = id.clone();
        let llm = &llm;
        move || {
            let found = llm.logs().lines().iter().any(|line| {
                line.contains("WARN") && line.contains(what) && line.contains(id.as_str())
            });
            async move { found }
        }
    };
    assert!(
        eventually(Duration::from_secs(2), warned("fault added")).await,
        "a WARN line names the added fault: {:#?}",
        llm.logs().lines()
    );
    assert!(
        eventually(Duration::from_secs(2), warned("fault expired")).await,
        "a WARN line names the expired fault: {:#?}",
        llm.logs().lines()
    );
}
