//! Rate limits on the request path: who a caller is to the limiter (an authenticated
//! identity, or the address of an anonymous caller when `RATE_LIMIT_ANONYMOUS` is on),
//! which tier's allowance applies, and the HTTP side of a verdict (429 with `Retry-After`,
//! `X-RateLimit-*` on every answer of a limited route). The decision itself is made in
//! `resilience_core::limit` (GCRA, [`decide`](resilience_core::limit::decide)); the store
//! (this process or Redis) and what a Redis failure means, in its `RateLimiter`.
//!
//! Keys: a caller's key is the SHA-256 of its kind and subject (never the credential, and
//! never client text as such): `rl:r:<tier>:<hex>` for requests, `rl:t:<tier>:<hex>` for
//! tokens.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use resilience_core::clock::SharedClock;
use resilience_core::limit::{
    Charge, Checked, Decision, LocalLimiter, RateLimiter, RedisLimiter, Source, StoreStatus,
};
use sha2::{Digest, Sha256};

use crate::auth::{AuthMethod, Identity};
use crate::config::limits::{LimitStore, RateLimitSettings};

/// `x-ratelimit-limit`.
static LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `x-ratelimit-remaining`.
static REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `x-ratelimit-reset`.
static RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The Redis keys' prefix.
const PREFIX: &str = "rl:";

/// The gateway's limits: settings, store, and whether callers are limited at all.
pub struct Limits {
    settings: RateLimitSettings,
    limiter: RateLimiter,
    /// Authentication is on: every authenticated caller is limited.
    authenticated: bool,
}

/// A caller as the limiter knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The configured tier whose allowance applies (`default` for unknown names).
    pub tier: String,
    /// The SHA-256 (hex) of the caller's kind and subject.
    key: String,
}

/// The verdict on one request.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The requests limit's verdict.
    pub requests: Checked,
    /// The tokens limit's (a peek: is the caller in debt?), when the tier has one.
    pub tokens: Option<Checked>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the requests limit.
    Requests,
    /// Over the tokens limit.
    Tokens,
    /// The store is unreachable and the failure mode is `fail_closed`.
    Unavailable,
}

impl Refusal {
    /// The error type or code answered and the metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests | Self::Tokens => "rate_limited",
            Self::Unavailable => "rate_limiter_unavailable",
        }
    }

    /// The `limit` label of the refusal metric.
    pub fn limit(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::Unavailable => "unavailable",
        }
    }

    /// For a person.
    pub fn message(self, tier: &str) -> String {
        match self {
            Self::Requests => {
                format!("rate limit of the `{tier}` tier reached (requests per minute)")
            }
            Self::Tokens => format!("rate limit of the `{tier}` tier reached (tokens per minute)"),
            Self::Unavailable => "the rate limiter is unavailable; try again shortly".to_owned(),
        }
    }
}

impl Admission {
    /// Why the request is refused, or `None` when it may go on.
    pub fn refusal(&self) -> Option<Refusal> {
        let refused = |checked: &Checked| !checked.decision.allowed;
        if refused(&self.requests) {
            return Some(if self.requests.source == Source::FailedClosed {
                Refusal::Unavailable
            } else {
                Refusal::Requests
            });
        }
        match &self.tokens {
            Some(tokens) if refused(tokens) => Some(if tokens.source == Source::FailedClosed {
                Refusal::Unavailable
            } else {
                Refusal::Tokens
            }),
            _ => None,
        }
    }

    /// `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the allowance is whole
    /// again) of the requests limit, and on a refusal `Retry-After`.
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let d = &self.requests.decision;
        headers.insert(LIMIT.clone(), HeaderValue::from(d.limit));
        headers.insert(REMAINING.clone(), HeaderValue::from(d.remaining));
        headers.insert(
            RESET.clone(),
            HeaderValue::from(whole_seconds(d.reset_after)),
        );
        if self.refusal().is_some() {
            let wait = self.retry_after().map_or(1, whole_seconds).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(wait));
        }
    }

    /// How long the refused caller should wait.
    fn retry_after(&self) -> Option<Duration> {
        let of = |d: &Decision| (!d.allowed).then_some(d.retry_after).flatten();
        of(&self.requests.decision).or_else(|| self.tokens.as_ref().and_then(|t| of(&t.decision)))
    }
}

