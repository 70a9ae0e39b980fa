//! Active health checking: probe every instance concurrently, each under a timeout, and
//! record the results in the [`HealthTracker`].
//!
//! The core knows no HTTP, so the binary supplies a [`HealthProbe`] (typically `GET
//! {url}/health`). A round probes all targets at once, so one hung instance costs the round
//! one timeout, not one timeout per instance. The background loop publishes how many rounds
//! have finished, because the gateway must not answer `/health` with 2xx before the first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::BoxFuture;
use super::instance::HealthTransition;
use super::tracker::HealthTracker;

/// Asks one instance whether it is fit for traffic; implemented by the binary over HTTP.
pub trait HealthProbe: Send + Sync {
    /// Probes instance `id` at base URL `url`: `Ok(())` when it answered well, `Err` with a
    /// short message otherwise. Need not bound itself: the checker applies the configured
    /// timeout and counts it as a failure `timed out after N ms`.
    fn probe<'a>(&'a self, id: &'a str, url: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// One instance to probe: its id (the tracker's key) and its base URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeTarget {
    /// The instance id.
    pub id: String,
    /// The instance's base URL, handed to the probe.
    pub url: String,
}

impl ProbeTarget {
    /// A target for instance `id` at `url`.
    pub fn new(id: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            url: url.into(),
        }
    }
}

impl<I: Into<String>, U: Into<String>> From<(I, U)> for ProbeTarget {
    fn from((id, url): (I, U)) -> Self {
        Self::new(id, url)
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Instances probed (duplicate ids in the target list are probed once).
    pub checked: usize,
    /// Probes that succeeded within the timeout.
    pub passed: usize,
    /// Transitions the round caused, with the instance id, in completion order.
    pub transitions: Vec<(String, HealthTransition)>,
}

/// A callback told of every transition a round causes, for logs, metrics and persistence.
pub type TransitionHook = Arc<dyn Fn(&str, &HealthTransition) + Send + Sync>;

/// Runs probe rounds over a list of instances and records the results in a tracker.
///
/// Cheap to clone (it holds `Arc`s); timings come from the tracker's [`HealthCheckConfig`].
///
/// [`HealthCheckConfig`]: super::HealthCheckConfig
#[derive(Clone)]
pub struct ActiveHealthChecker {
    tracker: Arc<HealthTracker>,
    probe: Arc<dyn HealthProbe>,
    on_transition: Option<TransitionHook>,
}

impl std::fmt::Debug for ActiveHealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveHealthChecker")
            .field("tracker", &self.tracker)
            .field("on_transition", &self.on_transition.is_some())
            .finish_non_exhaustive()
    }
}

