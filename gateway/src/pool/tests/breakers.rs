//! The pool breaker, health and ejection, and the deadline.

use super::*;

#[tokio::test]
async fn a_failing_pool_opens_its_breaker_then_answers_circuit_open_at_once() {
    let a = FakeLlm::start("a", Reply::Status(503)).await;
    let b = FakeLlm::start("b", Reply::Status(500)).await;
    let h = Setup::new().healthy(&a).healthy(&b).build().await;

    for n in 1..=3 {
        let error = h.generate().await.unwrap_err();
        assert!(matches!(error, ProviderError::Upstream(_)), "{error:?}");
        assert_eq!(
            calls(&[&a, &b]),
            3 * n,
            "each request makes its 3 attempts: both instances, then one again"
        );
        if n < 3 {
            let pool = h.pool_breaker().snapshot();
            assert_eq!(
                pool.consecutive_failures as usize, n,
                "one failure per request"
            );
            assert_eq!(pool.state, StateKind::Closed);
        }
    }
    assert_eq!(h.pool_breaker().state(), StateKind::Open);

    let started = Instant::now();
    let error = h.generate().await.unwrap_err();
    assert_eq!(error, ProviderError::CircuitOpen);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(calls(&[&a, &b]), 9, "no upstream call while OPEN");

    // Recovery: HALF_OPEN after the timeout, and a probe reaches the (now healthy) pool.
    a.set(Reply::Ok);
    b.set(Reply::Ok);
    h.clock.advance(Duration::from_secs(10));
    assert_eq!(h.pool_breaker().state(), StateKind::HalfOpen);
    assert!(h.generate().await.is_ok());
}

#[tokio::test]
async fn an_unhealthy_instance_is_never_picked() {
    let sick = FakeLlm::start("sick", Reply::Ok).await;
    let well = FakeLlm::start("well", Reply::Ok).await;
    let h = Setup::new().unhealthy(&sick).healthy(&well).build().await;
    for _ in 0..20 {
        assert_eq!(h.generate().await.unwrap().served_by, "well");
    }
    assert_eq!(sick.calls(), 0);
}

#[tokio::test]
async fn no_healthy_instance_in_the_tier_is_none_available() {
    let sick = FakeLlm::start("sick", Reply::Ok).await;
    let other_tier = FakeLlm::start("backup", Reply::Ok).await;
    let h = Setup::new()
        .unhealthy(&sick)
        .with_instance(instance(&other_tier).with_metadata("tier", "secondary"))
        .build()
        .await;

    assert_eq!(
        h.generate().await.unwrap_err(),
        ProviderError::NoneAvailable
    );
    assert_eq!(calls(&[&sick, &other_tier]), 0);
    assert_eq!(h.pool_breaker().snapshot().consecutive_failures, 1);
    let ids: Vec<String> = h.pool.instances().into_iter().map(|v| v.id).collect();
    assert_eq!(ids, vec!["sick".to_owned()], "only the pool's tier");
}

#[tokio::test]
async fn an_ejected_instance_is_skipped() {
    let bad = FakeLlm::start("bad", Reply::Status(503)).await;
    let good = FakeLlm::start("good", Reply::Ok).await;
    let h = Setup::new()
        .healthy(&bad)
        .healthy(&good)
        .settings(|s| s.instance_breaker.failure_threshold = 1)
        .build()
        .await;

    for _ in 0..40 {
        assert_eq!(h.generate().await.unwrap().served_by, "good");
        if bad.calls() > 0 {
            break;
        }
    }
    assert_eq!(bad.calls(), 1);
    assert_eq!(h.view("bad").circuit_state, StateKind::Open);
    assert!(
        h.transitions
            .lock()
            .unwrap()
            .contains(&("instance:bad".to_owned(), StateKind::Open))
    );
    for _ in 0..20 {
        assert_eq!(h.generate().await.unwrap().served_by, "good");
    }
    assert_eq!(bad.calls(), 1, "ejected: no more traffic");
}

