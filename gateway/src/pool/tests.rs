//! The request path against real HTTP: fake llm-services on 127.0.0.1:0, a static
//! discovery client, a health tracker marked by hand and breakers on a manual clock (the
//! HTTP calls themselves run in real time, with short timeouts).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llm_api::generate::GenerateRequest;
use resilience_core::breaker::{Breaker, BreakerConfig, StateKind, TransitionHook};
use resilience_core::discovery::DiscoveryClient;
use resilience_core::fallback::{FallbackProvider, ProviderError};
use resilience_core::health::{HealthCheckConfig, HealthTracker};
use resilience_core::registry::Instance;
use resilience_core::retry::{BudgetConfig, RetryBudget, RetryPolicy};
use resilience_core::{ManualClock, SharedClock};

use super::testing::{FakeLlm, Reply};
use super::*;
use crate::answer::{Answer, WholeAnswer};
use crate::upstream::{Payload, UpstreamClient, UpstreamError};

/// One recorded attempt: instance, model, `Ok(status)` or the error's label, duration.
type Attempt = (String, String, Result<u16, &'static str>, Duration);

#[derive(Default)]
struct Recorder {
    attempts: Mutex<Vec<Attempt>>,
}

impl UpstreamObserver for Recorder {
    fn attempt(
        &self,
        instance_id: &str,
        model: &str,
        outcome: Result<u16, &UpstreamError>,
        took: Duration,
    ) {
        self.attempts.lock().unwrap().push((
            instance_id.to_owned(),
            model.to_owned(),
            outcome.map_err(UpstreamError::error_type),
            took,
        ));
    }
}

impl Recorder {
    fn take(&self) -> Vec<(String, Result<u16, &'static str>)> {
        self.attempts
            .lock()
            .unwrap()
            .drain(..)
            .map(|(id, _, outcome, _)| (id, outcome))
            .collect()
    }
}

/// The whole answer `answer` must be.
fn whole(answer: Answer) -> WholeAnswer {
    match answer {
        Answer::Whole(whole) => whole,
        Answer::Stream(live) => panic!("a stream from {}", live.served_by),
    }
}

/// A pool under test and what it was built with.
struct Harness {
    pool: Pool,
    clock: Arc<ManualClock>,
    discovery: Arc<DiscoveryClient>,
    budget: Arc<RetryBudget>,
    observer: Arc<Recorder>,
    transitions: Arc<Mutex<Vec<(String, StateKind)>>>,
}

/// How to build a [`Harness`]; defaults suit most tests.
struct Setup {
    settings: PoolSettings,
    pool_breaker: Option<BreakerConfig>,
    budget: BudgetConfig,
    health: HealthCheckConfig,
    instances: Vec<(Instance, bool)>,
}

fn settings() -> PoolSettings {
    PoolSettings {
        name: "primary".into(),
        tier: "primary".into(),
        endpoint: None,
        per_try_timeout: Duration::from_secs(2),
        first_token_timeout: Duration::from_secs(2),
        max_retry_after: Duration::from_secs(2),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
        instance_breaker: BreakerConfig {
            failure_threshold: 100,
            ..BreakerConfig::default()
        },
    }
}

fn instance(llm: &FakeLlm) -> Instance {
    Instance::new("llm-service", llm.id.clone(), llm.url.clone())
        .with_metadata("model", format!("model-{}", llm.id))
}

impl Setup {
    fn new() -> Self {
        Self {
            settings: settings(),
            pool_breaker: Some(BreakerConfig {
                failure_threshold: 3,
                recovery_timeout: Duration::from_secs(10),
                ..BreakerConfig::default()
            }),
            budget: BudgetConfig {
                ratio: 1.0,
                min_per_sec: 10,
                window: Duration::from_secs(10),
            },
            health: HealthCheckConfig {
                passive_failure_threshold: 100,
                ..HealthCheckConfig::default()
            },
            instances: Vec::new(),
        }
    }

    /// Adds a healthy instance.
    fn healthy(mut self, llm: &FakeLlm) -> Self {
        self.instances.push((instance(llm), true));
        self
    }

    /// Adds an instance whose last health check failed.
    fn unhealthy(mut self, llm: &FakeLlm) -> Self {
        self.instances.push((instance(llm), false));
        self
    }

    /// Adds any instance, healthy.
    fn with_instance(mut self, instance: Instance) -> Self {
        self.instances.push((instance, true));
        self
    }

    fn settings(mut self, f: impl FnOnce(&mut PoolSettings)) -> Self {
        f(&mut self.settings);
        self
    }

    async fn build(self) -> Harness {
        let clock = ManualClock::new();
        let shared: SharedClock = clock.clone();
        let health = Arc::new(HealthTracker::new(self.health, shared.clone()).unwrap());
        for (instance, healthy) in &self.instances {
            let result = if *healthy {
                Ok(())
            } else {
                Err("down".to_owned())
            };
            let url = instance.normalized_url().unwrap();
            health.record_active(&url, Duration::from_millis(1), result);
        }
        let statics = self.instances.into_iter().map(|(i, _)| i).collect();
        let discovery = Arc::new(DiscoveryClient::new("llm-service", statics).unwrap());
        discovery.refresh().await.unwrap();
        let budget = Arc::new(RetryBudget::new(self.budget, shared.clone()).unwrap());
        let pool_breaker = self
            .pool_breaker
            .map(|config| Arc::new(Breaker::new("pool:primary", config, shared.clone()).unwrap()));
        let transitions: Arc<Mutex<Vec<(String, StateKind)>>> = Arc::default();
        let seen = Arc::clone(&transitions);
        let hook: TransitionHook = Arc::new(move |name, t| {
            seen.lock().unwrap().push((name.to_owned(), t.to));
        });
        let observer = Arc::new(Recorder::default());
        let pool = Pool::new(
            self.settings,
            Arc::clone(&discovery),
            Arc::clone(&health),
            Arc::clone(&budget),
            UpstreamClient::new().unwrap(),
            pool_breaker,
            shared,
            hook,
            observer.clone(),
        );
        Harness {
            pool,
            clock,
            discovery,
            budget,
            observer,
            transitions,
        }
    }
}

impl Harness {
    fn request(&self, within: Duration) -> GatewayRequest {
        GatewayRequest::new(
            Payload::Generate(GenerateRequest::new("hi")),
            "req-1",
            within,
        )
    }

    async fn generate(&self) -> Result<WholeAnswer, ProviderError> {
        self.pool
            .generate(&self.request(Duration::from_secs(10)))
            .await
            .map(whole)
    }

    fn pool_breaker(&self) -> &Breaker {
        self.pool.pool_breaker().unwrap()
    }

    fn view(&self, id: &str) -> InstanceView {
        self.pool
            .instances()
            .into_iter()
            .find(|v| v.id == id)
            .unwrap()
    }
}

fn calls(llms: &[&FakeLlm]) -> usize {
    llms.iter().map(|l| l.calls()).sum()
}

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

fn endpoint(llm: &FakeLlm, model: &str, key: Option<&str>) -> EndpointSpec {
    EndpointSpec {
        id: format!("{model}@fake"),
        url: format!("{}/v1", llm.url),
        protocol: Protocol::OpenAi {
            model: model.to_owned(),
            api_key: key.map(crate::upstream::ApiKey::new),
        },
    }
}

#[tokio::test]
async fn an_endpoint_gets_chat_with_its_model_and_key_and_answers_generate() {
    let llm = FakeLlm::start("ext", Reply::Ok).await;
    let h = Setup::new()
        .settings(|s| s.endpoint = Some(endpoint(&llm, "llama3", Some("sk-secret"))))
        .build()
        .await;
    let answer = h.generate().await.unwrap();
    assert_eq!(answer.model_used, "llama3", "the model that served");
    assert_eq!(answer.served_by, "llama3@fake");
    assert_eq!(answer.response, "echo: hi");
    assert_eq!(
        llm.last_authorization().as_deref(),
        Some("Bearer sk-secret")
    );
    let spec = endpoint(&llm, "m", Some("sk-secret"));
    assert!(
        !format!("{spec:?}").contains("sk-secret"),
        "keys never print"
    );
}

#[tokio::test]
async fn one_failing_model_never_blocks_another_model_on_the_same_host() {
    let llm = FakeLlm::start("host", Reply::Ok).await;
    llm.fail_model("bad");
    let build = |model: &'static str| {
        let spec = endpoint(&llm, model, None);
        Setup::new()
            .settings(move |s| {
                s.endpoint = Some(spec);
                s.instance_breaker.failure_threshold = 2;
                s.retry.max_attempts = 1;
            })
            .build()
    };
    let bad = build("bad").await;
    let good = build("good").await;
    for _ in 0..3 {
        assert!(bad.generate().await.is_err());
        assert!(good.generate().await.is_ok());
    }
    let state = |h: &Harness| {
        h.pool
            .breaker_snapshots()
            .into_values()
            .next()
            .unwrap()
            .state
    };
    assert_eq!(state(&bad), StateKind::Open);
    assert_eq!(state(&good), StateKind::Closed);
}

