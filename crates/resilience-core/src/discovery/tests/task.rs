//! The background refresh loop under paused Tokio time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::sleep;

use super::{ids, registered};
use crate::discovery::DiscoveryClient;
use crate::registry::testing::{FlakyRegistry, Mode, TokioClock};
use crate::registry::{LLM_SERVICE, MemoryRegistry, ServiceRegistry};

const EVERY: Duration = Duration::from_secs(1);
const TTL: Duration = Duration::from_secs(10);

fn client() -> (Arc<FlakyRegistry>, Arc<DiscoveryClient>) {
    let clock = TokioClock::shared();
    let flaky = FlakyRegistry::new(Arc::new(MemoryRegistry::new(clock.clone())));
    let client = DiscoveryClient::new(LLM_SERVICE, Vec::new())
        .unwrap()
        .with_registry(flaky.clone())
        .with_clock(clock);
    (flaky, Arc::new(client))
}

#[tokio::test(start_paused = true)]
async fn first_round_runs_at_once_and_later_rounds_pick_up_new_instances() {
    let (flaky, client) = client();
    flaky
        .inner
        .register(&registered("llm-1", 8001), TTL)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let task = Arc::clone(&client).spawn(EVERY);
    client.wait_for_generation(1).await;
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "the first round does not wait an interval"
    );
    assert_eq!(ids(client.snapshot().instances()), ["llm-1"]);

    flaky
        .inner
        .register(&registered("llm-2", 8002), TTL)
        .await
        .unwrap();
    sleep(EVERY + Duration::from_millis(1)).await;
    assert_eq!(ids(client.snapshot().instances()), ["llm-1", "llm-2"]);
    task.stop().await;
}

#[tokio::test(start_paused = true)]
async fn loop_survives_failures_and_clears_staleness_on_recovery() {
    let (flaky, client) = client();
    flaky
        .inner
        .register(&registered("llm-1", 8001), TTL * 100)
        .await
        .unwrap();
    let task = Arc::clone(&client).spawn(EVERY);
    client.wait_for_generation(1).await;

    flaky.set(Mode::Failing);
    sleep(EVERY * 3).await;
    let stale = client.snapshot();
    assert!(stale.is_stale());
    assert!(stale.consecutive_failures >= 2, "{stale:?}");
    assert_eq!(ids(stale.instances()), ["llm-1"]);

    flaky.set(Mode::Healthy);
    sleep(EVERY).await;
    assert!(!client.snapshot().is_stale());
    assert!(!task.is_finished());
    task.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stop_ends_the_loop() {
    let (flaky, client) = client();
    let task = Arc::clone(&client).spawn(EVERY);
    client.wait_for_generation(1).await;
    task.stop().await;
    let calls = flaky.calls.load(Ordering::SeqCst);
    let generation = client.snapshot().generation;
    sleep(EVERY * 5).await;
    assert_eq!(flaky.calls.load(Ordering::SeqCst), calls);
    assert_eq!(client.snapshot().generation, generation);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_aborts_the_loop() {
    let (flaky, client) = client();
    let task = Arc::clone(&client).spawn(EVERY);
    client.wait_for_generation(1).await;
    drop(task);
    let calls = flaky.calls.load(Ordering::SeqCst);
    sleep(EVERY * 5).await;
    assert_eq!(flaky.calls.load(Ordering::SeqCst), calls);
    assert_eq!(
        Arc::strong_count(&client),
        1,
        "the aborted task released the client"
    );
}
