//! What every check works with ([`Ctx`]): the clients, the stack, the instances found at
//! steady state, the report, and the record of what the checks disturbed, so that
//! [`Ctx::restore`] can put it back (start what was stopped, clear faults, reset the
//! breaker, wait for steady state) after every destructive check, failed or not.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use llm_api::fault::FaultSpec;
use llm_api::gateway::{GatewayHealth, HealthStatus};
use stack_control::{REDIS, ServiceStatus};

use super::client::{GatewayClient, LlmClient, health};
use super::doc::Doc;
use super::report::{Category, CheckResult, Outcome, Report, Verdict, format_duration};
use super::stack::{Stack, find};
pub use super::wait::{Polled, Steady};
use super::wait::{poll, wait_steady};

/// How long the checks wait for things; the defaults fit a default `lab up`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Reaching steady state, at the start and after each restore.
    pub steady_timeout: Duration,
    /// The gateway noticing an instance or a dependency leave or come back.
    pub change_timeout: Duration,
    /// Between two reads while polling.
    pub poll_interval: Duration,
    /// The breaker's recovery timeout when its snapshot does not say.
    pub recovery_default: Duration,
    /// Chaos scenario 2's Redis outage.
    pub redis_outage: Duration,
    /// The sustained-throughput run.
    pub sustained: Duration,
    /// The burst run.
    pub burst: Duration,
    /// Prometheus, when the stack's status gives no URL.
    pub prometheus_url: String,
    /// Grafana, when the stack's status gives no URL.
    pub grafana_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            steady_timeout: Duration::from_secs(60),
            change_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            recovery_default: Duration::from_secs(30),
            redis_outage: Duration::from_secs(30),
            sustained: Duration::from_secs(30),
            burst: Duration::from_secs(10),
            prometheus_url: "http://127.0.0.1:9090".into(),
            grafana_url: "http://127.0.0.1:3000".into(),
        }
    }
}

/// An llm-service instance: its id, a URL this process can reach it at, and its tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its `SERVICE_ID`.
    pub id: String,
    /// Its base URL.
    pub url: String,
    /// The tier the gateway has it in (`primary`, `secondary`).
    pub tier: String,
}

/// The tier of the instances the gateway falls back to when its primary pool cannot answer.
pub const SECONDARY_TIER: &str = "secondary";

/// What the checks changed and a restore must undo.
#[derive(Debug, Default)]
struct Disturbed {
    stopped: BTreeSet<String>,
    faulted: BTreeSet<String>,
}

/// The state shared by every check: its [`CtxParts`] (reached through `Deref`), and what
/// the run learns and records.
#[derive(Debug)]
pub struct Ctx {
    parts: CtxParts,
    /// The instances found at steady state.
    pub instances: Vec<Instance>,
    /// `available_services` at steady state (at least 2): what a restore waits for.
    pub baseline: u64,
    report: Mutex<Report>,
    disturbed: Mutex<Disturbed>,
    fallback_times: Mutex<Vec<Duration>>,
}

/// What a [`Ctx`] is made of.
#[derive(Debug)]
pub struct CtxParts {
    /// The HTTP client (for probes).
    pub http: reqwest::Client,
    /// The gateway under test.
    pub gateway: GatewayClient,
    /// The llm-services' fault API and health.
    pub llm: LlmClient,
    /// The controller, when a stack was found.
    pub stack: Option<Stack>,
    /// Why there is no controller, for the skipped checks.
    pub no_stack: String,
    /// Wait times.
    pub settings: Settings,
    /// Only checks whose name (or category) contains this, case-insensitively.
    pub only: Option<String>,
    /// Print each check as it finishes.
    pub echo: bool,
}

impl std::ops::Deref for Ctx {
    type Target = CtxParts;

    fn deref(&self) -> &CtxParts {
        &self.parts
    }
}

impl std::ops::DerefMut for Ctx {
    fn deref_mut(&mut self) -> &mut CtxParts {
        &mut self.parts
    }
}

impl Ctx {
    /// A context with no instances known yet (see [`Ctx::set_instances`]).
    pub fn new(mut parts: CtxParts) -> Self {
        parts.only = parts.only.map(|s| s.to_lowercase());
        let echo = parts.echo;
        Self {
            parts,
            instances: Vec::new(),
            baseline: 2,
            report: Mutex::new(Report::new(echo)),
            disturbed: Mutex::new(Disturbed::default()),
            fallback_times: Mutex::new(Vec::new()),
        }
    }

