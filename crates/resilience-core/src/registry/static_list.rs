//! The read-only registry built from configuration (`LLM_SERVICE_URLS`).
//!
//! It answers `list` like any other backend, so discovery treats configured and registered
//! instances alike; writing to it is a wiring mistake and fails with
//! [`Error::Unsupported`] instead of silently doing nothing.

use std::collections::HashSet;
use std::time::Duration;

use super::instance::parse_base_url;
use super::{BoxFuture, Instance, InstanceSource, ServiceRegistry};
use crate::error::{Error, Result};

/// The environment variable holding the comma-separated static upstream base URLs.
pub const ENV_LLM_SERVICE_URLS: &str = "LLM_SERVICE_URLS";

/// A fixed list of instances from configuration; read-only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticRegistry {
    instances: Vec<Instance>,
}

impl StaticRegistry {
    /// Parses the value of `LLM_SERVICE_URLS`: comma-separated base URLs of `service`.
    ///
    /// Blank entries are ignored and duplicates (after normalization) keep their first
    /// occurrence, so an empty value gives an empty registry. Each instance's id is its
    /// `host:port` (the scheme's default port when none is written, plus the path when there
    /// is one). Fails with [`Error::InvalidConfig`] for setting `LLM_SERVICE_URLS`, naming the
    /// first bad entry.
    pub fn from_urls(service: &str, csv: &str) -> Result<Self> {
        let mut instances: Vec<Instance> = Vec::new();
        for entry in csv.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let url = parse_base_url(entry)
                .map_err(|reason| Error::invalid_config(ENV_LLM_SERVICE_URLS, reason))?;
            let normalized = url.to_string();
            if instances.iter().any(|i| i.url == normalized) {
                continue;
            }
            let id = unique_id(&instances, url.host_port_id());
            instances.push(Instance {
                source: InstanceSource::Static,
                ..Instance::new(service, id, normalized)
            });
        }
        Ok(Self { instances })
    }

    /// Takes instances as they are (ids and metadata kept), with normalized URLs and
    /// `source: Static`; duplicates by URL keep their first occurrence.
    ///
    /// Fails with [`Error::InvalidConfig`] (setting `static instance <id>`) for a bad URL or
    /// an empty id or service.
    pub fn from_instances(instances: Vec<Instance>) -> Result<Self> {
        let mut seen = HashSet::new();
        let mut kept = Vec::with_capacity(instances.len());
        for instance in instances {
            let setting = format!("static instance `{}`", instance.id);
            let valid = instance.validated_for_registry().map_err(|e| match e {
                Error::InvalidConfig { reason, .. } => Error::invalid_config(setting, reason),
                other => other,
            })?;
            if seen.insert(valid.url.clone()) {
                kept.push(Instance {
                    source: InstanceSource::Static,
                    ..valid
                });
            }
        }
        Ok(Self { instances: kept })
    }

    /// All configured instances, in configuration order.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// The configured instances of `service`, in configuration order.
    pub fn instances_of(&self, service: &str) -> Vec<Instance> {
        self.instances
            .iter()
            .filter(|i| i.service == service)
            .cloned()
            .collect()
    }

    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    fn read_only<T: Send + 'static>(what: &str) -> BoxFuture<'static, Result<T>> {
        let error = Error::Unsupported {
            what: format!("{what} on the static registry"),
        };
        Box::pin(async move { Err(error) })
    }
}

/// `base`, or `base-2`, `base-3`… when an earlier instance already took it (same host and port
/// under http and https).
fn unique_id(existing: &[Instance], base: String) -> String {
    let taken = |id: &str| existing.iter().any(|i| i.id == id);
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| !taken(id))
        .unwrap_or(base)
}

impl ServiceRegistry for StaticRegistry {
    /// Always fails with [`Error::Unsupported`]: the list comes from configuration.
    fn register<'a>(&'a self, _: &'a Instance, _: Duration) -> BoxFuture<'a, Result<()>> {
        Self::read_only("register")
    }

    /// Always fails with [`Error::Unsupported`].
    fn heartbeat<'a>(&'a self, _: &'a str, _: &'a str, _: Duration) -> BoxFuture<'a, Result<bool>> {
        Self::read_only("heartbeat")
    }

    /// Always fails with [`Error::Unsupported`].
    fn deregister<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<()>> {
        Self::read_only("deregister")
    }

    /// The configured instances of `service`, sorted by id; never fails.
    fn list<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Vec<Instance>>> {
        let mut instances = self.instances_of(service);
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Box::pin(async move { Ok(instances) })
    }

    fn backend(&self) -> &'static str {
        "static"
    }
}
