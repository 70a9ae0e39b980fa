//! What the handlers share ([`Gateway`]), built once from the settings by
//! [`Gateway::start`] in named steps (`wiring`): discovery, the pool breaker, the pools and
//! endpoint targets, the response cache, the routes and their fallback chains, the health
//! checks, the active health checker; and the transition log.

mod wiring;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use history::History;
use llm_api::generate::DEFAULT_MAX_TOKENS;
use resilience_core::breaker::{Breaker, StateKind, Transition, TransitionHook, TransitionReason};
use resilience_core::clock::{SharedClock, SystemClock, unix_millis};
use resilience_core::discovery::{DiscoveryClient, DiscoveryTask};
use resilience_core::health::{CheckerHandle, CompositeHealthChecker, HealthTracker};
use serde::Serialize;

use crate::auth::Authenticator;
use crate::cache::AnswerCache;
use crate::config::Settings;
use crate::layers::admin_guard::AdminAllow;
use crate::metrics::Metrics;
use crate::pii::Redactor;
use crate::pool::Pool;
use crate::ratelimit::Limits;
use crate::records;
use crate::routing::Routes;
use crate::upstream::UpstreamClient;

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
    /// Requests in flight (holding a slot: read, validated, being answered).
    pub in_flight: Arc<AtomicUsize>,
    /// The open client connections, under the connection limits.
    pub connections: Arc<http_edge::Connections>,
    /// The request bodies being read, under their own budget.
    pub uploads: Arc<http_edge::Uploads>,
    /// Connections and slots against their caps.
    capacity: wiring::Capacity,
    /// False once shutdown began.
    pub accepting: AtomicBool,
    /// When the gateway started.
    pub started: Instant,
    /// The active health checker's loop.
    pub checker: CheckerHandle,
    /// The registry refresh loop, when a registry is configured.
    pub discovery_task: Option<DiscoveryTask>,
    /// Who may call (`AUTH_MODE`).
    pub auth: Arc<Authenticator>,
    /// Callers' rate limits.
    pub limits: Arc<Limits>,
    /// `ADMIN_ALLOW`, for the admin guard.
    pub admin_allow: Arc<AdminAllow>,
    /// Masks PII in prompts (`PII_REDACTION=mask`).
    pub redactor: Redactor,
    /// The history database's writer (`None`: `DATABASE_URL=off`).
    pub history: Option<Arc<History>>,
}

impl Gateway {
    /// Builds and starts everything (discovery refresh, health checks); must run inside a
    /// Tokio runtime. Each step is a function of `wiring`.
    pub async fn start(settings: Settings) -> anyhow::Result<Arc<Self>> {
        let settings = Arc::new(settings);
        let clock: SharedClock = SystemClock::shared();
        let (discovery, discovery_task) = wiring::discovery(&settings).await?;
        let history = History::start(&settings.history.location, settings.history.writer.clone())?;
        let transitions = Arc::new(Mutex::new(VecDeque::with_capacity(TRANSITIONS_KEPT)));
        let hook = transition_log(
            Arc::clone(&transitions),
            Arc::clone(&clock),
            history.clone(),
        );
        let pool_breaker = wiring::pool_breaker(&settings, &clock, &hook)?;
        let health = Arc::new(
            HealthTracker::new(settings.health, Arc::clone(&clock))?
                .with_hook(wiring::health_hook(&discovery, history.as_ref())),
        );
        let client = UpstreamClient::new()?;
        let metrics = Arc::new(Metrics::new()?);
        if let Some(history) = &history {
            metrics.register_history(history.metrics())?;
        }
        let factory = wiring::PoolFactory {
            settings: Arc::clone(&settings),
            discovery: Arc::clone(&discovery),
            health: Arc::clone(&health),
            client: client.clone(),
            clock: Arc::clone(&clock),
            hook,
            metrics: Arc::clone(&metrics),
        };
        let targets = wiring::targets(&factory, &pool_breaker)?;
        let cache = Arc::new(AnswerCache::new(
            &settings.cache,
            settings.redis_url.as_deref(),
            Arc::clone(&clock),
        )?);
        let routes = wiring::routes(&settings, &targets.by_route, &cache)?;
        let connections = http_edge::Connections::new(settings.edge);
        let uploads = Arc::new(http_edge::Uploads::new(settings.edge.body));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let capacity = wiring::Capacity {
            connections: Arc::clone(&connections),
            in_flight: Arc::clone(&in_flight),
            max_in_flight: settings.max_concurrent_requests,
        };
        let admin_allow = Arc::new(settings.admin_allow.clone());
        let auth = Arc::new(Authenticator::with_clock(
            &settings.auth,
            Arc::clone(&clock),
        ));
        let limits = Arc::new(Limits::new(
            &settings.rate_limits,
            settings.redis_url.as_deref(),
            auth.enabled(),
            Arc::clone(&clock),
        )?);
        let checks = wiring::checks(
            &settings,
            &limits,
            &discovery,
            &health,
            &pool_breaker,
            capacity.clone(),
            history.as_ref(),
        )?;
        let checker = wiring::health_checker(&settings, client, &health, &discovery);
        if let (Some(history), Some(every)) = (&history, settings.history.sample_interval) {
            records::spawn_sampler(history, Arc::clone(&discovery), Arc::clone(&health), every);
        }
        Ok(Arc::new(Self {
            settings,
            discovery,
            health,
            primary: targets.primary,
            secondary: targets.secondary,
            pools: targets.pools,
            endpoints: targets.endpoints,
            pool_breaker,
            routes,
            cache,
            metrics,
            checks,
            transitions,
            in_flight,
            connections,
            uploads,
            capacity,
            accepting: AtomicBool::new(true),
            started: Instant::now(),
            checker,
            discovery_task,
            auth,
            limits,
            admin_allow,
            redactor: Redactor::new(),
            history,
        }))
    }

    /// Every connection or every in-flight slot taken: a load balancer should send
    /// elsewhere (`/ready` answers 503, `/health` says degraded).
    pub fn saturated(&self) -> Option<&'static str> {
        self.capacity.saturated()
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

/// A hook that keeps the last transitions for `/admin/status` and records each in the
/// history.
fn transition_log(
    log: Arc<Mutex<VecDeque<TransitionEntry>>>,
    clock: SharedClock,
    history: Option<Arc<History>>,
) -> TransitionHook {
    Arc::new(move |name: &str, t: &Transition| {
        let at_ms = unix_millis(clock.wall_at(t.at));
        if let Some(history) = &history {
            history.record(records::breaker(name, t, at_ms));
        }
        let entry = TransitionEntry {
            breaker: name.to_owned(),
            from: t.from,
            to: t.to,
            at_ms,
            reason: t.reason,
        };
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() == TRANSITIONS_KEPT {
            log.pop_front();
        }
        log.push_back(entry);
    })
}

#[cfg(test)]
mod tests;
