//! Issue #18, points 2 and 4: the admin routes refuse cross-site browser requests and
//! addresses outside `ADMIN_ALLOW` in `AUTH_MODE=none` while the lab's plain `curl` calls
//! keep working; `/admin/status` shows no upstream URL's query; with `PII_REDACTION=mask` a
//! prompt's e-mail address reaches the upstream masked and never the gateway's log.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::harness::{Gateway, GatewayExt, LlmService};

/// Recovery long enough that an OPEN breaker stays OPEN for the whole test.
const RECOVERY_S: u64 = 60;

/// The address a prompt carries in [`pii_is_masked_before_the_upstream_and_in_the_log`].
const ADDRESS: &str = "alice@example.com";

/// `POST /admin/reset-circuit-breaker` with `headers` and `body`; the status.
async fn reset_with(gw: &Gateway, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut request = gw
        .client()
        .post(format!("{}/admin/reset-circuit-breaker", gw.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(body.to_owned())
        .send()
        .await
        .expect("the reset is answered")
        .status()
        .as_u16()
}

/// `GET /admin/status` with `headers`; the status.
async fn status_with(gw: &Gateway, headers: &[(&str, &str)]) -> u16 {
    let mut request = gw.client().get(format!("{}/admin/status", gw.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .expect("/admin/status is answered")
        .status()
        .as_u16()
}

/// The pool breaker's state as `/admin/status` shows it.
async fn pool_state(gw: &Gateway) -> String {
    gw.admin_status().await["circuit_breaker"]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Fails requests on `llm` until the pool breaker opens, then heals it: the breaker stays
/// OPEN for [`RECOVERY_S`] unless reset.
async fn open_the_breaker(gw: &Gateway, llm: &LlmService) {
    llm.add_fault(json!({"kind": "error", "status": 500, "rate": 1.0}))
        .await;
    for n in 0..3 {
        gw.generate(&format!("admin trip {n} zq")).await;
    }
    llm.clear_faults().await;
    assert_eq!(pool_state(gw).await, "OPEN", "three failures open it");
}

#[tokio::test]
async fn the_labs_plain_calls_keep_working() {
    let llm = LlmService::builder().start().await;
    let gw = Gateway::builder().upstreams(&[&llm]).start().await;
    assert_eq!(
        reset_with(&gw, &[], "").await,
        200,
        "curl -X POST, no headers"
    );
    assert_eq!(
        reset_with(&gw, &[("content-type", "application/json")], "{}").await,
        200,
        "a JSON POST"
    );
    assert_eq!(status_with(&gw, &[]).await, 200);
    assert_eq!(
        status_with(&gw, &[("sec-fetch-site", "none")]).await,
        200,
        "typed in the address bar"
    );
}

#[tokio::test]
async fn a_cross_site_form_post_is_refused_and_resets_nothing() {
    let llm = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&llm])
        .breaker(3, RECOVERY_S)
        .start()
        .await;
    open_the_breaker(&gw, &llm).await;

    let form = [
        ("origin", "https://evil.example"),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    assert_eq!(reset_with(&gw, &form, "x=1").await, 403);
    assert_eq!(
        pool_state(&gw).await,
        "OPEN",
        "the refused reset reset nothing"
    );
    let cross_site = [("sec-fetch-site", "cross-site")];
    assert_eq!(reset_with(&gw, &cross_site, "").await, 403);
    assert_eq!(status_with(&gw, &cross_site).await, 403);
    assert_eq!(
        reset_with(&gw, &[("content-type", "text/plain")], "x").await,
        403,
        "a form type with no Origin"
    );
    assert_eq!(pool_state(&gw).await, "OPEN");

    assert_eq!(reset_with(&gw, &[], "").await, 200, "the lab's curl");
    assert_eq!(pool_state(&gw).await, "CLOSED");
    let logs = gw.logs().settled().await.join("\n");
    assert!(logs.contains("admin request refused"), "{logs}");
}

#[tokio::test]
async fn admin_allow_limits_the_admin_routes_to_its_networks() {
    let llm = LlmService::builder().start().await;
    let elsewhere = Gateway::builder()
        .upstreams(&[&llm])
        .env("ADMIN_ALLOW", "10.0.0.0/8")
        .start()
        .await;
    assert_eq!(reset_with(&elsewhere, &[], "").await, 403);
    assert_eq!(status_with(&elsewhere, &[]).await, 403);
    let refused = elsewhere.get("/admin/status", "application/json").await;
    assert_eq!(
        refused.body["error"]["type"], "forbidden",
        "{}",
        refused.body
    );
    assert!(refused.body["request_id"].is_string(), "{}", refused.body);
    assert_eq!(elsewhere.health().await.0, 200, "/health stays public");

    let local = Gateway::builder()
        .upstreams(&[&llm])
        .env("ADMIN_ALLOW", "127.0.0.1")
        .start()
        .await;
    assert_eq!(reset_with(&local, &[], "").await, 200);
    assert_eq!(status_with(&local, &[]).await, 200);
}

#[tokio::test]
async fn admin_status_shows_no_query_of_an_endpoint_url() {
    // (Credentials in a target's `url` are refused when the configuration is read; the
    // status would drop them too: see `wire::public_url`.)
    let llm = LlmService::builder().start().await;
    let config = "[routes.keyed]\n\
         targets = [{ url = \"http://127.0.0.1:9/v1?key=s3cr3t-query#frag\", model = \"m\" }]\n";
    let gw = Gateway::builder()
        .upstreams(&[&llm])
        .config(config)
        .start()
        .await;
    let status = gw.admin_status().await;
    let endpoint = &status["endpoints"][0];
    assert_eq!(
        endpoint["instances"][0]["url"], "http://127.0.0.1:9/v1",
        "{status}"
    );
    let (_, health) = gw.health().await;
    let (_, metrics) = gw.metrics_text().await;
    let metrics_json = gw.metrics_json().await;
    for shown in [
        status.to_string(),
        health.to_string(),
        metrics,
        metrics_json.to_string(),
    ] {
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("frag"), "{shown}");
    }
}

/// An OpenAI-compatible upstream on a free port that answers every chat request with "ok"
/// and keeps each request body; its base URL (`…/v1`) and the bodies.
async fn recording_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&bodies);
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |body: String| {
            let kept = Arc::clone(&kept);
            async move {
                kept.lock().unwrap().push(body);
                axum::Json(json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "ok"}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }))
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, bodies)
}

