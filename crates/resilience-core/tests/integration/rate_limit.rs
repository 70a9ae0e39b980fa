//! The Redis rate-limit store against a real Redis: the Lua script agrees with `decide`,
//! replicas on one key share one limit, keys expire when their bucket is full again, debt
//! from forced charges, bounded failures when Redis is absent, and the limiter's failure
//! mode through an outage. Quotas are chosen so that the few milliseconds a test takes never
//! refill a unit, except where expiry is the point, which is polled with a deadline.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use resilience_core::SystemClock;
use resilience_core::limit::{
    Charge, Decision, FailureMode, LimitError, LocalLimiter, Quota, RateLimiter, RedisLimiter,
    Source, decide,
};

use crate::{OP_TIMEOUT, RedisProxy, TestRedis, eventually};

/// A connection manager on `url` that dials on first use and gives up within the timeout.
fn manager(url: &str) -> ConnectionManager {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(OP_TIMEOUT))
        .set_response_timeout(Some(OP_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(OP_TIMEOUT);
    ConnectionManager::new_lazy_with_config(redis::Client::open(url).unwrap(), config).unwrap()
}

impl TestRedis {
    /// A rate-limit store writing under this test's prefix.
    fn limiter(&self) -> RedisLimiter {
        self.limiter_at(&self.url)
    }

    /// The same, through another address (a proxy, a dead port).
    fn limiter_at(&self, url: &str) -> RedisLimiter {
        RedisLimiter::new(manager(url), self.key("rl:"), OP_TIMEOUT)
    }

    /// Redis's clock, in µs since the epoch.
    async fn redis_now_us(&self) -> u64 {
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut self.raw().await)
            .await
            .unwrap();
        secs * 1_000_000 + micros
    }
}

fn assert_close(a: Duration, b: Duration, what: &str) {
    let gap = a.abs_diff(b);
    assert!(gap < Duration::from_millis(500), "{what}: {a:?} vs {b:?}");
}

#[tokio::test]
async fn the_script_agrees_with_decide() {
    let redis = TestRedis::new();
    let limiter = redis.limiter();
    let quota = Quota::per_minute(6, 5).unwrap(); // T = 10 s: nothing refills during the test
    let steps = [
        (1, Charge::Admit),
        (1, Charge::Admit),
        (2, Charge::Admit),
        (0, Charge::Admit),
        (2, Charge::Admit),
        (1, Charge::Admit),
        (9, Charge::Admit),
        (3, Charge::Force),
        (0, Charge::Admit),
        (1, Charge::Admit),
        (0, Charge::Force),
    ];
    let now = redis.redis_now_us().await;
    let mut tat = None;
    for (i, (cost, mode)) in steps.into_iter().enumerate() {
        let verdict = decide(&quota, tat, now, cost, mode);
        tat = verdict.new_tat.or(tat);
        let want: Decision = verdict.decision;
        let got = limiter.check("agree", &quota, cost, mode).await.unwrap();
        let step = format!("step {i}: cost {cost} {mode:?}");
        assert_eq!(got.allowed, want.allowed, "{step}");
        assert_eq!(got.remaining, want.remaining, "{step}");
        assert_eq!(got.limit, want.limit, "{step}");
        assert_eq!(
            got.retry_after.is_some(),
            want.retry_after.is_some(),
            "{step}"
        );
        if let (Some(g), Some(w)) = (got.retry_after, want.retry_after) {
            assert_close(g, w, &step);
        }
        assert_close(got.reset_after, want.reset_after, &step);
    }
}

#[tokio::test]
async fn a_burst_is_taken_at_once_then_refused() {
    let redis = TestRedis::new();
    let limiter = redis.limiter();
    let quota = Quota::per_minute(60, 5).unwrap();
    for left in (0..5).rev() {
        let d = limiter
            .check("burst", &quota, 1, Charge::Admit)
            .await
            .unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, left);
    }
    let refused = limiter
        .check("burst", &quota, 1, Charge::Admit)
        .await
        .unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    let retry = refused.retry_after.unwrap();
    assert!(
        retry > Duration::from_millis(500) && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    let never = limiter
        .check("burst", &quota, 6, Charge::Admit)
        .await
        .unwrap();
    assert_eq!(never.retry_after, None, "more than the burst never fits");
}