#[tokio::test]
async fn a_chat_request_goes_to_a_lab_instance_as_chat_with_the_client_model() {
    let llm = FakeLlm::start("lab", Reply::Ok).await;
    let h = Setup::new().healthy(&llm).build().await;
    let chat = llm_api::openai::ChatCompletionRequest::user("client-model", "hello");
    let req = GatewayRequest::new(Payload::Chat(chat), "r", Duration::from_secs(5));
    let answer = whole(h.pool.generate(&req).await.unwrap());
    assert_eq!(answer.model_used, "client-model");
    let completion = answer
        .completion
        .expect("the upstream's completion is kept");
    assert_eq!(completion.usage.map(|u| u.total_tokens), Some(5));
    assert_eq!(llm.last_prompt().as_deref(), Some("hello"));
}

#[tokio::test]
async fn retry_after_never_outlasts_the_deadline() {
    let only = FakeLlm::start("only", Reply::RetryAfter(503, 5)).await;
    let h = Setup::new()
        .healthy(&only)
        .settings(|s| s.retry.max_delay = Duration::from_secs(10))
        .build()
        .await;

    let started = Instant::now();
    let error = h
        .pool
        .generate(&h.request(Duration::from_millis(800)))
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Upstream(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(600));
    assert_eq!(only.calls(), 1);
}

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

