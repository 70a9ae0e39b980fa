//! The one rate-limit decision: GCRA (generic cell rate algorithm) on one key's state.
//!
//! A key's state is a single number, its theoretical arrival time `tat` (µs since the Unix
//! epoch): the instant at which the key's bucket would be full again if nothing more were
//! spent. Spending `cost` units moves it `cost × T` later (`T`, the emission interval, is
//! 60 s / limit); a charge fits when it leaves `tat` at most `burst × T` ahead of now.
//! [`decide`] is pure: the in-process store and the Redis script (which mirrors it line by
//! line) read the state, call it (or its Lua twin) and write back what it says.

use std::time::Duration;

use crate::Error;

/// Microseconds in a minute: the period every [`Quota`] is expressed over.
const MINUTE_US: u64 = 60_000_000;

/// A tier's allowance: `limit` units (requests or tokens) per minute, of which at most
/// `burst` may be spent at once. The gateway's default is `burst = limit`: a whole minute's
/// allowance at once, then a steady refill of one unit every [`Quota::emission_interval`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: u32,
    burst: u32,
}

/// How a charge is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charge {
    /// Take `cost` only if it fits; a refused charge changes nothing. Cost 0 is a peek:
    /// allowed iff the key is not in debt.
    Admit,
    /// Always record `cost` (token usage reported after the answer), which may push the key
    /// into debt; the decision still says whether it was within the allowance.
    Force,
}

/// What a check concluded, in the form the gateway turns into headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the charge was within the allowance.
    pub allowed: bool,
    /// The quota's per-minute limit (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Whole units still spendable now, after this decision (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the bucket is full again, with nothing more spent (`X-RateLimit-Reset`).
    pub reset_after: Duration,
    /// When refused: until the charge would fit (for [`Charge::Force`]: until the key is out
    /// of debt), rounded up to whole milliseconds. `None` when allowed, and when an
    /// [`Charge::Admit`] of more than `burst` units can never fit.
    pub retry_after: Option<Duration>,
}

/// A decision and the state to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// What the caller is told.
    pub decision: Decision,
    /// The key's new theoretical arrival time (µs since the epoch); `Some` when the state must
    /// be written, `None` when it is unchanged.
    pub new_tat: Option<u64>,
}

impl Quota {
    /// `limit` units per minute, at most `burst` at once; both must be at least 1, else
    /// [`Error::InvalidConfig`] naming `rate_limit.limit` or `rate_limit.burst`.
    pub fn per_minute(limit: u32, burst: u32) -> Result<Self, Error> {
        if limit == 0 {
            return Err(Error::invalid_config(
                "rate_limit.limit",
                "must be at least 1 per minute",
            ));
        }
        if burst == 0 {
            return Err(Error::invalid_config(
                "rate_limit.burst",
                "must be at least 1",
            ));
        }
        Ok(Self { limit, burst })
    }

    /// Units per minute.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Units that may be spent at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// `T`: the time one unit takes to refill, 60 s / limit in µs (rounded down, at least 1).
    pub fn emission_interval(&self) -> u64 {
        (MINUTE_US / u64::from(self.limit.max(1))).max(1)
    }

    /// The share of this quota one of `replicas` enforces on its own (when the shared store
    /// is unreachable): limit and burst divided by `replicas`, rounded up, at least 1. Zero
    /// replicas count as one.
    #[must_use]
    pub fn share(&self, replicas: u32) -> Self {
        let n = replicas.max(1);
        Self {
            limit: self.limit.div_ceil(n).max(1),
            burst: self.burst.div_ceil(n).max(1),
        }
    }

    /// `burst × T`: how far ahead of now a key's `tat` may be after an allowed charge.
    fn tolerance(&self) -> u64 {
        u64::from(self.burst).saturating_mul(self.emission_interval())
    }
}

/// Decides a charge of `cost` units at `now_us` on a key whose state is `tat` (`None`: never
/// seen, or expired — a full bucket). Arithmetic saturates, and a `now_us` earlier than a
/// previous call's (a clock stepping back) only makes the key look busier; nothing panics.
pub fn decide(quota: &Quota, tat: Option<u64>, now_us: u64, cost: u32, mode: Charge) -> Verdict {
    let interval = quota.emission_interval();
    let tolerance = quota.tolerance();
    // A tat in the past means a full bucket: the spare time is not banked.
    let base = tat.unwrap_or(now_us).max(now_us);
    let charged = base.saturating_add(u64::from(cost).saturating_mul(interval));
    let ahead = charged - now_us;
    let allowed = ahead <= tolerance;
    let writes = cost > 0 && (allowed || mode == Charge::Force);
    let after = if writes { charged } else { base };
    let retry_after_us = if allowed || (mode == Charge::Admit && cost > quota.burst) {
        None
    } else {
        Some(ahead - tolerance)
    };
    Verdict {
        decision: decision_from(
            quota,
            allowed,
            remaining_units(after - now_us, tolerance, interval),
            after - now_us,
            retry_after_us,
        ),
        new_tat: writes.then_some(charged),
    }
}

/// A [`Decision`] from the numbers a store computed (µs), rounding `retry_after` up to whole
/// milliseconds; the Redis script's reply goes through here too, so both stores round alike.
pub(crate) fn decision_from(
    quota: &Quota,
    allowed: bool,
    remaining: u64,
    reset_after_us: u64,
    retry_after_us: Option<u64>,
) -> Decision {
    Decision {
        allowed,
        limit: quota.limit,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset_after: Duration::from_micros(reset_after_us),
        retry_after: retry_after_us.map(|us| Duration::from_millis(us.div_ceil(1000))),
    }
}

/// Whole units that still fit when the key's `tat` is `ahead` µs past now.
fn remaining_units(ahead: u64, tolerance: u64, interval: u64) -> u64 {
    tolerance.saturating_sub(ahead) / interval.max(1)
}
