//! The owner side of a registry entry: register, heartbeat, re-register, deregister.
//!
//! A service that announces itself holds a [`Registration`]. Its task registers at once, then
//! heartbeats every interval; when a heartbeat answers that the entry is gone (Redis restarted,
//! or this process stalled past the TTL) it registers again. Failures are logged and recorded
//! for `/health`, never fatal: losing the registry degrades a service, it does not stop it.
//! After a failure it retries with exponential backoff (from 200 ms, capped at the
//! heartbeat interval), so a registry that comes back is rejoined quickly without a storm.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::{Instance, ServiceRegistry, ttl_millis};
use crate::error::{Error, Result};

/// What the registration task last achieved, as `/health` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrationStatus {
    /// Whether the last operation left the entry in place (false before the first attempt,
    /// after a failure and after deregistration).
    pub registered: bool,
    /// Register and heartbeat calls made so far, failed ones included.
    pub attempts: u64,
    /// Successful registrations (1 after start, +1 per re-registration).
    pub registrations: u64,
    /// Successful heartbeats that found the entry alive.
    pub heartbeats: u64,
    /// Failed calls since the last success.
    pub consecutive_failures: u32,
    /// The last failure, kept after recovery for diagnosis.
    pub last_error: Option<String>,
}

/// A running registration of one instance; deregister it on shutdown.
///
/// Dropping it without [`deregister`](Self::deregister) stops the heartbeats; the entry then
/// disappears when its TTL runs out.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<dyn ServiceRegistry>,
    service: String,
    id: String,
    op_timeout: Duration,
    status: watch::Receiver<RegistrationStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// What one round of the task does.
struct Heartbeater {
    registry: Arc<dyn ServiceRegistry>,
    instance: Instance,
    ttl: Duration,
    op_timeout: Duration,
    status: watch::Sender<RegistrationStatus>,
}

impl Registration {
    /// Starts registering `instance` with `ttl`, heartbeating every `interval`; the first
    /// registration is attempted at once, in the background. Must run inside a Tokio runtime
    /// (it panics otherwise, as `tokio::spawn` does).
    ///
    /// Each call is bounded by `interval`, so a hung backend cannot stall the cadence. Fails
    /// with [`Error::InvalidConfig`] when `interval` is zero or not shorter than `ttl` (the
    /// entry would expire between heartbeats; a third of the TTL is the usual choice).
    pub fn spawn(
        registry: Arc<dyn ServiceRegistry>,
        instance: Instance,
        ttl: Duration,
        interval: Duration,
    ) -> Result<Self> {
        ttl_millis(ttl)?;
        // A bad instance would fail every round forever; refuse it up front instead.
        instance.validated_for_registry()?;
        if interval.is_zero() || interval >= ttl {
            return Err(Error::invalid_config(
                "registry heartbeat interval",
                format!("{interval:?} must be above zero and shorter than the TTL {ttl:?}"),
            ));
        }
        let (status_tx, status) = watch::channel(RegistrationStatus::default());
        let (stop, stop_rx) = oneshot::channel();
        let heartbeater = Heartbeater {
            registry: Arc::clone(&registry),
            instance: instance.clone(),
            ttl,
            op_timeout: interval,
            status: status_tx,
        };
        let task = tokio::spawn(heartbeater.run(interval, stop_rx));
        Ok(Self {
            registry,
            service: instance.service,
            id: instance.id,
            op_timeout: interval,
            status,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// A copy of the current status; never waits.
    pub fn status(&self) -> RegistrationStatus {
        self.status.borrow().clone()
    }

    /// Whether the entry is known to be in place.
    pub fn is_registered(&self) -> bool {
        self.status.borrow().registered
    }

    /// The last failure, if any happened.
    pub fn last_error(&self) -> Option<String> {
        self.status.borrow().last_error.clone()
    }

    /// Waits until the first registration attempt finished (successful or not) and returns
    /// the status then; returns at once if it already has.
    pub async fn first_attempt(&self) -> RegistrationStatus {
        let mut status = self.status.clone();
        match status.wait_for(|s| s.attempts > 0).await {
            Ok(seen) => seen.clone(),
            Err(_) => self.status(),
        }
    }

    /// Stops the heartbeats (letting an in-flight call finish) and deletes the entry.
    ///
    /// The delete is bounded by the heartbeat interval; its failure is returned (the entry
    /// then expires with its TTL).
    pub async fn deregister(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            // The task may already have ended; nothing to stop then.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "registration task ended abnormally");
        }
        let outcome = tokio::time::timeout(
            self.op_timeout,
            self.registry.deregister(&self.service, &self.id),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Error::Timeout {
                what: format!("deregistering `{}`", self.id),
                after_ms: u64::try_from(self.op_timeout.as_millis()).unwrap_or(u64::MAX),
            })
        });
        match &outcome {
            Ok(()) => tracing::info!(service = %self.service, id = %self.id, "deregistered"),
            Err(error) => tracing::warn!(service = %self.service, id = %self.id, %error,
                "deregistration failed; the entry will expire with its TTL"),
        }
        outcome
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Heartbeater {
    async fn run(self, interval: Duration, mut stop: oneshot::Receiver<()>) {
        let mut need_register = true;
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                () = tokio::time::sleep(wait) => {}
            }
            need_register = self.round(need_register).await;
            let failures = self.status.borrow().consecutive_failures;
            wait = next_wait(interval, failures, rand::random::<f64>());
        }
        self.status.send_modify(|s| s.registered = false);
    }

