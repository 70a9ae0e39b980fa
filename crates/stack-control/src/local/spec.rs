//! What a stack is: its services, how each runs and how it shows it is healthy, as written
//! to the run directory's state file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The state file's name in the run directory.
pub const STATE_FILE: &str = "stack.json";

/// How a service shows it is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Health {
    /// `GET url` answers 2xx.
    Http {
        /// The URL probed.
        url: String,
    },
    /// `PING` answers `PONG`.
    Redis {
        /// `redis://…`.
        url: String,
    },
    /// The process stays alive.
    Alive,
}

/// One service: how to run it and how to tell it is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The compose name.
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment, over the inherited one minus [`SCRUBBED_ENV`].
    pub env: BTreeMap<String, String>,
    /// The port it listens on, checked free before it starts.
    pub port: Option<u16>,
    /// Where it answers, for `status`.
    pub url: Option<String>,
    /// Its health check.
    pub health: Health,
}

/// Everything `lab up` started, in start order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackFile {
    /// The first port of the stack (the gateway's).
    pub base_port: u16,
    /// The services, in the order they start (and the reverse of the order they stop).
    pub services: Vec<ServiceSpec>,
}

/// Inherited variables removed before a service starts: the stack gives each service the
/// values it needs, and a stray one from the caller's shell must not redirect it.
pub const SCRUBBED_ENV: &[&str] = &[
    "REDIS_URL",
    "POSTGRES_URL",
    "DATABASE_URL",
    "LLM_SERVICE_URLS",
    "GATEWAY_CONFIG",
    "ADVERTISE_URL",
    "SERVICE_ID",
    "MODEL_NAME",
    "PORT",
    "HOST",
    "TARGET_SERVICES",
];
