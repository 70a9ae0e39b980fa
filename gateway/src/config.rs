//! Settings: the seed's environment variables, each also a flag, plus an optional TOML file
//! for what variables express badly (timeouts, retry policy, breakers, cache, health, model
//! routes).
//! Everything is validated at once at start; every problem names its setting.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use llm_api::FieldError;
use resilience_core::breaker::BreakerConfig;
use resilience_core::health::HealthCheckConfig;
use resilience_core::retry::{BudgetConfig, RetryPolicy};
use serde::Deserialize;

use crate::pool::EndpointSpec;
use crate::upstream::{ApiKey, Protocol};

/// The API gateway in front of the LLM services.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about)]
pub struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Redis for the service registry and the response cache; unset: static list only.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// PostgreSQL URL (accepted for the lab's compose file; persistence is not wired yet).
    #[arg(long, env = "POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// Database URL, `postgres://…` or `sqlite://PATH` (accepted; persistence not wired yet).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Failed requests in a row that open the pool breaker.
    #[arg(long, env = "CIRCUIT_BREAKER_FAILURE_THRESHOLD", default_value_t = 5)]
    pub circuit_breaker_failure_threshold: u32,
    /// Seconds the pool breaker stays OPEN before probing.
    #[arg(long, env = "CIRCUIT_BREAKER_RECOVERY_TIMEOUT", default_value_t = 30)]
    pub circuit_breaker_recovery_timeout: u64,
    /// Requests in flight above which new ones get an immediate 503.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 100)]
    pub max_concurrent_requests: usize,
    /// Seconds a whole request may take, retries and fallbacks included.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout: u64,
    /// Comma-separated base URLs of LLM services (static discovery).
    #[arg(long, env = "LLM_SERVICE_URLS", default_value = "")]
    pub llm_service_urls: String,
    /// Milliseconds between active health checks of each instance.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL_MS", default_value_t = 5000)]
    pub health_check_interval_ms: u64,
    /// Path probed on each instance.
    #[arg(long, env = "HEALTH_CHECK_PATH", default_value = "/health")]
    pub health_check_path: String,
    /// Milliseconds between registry refreshes.
    #[arg(long, env = "DISCOVERY_REFRESH_MS", default_value_t = 1000)]
    pub discovery_refresh_ms: u64,
    /// Milliseconds one try on one instance may take (overrides the file).
    #[arg(long, env = "PER_TRY_TIMEOUT_MS")]
    pub per_try_timeout_ms: Option<u64>,
    /// Streams: the longest wait for the first token (overrides `stream.first_token_timeout_ms`).
    #[arg(long, env = "STREAM_FIRST_TOKEN_TIMEOUT_MS")]
    pub stream_first_token_timeout_ms: Option<u64>,
    /// Streams: the longest silence between two events (overrides `stream.idle_timeout_ms`).
    #[arg(long, env = "STREAM_IDLE_TIMEOUT_MS")]
    pub stream_idle_timeout_ms: Option<u64>,
    /// Milliseconds to wait for in-flight requests at shutdown.
    #[arg(long, env = "DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
    /// Optional TOML file with the settings below the environment's.
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: String,
}

/// The TOML file (`config/gateway.example.toml` documents every key).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens: u32,
    /// Milliseconds one try may take.
    pub per_try_timeout_ms: u64,
    /// Milliseconds a registered instance stays in the pool after the registry stops
    /// listing it (a Redis restarted empty), while it passes its health checks.
    pub registry_grace_ms: u64,
    /// Retries across instances.
    pub retry: RetrySection,
    /// Per-instance breakers (outlier ejection).
    pub instance_breaker: InstanceBreakerSection,
    /// Health checks.
    pub health: HealthSection,
    /// Response cache.
    pub cache: CacheSection,
    /// Fallback tiers that may answer.
    pub tiers: TiersSection,
    /// Stream limits.
    pub stream: StreamSection,
    /// Public model name → ordered targets; `default` serves every other name.
    pub routes: BTreeMap<String, RouteSection>,
}

/// `[stream]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSection {
    /// The longest wait for a stream's first token; past it the try fails over.
    pub first_token_timeout_ms: u64,
    /// The longest silence between two events once a stream flows.
    pub idle_timeout_ms: u64,
}

