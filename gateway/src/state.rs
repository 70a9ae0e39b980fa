//! Wiring: discovery, health checks, the two pools and their breakers, the fallback chain,
//! metrics and the transition log, built once from the configuration.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use llm_api::generate::DEFAULT_MAX_TOKENS;
use resilience_core::breaker::{Breaker, StateKind, Transition, TransitionHook, TransitionReason};
use resilience_core::clock::{SharedClock, SystemClock, unix_millis};
use resilience_core::discovery::{DiscoveryClient, DiscoveryTask};
use resilience_core::fallback::{
    AnswerStore, FallbackChain, TemplateProvider, Tier, TierKind, degraded_text,
};
use resilience_core::health::{
    ActiveHealthChecker, CheckOutcome, CheckerHandle, CompositeHealthChecker, FnCheck,
    HealthTracker, ProbeTarget, RedisPingCheck, SystemResourcesCheck,
};
use resilience_core::registry::{LLM_SERVICE, RedisRegistry};
use resilience_core::retry::RetryBudget;
use serde::Serialize;

use crate::answer::{Answer, WholeAnswer};
use crate::cache::AnswerCache;
use crate::config::{Settings, Target, endpoint_key};
use crate::metrics::Metrics;
use crate::pool::{EndpointSpec, GatewayRequest, Pool, PoolSettings};
use crate::routing::{Route, Routes};
use crate::upstream::{HttpProbe, UpstreamClient, count_words};

/// Transitions kept for `/admin/status`.
const TRANSITIONS_KEPT: usize = 200;

/// One breaker transition as `/admin/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TransitionEntry {
    /// `llm-service` (the pool) or `instance:<id>`.
    pub breaker: String,
    /// State left.
    pub from: StateKind,
    /// State entered.
    pub to: StateKind,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Why.
    pub reason: TransitionReason,
}

/// Everything the handlers share.
pub struct Gateway {
    /// The settings.
    pub settings: Arc<Settings>,
    /// Instances, static and registered.
    pub discovery: Arc<DiscoveryClient>,
    /// Instance health.
    pub health: Arc<HealthTracker>,
    /// Instances tagged primary (the default), behind the pool breaker.
    pub primary: Arc<Pool>,
    /// Instances tagged secondary.
    pub secondary: Arc<Pool>,
    /// Every pool of discovered instances by tier, `primary` and `secondary` included.
    pub pools: BTreeMap<String, Arc<Pool>>,
    /// The OpenAI-compatible endpoint targets, one per (base URL, model).
    pub endpoints: Vec<Arc<Pool>>,
    /// The lab's "circuit breaker".
    pub pool_breaker: Arc<Breaker>,
    /// Model name → its chain of targets, then cache and template.
    pub routes: Routes,
    /// The response cache (learned and seeded answers, in-process and in Redis).
    pub cache: Arc<AnswerCache>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Dependency checks for `/health`.
    pub checks: CompositeHealthChecker,
    /// Recent breaker transitions.
    pub transitions: Arc<Mutex<VecDeque<TransitionEntry>>>,
    /// Requests in flight.
    pub in_flight: AtomicUsize,
    /// False once shutdown began.
    pub accepting: AtomicBool,
    /// When the gateway started.
    pub started: Instant,
    /// The active health checker's loop.
    pub checker: CheckerHandle,
    /// The registry refresh loop, when a registry is configured.
    pub discovery_task: Option<DiscoveryTask>,
}

