//! What `lab up` starts: ports, programs and environments, as in the compose file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stack_control::local::{Health, ServiceSpec, StackFile, which};
use stack_control::{
    API_GATEWAY, CHAOS_MONKEY, LLM_SERVICE_1, LLM_SERVICE_2, LLM_SERVICE_3, PROMETHEUS, REDIS,
};

/// The gateway's port by default (the lab's).
pub const DEFAULT_BASE_PORT: u16 = 8000;
/// Redis listens this far above the base port (8379: never the machine's own 6379).
pub const REDIS_OFFSET: u16 = 379;
/// Prometheus listens this far above the base port (9090 by default).
pub const PROMETHEUS_OFFSET: u16 = 1090;
/// The fault proxy's API listens this far above the base port (8474, Toxiproxy's port).
pub const PROXY_API_OFFSET: u16 = 474;
/// An llm-service routed through the fault proxy is reached this far above its own port.
pub const PROXIED_OFFSET: u16 = 100;
/// The fault proxy's service name.
pub const CHAOS_PROXY: &str = "chaos_proxy";
/// The secondary-tier llm-service listens this far above the base port (8003).
pub const SECONDARY_OFFSET: u16 = 3;

/// One llm-service of the stack: its port's offset from the base port, compose name, model,
/// `MAX_TOKENS`, `RESPONSE_TIME_SLA` (ms) and `SERVICE_TIER`.
struct Llm {
    offset: u16,
    name: &'static str,
    model: &'static str,
    max_tokens: &'static str,
    sla_ms: &'static str,
    tier: &'static str,
}

/// The lab's llm-services, as in the compose file: two primaries, then the secondary tier
/// the gateway falls back to when neither primary can answer (before its cache and its
/// template). The secondary registers its tier in Redis, so it runs in [`Mode::Redis`] only.
const LLMS: [Llm; 3] = [
    Llm {
        offset: 1,
        name: LLM_SERVICE_1,
        model: "gpt-3.5-turbo-simulation",
        max_tokens: "2048",
        sla_ms: "5000",
        tier: "primary",
    },
    Llm {
        offset: 2,
        name: LLM_SERVICE_2,
        model: "gpt-4-simulation",
        max_tokens: "4096",
        sla_ms: "8000",
        tier: "primary",
    },
    Llm {
        offset: SECONDARY_OFFSET,
        name: LLM_SERVICE_3,
        model: "gpt-3.5-turbo-simulation",
        max_tokens: "2048",
        sla_ms: "5000",
        tier: "secondary",
    },
];

/// Simulation and chaos settings taken from lab's own environment when set (so a run can be
/// made faster or calmer), else the lab's defaults (the seed's).
const PASSED_THROUGH: &[(&str, &str)] = &[
    ("SIM_MIN_LATENCY_MS", "100"),
    ("SIM_MAX_LATENCY_MS", "2000"),
    ("SIM_FAILURE_RATE", "0.1"),
    ("SIM_TOKEN_INTERVAL_MS", "20"),
    ("CHAOS_INTERVAL", "300"),
    ("FAILURE_PROBABILITY", "0.3"),
    ("CHAOS_DURATION", "60"),
];

/// How the gateway finds the llm-services and where it caches answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The stack's own Redis: the llm-services register there, the gateway discovers them
    /// there and shares its response cache there.
    Redis {
        /// `redis://…`.
        url: String,
    },
    /// No `redis-server` on PATH: no Redis; the gateway is given the llm-services' URLs
    /// (`LLM_SERVICE_URLS`) and caches in memory, the llm-services register nowhere.
    Static,
}

impl Mode {
    /// One line for `lab up` to print: the mode and why.
    pub fn describe(&self) -> String {
        match self {
            Self::Redis { url } => format!(
                "mode: Redis at {url} (the llm-services register there; the gateway discovers them and shares its cache there)"
            ),
            Self::Static => {
                "mode: embedded defaults, no Redis (redis-server is not on PATH): the gateway \
                 is given the primary llm-services' URLs (LLM_SERVICE_URLS) and caches in memory; \
                 no secondary tier (llm_service_3 announces its tier through the registry); \
                 install redis-server for the registry, the shared cache and the secondary tier"
                    .to_owned()
            }
        }
    }
}

/// The stack to start.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What the run directory will describe.
    pub file: StackFile,
    /// Whether the stack has a Redis.
    pub mode: Mode,
}

