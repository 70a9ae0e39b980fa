//! Issue #19, part 4: the access log and the traces.
//!
//! - the access-log line (`LOG_FORMAT=json`) parses as JSON, carries the request id and
//!   the incoming `traceparent`'s trace id, and never the prompt; llm-service logs the
//!   request id it received and the same trace id;
//! - spans sent over OTLP/HTTP (JSON) to a receiver written here: the gateway's `request`
//!   span is the child of the incoming parent, each `upstream.attempt` the child of
//!   `request`, llm-service's `request` the child of the attempt that reached it; a failed
//!   first try makes two attempts; a fallback answer has its `fallback.tier` span; a
//!   breaker refusal its `breaker.rejected` span; spans still waiting leave at shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

use crate::harness::{Gateway, LlmService};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

/// One span as received: the service that sent it and its fields.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_id: String,
    attributes: Value,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<String> {
        self.attributes.as_array()?.iter().find_map(|kv| {
            (kv["key"] == key).then(|| {
                let value = &kv["value"];
                // Strings as they are; integers (`intValue`, a string in OTLP JSON) as digits.
                match (&value["stringValue"], &value["intValue"]) {
                    (Value::String(text), _) | (_, Value::String(text)) => text.clone(),
                    _ => value.to_string(),
                }
            })
        })
    }
}

/// An OTLP/HTTP receiver on loopback: `POST /v1/traces` with a JSON body.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn traces(State(spans): State<Arc<Mutex<Vec<Span>>>>, body: Bytes) -> StatusCode {
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = Vec::new();
    for resource in doc["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|kv| kv["key"] == "service.name")
            .and_then(|kv| kv["value"]["stringValue"].as_str())
            .unwrap_or("")
            .to_owned();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let text = |key: &str| span[key].as_str().unwrap_or("").to_lowercase();
                received.push(Span {
                    service: service.clone(),
                    name: text("name"),
                    trace_id: text("traceId"),
                    span_id: text("spanId"),
                    parent_id: text("parentSpanId"),
                    attributes: span["attributes"].clone(),
                });
            }
        }
    }
    spans.lock().unwrap().extend(received);
    StatusCode::OK
}

impl Receiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(Arc::clone(&spans));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            spans,
            task,
        }
    }

    /// The spans of `TRACE_ID` received so far.
    fn of_trace(&self) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .cloned()
            .collect()
    }

    /// Waits (at most 10 s) until the spans of the trace satisfy `done`; returns them.
    async fn wait_for(&self, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.of_trace();
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An llm-service exporting to `receiver`.
async fn traced_llm(receiver: &Receiver) -> LlmService {
    LlmService::builder()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url)
        .env("OTEL_BSP_SCHEDULE_DELAY", 100)
        .start()
        .await
}

/// A gateway in front of `llm`, exporting to `receiver`.
async fn traced_gateway(receiver: &Receiver, llm: &LlmService) -> Gateway {
    Gateway::builder()
        .upstreams(&[llm])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url)
        .env("OTEL_BSP_SCHEDULE_DELAY", 100)
        .start()
        .await
}