    /// One register-or-heartbeat call; returns whether the next round must register.
    async fn round(&self, need_register: bool) -> bool {
        let (service, id) = (&self.instance.service, &self.instance.id);
        let outcome = if need_register {
            self.bounded(self.registry.register(&self.instance, self.ttl))
                .await
                .map(|()| Step::Registered)
        } else {
            match self
                .bounded(self.registry.heartbeat(service, id, self.ttl))
                .await
            {
                Ok(true) => Ok(Step::Heartbeat),
                Ok(false) => {
                    tracing::info!(%service, %id, "registry entry had expired; registering again");
                    self.bounded(self.registry.register(&self.instance, self.ttl))
                        .await
                        .map(|()| Step::Registered)
                }
                Err(e) => Err(e),
            }
        };
        let was_failing = self.status.borrow().consecutive_failures > 0;
        match outcome {
            Ok(step) => {
                let backend = self.registry.backend();
                if step == Step::Registered {
                    tracing::info!(%service, %id, backend, "registered");
                } else if was_failing {
                    tracing::info!(%service, %id, backend, "registry heartbeat recovered");
                }
                self.status.send_modify(|s| {
                    s.attempts += 1;
                    s.registered = true;
                    s.consecutive_failures = 0;
                    match step {
                        Step::Registered => s.registrations += 1,
                        Step::Heartbeat => s.heartbeats += 1,
                    }
                });
                false
            }
            Err(error) => {
                tracing::warn!(%service, %id, %error, "registry heartbeat failed; will retry");
                self.status.send_modify(|s| {
                    s.attempts += 1;
                    s.registered = false;
                    s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                    s.last_error = Some(error.to_string());
                });
                need_register
            }
        }
    }

    async fn bounded<T>(&self, call: super::BoxFuture<'_, Result<T>>) -> Result<T> {
        tokio::time::timeout(self.op_timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    what: format!("registry call for `{}`", self.instance.id),
                    after_ms: u64::try_from(self.op_timeout.as_millis()).unwrap_or(u64::MAX),
                })
            })
    }
}

/// The first retry after a failure comes after about this long; retries then back off
/// exponentially up to the heartbeat interval.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

/// The wait before the next round: the interval after a success; after `failures` failures
/// in a row, an exponential backoff from [`FIRST_RETRY_DELAY`] capped at the interval, with
/// "equal jitter" (half fixed, half drawn by `unit` in [0, 1)) so that instances that lost
/// the registry together do not all come back in the same millisecond.
pub(crate) fn next_wait(interval: Duration, failures: u32, unit: f64) -> Duration {
    if failures == 0 {
        return interval;
    }
    let policy = crate::retry::RetryPolicy {
        max_attempts: u32::MAX,
        base_delay: FIRST_RETRY_DELAY.min(interval),
        max_delay: interval,
    };
    let ceiling = policy.ceiling(failures - 1);
    ceiling / 2 + policy.backoff_at(failures - 1, unit) / 2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Registered,
    Heartbeat,
}
