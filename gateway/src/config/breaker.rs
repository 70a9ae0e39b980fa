//! Breaker settings: the TOML keys every breaker section takes (`[pool_breaker]`,
//! `[instance_breaker]`, `[pools.<tier>.instance_breaker]`, a route target's `breaker`),
//! how sections stack over the defaults, and the problems of the result named by the key
//! (or variable) that set the bad value.

use std::time::Duration;

use llm_api::FieldError;
use resilience_core::breaker::BreakerConfig;
use resilience_core::error::Error;
use serde::Deserialize;

/// One breaker section: every key optional, an absent key keeps the value below it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSection {
    /// Failures in a row (in CLOSED) that open the breaker; 0 turns the rule off (then a
    /// rate threshold must be on).
    pub failure_threshold: Option<u32>,
    /// Milliseconds OPEN lasts before probes are let through (HALF_OPEN).
    pub recovery_timeout_ms: Option<u64>,
    /// Failure rate over the window (0 < r ≤ 1) that opens the breaker; 0 turns it off.
    pub failure_rate_threshold: Option<f64>,
    /// Slow-call rate over the window (0 < r ≤ 1) that opens the breaker; 0 turns it off.
    pub slow_call_rate_threshold: Option<f64>,
    /// A call taking at least this many milliseconds counts as slow.
    pub slow_call_duration_ms: Option<u64>,
    /// Length of the rolling window the rates are computed over, ms.
    pub window_ms: Option<u64>,
    /// Buckets the window is split into.
    pub window_buckets: Option<u32>,
    /// Calls the window must hold before a rate can open the breaker.
    pub minimum_calls: Option<u32>,
    /// Probes let through at once in HALF_OPEN.
    pub half_open_max_calls: Option<u32>,
    /// Successful probes that close the breaker.
    pub success_threshold: Option<u32>,
    /// Bulkhead: calls in flight at once; 0 means unlimited.
    pub max_concurrent_calls: Option<u32>,
    /// Longer OPEN periods while probes keep failing.
    pub reopen_backoff: Option<ReopenBackoffSection>,
}

/// `reopen_backoff = { multiplier, max_ms, jitter }`; `multiplier = 1` keeps every OPEN
/// period at the recovery timeout.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReopenBackoffSection {
    /// Each re-opening multiplies the OPEN period by this (≥ 1; default 2).
    pub multiplier: Option<f64>,
    /// The OPEN period never exceeds this, ms (default 300000).
    pub max_ms: Option<u64>,
    /// Up to this fraction of a grown period is removed at random (default 0.2).
    pub jitter: Option<f64>,
}

/// Where a value of a breaker came from: a file section (by its key path) or one of the
/// two variables of the pool breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A TOML section, `pool_breaker` or `routes.a.targets[0].breaker`.
    File(String),
    /// `CIRCUIT_BREAKER_FAILURE_THRESHOLD` and `CIRCUIT_BREAKER_RECOVERY_TIMEOUT`.
    Variables,
}

/// A section and where it was written.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Where it was written.
    pub source: Source,
    /// Its keys.
    pub section: BreakerSection,
}

/// The pool breaker's built-in settings: N failed requests in a row, OPEN for exactly the
/// recovery timeout (no backoff), one probe at a time, two successful probes to close; the
/// rate windows off.
pub fn pool_default() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 5,
        recovery_timeout: Duration::from_secs(30),
        half_open_max_calls: 1,
        success_threshold: 2,
        failure_rate_threshold: None,
        slow_call_rate_threshold: None,
        max_concurrent_calls: None,
        reopen_backoff: None,
        ..BreakerConfig::default()
    }
}

/// Instance and endpoint breakers' built-in settings; `pool_recovery` is the pool
/// breaker's recovery timeout, which also bounds theirs.
pub fn instance_default(pool_recovery: Duration) -> BreakerConfig {
    BreakerConfig {
        // Envoy's consecutive_5xx default: an instance failing 10 % of calls at random
        // (the lab's) must not be ejected for 30 s every minute under load.
        failure_threshold: 5,
        recovery_timeout: pool_recovery,
        half_open_max_calls: 1,
        success_threshold: 1,
        failure_rate_threshold: None,
        slow_call_rate_threshold: None,
        max_concurrent_calls: None,
        reopen_backoff: None,
        ..BreakerConfig::default()
    }
}