impl Plan {
    /// The stack at `base_port`, with the chaos monkey when `chaos`, the llm-services named
    /// in `proxied` reached through the fault proxy, its binaries beside this executable,
    /// its Redis (and Prometheus) data in `dir`; without Redis ([`Mode::Static`]) when
    /// `redis-server` is not on PATH.
    pub fn new(
        base_port: u16,
        chaos: bool,
        proxied: &[String],
        dir: &Path,
    ) -> anyhow::Result<Self> {
        for name in proxied {
            anyhow::ensure!(
                name == LLM_SERVICE_1 || name == LLM_SERVICE_2,
                "--proxy takes {LLM_SERVICE_1} or {LLM_SERVICE_2}, not `{name}`"
            );
        }
        if base_port.checked_add(PROMETHEUS_OFFSET).is_none() {
            anyhow::bail!("--base-port {base_port} leaves no room for the stack's ports");
        }
        let bin_dir = std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow::anyhow!("cannot tell where lab is installed"))?;
        let binary = |name: &str| -> anyhow::Result<PathBuf> {
            let path = bin_dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                anyhow::bail!(
                    "{} not found beside lab: build the workspace first (cargo build --workspace)",
                    path.display()
                )
            }
        };
        let dir = std::path::absolute(dir)?;
        let redis_port = base_port + REDIS_OFFSET;
        let redis_server = which(Path::new("redis-server"));
        let mode = match redis_server {
            Some(_) => Mode::Redis {
                url: format!("redis://127.0.0.1:{redis_port}"),
            },
            None => Mode::Static,
        };
        let setting = |key: &str, default: &str| {
            (
                key.to_owned(),
                std::env::var(key).unwrap_or_else(|_| default.to_owned()),
            )
        };
        // The secondary announces its tier in the registry: without one it would be a third
        // primary, so the static mode leaves it out.
        let llms: Vec<&Llm> = LLMS
            .iter()
            .filter(|llm| llm.tier == "primary" || matches!(mode, Mode::Redis { .. }))
            .collect();
        let mut services = Vec::new();

        if let (Some(redis_server), Mode::Redis { url: redis_url }) = (redis_server, &mode) {
            let redis_dir = dir.join("redis");
            std::fs::create_dir_all(&redis_dir)?;
            services.push(ServiceSpec {
                name: REDIS.to_owned(),
                program: redis_server,
                args: [
                    "--port",
                    &redis_port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    &redis_dir.display().to_string(),
                ]
                .map(str::to_owned)
                .to_vec(),
                env: BTreeMap::new(),
                port: Some(redis_port),
                url: Some(redis_url.clone()),
                health: Health::Redis {
                    url: redis_url.clone(),
                },
            });
        }

        if let Some(prometheus) = which(Path::new("prometheus")) {
            let port = base_port + PROMETHEUS_OFFSET;
            let config = dir.join("prometheus.yml");
            let llm_ports: Vec<u16> = llms.iter().map(|llm| base_port + llm.offset).collect();
            std::fs::write(&config, prometheus_config(base_port, &llm_ports))?;
            services.push(ServiceSpec {
                name: PROMETHEUS.to_owned(),
                program: prometheus,
                args: vec![
                    format!("--config.file={}", config.display()),
                    format!("--storage.tsdb.path={}", dir.join("prometheus").display()),
                    format!("--web.listen-address=127.0.0.1:{port}"),
                ],
                env: BTreeMap::new(),
                port: Some(port),
                url: Some(format!("http://127.0.0.1:{port}")),
                health: Health::Http {
                    url: format!("http://127.0.0.1:{port}/-/ready"),
                },
            });
        }

        if !proxied.is_empty() {
            let api_port = base_port + PROXY_API_OFFSET;
            let mut args = vec![
                "proxy".to_owned(),
                "--listen".to_owned(),
                format!("127.0.0.1:{api_port}"),
            ];
            for (offset, name) in [(1, LLM_SERVICE_1), (2, LLM_SERVICE_2)] {
                if proxied.iter().any(|p| p == name) {
                    let port = base_port + offset;
                    args.push("--proxy".to_owned());
                    args.push(format!(
                        "{name}=127.0.0.1:{}=127.0.0.1:{port}",
                        port + PROXIED_OFFSET
                    ));
                }
            }
            services.push(ServiceSpec {
                name: CHAOS_PROXY.to_owned(),
                program: binary("chaos-monkey")?,
                args,
                env: BTreeMap::from([("RUST_LOG".to_owned(), "info".to_owned())]),
                port: Some(api_port),
                url: Some(format!("http://127.0.0.1:{api_port}")),
                health: Health::Http {
                    url: format!("http://127.0.0.1:{api_port}/version"),
                },
            });
        }

        let llm_service = binary("llm-service")?;
        // Where the gateway reaches each llm-service (given to it in the static mode).
        let mut reached_at = Vec::new();
        for llm in &llms {
            let (name, port) = (llm.name, base_port + llm.offset);
            let url = format!("http://127.0.0.1:{port}");
            // Routed through the fault proxy: the registry (so the gateway) has the proxy's
            // address; the fault API and the health check use the service's own.
            let advertised = if proxied.iter().any(|p| p == name) {
                format!("http://127.0.0.1:{}", port + PROXIED_OFFSET)
            } else {
                url.clone()
            };
            reached_at.push(advertised.clone());
            let mut env: BTreeMap<String, String> = [
                ("PORT", port.to_string()),
                ("HOST", "127.0.0.1".to_owned()),
                ("SERVICE_ID", name.to_owned()),
                ("SERVICE_VERSION", "1.0.0".to_owned()),
                ("MODEL_NAME", llm.model.to_owned()),
                ("MAX_TOKENS", llm.max_tokens.to_owned()),
                ("RESPONSE_TIME_SLA", llm.sla_ms.to_owned()),
                ("ADVERTISE_URL", advertised),
                ("SERVICE_TIER", llm.tier.to_owned()),
                // The lab's fault API (the suite's chaos scenarios, the chaos monkey); off
                // by default in llm-service. A CHAOS_TOKEN in lab's environment is inherited
                // by the llm-services and the monkey alike, and read by the suite.
                ("CHAOS_ENABLED", "true".to_owned()),
                ("LOG_FORMAT", "pretty".to_owned()),
                ("RUST_LOG", "info".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v))
            .into_iter()
            .collect();
            if let Mode::Redis { url } = &mode {
                env.insert("REDIS_URL".to_owned(), url.clone());
            }
            env.extend(
                PASSED_THROUGH
                    .iter()
                    .filter(|(k, _)| k.starts_with("SIM_"))
                    .map(|(k, d)| setting(k, d)),
            );
            services.push(ServiceSpec {
                name: name.to_owned(),
                program: llm_service.clone(),
                args: Vec::new(),
                env,
                port: Some(port),
                url: Some(url.clone()),
                health: Health::Http {
                    url: format!("{url}/health"),
                },
            });
        }

        let gateway_url = format!("http://127.0.0.1:{base_port}");
        let mut gateway_env: BTreeMap<String, String> = [
            ("PORT", base_port.to_string()),
            ("HOST", "127.0.0.1".to_owned()),
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "5".to_owned()),
            ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "30".to_owned()),
            ("MAX_CONCURRENT_REQUESTS", "100".to_owned()),
            ("REQUEST_TIMEOUT", "30".to_owned()),
            ("LOG_FORMAT", "pretty".to_owned()),
            // The logs are part of the lab (the fallback WARN lines are graded).
            ("RUST_LOG", "info".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into_iter()
        .collect();
        match &mode {
            Mode::Redis { url } => gateway_env.insert("REDIS_URL".to_owned(), url.clone()),
            Mode::Static => gateway_env.insert("LLM_SERVICE_URLS".to_owned(), reached_at.join(",")),
        };
        // The history: the lab's PostgreSQL when one is given, else a SQLite file of the run.
        match (std::env::var("DATABASE_URL"), std::env::var("POSTGRES_URL")) {
            (Ok(url), _) => gateway_env.insert("DATABASE_URL".to_owned(), url),
            (Err(_), Ok(postgres)) => gateway_env.insert("POSTGRES_URL".to_owned(), postgres),
            (Err(_), Err(_)) => gateway_env.insert(
                "DATABASE_URL".to_owned(),
                format!("sqlite://{}", dir.join("history.sqlite3").display()),
            ),
        };
        services.push(ServiceSpec {
            name: API_GATEWAY.to_owned(),
            program: binary("gateway")?,
            args: Vec::new(),
            env: gateway_env,
            port: Some(base_port),
            url: Some(gateway_url.clone()),
            health: Health::Http {
                url: format!("{gateway_url}/ready"),
            },
        });

        // The chaos monkey's random faults stay on the primaries, as in the compose file: the
        // secondary is the tier that answers while they misbehave.
        if chaos {
            let mut env: BTreeMap<String, String> = BTreeMap::from([
                (
                    "TARGET_SERVICES".to_owned(),
                    format!(
                        "http://127.0.0.1:{},http://127.0.0.1:{}",
                        base_port + 1,
                        base_port + 2
                    ),
                ),
                ("RUST_LOG".to_owned(), "info".to_owned()),
                // Its own heartbeat, not a shared one in the temporary directory that
                // another stack's monkey would keep fresh.
                (
                    "CHAOS_HEARTBEAT_FILE".to_owned(),
                    dir.join("chaos_monkey.heartbeat").display().to_string(),
                ),
            ]);
            env.extend(
                PASSED_THROUGH
                    .iter()
                    .filter(|(k, _)| !k.starts_with("SIM_"))
                    .map(|(k, d)| setting(k, d)),
            );
            services.push(ServiceSpec {
                name: CHAOS_MONKEY.to_owned(),
                program: binary("chaos-monkey")?,
                args: Vec::new(),
                env,
                port: None,
                url: None,
                health: Health::Alive,
            });
        }
        Ok(Self {
            file: StackFile {
                base_port,
                services,
            },
            mode,
        })
    }
}

/// A Prometheus configuration scraping the stack's gateway and the llm-services at
/// `llm_ports`.
fn prometheus_config(base_port: u16, llm_ports: &[u16]) -> String {
    let targets: Vec<String> = llm_ports
        .iter()
        .map(|port| format!("'127.0.0.1:{port}'"))
        .collect();
    format!(
        "global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: api_gateway\n    \
         static_configs:\n      - targets: ['127.0.0.1:{base_port}']\n  - job_name: llm_services\n    \
         static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}
