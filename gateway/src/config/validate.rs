//! From the sources to [`Settings`]: every value typed and checked once, every problem
//! collected with the variable or TOML key it concerns, and the precedence between them
//! (a variable or flag wins over the file, the file over the built-in defaults).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use http_edge::security::CorsOrigins;
use llm_api::FieldError;
use llm_api::limits::InputLimits;
use resilience_core::breaker::BreakerConfig;
use resilience_core::error::Error;
use resilience_core::health::HealthCheckConfig;
use resilience_core::registry::{Instance, LLM_SERVICE, StaticRegistry};
use resilience_core::retry::{BudgetConfig, RetryPolicy};

use super::args::Args;
use super::breaker::{self, BreakerSection, Layer, Source};
use super::file::{self, FileConfig};
use super::limits;
use super::routes::{self, EndpointKey};
use super::{Breakers, CacheSettings, HistorySettings, LogFormat, Settings};
use crate::layers::admin_guard::AdminAllow;
use crate::pii::PiiMode;

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

/// The most continuations a stream may be allowed (`stream.max_continuations`).
const MAX_CONTINUATIONS: u32 = 16;

/// Everything from `args` (the flags and variables), the file it names and `env`, checked.
/// Each step notes its problems and goes on, so every invalid value is reported at once; the
/// steps run in the order their problems are listed.
pub fn settings(args: &Args, env: Env<'_>) -> Result<Settings, Vec<FieldError>> {
    let mut p = Problems::default();
    let file = match &args.config {
        Some(path) => FileConfig::read(path, &mut p),
        None => FileConfig::default(),
    };
    let serving = serving(args, &mut p);
    let cors = CorsOrigins::parse(&args.cors_allow_origins).unwrap_or_else(|why| {
        p.push("CORS_ALLOW_ORIGINS", why);
        CorsOrigins::Off
    });
    let discovery = discovery(args, &mut p);
    let (drain_timeout, log_format) = drain_and_logs(args, &mut p);
    let timeouts = timeouts(args, &file, &mut p);
    let limits = limits(args, &file, &mut p);
    let health = health(&file, discovery.health_interval_ms, &mut p);
    let (retry, budget) = retry_and_budget(&file, &mut p);
    let cache = cache(args, &file, &mut p);
    let routes = routes::check(&file.routes, env, &mut p);
    let breakers = breakers(args, &file, &routes, &mut p);
    let auth = crate::auth::AuthSettings::from_args(args, &mut p).unwrap_or_default();
    let admin_allow = AdminAllow::parse(&args.admin_allow).unwrap_or_else(|why| {
        p.push("ADMIN_ALLOW", why);
        AdminAllow::default()
    });
    let pii = p
        .parse::<PiiMode>("PII_REDACTION", &args.pii_redaction, "`off` or `mask`")
        .unwrap_or_default();
    let rate_limits = limits::rate_limits(args, &file.rate_limits, &mut p);
    let history = history(args, &mut p);
    let edge = args.edge.limits().unwrap_or_else(|problems| {
        for problem in problems {
            p.push(problem.field, problem.message);
        }
        http_edge::EdgeLimits::default()
    });

    let problems = p.into_vec();
    let Ok((host, port)) = serving.listen else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Settings {
        host,
        port,
        redis_url: args.redis_url.clone(),
        static_instances: discovery.static_instances,
        max_concurrent_requests: serving.max_concurrent_requests,
        request_timeout: serving.request_timeout,
        per_try_timeout: timeouts.per_try,
        first_token_timeout: timeouts.first_token,
        max_continuations: timeouts.max_continuations,
        idle_timeout: timeouts.idle,
        max_retry_after: Duration::from_millis(file.retry.max_retry_after_ms),
        limits,
        registry_grace: Duration::from_millis(
            file.registry_grace_ms.unwrap_or(file::REGISTRY_GRACE_MS),
        ),
        discovery_refresh: discovery.refresh,
        drain_timeout,
        edge,
        log_format,
        cors,
        health,
        health_check_path: args.health_check_path.clone(),
        retry,
        budget,
        breakers,
        cache,
        tiers: file.tiers,
        prefill: routes.prefill_modes(),
        routes: routes.routes,
        auth,
        admin_allow,
        pii,
        rate_limits,
        history,
    })
}

/// `raw` as a whole number, noted under `name` when it is not one.
fn count(p: &mut Problems, name: &str, raw: &str) -> Option<u64> {
    p.parse::<u64>(name, raw, COUNT)
}

/// `raw`, when set, as a whole number.
fn optional(p: &mut Problems, name: &str, raw: &Option<String>) -> Option<u64> {
    raw.as_ref().and_then(|raw| count(p, name, raw))
}