impl BreakerSection {
    /// `base` with every key this section sets.
    pub fn over(&self, mut base: BreakerConfig) -> BreakerConfig {
        let ms = Duration::from_millis;
        let rate = |r: f64| (r != 0.0).then_some(r);
        if let Some(v) = self.failure_threshold {
            base.failure_threshold = v;
        }
        if let Some(v) = self.recovery_timeout_ms {
            base.recovery_timeout = ms(v);
        }
        if let Some(v) = self.failure_rate_threshold {
            base.failure_rate_threshold = rate(v);
        }
        if let Some(v) = self.slow_call_rate_threshold {
            base.slow_call_rate_threshold = rate(v);
        }
        if let Some(v) = self.slow_call_duration_ms {
            base.slow_call_duration = ms(v);
        }
        if let Some(v) = self.window_ms {
            base.window = ms(v);
        }
        if let Some(v) = self.window_buckets {
            base.window_buckets = v;
        }
        if let Some(v) = self.minimum_calls {
            base.minimum_calls = v;
        }
        if let Some(v) = self.half_open_max_calls {
            base.half_open_max_calls = v;
        }
        if let Some(v) = self.success_threshold {
            base.success_threshold = v;
        }
        if let Some(v) = self.max_concurrent_calls {
            base.max_concurrent_calls = (v != 0).then_some(v);
        }
        if let Some(section) = &self.reopen_backoff {
            let mut backoff = base.reopen_backoff.take().unwrap_or_default();
            if let Some(v) = section.multiplier {
                backoff.multiplier = v;
            }
            if let Some(v) = section.max_ms {
                backoff.max = ms(v);
            }
            if let Some(v) = section.jitter {
                backoff.jitter = v;
            }
            base.reopen_backoff = Some(backoff);
        }
        base
    }

    /// Whether this section sets the TOML key `key` (`reopen_backoff.max_ms` included).
    fn sets(&self, key: &str) -> bool {
        let backoff = self.reopen_backoff.as_ref();
        match key {
            "failure_threshold" => self.failure_threshold.is_some(),
            "recovery_timeout_ms" => self.recovery_timeout_ms.is_some(),
            "failure_rate_threshold" => self.failure_rate_threshold.is_some(),
            "slow_call_rate_threshold" => self.slow_call_rate_threshold.is_some(),
            "slow_call_duration_ms" => self.slow_call_duration_ms.is_some(),
            "window_ms" => self.window_ms.is_some(),
            "window_buckets" => self.window_buckets.is_some(),
            "minimum_calls" => self.minimum_calls.is_some(),
            "half_open_max_calls" => self.half_open_max_calls.is_some(),
            "success_threshold" => self.success_threshold.is_some(),
            "max_concurrent_calls" => self.max_concurrent_calls.is_some(),
            "reopen_backoff.multiplier" => backoff.is_some_and(|b| b.multiplier.is_some()),
            "reopen_backoff.max_ms" => backoff.is_some_and(|b| b.max_ms.is_some()),
            "reopen_backoff.jitter" => backoff.is_some_and(|b| b.jitter.is_some()),
            _ => false,
        }
    }
}

/// `base` under every layer, in order (the last wins), and the problems of the result,
/// each named by the key of the topmost layer that set the bad value (`default` names a
/// built-in value; the bound on `recovery_timeout_ms` comes later).
pub fn resolve(base: BreakerConfig, layers: &[Layer]) -> (BreakerConfig, Vec<FieldError>) {
    let config = layers
        .iter()
        .fold(base, |config, layer| layer.section.over(config));
    let problems = config
        .problems()
        .into_iter()
        .map(|problem| name_problem(&problem, layers))
        .collect();
    (config, problems)
}

/// The TOML key of a setting named by [`BreakerConfig::problems`] (`breaker.window`).
fn key_of(setting: &str) -> String {
    let setting = setting.strip_prefix("breaker.").unwrap_or(setting);
    match setting {
        "recovery_timeout" | "window" | "slow_call_duration" | "reopen_backoff.max" => {
            format!("{setting}_ms")
        }
        other => other.to_owned(),
    }
}

fn name_problem(problem: &Error, layers: &[Layer]) -> FieldError {
    let (setting, reason) = match problem {
        Error::InvalidConfig { setting, reason } => (setting.as_str(), reason.clone()),
        other => ("", other.to_string()),
    };
    let key = key_of(setting);
    let field = layers
        .iter()
        .rev()
        .find(|layer| match &layer.source {
            Source::Variables => {
                matches!(key.as_str(), "failure_threshold" | "recovery_timeout_ms")
                    && layer.section.sets(&key)
            }
            Source::File(_) => layer.section.sets(&key),
        })
        .map_or_else(
            || format!("default.{key}"),
            |layer| match (&layer.source, key.as_str()) {
                (Source::Variables, "failure_threshold") => {
                    "CIRCUIT_BREAKER_FAILURE_THRESHOLD".to_owned()
                }
                (Source::Variables, _) => "CIRCUIT_BREAKER_RECOVERY_TIMEOUT".to_owned(),
                (Source::File(prefix), _) => format!("{prefix}.{key}"),
            },
        );
    FieldError::new(field, reason)
}
