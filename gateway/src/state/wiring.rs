//! The steps of [`Gateway::start`](super::Gateway::start), each building one part of the
//! gateway from the settings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use resilience_core::SharedClock;
use resilience_core::breaker::{Breaker, StateKind, TransitionHook};
use resilience_core::discovery::{DiscoveryClient, DiscoveryTask};
use resilience_core::fallback::{
    AnswerStore, FallbackChain, TemplateProvider, Tier, TierKind, degraded_text,
};
use resilience_core::health::{
    ActiveHealthChecker, CheckOutcome, CheckerHandle, CompositeHealthChecker, FnCheck, HealthCheck,
    HealthTracker, ProbeTarget, RedisPingCheck, SystemResourcesCheck,
};
use resilience_core::limit::{FailureMode, StoreKind};
use resilience_core::registry::{LLM_SERVICE, RedisRegistry};
use resilience_core::retry::RetryBudget;

use history::History;
use resilience_core::health::{HealthTransition, InstanceStatus, TransitionHook as HealthHook};

use crate::answer::{Answer, WholeAnswer};
use crate::cache::AnswerCache;
use crate::config::{RouteSpec, Settings, Target, endpoint_key};
use crate::metrics::Metrics;
use crate::pool::{EndpointSpec, GatewayRequest, Pool, PoolSettings, UpstreamObserver};
use crate::ratelimit::Limits;
use crate::records;
use crate::routing::{Route, Routes};
use crate::telemetry::Traced;
use crate::upstream::{HttpProbe, UpstreamClient, count_words};

/// The discovery client over the static list and, when configured, the Redis registry
/// (refreshed in the background, with a grace period for entries a restarted Redis lost);
/// returns once its first round published.
pub(super) async fn discovery(
    settings: &Settings,
) -> anyhow::Result<(Arc<DiscoveryClient>, Option<DiscoveryTask>)> {
    let mut discovery = DiscoveryClient::new(LLM_SERVICE, settings.static_instances.clone())?;
    if let Some(url) = &settings.redis_url {
        discovery = discovery
            .with_registry(Arc::new(RedisRegistry::new(url)?))
            .with_grace(settings.registry_grace);
    }
    let discovery = Arc::new(discovery);
    let task = settings
        .redis_url
        .as_ref()
        .map(|_| Arc::clone(&discovery).spawn(settings.discovery_refresh));
    match task {
        // The first round is bounded by the refresh timeout; failed or not, it publishes.
        Some(_) => discovery.wait_for_generation(1).await,
        None => discovery.refresh().await?,
    }
    Ok((discovery, task))
}

/// The lab's "circuit breaker", in front of the primary pool.
pub(super) fn pool_breaker(
    settings: &Settings,
    clock: &SharedClock,
    hook: &TransitionHook,
) -> anyhow::Result<Arc<Breaker>> {
    let breaker = Breaker::new(
        LLM_SERVICE,
        settings.breakers.pool.clone(),
        Arc::clone(clock),
    )?;
    Ok(Arc::new(breaker.with_hook(Arc::clone(hook))))
}

/// What every pool is built with.
pub(super) struct PoolFactory {
    pub settings: Arc<Settings>,
    pub discovery: Arc<DiscoveryClient>,
    pub health: Arc<HealthTracker>,
    pub client: UpstreamClient,
    pub clock: SharedClock,
    pub hook: TransitionHook,
    pub metrics: Arc<Metrics>,
}

