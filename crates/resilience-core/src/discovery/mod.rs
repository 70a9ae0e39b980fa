//! Discovery: a lock-free, background-refreshed view of one service's instances.
//!
//! A [`DiscoveryClient`] (`client.rs`) merges the configured static instances with what a
//! dynamic [`ServiceRegistry`](crate::registry::ServiceRegistry) lists, and publishes the result
//! as an immutable [`DiscoverySnapshot`] (`snapshot.rs`) through an `ArcSwap`: the hot path
//! loads it without locking or waiting, and never talks to the registry.
//!
//! [`DiscoveryClient::spawn`] runs the refresh loop as a [`DiscoveryTask`] (`task.rs`). The
//! merge rule (`merge.rs`): one instance per normalized base URL; a registry entry replaces the
//! static one with the same URL (it carries the real `SERVICE_ID` and model); static
//! instances keep their configured order, the remaining registry instances follow by id.
//!
//! When the registry fails, the last good list stays published, marked `stale`, with the
//! error recorded: an outage of Redis must never empty the pool of a gateway that was serving.

mod client;
mod merge;
mod snapshot;
mod task;

#[cfg(test)]
mod tests;

pub use self::client::{DEFAULT_REFRESH_TIMEOUT, DiscoveryClient};
pub use self::snapshot::DiscoverySnapshot;
pub use self::task::DiscoveryTask;
