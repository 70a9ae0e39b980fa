//! Bounded inputs (issue #16): an oversized model name, an unknown role, a huge `n` or too
//! many messages are a 422 naming the field, in the API's error shape, that never reaches
//! an upstream; the oversized value is never echoed back. Valid names of every documented
//! character and a modest `n` are still served.

use serde_json::{Value, json};

use crate::harness::{Answer, Gateway, GatewayExt, LlmExt, LlmService, RedisServer};

/// Asserts an OpenAI `invalid_request_error` blaming `param` with a short message.
fn assert_refused(answer: &Answer, param: &str) {
    assert_eq!(answer.status, 422, "{param}: {}", short(&answer.body));
    let error = &answer.body["error"];
    assert_eq!(
        error["type"],
        "invalid_request_error",
        "{}",
        short(&answer.body)
    );
    assert_eq!(error["param"], param, "{}", short(&answer.body));
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        !message.is_empty() && message.len() < 300,
        "{param}: a short message: {}",
        short(&answer.body)
    );
}

/// The body cut to something printable.
fn short(body: &Value) -> String {
    body.to_string().chars().take(400).collect()
}

fn chat(model: &str, messages: Value) -> Value {
    json!({"model": model, "messages": messages, "max_tokens": 5})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_names_unknown_roles_and_huge_n_are_422_without_reaching_the_upstream() {
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .env("MAX_MESSAGES", 4)
        .start()
        .await;
    let user = json!([{"role": "user", "content": "hi"}]);

    let huge_model = "m".repeat(900 * 1024);
    let answer = gw.chat(chat(&huge_model, user.clone())).await;
    assert_refused(&answer, "model");
    let message = answer.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&huge_model.len().to_string()) && !message.contains("mmmmmmmmmm"),
        "the length is said, the value not echoed: {message}"
    );
    assert_refused(&gw.chat(chat("bad model!", user.clone())).await, "model");

    let root = json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "root", "content": "obey"},
    ]);
    assert_refused(&gw.chat(chat("m", root)).await, "messages[2].role");

    for n in [json!(1_000_000), json!(9), json!(0)] {
        let mut body = chat("m", user.clone());
        body["n"] = n;
        assert_refused(&gw.chat(body).await, "n");
    }
    let five = Value::Array(vec![json!({"role": "user", "content": "hi"}); 5]);
    assert_refused(&gw.chat(chat("m", five)).await, "messages");

    // The lab's API: the same bounds, its own envelope.
    let generate = gw
        .generate_body(json!({"prompt": "hi", "model": huge_model}), Some("lim-1"))
        .await;
    assert_eq!(generate.status, 422, "{}", short(&generate.body));
    assert_eq!(generate.body["error"]["field"], "model");
    assert!(
        generate.body.to_string().len() < 600,
        "{}",
        short(&generate.body)
    );

    assert_eq!(
        a.chat_count().await,
        0.0,
        "no bad chat reached the upstream"
    );
    assert_eq!(a.generate_count().await, 0.0, "no bad prompt reached it");

    // Every documented character, a few choices and the most messages pass.
    let mut body = chat(
        "llama3.1:8b",
        json!([{"role": "developer", "content": "x"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]),
    );
    body["n"] = json!(8);
    let served = gw.chat(body).await;
    assert_eq!(served.status, 200, "{}", short(&served.body));
    for model in ["org/model", "gpt-4o-mini@2024", "a_b.c-d"] {
        let served = gw.chat(chat(model, user.clone())).await;
        assert_eq!(served.status, 200, "{model}: {}", short(&served.body));
    }
}

/// The response-cache keys in `redis` (a test's private server: `KEYS` is fine here).
async fn cache_keys(redis: &RedisServer) -> Vec<String> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg("cache:*")
        .query_async(&mut con)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_model_names_are_refused_and_leave_no_trace_in_memory_or_redis() {
    let redis = RedisServer::start().await;
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .redis(&redis.url())
        .start()
        .await;
    // A few answers first, so the baseline holds a warm allocator and some cache keys.
    for i in 0..5 {
        let answer = gw.generate(&format!("warm up question {i}")).await;
        assert!(answer.is_primary_success(), "{answer:?}");
    }
    // The warm-up's answers reach Redis behind their responses: wait until they all have.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while cache_keys(&redis).await.len() < 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let keys_before = cache_keys(&redis).await;
    let rss_before = gw.rss_kib();

    let huge = "m".repeat(900 * 1024);
    let (gw_ref, huge) = (&gw, huge.as_str());
    for round in 0..40 {
        let bodies = (0..4).map(|i| {
            let prompt = format!("round {round} request {i}");
            async move {
                if i % 2 == 0 {
                    gw_ref
                        .chat(chat(huge, json!([{"role": "user", "content": prompt}])))
                        .await
                } else {
                    gw_ref
                        .generate_body(json!({"prompt": prompt, "model": huge}), None)
                        .await
                }
            }
        });
        for answer in futures::future::join_all(bodies).await {
            assert_eq!(answer.status, 422, "{}", short(&answer.body));
        }
    }

    let rss_after = gw.rss_kib();
    assert!(
        rss_after < rss_before + 20 * 1024,
        "160 bodies of 900 KB grew the gateway by less than 20 MB: {rss_before} KiB -> \
         {rss_after} KiB"
    );
    let keys_after = cache_keys(&redis).await;
    assert_eq!(keys_after.len(), keys_before.len(), "no new cache key");
    assert!(
        keys_after.iter().all(|k| k.len() <= 146),
        "every key is short: {keys_after:?}"
    );
    assert_eq!(a.chat_count().await, 0.0);
}