impl PoolFactory {
    /// A pool named `name` over `tier`'s instances, or over one `endpoint`. Each keeps its
    /// own retry budget (a failing model never spends another's retries) and its own
    /// instance breakers' settings.
    fn pool(
        &self,
        name: &str,
        tier: &str,
        endpoint: Option<EndpointSpec>,
        breaker: Option<Arc<Breaker>>,
    ) -> anyhow::Result<Arc<Pool>> {
        let settings = &self.settings;
        let budget = RetryBudget::new(settings.budget.clone(), Arc::clone(&self.clock))?;
        let instance_breaker = match &endpoint {
            Some(endpoint) => settings.breakers.for_endpoint(endpoint),
            None => settings.breakers.for_pool(tier),
        }
        .clone();
        let prefill = match &endpoint {
            Some(endpoint) => settings.prefill.for_endpoint(endpoint),
            None => settings.prefill.for_pool(tier),
        };
        Ok(Arc::new(Pool::new(
            PoolSettings {
                name: name.to_owned(),
                tier: tier.to_owned(),
                endpoint,
                per_try_timeout: settings.per_try_timeout,
                first_token_timeout: settings.first_token_timeout,
                max_retry_after: settings.max_retry_after,
                retry: settings.retry.clone(),
                instance_breaker,
                prefill,
            },
            Arc::clone(&self.discovery),
            Arc::clone(&self.health),
            Arc::new(budget),
            self.client.clone(),
            breaker,
            Arc::clone(&self.clock),
            Arc::clone(&self.hook),
            Arc::clone(&self.metrics) as Arc<dyn UpstreamObserver>,
        )))
    }
}

/// Every target: the pools of discovered instances by tier and the endpoint pools.
pub(super) struct Targets {
    pub primary: Arc<Pool>,
    pub secondary: Arc<Pool>,
    pub pools: BTreeMap<String, Arc<Pool>>,
    pub endpoints: Vec<Arc<Pool>>,
    /// Each route with its targets, in order.
    pub by_route: Vec<(RouteSpec, Vec<Arc<Pool>>)>,
}

/// The primary pool (behind `pool_breaker`), the secondary one, and every target the routes
/// name: a pool per tier, and one endpoint pool (and breaker) per (base URL, upstream
/// model), shared by every route naming it — a failing model never blocks another one on
/// the same host.
pub(super) fn targets(
    factory: &PoolFactory,
    pool_breaker: &Arc<Breaker>,
) -> anyhow::Result<Targets> {
    let primary = factory.pool("primary", "primary", None, Some(Arc::clone(pool_breaker)))?;
    let secondary = factory.pool("secondary", "secondary", None, None)?;
    let mut pools = BTreeMap::from([
        ("primary".to_owned(), Arc::clone(&primary)),
        ("secondary".to_owned(), Arc::clone(&secondary)),
    ]);
    let mut endpoints: BTreeMap<_, Arc<Pool>> = BTreeMap::new();
    let mut by_route = Vec::new();
    for spec in &factory.settings.routes {
        let mut targets = Vec::new();
        for target in &spec.targets {
            let target = match target {
                Target::Pool(tier) => match pools.get(tier) {
                    Some(known) => Arc::clone(known),
                    None => {
                        let new = factory.pool(tier, tier, None, None)?;
                        pools.insert(tier.clone(), Arc::clone(&new));
                        new
                    }
                },
                Target::Endpoint(endpoint) => match endpoints.get(&endpoint_key(endpoint)) {
                    Some(known) => Arc::clone(known),
                    None => {
                        let new =
                            factory.pool(&endpoint.id, "endpoint", Some(endpoint.clone()), None)?;
                        endpoints.insert(endpoint_key(endpoint), Arc::clone(&new));
                        new
                    }
                },
            };
            targets.push(target);
        }
        by_route.push((spec.clone(), targets));
    }
    Ok(Targets {
        primary,
        secondary,
        pools,
        endpoints: endpoints.into_values().collect(),
        by_route,
    })
}