/// `[routes.<model>]`: the targets of one public model name, tried in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// The first answers; the others are the secondary tier, in order.
    pub targets: Vec<TargetSection>,
    /// The route a request goes to when a target says its prompt exceeds the context
    /// (`context_length_exceeded`).
    #[serde(default)]
    pub context_fallback: Option<String>,
}

/// One target: `{ pool = "primary" }`, or an OpenAI-compatible endpoint
/// `{ url = "http://127.0.0.1:11434/v1", model = "llama3.1:8b", api_key_env = "KEY" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// The discovered instances of this tier (`primary`, `secondary`…).
    #[serde(default)]
    pub pool: Option<String>,
    /// An endpoint's base URL (up to `/v1`).
    #[serde(default)]
    pub url: Option<String>,
    /// The endpoint's model name.
    #[serde(default)]
    pub model: Option<String>,
    /// The environment variable holding the endpoint's API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The endpoint's id in metrics and `x-served-by` (default `model@url`).
    #[serde(default)]
    pub name: Option<String>,
}

/// The route every unrouted model name takes.
pub const DEFAULT_ROUTE: &str = "default";

/// A checked target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Discovered instances of a tier.
    Pool(String),
    /// An OpenAI-compatible endpoint.
    Endpoint(EndpointSpec),
}

/// A checked route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The public model name.
    pub name: String,
    /// In order.
    pub targets: Vec<Target>,
    /// Where `context_length_exceeded` goes.
    pub context_fallback: Option<String>,
}

/// `[retry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySection {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    /// First backoff ceiling, ms.
    pub base_delay_ms: u64,
    /// Backoff cap, ms.
    pub max_delay_ms: u64,
    /// Retries allowed per recent request.
    pub budget_ratio: f64,
    /// Retries per second always allowed.
    pub budget_min_per_sec: u32,
    /// The longest `Retry-After` waited for within a request; a longer one sends the
    /// request to the next target at once (and keeps the target out of rotation as asked).
    pub max_retry_after_ms: u64,
}

/// `[instance_breaker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstanceBreakerSection {
    /// Failures in a row that eject an instance.
    pub failure_threshold: u32,
    /// Milliseconds an instance stays ejected (at most the pool's recovery timeout).
    pub recovery_timeout_ms: Option<u64>,
}

/// `[health]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSection {
    /// Milliseconds one probe may take.
    pub timeout_ms: u64,
    /// Successes in a row that bring an instance back.
    pub healthy_threshold: u32,
    /// Failures in a row that take it out.
    pub unhealthy_threshold: u32,
}

/// `[cache]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSection {
    /// Seconds a learned answer is kept.
    pub ttl_s: u64,
    /// Learned answers kept at most.
    pub capacity: usize,
    /// Seeded answers to common prompts.
    pub seed_file: Option<PathBuf>,
}

/// `[tiers]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TiersSection {
    /// Instances tagged `secondary` answer when the primary pool cannot.
    pub secondary: bool,
    /// Earlier answers and seeded ones.
    pub cache: bool,
    /// A structured degraded answer.
    pub template: bool,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            max_tokens: 4096,
            per_try_timeout_ms: 10_000,
            registry_grace_ms: 15_000,
            retry: RetrySection::default(),
            instance_breaker: InstanceBreakerSection::default(),
            health: HealthSection::default(),
            cache: CacheSection::default(),
            tiers: TiersSection::default(),
            stream: StreamSection::default(),
            routes: BTreeMap::new(),
        }
    }
}

impl Default for StreamSection {
    fn default() -> Self {
        Self {
            first_token_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
        }
    }
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay_ms: 50,
            max_delay_ms: 1000,
            budget_ratio: 0.2,
            budget_min_per_sec: 5,
            max_retry_after_ms: 2000,
        }
    }
}

impl Default for InstanceBreakerSection {
    fn default() -> Self {
        Self {
            // Envoy's consecutive_5xx default: an instance failing 10 % of calls at random
            // (the lab's) must not be ejected for 30 s every minute under load.
            failure_threshold: 5,
            recovery_timeout_ms: None,
        }
    }
}