#[tokio::test]
async fn pii_is_masked_before_the_upstream_and_in_the_log() {
    let llm = LlmService::builder().start().await;
    let (upstream, bodies) = recording_upstream().await;
    let config = format!(
        "[tiers]\ncache = false\ntemplate = false\n\
         [routes.recorded]\ntargets = [{{ url = \"{upstream}\", model = \"m\" }}]\n"
    );
    let gw = Gateway::builder()
        .upstreams(&[&llm])
        .config(&config)
        .env("PII_REDACTION", "mask")
        .env("RUST_LOG", "info,gateway=debug,http_edge=debug")
        .start()
        .await;

    let prompt =
        format!("Write to {ADDRESS} or call +44 20 7946 0958 about card 4111 1111 1111 1111");
    let generated = gw
        .generate_body(
            json!({"prompt": prompt, "model": "recorded", "max_tokens": 8}),
            None,
        )
        .await;
    assert_eq!(generated.status, 200, "{}", generated.body);
    let chat = gw
        .chat(json!({
            "model": "recorded",
            "messages": [
                {"role": "system", "content": format!("the user is {ADDRESS}")},
                {"role": "user", "content": [{"type": "text", "text": prompt}]},
            ],
        }))
        .await;
    assert_eq!(chat.status, 200, "{}", chat.body);

    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    for body in &bodies {
        let sent: Value = serde_json::from_str(body).unwrap();
        let text = sent["messages"].to_string();
        assert!(!text.contains(ADDRESS), "{text}");
        assert!(!text.contains("7946"), "{text}");
        assert!(!text.contains("4111"), "{text}");
        assert!(
            text.contains("[EMAIL]") && text.contains("[PHONE]") && text.contains("[CARD]"),
            "{text}"
        );
    }
    let logs = gw.logs().settled().await.join("\n");
    assert!(!logs.contains(ADDRESS), "the address was logged");
}

#[tokio::test]
async fn pii_is_not_masked_by_default() {
    let llm = LlmService::builder().start().await;
    let (upstream, bodies) = recording_upstream().await;
    let config =
        format!("[routes.recorded]\ntargets = [{{ url = \"{upstream}\", model = \"m\" }}]\n");
    let gw = Gateway::builder()
        .upstreams(&[&llm])
        .config(&config)
        .start()
        .await;
    let answer = gw
        .generate_body(
            json!({"prompt": format!("mail {ADDRESS}"), "model": "recorded", "max_tokens": 8}),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let bodies = bodies.lock().unwrap().clone();
    assert!(bodies.iter().any(|b| b.contains(ADDRESS)), "{bodies:?}");
}