/// Where and how much the gateway serves.
struct Serving {
    /// `HOST` and `PORT`, or `Err` when their problems are noted.
    listen: Result<(IpAddr, u16), ()>,
    /// `MAX_CONCURRENT_REQUESTS`.
    max_concurrent_requests: usize,
    /// `REQUEST_TIMEOUT`.
    request_timeout: Duration,
}

/// `HOST`, `PORT`, `MAX_CONCURRENT_REQUESTS` and `REQUEST_TIMEOUT`.
fn serving(args: &Args, p: &mut Problems) -> Serving {
    let listen = args.listen().map_err(|found| {
        for problem in found {
            p.push(problem.field, problem.message);
        }
    });
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
    let request_timeout = count(p, "REQUEST_TIMEOUT", &args.request_timeout).unwrap_or(1);
    if !(1..=3600).contains(&request_timeout) {
        p.push("REQUEST_TIMEOUT", "must be 1 to 3600 seconds");
    }
    Serving {
        listen,
        max_concurrent_requests,
        request_timeout: Duration::from_secs(request_timeout),
    }
}

/// Where the instances come from, and how often they are probed and looked up again.
struct Discovery {
    /// `LLM_SERVICE_URLS`, parsed.
    static_instances: Vec<Instance>,
    /// `HEALTH_CHECK_INTERVAL_MS`.
    health_interval_ms: u64,
    /// `DISCOVERY_REFRESH_MS`.
    refresh: Duration,
}

/// `LLM_SERVICE_URLS`, `REDIS_URL`, `HEALTH_CHECK_INTERVAL_MS`, `HEALTH_CHECK_PATH` and
/// `DISCOVERY_REFRESH_MS`.
fn discovery(args: &Args, p: &mut Problems) -> Discovery {
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
        p,
        "HEALTH_CHECK_INTERVAL_MS",
        &args.health_check_interval_ms,
    );
    let health_interval_ms = within(p, "HEALTH_CHECK_INTERVAL_MS", interval_ms);
    if !args.health_check_path.starts_with('/') {
        p.push("HEALTH_CHECK_PATH", "must start with /");
    }
    let refresh_ms = count(p, "DISCOVERY_REFRESH_MS", &args.discovery_refresh_ms);
    Discovery {
        static_instances,
        health_interval_ms,
        refresh: Duration::from_millis(within(p, "DISCOVERY_REFRESH_MS", refresh_ms)),
    }
}

/// `DATABASE_URL` (or `POSTGRES_URL`) and the `HISTORY_*` settings.
fn history(args: &Args, p: &mut Problems) -> HistorySettings {
    let default_url = format!("sqlite://{}", args.history_sqlite_path);
    let (field, url) = match (&args.database_url, &args.postgres_url) {
        (Some(url), _) => ("DATABASE_URL", url.as_str()),
        (None, Some(url)) => ("POSTGRES_URL", url.as_str()),
        (None, None) => ("HISTORY_SQLITE_PATH", default_url.as_str()),
    };
    let location = history::Location::parse(url).unwrap_or_else(|why| {
        p.push(field, why.to_string());
        history::Location::Off
    });
    let defaults = history::WriterSettings::default();
    let rows = |p: &mut Problems, name: &str, raw: &str| {
        count(p, name, raw).and_then(|n| usize::try_from(n).ok())
    };
    let writer = history::WriterSettings {
        queue_capacity: rows(p, "HISTORY_QUEUE_ROWS", &args.history_queue_rows)
            .unwrap_or(defaults.queue_capacity),
        batch_size: rows(p, "HISTORY_BATCH_ROWS", &args.history_batch_rows)
            .unwrap_or(defaults.batch_size),
        write_timeout: count(
            p,
            "HISTORY_WRITE_TIMEOUT_MS",
            &args.history_write_timeout_ms,
        )
        .map_or(defaults.write_timeout, Duration::from_millis),
        retention: count(p, "HISTORY_RETENTION_HOURS", &args.history_retention_hours)
            .map_or(defaults.retention, |hours| {
                (hours > 0).then(|| Duration::from_secs(hours.saturating_mul(3600)))
            }),
        ..defaults
    };
    for problem in writer.problems() {
        p.push("HISTORY_*", problem);
    }
    let sample_ms = count(
        p,
        "HISTORY_SAMPLE_INTERVAL_MS",
        &args.history_sample_interval_ms,
    );
    HistorySettings {
        location,
        writer,
        sample_interval: sample_ms.filter(|ms| *ms > 0).map(Duration::from_millis),
    }
}