/// One fallback chain per route: its first target → its other targets in order → cache →
/// template, its live answers kept by `cache`.
pub(super) fn routes(
    settings: &Settings,
    by_route: &[(RouteSpec, Vec<Arc<Pool>>)],
    cache: &Arc<AnswerCache>,
) -> anyhow::Result<Routes> {
    let tiers = &settings.tiers;
    // The pools end at the request's deadline themselves (and count the failure); the tier
    // timeout is only a backstop, so it must not fire first.
    let live = settings.request_timeout + Duration::from_secs(1);
    let mut routes = Vec::new();
    for (spec, targets) in by_route {
        let mut targets = targets.iter().cloned();
        let mut first = Tier::new(TierKind::Primary).with_timeout(live);
        if let Some(target) = targets.next() {
            first = first.with_provider(Traced::new(TierKind::Primary, target));
        }
        let mut rest = Tier::new(TierKind::Secondary)
            .with_timeout(live)
            .with_enabled(tiers.secondary);
        for target in targets {
            rest = rest.with_provider(Traced::new(TierKind::Secondary, target));
        }
        let chain = FallbackChain::new([
            first,
            rest,
            cache.tier().with_enabled(tiers.cache),
            Tier::new(TierKind::Template)
                .with_provider(Traced::new(
                    TierKind::Template,
                    TemplateProvider::new("template", template_answer),
                ))
                .with_enabled(tiers.template),
        ])?
        .with_store(Arc::clone(cache) as Arc<dyn AnswerStore<GatewayRequest, Answer>>);
        routes.push(Route {
            name: spec.name.clone(),
            chain,
            context_fallback: spec.context_fallback.clone(),
        });
    }
    Routes::new(routes)
}

/// How full the gateway is: connections against their cap, slots against
/// `MAX_CONCURRENT_REQUESTS`.
#[derive(Clone)]
pub(crate) struct Capacity {
    pub connections: Arc<http_edge::Connections>,
    pub in_flight: Arc<AtomicUsize>,
    pub max_in_flight: usize,
}

impl Capacity {
    /// What is used up, when something is.
    pub fn saturated(&self) -> Option<&'static str> {
        if self.connections.stats().saturated() {
            Some("every connection is taken (MAX_CONNECTIONS)")
        } else if self.in_flight.load(Ordering::Acquire) >= self.max_in_flight {
            Some("every in-flight slot is taken (MAX_CONCURRENT_REQUESTS)")
        } else {
            None
        }
    }
}

/// `rate_limiter` (not critical): where limits are counted now — degraded, saying the
/// failure mode in force, while the Redis store is unreachable.
fn rate_limiter_check(limits: &Arc<Limits>) -> impl HealthCheck + use<> {
    let limits = Arc::clone(limits);
    FnCheck::new("rate_limiter", false, move || {
        let limits = Arc::clone(&limits);
        async move {
            let status = limits.probe().await;
            let active = status.active.as_str();
            if status.kind == StoreKind::Redis && !status.redis_available {
                CheckOutcome::degraded(format!(
                    "the rate limiter's Redis is unreachable: {active} in force"
                ))
            } else {
                CheckOutcome::healthy()
            }
            .with_details(serde_json::json!({
                "enforced": limits.active(),
                "store": status.kind.as_str(),
                "active": active,
                "failure_mode": status.failure_mode.map(FailureMode::as_str),
                "local_overflows": status.local_overflows,
            }))
        }
    })
}

