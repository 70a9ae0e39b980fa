//! Settings: the seed's environment variables, each also a flag ([`args`]), plus an
//! optional TOML file for what variables express badly ([`file`]: timeouts, retry policy,
//! breakers, cache, health, model [`routes`]). [`validate`] turns them into one typed
//! [`Settings`] at start, reporting every problem at once, each naming its variable or key;
//! [`breaker`] holds the breaker keys and how their sections stack; [`limits`] the rate
//! limits' store and tiers.

pub mod args;
pub mod breaker;
pub mod file;
pub mod limits;
pub mod routes;
pub mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use http_edge::security::CorsOrigins;
use llm_api::FieldError;
use llm_api::limits::InputLimits;
use resilience_core::breaker::BreakerConfig;
use resilience_core::health::HealthCheckConfig;
use resilience_core::registry::Instance;
use resilience_core::retry::{BudgetConfig, RetryPolicy};

pub use args::Args;
pub use file::TiersSection;
pub use routes::{DEFAULT_ROUTE, EndpointKey, RouteSpec, Target, endpoint_key};

use crate::pool::EndpointSpec;

/// Everything the gateway runs with, typed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `HOST`.
    pub host: IpAddr,
    /// `PORT` (0 picks a free one).
    pub port: u16,
    /// `REDIS_URL`: the registry and the shared response cache, when set.
    pub redis_url: Option<String>,
    /// `LLM_SERVICE_URLS`, parsed.
    pub static_instances: Vec<Instance>,
    /// `MAX_CONCURRENT_REQUESTS`.
    pub max_concurrent_requests: usize,
    /// `REQUEST_TIMEOUT`: the whole-request bound.
    pub request_timeout: Duration,
    /// One try's bound (`PER_TRY_TIMEOUT_MS`, else `per_try_timeout_ms`).
    pub per_try_timeout: Duration,
    /// Streams: the longest wait for the first token.
    pub first_token_timeout: Duration,
    /// Streams: the longest silence between events.
    pub idle_timeout: Duration,
    /// Streams: continuations of one broken stream at most (`STREAM_MAX_CONTINUATIONS`).
    pub max_continuations: u32,
    /// The longest `Retry-After` waited for within a request.
    pub max_retry_after: Duration,
    /// The bounds of a request's values (`MAX_TOKENS`, `MAX_MODEL_CHARS`, `MAX_MESSAGES`,
    /// `MAX_PROMPT_CHARS`, `MAX_CHOICES`).
    pub limits: InputLimits,
    /// How long a registered instance outlives its registry entry.
    pub registry_grace: Duration,
    /// `DISCOVERY_REFRESH_MS`.
    pub discovery_refresh: Duration,
    /// `DRAIN_TIMEOUT_MS`.
    pub drain_timeout: Duration,
    /// Connections and request bodies (`MAX_CONNECTIONS`, `HEADER_READ_TIMEOUT_MS`, …).
    pub edge: http_edge::EdgeLimits,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `CORS_ALLOW_ORIGINS`: who may call from a browser page of another origin.
    pub cors: CorsOrigins,
    /// Active health checks (`HEALTH_CHECK_INTERVAL_MS`, `[health]`).
    pub health: HealthCheckConfig,
    /// `HEALTH_CHECK_PATH`.
    pub health_check_path: String,
    /// Retries across instances.
    pub retry: RetryPolicy,
    /// The retry budget of each target.
    pub budget: BudgetConfig,
    /// Every breaker.
    pub breakers: Breakers,
    /// The response cache.
    pub cache: CacheSettings,
    /// The fallback tiers that may answer.
    pub tiers: TiersSection,
    /// The routes, `default` included.
    pub routes: Vec<RouteSpec>,
    /// Whether each pool and endpoint continues an assistant prefill.
    pub prefill: routes::PrefillModes,
    /// `AUTH_MODE` and the credentials it accepts.
    pub auth: crate::auth::AuthSettings,
    /// `ADMIN_ALLOW`: the networks that may call `/admin/*`.
    pub admin_allow: crate::layers::admin_guard::AdminAllow,
    /// `PII_REDACTION`.
    pub pii: crate::pii::PiiMode,
    /// Rate limits: store, failure mode, tiers.
    pub rate_limits: limits::RateLimitSettings,
    /// The history database and its writer.
    pub history: HistorySettings,
}