#[tokio::test]
async fn two_replicas_on_one_key_share_one_limit() {
    let redis = TestRedis::new();
    let quota = Quota::per_minute(1, 20).unwrap();
    let replicas = [redis.limiter(), redis.limiter()];
    let tasks: Vec<_> = replicas
        .into_iter()
        .map(|limiter| {
            tokio::spawn(async move {
                let mut allowed = 0;
                for _ in 0..20 {
                    if limiter
                        .check("shared", &quota, 1, Charge::Admit)
                        .await
                        .unwrap()
                        .allowed
                    {
                        allowed += 1;
                    }
                }
                allowed
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert_eq!(total, 20, "together they accept the burst and no more");
}

#[tokio::test]
async fn keys_expire_when_their_bucket_is_full_again() {
    let redis = TestRedis::new();
    let limiter = redis.limiter();
    let mut raw = redis.raw().await;

    let slow = Quota::per_minute(60, 10).unwrap();
    let d = limiter
        .check("slow", &slow, 3, Charge::Admit)
        .await
        .unwrap();
    let pttl: i64 = raw.pttl(limiter.redis_key("slow")).await.unwrap();
    assert!(
        pttl > 2_000 && pttl <= 3_000,
        "pttl {pttl} for reset {:?}",
        d.reset_after
    );

    // 6,000 per minute: the one unit refills in 10 ms and the key goes with it.
    let fast = Quota::per_minute(6_000, 1).unwrap();
    limiter
        .check("fast", &fast, 1, Charge::Admit)
        .await
        .unwrap();
    let key = limiter.redis_key("fast");
    eventually("the fast key expires", || {
        let mut raw = raw.clone();
        let key = key.clone();
        async move { !raw.exists::<_, bool>(&key).await.unwrap() }
    })
    .await;

    // A peek writes nothing.
    limiter
        .check("peeked", &slow, 0, Charge::Admit)
        .await
        .unwrap();
    assert!(
        !raw.exists::<_, bool>(limiter.redis_key("peeked"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn forced_charges_go_into_debt_that_blocks_until_it_drains() {
    let redis = TestRedis::new();
    let limiter = redis.limiter();
    let quota = Quota::per_minute(60, 5).unwrap();
    let forced = limiter
        .check("tokens", &quota, 8, Charge::Force)
        .await
        .unwrap();
    assert!(!forced.allowed);
    assert_eq!(forced.remaining, 0);
    assert_close(forced.reset_after, Duration::from_secs(8), "reset");
    let peek = limiter
        .check("tokens", &quota, 0, Charge::Admit)
        .await
        .unwrap();
    assert!(!peek.allowed, "in debt");
    assert_close(peek.retry_after.unwrap(), Duration::from_secs(3), "retry");
    let refused = limiter
        .check("tokens", &quota, 1, Charge::Admit)
        .await
        .unwrap();
    assert!(!refused.allowed);
}

#[tokio::test]
async fn an_absent_redis_fails_within_the_timeout_without_leaking_the_password() {
    let redis = TestRedis::new();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let limiter = redis.limiter_at(&format!("redis://user:hunter2@127.0.0.1:{port}"));
    let quota = Quota::per_minute(60, 5).unwrap();
    let started = std::time::Instant::now();
    let error = limiter
        .check("k", &quota, 1, Charge::Admit)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < OP_TIMEOUT * 3,
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(
        error,
        LimitError::Redis(_) | LimitError::Timeout { .. }
    ));
    let message = error.to_string();
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn the_limiter_falls_back_through_an_outage_and_recovers() {
    let redis = TestRedis::new();
    let proxy = RedisProxy::start(&redis).await;
    let limiter = RateLimiter::redis(
        redis.limiter_at(&proxy.url),
        LocalLimiter::new(100, SystemClock::shared()),
        FailureMode::FailLocal,
        2,
        SystemClock::shared(),
    );
    let quota = Quota::per_minute(1, 10).unwrap();
    let first = limiter.check("caller", &quota, 1, Charge::Admit).await;
    assert_eq!(first.source, Source::Redis);
    assert!(limiter.status().redis_available);

    proxy.cut();
    eventually("the failure mode takes over", || async {
        limiter
            .check("caller", &quota, 1, Charge::Admit)
            .await
            .source
            == Source::Local
    })
    .await;
    let status = limiter.status();
    assert!(!status.redis_available);
    assert_eq!(status.active, Source::Local);
    assert_eq!(status.failure_mode, Some(FailureMode::FailLocal));
    // The local share is 5 of 10: at most 5 allowed in all during the outage.
    let mut allowed = 0;
    for _ in 0..10 {
        let checked = limiter.check("caller", &quota, 1, Charge::Admit).await;
        if checked.source == Source::Local && checked.decision.allowed {
            allowed += 1;
        }
    }
    assert!(allowed <= 5, "{allowed}");

    proxy.restore();
    eventually("redis decides again", || async {
        limiter
            .check("caller", &quota, 0, Charge::Admit)
            .await
            .source
            == Source::Redis
    })
    .await;
    assert!(limiter.status().redis_available);
    assert_eq!(limiter.status().active, Source::Redis);
}