impl Gateway {
    /// Builds and starts everything (discovery refresh, health checks); must run inside a
    /// Tokio runtime.
    pub async fn start(settings: Settings) -> anyhow::Result<Arc<Self>> {
        let config = Arc::new(settings);
        let clock: SharedClock = SystemClock::shared();
        let mut discovery = DiscoveryClient::new(LLM_SERVICE, config.static_instances.clone())?;
        let mut checks = CompositeHealthChecker::new().with_check(SystemResourcesCheck::new());
        if let Some(url) = &config.redis_url {
            discovery = discovery
                .with_registry(Arc::new(RedisRegistry::new(url)?))
                .with_grace(config.registry_grace);
            checks = checks.with_check(RedisPingCheck::from_url(url)?);
        }
        let discovery = Arc::new(discovery);
        let discovery_task = config
            .redis_url
            .as_ref()
            .map(|_| Arc::clone(&discovery).spawn(config.discovery_refresh));
        match discovery_task {
            // The first round is bounded by the refresh timeout; failed or not, it publishes.
            Some(_) => discovery.wait_for_generation(1).await,
            None => discovery.refresh().await?,
        }

        let transitions = Arc::new(Mutex::new(VecDeque::with_capacity(TRANSITIONS_KEPT)));
        let hook = transition_log(Arc::clone(&transitions), Arc::clone(&clock));
        let pool_breaker = Arc::new(
            Breaker::new(
                LLM_SERVICE,
                config.breakers.pool.clone(),
                Arc::clone(&clock),
            )?
            .with_hook(Arc::clone(&hook)),
        );
        let health = Arc::new(HealthTracker::new(config.health, Arc::clone(&clock))?);
        let client = UpstreamClient::new()?;
        let metrics = Arc::new(Metrics::new()?);
        // Each target keeps its own retry budget: a failing model never spends the retries
        // of another one; and its own instance breakers' settings.
        let pool = |name: &str,
                    tier: &str,
                    endpoint: Option<EndpointSpec>,
                    breaker|
         -> anyhow::Result<Arc<Pool>> {
            let budget = Arc::new(RetryBudget::new(config.budget.clone(), Arc::clone(&clock))?);
            let instance_breaker = match &endpoint {
                Some(endpoint) => config.breakers.for_endpoint(endpoint),
                None => config.breakers.for_pool(tier),
            }
            .clone();
            Ok(Arc::new(Pool::new(
                PoolSettings {
                    name: name.to_owned(),
                    tier: tier.to_owned(),
                    endpoint,
                    per_try_timeout: config.per_try_timeout,
                    first_token_timeout: config.first_token_timeout,
                    max_retry_after: config.max_retry_after,
                    retry: config.retry.clone(),
                    instance_breaker,
                },
                Arc::clone(&discovery),
                Arc::clone(&health),
                budget,
                client.clone(),
                breaker,
                Arc::clone(&clock),
                Arc::clone(&hook),
                Arc::clone(&metrics) as Arc<dyn crate::pool::UpstreamObserver>,
            )))
        };
        let primary = pool("primary", "primary", None, Some(Arc::clone(&pool_breaker)))?;
        let secondary = pool("secondary", "secondary", None, None)?;
        let mut pools = BTreeMap::from([
            ("primary".to_owned(), Arc::clone(&primary)),
            ("secondary".to_owned(), Arc::clone(&secondary)),
        ]);
        // One endpoint pool (and breaker) per (base URL, upstream model), shared by every
        // route naming it: a failing model never blocks another one on the same host.
        let mut endpoints: BTreeMap<(String, String), Arc<Pool>> = BTreeMap::new();
        let mut route_targets = Vec::new();
        for spec in &config.routes {
            let mut targets: Vec<Arc<Pool>> = Vec::new();
            for target in &spec.targets {
                let target = match target {
                    Target::Pool(tier) => match pools.get(tier) {
                        Some(known) => Arc::clone(known),
                        None => {
                            let new = pool(tier, tier, None, None)?;
                            pools.insert(tier.clone(), Arc::clone(&new));
                            new
                        }
                    },
                    Target::Endpoint(endpoint) => {
                        let key = endpoint_key(endpoint);
                        match endpoints.get(&key) {
                            Some(known) => Arc::clone(known),
                            None => {
                                let new =
                                    pool(&endpoint.id, "endpoint", Some(endpoint.clone()), None)?;
                                endpoints.insert(key, Arc::clone(&new));
                                new
                            }
                        }
                    }
                };
                targets.push(target);
            }
            route_targets.push((spec, targets));
        }

        let cache = Arc::new(AnswerCache::new(
            &config.cache,
            config.redis_url.as_deref(),
            Arc::clone(&clock),
        )?);
        let tiers = &config.tiers;
        // The pools end at the request's deadline themselves (and count the failure); the
        // tier timeout is only a backstop, so it must not fire first.
        let live = config.request_timeout + std::time::Duration::from_secs(1);
        let mut routes = Vec::new();
        for (spec, targets) in route_targets {
            let mut targets = targets.into_iter();
            let mut first = Tier::new(TierKind::Primary).with_timeout(live);
            if let Some(target) = targets.next() {
                first = first.with_provider(target);
            }
            let mut rest = Tier::new(TierKind::Secondary)
                .with_timeout(live)
                .with_enabled(tiers.secondary);
            for target in targets {
                rest = rest.with_provider(target);
            }
            let chain = FallbackChain::new([
                first,
                rest,
                cache.tier().with_enabled(tiers.cache),
                Tier::new(TierKind::Template)
                    .with_provider(TemplateProvider::new("template", template_answer))
                    .with_enabled(tiers.template),
            ])?
            .with_store(Arc::clone(&cache) as Arc<dyn AnswerStore<GatewayRequest, Answer>>);
            routes.push(Route {
                name: spec.name.clone(),
                chain,
                context_fallback: spec.context_fallback.clone(),
            });
        }
        let routes = Routes::new(routes)?;
        let endpoints: Vec<Arc<Pool>> = endpoints.into_values().collect();

        let discovery_for_checks = Arc::clone(&discovery);
        let health_for_checks = Arc::clone(&health);
        let breaker_for_checks = Arc::clone(&pool_breaker);
        checks = checks.with_check(FnCheck::new("service_discovery", false, move || {
            let snapshot = discovery_for_checks.snapshot();
            let available = snapshot
                .instances()
                .iter()
                .filter(|i| health_for_checks.is_healthy(&i.url))
                .count();
            let breaker = breaker_for_checks.state();
            let outcome = if snapshot.is_stale() {
                CheckOutcome::degraded(format!(
                    "registry unreachable, serving the last snapshot: {}",
                    snapshot.last_error.clone().unwrap_or_default()
                ))
            } else if available == 0 {
                CheckOutcome::degraded(
                    "no instance passes its health checks; answering from fallback",
                )
            } else if breaker != StateKind::Closed {
                CheckOutcome::degraded(format!("the pool circuit breaker is {breaker}"))
            } else {
                CheckOutcome::healthy()
            };
            let outcome = outcome.with_details(serde_json::json!({
                "available_services": available,
                "known_services": snapshot.len(),
                "stale": snapshot.is_stale(),
            }));
            async move { outcome }
        }));

        let probe = Arc::new(
            HttpProbe::new(client, config.health_check_path.clone())
                .with_timeout(config.health.timeout),
        );
        let checker = ActiveHealthChecker::new(Arc::clone(&health), probe).on_transition(|id, t| {
            tracing::warn!(instance = id, from = %t.from, to = %t.to, reason = %t.reason, "instance health changed");
        });
        let discovery_for_targets = Arc::clone(&discovery);
        let checker = checker.spawn(move || {
            discovery_for_targets
                .snapshot()
                .instances()
                .iter()
                .map(|i| ProbeTarget::new(i.url.clone(), i.url.clone()))
                .collect()
        });

        Ok(Arc::new(Self {
            settings: config,
            discovery,
            health,
            primary,
            secondary,
            pools,
            endpoints,
            pool_breaker,
            routes,
            cache,
            metrics,
            checks,
            transitions,
            in_flight: AtomicUsize::new(0),
            accepting: AtomicBool::new(true),
            started: Instant::now(),
            checker,
            discovery_task,
        }))
    }