#[tokio::test]
async fn instances_report_health_model_and_circuit_state() {
    let a = FakeLlm::start("a", Reply::Ok).await;
    let b = FakeLlm::start("b", Reply::Status(503)).await;
    let backup = FakeLlm::start("backup", Reply::Ok).await;
    let h = Setup::new()
        .unhealthy(&a)
        .with_instance(Instance::new("llm-service", "b", b.url.clone()))
        .with_instance(instance(&backup).with_metadata("tier", "secondary"))
        .settings(|s| s.instance_breaker.failure_threshold = 1)
        .build()
        .await;

    assert_eq!(
        h.pool.instances(),
        vec![
            InstanceView {
                id: "a".into(),
                url: a.url.clone(),
                tier: "primary".into(),
                model: Some("model-a".into()),
                healthy: false,
                circuit_state: StateKind::Closed,
            },
            InstanceView {
                id: "b".into(),
                url: b.url.clone(),
                tier: "primary".into(),
                model: None,
                healthy: true,
                circuit_state: StateKind::Closed,
            },
        ]
    );

    // b answers once (its model is learnt), then fails and is ejected.
    b.then([Reply::Ok]);
    assert_eq!(h.generate().await.unwrap().served_by, "b");
    assert!(h.generate().await.is_err());
    let view = h.view("b");
    assert_eq!(view.model.as_deref(), Some("fake-model"));
    assert_eq!(view.circuit_state, StateKind::Open);
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["circuit_state"], "OPEN");
    assert_eq!(json["healthy"], true);

    let snapshots = h.pool.breaker_snapshots();
    assert_eq!(snapshots.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(snapshots["b"].name, "instance:b");
    assert_eq!(snapshots["b"].state, StateKind::Open);

    h.pool.reset_instance_breakers();
    assert_eq!(h.view("b").circuit_state, StateKind::Closed);
}

