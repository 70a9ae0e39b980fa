//! Fault injection: the set of active faults and what they do to one request.
//!
//! - [`set`]: [`FaultSet`], the active faults: add, list, remove, clear, the per-request draw
//!   ([`FaultSet::for_request`]) and the reaper that removes expired faults.
//! - [`effects`]: [`RequestFaults`] (with [`StreamFaults`] and [`ErrorFault`]), what the
//!   faults that hit do to one request; the routes act on it.
//! - `entry`: one active fault, its expiry, count and hits.
//! - `resource`: the `cpu_burn` and `memory` faults, running while their entry lives.
//!
//! Request faults (`latency`, `error`, `hang`, `reset`, `malformed`) touch every `/generate`
//! and chat request; stream faults only streaming chat requests; `unhealthy` only `/health`;
//! resource faults no request at all. A fault leaves the set when its `duration_s` runs out
//! (measured on tokio's clock, so paused-time tests control it), when it used up its
//! `count`, or when it is deleted; each arrival and departure logs one WARN line with its id
//! and kind.

pub mod effects;
mod entry;
mod resource;
pub mod set;

#[cfg(test)]
mod tests;

pub use effects::{ErrorFault, RequestFaults, StreamFaults};
pub use set::{FaultSet, REAP_INTERVAL};