    /// Ready for traffic: one health round done, not shutting down.
    pub fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire) && self.checker.rounds_completed() > 0
    }

    /// Instances in the snapshot that pass their health checks.
    pub fn available_services(&self) -> usize {
        self.discovery
            .snapshot()
            .instances()
            .iter()
            .filter(|i| self.health.is_healthy(&i.url))
            .count()
    }

    /// Recent transitions, oldest first.
    pub fn transitions(&self) -> Vec<TransitionEntry> {
        self.transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The token budget of a request without `max_tokens`.
    pub fn default_max_tokens() -> u32 {
        DEFAULT_MAX_TOKENS
    }
}

/// A hook that keeps the last transitions for `/admin/status`.
fn transition_log(
    log: Arc<Mutex<VecDeque<TransitionEntry>>>,
    clock: SharedClock,
) -> TransitionHook {
    Arc::new(move |name: &str, t: &Transition| {
        let entry = TransitionEntry {
            breaker: name.to_owned(),
            from: t.from,
            to: t.to,
            at_ms: unix_millis(clock.wall_at(t.at)),
            reason: t.reason,
        };
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() == TRANSITIONS_KEPT {
            log.pop_front();
        }
        log.push_back(entry);
    })
}

/// The template tier's answer: honest about being degraded.
fn template_answer(req: &GatewayRequest) -> Answer {
    let response = degraded_text(&req.payload.prompt_text());
    let tokens = count_words(&response);
    Answer::Whole(WholeAnswer::text(
        response,
        "fallback-template",
        tokens,
        "fallback_manager",
    ))
}

#[cfg(test)]
mod tests;
