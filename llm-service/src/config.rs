//! Settings: every one an environment variable and a flag. The variables keep the names the
//! lab's compose file gives them (`docker-compose.yml`): the lab and users' setups rely on
//! them, so none is renamed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{ArgAction, Parser};
use llm_api::FieldError;
use llm_api::token::ChaosToken;

/// A simulated LLM backend with controllable faults.
#[derive(Debug, Clone, Parser)]
#[command(name = "llm-service", version, about)]
pub struct Config {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8000)]
    pub port: u16,
    /// Address to listen on: loopback unless set (`0.0.0.0` to be reached from other
    /// hosts, as the container image, the compose file and the Kubernetes manifests set).
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// This instance's id: the registry key's last part and `service_id` in answers.
    #[arg(long, env = "SERVICE_ID", default_value = "llm_service_unknown")]
    pub service_id: String,
    /// Reported version.
    #[arg(long, env = "SERVICE_VERSION", default_value = "1.0.0")]
    pub service_version: String,
    /// The model this instance plays; every answer reports it.
    #[arg(long, env = "MODEL_NAME", default_value = "gpt-3.5-turbo-simulation")]
    pub model_name: String,
    /// Registry to register in; unset: no registration.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Largest `max_tokens` a request may ask for.
    #[arg(long, env = "MAX_TOKENS", default_value_t = 2048)]
    pub max_tokens: u32,
    /// Latency budget in milliseconds: recent answers slower than this on average make
    /// `/model/health` (and `/health`) degraded.
    #[arg(long, env = "RESPONSE_TIME_SLA", default_value_t = 5000)]
    pub response_time_sla: u64,
    /// The URL others reach this instance at (default `http://127.0.0.1:$PORT`).
    #[arg(long, env = "ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Simulated latency, low end, in milliseconds.
    #[arg(long, env = "SIM_MIN_LATENCY_MS", default_value_t = 100)]
    pub sim_min_latency_ms: u64,
    /// Simulated latency, high end, in milliseconds.
    #[arg(long, env = "SIM_MAX_LATENCY_MS", default_value_t = 2000)]
    pub sim_max_latency_ms: u64,
    /// Share of requests that fail with a 500 (0 to 1).
    #[arg(long, env = "SIM_FAILURE_RATE", default_value_t = 0.1)]
    pub sim_failure_rate: f64,
    /// Seed of the simulation: the same seed and prompt give the same text.
    #[arg(long, env = "SIM_SEED", default_value_t = 42)]
    pub sim_seed: u64,
    /// Pause between streamed tokens, in milliseconds.
    #[arg(long, env = "SIM_TOKEN_INTERVAL_MS", default_value_t = 20)]
    pub sim_token_interval_ms: u64,
    /// `primary` or `secondary`: the gateway's tier for this instance.
    #[arg(long, env = "SERVICE_TIER", default_value = "primary")]
    pub service_tier: String,
    /// Turns the fault-injection API (`/chaos/*`) on; off, every `/chaos` route answers
    /// 403 and injects nothing. The lab (`lab up`, the compose file) turns it on.
    #[arg(long, env = "CHAOS_ENABLED", default_value_t = false, action = ArgAction::Set)]
    pub chaos_enabled: bool,
    /// When set (not empty), the `/chaos` API requires `Authorization: Bearer <token>`.
    #[arg(long, env = "CHAOS_TOKEN", hide_env_values = true)]
    pub chaos_token: Option<ChaosToken>,
    /// Registry entry lifetime in milliseconds; heartbeats refresh it every third of it.
    #[arg(long, env = "REGISTRY_TTL_MS", default_value_t = 15_000)]
    pub registry_ttl_ms: u64,
    /// Longest wait for in-flight requests at shutdown, in milliseconds.
    #[arg(long, env = "DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
    /// Log format: `json` (the default: one JSON object per line) or `pretty` (for people).
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: String,
    /// Connection and request-body limits (shared by every service).
    #[command(flatten)]
    pub edge: http_edge::EdgeArgs,
}

impl Config {
    /// The token the `/chaos` API requires, if any (an empty `CHAOS_TOKEN` is none).
    pub fn chaos_token(&self) -> Option<&ChaosToken> {
        ChaosToken::given(self.chaos_token.as_ref())
    }

