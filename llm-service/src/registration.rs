//! Self-registration in the service registry (Redis), through `resilience-core`.
//!
//! Registration starts as soon as the service listens, heartbeats every third of the TTL,
//! registers again when the entry vanished, and keeps retrying (every heartbeat interval)
//! while Redis is down: the service answers all the while. On shutdown the entry is deleted
//! before the drain begins, so the gateway stops sending new work first.

use std::sync::{Arc, Mutex, PoisonError};

use llm_api::health::RegistrationHealth;
use resilience_core::registry::{Instance, LLM_SERVICE, RedisRegistry, Registration};

use crate::config::Config;

/// The registration, shared with `/health`.
#[derive(Debug)]
pub struct RegistrationState {
    enabled: bool,
    running: Mutex<Option<Registration>>,
}

impl RegistrationState {
    /// No registration yet; `enabled` when a registry is configured.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            running: Mutex::new(None),
        }
    }

    /// Starts registering this instance, reachable at `url`; does nothing without
    /// `REDIS_URL`. Fails only on settings that can never work (a malformed URL).
    pub fn start(&self, config: &Config, url: &str) -> anyhow::Result<()> {
        let Some(redis_url) = &config.redis_url else {
            return Ok(());
        };
        let registry = Arc::new(RedisRegistry::new(redis_url)?);
        let instance = Instance::new(LLM_SERVICE, &config.service_id, url)
            .with_metadata("model", &config.model_name)
            .with_metadata("version", &config.service_version)
            .with_metadata("tier", &config.service_tier);
        let registration = Registration::spawn(
            registry,
            instance,
            config.registry_ttl(),
            config.heartbeat_interval(),
        )?;
        *self.lock() = Some(registration);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Registration>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes the entry and stops heartbeating; logs a failure, never fails.
    pub async fn deregister(&self) {
        let running = self.lock().take();
        if let Some(registration) = running {
            match registration.deregister().await {
                Ok(()) => tracing::info!("deregistered from the registry"),
                Err(error) => tracing::warn!(%error, "could not deregister; the entry will expire"),
            }
        }
    }

    /// Whether a registry is configured.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The state `/health` reports.
    pub fn health(&self) -> RegistrationHealth {
        let status = self.lock().as_ref().map(Registration::status);
        RegistrationHealth {
            backend: if self.enabled { "redis" } else { "none" }.to_owned(),
            registered: status.as_ref().is_some_and(|s| s.registered),
            last_error: status.and_then(|s| s.last_error),
        }
    }
}