    /// Records the instances of a steady state; their URLs are the controller's when it
    /// knows a service of that id (a compose service's `/health` URL is internal).
    pub fn set_instances(&mut self, steady: &Steady, status: &[ServiceStatus]) {
        self.baseline = steady.available.max(2);
        self.instances = steady
            .services
            .iter()
            .map(|s| Instance {
                id: s.id.clone(),
                url: find(status, &s.id)
                    .and_then(|st| st.url.clone())
                    .filter(|u| u.starts_with("http"))
                    .unwrap_or_else(|| s.url.clone())
                    .trim_end_matches('/')
                    .to_owned(),
                tier: s.tier.clone(),
            })
            .collect();
    }

    /// The instances of the secondary tier found at steady state (the lab's llm_service_3).
    pub fn secondaries(&self) -> Vec<&Instance> {
        self.instances
            .iter()
            .filter(|i| i.tier == SECONDARY_TIER)
            .collect()
    }

    // ---- selection and recording -------------------------------------------------------

    /// Whether `name` (or its category) matches `--only`.
    pub fn selected(&self, category: Category, name: &str) -> bool {
        self.only.as_deref().is_none_or(|only| {
            name.to_lowercase().contains(only) || category.label().to_lowercase().contains(only)
        })
    }

    /// Prints the group heading when any of `names` is selected; tells whether to run it.
    pub fn begin(&self, category: Category, names: &[&str]) -> bool {
        let wanted = names.iter().any(|n| self.selected(category, n));
        if wanted {
            self.note("");
            self.note(&category.heading());
        }
        wanted
    }

    /// Runs one check when selected: times it, turns an error into a failure, records it.
    pub async fn check<F>(&self, category: Category, name: &str, check: F) -> Option<Outcome>
    where
        F: Future<Output = anyhow::Result<Verdict>>,
    {
        if !self.selected(category, name) {
            return None;
        }
        Some(self.step(category, name, check).await)
    }

    /// Runs one step of a scenario that runs (its steps depend on each other, so `--only`
    /// selects the scenario, not the step): times it, turns an error into a failure,
    /// records it.
    pub async fn step<F>(&self, category: Category, name: &str, check: F) -> Outcome
    where
        F: Future<Output = anyhow::Result<Verdict>>,
    {
        let started = Instant::now();
        let verdict = check
            .await
            .unwrap_or_else(|error| Verdict::fail(format!("{error:#}")));
        self.record(category, name, started, verdict)
    }

    /// Records a step of a scenario that started at `started`.
    pub fn record(
        &self,
        category: Category,
        name: &str,
        started: Instant,
        verdict: Verdict,
    ) -> Outcome {
        let outcome = verdict.outcome;
        self.report().record(CheckResult {
            name: name.to_owned(),
            category,
            verdict,
            duration: started.elapsed(),
        });
        outcome
    }

    /// Prints a line (not a check).
    pub fn note(&self, line: &str) {
        self.report().note(line);
    }

    /// The report so far.
    pub fn report(&self) -> MutexGuard<'_, Report> {
        self.report.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a fallback answer's latency for the performance group.
    pub fn note_fallback_time(&self, elapsed: Duration) {
        lock(&self.fallback_times).push(elapsed);
    }

    /// The fallback latencies seen so far.
    pub fn fallback_times(&self) -> Vec<Duration> {
        lock(&self.fallback_times).clone()
    }

    // ---- the stack ---------------------------------------------------------------------

    /// The stack, or the skip verdict of a check that needs one.
    pub fn stack(&self) -> Result<&Stack, Verdict> {
        self.stack
            .as_ref()
            .ok_or_else(|| Verdict::skip(format!("no stack to control: {}", self.no_stack)))
    }

    /// The stack's services now; `None` without a stack or when it cannot say.
    pub async fn status(&self) -> Option<Vec<ServiceStatus>> {
        self.stack.as_ref()?.controller.status().await.ok()
    }

    /// Stops `service`, remembering to start it again.
    pub async fn stop(&self, service: &str) -> anyhow::Result<()> {
        let stack = self.stack().map_err(|v| anyhow::anyhow!(v.detail))?;
        lock(&self.disturbed).stopped.insert(service.to_owned());
        stack
            .controller
            .stop(service)
            .await
            .map_err(|e| anyhow::anyhow!("stopping {service}: {e}"))
    }

    /// Starts `service` and waits until it is healthy.
    pub async fn start(&self, service: &str) -> anyhow::Result<()> {
        let stack = self.stack().map_err(|v| anyhow::anyhow!(v.detail))?;
        stack
            .controller
            .start(service)
            .await
            .map_err(|e| anyhow::anyhow!("starting {service}: {e}"))?;
        lock(&self.disturbed).stopped.remove(service);
        Ok(())
    }

