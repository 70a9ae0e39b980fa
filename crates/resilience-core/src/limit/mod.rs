//! Rate limits per caller and tier, in one replica or shared by many.
//!
//! GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical arrival
//! time `tat` at which its bucket would be full again; a charge of `cost` fits when it leaves
//! `tat` at most `burst` emission intervals (60 s / limit) ahead of now. It gives the same
//! answers as a token bucket with a steady refill, without a refill timer or a second number.
//!
//! - `gcra`: [`Quota`] (limit per minute, burst) and [`decide`], the one pure
//!   decision — admit or force a charge, and what to tell the caller ([`Decision`]).
//! - `local`: [`LocalLimiter`], the in-process store — sharded, bounded in keys, refusing new
//!   keys when full rather than growing.
//! - `redis`: [`RedisLimiter`], the shared store — a Lua script ([`GCRA_LUA`]) that mirrors
//!   [`decide`] step for step on Redis's clock, one round trip per check, keys that expire
//!   when their bucket is full again.
//! - `store`: [`RateLimiter`], what the gateway calls — memory or Redis, and for Redis the
//!   [`FailureMode`] applied while it is unavailable, with a back-off ([`StoreBackoff`])
//!   between attempts to reach it again, and the [`StoreStatus`] `/health` reports.
//!
//! Time is `u64` microseconds since the Unix epoch rather than a monotonic instant, because
//! the Redis script reads Redis's `TIME` and both stores must compute the same thing from
//! the same kind of number; µs keep the emission interval exact enough for 10,000 per minute
//! and stay below 2^53, so Lua's doubles hold them exactly.

mod backoff;
mod error;
mod gcra;
mod local;
mod redis;
mod store;

#[cfg(test)]
mod tests;

pub use self::redis::{GCRA_LUA, RedisLimiter};
pub use backoff::{INITIAL_BACKOFF, MAX_BACKOFF, StoreBackoff};
pub use error::LimitError;
pub use gcra::{Charge, Decision, Quota, Verdict, decide};
pub use local::{LocalLimiter, OVERFLOW_RETRY_AFTER, SHARDS};
pub use store::{
    Checked, FAIL_CLOSED_RETRY_AFTER, FailureMode, Fallback, RateLimiter, Source, StoreKind,
    StoreStatus,
};
