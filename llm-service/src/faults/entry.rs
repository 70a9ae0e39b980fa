//! One active fault: its spec, when it expires, what is left of its count, its hits, and the
//! resource it runs.

use std::time::Duration;

use llm_api::FieldError;
use llm_api::fault::{FaultSpec, FaultView};
use tokio::time::Instant;

use super::effects::Scope;
use super::resource::Resource;

/// An active fault, owned by the set. Dropping it stops its resource fault.
#[derive(Debug)]
pub(crate) struct Entry {
    /// `f-1`, `f-2`…
    pub(crate) id: String,
    /// What was asked for.
    pub(crate) spec: FaultSpec,
    /// Which requests it affects.
    pub(crate) scope: Scope,
    /// When it removes itself, if it has a duration.
    pub(crate) expires_at: Option<Instant>,
    /// Requests it may still affect, if it has a count.
    pub(crate) remaining: Option<u32>,
    /// Requests it affected.
    pub(crate) hits: u64,
    /// The running CPU or memory fault; held only to be dropped with the entry.
    pub(crate) _resource: Option<Resource>,
}

/// Why an entry left the set, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Its duration ran out.
    Expired,
    /// It affected its `count` of requests.
    UsedUp,
    /// `DELETE /chaos/faults/{id}`.
    Removed,
    /// `DELETE /chaos/faults`.
    Cleared,
}

impl Entry {
    /// An entry for `spec` added at `now`, with no resource yet.
    pub(crate) fn new(id: String, spec: FaultSpec, now: Instant) -> Result<Self, FieldError> {
        let expires_at = match spec.duration_s {
            Some(seconds) => Some(
                Duration::try_from_secs_f64(seconds)
                    .ok()
                    .and_then(|d| now.checked_add(d))
                    .ok_or_else(|| FieldError::new("duration_s", "is out of range"))?,
            ),
            None => None,
        };
        Ok(Self {
            id,
            scope: Scope::of(&spec.kind),
            remaining: spec.count,
            spec,
            expires_at,
            hits: 0,
            _resource: None,
        })
    }

    /// Whether its duration has run out at `now`.
    pub(crate) fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// How the API shows it at `now`.
    pub(crate) fn view(&self, now: Instant) -> FaultView {
        FaultView {
            id: self.id.clone(),
            spec: self.spec.clone(),
            expires_in_ms: self.expires_at.map(|at| {
                let left = at.saturating_duration_since(now);
                // Rounded up: a fault still listed never claims 0 ms left.
                u64::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
            }),
            remaining: self.remaining,
            hits: self.hits,
        }
    }

    /// Logs its leaving; called after the set's lock is released, as it is then dropped.
    pub(crate) fn log_exit(&self, exit: Exit) {
        let kind = self.spec.kind_name();
        let id = self.id.as_str();
        let hits = self.hits;
        match exit {
            Exit::Expired => tracing::warn!(fault_id = id, kind, hits, "fault expired"),
            Exit::UsedUp => tracing::warn!(fault_id = id, kind, hits, "fault used up its count"),
            Exit::Removed => tracing::warn!(fault_id = id, kind, hits, "fault removed"),
            Exit::Cleared => tracing::warn!(fault_id = id, kind, hits, "fault cleared"),
        }
    }
}