impl Default for HealthSection {
    fn default() -> Self {
        Self {
            timeout_ms: 2000,
            healthy_threshold: 1,
            // One failed probe takes an instance out: with the default 5 s interval a dead
            // instance leaves the pool within 5 s even without traffic (issue #4); under
            // traffic, passive signals and the instance breakers act sooner.
            unhealthy_threshold: 1,
        }
    }
}

impl Default for CacheSection {
    fn default() -> Self {
        Self {
            ttl_s: 3600,
            capacity: 1000,
            seed_file: None,
        }
    }
}

impl Default for TiersSection {
    fn default() -> Self {
        Self {
            secondary: true,
            cache: true,
            template: true,
        }
    }
}

/// Everything the gateway runs with, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// From the environment and flags.
    pub args: Args,
    /// From the file, or the defaults.
    pub file: FileConfig,
}

impl Config {
    /// Reads the file named by `args.config`, if any, and validates everything; the error
    /// lists every problem with its setting's name.
    pub fn load(args: Args) -> Result<Self, Vec<FieldError>> {
        let file = match &args.config {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    vec![FieldError::new(
                        "GATEWAY_CONFIG",
                        format!("cannot read {}: {e}", path.display()),
                    )]
                })?;
                toml::from_str(&text).map_err(|e| {
                    vec![FieldError::new(
                        "GATEWAY_CONFIG",
                        format!("{}: {e}", path.display()),
                    )]
                })?
            }
        };
        let config = Self { args, file };
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// Every problem, each naming its setting.
    pub fn problems(&self) -> Vec<FieldError> {
        let a = &self.args;
        let f = &self.file;
        let mut problems = Vec::new();
        let mut bad = |name: &str, why: &str| problems.push(FieldError::new(name, why));
        if a.circuit_breaker_failure_threshold == 0 {
            bad("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "must be at least 1");
        }
        if a.circuit_breaker_recovery_timeout == 0 || a.circuit_breaker_recovery_timeout > 86_400 {
            bad(
                "CIRCUIT_BREAKER_RECOVERY_TIMEOUT",
                "must be 1 to 86400 seconds",
            );
        }
        if a.max_concurrent_requests == 0 {
            bad("MAX_CONCURRENT_REQUESTS", "must be at least 1");
        }
        if a.request_timeout == 0 || a.request_timeout > 3600 {
            bad("REQUEST_TIMEOUT", "must be 1 to 3600 seconds");
        }
        if let Err(e) = resilience_core::registry::StaticRegistry::from_urls(
            resilience_core::registry::LLM_SERVICE,
            &a.llm_service_urls,
        ) {
            problems.push(FieldError::new("LLM_SERVICE_URLS", e.to_string()));
        }
        let mut bad = |name: &str, why: &str| problems.push(FieldError::new(name, why));
        if a.llm_service_urls.trim().is_empty() && a.redis_url.is_none() {
            bad(
                "LLM_SERVICE_URLS",
                "give LLM_SERVICE_URLS, REDIS_URL, or both: nothing to route to",
            );
        }
        if !(10..=3_600_000).contains(&a.health_check_interval_ms) {
            bad("HEALTH_CHECK_INTERVAL_MS", "must be 10 ms to an hour");
        }
        if !a.health_check_path.starts_with('/') {
            bad("HEALTH_CHECK_PATH", "must start with /");
        }
        if !(10..=3_600_000).contains(&a.discovery_refresh_ms) {
            bad("DISCOVERY_REFRESH_MS", "must be 10 ms to an hour");
        }
        if !matches!(a.log_format.as_str(), "pretty" | "json") {
            bad("LOG_FORMAT", "must be `pretty` or `json`");
        }
        if self.per_try_timeout().is_zero() {
            bad("per_try_timeout_ms", "must be above zero");
        }
        if f.health.timeout_ms == 0 {
            bad("health.timeout_ms", "must be above zero");
        }
        if f.cache.ttl_s == 0 {
            bad("cache.ttl_s", "must be above zero");
        }
        for e in self
            .pool_breaker()
            .problems()
            .into_iter()
            .chain(self.instance_breaker().problems())
        {
            problems.push(FieldError::new("breaker", e.to_string()));
        }
        if let Err(e) = self.retry_policy().validate() {
            problems.push(FieldError::new("retry", e.to_string()));
        }
        if let Err(e) = self.budget().validate() {
            problems.push(FieldError::new("retry", e.to_string()));
        }
        if let Err(e) = self.health_config().validate() {
            problems.push(FieldError::new("health", e.to_string()));
        }
        if self.first_token_timeout().is_zero() {
            problems.push(FieldError::new(
                "stream.first_token_timeout_ms",
                "must be above zero",
            ));
        }
        if self.idle_timeout().is_zero() {
            problems.push(FieldError::new(
                "stream.idle_timeout_ms",
                "must be above zero",
            ));
        }
        if let Err(mut route_problems) = self.routes_with(|name| std::env::var(name).ok()) {
            problems.append(&mut route_problems);
        }
        problems
    }

    /// Streams: the longest wait for the first token.
    pub fn first_token_timeout(&self) -> Duration {
        Duration::from_millis(
            self.args
                .stream_first_token_timeout_ms
                .unwrap_or(self.file.stream.first_token_timeout_ms),
        )
    }

    /// Streams: the longest silence between events.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(
            self.args
                .stream_idle_timeout_ms
                .unwrap_or(self.file.stream.idle_timeout_ms),
        )
    }

    /// The longest `Retry-After` waited for within a request.
    pub fn max_retry_after(&self) -> Duration {
        Duration::from_millis(self.file.retry.max_retry_after_ms)
    }

    /// The routes, checked, `default` included (the primary then the secondary pool when
    /// the file does not say); API keys read through `env`.
    pub fn routes(&self) -> Result<Vec<RouteSpec>, Vec<FieldError>> {
        self.routes_with(|name| std::env::var(name).ok())
    }

    fn routes_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<RouteSpec>, Vec<FieldError>> {
        let mut problems = Vec::new();
        let mut specs = Vec::new();
        let mut endpoints_seen: Vec<EndpointSpec> = Vec::new();
        let mut sections = self.file.routes.clone();
        sections
            .entry(DEFAULT_ROUTE.to_owned())
            .or_insert_with(|| RouteSection {
                targets: ["primary", "secondary"]
                    .map(|tier| TargetSection {
                        pool: Some(tier.to_owned()),
                        url: None,
                        model: None,
                        api_key_env: None,
                        name: None,
                    })
                    .to_vec(),
                context_fallback: None,
            });
        for (name, section) in &sections {
            let field = |what: &str| format!("routes.{name}{what}");
            if section.targets.is_empty() {
                problems.push(FieldError::new(
                    field(".targets"),
                    "needs at least one target",
                ));
            }
            let mut targets = Vec::new();
            for (i, target) in section.targets.iter().enumerate() {
                match check_target(target, &env) {
                    Ok(target) if targets.contains(&target) => problems.push(FieldError::new(
                        field(&format!(".targets[{i}]")),
                        "appears twice in the route",
                    )),
                    Ok(target) => targets.push(target),
                    Err(why) => {
                        problems.push(FieldError::new(field(&format!(".targets[{i}]")), why));
                    }
                }
            }
            for target in &targets {
                if let Target::Endpoint(endpoint) = target {
                    let model = endpoint_model(endpoint);
                    if let Some(earlier) = endpoints_seen
                        .iter()
                        .find(|e| e.url == endpoint.url && endpoint_model(e) == model)
                        && *earlier != *endpoint
                    {
                        problems.push(FieldError::new(
                            field(".targets"),
                            format!(
                                "{model} at {} is configured twice with a different name or key; \
                                 one endpoint model has one breaker, name and key",
                                endpoint.url
                            ),
                        ));
                    } else {
                        endpoints_seen.push(endpoint.clone());
                    }
                }
            }
            if let Some(other) = &section.context_fallback
                && (other == name || !sections.contains_key(other))
            {
                problems.push(FieldError::new(
                    field(".context_fallback"),
                    format!("`{other}` is not another route"),
                ));
            }
            specs.push(RouteSpec {
                name: name.clone(),
                targets,
                context_fallback: section.context_fallback.clone(),
            });
        }
        if problems.is_empty() {
            Ok(specs)
        } else {
            Err(problems)
        }
    }

    /// Largest `max_tokens` a request may ask for.
    pub fn file_max_tokens(&self) -> u32 {
        self.file.max_tokens
    }

    /// The whole-request bound.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.args.request_timeout)
    }

    /// One try's bound.
    pub fn per_try_timeout(&self) -> Duration {
        Duration::from_millis(
            self.args
                .per_try_timeout_ms
                .unwrap_or(self.file.per_try_timeout_ms),
        )
    }

    /// The pool breaker the lab grades: N failed requests in a row, OPEN for exactly the
    /// recovery timeout (no backoff), a few probes.
    pub fn pool_breaker(&self) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: self.args.circuit_breaker_failure_threshold,
            recovery_timeout: Duration::from_secs(self.args.circuit_breaker_recovery_timeout),
            half_open_max_calls: 1,
            success_threshold: 1,
            ..BreakerConfig::default()
        }
    }

    /// Per-instance breakers: ejection never longer than the pool's recovery timeout.
    pub fn instance_breaker(&self) -> BreakerConfig {
        let pool = Duration::from_secs(self.args.circuit_breaker_recovery_timeout);
        let ejection = self
            .file
            .instance_breaker
            .recovery_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(pool)
            .min(pool);
        BreakerConfig {
            failure_threshold: self.file.instance_breaker.failure_threshold,
            recovery_timeout: ejection,
            half_open_max_calls: 1,
            success_threshold: 1,
            ..BreakerConfig::default()
        }
    }

    /// Retries across instances.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.file.retry.max_attempts,
            base_delay: Duration::from_millis(self.file.retry.base_delay_ms),
            max_delay: Duration::from_millis(self.file.retry.max_delay_ms),
        }
    }

    /// The retry budget.
    pub fn budget(&self) -> BudgetConfig {
        BudgetConfig {
            ratio: self.file.retry.budget_ratio,
            min_per_sec: self.file.retry.budget_min_per_sec,
            window: Duration::from_secs(10),
        }
    }

    /// Active health checks; a probe never takes longer than the interval between them.
    pub fn health_config(&self) -> HealthCheckConfig {
        HealthCheckConfig {
            interval: Duration::from_millis(self.args.health_check_interval_ms),
            timeout: Duration::from_millis(
                self.file
                    .health
                    .timeout_ms
                    .min(self.args.health_check_interval_ms),
            ),
            healthy_threshold: self.file.health.healthy_threshold,
            unhealthy_threshold: self.file.health.unhealthy_threshold,
            passive_failure_threshold: 5,
        }
    }

    /// The settings from `args` (for tests: `Args::parse_from`).
    pub fn from_args<I, T>(args: I) -> Result<Self, Vec<FieldError>>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = Args::try_parse_from(
            std::iter::once("gateway".into()).chain(args.into_iter().map(Into::into)),
        )
        .map_err(|e| vec![FieldError::new("args", e.to_string())])?;
        Self::load(args)
    }
}

