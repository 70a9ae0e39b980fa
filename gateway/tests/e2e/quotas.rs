//! Rate limits per caller and tier (issue 18): two gateway replicas sharing one Redis hold
//! one limit between them; when that Redis (the test's own) stops, each configured failure
//! mode holds and `/health` says which is active; limits recover when Redis returns; a
//! refused request never reaches an upstream nor touches a breaker; anonymous, tokens and
//! JWT-tier limits; and the official `openai` SDK (`tests/clients/openai_auth.py`) reads the
//! gateway's 401 and 429 as its own `AuthenticationError` and `RateLimitError`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{Gateway, GatewayExt, LlmExt, LlmService, RedisServer, poll, python_client};

/// The test caller's API key.
const KEY: &str = "gk_quota_test_caller_0123456789abcdef";
/// An admin's API key (reads `/admin/status`).
const ADMIN_KEY: &str = "gk_quota_test_admin_0123456789abcdef";

/// A keys file with the caller (tier `quota`) and an admin (tier `enterprise`).
fn keys_file() -> String {
    let path = std::env::temp_dir().join(format!("{}.toml", test_support::unique_id("e2e-keys")));
    let text = format!(
        "[[keys]]\nowner = \"caller\"\ntier = \"quota\"\nscopes = [\"llm:generate\"]\nsha256 = \"{}\"\n\n\
         [[keys]]\nowner = \"ops\"\ntier = \"enterprise\"\nscopes = [\"llm:generate\", \"admin\"]\nsha256 = \"{}\"\n",
        sha256_hex(KEY),
        sha256_hex(ADMIN_KEY)
    );
    std::fs::write(&path, text).expect("the keys file is written");
    path.display().to_string()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A gateway in front of `upstream` with API keys and the tier `quota` at `per_minute`
/// with `burst`, its limits kept in `store` (`memory`, or `redis` at `redis`).
fn limited(upstream: &LlmService, per_minute: u32, burst: u32) -> test_support::GatewayBuilder {
    Gateway::builder()
        .upstreams(&[upstream])
        .env("AUTH_MODE", "api_key")
        .env("API_KEYS_FILE", keys_file())
        .env("MAX_CONCURRENT_REQUESTS", "1000")
        .config(&format!(
            "[rate_limits.quota]\nrequests_per_minute = {per_minute}\nburst = {burst}\n"
        ))
}

/// One `/generate` as the test caller: its status and headers.
async fn call(gw: &Gateway) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = gw
        .client()
        .post(format!("{}/generate", gw.url))
        .header("x-api-key", KEY)
        .json(&json!({"prompt": "quota", "max_tokens": 4}))
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// `n` calls one after the other; how many were answered 200 (every other one must be 429).
async fn burst_of(gw: &Gateway, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let (status, _, body) = call(gw).await;
        match status {
            200 => ok += 1,
            429 => {}
            other => panic!("only 200 or 429 expected, got {other}: {body}"),
        }
    }
    ok
}

/// The `rate_limiter` check of `/health`.
async fn limiter_check(gw: &Gateway) -> Value {
    let (_, health) = gw.health().await;
    health["health_checks"]["rate_limiter"].clone()
}