/// `POST /generate` with the test's `traceparent`; the answer's JSON.
async fn generate(gw: &Gateway, prompt: &str, request_id: &str) -> Value {
    let response = gw
        .client()
        .post(format!("{}/generate", gw.url))
        .header("traceparent", traceparent())
        .header("x-request-id", request_id)
        .json(&json!({"prompt": prompt, "max_tokens": 16}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn named<'a>(spans: &'a [Span], service: &str, name: &str) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_link_the_request_its_attempt_and_the_llm_service() {
    let receiver = Receiver::start().await;
    let llm = traced_llm(&receiver).await;
    let gw = traced_gateway(&receiver, &llm).await;

    let answer = generate(&gw, "what is a trace", "trace-e2e-1").await;
    assert_eq!(answer["data"]["fallback_used"], false, "{answer}");

    let spans = receiver
        .wait_for(|spans| {
            !named(spans, "llm-service", "request").is_empty()
                && !named(spans, "gateway", "request").is_empty()
        })
        .await;
    let describe = format!("{spans:#?}");
    assert!(spans.iter().all(|s| s.trace_id == TRACE_ID));
    let request = named(&spans, "gateway", "request");
    assert_eq!(request.len(), 1, "one gateway request span: {describe}");
    let request = request[0];
    assert_eq!(
        request.parent_id, PARENT_ID,
        "the request span continues the incoming parent"
    );
    assert_eq!(
        request.attribute("request_id").as_deref(),
        Some("trace-e2e-1")
    );
    let attempts = named(&spans, "gateway", "upstream.attempt");
    assert_eq!(attempts.len(), 1, "one attempt: {describe}");
    assert_eq!(
        attempts[0].parent_id, request.span_id,
        "the attempt is the request's child"
    );
    let tiers = named(&spans, "gateway", "fallback.tier");
    assert!(
        tiers
            .iter()
            .any(|t| t.parent_id == request.span_id
                && t.attribute("tier").as_deref() == Some("primary")),
        "a primary tier span under the request: {describe}"
    );
    let served = named(&spans, "llm-service", "request");
    assert_eq!(served.len(), 1, "{describe}");
    assert_eq!(
        served[0].parent_id, attempts[0].span_id,
        "llm-service continues the gateway's attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_try_makes_two_attempt_spans() {
    let receiver = Receiver::start().await;
    let llm = traced_llm(&receiver).await;
    let gw = traced_gateway(&receiver, &llm).await;
    llm.add_fault(json!({"kind": "error", "status": 500, "count": 1}))
        .await;

    let answer = generate(&gw, "retry me", "trace-e2e-2").await;
    assert_eq!(answer["data"]["fallback_used"], false, "{answer}");

    let spans = receiver
        .wait_for(|spans| {
            named(spans, "gateway", "upstream.attempt").len() >= 2
                && named(spans, "llm-service", "request").len() >= 2
                && !named(spans, "gateway", "request").is_empty()
        })
        .await;
    let describe = format!("{spans:#?}");
    let request = named(&spans, "gateway", "request");
    assert_eq!(request.len(), 1, "{describe}");
    let attempts = named(&spans, "gateway", "upstream.attempt");
    assert_eq!(attempts.len(), 2, "two attempts: {describe}");
    for attempt in &attempts {
        assert_eq!(attempt.parent_id, request[0].span_id, "{describe}");
    }
    let served = named(&spans, "llm-service", "request");
    for attempt in &attempts {
        assert!(
            served.iter().any(|s| s.parent_id == attempt.span_id),
            "llm-service's span under each attempt: {describe}"
        );
    }
    let failed: Vec<_> = served
        .iter()
        .filter(|s| s.attribute("http.response.status_code").as_deref() == Some("500"))
        .collect();
    assert_eq!(failed.len(), 1, "the first try failed: {describe}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_answer_has_its_tier_span() {
    let receiver = Receiver::start().await;
    let llm = traced_llm(&receiver).await;
    let gw = traced_gateway(&receiver, &llm).await;
    llm.add_fault(json!({"kind": "error", "status": 500})).await;

    let answer = generate(&gw, "fall back please", "trace-e2e-3").await;
    assert_eq!(answer["data"]["fallback_used"], true, "{answer}");
    let tier = answer["data"]["fallback_type"].as_str().unwrap().to_owned();

    let spans = receiver
        .wait_for(|spans| {
            !named(spans, "gateway", "request").is_empty()
                && named(spans, "gateway", "fallback.tier")
                    .iter()
                    .any(|t| t.attribute("tier").as_deref() != Some("primary"))
        })
        .await;
    let describe = format!("{spans:#?}");
    let request = named(&spans, "gateway", "request");
    assert_eq!(request.len(), 1, "{describe}");
    let tiers = named(&spans, "gateway", "fallback.tier");
    let primary = tiers
        .iter()
        .find(|t| t.attribute("tier").as_deref() == Some("primary"))
        .unwrap_or_else(|| panic!("a primary tier span: {describe}"));
    assert_eq!(primary.parent_id, request[0].span_id);
    assert!(
        tiers.iter().any(|t| t.parent_id == request[0].span_id
            && t.attribute("tier").is_some_and(|name| tier.contains(&name))),
        "a span of the {tier} tier that answered: {describe}"
    );
    assert!(
        !named(&spans, "gateway", "upstream.attempt").is_empty(),
        "the primary's failed attempts are spans too: {describe}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_refusal_is_a_span_under_the_request() {
    let receiver = Receiver::start().await;
    let llm = traced_llm(&receiver).await;
    // The harness's pool breaker opens after 3 failed requests and stays open 2 s.
    let gw = traced_gateway(&receiver, &llm).await;
    llm.add_fault(json!({"kind": "error", "status": 500})).await;

    // Back to back: 3 failed requests open it, the next ones are refused while it is open.
    for n in 0..6 {
        generate(
            &gw,
            &format!("open the breaker {n} zq"),
            &format!("trace-e2e-4-{n}"),
        )
        .await;
    }
    let spans = receiver
        .wait_for(|spans| !named(spans, "gateway", "breaker.rejected").is_empty())
        .await;
    let describe = format!("{spans:#?}");
    let rejected = named(&spans, "gateway", "breaker.rejected");
    assert!(!rejected.is_empty(), "a breaker.rejected span: {describe}");
    let requests = named(&spans, "gateway", "request");
    for span in &rejected {
        assert!(
            requests.iter().any(|r| r.span_id == span.parent_id),
            "the refusal under its request: {describe}"
        );
        assert_eq!(span.attribute("breaker").as_deref(), Some("llm-service"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_is_json_with_request_and_trace_ids_and_no_prompt() {
    let llm = LlmService::builder()
        .env("LOG_FORMAT", "json")
        .start()
        .await;
    let gw = Gateway::builder()
        .upstreams(&[&llm])
        .env("LOG_FORMAT", "json")
        .start()
        .await;
    let prompt = "my very private question about zebras";
    generate(&gw, prompt, "access-e2e-1").await;

    let access = |lines: Vec<String>| -> Option<Value> {
        lines
            .iter()
            .filter(|l| l.contains("access-e2e-1") && l.contains("\"access\""))
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        if let Some(line) = access(gw.logs().lines()) {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no access line: {}",
            gw.logs().tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fields = &line["fields"];
    assert_eq!(line["target"], "access");
    assert_eq!(fields["request_id"], "access-e2e-1");
    assert_eq!(fields["trace_id"], TRACE_ID);
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["route"], "default");
    assert_eq!(fields["tier"], "primary");
    assert_eq!(fields["retries"], 0);
    assert_eq!(fields["caller"], "anonymous");
    assert_eq!(fields["prompt_len"], prompt.len());
    assert_eq!(fields["prompt_sha256"].as_str().map(str::len), Some(16));
    assert!(fields["served_by"].is_string(), "{line}");
    assert!(fields["tokens"].as_u64().is_some_and(|t| t > 0), "{line}");
    assert!(fields["latency_ms"].as_f64().is_some(), "{line}");

    let gateway_log = gw.logs().settled().await.join("\n");
    assert!(
        !gateway_log.contains("zebras"),
        "the prompt is in the gateway's log"
    );

    let llm_lines = llm.logs().settled().await;
    let served = llm_lines
        .iter()
        .filter(|l| l.contains("\"access\""))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no llm-service access line: {}", llm.logs().tail(20)));
    assert_eq!(served["fields"]["request_id"], "access-e2e-1");
    assert_eq!(served["fields"]["trace_id"], TRACE_ID);
    assert!(!llm_lines.join("\n").contains("zebras"));

    // A malformed traceparent (an all-zero trace id) is ignored: a new trace, which the
    // llm-service continues.
    let response = gw
        .client()
        .post(format!("{}/generate", gw.url))
        .header(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )
        .header("x-request-id", "access-e2e-2")
        .json(&json!({"prompt": "a new trace", "max_tokens": 16}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let of = |lines: Vec<String>| {
        lines
            .iter()
            .filter(|l| l.contains("access-e2e-2") && l.contains("\"access\""))
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|line| line["fields"]["trace_id"].as_str().unwrap_or("").to_owned())
    };
    let new_trace = of(gw.logs().settled().await).expect("the gateway's access line");
    assert_eq!(new_trace.len(), 32);
    assert!(new_trace.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(new_trace, "0".repeat(32));
    assert_ne!(new_trace, TRACE_ID);
    assert_eq!(
        of(llm.logs().settled().await).as_deref(),
        Some(new_trace.as_str()),
        "llm-service continues the new trace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_waiting_are_exported_at_shutdown() {
    let receiver = Receiver::start().await;
    let llm = LlmService::builder().start().await;
    // A batch delay far beyond the test: only the flush at shutdown can send the spans.
    let mut gw = Gateway::builder()
        .upstreams(&[&llm])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url)
        .env("OTEL_BSP_SCHEDULE_DELAY", 600_000)
        .start()
        .await;
    generate(&gw, "flush me", "trace-e2e-5").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        named(&receiver.of_trace(), "gateway", "request").is_empty(),
        "nothing exported before the batch delay"
    );

    gw.terminate().await;
    let status = gw.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "clean exit: {status:?}");
    let spans = receiver
        .wait_for(|spans| !named(spans, "gateway", "request").is_empty())
        .await;
    assert_eq!(
        named(&spans, "gateway", "request").len(),
        1,
        "the request span flushed at shutdown: {spans:#?}"
    );
    assert!(!named(&spans, "gateway", "upstream.attempt").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_stream_carries_the_trace_to_the_llm_service() {
    let llm = LlmService::builder()
        .env("LOG_FORMAT", "json")
        .start()
        .await;
    let gw = Gateway::builder().upstreams(&[&llm]).start().await;
    let response = gw
        .client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("traceparent", traceparent())
        .header("x-request-id", "chat-e2e-1")
        .json(&json!({
            "model": "gpt-3.5-turbo",
            "stream": true,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "stream a trace"}],
        }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body.contains("[DONE]"), "{body}");

    let lines = llm.logs().settled().await;
    let served = lines
        .iter()
        .filter(|l| l.contains("chat-e2e-1") && l.contains("\"access\""))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no llm-service access line: {}", llm.logs().tail(20)));
    assert_eq!(served["fields"]["path"], "/v1/chat/completions");
    assert_eq!(served["fields"]["trace_id"], TRACE_ID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continued_stream_says_where_it_broke_in_its_trace_and_its_log() {
    let receiver = Receiver::start().await;
    let a = traced_llm(&receiver).await;
    let b = LlmService::builder().start().await;
    let config = format!(
        "[routes.default]\ntargets = [{{ pool = \"primary\" }}, \
         {{ url = \"{}/v1\", model = \"backup-model\", name = \"backup\" }}]\n",
        b.url
    );
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .config(&config)
        .env("LOG_FORMAT", "json")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url)
        .env("OTEL_BSP_SCHEDULE_DELAY", 100)
        .start()
        .await;
    a.add_fault(json!({"kind": "stream_cut", "after_tokens": 3, "count": 1}))
        .await;
    let response = gw
        .client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("traceparent", traceparent())
        .header("x-request-id", "continued-e2e-1")
        .json(&json!({
            "model": "m",
            "stream": true,
            "max_tokens": 30,
            "messages": [{"role": "user", "content": "continue a trace"}],
        }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let body = response.text().await.unwrap();
    assert!(body.contains("[DONE]"), "{body}");

    let spans = receiver
        .wait_for(|spans| !named(spans, "gateway", "stream.continuation").is_empty())
        .await;
    let describe = format!("{spans:#?}");
    let request = named(&spans, "gateway", "request");
    let continued = named(&spans, "gateway", "stream.continuation");
    assert_eq!((request.len(), continued.len()), (1, 1), "{describe}");
    let continued = continued[0];
    assert_eq!(continued.parent_id, request[0].span_id, "{describe}");
    assert_eq!(
        continued.attribute("broke_at"),
        Some(format!("127.0.0.1:{}", a.port))
    );
    assert_eq!(continued.attribute("after_tokens").as_deref(), Some("3"));
    assert_eq!(
        continued.attribute("continued_on").as_deref(),
        Some("backup")
    );
    assert_eq!(continued.attribute("how").as_deref(), Some("restart"));
    assert!(
        named(&spans, "gateway", "fallback.tier")
            .iter()
            .any(|t| t.parent_id == continued.span_id),
        "the continuation's tries are under its span: {describe}"
    );

    let lines = gw.logs().settled().await;
    let line = lines
        .iter()
        .filter(|l| l.contains("continued-e2e-1") && l.contains("continued_on"))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no continuation line: {}", gw.logs().tail(20)));
    let fields = &line["fields"];
    assert_eq!(fields["trace_id"], TRACE_ID, "{line}");
    assert_eq!(fields["continued_on"], "backup", "{line}");
    assert_eq!(
        fields["upstream"],
        format!("127.0.0.1:{}", a.port),
        "{line}"
    );
    assert_eq!(fields["after_tokens"], 3, "{line}");
}
