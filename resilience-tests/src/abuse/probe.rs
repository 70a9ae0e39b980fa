//! The well-behaved client: requests to the model route at a fixed rate, each with a
//! timeout, their success and latency kept until it is stopped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::rules::ClientFigures;
use super::target::Target;

/// A well-behaved request gives up after this long (and counts as a failure).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Prompts vary over this many variants, so that the response cache does not answer all.
const PROMPT_VARIANTS: u64 = 100;

/// Sends well-behaved requests.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    target: Arc<Target>,
}

/// A running well-behaved client; [`Running::stop`] returns what it saw.
#[derive(Debug)]
pub struct Running {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<(bool, Duration)>>,
}

impl Client {
    /// A client of `target` (no proxy, a request timeout).
    pub fn new(target: Arc<Target>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, target })
    }

    /// The underlying HTTP client (for the attacks that send ordinary requests).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// One well-behaved request: success when answered 2xx within the timeout.
    pub async fn once(&self, n: u64) -> (bool, Duration) {
        let started = Instant::now();
        let body = self
            .target
            .body(&format!("abuse probe {}", n % PROMPT_VARIANTS), None);
        let answer = self
            .http
            .post(self.target.url())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let ok = match answer {
            Ok(response) => {
                let success = response.status().is_success();
                success && response.bytes().await.is_ok()
            }
            Err(_) => false,
        };
        (ok, started.elapsed())
    }

    /// `GET path` answered 2xx within the timeout.
    pub async fn get_ok(&self, path: &str) -> bool {
        match self.http.get(self.target.at(path)).send().await {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }

    /// Starts sending `rate` requests per second until stopped.
    pub fn start(&self, rate: f64) -> Running {
        let (stop, mut stopped) = oneshot::channel();
        let client = self.clone();
        let period = Duration::from_secs_f64(1.0 / rate.max(0.1));
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut requests = JoinSet::new();
            let mut samples = Vec::new();
            let mut n = 0_u64;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => {
                        let client = client.clone();
                        requests.spawn(async move { client.once(n).await });
                        n += 1;
                    }
                    Some(Ok(sample)) = requests.join_next(), if !requests.is_empty() => {
                        samples.push(sample);
                    }
                }
            }
            // Each request has its own timeout, so this ends.
            while let Some(joined) = requests.join_next().await {
                if let Ok(sample) = joined {
                    samples.push(sample);
                }
            }
            samples
        });
        Running { stop, task }
    }

    /// Runs the client alone for `duration` and returns what it saw.
    pub async fn run_for(&self, rate: f64, duration: Duration) -> ClientFigures {
        let running = self.start(rate);
        tokio::time::sleep(duration).await;
        running.stop().await
    }
}

impl Running {
    /// Stops sending, waits for the requests in flight, and returns the figures.
    pub async fn stop(self) -> ClientFigures {
        let _ = self.stop.send(());
        let samples = self.task.await.unwrap_or_default();
        ClientFigures::from_samples(&samples)
    }
}