/// `d` in whole seconds, rounded up.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Limits {
    /// The limits of `settings`; `authenticated` when callers authenticate. With the Redis
    /// store the connection is made lazily: a Redis down at start is the failure mode, not
    /// a failed start.
    pub fn new(
        settings: &RateLimitSettings,
        redis_url: Option<&str>,
        authenticated: bool,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let local = LocalLimiter::new(settings.max_keys, Arc::clone(&clock));
        let limiter = match (settings.store, redis_url) {
            (LimitStore::Redis, Some(url)) => {
                let redis = RedisLimiter::new(
                    lazy_connection(url, settings.redis_timeout)?,
                    PREFIX.to_owned(),
                    settings.redis_timeout,
                );
                RateLimiter::redis(
                    redis,
                    local,
                    settings.failure_mode,
                    settings.replicas,
                    clock,
                )
            }
            _ => RateLimiter::memory(local),
        };
        Ok(Self {
            settings: settings.clone(),
            limiter,
            authenticated,
        })
    }

    /// Whether any caller is limited: authentication on, or anonymous callers limited.
    pub fn active(&self) -> bool {
        self.authenticated || self.settings.anonymous
    }

    /// The limiter's key and tier for `identity`; `None` when this caller is not limited
    /// (anonymous while `RATE_LIMIT_ANONYMOUS` is off, or an anonymous caller of unknown
    /// address).
    pub fn caller(&self, identity: &Identity) -> Option<Caller> {
        let (kind, subject): (&str, Cow<'_, str>) = match identity.method {
            AuthMethod::Anonymous => {
                if !self.settings.anonymous {
                    return None;
                }
                ("ip", Cow::Owned(address(identity.client?)))
            }
            AuthMethod::ApiKey => ("key", Cow::Borrowed(identity.subject.as_ref())),
            AuthMethod::Jwt => ("sub", Cow::Borrowed(identity.subject.as_ref())),
        };
        let (tier, _) = self.settings.tier(&identity.tier);
        let digest = Sha256::new()
            .chain_update(kind.as_bytes())
            .chain_update(b":")
            .chain_update(subject.as_bytes())
            .finalize();
        let mut key = String::with_capacity(32);
        for byte in digest.iter().take(16) {
            let _ = write!(key, "{byte:02x}");
        }
        Some(Caller {
            tier: tier.to_owned(),
            key,
        })
    }

    /// Takes one request from `caller`'s allowance, and checks that its tokens allowance is
    /// not spent.
    pub async fn admit(&self, caller: &Caller) -> Admission {
        let (_, limit) = self.settings.tier(&caller.tier);
        let requests = self
            .limiter
            .check(&self.key('r', caller), &limit.requests, 1, Charge::Admit)
            .await;
        let tokens = match (&limit.tokens, requests.decision.allowed) {
            (Some(quota), true) => Some(
                self.limiter
                    .check(&self.key('t', caller), quota, 0, Charge::Admit)
                    .await,
            ),
            _ => None,
        };
        Admission { requests, tokens }
    }

    /// Charges `tokens` an answer used to `caller`'s tokens allowance (when its tier has
    /// one): the next request is refused while the caller is in debt.
    pub async fn charge_tokens(&self, caller: &Caller, tokens: u32) {
        let (_, limit) = self.settings.tier(&caller.tier);
        if let (Some(quota), true) = (&limit.tokens, tokens > 0) {
            self.limiter
                .check(&self.key('t', caller), quota, tokens, Charge::Force)
                .await;
        }
    }

    /// Whether `caller`'s tier limits tokens.
    pub fn limits_tokens(&self, caller: &Caller) -> bool {
        self.settings.tier(&caller.tier).1.tokens.is_some()
    }

    /// The store's state, for the metrics.
    pub fn status(&self) -> StoreStatus {
        self.limiter.status()
    }

    /// The store's state after trying an unreachable Redis again when its back-off allows,
    /// for `/health` (a replica without traffic still sees Redis come back).
    pub async fn probe(&self) -> StoreStatus {
        self.limiter.probe().await
    }

    /// The store's key of `caller` for requests (`r`) or tokens (`t`).
    fn key(&self, kind: char, caller: &Caller) -> String {
        format!("{kind}:{}:{}", caller.tier, caller.key)
    }
}

/// A connection manager to `url` that connects on first use (a Redis down at start is
/// the failure mode's business) and reconnects by itself, each connect and reply bounded
/// by `timeout`.
fn lazy_connection(url: &str, timeout: Duration) -> anyhow::Result<ConnectionManager> {
    let client =
        redis::Client::open(url).map_err(|_| anyhow::anyhow!("REDIS_URL is not a Redis URL"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| anyhow::anyhow!("the rate limiter's Redis connection: {:?}", e.kind()))
}

/// An address as a limiter subject: IPv4-mapped IPv6 addresses as IPv4, so one client is
/// one key.
fn address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

#[cfg(test)]
mod tests;
