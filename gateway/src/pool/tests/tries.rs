//! A success, retries on another instance, refusals, silence, the retry budget.

use super::*;

#[tokio::test]
async fn a_success_answers_with_the_instance_and_its_model() {
    let a = FakeLlm::start("a", Reply::Ok).await;
    let h = Setup::new().healthy(&a).build().await;

    let answer = h.generate().await.unwrap();
    assert_eq!(answer.response, "echo: hi");
    assert_eq!(answer.model_used, "fake-model");
    assert_eq!(answer.tokens_used, 3);
    assert_eq!(answer.served_by, "a");
    assert_eq!(a.last_request_id().as_deref(), Some("req-1"));

    let attempts = h.observer.attempts.lock().unwrap().clone();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (
            attempts[0].0.as_str(),
            attempts[0].1.as_str(),
            attempts[0].2
        ),
        ("a", "model-a", Ok(200))
    );
    let pool = h.pool_breaker().snapshot();
    assert_eq!((pool.counters.successes, pool.counters.failures), (1, 0));
    assert_eq!(h.budget.snapshot().requests, 1);

    // The same through the fallback chain's provider trait.
    assert_eq!(FallbackProvider::name(&h.pool), "primary");
    let req = h.request(Duration::from_secs(10));
    let via_trait = whole(FallbackProvider::call(&h.pool, &req).await.unwrap());
    assert_eq!(via_trait.served_by, "a");
}

#[tokio::test]
async fn a_503_is_retried_once_on_the_other_instance() {
    let bad = FakeLlm::start("bad", Reply::Status(503)).await;
    let good = FakeLlm::start("good", Reply::Ok).await;
    let h = Setup::new().healthy(&bad).healthy(&good).build().await;

    // Power-of-two-choices picks either first; keep asking until `bad` went first.
    for _ in 0..40 {
        let bad_before = bad.calls();
        let answer = h.generate().await.unwrap();
        assert_eq!(answer.served_by, "good");
        let attempts = h.observer.take();
        if bad.calls() > bad_before {
            assert_eq!(
                bad.calls(),
                bad_before + 1,
                "the bad instance is called once"
            );
            assert_eq!(
                attempts,
                vec![("bad".into(), Err("http_5xx")), ("good".into(), Ok(200))]
            );
            assert_eq!(h.pool_breaker().snapshot().consecutive_failures, 0);
            assert_eq!(h.budget.snapshot().retries, 1);
            return;
        }
        assert_eq!(attempts, vec![("good".into(), Ok(200))]);
    }
    panic!("the bad instance was never picked first in 40 requests");
}

#[tokio::test]
async fn a_request_one_instance_refuses_goes_to_another() {
    let strict = FakeLlm::start("strict", Reply::Status(422)).await;
    let lenient = FakeLlm::start("lenient", Reply::Ok).await;
    let h = Setup::new()
        .healthy(&strict)
        .healthy(&lenient)
        .build()
        .await;
    for _ in 0..10 {
        assert_eq!(h.generate().await.unwrap().served_by, "lenient");
    }
    assert_eq!(h.pool_breaker().snapshot().counters.failures, 0);
}

#[tokio::test]
async fn a_request_every_instance_refuses_is_the_clients_error_and_moves_no_breaker() {
    let a = FakeLlm::start("a", Reply::Status(400)).await;
    let b = FakeLlm::start("b", Reply::Status(400)).await;
    let h = Setup::new().healthy(&a).healthy(&b).build().await;

    let error = h.generate().await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Client(m) if m.message.contains("Simulated upstream error")),
        "{error:?}"
    );
    assert_eq!(calls(&[&a, &b]), 2, "each instance asked once, no more");
    assert_eq!(
        h.budget.snapshot().retries,
        0,
        "refusals spend no retry budget"
    );
    let pool = h.pool_breaker().snapshot();
    assert_eq!((pool.counters.failures, pool.counters.ignored), (0, 1));
    for snapshot in h.pool.breaker_snapshots().values() {
        assert_eq!(snapshot.counters.failures, 0);
    }
    assert!(
        h.pool.instances().iter().all(|i| i.healthy),
        "client errors keep instances healthy"
    );
}

#[tokio::test]
async fn a_hanging_instance_costs_one_per_try_timeout() {
    let hung = FakeLlm::start("hung", Reply::Hang).await;
    let good = FakeLlm::start("good", Reply::Ok).await;
    let per_try = Duration::from_millis(300);
    let h = Setup::new()
        .healthy(&hung)
        .healthy(&good)
        .settings(|s| s.per_try_timeout = per_try)
        .build()
        .await;

    for _ in 0..40 {
        let started = Instant::now();
        let answer = h.generate().await.unwrap();
        let took = started.elapsed();
        assert_eq!(answer.served_by, "good");
        assert!(took < per_try + Duration::from_millis(700), "{took:?}");
        if hung.calls() > 0 {
            assert!(took >= per_try, "{took:?}");
            let attempts = h.observer.take();
            assert_eq!(
                attempts,
                vec![("hung".into(), Err("timeout")), ("good".into(), Ok(200))]
            );
            return;
        }
        h.observer.take();
    }
    panic!("the hanging instance was never picked first in 40 requests");
}

#[tokio::test]
async fn a_closed_connection_is_retried_on_the_other_instance() {
    let closing = FakeLlm::start_closing("closing").await;
    let good = FakeLlm::start("good", Reply::Ok).await;
    let h = Setup::new().healthy(&closing).healthy(&good).build().await;
    for _ in 0..20 {
        assert_eq!(h.generate().await.unwrap().served_by, "good");
    }
    assert!(
        h.observer
            .take()
            .iter()
            .any(|(id, outcome)| id == "closing" && *outcome == Err("connect"))
    );
}

#[tokio::test]
async fn a_spent_retry_budget_stops_retries() {
    let a = FakeLlm::start("a", Reply::Status(503)).await;
    let b = FakeLlm::start("b", Reply::Status(503)).await;
    let mut setup = Setup::new().healthy(&a).healthy(&b);
    setup.budget = BudgetConfig {
        ratio: 0.0,
        min_per_sec: 0,
        window: Duration::from_secs(10),
    };
    let h = setup.build().await;

    let error = h.generate().await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Upstream(ref m) if m.status == Some(503)),
        "{error:?}"
    );
    assert_eq!(calls(&[&a, &b]), 1, "no retry without budget");
    assert_eq!(h.budget.snapshot().retries, 0);
}
