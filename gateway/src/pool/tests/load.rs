//! What the pool tells the metrics besides its tries: the calls its breakers counted, and its
//! load (calls in flight, requests waiting for their next try).

use super::*;

#[tokio::test]
async fn each_breaker_is_told_of_the_calls_it_counted_under_its_metrics_label() {
    let bad = FakeLlm::start("bad", Reply::Status(503)).await;
    let good = FakeLlm::start("good", Reply::Ok).await;
    let h = Setup::new().healthy(&bad).healthy(&good).build().await;

    // Power-of-two-choices picks either first; keep asking until `bad` went first.
    for _ in 0..40 {
        let bad_before = bad.calls();
        assert_eq!(h.generate().await.unwrap().served_by, "good");
        let calls = std::mem::take(&mut *h.observer.breaker_calls.lock().unwrap());
        let mut expected = vec![
            ("instance:good".to_owned(), Outcome::Success),
            ("pool:primary".to_owned(), Outcome::Success),
        ];
        if bad.calls() > bad_before {
            expected.insert(0, ("instance:bad".to_owned(), Outcome::Failure));
            assert_eq!(calls, expected);
            return;
        }
        assert_eq!(calls, expected);
    }
    panic!("the bad instance was never picked first in 40 requests");
}

#[tokio::test]
async fn a_request_waiting_for_its_next_try_is_queued_in_the_pool() {
    let only = FakeLlm::start("only", Reply::Ok).await;
    only.then([Reply::RetryAfter(429, 1)]);
    let h = Setup::new()
        .healthy(&only)
        .settings(|s| s.max_retry_after = Duration::from_secs(2))
        .build()
        .await;
    assert_eq!(h.pool.load(), PoolLoad::default());

    let watch = async {
        for _ in 0..400 {
            let load = h.pool.load();
            if load.queued > 0 {
                return Some(load);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    };
    let (answer, seen) = tokio::join!(h.generate(), watch);
    assert_eq!(answer.unwrap().served_by, "only");
    assert_eq!(
        seen,
        Some(PoolLoad {
            in_flight: 0,
            queued: 1
        }),
        "waiting out the Retry-After, with no call in flight"
    );
    assert_eq!(h.pool.load(), PoolLoad::default());
}

#[tokio::test]
async fn a_call_is_in_flight_until_it_ends_even_when_the_request_is_dropped() {
    let hung = FakeLlm::start("hung", Reply::Hang).await;
    let h = Setup::new().healthy(&hung).build().await;

    let in_flight = async {
        while h.pool.load().in_flight == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        result = h.generate() => panic!("a hung instance answered: {result:?}"),
        () = in_flight => {}
    }
    assert_eq!(
        h.pool.load(),
        PoolLoad::default(),
        "the dropped request's call ended"
    );
}

#[tokio::test]
async fn instance_breakers_are_listed_under_their_metrics_labels() {
    let a = FakeLlm::start("a", Reply::Ok).await;
    let h = Setup::new().healthy(&a).build().await;
    let labels: Vec<String> = h
        .pool
        .labelled_breaker_snapshots()
        .into_iter()
        .map(|(label, snapshot)| {
            assert_eq!(snapshot.state, StateKind::Closed);
            label
        })
        .collect();
    assert_eq!(labels, ["instance:a"]);

    let llm = FakeLlm::start("ext", Reply::Ok).await;
    let h = Setup::new()
        .settings(|s| s.endpoint = Some(super::endpoints::endpoint(&llm, "llama3", None)))
        .build()
        .await;
    h.generate().await.unwrap();
    let labels: Vec<String> = h
        .pool
        .labelled_breaker_snapshots()
        .into_iter()
        .map(|(label, _)| label)
        .collect();
    assert_eq!(
        labels,
        ["endpoint:llama3@fake"],
        "as circuit_breaker_state names it"
    );
    let calls = h.observer.breaker_calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            ("endpoint:llama3@fake".to_owned(), Outcome::Success),
            ("pool:primary".to_owned(), Outcome::Success),
        ]
    );
}