    /// Every problem with the settings, each naming its variable; empty when valid.
    pub fn problems(&self) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let mut bad = |name: &str, why: String| problems.push(FieldError::new(name, why));
        if self.service_id.trim().is_empty() || self.service_id.contains(char::is_whitespace) {
            bad("SERVICE_ID", "must be a non-empty word".into());
        }
        if self.model_name.trim().is_empty() {
            bad("MODEL_NAME", "must not be empty".into());
        }
        if self.max_tokens == 0 {
            bad("MAX_TOKENS", "must be at least 1".into());
        }
        if self.sim_min_latency_ms > self.sim_max_latency_ms {
            bad(
                "SIM_MIN_LATENCY_MS",
                format!(
                    "must not exceed SIM_MAX_LATENCY_MS ({})",
                    self.sim_max_latency_ms
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.sim_failure_rate) {
            bad("SIM_FAILURE_RATE", "must be between 0 and 1".into());
        }
        if !matches!(self.service_tier.as_str(), "primary" | "secondary") {
            bad("SERVICE_TIER", "must be `primary` or `secondary`".into());
        }
        if !matches!(self.log_format.as_str(), "pretty" | "json") {
            bad("LOG_FORMAT", "must be `pretty` or `json`".into());
        }
        if self.registry_ttl_ms < 30 || self.registry_ttl_ms > 86_400_000 {
            bad("REGISTRY_TTL_MS", "must be between 30 ms and a day".into());
        }
        if let Some(url) = &self.advertise_url
            && resilience_core::registry::normalize_base_url(url).is_err()
        {
            bad(
                "ADVERTISE_URL",
                format!("`{url}` is not an http(s) base URL"),
            );
        }
        if let Err(edge) = self.edge.limits() {
            problems.extend(edge);
        }
        problems
    }

    /// The URL to register, for an instance bound to `bound`.
    pub fn advertised_url(&self, bound: SocketAddr) -> String {
        self.advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", bound.port()))
    }

    /// Registry entry lifetime.
    pub fn registry_ttl(&self) -> Duration {
        Duration::from_millis(self.registry_ttl_ms)
    }

    /// Heartbeat period: a third of the TTL.
    pub fn heartbeat_interval(&self) -> Duration {
        self.registry_ttl() / 3
    }

    /// Longest drain at shutdown.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    /// The default configuration with every value overridable by `args` (for tests).
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(
            std::iter::once("llm-service".into()).chain(args.into_iter().map(Into::into)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_seed() {
        let c = Config::from_args::<_, &str>([]).unwrap();
        assert_eq!((c.sim_min_latency_ms, c.sim_max_latency_ms), (100, 2000));
        assert_eq!(c.sim_failure_rate, 0.1);
        assert_eq!(c.port, 8000);
        assert!(c.problems().is_empty());
    }

    #[test]
    fn safe_by_default_loopback_and_no_fault_api() {
        let c = Config::from_args::<_, &str>([]).unwrap();
        assert_eq!(c.host, IpAddr::from([127, 0, 0, 1]));
        assert!(c.host.is_loopback());
        assert!(!c.chaos_enabled);
        assert!(c.chaos_token().is_none());
    }

    #[test]
    fn the_fault_api_is_turned_on_and_guarded_by_settings() {
        let c = Config::from_args([
            "--host",
            "0.0.0.0",
            "--chaos-enabled",
            "true",
            "--chaos-token",
            "s3cret",
        ])
        .unwrap();
        assert_eq!(c.host, IpAddr::from([0, 0, 0, 0]));
        assert!(c.chaos_enabled);
        let token = c.chaos_token().unwrap();
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret!"));
        assert!(!token.matches(""));
        assert!(Config::from_args(["--chaos-enabled", "yes"]).is_err());
        let empty = Config::from_args(["--chaos-token", ""]).unwrap();
        assert!(empty.chaos_token().is_none());
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let c = Config::from_args(["--chaos-token", "s3cret"]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("ChaosToken(***)"), "{shown}");
    }

    #[test]
    fn problems_name_the_variable() {
        let c = Config::from_args([
            "--sim-min-latency-ms",
            "10",
            "--sim-max-latency-ms",
            "5",
            "--service-tier",
            "gold",
            "--sim-failure-rate",
            "2",
        ])
        .unwrap();
        let names: Vec<String> = c.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            names,
            ["SIM_MIN_LATENCY_MS", "SIM_FAILURE_RATE", "SERVICE_TIER"]
        );
    }

    #[test]
    fn advertised_url_defaults_to_loopback_and_the_bound_port() {
        let c = Config::from_args::<_, &str>([]).unwrap();
        let bound: SocketAddr = "0.0.0.0:4321".parse().unwrap();
        assert_eq!(c.advertised_url(bound), "http://127.0.0.1:4321");
    }
}