#[tokio::test]
async fn endpoints_and_breakers_survive_discovery_refreshes() {
    let a = FakeLlm::start("a", Reply::Ok).await;
    let b = FakeLlm::start("b", Reply::Ok).await;
    let h = Setup::new().healthy(&a).healthy(&b).build().await;

    let before = h.pool.current();
    h.discovery.refresh().await.unwrap();
    let after = h.pool.current();
    assert!(after.generation > before.generation);
    assert_eq!(before.endpoints.len(), 2);
    for (x, y) in before.endpoints.iter().zip(&after.endpoints) {
        assert!(Arc::ptr_eq(x, y), "endpoint of {} replaced", x.value().id);
    }
    assert_eq!(h.pool.lock_breakers().len(), 2);
}

#[tokio::test]
async fn unknown_chat_fields_travel_to_an_endpoint_with_its_model_and_usage_asked_for_streams() {
    let llm = FakeLlm::start("ext", Reply::Ok).await;
    let h = Setup::new()
        .settings(|s| s.endpoint = Some(endpoint(&llm, "upstream-model", None)))
        .build()
        .await;
    let mut chat = llm_api::openai::ChatCompletionRequest::user("public-name", "hi");
    for (key, value) in [
        ("top_p", serde_json::json!(0.5)),
        ("stop", serde_json::json!(["\n"])),
        (
            "tools",
            serde_json::json!([{"type": "function", "function": {"name": "f"}}]),
        ),
    ] {
        chat.extra.insert(key.to_owned(), value);
    }
    let req = GatewayRequest::new(Payload::Chat(chat.clone()), "r", Duration::from_secs(5));
    h.pool.generate(&req).await.unwrap();
    let body = llm.last_body().unwrap();
    assert_eq!(body["model"], "upstream-model");
    assert_eq!(body["top_p"], 0.5);
    assert_eq!(body["stop"][0], "\n");
    assert_eq!(body["tools"][0]["function"]["name"], "f");

    // A stream always asks for usage (the gateway reports it at the end of every stream).
    chat.stream = true;
    let streamed = Payload::Chat(chat).chat_for(&Protocol::Lab);
    assert!(streamed.stream_options.is_some_and(|o| o.include_usage));
}

#[tokio::test]
async fn with_the_other_instance_ejected_a_failed_try_is_retried_on_the_same_one() {
    let a = FakeLlm::start("a", Reply::Ok).await;
    let b = FakeLlm::start("b", Reply::Status(503)).await;
    let h = Setup::new()
        .healthy(&a)
        .healthy(&b)
        .settings(|s| s.instance_breaker.failure_threshold = 2)
        .build()
        .await;
    let b_state = |h: &Harness| h.pool.breaker_snapshots()["b"].state;
    while b_state(&h) != StateKind::Open {
        assert_eq!(h.generate().await.unwrap().served_by, "a");
    }
    // b is ejected now; a fails once (the lab's llm-services fail 10 % of calls at random).
    a.then([Reply::Status(500)]);
    let before = a.calls();
    assert_eq!(
        h.generate().await.unwrap().served_by,
        "a",
        "retried, not lost"
    );
    assert_eq!(a.calls(), before + 2);
    assert_eq!(b.calls(), 2, "the ejected instance is left alone");
}
