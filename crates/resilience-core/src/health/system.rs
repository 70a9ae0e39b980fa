//! The system-resources check: CPU and memory usage, read through `sysinfo`.
//!
//! It is non-critical and degrades only when memory use is above a threshold (default 95 %),
//! never because of CPU: a gateway at 100 % CPU is busy, not broken, and marking
//! it degraded would make load look like an outage. CPU is still reported, for operators.
//! Sampling sits behind [`ResourceSampler`] so the thresholds are tested with fake readings.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sysinfo::System;

use super::BoxFuture;
use super::composite::{CheckOutcome, HealthCheck};

/// Default memory use, in percent, above which the check reports degraded.
pub const DEFAULT_MEMORY_DEGRADED_PERCENT: f64 = 95.0;

const BYTES_PER_MB: u64 = 1024 * 1024;

/// One reading of the machine's (or the container's) resources.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// CPU use over all cores since the previous sample, 0 to 100.
    pub cpu_percent: f64,
    /// Memory in use, in bytes.
    pub memory_used_bytes: u64,
    /// Memory available in total (the cgroup limit when lower than the machine's), in bytes.
    pub memory_total_bytes: u64,
}

impl ResourceSample {
    /// Memory in use as a percentage of the total, 0 to 100 (0 when the total is unknown).
    pub fn memory_percent(&self) -> f64 {
        if self.memory_total_bytes == 0 {
            return 0.0;
        }
        // Precision loss past 2^53 bytes is irrelevant at percent resolution.
        let percent = self.memory_used_bytes as f64 / self.memory_total_bytes as f64 * 100.0;
        percent.clamp(0.0, 100.0)
    }
}

/// Takes a [`ResourceSample`]; `Err` with a message when the platform cannot tell.
///
/// Any `Fn() -> Result<ResourceSample, String> + Send + Sync` closure is a sampler.
pub trait ResourceSampler: Send + Sync {
    /// Reads the current usage. Called on every check, so it must be quick.
    fn sample(&self) -> Result<ResourceSample, String>;
}

impl<F> ResourceSampler for F
where
    F: Fn() -> Result<ResourceSample, String> + Send + Sync,
{
    fn sample(&self) -> Result<ResourceSample, String> {
        self()
    }
}

/// The real sampler, over `sysinfo`.
///
/// CPU use is measured between two samples, so the first sample after start reads about
/// 0 %; later ones cover the time since the previous check, with no sleeping. Memory honours
/// a cgroup limit (containers) when it is lower than the machine's memory.
#[derive(Debug, Default)]
pub struct SysinfoSampler {
    system: Mutex<Option<System>>,
}

impl SysinfoSampler {
    /// A sampler that opens the system's counters on first use.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ResourceSampler for SysinfoSampler {
    fn sample(&self) -> Result<ResourceSample, String> {
        let mut guard = self.system.lock().unwrap_or_else(PoisonError::into_inner);
        let system = match &mut *guard {
            Some(system) => system,
            empty => empty.insert(System::new().map_err(|e| e.to_string())?),
        };
        system.refresh_cpu_usage();
        system.refresh_memory();
        let (mut used, mut total) = (system.used_memory(), system.total_memory());
        if let Some(limits) = system.cgroup_limits()
            && limits.total_memory > 0
            && limits.total_memory < total
        {
            total = limits.total_memory;
            used = total.saturating_sub(limits.free_memory);
        }
        Ok(ResourceSample {
            cpu_percent: f64::from(system.global_cpu_usage()).clamp(0.0, 100.0),
            memory_used_bytes: used,
            memory_total_bytes: total,
        })
    }
}

/// The non-critical system-resources check, named `system_resources`.
///
/// Healthy unless memory use is strictly above the threshold (default
/// [`DEFAULT_MEMORY_DEGRADED_PERCENT`]), then degraded; CPU never changes the verdict.
/// Details: `cpu_percent`, `memory_percent`, `memory_used_mb`, `memory_total_mb`,
/// `memory_threshold_percent`. If the sampler fails the check stays healthy with the error
/// as its message: not knowing the usage is no evidence of exhaustion.
pub struct SystemResourcesCheck {
    name: String,
    sampler: Arc<dyn ResourceSampler>,
    memory_degraded_percent: f64,
}

impl std::fmt::Debug for SystemResourcesCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemResourcesCheck")
            .field("name", &self.name)
            .field("memory_degraded_percent", &self.memory_degraded_percent)
            .finish_non_exhaustive()
    }
}

impl Default for SystemResourcesCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemResourcesCheck {
    /// The check over the real [`SysinfoSampler`], with the default threshold.
    pub fn new() -> Self {
        Self::with_sampler(SysinfoSampler::new())
    }

    /// The check over `sampler` (fake readings in tests), with the default threshold.
    pub fn with_sampler(sampler: impl ResourceSampler + 'static) -> Self {
        Self {
            name: "system_resources".to_owned(),
            sampler: Arc::new(sampler),
            memory_degraded_percent: DEFAULT_MEMORY_DEGRADED_PERCENT,
        }
    }

    /// Sets the memory use, in percent, above which the check degrades.
    pub fn with_memory_threshold(mut self, percent: f64) -> Self {
        self.memory_degraded_percent = percent;
        self
    }

    /// Renames the check (default `system_resources`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Samples once and judges the reading; what [`HealthCheck::check`] resolves to.
    pub fn evaluate(&self) -> CheckOutcome {
        let sample = match self.sampler.sample() {
            Ok(sample) => sample,
            Err(error) => {
                return CheckOutcome::healthy()
                    .with_message(format!("resource usage unavailable: {error}"));
            }
        };
        let memory_percent = sample.memory_percent();
        let details = serde_json::json!({
            "cpu_percent": round2(sample.cpu_percent),
            "memory_percent": round2(memory_percent),
            "memory_used_mb": sample.memory_used_bytes / BYTES_PER_MB,
            "memory_total_mb": sample.memory_total_bytes / BYTES_PER_MB,
            "memory_threshold_percent": self.memory_degraded_percent,
        });
        let outcome = if memory_percent > self.memory_degraded_percent {
            CheckOutcome::degraded(format!(
                "memory use {memory_percent:.1} % is above {} %",
                self.memory_degraded_percent
            ))
        } else {
            CheckOutcome::healthy()
        };
        outcome.with_details(details)
    }
}

impl HealthCheck for SystemResourcesCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn critical(&self) -> bool {
        false
    }

    fn check(&self) -> BoxFuture<'_, CheckOutcome> {
        Box::pin(std::future::ready(self.evaluate()))
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
