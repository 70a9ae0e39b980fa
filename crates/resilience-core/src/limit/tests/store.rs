//! [`RateLimiter`]: the memory store, and the Redis store's failure modes and back-off with a
//! shared store double that can be switched between answering and failing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::ManualClock;
use crate::limit::store::SharedStore;
use crate::limit::{
    Charge, Decision, FAIL_CLOSED_RETRY_AFTER, FailureMode, Fallback, INITIAL_BACKOFF, LimitError,
    LocalLimiter, Quota, RateLimiter, Source, StoreKind,
};
use crate::registry::BoxFuture;

/// A shared store backed by its own local limiter; `down` makes every call fail.
struct FakeStore {
    inner: LocalLimiter,
    down: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl SharedStore for FakeStore {
    fn check<'a>(
        &'a self,
        key: &'a str,
        quota: &'a Quota,
        cost: u32,
        mode: Charge,
    ) -> BoxFuture<'a, Result<Decision, LimitError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let result = if self.down.load(Ordering::SeqCst) {
            Err(LimitError::Timeout { after_ms: 100 })
        } else {
            Ok(self.inner.check(key, quota, cost, mode))
        };
        Box::pin(async move { result })
    }
}

struct Harness {
    limiter: RateLimiter,
    clock: Arc<ManualClock>,
    down: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl Harness {
    fn new(mode: FailureMode, replicas: u32) -> Self {
        let clock = ManualClock::new();
        let down = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let store = FakeStore {
            inner: LocalLimiter::new(100, clock.clone()),
            down: down.clone(),
            calls: calls.clone(),
        };
        let limiter = RateLimiter::with_shared_store(
            Box::new(store),
            LocalLimiter::new(100, clock.clone()),
            mode,
            replicas,
            clock.clone(),
        );
        Self {
            limiter,
            clock,
            down,
            calls,
        }
    }

    fn redis_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn admit(&self, quota: &Quota) -> (bool, Source) {
        let checked = self.limiter.check("k", quota, 1, Charge::Admit).await;
        (checked.decision.allowed, checked.source)
    }
}

fn quota(burst: u32) -> Quota {
    Quota::per_minute(60, burst).unwrap()
}

#[test]
fn failure_modes_parse_and_print_their_names() {
    for mode in [
        FailureMode::FailLocal,
        FailureMode::FailClosed,
        FailureMode::FailOpen,
    ] {
        assert_eq!(mode.as_str().parse::<FailureMode>().unwrap(), mode);
        assert_eq!(mode.to_string(), mode.as_str());
    }
    assert_eq!(
        " FAIL_OPEN ".parse::<FailureMode>().unwrap(),
        FailureMode::FailOpen
    );
    let error = "fail-open".parse::<FailureMode>().unwrap_err().to_string();
    assert!(error.contains("rate_limit.failure_mode"), "{error}");
    assert_eq!(FailureMode::default(), FailureMode::FailLocal);
}

#[test]
fn each_failure_mode_decides_its_fallback() {
    let q = Quota::per_minute(100, 100).unwrap();
    assert_eq!(
        FailureMode::FailLocal.on_store_unavailable(&q, 3),
        Fallback::Local(Quota::per_minute(34, 34).unwrap())
    );
    assert_eq!(
        FailureMode::FailClosed.on_store_unavailable(&q, 3),
        Fallback::Refuse
    );
    assert_eq!(
        FailureMode::FailOpen.on_store_unavailable(&q, 3),
        Fallback::Allow
    );
}

#[tokio::test]
async fn the_memory_store_decides_in_process() {
    let limiter = RateLimiter::memory(LocalLimiter::new(10, ManualClock::new()));
    let q = quota(1);
    let first = limiter.check("k", &q, 1, Charge::Admit).await;
    assert_eq!(first.source, Source::Memory);
    assert!(first.decision.allowed);
    assert!(
        !limiter
            .check("k", &q, 1, Charge::Admit)
            .await
            .decision
            .allowed
    );
    let status = limiter.status();
    assert_eq!(status.kind, StoreKind::Memory);
    assert_eq!(status.active, Source::Memory);
    assert_eq!(status.failure_mode, None);
    assert!(!status.redis_available);
}

#[tokio::test]
async fn redis_decides_while_it_answers() {
    let h = Harness::new(FailureMode::FailClosed, 2);
    let q = quota(2);
    assert_eq!(h.admit(&q).await, (true, Source::Redis));
    assert_eq!(h.admit(&q).await, (true, Source::Redis));
    assert_eq!(h.admit(&q).await, (false, Source::Redis));
    let status = h.limiter.status();
    assert_eq!(status.kind, StoreKind::Redis);
    assert!(status.redis_available);
    assert_eq!(status.active, Source::Redis);
    assert_eq!(status.failure_mode, Some(FailureMode::FailClosed));
}

#[tokio::test]
async fn fail_local_enforces_this_replicas_share() {
    let h = Harness::new(FailureMode::FailLocal, 4);
    h.redis_down(true);
    let q = quota(10); // a share of 3 of 10 on each of 4 replicas
    let results: Vec<(bool, Source)> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(h.admit(&q).await);
        }
        v
    };
    assert_eq!(
        results,
        [
            (true, Source::Local),
            (true, Source::Local),
            (true, Source::Local),
            (false, Source::Local)
        ]
    );
    let share = h.limiter.check("k", &q, 0, Charge::Admit).await.decision;
    assert_eq!(share.limit, 15, "the share's limit is reported");
    let status = h.limiter.status();
    assert!(!status.redis_available);
    assert_eq!(status.active, Source::Local);
}