/// The owner of a background checking loop started by [`ActiveHealthChecker::spawn`].
///
/// Dropping it stops the loop; [`CheckerHandle::stop`] stops it and waits until it has.
#[derive(Debug)]
pub struct CheckerHandle {
    rounds: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl ActiveHealthChecker {
    /// A checker probing through `probe` and recording into `tracker`.
    pub fn new(tracker: Arc<HealthTracker>, probe: Arc<dyn HealthProbe>) -> Self {
        Self {
            tracker,
            probe,
            on_transition: None,
        }
    }

    /// Calls `hook` with the instance id for every transition a round causes, right after it
    /// is recorded; the hook runs on the checker's task, so it must not block.
    pub fn on_transition(
        mut self,
        hook: impl Fn(&str, &HealthTransition) + Send + Sync + 'static,
    ) -> Self {
        self.on_transition = Some(Arc::new(hook));
        self
    }

    /// The tracker this checker records into.
    pub fn tracker(&self) -> &Arc<HealthTracker> {
        &self.tracker
    }

    /// Probes every target concurrently, each bounded by the configured timeout, records
    /// each result as it arrives and returns what the round did.
    ///
    /// Never fails: a probe error, a timeout (`timed out after N ms`) or a panicking probe
    /// (`probe panicked`) is recorded as a failed check. Must run inside a Tokio runtime
    /// (probes are spawned tasks); dropping the future cancels the probes still running.
    pub async fn check_round(&self, targets: &[ProbeTarget]) -> RoundReport {
        let timeout = self.tracker.config().timeout;
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        let mut ids = HashMap::with_capacity(targets.len());
        let mut seen = HashSet::with_capacity(targets.len());
        for target in targets.iter().filter(|t| seen.insert(t.id.as_str())) {
            let probe = Arc::clone(&self.probe);
            let (id, url) = (target.id.clone(), target.url.clone());
            let task = tasks.spawn(async move {
                let probe_started = Instant::now();
                let result = match tokio::time::timeout(timeout, probe.probe(&id, &url)).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
                };
                (probe_started.elapsed(), result)
            });
            ids.insert(task.id(), target.id.clone());
        }

        let mut report = RoundReport {
            checked: ids.len(),
            ..RoundReport::default()
        };
        while let Some(joined) = tasks.join_next_with_id().await {
            let (task, latency, result) = match joined {
                Ok((task, (latency, result))) => (task, latency, result),
                Err(error) => {
                    let message = if error.is_panic() {
                        "probe panicked"
                    } else {
                        "probe cancelled"
                    };
                    (error.id(), started.elapsed(), Err(message.to_owned()))
                }
            };
            let Some(id) = ids.remove(&task) else {
                continue;
            };
            if result.is_ok() {
                report.passed += 1;
            }
            if let Some(transition) = self.tracker.record_active(&id, latency, result) {
                if let Some(hook) = &self.on_transition {
                    hook(&id, &transition);
                }
                report.transitions.push((id, transition));
            }
        }
        report
    }

    /// Starts a background loop: a round at once, then one every configured interval (a
    /// round that overruns delays the next rather than overlapping it). Before each round
    /// it calls `targets` for the current instances and drops from the tracker every
    /// instance no longer listed.
    ///
    /// Must be called inside a Tokio runtime (it spawns a task). The returned handle owns
    /// the loop and tells when the first round has finished.
    pub fn spawn<F>(&self, targets: F) -> CheckerHandle
    where
        F: Fn() -> Vec<ProbeTarget> + Send + Sync + 'static,
    {
        let checker = self.clone();
        let interval = self.tracker.config().interval;
        let (rounds_tx, rounds) = watch::channel(0_u64);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let targets = targets();
                checker
                    .tracker
                    .retain(targets.iter().map(|t| t.id.as_str()));
                checker.check_round(&targets).await;
                rounds_tx.send_modify(|n| *n = n.saturating_add(1));
            }
        });
        CheckerHandle { rounds, task }
    }
}

impl CheckerHandle {
    /// How many rounds have finished so far.
    pub fn rounds_completed(&self) -> u64 {
        *self.rounds.borrow()
    }

    /// Waits until at least one round has finished (at once if one has); returns `false`
    /// only if the loop ended before finishing one.
    pub async fn first_round(&self) -> bool {
        let mut rounds = self.rounds.clone();
        rounds.wait_for(|n| *n >= 1).await.is_ok()
    }

    /// Waits until the loop has finished `rounds` rounds in total, or at most `limit`;
    /// returns whether it got there.
    pub async fn wait_rounds(&self, rounds: u64, limit: Duration) -> bool {
        let mut receiver = self.rounds.clone();
        matches!(
            tokio::time::timeout(limit, receiver.wait_for(|n| *n >= rounds)).await,
            Ok(Ok(_))
        )
    }

    /// A receiver of the finished-round count, for a `/health` handler that answers 503
    /// until it reads at least 1.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.rounds.clone()
    }

    /// Stops the loop (cancelling a round in progress) and waits until it has stopped.
    pub async fn stop(mut self) {
        self.task.abort();
        // A cancelled task's `JoinError` is the expected outcome here.
        let _cancelled = (&mut self.task).await;
    }
}

impl Drop for CheckerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
