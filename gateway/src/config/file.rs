//! The optional TOML file (`GATEWAY_CONFIG`; `config/gateway.example.toml` documents every
//! key). The document is read section by section, so that a bad value in one section does
//! not hide a bad value in another: every problem names its section or key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::breaker::BreakerSection;
use super::routes::RouteSection;
use super::validate::Problems;

/// The file's content, each section at its default when absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConfig {
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens: Option<u32>,
    /// Milliseconds one try may take.
    pub per_try_timeout_ms: Option<u64>,
    /// Milliseconds a registered instance stays in the pool after the registry stops
    /// listing it (a Redis restarted empty), while it passes its health checks.
    pub registry_grace_ms: Option<u64>,
    /// `[retry]`: retries across instances.
    pub retry: RetrySection,
    /// `[pool_breaker]`: the breaker in front of the primary pool.
    pub pool_breaker: BreakerSection,
    /// `[instance_breaker]`: every instance and endpoint breaker (outlier ejection).
    pub instance_breaker: BreakerSection,
    /// `[pools.<tier>]`: the settings of one pool of discovered instances.
    pub pools: BTreeMap<String, PoolSection>,
    /// `[health]`: health checks.
    pub health: HealthSection,
    /// `[cache]`: the response cache.
    pub cache: CacheSection,
    /// `[tiers]`: fallback tiers that may answer.
    pub tiers: TiersSection,
    /// `[stream]`: stream limits.
    pub stream: StreamSection,
    /// `[rate_limits.<tier>]`: each tier's allowance, over the lab's defaults.
    pub rate_limits: BTreeMap<String, RateTierSection>,
    /// `[routes.<model>]`: public model name → ordered targets; `default` serves every
    /// other name.
    pub routes: BTreeMap<String, RouteSection>,
}

/// `[pools.<tier>]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSection {
    /// The breakers of this pool's instances, over `[instance_breaker]`.
    pub instance_breaker: BreakerSection,
}

/// `[rate_limits.<tier>]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RateTierSection {
    /// Requests a minute, refilled steadily.
    pub requests_per_minute: Option<u32>,
    /// Requests that may be spent at once [default: `requests_per_minute`].
    pub burst: Option<u32>,
    /// Tokens (prompt + completion, as the upstream reports them) a minute; unset: no
    /// token limit.
    pub tokens_per_minute: Option<u32>,
    /// Tokens that may be spent at once [default: `tokens_per_minute`].
    pub token_burst: Option<u32>,
}

/// `[stream]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSection {
    /// The longest wait for a stream's first token; past it the try fails over.
    pub first_token_timeout_ms: u64,
    /// The longest silence between two events once a stream flows.
    pub idle_timeout_ms: u64,
    /// Continuations of one stream that broke after it reached the client, at most (0:
    /// none; the stream ends with an error event as before).
    pub max_continuations: u32,
}

/// `[retry]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
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

/// `[health]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSection {
    /// Seconds a learned answer is kept.
    pub ttl_s: u64,
    /// Learned answers kept at most.
    pub capacity: usize,
    /// Bytes the in-process cache's learned answers take at most (`CACHE_MAX_BYTES`
    /// overrides it).
    pub max_bytes: Option<u64>,
    /// Bytes of the largest answer cached, in process and in Redis
    /// (`CACHE_MAX_ENTRY_BYTES` overrides it).
    pub max_entry_bytes: Option<u64>,
    /// Seeded answers to common prompts.
    pub seed_file: Option<PathBuf>,
}

/// `[tiers]`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TiersSection {
    /// Instances tagged `secondary` answer when the primary pool cannot.
    pub secondary: bool,
    /// Earlier answers and seeded ones.
    pub cache: bool,
    /// A structured degraded answer.
    pub template: bool,
}