    /// Restarts `service` and waits until it is healthy.
    pub async fn restart(&self, service: &str) -> anyhow::Result<()> {
        let stack = self.stack().map_err(|v| anyhow::anyhow!(v.detail))?;
        lock(&self.disturbed).stopped.insert(service.to_owned());
        stack
            .controller
            .restart(service)
            .await
            .map_err(|e| anyhow::anyhow!("restarting {service}: {e}"))?;
        lock(&self.disturbed).stopped.remove(service);
        Ok(())
    }

    /// Injects `spec` into every instance, remembering to clear them.
    pub async fn fault_every_instance(&self, spec: &FaultSpec) -> anyhow::Result<()> {
        anyhow::ensure!(!self.instances.is_empty(), "no llm-service instance known");
        for instance in &self.instances {
            lock(&self.disturbed).faulted.insert(instance.url.clone());
            self.llm
                .add_fault(&instance.url, spec)
                .await
                .map_err(|e| anyhow::anyhow!("injecting a fault into {}: {e:#}", instance.id))?;
        }
        Ok(())
    }

    /// Clears the faults this suite injected.
    pub async fn clear_faults(&self) -> anyhow::Result<()> {
        let faulted: Vec<String> = lock(&self.disturbed).faulted.iter().cloned().collect();
        let mut problems = Vec::new();
        for url in faulted {
            match self.llm.clear_faults(&url).await {
                Ok(()) => {
                    lock(&self.disturbed).faulted.remove(&url);
                }
                Err(error) => problems.push(format!("{error:#}")),
            }
        }
        anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
        Ok(())
    }

    /// Whether anything is still stopped or faulted.
    pub fn is_disturbed(&self) -> bool {
        let disturbed = lock(&self.disturbed);
        !disturbed.stopped.is_empty() || !disturbed.faulted.is_empty()
    }

    /// Puts the stack back after `scenario` (its checks already recorded, passed or failed):
    /// starts what was stopped (Redis first), clears faults, resets the breaker and waits
    /// for steady state. A restore that fails is recorded as a failed check of `category`.
    pub async fn restore(&self, category: Category, scenario: &str) {
        let started = Instant::now();
        let mut problems = Vec::new();
        let mut stopped: Vec<String> = lock(&self.disturbed).stopped.iter().cloned().collect();
        // Redis first: the llm-services register in it when they start.
        stopped.sort_by_key(|s| s != REDIS);
        for service in &stopped {
            if let Err(error) = self.start(service).await {
                problems.push(format!("{error:#}"));
            }
        }
        if let Err(error) = self.clear_faults().await {
            problems.push(format!("{error:#}"));
        }
        if let Err(error) = self.gateway.reset_breaker().await {
            problems.push(format!("{error:#}"));
        }
        if let Err(error) = self.wait_steady().await {
            problems.push(error);
        }
        if problems.is_empty() {
            self.note(&format!(
                "   ↺ {scenario}: stack restored ({})",
                format_duration(started.elapsed())
            ));
        } else {
            self.record(
                category,
                &format!("restore after {scenario}"),
                started,
                Verdict::fail(problems.join("; ")),
            );
        }
    }

    // ---- waiting -----------------------------------------------------------------------

    /// Waits for steady state: `/health` 2xx, at least [`Ctx::baseline`] instances
    /// available, the breaker CLOSED.
    pub async fn wait_steady(&self) -> Result<Steady, String> {
        wait_steady(
            &self.gateway,
            self.baseline,
            self.settings.steady_timeout,
            self.settings.poll_interval,
        )
        .await
    }

    /// Reads the gateway's `/health` until its `overall_status` is `want` or `timeout`
    /// passes; the value is the last reading.
    pub async fn wait_health(
        &self,
        want: HealthStatus,
        timeout: Duration,
    ) -> Polled<anyhow::Result<Doc<GatewayHealth>>> {
        self.poll(
            timeout,
            || self.gateway.health(),
            |reading| reading.as_ref().is_ok_and(|doc| health::is(doc, want)),
        )
        .await
    }

    /// Reads `probe` every poll interval until `done` holds or `timeout` passes (the first
    /// read is immediate); returns the last reading and whether it was done.
    pub async fn poll<T, P, Fut>(
        &self,
        timeout: Duration,
        probe: P,
        done: impl Fn(&T) -> bool,
    ) -> Polled<T>
    where
        P: FnMut() -> Fut,
        Fut: Future<Output = T>,
    {
        poll(timeout, self.settings.poll_interval, probe, done).await
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
