//! Settings: the seed's environment variables, each also a flag, plus an optional TOML file
//! for what variables express badly (timeouts, retry policy, breakers, cache, health).
//! Everything is validated at once at start; every problem names its setting.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use llm_api::FieldError;
use resilience_core::breaker::BreakerConfig;
use resilience_core::health::HealthCheckConfig;
use resilience_core::retry::{BudgetConfig, RetryPolicy};
use serde::Deserialize;

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
        }
    }
}

impl Default for InstanceBreakerSection {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
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
        problems
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
}