#[tokio::test]
async fn fail_closed_refuses_with_a_retry_after() {
    let h = Harness::new(FailureMode::FailClosed, 1);
    h.redis_down(true);
    let checked = h.limiter.check("k", &quota(10), 1, Charge::Admit).await;
    assert_eq!(checked.source, Source::FailedClosed);
    assert!(!checked.decision.allowed);
    assert_eq!(checked.decision.retry_after, Some(FAIL_CLOSED_RETRY_AFTER));
    assert_eq!(h.limiter.status().active, Source::FailedClosed);
}

#[tokio::test]
async fn fail_open_allows_everything_and_says_so() {
    let h = Harness::new(FailureMode::FailOpen, 1);
    h.redis_down(true);
    let q = quota(1);
    for _ in 0..5 {
        assert_eq!(h.admit(&q).await, (true, Source::FailedOpen));
    }
    assert_eq!(h.limiter.status().active, Source::FailedOpen);
}

#[tokio::test]
async fn an_outage_skips_redis_for_the_back_off_then_one_call_retries() {
    let h = Harness::new(FailureMode::FailLocal, 1);
    let q = quota(100);
    h.redis_down(true);
    h.admit(&q).await;
    assert_eq!(h.calls(), 1);
    for _ in 0..10 {
        assert_eq!(h.admit(&q).await.1, Source::Local);
    }
    assert_eq!(h.calls(), 1, "no request waits on a known-dead Redis");

    h.clock.advance(INITIAL_BACKOFF);
    h.admit(&q).await;
    assert_eq!(h.calls(), 2, "one trial after the back-off");
    h.admit(&q).await;
    assert_eq!(h.calls(), 2, "the failed trial doubled the back-off");
    h.clock.advance(INITIAL_BACKOFF);
    h.admit(&q).await;
    assert_eq!(h.calls(), 2);

    h.redis_down(false);
    h.clock.advance(INITIAL_BACKOFF);
    assert_eq!(h.admit(&q).await, (true, Source::Redis));
    assert!(h.limiter.status().redis_available);
    assert_eq!(h.admit(&q).await.1, Source::Redis);
    assert_eq!(h.calls(), 4, "back to one call per check");
}

#[tokio::test]
async fn the_fallback_charges_tokens_with_force() {
    let h = Harness::new(FailureMode::FailLocal, 1);
    h.redis_down(true);
    let q = quota(5);
    let forced = h.limiter.check("tokens", &q, 8, Charge::Force).await;
    assert_eq!(forced.source, Source::Local);
    assert!(!forced.decision.allowed);
    let peek = h.limiter.check("tokens", &q, 0, Charge::Admit).await;
    assert!(!peek.decision.allowed, "the debt is held locally");
    assert_eq!(peek.decision.retry_after, Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn a_probe_notices_redis_back_without_traffic_and_waits_for_the_back_off() {
    let h = Harness::new(FailureMode::FailLocal, 2);
    let q = quota(10);
    let up = h.limiter.probe().await;
    assert!(
        up.redis_available,
        "a probe of an available store does nothing"
    );
    assert_eq!(h.calls(), 0);

    h.redis_down(true);
    h.admit(&q).await;
    let down = h.limiter.probe().await;
    assert_eq!(down.active, Source::Local);
    assert_eq!(
        h.calls(),
        1,
        "within the back-off the probe does not call Redis"
    );

    h.redis_down(false);
    h.clock.advance(INITIAL_BACKOFF);
    let back = h.limiter.probe().await;
    assert_eq!(
        h.calls(),
        2,
        "after the back-off the probe tries Redis once"
    );
    assert!(back.redis_available);
    assert_eq!(back.active, Source::Redis);
    let before = h.calls();
    assert_eq!(h.admit(&q).await, (true, Source::Redis));
    assert_eq!(h.calls(), before + 1);
}