/// The upstream model of an endpoint.
fn endpoint_model(endpoint: &EndpointSpec) -> &str {
    match &endpoint.protocol {
        Protocol::OpenAi { model, .. } => model,
        Protocol::Lab => "",
    }
}

/// A target section as a [`Target`], or why it is not one.
fn check_target(
    target: &TargetSection,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Target, String> {
    match (&target.pool, &target.url) {
        (Some(pool), None) => {
            if target.model.is_some() || target.api_key_env.is_some() || target.name.is_some() {
                return Err("a pool target takes only `pool`".to_owned());
            }
            if pool.trim().is_empty() {
                return Err("`pool` must name a tier".to_owned());
            }
            Ok(Target::Pool(pool.clone()))
        }
        (None, Some(url)) => {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("`url`: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err("`url` must be an http(s) URL with a host".to_owned());
            }
            let Some(model) = target.model.clone().filter(|m| !m.trim().is_empty()) else {
                return Err("an endpoint needs `model`, the name the endpoint knows".to_owned());
            };
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err("`url` must not hold credentials: use `api_key_env`".to_owned());
            }
            let api_key = match &target.api_key_env {
                None => None,
                Some(var) => match env(var) {
                    Some(key) if !key.is_empty() => {
                        if reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).is_err()
                        {
                            return Err(format!(
                                "`api_key_env`: ${var} holds characters a header cannot carry"
                            ));
                        }
                        Some(ApiKey::new(key))
                    }
                    _ => return Err(format!("`api_key_env`: ${var} is not set")),
                },
            };
            let url = url.trim_end_matches('/').to_owned();
            // The default id names the host and path only: never a query that may hold a key.
            let shown = format!(
                "{}://{}{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default(),
                parsed.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + parsed.path().trim_end_matches('/');
            Ok(Target::Endpoint(EndpointSpec {
                id: target
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{model}@{shown}")),
                url,
                protocol: Protocol::OpenAi { model, api_key },
            }))
        }
        _ => Err("give either `pool` or `url` (with `model`)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_defaults_apply() {
        let c = Config::from_args(["--llm-service-urls", "http://127.0.0.1:8001"]).unwrap();
        assert_eq!(c.pool_breaker().failure_threshold, 5);
        assert_eq!(c.pool_breaker().recovery_timeout, Duration::from_secs(30));
        assert_eq!(c.args.max_concurrent_requests, 100);
        assert_eq!(c.request_timeout(), Duration::from_secs(30));
        assert!(
            c.pool_breaker().reopen_backoff.is_none(),
            "OPEN for exactly the timeout"
        );
    }

    #[test]
    fn every_problem_names_its_setting() {
        let problems = Config::from_args([
            "--llm-service-urls",
            "ftp://x",
            "--circuit-breaker-failure-threshold",
            "0",
            "--max-concurrent-requests",
            "0",
            "--health-check-path",
            "health",
        ])
        .unwrap_err();
        let names: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for name in [
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
            "MAX_CONCURRENT_REQUESTS",
            "LLM_SERVICE_URLS",
            "HEALTH_CHECK_PATH",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
    }

    #[test]
    fn something_to_route_to_is_required() {
        let problems = Config::from_args::<_, &str>([]).unwrap_err();
        assert_eq!(problems[0].field, "LLM_SERVICE_URLS");
        assert!(Config::from_args(["--redis-url", "redis://127.0.0.1:6379"]).is_ok());
    }

    #[test]
    fn the_example_file_parses_to_the_defaults() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/gateway.example.toml"
        );
        let c = Config::from_args(["--llm-service-urls", "http://a:1", "--config", path]).unwrap();
        let defaults = FileConfig::default();
        assert_eq!(c.file.retry.max_attempts, defaults.retry.max_attempts);
        assert_eq!(c.file.per_try_timeout_ms, defaults.per_try_timeout_ms);
        assert_eq!(c.file.cache.capacity, defaults.cache.capacity);
        assert!(c.file.tiers.template);
    }

    #[test]
    fn a_file_with_an_unknown_key_is_refused_naming_it() {
        let path = std::env::temp_dir().join(format!("gateway-{}.toml", std::process::id()));
        std::fs::write(&path, "[retry]\nmax_atempts = 2\n").unwrap();
        let problems = Config::from_args([
            "--llm-service-urls",
            "http://a:1",
            "--config",
            path.to_str().unwrap(),
        ])
        .unwrap_err();
        std::fs::remove_file(&path).ok();
        assert_eq!(problems[0].field, "GATEWAY_CONFIG");
        assert!(
            problems[0].message.contains("max_atempts"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn instance_ejection_never_outlasts_the_pool_timeout() {
        let c = Config::from_args([
            "--llm-service-urls",
            "http://a:1",
            "--circuit-breaker-recovery-timeout",
            "2",
        ])
        .unwrap();
        assert_eq!(
            c.instance_breaker().recovery_timeout,
            Duration::from_secs(2)
        );
    }

    fn with_routes(toml: &str) -> Config {
        let path = std::env::temp_dir().join(format!(
            "gateway-routes-{}-{}.toml",
            std::process::id(),
            toml.len()
        ));
        std::fs::write(&path, toml).unwrap();
        let args = Args::try_parse_from([
            "gateway",
            "--llm-service-urls",
            "http://a:1",
            "--config",
            path.to_str().unwrap(),
        ])
        .unwrap();
        let file = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).ok();
        Config { args, file }
    }

    #[test]
    fn without_routes_default_is_the_primary_then_the_secondary_pool() {
        let c = Config::from_args(["--llm-service-urls", "http://a:1"]).unwrap();
        let routes = c.routes().unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].name, DEFAULT_ROUTE);
        assert_eq!(
            routes[0].targets,
            vec![
                Target::Pool("primary".into()),
                Target::Pool("secondary".into())
            ]
        );
    }

    #[test]
    fn an_endpoint_target_takes_its_model_and_key_from_the_environment() {
        let c = with_routes(
            r#"
            [routes.gpt-4o]
            targets = [
              { url = "http://127.0.0.1:11434/v1/", model = "llama3.1:8b", api_key_env = "K" },
              { pool = "primary" },
            ]
            context_fallback = "default"
            "#,
        );
        let routes = c
            .routes_with(|name| (name == "K").then(|| "sk-1".to_owned()))
            .unwrap();
        let route = routes.iter().find(|r| r.name == "gpt-4o").unwrap();
        let Target::Endpoint(endpoint) = &route.targets[0] else {
            panic!("{:?}", route.targets)
        };
        assert_eq!(endpoint.url, "http://127.0.0.1:11434/v1");
        assert_eq!(endpoint.id, "llama3.1:8b@http://127.0.0.1:11434/v1");
        assert_eq!(
            endpoint.protocol,
            Protocol::OpenAi {
                model: "llama3.1:8b".into(),
                api_key: Some(ApiKey::new("sk-1"))
            }
        );
        assert!(
            routes.iter().any(|r| r.name == DEFAULT_ROUTE),
            "default is added"
        );
    }

    #[test]
    fn every_route_mistake_names_its_place() {
        let c = with_routes(
            r#"
            [routes.a]
            targets = [
              { url = "http://x/v1" },
              { pool = "primary", url = "http://x/v1", model = "m" },
              { url = "ftp://x", model = "m" },
              { url = "http://x/v1", model = "m", api_key_env = "NOT_SET_ANYWHERE" },
              { pool = "primary" },
              { pool = "primary" },
            ]
            context_fallback = "nowhere"
            [routes.b]
            targets = []
            "#,
        );
        let problems = c.routes_with(|_| None).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for field in [
            "routes.a.targets[0]",
            "routes.a.targets[1]",
            "routes.a.targets[2]",
            "routes.a.targets[3]",
            "routes.a.targets[5]",
            "routes.a.context_fallback",
            "routes.b.targets",
        ] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }
        let key = problems
            .iter()
            .find(|p| p.field == "routes.a.targets[3]")
            .unwrap();
        assert!(key.message.contains("NOT_SET_ANYWHERE"), "{}", key.message);

        let c = with_routes(
            r#"
            [routes.a]
            targets = [{ url = "http://x/v1?key=1", model = "m" }, { url = "http://u:p@x/v1", model = "m" }]
            [routes.b]
            targets = [{ url = "http://x/v1?key=1", model = "m", name = "other-name" }]
            "#,
        );
        let problems = c.routes_with(|_| None).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(
            fields.contains(&"routes.a.targets[1]"),
            "credentials in a URL: {fields:?}"
        );
        assert!(
            fields.contains(&"routes.b.targets"),
            "one endpoint model, two names: {fields:?}"
        );
        let ok = with_routes(
            "[routes.a]\ntargets = [{ url = \"http://x:81/v1?key=1\", model = \"m\" }]\n",
        );
        let routes = ok.routes_with(|_| None).unwrap();
        let route = routes.iter().find(|r| r.name == "a").unwrap();
        let Target::Endpoint(endpoint) = &route.targets[0] else {
            panic!()
        };
        assert_eq!(
            endpoint.id, "m@http://x:81/v1",
            "no query in ids, logs or metrics"
        );
    }

    #[test]
    fn stream_limits_come_from_the_file_or_the_environment() {
        let c = Config::from_args([
            "--llm-service-urls",
            "http://a:1",
            "--stream-idle-timeout-ms",
            "250",
        ])
        .unwrap();
        assert_eq!(c.idle_timeout(), Duration::from_millis(250));
        assert_eq!(c.first_token_timeout(), Duration::from_secs(10));
        assert_eq!(c.max_retry_after(), Duration::from_secs(2));
    }
}