/// `DRAIN_TIMEOUT_MS` and `LOG_FORMAT`.
fn drain_and_logs(args: &Args, p: &mut Problems) -> (Duration, LogFormat) {
    let drain_ms = count(p, "DRAIN_TIMEOUT_MS", &args.drain_timeout_ms).unwrap_or(0);
    let log_format = match args.log_format.as_str() {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        _ => {
            p.push("LOG_FORMAT", "must be `pretty` or `json`");
            LogFormat::Pretty
        }
    };
    (Duration::from_millis(drain_ms), log_format)
}

/// The bounds of one try and of a stream's silences.
struct Timeouts {
    /// One try.
    per_try: Duration,
    /// A stream's first token.
    first_token: Duration,
    /// A stream's silence between events.
    idle: Duration,
    /// Continuations of a broken stream.
    max_continuations: u32,
}

/// The per-try, first-token and idle timeouts: a variable wins over its file key.
fn timeouts(args: &Args, file: &FileConfig, p: &mut Problems) -> Timeouts {
    let per_try = optional(p, "PER_TRY_TIMEOUT_MS", &args.per_try_timeout_ms)
        .or(file.per_try_timeout_ms)
        .unwrap_or(file::PER_TRY_TIMEOUT_MS);
    if per_try == 0 {
        p.push("per_try_timeout_ms", "must be above zero");
    }
    let first_token = optional(
        p,
        "STREAM_FIRST_TOKEN_TIMEOUT_MS",
        &args.stream_first_token_timeout_ms,
    )
    .unwrap_or(file.stream.first_token_timeout_ms);
    let first_token = above_zero(p, "stream.first_token_timeout_ms", first_token);
    let idle = optional(p, "STREAM_IDLE_TIMEOUT_MS", &args.stream_idle_timeout_ms)
        .unwrap_or(file.stream.idle_timeout_ms);
    let max_continuations = optional(
        p,
        "STREAM_MAX_CONTINUATIONS",
        &args.stream_max_continuations,
    )
    .map_or(file.stream.max_continuations, |n| {
        u32::try_from(n).unwrap_or(u32::MAX)
    });
    if max_continuations > MAX_CONTINUATIONS {
        p.push(
            "stream.max_continuations",
            format!("must be at most {MAX_CONTINUATIONS}"),
        );
    }
    Timeouts {
        per_try: Duration::from_millis(per_try),
        first_token,
        idle: above_zero(p, "stream.idle_timeout_ms", idle),
        max_continuations: max_continuations.min(MAX_CONTINUATIONS),
    }
}

/// The bounds of a request's values: `MAX_TOKENS` (over the file's `max_tokens`),
/// `MAX_MODEL_CHARS`, `MAX_MESSAGES`, `MAX_PROMPT_CHARS` and `MAX_CHOICES`, each within a
/// range that keeps it a bound.
fn limits(args: &Args, file: &FileConfig, p: &mut Problems) -> InputLimits {
    let max_tokens = optional(p, "MAX_TOKENS", &args.max_tokens)
        .or(file.max_tokens.map(u64::from))
        .unwrap_or(u64::from(file::MAX_TOKENS));
    let max_tokens = bounded(p, "MAX_TOKENS", max_tokens, 1..=1_000_000);
    let mut setting = |name: &str, raw: &str, range| {
        count(p, name, raw).map_or(1, |value| bounded(p, name, value, range))
    };
    InputLimits {
        max_tokens,
        max_model_chars: setting("MAX_MODEL_CHARS", &args.max_model_chars, 1..=1024),
        max_messages: setting("MAX_MESSAGES", &args.max_messages, 1..=100_000),
        max_prompt_chars: setting("MAX_PROMPT_CHARS", &args.max_prompt_chars, 1..=16 << 20),
        max_choices: u32::try_from(setting("MAX_CHOICES", &args.max_choices, 1..=128)).unwrap_or(1),
    }
}