/// Fails one request on both instances with an instance breaker threshold of 1, so both
/// are ejected, then heals them.
async fn eject_both(h: &Harness, a: &FakeLlm, b: &FakeLlm) {
    assert!(h.generate().await.is_err());
    assert_eq!(calls(&[a, b]), 2);
    for id in ["a", "b"] {
        assert_eq!(h.view(id).circuit_state, StateKind::Open, "{id}");
    }
    a.set(Reply::Ok);
    b.set(Reply::Ok);
}

#[tokio::test]
async fn a_pool_probe_still_reaches_an_ejected_instance() {
    let a = FakeLlm::start("a", Reply::Status(503)).await;
    let b = FakeLlm::start("b", Reply::Status(503)).await;
    let mut setup = Setup::new().healthy(&a).healthy(&b).settings(|s| {
        s.instance_breaker.failure_threshold = 1;
        s.instance_breaker.recovery_timeout = Duration::from_secs(60);
    });
    setup.pool_breaker = Some(BreakerConfig {
        failure_threshold: 1,
        recovery_timeout: Duration::from_secs(10),
        ..BreakerConfig::default()
    });
    let h = setup.build().await;

    eject_both(&h, &a, &b).await;
    assert_eq!(h.pool_breaker().state(), StateKind::Open);
    assert_eq!(h.generate().await.unwrap_err(), ProviderError::CircuitOpen);

    h.clock.advance(Duration::from_secs(10));
    assert_eq!(h.pool_breaker().state(), StateKind::HalfOpen);
    assert_eq!(h.view("a").circuit_state, StateKind::Open);
    let answer = h.generate().await.unwrap();
    assert!(["a", "b"].contains(&answer.served_by.as_str()));
    assert_eq!(h.pool_breaker().snapshot().counters.successes, 1);
}

#[tokio::test]
async fn with_every_instance_ejected_a_pool_without_breaker_answers_none_available_at_once() {
    let a = FakeLlm::start("a", Reply::Status(503)).await;
    let b = FakeLlm::start("b", Reply::Status(503)).await;
    let mut setup = Setup::new()
        .healthy(&a)
        .healthy(&b)
        .settings(|s| s.instance_breaker.failure_threshold = 1);
    setup.pool_breaker = None;
    let h = setup.build().await;

    eject_both(&h, &a, &b).await;
    assert!(h.pool.pool_breaker().is_none());
    let before = calls(&[&a, &b]);
    let started = std::time::Instant::now();
    assert_eq!(
        h.generate().await.unwrap_err(),
        ProviderError::NoneAvailable
    );
    assert_eq!(calls(&[&a, &b]), before, "no ejected instance is called");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "a fallback behind it stays fast"
    );
}

#[tokio::test]
async fn the_deadline_bounds_the_whole_request() {
    let a = FakeLlm::start("a", Reply::Hang).await;
    let b = FakeLlm::start("b", Reply::Hang).await;
    let h = Setup::new().healthy(&a).healthy(&b).build().await;

    // One try, cut short by the deadline.
    let started = Instant::now();
    let error = h
        .pool
        .generate(&h.request(Duration::from_millis(400)))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, ProviderError::Timeout { .. }), "{error:?}");
    assert!(took >= Duration::from_millis(390), "{took:?}");
    assert!(took < Duration::from_millis(1000), "{took:?}");
    assert_eq!(calls(&[&a, &b]), 1);

    // Two tries: the second gets what the first left of the deadline.
    let h = Setup::new()
        .healthy(&a)
        .healthy(&b)
        .settings(|s| s.per_try_timeout = Duration::from_millis(300))
        .build()
        .await;
    let started = Instant::now();
    let error = h
        .pool
        .generate(&h.request(Duration::from_millis(500)))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, ProviderError::Timeout { .. }), "{error:?}");
    assert!(took >= Duration::from_millis(490), "{took:?}");
    assert!(took < Duration::from_millis(1100), "{took:?}");
    assert_eq!(calls(&[&a, &b]), 3, "one more call, on the other instance");
}
