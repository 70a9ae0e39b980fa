//! Resilience machinery shared by every binary of the platform, with no web framework inside.
//!
//! - [`clock`]: the injected time source ([`Clock`], [`SystemClock`], [`ManualClock`]).
//! - [`breaker`]: the circuit breaker (CLOSED / OPEN / HALF_OPEN), with rate windows,
//!   half-open probes, bulkhead, reopen backoff and a transition hook.
//! - [`retry`]: retry policy (exponential backoff with full jitter and a cap) and retry budget.
//! - [`registry`]: the service registry trait and its Redis, static and in-memory backends.
//! - [`discovery`]: a background-refreshed, lock-free snapshot of a service's instances.
//! - [`health`]: per-instance health from active and passive signals, and the composite
//!   health checker behind `/health`.
//! - [`balancer`]: round robin and power-of-two-choices on least outstanding requests.
//! - [`fallback`]: the tiered fallback chain, with response-cache and template providers.
//! - [`policy`]: every decision of a request after an outcome — retry which candidate,
//!   after what wait, or give up; move to the next tier or stop; follow a route's
//!   larger-context fallback — as pure, time-injected code the binaries execute.
//! - [`error`]: the crate's classified error type.
//!
//! State machines take their instants from a [`Clock`] or as explicit `now` arguments, so
//! they are tested without sleeping:
//!
//! ```
//! use std::time::Duration;
//! use resilience_core::ManualClock;
//! use resilience_core::breaker::{Breaker, BreakerConfig, StateKind};
//!
//! let clock = ManualClock::new();
//! let config = BreakerConfig { failure_threshold: 2, ..BreakerConfig::default() };
//! let breaker = Breaker::new("pool", config, clock.clone())?;
//! for _ in 0..2 {
//!     breaker.try_acquire()?.failure();
//! }
//! assert_eq!(breaker.state(), StateKind::Open);
//! assert!(breaker.try_acquire().is_err(), "OPEN rejects without making the call");
//! clock.advance(Duration::from_secs(30));
//! assert_eq!(breaker.state(), StateKind::HalfOpen);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod balancer;
pub mod breaker;
pub mod clock;
pub mod discovery;
pub mod error;
pub mod fallback;
pub mod health;
pub mod limit;
pub mod policy;
pub mod registry;
pub mod retry;
mod window;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::{Error, Fault, Result};

/// This crate's version, as the binaries report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
