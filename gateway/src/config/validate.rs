//! From the sources to [`Settings`]: every value typed and checked once, every problem
//! collected with the variable or TOML key it concerns, and the precedence between them
//! (a variable or flag wins over the file, the file over the built-in defaults).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use llm_api::FieldError;
use resilience_core::breaker::BreakerConfig;
use resilience_core::error::Error;
use resilience_core::health::HealthCheckConfig;
use resilience_core::registry::{LLM_SERVICE, StaticRegistry};
use resilience_core::retry::{BudgetConfig, RetryPolicy};

use super::args::Args;
use super::breaker::{self, BreakerSection, Layer, Source};
use super::file::{self, FileConfig};
use super::routes;
use super::{Breakers, CacheSettings, LogFormat, Settings};

/// Reads an environment variable (the API keys `api_key_env` names).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Problems found so far, each naming its variable or key.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    /// Notes that `field` is wrong, and why.
    pub fn push(&mut self, field: impl Into<String>, why: impl Into<String>) {
        let problem = FieldError::new(field, why);
        if !self.0.contains(&problem) {
            self.0.push(problem);
        }
    }

    /// A library's problem, under `field`.
    fn core(&mut self, field: &str, error: &Error) {
        let why = match error {
            Error::InvalidConfig { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        self.push(field, why);
    }

    /// `raw` as a `T`, or `None` with a problem saying `raw` is not `what`.
    pub fn parse<T: FromStr>(&mut self, field: &str, raw: &str, what: &str) -> Option<T> {
        match raw.trim().parse() {
            Ok(value) => Some(value),
            Err(_) => {
                self.push(field, format!("`{raw}` is not {what}"));
                None
            }
        }
    }

    /// Every problem.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

const COUNT: &str = "a whole number";

/// Everything from `args` (the flags and variables), the file it names and `env`, checked.
pub fn settings(args: &Args, env: Env<'_>) -> Result<Settings, Vec<FieldError>> {
    let mut p = Problems::default();
    let file = match &args.config {
        Some(path) => FileConfig::read(path, &mut p),
        None => FileConfig::default(),
    };
    let listen = args.listen().map_err(|found| {
        for problem in found {
            p.push(problem.field, problem.message);
        }
    });
    let count = |p: &mut Problems, name: &str, raw: &str| p.parse::<u64>(name, raw, COUNT);
    let optional = |p: &mut Problems, name: &str, raw: &Option<String>| {
        raw.as_ref().and_then(|raw| count(p, name, raw))
    };

    let max_concurrent_requests = p
        .parse::<usize>(
            "MAX_CONCURRENT_REQUESTS",
            &args.max_concurrent_requests,
            COUNT,
        )
        .unwrap_or(1);
    if max_concurrent_requests == 0 {
        p.push("MAX_CONCURRENT_REQUESTS", "must be at least 1");
    }
    let request_timeout = count(&mut p, "REQUEST_TIMEOUT", &args.request_timeout).unwrap_or(1);
    if !(1..=3600).contains(&request_timeout) {
        p.push("REQUEST_TIMEOUT", "must be 1 to 3600 seconds");
    }
    let static_instances = match StaticRegistry::from_urls(LLM_SERVICE, &args.llm_service_urls) {
        Ok(registry) => registry.instances().to_vec(),
        Err(e) => {
            p.push("LLM_SERVICE_URLS", e.to_string());
            Vec::new()
        }
    };
    if args.llm_service_urls.trim().is_empty() && args.redis_url.is_none() {
        p.push(
            "LLM_SERVICE_URLS",
            "give LLM_SERVICE_URLS, REDIS_URL, or both: nothing to route to",
        );
    }
    if let Some(url) = &args.redis_url
        && let Err(e) = redis::Client::open(url.as_str())
    {
        p.push("REDIS_URL", e.to_string());
    }
    let interval_ms = count(
        &mut p,
        "HEALTH_CHECK_INTERVAL_MS",
        &args.health_check_interval_ms,
    );
    let interval_ms = within(&mut p, "HEALTH_CHECK_INTERVAL_MS", interval_ms);
    if !args.health_check_path.starts_with('/') {
        p.push("HEALTH_CHECK_PATH", "must start with /");
    }
    let refresh_ms = count(&mut p, "DISCOVERY_REFRESH_MS", &args.discovery_refresh_ms);
    let refresh_ms = within(&mut p, "DISCOVERY_REFRESH_MS", refresh_ms);
    let drain_ms = count(&mut p, "DRAIN_TIMEOUT_MS", &args.drain_timeout_ms).unwrap_or(0);
    let log_format = match args.log_format.as_str() {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        _ => {
            p.push("LOG_FORMAT", "must be `pretty` or `json`");
            LogFormat::Pretty
        }
    };

    // A variable wins over its file key.
    let per_try = optional(&mut p, "PER_TRY_TIMEOUT_MS", &args.per_try_timeout_ms)
        .or(file.per_try_timeout_ms)
        .unwrap_or(file::PER_TRY_TIMEOUT_MS);
    if per_try == 0 {
        p.push("per_try_timeout_ms", "must be above zero");
    }
    let first_token = optional(
        &mut p,
        "STREAM_FIRST_TOKEN_TIMEOUT_MS",
        &args.stream_first_token_timeout_ms,
    )
    .unwrap_or(file.stream.first_token_timeout_ms);
    let first_token = above_zero(&mut p, "stream.first_token_timeout_ms", first_token);
    let idle = optional(
        &mut p,
        "STREAM_IDLE_TIMEOUT_MS",
        &args.stream_idle_timeout_ms,
    )
    .unwrap_or(file.stream.idle_timeout_ms);
    let idle = above_zero(&mut p, "stream.idle_timeout_ms", idle);

    let health = HealthCheckConfig {
        interval: Duration::from_millis(interval_ms),
        // A probe never takes longer than the interval between them.
        timeout: Duration::from_millis(file.health.timeout_ms.min(interval_ms)),
        healthy_threshold: file.health.healthy_threshold,
        unhealthy_threshold: file.health.unhealthy_threshold,
        passive_failure_threshold: 5,
    };
    if file.health.timeout_ms == 0 {
        p.push("health.timeout_ms", "must be above zero");
    }
    for problem in health.problems() {
        if let Error::InvalidConfig { setting, .. } = &problem
            && setting.ends_with("_threshold")
        {
            p.core(setting, &problem);
        }
    }
    let retry = RetryPolicy {
        max_attempts: file.retry.max_attempts,
        base_delay: Duration::from_millis(file.retry.base_delay_ms),
        max_delay: Duration::from_millis(file.retry.max_delay_ms),
    };
    if let Err(e) = retry.validate() {
        let field = match &e {
            Error::InvalidConfig { setting, .. } if setting == "retry.max_attempts" => {
                "retry.max_attempts"
            }
            _ => "retry.max_delay_ms",
        };
        p.core(field, &e);
    }
    let budget = BudgetConfig {
        ratio: file.retry.budget_ratio,
        min_per_sec: file.retry.budget_min_per_sec,
        window: Duration::from_secs(10),
    };
    if let Err(e) = budget.validate() {
        p.core("retry.budget_ratio", &e);
    }
    if file.cache.ttl_s == 0 {
        p.push("cache.ttl_s", "must be above zero");
    }

    let routes = routes::check(&file.routes, env, &mut p);
    let breakers = breakers(args, &file, &routes, &mut p);

    let problems = p.into_vec();
    let Ok((host, port)) = listen else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Settings {
        host,
        port,
        redis_url: args.redis_url.clone(),
        static_instances,
        max_concurrent_requests,
        request_timeout: Duration::from_secs(request_timeout),
        per_try_timeout: Duration::from_millis(per_try),
        first_token_timeout: first_token,
        idle_timeout: idle,
        max_retry_after: Duration::from_millis(file.retry.max_retry_after_ms),
        max_tokens: file.max_tokens.unwrap_or(file::MAX_TOKENS),
        registry_grace: Duration::from_millis(
            file.registry_grace_ms.unwrap_or(file::REGISTRY_GRACE_MS),
        ),
        discovery_refresh: Duration::from_millis(refresh_ms),
        drain_timeout: Duration::from_millis(drain_ms),
        log_format,
        health,
        health_check_path: args.health_check_path.clone(),
        retry,
        budget,
        breakers,
        cache: CacheSettings {
            ttl: Duration::from_secs(file.cache.ttl_s),
            capacity: file.cache.capacity,
            seed_file: file.cache.seed_file.clone(),
        },
        tiers: file.tiers,
        routes: routes.routes,
    })
}

/// `ms` when it is 10 ms to an hour; else noted (and a valid stand-in returned).
fn within(p: &mut Problems, name: &str, ms: Option<u64>) -> u64 {
    match ms {
        Some(ms) if (10..=3_600_000).contains(&ms) => ms,
        Some(_) => {
            p.push(name, "must be 10 ms to an hour");
            1000
        }
        None => 1000,
    }
}

/// `ms` as a duration, noted when zero.
fn above_zero(p: &mut Problems, name: &str, ms: u64) -> Duration {
    if ms == 0 {
        p.push(name, "must be above zero");
    }
    Duration::from_millis(ms)
}

/// Every breaker: the pool breaker (defaults, `[pool_breaker]`, the two variables), the
/// instance breakers of every pool and endpoint (defaults, `[instance_breaker]`,
/// `[pools.<tier>.instance_breaker]`, the targets' `breaker`), none of them OPEN longer
/// than the pool breaker.
fn breakers(
    args: &Args,
    file: &FileConfig,
    routes: &routes::CheckedRoutes,
    p: &mut Problems,
) -> Breakers {
    let threshold = args
        .circuit_breaker_failure_threshold
        .as_ref()
        .and_then(|raw| p.parse::<u32>("CIRCUIT_BREAKER_FAILURE_THRESHOLD", raw, COUNT));
    if threshold == Some(0) {
        p.push("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "must be at least 1");
    }
    let recovery_s = args
        .circuit_breaker_recovery_timeout
        .as_ref()
        .and_then(|raw| p.parse::<u64>("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", raw, COUNT));
    if recovery_s.is_some_and(|s| s == 0 || s > 86_400) {
        p.push(
            "CIRCUIT_BREAKER_RECOVERY_TIMEOUT",
            "must be 1 to 86400 seconds",
        );
    }
    let variables = Layer {
        source: Source::Variables,
        section: BreakerSection {
            failure_threshold: threshold.filter(|t| *t > 0),
            recovery_timeout_ms: recovery_s
                .filter(|s| (1..=86_400).contains(s))
                .map(|s| s * 1000),
            ..BreakerSection::default()
        },
    };
    let file_layer = |prefix: &str, section: &BreakerSection| Layer {
        source: Source::File(prefix.to_owned()),
        section: section.clone(),
    };
    let mut resolve = |base: BreakerConfig, layers: &[Layer]| {
        let (config, found) = breaker::resolve(base, layers);
        for problem in found {
            p.push(problem.field, problem.message);
        }
        config
    };
    let pool = resolve(
        breaker::pool_default(),
        &[file_layer("pool_breaker", &file.pool_breaker), variables],
    );
    let cap = pool.recovery_timeout;
    let bounded = |mut config: BreakerConfig| {
        config.recovery_timeout = config.recovery_timeout.min(cap);
        config
    };
    let instance_layer = file_layer("instance_breaker", &file.instance_breaker);
    let instance = bounded(resolve(
        breaker::instance_default(cap),
        std::slice::from_ref(&instance_layer),
    ));
    let tiers: std::collections::BTreeSet<&String> =
        file.pools.keys().chain(routes.pools.keys()).collect();
    let mut by_pool = BTreeMap::new();
    for tier in tiers {
        let mut layers = vec![instance_layer.clone()];
        if let Some(section) = file.pools.get(tier) {
            layers.push(file_layer(
                &format!("pools.{tier}.instance_breaker"),
                &section.instance_breaker,
            ));
        }
        if let Some(set) = routes.pools.get(tier) {
            layers.push(file_layer(&set.field, &set.section));
        }
        let config = bounded(resolve(breaker::instance_default(cap), &layers));
        by_pool.insert(tier.clone(), config);
    }
    let mut by_endpoint = BTreeMap::new();
    for (key, set) in &routes.endpoints {
        let layers = [instance_layer.clone(), file_layer(&set.field, &set.section)];
        let config = bounded(resolve(breaker::instance_default(cap), &layers));
        by_endpoint.insert(key.clone(), config);
    }
    Breakers {
        pool,
        instance,
        by_pool,
        by_endpoint,
    }
}
