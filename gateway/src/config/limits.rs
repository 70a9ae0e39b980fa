//! Rate-limit settings: where the counts live (`RATE_LIMIT_STORE`), what a Redis failure
//! means (`RATE_LIMIT_FAILURE_MODE`), and each tier's allowance (`[rate_limits.<tier>]` in
//! the file over the lab's defaults: `default` 100, `premium` 1,000 and `enterprise` 10,000
//! requests a minute, each with a burst of a whole minute's allowance).

use std::collections::BTreeMap;
use std::time::Duration;

use super::args::Args;
use super::file::RateTierSection;
use super::validate::Problems;
use resilience_core::limit::{FailureMode, Quota};

/// The tier of a caller who names none, or names one that is not configured.
pub const DEFAULT_TIER: &str = "default";

/// The lab's tiers: name and requests per minute.
const LAB_TIERS: [(&str, u32); 3] = [("default", 100), ("premium", 1_000), ("enterprise", 10_000)];

/// Most tiers a file may define.
const MAX_TIERS: usize = 64;

/// Where the limits are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitStore {
    /// In this process: one replica.
    Memory,
    /// In Redis (`REDIS_URL`): one limit shared by every replica.
    Redis,
}

/// One tier's allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierLimit {
    /// Requests.
    pub requests: Quota,
    /// Tokens, when limited.
    pub tokens: Option<Quota>,
}

/// The rate limits, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// `RATE_LIMIT_STORE`.
    pub store: LimitStore,
    /// `RATE_LIMIT_FAILURE_MODE` (the Redis store only).
    pub failure_mode: FailureMode,
    /// `RATE_LIMIT_REPLICAS`: `fail_local` gives each replica this share.
    pub replicas: u32,
    /// `RATE_LIMIT_ANONYMOUS`: anonymous callers limited per client address.
    pub anonymous: bool,
    /// `RATE_LIMIT_REDIS_TIMEOUT_MS`: the longest wait for Redis on one request.
    pub redis_timeout: Duration,
    /// `RATE_LIMIT_MAX_KEYS`: callers the in-process store tracks at most.
    pub max_keys: usize,
    /// Tier name → allowance; `default` always present.
    pub tiers: BTreeMap<String, TierLimit>,
}

impl RateLimitSettings {
    /// The allowance of `tier`: its own, else `default`'s.
    pub fn tier(&self, tier: &str) -> (&str, &TierLimit) {
        match self.tiers.get_key_value(tier) {
            Some((name, limit)) => (name, limit),
            None => {
                let (name, limit) = self
                    .tiers
                    .get_key_value(DEFAULT_TIER)
                    .unwrap_or_else(|| unreachable!("`default` is always configured"));
                (name, limit)
            }
        }
    }
}

/// The rate-limit settings from `args` and the file's `[rate_limits.<tier>]` sections.
pub fn rate_limits(
    args: &Args,
    sections: &BTreeMap<String, RateTierSection>,
    p: &mut Problems,
) -> RateLimitSettings {
    let store = match args.rate_limit_store.trim() {
        "memory" => LimitStore::Memory,
        "redis" => {
            if args.redis_url.is_none() {
                p.push("RATE_LIMIT_STORE", "`redis` needs REDIS_URL");
            }
            LimitStore::Redis
        }
        other => {
            p.push(
                "RATE_LIMIT_STORE",
                format!("`{other}` is not `memory` or `redis`"),
            );
            LimitStore::Memory
        }
    };
    let failure_mode = p
        .parse::<FailureMode>(
            "RATE_LIMIT_FAILURE_MODE",
            &args.rate_limit_failure_mode,
            "`fail_local`, `fail_closed` or `fail_open`",
        )
        .unwrap_or(FailureMode::FailLocal);
    let replicas = p
        .parse::<u32>(
            "RATE_LIMIT_REPLICAS",
            &args.rate_limit_replicas,
            "a whole number",
        )
        .unwrap_or(1);
    if !(1..=1024).contains(&replicas) {
        p.push("RATE_LIMIT_REPLICAS", "must be 1 to 1024");
    }
    let anonymous = p
        .parse::<bool>(
            "RATE_LIMIT_ANONYMOUS",
            &args.rate_limit_anonymous,
            "`true` or `false`",
        )
        .unwrap_or(false);
    let redis_timeout_ms = p
        .parse::<u64>(
            "RATE_LIMIT_REDIS_TIMEOUT_MS",
            &args.rate_limit_redis_timeout_ms,
            "a whole number",
        )
        .unwrap_or(100);
    if !(1..=10_000).contains(&redis_timeout_ms) {
        p.push("RATE_LIMIT_REDIS_TIMEOUT_MS", "must be 1 to 10000 ms");
    }
    let max_keys = p
        .parse::<usize>(
            "RATE_LIMIT_MAX_KEYS",
            &args.rate_limit_max_keys,
            "a whole number",
        )
        .unwrap_or(100_000);
    if !(16..=10_000_000).contains(&max_keys) {
        p.push("RATE_LIMIT_MAX_KEYS", "must be 16 to 10000000");
    }
    RateLimitSettings {
        store,
        failure_mode,
        replicas: replicas.max(1),
        anonymous,
        redis_timeout: Duration::from_millis(redis_timeout_ms.max(1)),
        max_keys: max_keys.max(16),
        tiers: tiers(sections, p),
    }
}

/// The lab's tiers, then the file's over them.
fn tiers(
    sections: &BTreeMap<String, RateTierSection>,
    p: &mut Problems,
) -> BTreeMap<String, TierLimit> {
    let mut tiers: BTreeMap<String, TierLimit> = LAB_TIERS
        .iter()
        .filter_map(|(name, rpm)| {
            let requests = Quota::per_minute(*rpm, *rpm).ok()?;
            Some((
                (*name).to_owned(),
                TierLimit {
                    requests,
                    tokens: None,
                },
            ))
        })
        .collect();
    if sections.len() > MAX_TIERS {
        p.push("rate_limits", format!("at most {MAX_TIERS} tiers"));
        return tiers;
    }
    for (name, section) in sections {
        let key = format!("rate_limits.{name}");
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            p.push(key, "a tier name is 1 to 64 of `a-z 0-9 _ -`");
            continue;
        }
        if name == "standard" {
            p.push(
                key,
                "`standard` is another name for `default`: configure `default`",
            );
            continue;
        }
        let inherited = tiers.get(name).map(|t| t.requests.limit());
        let Some(rpm) = section.requests_per_minute.or(inherited) else {
            p.push(
                format!("{key}.requests_per_minute"),
                "a new tier needs requests_per_minute",
            );
            continue;
        };
        let requests = quota(
            p,
            &key,
            "requests_per_minute",
            rpm,
            section.burst.unwrap_or(rpm),
        );
        let tokens = section.tokens_per_minute.and_then(|tpm| {
            quota(
                p,
                &key,
                "tokens_per_minute",
                tpm,
                section.token_burst.unwrap_or(tpm),
            )
        });
        if let Some(requests) = requests {
            tiers.insert(name.clone(), TierLimit { requests, tokens });
        }
    }
    tiers
}

/// `limit` a minute with `burst` as a quota, or a problem under `key.field`.
fn quota(p: &mut Problems, key: &str, field: &str, limit: u32, burst: u32) -> Option<Quota> {
    match Quota::per_minute(limit, burst) {
        Ok(quota) => Some(quota),
        Err(error) => {
            p.push(format!("{key}.{field}"), error.to_string());
            None
        }
    }
}