/// Polls until the `rate_limiter` check's `active` source is `source`.
async fn until_active(gw: &Gateway, source: &str) -> Value {
    let polled = poll(
        Duration::from_secs(10),
        || limiter_check(gw),
        |check| check["details"]["active"] == source,
    )
    .await;
    assert!(
        polled.ok,
        "the rate limiter reports `{source}`: {}",
        polled.value
    );
    polled.value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_hold_one_limit_for_a_minute() {
    let redis = RedisServer::start().await;
    let upstream = LlmService::builder().latency(0, 0).start().await;
    let (per_minute, burst) = (120u32, 10u32);
    let a = limited(&upstream, per_minute, burst)
        .redis(&redis.url())
        .env("RATE_LIMIT_STORE", "redis")
        .env("RATE_LIMIT_REPLICAS", "2")
        .start()
        .await;
    let b = limited(&upstream, per_minute, burst)
        .redis(&redis.url())
        .env("RATE_LIMIT_STORE", "redis")
        .env("RATE_LIMIT_REPLICAS", "2")
        .start()
        .await;
    until_active(&a, "redis").await;
    until_active(&b, "redis").await;

    // Both replicas driven together at 5 requests/s each: 10/s, five times the limit.
    let started = Instant::now();
    let run = Duration::from_secs(60);
    let ((ok_a, limited_a), (ok_b, limited_b)) =
        tokio::join!(drive(&a, started, run), drive(&b, started, run));
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = f64::from(ok_a + ok_b);
    let expected = f64::from(burst) + f64::from(per_minute) * elapsed / 60.0;
    assert!(
        (accepted - expected).abs() <= expected * 0.10,
        "together the replicas accepted {accepted} in {elapsed:.1} s; the shared limit allows \
         {expected:.0} (±10 %); a: {ok_a} ok / {limited_a} limited, b: {ok_b} / {limited_b}"
    );
    assert!(ok_a > 0 && ok_b > 0, "both replicas served: {ok_a}, {ok_b}");
    assert!(
        limited_a + limited_b > 300,
        "most requests were over the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_each_replica_keeps_its_share_and_the_shared_limit_returns() {
    let mut redis = RedisServer::start().await;
    let upstream = LlmService::builder().latency(0, 0).start().await;
    // One request a minute refilled: within the test the bucket does not refill.
    let builder = || {
        limited(&upstream, 1, 10)
            .redis(&redis.url())
            .env("RATE_LIMIT_STORE", "redis")
            .env("RATE_LIMIT_REPLICAS", "2")
            .env("RATE_LIMIT_FAILURE_MODE", "fail_local")
    };
    let a = builder().start().await;
    let b = builder().start().await;
    until_active(&a, "redis").await;
    assert_eq!(burst_of(&a, 4).await, 4, "shared burst: 4 of 10 on a");
    assert_eq!(burst_of(&b, 10).await, 6, "the other 6 on b, and no more");

    redis.stop().await;
    // The first call after the loss finds Redis gone; from then on each replica counts its
    // own share (burst 10 / 2 replicas = 5) in memory.
    assert_eq!(burst_of(&a, 8).await, 5, "a: its share of the burst");
    assert_eq!(burst_of(&b, 8).await, 5, "b: its share of the burst");
    for gw in [&a, &b] {
        let check = until_active(gw, "fail_local").await;
        assert_eq!(check["status"], "degraded", "never silently: {check}");
        let (_, text) = gw.metrics_text().await;
        assert!(
            text.lines()
                .any(|l| l.starts_with("gateway_rate_limit_active{")
                    && l.contains("source=\"fail_local\"")
                    && l.ends_with(" 1")),
            "the metric says fail_local is active"
        );
    }

    redis.start_again().await;
    // Back on the shared store (an empty Redis: a fresh shared burst of 10).
    let back = poll(
        Duration::from_secs(15),
        || async {
            // Calls move the limiter back to Redis after its back-off.
            let _ = call(&a).await;
            limiter_check(&a).await
        },
        |check| check["details"]["active"] == "redis",
    )
    .await;
    assert!(back.ok, "a is back on Redis: {}", back.value);
    until_active(&b, "redis").await;
    let (_, health) = a.health().await;
    assert_eq!(health["health_checks"]["rate_limiter"]["status"], "healthy");
    let spent_a = burst_of(&a, 12).await;
    let spent_b = burst_of(&b, 12).await;
    assert!(
        spent_a + spent_b <= 10,
        "one shared limit again: {spent_a} + {spent_b} ≤ 10"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_and_fail_open_allows_while_redis_is_away() {
    let mut redis = RedisServer::start().await;
    let upstream = LlmService::builder().latency(0, 0).start().await;
    let closed = limited(&upstream, 1, 3)
        .redis(&redis.url())
        .env("RATE_LIMIT_STORE", "redis")
        .env("RATE_LIMIT_FAILURE_MODE", "fail_closed")
        .start()
        .await;
    let open = limited(&upstream, 1, 3)
        .redis(&redis.url())
        .env("RATE_LIMIT_STORE", "redis")
        .env("RATE_LIMIT_FAILURE_MODE", "fail_open")
        .start()
        .await;
    until_active(&closed, "redis").await;
    until_active(&open, "redis").await;

    redis.stop().await;
    assert_eq!(burst_of(&closed, 5).await, 0, "fail_closed: nothing passes");
    let (status, headers, body) = call(&closed).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        body["error"]["type"], "rate_limiter_unavailable",
        "the refusal says why: {body}"
    );
    assert_eq!(burst_of(&open, 8).await, 8, "fail_open: everything passes");
    let check = until_active(&closed, "fail_closed").await;
    assert_eq!(check["status"], "degraded", "{check}");
    let check = until_active(&open, "fail_open").await;
    assert_eq!(check["status"], "degraded", "{check}");

    redis.start_again().await;
    let back = poll(
        Duration::from_secs(15),
        || async {
            let _ = call(&open).await;
            limiter_check(&open).await
        },
        |check| check["details"]["active"] == "redis",
    )
    .await;
    assert!(back.ok, "fail_open is back on Redis: {}", back.value);
    // The burst of 3 (less what the poll itself spent) and then refusals: limits hold again.
    assert!(burst_of(&open, 6).await <= 3, "fail_open limits again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_request_reaches_no_upstream_and_no_breaker() {
    let upstream = LlmService::builder().latency(0, 0).start().await;
    let gw = limited(&upstream, 1, 2).breaker(3, 30).start().await;
    assert_eq!(burst_of(&gw, 2).await, 2, "the burst of 2 is served");
    let generated = upstream.generate_count().await;
    let before = admin_breaker(&gw).await;

    for _ in 0..20 {
        let (status, headers, body) = call(&gw).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["type"], "rate_limited", "{body}");
        let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
        assert_eq!(headers["x-ratelimit-limit"], "1");
        assert_eq!(headers["x-ratelimit-remaining"], "0");
    }
    assert_eq!(
        upstream.generate_count().await,
        generated,
        "no limited request reached the upstream"
    );
    let after = admin_breaker(&gw).await;
    assert_eq!(
        after["counters"], before["counters"],
        "the pool breaker counted none of them"
    );
    assert_eq!(after["consecutive_failures"], 0);
    assert_eq!(after["state"], "CLOSED");
    let (_, text) = gw.metrics_text().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("gateway_rate_limited_total{")
                && l.contains("tier=\"quota\"")
                && l.ends_with(" 20")),
        "20 refusals counted for the tier"
    );
}

/// Calls `gw` every 200 ms until `run` has passed since `started`: (answered, limited).
async fn drive(gw: &Gateway, started: Instant, run: Duration) -> (u32, u32) {
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    let (mut ok, mut limited) = (0u32, 0u32);
    while started.elapsed() < run {
        ticks.tick().await;
        let (status, headers, body) = call(gw).await;
        match status {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert!(headers.contains_key("retry-after"), "429 says when");
            }
            other => panic!("200 or 429 only, got {other}: {body}"),
        }
        for name in [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ] {
            assert!(headers.contains_key(name), "{name} on every answer");
        }
    }
    (ok, limited)
}

