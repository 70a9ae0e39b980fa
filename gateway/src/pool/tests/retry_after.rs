//! `Retry-After`, silent instances, cooldowns and refusals that end the request.

use super::*;

#[tokio::test]
async fn a_retry_after_within_the_cap_is_waited_in_full_then_answered() {
    let only = FakeLlm::start("only", Reply::Ok).await;
    only.then([Reply::RetryAfter(429, 1)]);
    let h = Setup::new()
        .healthy(&only)
        .settings(|s| {
            s.retry.base_delay = Duration::from_millis(1);
            s.retry.max_delay = Duration::from_millis(50);
            s.max_retry_after = Duration::from_secs(2);
        })
        .build()
        .await;

    let started = Instant::now();
    let answer = h.generate().await.unwrap();
    let took = started.elapsed();
    assert_eq!(answer.served_by, "only");
    assert_eq!(only.calls(), 2, "the only instance is tried again");
    assert!(
        took >= Duration::from_millis(990),
        "Retry-After ignored (a tight loop): {took:?}"
    );
    assert!(took < Duration::from_millis(1800), "{took:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_moves_on_at_once_and_keeps_the_target_out() {
    let only = FakeLlm::start("only", Reply::RetryAfter(429, 30)).await;
    let h = Setup::new()
        .healthy(&only)
        .settings(|s| s.max_retry_after = Duration::from_secs(1))
        .build()
        .await;

    let started = Instant::now();
    let error = h.generate().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "no 30 s wait: {:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, ProviderError::Upstream(ref m) if m.status == Some(429)),
        "{error:?}"
    );
    assert_eq!(only.calls(), 1, "no wait, no second call");

    // It asked for 30 s without traffic: the next request does not call it.
    only.set(Reply::Ok);
    assert_eq!(
        h.generate().await.unwrap_err(),
        ProviderError::NoneAvailable
    );
    assert_eq!(only.calls(), 1);
    h.clock.advance(Duration::from_secs(31));
    assert_eq!(h.generate().await.unwrap().served_by, "only");
}

#[tokio::test]
async fn a_503_with_retry_after_sends_the_request_to_another_instance_without_waiting() {
    let a = FakeLlm::start("a", Reply::RetryAfter(503, 20)).await;
    let b = FakeLlm::start("b", Reply::Ok).await;
    let h = Setup::new().healthy(&a).healthy(&b).build().await;

    for _ in 0..6 {
        let started = Instant::now();
        assert_eq!(h.generate().await.unwrap().served_by, "b");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "no 20 s wait"
        );
    }
    assert_eq!(a.calls(), 1, "a cools down after saying so once");
}

#[tokio::test]
async fn a_silent_instance_is_never_called_twice_by_one_request() {
    let only = FakeLlm::start("only", Reply::Hang).await;
    let h = Setup::new()
        .healthy(&only)
        .settings(|s| s.per_try_timeout = Duration::from_millis(200))
        .build()
        .await;

    let started = Instant::now();
    let error = h.generate().await.unwrap_err();
    assert!(matches!(error, ProviderError::Timeout { .. }), "{error:?}");
    assert_eq!(only.calls(), 1, "not retried on the same target");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn a_silent_instance_fails_over_at_once_without_backoff() {
    let a = FakeLlm::start("a", Reply::Hang).await;
    let b = FakeLlm::start("b", Reply::Ok).await;
    b.then([Reply::Hang]);
    a.set(Reply::Hang);
    let h = Setup::new()
        .healthy(&a)
        .healthy(&b)
        .settings(|s| {
            s.per_try_timeout = Duration::from_millis(150);
            s.retry.base_delay = Duration::from_millis(400);
            s.retry.max_delay = Duration::from_millis(400);
        })
        .build()
        .await;
    let started = Instant::now();
    let error = h.generate().await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, ProviderError::Timeout { .. }), "{error:?}");
    assert_eq!(calls(&[&a, &b]), 2, "each silent target once");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test]
async fn a_refusal_with_the_other_instance_cooling_stays_the_clients_and_moves_no_breaker() {
    let a = FakeLlm::start("a", Reply::RetryAfter(429, 30)).await;
    let b = FakeLlm::start("b", Reply::Status(400)).await;
    let h = Setup::new()
        .healthy(&a)
        .healthy(&b)
        .settings(|s| s.max_retry_after = Duration::from_millis(100))
        .build()
        .await;
    // Until a has answered (429, 30 s of quiet), some requests go there first.
    while a.calls() == 0 {
        let _ = h.generate().await;
    }
    let breaker = h.pool.pool_breaker().unwrap().snapshot();
    let before = (a.calls(), breaker.consecutive_failures);
    for _ in 0..5 {
        let error = h.generate().await.unwrap_err();
        assert!(matches!(error, ProviderError::Client(_)), "{error:?}");
    }
    assert_eq!(a.calls(), before.0, "the cooling instance is left alone");
    let after = h.pool.pool_breaker().unwrap().snapshot();
    assert_eq!(after.state, StateKind::Closed);
    assert_eq!(
        after.consecutive_failures, before.1,
        "refusals move no breaker"
    );
}

#[tokio::test]
async fn requests_that_find_every_instance_cooling_do_not_open_the_pool_breaker() {
    let only = FakeLlm::start("only", Reply::RetryAfter(429, 30)).await;
    let h = Setup::new()
        .healthy(&only)
        .settings(|s| s.max_retry_after = Duration::from_millis(100))
        .build()
        .await;
    assert!(h.generate().await.is_err(), "the 429 itself");
    for _ in 0..6 {
        assert_eq!(
            h.generate().await.unwrap_err(),
            ProviderError::NoneAvailable
        );
    }
    assert_eq!(only.calls(), 1);
    assert_eq!(
        h.pool.pool_breaker().unwrap().state(),
        StateKind::Closed,
        "an upstream asking for quiet is not a failing pool (threshold 3)"
    );
}

#[tokio::test]
async fn a_short_cooldown_is_waited_for_by_the_requests_that_meet_it() {
    let only = FakeLlm::start("only", Reply::Ok).await;
    only.then([Reply::RetryAfter(429, 1)]);
    let h = Arc::new(Setup::new().healthy(&only).build().await);
    let first = h.generate().await;
    assert!(first.is_ok(), "waited 1 s and answered: {first:?}");
    // The manual clock has not moved: the instance still reads as cooling for 1 s, and a
    // new request waits for it instead of failing.
    let started = Instant::now();
    assert_eq!(h.generate().await.unwrap().served_by, "only");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(only.calls(), 3);
    assert_eq!(h.pool.pool_breaker().unwrap().state(), StateKind::Closed);
}

#[tokio::test]
async fn context_length_and_content_policy_refusals_are_not_retried_anywhere() {
    for code in ["context_length_exceeded", "content_filter"] {
        let a = FakeLlm::start("a", Reply::Refuse(400, code)).await;
        let b = FakeLlm::start("b", Reply::Refuse(400, code)).await;
        let h = Setup::new().healthy(&a).healthy(&b).build().await;
        let req = h.request(Duration::from_secs(5));
        let error = h.pool.generate(&req).await.unwrap_err();
        let ProviderError::Client(refusal) = error else {
            panic!("{error:?}");
        };
        assert_eq!(calls(&[&a, &b]), 1, "{code}: one call only");
        assert_eq!(refusal.code.as_deref(), Some(code));
        assert_eq!(refusal.status, Some(400));
    }
}
