//! The background refresh loop of a [`DiscoveryClient`] and the handle that owns it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::client::DiscoveryClient;

/// The running refresh loop of a [`DiscoveryClient`]; stop it on shutdown.
///
/// Dropping the handle aborts the loop.
#[derive(Debug)]
pub struct DiscoveryTask {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl DiscoveryClient {
    /// Refreshes now and then every `interval` (a zero interval is raised to 1 ms), in a Tokio
    /// task. Failed rounds are logged and leave a stale snapshot; the loop keeps going. Must run
    /// inside a Tokio runtime (it panics otherwise, as `tokio::spawn` does).
    ///
    /// Await [`DiscoveryClient::wait_for_generation`]`(1)` to know the first round finished.
    pub fn spawn(self: Arc<Self>, interval: Duration) -> DiscoveryTask {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    _ = ticker.tick() => {}
                }
                // The client logs failures and publishes a stale snapshot itself.
                let _ = self.refresh().await;
            }
        });
        DiscoveryTask {
            stop: Some(stop),
            task: Some(task),
        }
    }
}

impl DiscoveryTask {
    /// Ends the loop, letting a round in progress finish (it is bounded by the refresh
    /// timeout), and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            // The loop may already have ended; nothing to stop then.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "discovery task ended abnormally");
        }
    }

    /// Whether the loop has ended (it only ends when stopped or aborted).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for DiscoveryTask {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