/// The pool breaker as `/admin/status` shows it to an admin.
async fn admin_breaker(gw: &Gateway) -> Value {
    let status: Value = gw
        .client()
        .get(format!("{}/admin/status", gw.url))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("admin status answers")
        .json()
        .await
        .expect("admin status is JSON");
    status["circuit_breaker"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_are_limited_per_address_when_asked() {
    let upstream = LlmService::builder().latency(0, 0).start().await;
    let gw = Gateway::builder()
        .upstreams(&[&upstream])
        .env("RATE_LIMIT_ANONYMOUS", "true")
        .config("[rate_limits.default]\nrequests_per_minute = 1\nburst = 3\n")
        .start()
        .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(gw.generate("anonymous").await.status);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429, 429],
        "the burst of 3, then 429"
    );
    let (status, _) = gw.health().await;
    assert_eq!(status, 200, "probes are never limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_limit_refuses_once_answers_spent_it() {
    let upstream = LlmService::builder().latency(0, 0).start().await;
    let gw = Gateway::builder()
        .upstreams(&[&upstream])
        .env("AUTH_MODE", "api_key")
        .env("API_KEYS_FILE", keys_file())
        .config(
            "[rate_limits.quota]\nrequests_per_minute = 1000\ntokens_per_minute = 1\ntoken_burst = 12\n",
        )
        .start()
        .await;
    let mut answered = 0;
    let mut refused = None;
    for _ in 0..30 {
        let (status, _, body) = call(&gw).await;
        match status {
            200 => answered += 1,
            429 => {
                refused = Some(body);
                break;
            }
            other => panic!("200 or 429 only, got {other}: {body}"),
        }
        // Tokens are charged once the answer is out: give the charge a moment.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = refused.expect("the tokens allowance ran out within 30 answers");
    assert!(answered >= 1, "answers were served until then");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("tokens per minute")),
        "the refusal names the tokens limit: {body}"
    );
    let (_, text) = gw.metrics_text().await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("gateway_rate_limited_total{")
                && l.contains("limit=\"tokens\"")
                && l.contains("tier=\"quota\"")),
        "counted as a tokens refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_tier_claim_picks_the_limit() {
    let upstream = LlmService::builder().latency(0, 0).start().await;
    let secret = "an-e2e-secret-of-at-least-32-bytes!";
    let gw = Gateway::builder()
        .upstreams(&[&upstream])
        .env("AUTH_MODE", "jwt")
        .env("JWT_SECRET_KEY", secret)
        .start()
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (tier, limit) in [
        (Some("premium"), "1000"),
        (Some("enterprise"), "10000"),
        (Some("standard"), "100"),
        (Some("gold"), "100"),
        (None, "100"),
    ] {
        let mut claims =
            json!({"sub": "jwt-caller", "iat": now, "exp": now + 600, "scope": "llm:generate"});
        if let Some(tier) = tier {
            claims["tier"] = json!(tier);
        }
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        let response = gw
            .client()
            .post(format!("{}/generate", gw.url))
            .bearer_auth(token)
            .json(&json!({"prompt": "tier", "max_tokens": 4}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "tier {tier:?}");
        assert_eq!(
            response.headers()["x-ratelimit-limit"],
            limit,
            "tier {tier:?} has the limit of its tier"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_sees_auth_and_rate_limit_errors_as_its_own() {
    let upstream = LlmService::builder()
        .latency(0, 0)
        .env("MODEL_NAME", "sdk-simulation")
        .start()
        .await;
    let limited_key = "gk_quota_test_sdk_limited_0123456789abcdef";
    let keys = keys_file();
    let mut text = std::fs::read_to_string(&keys).unwrap();
    text.push_str(&format!(
        "\n[[keys]]\nowner = \"sdk\"\ntier = \"tiny\"\nsha256 = \"{}\"\n",
        sha256_hex(limited_key)
    ));
    std::fs::write(&keys, text).unwrap();
    let gw = Gateway::builder()
        .upstreams(&[&upstream])
        .env("AUTH_MODE", "api_key")
        .env("API_KEYS_FILE", &keys)
        .config(
            "[rate_limits.quota]\nrequests_per_minute = 600\n\
             [rate_limits.tiny]\nrequests_per_minute = 1\nburst = 2\n",
        )
        .start()
        .await;
    let seen = python_client(
        &gw,
        "gateway/tests/clients/openai_auth.py",
        &[
            &gw.url,
            KEY,
            "gk_unknown_0000000000000000000000000000",
            limited_key,
        ],
    )
    .await;
    assert_eq!(seen["model"], "sdk-simulation", "{seen}");
    assert_eq!(seen["ratelimit_limit"], "600", "{seen}");
    assert_eq!(seen["ratelimit_remaining"], "599", "{seen}");
    assert_eq!(
        seen["bad_key"],
        json!({"status": 401, "code": "invalid_api_key", "type": "invalid_request_error"}),
        "the SDK raises AuthenticationError with OpenAI's code"
    );
    assert_eq!(
        seen["limited_statuses"],
        json!([200, 200, 429, 429]),
        "{seen}"
    );
    assert_eq!(seen["limited"]["code"], "rate_limit_exceeded", "{seen}");
    let wait: u64 = seen["limited"]["retry_after"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After reaches the SDK");
    assert!((1..=60).contains(&wait), "{seen}");
}
