//! The shared rate-limit store: GCRA in Redis, one round trip per check.
//!
//! A key `<prefix><key>` holds the key's `tat` (µs since the epoch, as a decimal string).
//! [`GCRA_LUA`] is [`decide`](super::decide) written in Lua, step for step, with Redis's own
//! `TIME` as now, so every replica reads one clock and enforces one limit. The key is written
//! with `PX` set to when its bucket would be full again: a key that carries no information
//! disappears by itself, so the store needs no sweeping and never `SCAN`s.
//!
//! Lua numbers are doubles: integers are exact below 2^53 µs (about 285 years after the
//! epoch), which bounds every `tat`, tolerance and product the script computes for any
//! sensible quota; `math.floor` keeps divisions whole.

use std::fmt;
use std::time::Duration;

use ::redis::Script;
use ::redis::aio::ConnectionManager;

use super::error::LimitError;
use super::gcra::{Charge, Decision, Quota, decision_from};

/// `KEYS[1]` the key; `ARGV` emission interval µs, burst, cost, `admit` | `force`. Returns
/// allowed (0/1), remaining, reset_after µs, retry_after µs (-1: none / never).
pub const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local force = ARGV[4] == 'force'
local tolerance = burst * interval
local stored = redis.call('GET', KEYS[1])
local base = now
if stored then
  local tat = tonumber(stored)
  if tat and tat > now then base = tat end
end
local charged = base + cost * interval
local ahead = charged - now
local allowed = ahead <= tolerance
local after = base
if cost > 0 and (allowed or force) then
  after = charged
  redis.call('SET', KEYS[1], string.format('%.0f', charged),
    'PX', string.format('%.0f', math.max(1, math.ceil(ahead / 1000))))
end
local spare = tolerance - (after - now)
local remaining = 0
if spare > 0 then
  remaining = math.floor(spare / interval)
  if remaining * interval > spare then remaining = remaining - 1 end
end
local retry = -1
if not allowed and (force or cost <= burst) then retry = ahead - tolerance end
return {allowed and 1 or 0, remaining, after - now, retry}
";

/// GCRA keys in Redis; see the module documentation.
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    op_timeout: Duration,
    script: Script,
}

impl RedisLimiter {
    /// A store on `conn` (a lazily connecting manager is fine) writing keys under `prefix`;
    /// every check is bounded by `op_timeout` (raised to at least 1 ms).
    pub fn new(conn: ConnectionManager, prefix: String, op_timeout: Duration) -> Self {
        Self {
            conn,
            prefix,
            op_timeout: op_timeout.max(Duration::from_millis(1)),
            script: Script::new(GCRA_LUA),
        }
    }

    /// The Redis key of `key`: `<prefix><key>`.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The bound on each check.
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// Charges `cost` units of `quota` to `key` (already hashed and bounded by the caller) in
    /// one `EVALSHA` (one `EVAL` the first time a server lacks the script). Fails with
    /// [`LimitError::Timeout`] past the operation timeout, [`LimitError::Redis`] otherwise.
    pub async fn check(
        &self,
        key: &str,
        quota: &Quota,
        cost: u32,
        mode: Charge,
    ) -> Result<Decision, LimitError> {
        let mut conn = self.conn.clone();
        let mut call = self.script.key(self.redis_key(key));
        call.arg(quota.emission_interval())
            .arg(quota.burst())
            .arg(cost)
            .arg(match mode {
                Charge::Admit => "admit",
                Charge::Force => "force",
            });
        let reply: Vec<i64> = tokio::time::timeout(self.op_timeout, call.invoke_async(&mut conn))
            .await
            .map_err(|_| LimitError::timeout(self.op_timeout))??;
        parse_reply(quota, &reply)
    }
}

/// The script's four integers as a [`Decision`].
fn parse_reply(quota: &Quota, reply: &[i64]) -> Result<Decision, LimitError> {
    let &[allowed, remaining, reset_after_us, retry_after_us] = reply else {
        return Err(LimitError::Redis(format!(
            "the rate-limit script returned {} values, expected 4",
            reply.len()
        )));
    };
    let whole = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(decision_from(
        quota,
        allowed == 1,
        whole(remaining),
        whole(reset_after_us),
        (retry_after_us >= 0).then(|| whole(retry_after_us)),
    ))
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_becomes_a_decision_rounded_like_decide() {
        let quota = Quota::per_minute(60, 5).unwrap();
        let d = parse_reply(&quota, &[0, 0, 3_000_000, 1_000_001]).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.limit, 60);
        assert_eq!(d.reset_after, Duration::from_secs(3));
        assert_eq!(d.retry_after, Some(Duration::from_millis(1001)));
        let never = parse_reply(&quota, &[0, 5, 0, -1]).unwrap();
        assert_eq!(never.retry_after, None);
        assert_eq!(never.remaining, 5);
    }

    #[test]
    fn a_reply_of_the_wrong_shape_is_an_error() {
        let quota = Quota::per_minute(60, 5).unwrap();
        assert!(matches!(
            parse_reply(&quota, &[1, 2]),
            Err(LimitError::Redis(_))
        ));
    }
}