/// Where the history goes and how it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct HistorySettings {
    /// The database (`Off`: no history).
    pub location: history::Location,
    /// Queue, batches, deadlines, retention.
    pub writer: history::WriterSettings,
    /// Between two samples of every instance's health (`None`: changes only).
    pub sample_interval: Option<Duration>,
}

/// The breakers' settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakers {
    /// The pool breaker in front of the primary pool (the lab's "circuit breaker").
    pub pool: BreakerConfig,
    /// The instance breakers of a pool with no settings of its own.
    pub instance: BreakerConfig,
    /// Tier → the instance breakers of that pool.
    pub by_pool: BTreeMap<String, BreakerConfig>,
    /// Endpoint model → its breaker.
    pub by_endpoint: BTreeMap<EndpointKey, BreakerConfig>,
}

impl Breakers {
    /// The instance breakers of the pool of `tier`.
    pub fn for_pool(&self, tier: &str) -> &BreakerConfig {
        self.by_pool.get(tier).unwrap_or(&self.instance)
    }

    /// The breaker of `endpoint`.
    pub fn for_endpoint(&self, endpoint: &EndpointSpec) -> &BreakerConfig {
        self.by_endpoint
            .get(&endpoint_key(endpoint))
            .unwrap_or(&self.instance)
    }
}

/// `[cache]`, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a learned answer is kept.
    pub ttl: Duration,
    /// Learned answers kept at most.
    pub capacity: usize,
    /// Bytes the learned answers of the in-process cache take at most (`CACHE_MAX_BYTES`).
    pub max_bytes: usize,
    /// Bytes of the largest answer cached, in process and in Redis
    /// (`CACHE_MAX_ENTRY_BYTES`).
    pub max_entry_bytes: usize,
    /// Seeded answers to common prompts; the shipped ones when `None`.
    pub seed_file: Option<PathBuf>,
}

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// As `LOG_FORMAT` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pretty => "pretty",
            Self::Json => "json",
        }
    }
}

impl Settings {
    /// The settings from parsed `args` (flags and variables), the file they name, and the
    /// process environment for the API keys routes name; the error lists every problem
    /// with its variable or key.
    pub fn load(args: &Args) -> Result<Self, Vec<FieldError>> {
        validate::settings(args, &|name| std::env::var(name).ok())
    }

    /// The settings from `args` as on the command line and `env` (each variable as its
    /// flag, and the API keys routes name), without touching the process environment.
    pub fn from_sources<I, T>(args: I, env: &[(&str, &str)]) -> Result<Self, Vec<FieldError>>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString>,
    {
        let variables: Vec<(&str, &str)> = env
            .iter()
            .copied()
            .filter(|(name, _)| is_variable(name))
            .collect();
        let args = Args::from_sources(args, &variables).map_err(|e| vec![e])?;
        let lookup = |name: &str| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        validate::settings(&args, &lookup)
    }

    /// Seconds a client is told to wait when nothing answered: the pool breaker's recovery
    /// timeout, rounded up.
    pub fn retry_after_s(&self) -> u64 {
        let recovery = self.breakers.pool.recovery_timeout;
        recovery.as_secs() + u64::from(recovery.subsec_nanos() > 0)
    }
}

/// Whether `name` is one of the gateway's variables (each also a flag).
fn is_variable(name: &str) -> bool {
    use clap::CommandFactory;
    Args::command()
        .get_arguments()
        .any(|a| a.get_env().is_some_and(|e| e == name))
}