/// `value` as a `T` when `range` holds it; else noted (and the range's start returned).
fn bounded<T: TryFrom<u64> + From<u8>>(
    p: &mut Problems,
    name: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> T {
    match T::try_from(value) {
        Ok(v) if range.contains(&value) => v,
        _ => {
            p.push(
                name,
                format!("must be {} to {}, got {value}", range.start(), range.end()),
            );
            T::from(1)
        }
    }
}

/// Active health checks every `interval_ms`, with `[health]`.
fn health(file: &FileConfig, interval_ms: u64, p: &mut Problems) -> HealthCheckConfig {
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
    health
}

/// `[retry]`: the retry policy and the retry budget.
fn retry_and_budget(file: &FileConfig, p: &mut Problems) -> (RetryPolicy, BudgetConfig) {
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
    (retry, budget)
}

/// `[cache]`.
fn cache(args: &Args, file: &FileConfig, p: &mut Problems) -> CacheSettings {
    if file.cache.ttl_s == 0 {
        p.push("cache.ttl_s", "must be above zero");
    }
    let max_bytes = optional(p, "CACHE_MAX_BYTES", &args.cache_max_bytes)
        .or(file.cache.max_bytes)
        .unwrap_or(file::CACHE_MAX_BYTES);
    let max_entry_bytes = optional(p, "CACHE_MAX_ENTRY_BYTES", &args.cache_max_entry_bytes)
        .or(file.cache.max_entry_bytes)
        .unwrap_or(file::CACHE_MAX_ENTRY_BYTES);
    if max_entry_bytes == 0 {
        p.push("cache.max_entry_bytes", "must be above zero");
    }
    CacheSettings {
        ttl: Duration::from_secs(file.cache.ttl_s),
        capacity: file.cache.capacity,
        max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        max_entry_bytes: usize::try_from(max_entry_bytes).unwrap_or(usize::MAX),
        seed_file: file.cache.seed_file.clone(),
    }
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
    let variables = variables_layer(args, p);
    let pool = resolve(
        p,
        breaker::pool_default(),
        &[file_layer("pool_breaker", &file.pool_breaker), variables],
    );
    let cap = pool.recovery_timeout;
    let instance_layer = file_layer("instance_breaker", &file.instance_breaker);
    let instance = instance_breaker(p, cap, std::slice::from_ref(&instance_layer));
    let by_pool = pool_breakers(file, routes, &instance_layer, cap, p);
    let by_endpoint = endpoint_breakers(routes, &instance_layer, cap, p);
    Breakers {
        pool,
        instance,
        by_pool,
        by_endpoint,
    }
}

/// The pool breaker's keys `CIRCUIT_BREAKER_FAILURE_THRESHOLD` and
/// `CIRCUIT_BREAKER_RECOVERY_TIMEOUT` set (seconds), the invalid ones noted and left out.
fn variables_layer(args: &Args, p: &mut Problems) -> Layer {
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
    Layer {
        source: Source::Variables,
        section: BreakerSection {
            failure_threshold: threshold.filter(|t| *t > 0),
            recovery_timeout_ms: recovery_s
                .filter(|s| (1..=86_400).contains(s))
                .map(|s| s * 1000),
            ..BreakerSection::default()
        },
    }
}

/// The file's `section` at `prefix`, as a layer.
fn file_layer(prefix: &str, section: &BreakerSection) -> Layer {
    Layer {
        source: Source::File(prefix.to_owned()),
        section: section.clone(),
    }
}

/// `layers` over `base`, their problems noted.
fn resolve(p: &mut Problems, base: BreakerConfig, layers: &[Layer]) -> BreakerConfig {
    let (config, found) = breaker::resolve(base, layers);
    for problem in found {
        p.push(problem.field, problem.message);
    }
    config
}

/// An instance breaker: `layers` over the defaults, OPEN no longer than `cap`.
fn instance_breaker(p: &mut Problems, cap: Duration, layers: &[Layer]) -> BreakerConfig {
    let mut config = resolve(p, breaker::instance_default(cap), layers);
    config.recovery_timeout = config.recovery_timeout.min(cap);
    config
}

/// The instance breakers of every tier the file or a route names: `instance_layer`, then
/// `[pools.<tier>.instance_breaker]`, then the `breaker` its pool targets set.
fn pool_breakers(
    file: &FileConfig,
    routes: &routes::CheckedRoutes,
    instance_layer: &Layer,
    cap: Duration,
    p: &mut Problems,
) -> BTreeMap<String, BreakerConfig> {
    let tiers: BTreeSet<&String> = file.pools.keys().chain(routes.pools.keys()).collect();
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
        by_pool.insert(tier.clone(), instance_breaker(p, cap, &layers));
    }
    by_pool
}

/// The breaker of every endpoint model a route names: `instance_layer`, then the `breaker`
/// its targets set.
fn endpoint_breakers(
    routes: &routes::CheckedRoutes,
    instance_layer: &Layer,
    cap: Duration,
    p: &mut Problems,
) -> BTreeMap<EndpointKey, BreakerConfig> {
    let mut by_endpoint = BTreeMap::new();
    for (key, set) in &routes.endpoints {
        let layers = [instance_layer.clone(), file_layer(&set.field, &set.section)];
        by_endpoint.insert(key.clone(), instance_breaker(p, cap, &layers));
    }
    by_endpoint
}
