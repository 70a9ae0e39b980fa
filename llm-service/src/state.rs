//! The state every handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use resilience_core::health::CompositeHealthChecker;

use crate::config::Config;
use crate::faults::FaultSet;
use crate::metrics::Metrics;
use crate::registration::RegistrationState;
use crate::sim::Simulator;

/// Shared by all handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The settings.
    pub config: Arc<Config>,
    /// Active faults.
    pub faults: Arc<FaultSet>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Latency, failures and text of the simulated model.
    pub sim: Arc<Simulator>,
    /// Registration in the registry, for `/health`.
    pub registration: Arc<RegistrationState>,
    /// When the service started.
    pub started: Instant,
    /// Requests being answered now.
    pub in_flight: Arc<AtomicU64>,
    /// What `/health` runs.
    pub health: Arc<CompositeHealthChecker>,
}

impl AppState {
    /// State for `config`, with no faults, fresh metrics and no registration yet.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let sim = Simulator::from_config(&config);
        let faults = FaultSet::new();
        let metrics = Arc::new(Metrics::new(&config.service_id, &config.model_name)?);
        let registration = Arc::new(RegistrationState::new(config.redis_url.is_some()));
        let health = crate::health::checker(&config, &faults, &metrics, &registration);
        Ok(Self {
            faults,
            metrics,
            sim: Arc::new(sim),
            registration,
            health: Arc::new(health),
            config: Arc::new(config),
            started: Instant::now(),
            in_flight: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Counts a request in flight until the guard drops.
    pub fn enter(&self) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.in_flight.inc();
        InFlightGuard {
            in_flight: Arc::clone(&self.in_flight),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// One request in flight.
pub struct InFlightGuard {
    in_flight: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.metrics.in_flight.dec();
    }
}