/// The dependency checks of `/health`: system resources, Redis when configured, capacity
/// (degraded while saturated), and the service discovery check (degraded while the
/// registry is stale, no instance is healthy or the pool breaker is not CLOSED).
pub(super) fn checks(
    settings: &Settings,
    limits: &Arc<Limits>,
    discovery: &Arc<DiscoveryClient>,
    health: &Arc<HealthTracker>,
    pool_breaker: &Arc<Breaker>,
    capacity: Capacity,
    history: Option<&Arc<History>>,
) -> anyhow::Result<CompositeHealthChecker> {
    let mut checks = CompositeHealthChecker::new()
        .with_check(SystemResourcesCheck::new())
        .with_check(FnCheck::new("capacity", false, move || {
            let stats = capacity.connections.stats();
            let outcome = match capacity.saturated() {
                Some(why) => CheckOutcome::degraded(why),
                None => CheckOutcome::healthy(),
            }
            .with_details(serde_json::json!({
                "connections": stats.open,
                "max_connections": stats.cap,
                "in_flight": capacity.in_flight.load(Ordering::Acquire),
                "max_in_flight": capacity.max_in_flight,
            }));
            async move { outcome }
        }));
    if let Some(url) = &settings.redis_url {
        checks = checks.with_check(RedisPingCheck::from_url(url)?);
    }
    checks = checks.with_check(rate_limiter_check(limits));
    if let Some(history) = history {
        checks = checks.with_check(database_check(history));
    }
    let (discovery, health, breaker) = (
        Arc::clone(discovery),
        Arc::clone(health),
        Arc::clone(pool_breaker),
    );
    Ok(
        checks.with_check(FnCheck::new("service_discovery", false, move || {
            let snapshot = discovery.snapshot();
            let available = snapshot
                .instances()
                .iter()
                .filter(|i| health.is_healthy(&i.url))
                .count();
            let state = breaker.state();
            let outcome = if snapshot.is_stale() {
                CheckOutcome::degraded(format!(
                    "registry unreachable, serving the last snapshot: {}",
                    snapshot.last_error.clone().unwrap_or_default()
                ))
            } else if available == 0 {
                CheckOutcome::degraded(
                    "no instance passes its health checks; answering from fallback",
                )
            } else if state != StateKind::Closed {
                CheckOutcome::degraded(format!("the pool circuit breaker is {state}"))
            } else {
                CheckOutcome::healthy()
            };
            let outcome = outcome.with_details(serde_json::json!({
                "available_services": available,
                "known_services": snapshot.len(),
                "stale": snapshot.is_stale(),
            }));
            async move { outcome }
        })),
    )
}

/// The active health checker, probing every discovered instance.
pub(super) fn health_checker(
    settings: &Settings,
    client: UpstreamClient,
    health: &Arc<HealthTracker>,
    discovery: &Arc<DiscoveryClient>,
) -> CheckerHandle {
    let probe = Arc::new(
        HttpProbe::new(client, settings.health_check_path.clone())
            .with_timeout(settings.health.timeout),
    );
    let checker = ActiveHealthChecker::new(Arc::clone(health), probe);
    let discovery = Arc::clone(discovery);
    checker.spawn(move || {
        discovery
            .snapshot()
            .instances()
            .iter()
            .map(|i| ProbeTarget::new(i.url.clone(), i.url.clone()))
            .collect()
    })
}

/// The hook the health tracker calls for every change of an instance's health, whether an
/// active check or real traffic caused it: a WARN line and a history row.
pub(super) fn health_hook(
    discovery: &Arc<DiscoveryClient>,
    history: Option<&Arc<History>>,
) -> HealthHook {
    let (history, known) = (history.cloned(), Arc::clone(discovery));
    Arc::new(move |url: &str, t: &HealthTransition| {
        tracing::warn!(instance = url, from = %t.from, to = %t.to, reason = %t.reason, "instance health changed");
        if let Some(history) = &history {
            let at_ms = resilience_core::clock::unix_millis(std::time::SystemTime::now());
            let error = (t.to != InstanceStatus::Healthy).then(|| t.reason.clone());
            let id = records::instance_id(&known, url);
            history.record(records::health(id, t.to, at_ms, error, true));
        }
    })
}

/// `database` (non-critical: the gateway answers without its history): the history
/// database answers a round trip and takes the writer's batches.
/// The database check's round trip at most.
const DATABASE_PING_TIMEOUT: Duration = Duration::from_millis(800);

fn database_check(history: &Arc<History>) -> impl HealthCheck + use<> {
    let history = Arc::clone(history);
    FnCheck::new("database", false, move || {
        let history = Arc::clone(&history);
        async move {
            // Within the composite's deadline for a check, so that a hung database reads
            // as degraded, not as a timed-out check.
            let ping = history.ping(DATABASE_PING_TIMEOUT).await;
            let status = history.status();
            match (ping, status.up && status.migrated) {
                (Ok(()), true) => CheckOutcome::healthy(),
                (Ok(()), false) => CheckOutcome::degraded("the history writer is catching up"),
                (Err(_), _) => CheckOutcome::degraded(
                    "the history database does not answer; requests are served, history rows \
                     wait in the queue",
                ),
            }
            .with_details(serde_json::json!({
                "engine": status.engine,
                "queued": status.queued,
            }))
        }
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