impl Default for StreamSection {
    fn default() -> Self {
        Self {
            first_token_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            max_continuations: resilience_core::policy::continuation::DEFAULT_MAX_CONTINUATIONS,
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
            max_bytes: None,
            max_entry_bytes: None,
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

/// The built-in `max_tokens` bound.
pub const MAX_TOKENS: u32 = 4096;
/// The built-in bound of one try, ms.
pub const PER_TRY_TIMEOUT_MS: u64 = 10_000;
/// The built-in bound of the in-process cache's learned answers, in bytes: 64 MiB.
pub const CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The built-in bound of one cached answer, in bytes: 256 KiB (an answer of thousands of
/// tokens with its upstream document fits many times over).
pub const CACHE_MAX_ENTRY_BYTES: u64 = 256 * 1024;
/// The built-in registry grace, ms.
pub const REGISTRY_GRACE_MS: u64 = 15_000;

impl FileConfig {
    /// Reads and checks the file at `path`; problems name `GATEWAY_CONFIG` when the file
    /// cannot be read or is not TOML, else the section or key at fault.
    pub fn read(path: &Path, problems: &mut Problems) -> Self {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string(), problems),
            Err(e) => {
                problems.push(
                    "GATEWAY_CONFIG",
                    format!("cannot read {}: {e}", path.display()),
                );
                Self::default()
            }
        }
    }

    /// The settings in `text` (named `origin` in messages); whatever is wrong goes to
    /// `problems` and leaves its section at the defaults.
    pub fn parse(text: &str, origin: &str, problems: &mut Problems) -> Self {
        let mut table = match text.parse::<toml::Table>() {
            Ok(table) => table,
            Err(e) => {
                problems.push("GATEWAY_CONFIG", format!("{origin}: {e}"));
                return Self::default();
            }
        };
        let mut take = |key: &str| table.remove(key);
        let file = Self {
            max_tokens: section(take("max_tokens"), "max_tokens", problems),
            per_try_timeout_ms: section(take("per_try_timeout_ms"), "per_try_timeout_ms", problems),
            registry_grace_ms: section(take("registry_grace_ms"), "registry_grace_ms", problems),
            retry: section(take("retry"), "retry", problems).unwrap_or_default(),
            pool_breaker: section(take("pool_breaker"), "pool_breaker", problems)
                .unwrap_or_default(),
            instance_breaker: section(take("instance_breaker"), "instance_breaker", problems)
                .unwrap_or_default(),
            pools: keyed(take("pools"), "pools", problems),
            health: section(take("health"), "health", problems).unwrap_or_default(),
            cache: section(take("cache"), "cache", problems).unwrap_or_default(),
            tiers: section(take("tiers"), "tiers", problems).unwrap_or_default(),
            stream: section(take("stream"), "stream", problems).unwrap_or_default(),
            rate_limits: keyed(take("rate_limits"), "rate_limits", problems),
            routes: keyed(take("routes"), "routes", problems),
        };
        for key in table.keys() {
            problems.push(key.clone(), format!("{origin}: unknown key `{key}`"));
        }
        file
    }
}

/// One section (or top-level key) as `T`; `None` when absent or wrong (then noted).
fn section<T: DeserializeOwned>(
    value: Option<toml::Value>,
    name: &str,
    problems: &mut Problems,
) -> Option<T> {
    value.and_then(|value| match value.try_into::<T>() {
        Ok(section) => Some(section),
        Err(e) => {
            problems.push(name, e.to_string().trim_end().to_owned());
            None
        }
    })
}

/// A table of named sections (`[routes.<model>]`, `[pools.<tier>]`), each read alone.
fn keyed<T: DeserializeOwned>(
    value: Option<toml::Value>,
    name: &str,
    problems: &mut Problems,
) -> BTreeMap<String, T> {
    let Some(value) = value else {
        return BTreeMap::new();
    };
    let toml::Value::Table(table) = value else {
        problems.push(name, "must be a table of named sections");
        return BTreeMap::new();
    };
    table
        .into_iter()
        .filter_map(|(key, value)| {
            section(Some(value), &format!("{name}.{key}"), problems).map(|s| (key, s))
        })
        .collect()
}
