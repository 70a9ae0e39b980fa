//! The request path against real HTTP: fake llm-services on 127.0.0.1:0, a static
//! discovery client, a health tracker marked by hand and breakers on a manual clock (the
//! HTTP calls themselves run in real time, with short timeouts).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llm_api::generate::GenerateRequest;
use resilience_core::breaker::{Breaker, BreakerConfig, Outcome, StateKind, TransitionHook};
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
    /// The calls breakers were told of: the breaker's label and the outcome.
    breaker_calls: Mutex<Vec<(String, Outcome)>>,
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

    fn breaker_call(&self, breaker: &str, outcome: Outcome, _took: Duration) {
        self.breaker_calls
            .lock()
            .unwrap()
            .push((breaker.to_owned(), outcome));
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
        prefill: resilience_core::policy::continuation::PrefillMode::On,
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

mod breakers;
mod endpoints;
mod load;
mod retry_after;
mod tries;
mod views;
