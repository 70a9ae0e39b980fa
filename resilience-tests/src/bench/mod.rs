//! `resilience-tests bench`: what the gateway costs over nginx (issue 17). It starts its
//! own servers on 127.0.0.1 — an nginx with canned OpenAI answers (the upstream), two
//! zero-latency llm-services (one streaming with small token gaps), a second nginx as a
//! plain reverse-proxy hop in front of each, the gateway with every resilience feature at
//! its defaults, and a second gateway whose breaker is open (fallback tiers) — then loads
//! the direct path, the hop and the gateway alike, interleaved round by round (and, for
//! the identity scenario, the gateway against two more with API keys and the rate limiter,
//! in memory and in Redis — see [`identity`]):
//! closed loop with wrk at each concurrency, open loop at a fixed rate with its own pacer
//! (wrk2 and oha are not in Debian; latency from the scheduled send time, so coordinated
//! omission is not hidden), streams with its own client (time to first token, gaps), and
//! RSS idle and holding 1,000 idle connections. CPU time and RSS of the server under test
//! come from `/proc` around each run. It prints a table and the issue's goals (PASS/FAIL)
//! and writes everything as JSON. Every server is stopped on every exit path (the guards
//! of [`servers`], and Ctrl-C / SIGTERM drop them).
//!
//! - [`confs`]: the generated nginx configurations, gateway TOML, key file and wrk script.
//! - [`identity`]: the identity scenario's gateways, key and Redis.
//! - [`servers`]: starting, waiting for and stopping the servers.
//! - [`procfs`]: CPU and RSS from `/proc`.
//! - [`wrk`]: the closed loop.
//! - [`http`], [`pacer`]: the open loop.
//! - [`stream`]: the stream client.
//! - [`memory`]: idle connections.
//! - [`stats`], [`report`], [`goals`]: aggregation, the table and JSON, the verdicts.

mod confs;
mod goals;
mod http;
mod identity;
mod memory;
mod pacer;
mod persistence;
mod procfs;
mod report;
mod servers;
mod stats;
mod stream;
#[cfg(test)]
mod tests;
mod wrk;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hyper::body::Bytes;
use serde::Serialize;

use self::goals::{Inputs, Verdict};
use self::http::JsonPost;
use self::report::{
    Growth, Machine, Memory, RedisSource, Report, Round, Scenario, ScenarioError, ServerInfo, Soak,
    StreamResult, Target,
};
use self::servers::{Ready, Server, Spec, ensure_loopback, free_port};
use self::stats::growth_pct;
use self::stream::Streamed;

/// How long each target is warmed up before it is measured.
const WARM_UP: Duration = Duration::from_secs(1);
/// Connections of the warm-up.
const WARM_UP_CONNECTIONS: u32 = 16;
/// Kept-alive connections of the fixed-rate pacer.
const PACER_CONNECTIONS: usize = 64;
/// Idle connections of the memory scenario.
const IDLE_CONNECTIONS: usize = 1000;
/// Streams at once in the stream scenario.
const STREAM_CONCURRENCY: [usize; 2] = [1, 16];
/// The streaming llm-service's pause between tokens, ms.
const STREAM_TOKEN_INTERVAL_MS: u32 = 2;
/// How long the breaker-open gateway's breakers stay open, ms (longer than any run).
const BREAKER_OPEN_MS: u64 = 600_000;
/// The soak's RSS sampling period.
const SOAK_SAMPLE: Duration = Duration::from_secs(10);
/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;
/// The OpenAI route's path.
const CHAT_PATH: &str = "/v1/chat/completions";
/// The lab's route.
const GENERATE_PATH: &str = "/generate";
/// Whole answers through the gateway's `bench` route.
const ANSWER_BODY: &str =
    r#"{"model":"bench","messages":[{"role":"user","content":"What is a circuit breaker?"}]}"#;
/// The lab's request.
const GENERATE_BODY: &str = r#"{"prompt":"What is a circuit breaker?","max_tokens":20}"#;
/// A streamed answer through the gateway's `bench-stream` route.
const STREAM_BODY: &str = r#"{"model":"bench-stream","stream":true,"max_tokens":20,"messages":[{"role":"user","content":"What is a circuit breaker?"}]}"#;
/// A prompt whose answer is seeded in the cache (`config/fallback_responses.json`).
const CACHE_BODY: &str =
    r#"{"model":"bench","messages":[{"role":"user","content":"What is AI?"}]}"#;
/// A prompt no cache entry answers: the template does.
const TEMPLATE_BODY: &str = r#"{"model":"bench","messages":[{"role":"user","content":"Describe the benchmark harness in three sentences."}]}"#;

/// `bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Rounds per concurrency and target [default: 5; --quick: 1].
    #[arg(long)]
    pub rounds: Option<u32>,
    /// Seconds per run (wrk and the fixed rate) [default: 5; --quick: 1].
    #[arg(long)]
    pub duration: Option<u64>,
    /// Closed-loop connections, comma-separated [default: 1,16,50,200; --quick: 1,16].
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Option<Vec<u32>>,
    /// Requests per second of the fixed-rate run [default: 2000; --quick: 200].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Streams per target and concurrency [default: 200; --quick: 100].
    #[arg(long)]
    pub streams: Option<usize>,
    /// Scenarios to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    /// Where the JSON goes [default: <work dir>/bench.json].
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where the generated files and logs go [default: $CARGO_TARGET_DIR/bench, else
    /// target/bench].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// The gateway binary [default: beside this binary, else target/release/gateway].
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// The llm-service binary [default: beside this binary, else
    /// target/release/llm-service].
    #[arg(long)]
    pub llm_service_bin: Option<PathBuf>,
    /// nginx [default: `nginx` on PATH, else /usr/sbin/nginx].
    #[arg(long)]
    pub nginx: Option<PathBuf>,
    /// wrk [default: `wrk` on PATH].
    #[arg(long)]
    pub wrk: Option<PathBuf>,
    /// redis-server for the identity scenario's `gateway+redis` when REDIS_URL is unset
    /// [default: `redis-server` on PATH; none: that target is not run].
    #[arg(long)]
    pub redis_server: Option<PathBuf>,
    /// The gateway's MAX_CONCURRENT_REQUESTS.
    #[arg(long, default_value_t = 1024)]
    pub max_concurrent_requests: u32,
    /// Seconds of a steady fixed-rate run on the answer path with RSS read every 10 s
    /// (0 = off).
    #[arg(long, default_value_t = 0)]
    pub soak: u64,
    /// CI smoke: rounds 1, duration 1 s, concurrency 1,16, rate 200, 100 streams.
    #[arg(long)]
    pub quick: bool,
    /// Exit 1 when a goal failed.
    #[arg(long)]
    pub strict: bool,
}

/// The settings of a run, every default resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    /// Rounds per concurrency and target.
    pub rounds: u32,
    /// Seconds per run.
    pub duration_s: u64,
    /// Closed-loop connections.
    pub concurrency: Vec<u32>,
    /// Fixed rate, requests/s.
    pub rate: f64,
    /// Streams per target and concurrency.
    pub streams: usize,
    /// Scenarios run.
    pub scenarios: Vec<Scenario>,
    /// The gateway's MAX_CONCURRENT_REQUESTS.
    pub max_concurrent_requests: u32,
    /// Soak seconds (0: none).
    pub soak_s: u64,
    /// `--quick`.
    pub quick: bool,
    /// `--strict`.
    pub strict: bool,
    /// The work dir.
    pub work_dir: PathBuf,
    /// The JSON file.
    pub json: PathBuf,
    /// The gateway binary.
    pub gateway_bin: PathBuf,
    /// The llm-service binary.
    pub llm_service_bin: PathBuf,
    /// nginx.
    pub nginx: PathBuf,
    /// wrk.
    pub wrk: PathBuf,
    /// redis-server, when found.
    pub redis_server: Option<PathBuf>,
}

/// `name` in a directory of PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A workspace binary: beside the running one (scripts/bench runs target/release/), else
/// `target/release/<name>`.
fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| Path::new("target/release").join(name))
}

impl BenchArgs {
    /// The settings, defaults and `--quick` resolved.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let quick = self.quick;
        let pick = |given: Option<u64>, normal: u64, smoke: u64| {
            given.unwrap_or(if quick { smoke } else { normal })
        };
        let rounds = u32::try_from(pick(self.rounds.map(u64::from), 5, 1))?;
        let duration_s = pick(self.duration, 5, 1);
        let streams = usize::try_from(pick(self.streams.map(|s| s as u64), 200, 100))?;
        let concurrency = self.concurrency.clone().unwrap_or_else(|| {
            if quick {
                vec![1, 16]
            } else {
                vec![1, 16, 50, 200]
            }
        });
        let rate = self.rate.unwrap_or(if quick { 200.0 } else { 2000.0 });
        anyhow::ensure!((1..=100).contains(&rounds), "--rounds must be 1 to 100");
        anyhow::ensure!(
            (1..=3600).contains(&duration_s),
            "--duration must be 1 to 3600 s"
        );
        anyhow::ensure!(
            !concurrency.is_empty() && concurrency.iter().all(|c| (1..=10_000).contains(c)),
            "--concurrency must list values from 1 to 10000"
        );
        anyhow::ensure!(
            rate > 0.0 && rate <= 100_000.0,
            "--rate must be above 0 and at most 100000"
        );
        anyhow::ensure!(
            (1..=100_000).contains(&streams),
            "--streams must be 1 to 100000"
        );
        anyhow::ensure!(self.soak <= 86_400, "--soak must be at most a day");
        let scenarios = if self.scenarios.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            Scenario::ALL
                .into_iter()
                .filter(|s| self.scenarios.contains(s))
                .collect()
        };
        let work_dir = self.work_dir.clone().unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| PathBuf::from("target"), PathBuf::from)
                .join("bench")
        });
        Ok(Settings {
            rounds,
            duration_s,
            concurrency,
            rate,
            streams,
            scenarios,
            max_concurrent_requests: self.max_concurrent_requests,
            soak_s: self.soak,
            quick,
            strict: self.strict,
            json: self
                .json
                .clone()
                .unwrap_or_else(|| work_dir.join("bench.json")),
            work_dir,
            gateway_bin: self
                .gateway_bin
                .clone()
                .unwrap_or_else(|| sibling_binary("gateway")),
            llm_service_bin: self
                .llm_service_bin
                .clone()
                .unwrap_or_else(|| sibling_binary("llm-service")),
            nginx: self
                .nginx
                .clone()
                .or_else(|| on_path("nginx"))
                .unwrap_or_else(|| "/usr/sbin/nginx".into()),
            wrk: self
                .wrk
                .clone()
                .or_else(|| on_path("wrk"))
                .unwrap_or_else(|| "wrk".into()),
            redis_server: self
                .redis_server
                .clone()
                .or_else(|| on_path("redis-server")),
        })
    }
}

/// Runs the bench; stops every server it started when it ends, fails, or is interrupted.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    for (what, path, hint) in [
        (
            "nginx",
            &settings.nginx,
            "apt-get install nginx-light, or run `bash scripts/bench` as root",
        ),
        (
            "wrk",
            &settings.wrk,
            "apt-get install wrk, or run `bash scripts/bench` as root",
        ),
        (
            "the gateway",
            &settings.gateway_bin,
            "cargo build --release -p gateway",
        ),
        (
            "llm-service",
            &settings.llm_service_bin,
            "cargo build --release -p llm-service",
        ),
    ] {
        anyhow::ensure!(
            path.is_file(),
            "{what} not found at {}: {hint}",
            path.display()
        );
    }
    // 1,000 idle connections and wrk's sockets need more than the usual 1024 descriptors.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let interrupted = async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    };
    let report = tokio::select! {
        report = bench(settings) => report?,
        signalled = interrupted => {
            signalled.context("cannot watch for SIGTERM")?;
            anyhow::bail!("interrupted: every server the bench started was stopped")
        }
    };
    println!("{}", report::render(&report));
    eprintln!("JSON: {}", report.settings.json.display());
    let failed = report.targets.iter().any(|g| g.verdict == Verdict::Fail);
    Ok(if report.settings.strict && failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The servers, each stopped when dropped.
struct Stack {
    /// nginx with canned answers.
    upstream: Server,
    /// The zero-latency llm-service.
    llm: Server,
    /// The streaming llm-service.
    llm_stream: Server,
    /// The hop nginx; its ports below.
    hop: Server,
    /// The hop's port in front of `upstream`.
    hop_answer: u16,
    /// The hop's port in front of `llm`.
    hop_generate: u16,
    /// The hop's port in front of `llm_stream`.
    hop_stream: u16,
    /// The measured gateway.
    gateway: Server,
    /// The gateway whose `bench` breaker is open.
    fallback: Server,
}

/// nginx's start: foreground master, our configuration, our prefix and error log.
fn nginx_spec(settings: &Settings, name: &str, conf: &str, port: u16) -> anyhow::Result<Spec> {
    let dir = &settings.work_dir;
    let conf_path = dir.join(format!("{name}.conf"));
    std::fs::write(&conf_path, conf)
        .with_context(|| format!("cannot write {}", conf_path.display()))?;
    std::fs::create_dir_all(dir.join(format!("{name}-tmp")))?;
    let error_log = dir.join(format!("{name}.error.log"));
    Ok(Spec {
        name: name.to_owned(),
        program: settings.nginx.clone(),
        args: vec![
            "-p".into(),
            format!("{}/", dir.display()),
            "-e".into(),
            error_log.display().to_string(),
            "-c".into(),
            conf_path.display().to_string(),
        ],
        env: Vec::new(),
        env_remove: Vec::new(),
        port,
        ready: Ready::Http("/health"),
        stop_signal: "QUIT",
        extra_logs: vec![error_log],
    })
}

/// An llm-service without latency, failures, registration or fault API.
fn llm_spec(settings: &Settings, name: &str, port: u16, token_interval_ms: u32) -> Spec {
    let env = [
        ("PORT", port.to_string()),
        ("HOST", "127.0.0.1".into()),
        ("SERVICE_ID", name.replace('-', "_")),
        ("MODEL_NAME", "bench-model".into()),
        ("SIM_MIN_LATENCY_MS", "0".into()),
        ("SIM_MAX_LATENCY_MS", "0".into()),
        ("SIM_FAILURE_RATE", "0".into()),
        ("SIM_TOKEN_INTERVAL_MS", token_interval_ms.to_string()),
        ("CHAOS_ENABLED", "false".into()),
        ("LOG_FORMAT", "json".into()),
        ("DRAIN_TIMEOUT_MS", "2000".into()),
    ];
    Spec {
        name: name.to_owned(),
        program: settings.llm_service_bin.clone(),
        args: Vec::new(),
        env: env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
        env_remove: vec!["REDIS_URL", "CHAOS_TOKEN", "ADVERTISE_URL", "RUST_LOG"],
        port,
        ready: Ready::Http("/health"),
        stop_signal: "TERM",
        extra_logs: Vec::new(),
    }
}

/// A gateway beside the stack's, on a free port, with `toml` and the stack's upstreams,
/// and `env` over [`gateway_spec`]'s variables.
async fn start_variant(
    ctx: &Ctx,
    stack: &Stack,
    name: &str,
    toml: &str,
    env: Vec<(&str, String)>,
) -> anyhow::Result<Server> {
    let settings = &ctx.settings;
    let mut spec = gateway_spec(settings, name, free_port()?, stack.llm.port, toml)?;
    spec.env
        .retain(|(k, _)| env.iter().all(|(set, _)| set != k));
    spec.env
        .extend(env.into_iter().map(|(k, v)| (k.to_owned(), v)));
    Server::start(spec, &settings.work_dir, &ctx.http).await
}

/// A gateway with the defaults, static discovery of `llm_port`, no Redis, and `toml`.
fn gateway_spec(
    settings: &Settings,
    name: &str,
    port: u16,
    llm_port: u16,
    toml: &str,
) -> anyhow::Result<Spec> {
    let config = settings.work_dir.join(format!("{name}.toml"));
    std::fs::write(&config, toml).with_context(|| format!("cannot write {}", config.display()))?;
    // Each run starts from an empty history: the cost of a write depends on what the file
    // already holds, so runs on files of different sizes would not compare.
    let history = settings.work_dir.join(format!("{name}-history.sqlite3"));
    for suffix in ["", "-wal", "-shm"] {
        let mut file = history.clone().into_os_string();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", file.display()));
            }
            _ => {}
        }
    }
    let env = [
        ("PORT", port.to_string()),
        ("HOST", "127.0.0.1".into()),
        ("LLM_SERVICE_URLS", format!("http://127.0.0.1:{llm_port}")),
        (
            "MAX_CONCURRENT_REQUESTS",
            settings.max_concurrent_requests.to_string(),
        ),
        ("LOG_FORMAT", "json".into()),
        ("GATEWAY_CONFIG", config.display().to_string()),
        ("DRAIN_TIMEOUT_MS", "2000".into()),
        // The history on, as by default: a SQLite file of the run.
        ("DATABASE_URL", format!("sqlite://{}", history.display())),
    ];
    Ok(Spec {
        name: name.to_owned(),
        program: settings.gateway_bin.clone(),
        args: Vec::new(),
        env: env.map(|(k, v)| (k.to_owned(), v)).to_vec(),
        env_remove: vec![
            "REDIS_URL",
            "POSTGRES_URL",
            "DATABASE_URL",
            "HEALTH_CHECK_PATH",
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
            "CIRCUIT_BREAKER_RECOVERY_TIMEOUT",
            "PER_TRY_TIMEOUT_MS",
            "REQUEST_TIMEOUT",
            "MAX_TOKENS",
            "CACHE_MAX_BYTES",
            "CACHE_MAX_ENTRY_BYTES",
            "RUST_LOG",
            // Identity and limits: off unless a scenario sets them (the identity gateways).
            "AUTH_MODE",
            "API_KEYS",
            "API_KEYS_FILE",
            "JWT_SECRET_KEY",
            "JWT_PUBLIC_KEY_FILE",
            "JWT_JWKS_FILE",
            "JWT_AUDIENCE",
            "JWT_ISSUER",
            "ADMIN_ALLOW",
            "PII_REDACTION",
            "RATE_LIMIT_STORE",
            "RATE_LIMIT_FAILURE_MODE",
            "RATE_LIMIT_REPLICAS",
            "RATE_LIMIT_ANONYMOUS",
            "RATE_LIMIT_REDIS_TIMEOUT_MS",
            "RATE_LIMIT_MAX_KEYS",
        ],
        port,
        ready: Ready::Http("/ready"),
        stop_signal: "TERM",
        extra_logs: Vec::new(),
    })
}

impl Stack {
    /// Starts every server, each waited for; a failure stops those already started.
    async fn start(settings: &Settings, http: &reqwest::Client) -> anyhow::Result<Self> {
        let dir = &settings.work_dir;
        let upstream_port = free_port()?;
        eprintln!("==> starting the servers (logs in {})", dir.display());
        let upstream = Server::start(
            nginx_spec(
                settings,
                "upstream-nginx",
                &confs::upstream_conf(dir, "upstream-nginx", upstream_port),
                upstream_port,
            )?,
            dir,
            http,
        )
        .await?;
        let llm_port = free_port()?;
        let llm = Server::start(llm_spec(settings, "llm-service", llm_port, 0), dir, http).await?;
        let stream_port = free_port()?;
        let llm_stream = Server::start(
            llm_spec(
                settings,
                "llm-service-stream",
                stream_port,
                STREAM_TOKEN_INTERVAL_MS,
            ),
            dir,
            http,
        )
        .await?;
        let (hop_answer, hop_generate, hop_stream) = (free_port()?, free_port()?, free_port()?);
        let hop_servers = [
            confs::HopServer {
                name: "answer".into(),
                listen: hop_answer,
                upstream: upstream_port,
                streaming: false,
            },
            confs::HopServer {
                name: "generate".into(),
                listen: hop_generate,
                upstream: llm_port,
                streaming: false,
            },
            confs::HopServer {
                name: "stream".into(),
                listen: hop_stream,
                upstream: stream_port,
                streaming: true,
            },
        ];
        let hop = Server::start(
            nginx_spec(
                settings,
                "hop-nginx",
                &confs::hop_conf(dir, "hop-nginx", &hop_servers),
                hop_answer,
            )?,
            dir,
            http,
        )
        .await?;
        let gateway_port = free_port()?;
        let gateway = Server::start(
            gateway_spec(
                settings,
                "gateway",
                gateway_port,
                llm_port,
                &confs::gateway_toml(upstream_port, stream_port),
            )?,
            dir,
            http,
        )
        .await?;
        let (fallback_port, closed_port) = (free_port()?, free_port()?);
        let fallback = Server::start(
            gateway_spec(
                settings,
                "gateway-breaker-open",
                fallback_port,
                llm_port,
                &confs::fallback_gateway_toml(closed_port, BREAKER_OPEN_MS),
            )?,
            dir,
            http,
        )
        .await?;
        Ok(Self {
            upstream,
            llm,
            llm_stream,
            hop,
            hop_answer,
            hop_generate,
            hop_stream,
            gateway,
            fallback,
        })
    }

    /// Every server, for the report.
    fn servers(&self) -> [&Server; 6] {
        [
            &self.upstream,
            &self.llm,
            &self.llm_stream,
            &self.hop,
            &self.gateway,
            &self.fallback,
        ]
    }

    /// The three targets of a scenario: (target, server under test, port).
    fn targets(&self, scenario: Scenario) -> Vec<Endpoint<'_>> {
        let ep = |target, server, port| Endpoint {
            target,
            server,
            port,
        };
        match scenario {
            Scenario::Answer | Scenario::Memory => vec![
                ep(Target::Direct, &self.upstream, self.upstream.port),
                ep(Target::Hop, &self.hop, self.hop_answer),
                ep(Target::Gateway, &self.gateway, self.gateway.port),
            ],
            Scenario::Generate => vec![
                ep(Target::Direct, &self.llm, self.llm.port),
                ep(Target::Hop, &self.hop, self.hop_generate),
                ep(Target::Gateway, &self.gateway, self.gateway.port),
            ],
            Scenario::Stream => vec![
                ep(Target::Direct, &self.llm_stream, self.llm_stream.port),
                ep(Target::Hop, &self.hop, self.hop_stream),
                ep(Target::Gateway, &self.gateway, self.gateway.port),
            ],
            Scenario::FallbackCache | Scenario::FallbackTemplate => {
                vec![ep(Target::Gateway, &self.fallback, self.fallback.port)]
            }
            // The baseline; the scenario starts the gateways it is compared with.
            Scenario::Identity | Scenario::Persistence => {
                vec![ep(Target::Gateway, &self.gateway, self.gateway.port)]
            }
        }
    }
}

/// One target of a scenario.
struct Endpoint<'a> {
    /// Which.
    target: Target,
    /// The server whose CPU and RSS are counted.
    server: &'a Server,
    /// The port the load goes to.
    port: u16,
}

impl<'a> Endpoint<'a> {
    /// `server` as the target `target`, loaded on its own port (the gateways a scenario
    /// starts for itself).
    fn of(target: Target, server: &'a Server) -> Self {
        Self {
            target,
            server,
            port: server.port,
        }
    }

    /// The stack's gateway (the baseline) and, beside it, each gateway a scenario started.
    fn beside<const N: usize>(
        gateway: &'a Server,
        others: [(Target, Option<&'a Server>); N],
    ) -> Vec<Self> {
        std::iter::once(Self::of(Target::Gateway, gateway))
            .chain(
                others
                    .into_iter()
                    .filter_map(|(target, server)| server.map(|s| Self::of(target, s))),
            )
            .collect()
    }
}

impl Endpoint<'_> {
    /// Its address.
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT{path}`, refused when not loopback.
    fn url(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        ensure_loopback(&url)?;
        Ok(url)
    }

    /// `POST path` with `body` to it.
    fn post(&self, path: &str, body: &str) -> JsonPost {
        JsonPost {
            addr: self.addr(),
            path: path.to_owned(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            headers: Vec::new(),
        }
    }
}

/// What a scenario measures with: its path, body, headers and wrk script.
struct Workload {
    /// The path.
    path: &'static str,
    /// The JSON body.
    body: &'static str,
    /// Headers beside `Content-Type` (the identity scenario's credentials).
    headers: Vec<(String, String)>,
    /// wrk's script.
    script: PathBuf,
}

impl Workload {
    /// Its request to `ep`, for the pacer.
    fn post(&self, ep: &Endpoint<'_>) -> JsonPost {
        JsonPost {
            headers: self.headers.clone(),
            ..ep.post(self.path, self.body)
        }
    }
}

/// What the run collects.
struct Collected {
    /// Every measured run.
    rounds: Vec<Round>,
    /// Streams.
    streams: Vec<StreamResult>,
    /// The memory scenario.
    memory: Option<Memory>,
    /// The soak.
    soak: Option<Soak>,
    /// Servers a scenario started and stopped (beside the stack's).
    servers: Vec<ServerInfo>,
    /// The identity scenario's Redis.
    identity_redis: Option<RedisSource>,
}

/// The run's context.
struct Ctx {
    /// The settings.
    settings: Settings,
    /// Clock ticks per second.
    clk_tck: u64,
    /// For readiness and the fallback checks.
    http: reqwest::Client,
}

/// Starts the servers, runs the scenarios, the soak, and builds the report.
async fn bench(settings: Settings) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&settings.work_dir)
        .with_context(|| format!("cannot create the work dir {}", settings.work_dir.display()))?;
    let settings = Settings {
        work_dir: std::fs::canonicalize(&settings.work_dir)?,
        ..settings
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let ctx = Ctx {
        clk_tck: procfs::clock_ticks_per_second(),
        settings,
        http,
    };
    let stack = Stack::start(&ctx.settings, &ctx.http).await?;
    let answer = workload(&ctx, Scenario::Answer, CHAT_PATH, ANSWER_BODY, Vec::new())?;
    // The gateway's first reading comes after a warm-up, as every measurement does.
    for ep in stack.targets(Scenario::Answer) {
        warm_up(&ctx, &ep, &answer).await?;
    }
    let rss_first = stack.gateway.usage().map(|u| u.rss_bytes as f64 / MIB);
    let mut collected = Collected {
        rounds: Vec::new(),
        streams: Vec::new(),
        memory: None,
        soak: None,
        servers: Vec::new(),
        identity_redis: None,
    };
    let mut errors = Vec::new();
    for scenario in ctx.settings.scenarios.clone() {
        eprintln!("==> scenario {}", scenario.name());
        let result = match scenario {
            Scenario::Answer => {
                let targets = stack.targets(scenario);
                load_scenario(&ctx, &targets, scenario, &answer, &mut collected).await
            }
            Scenario::Identity => identity::identity_scenario(&ctx, &stack, &mut collected).await,
            Scenario::Persistence => {
                persistence::persistence_scenario(&ctx, &stack, &mut collected).await
            }
            Scenario::Generate => {
                match workload(&ctx, scenario, GENERATE_PATH, GENERATE_BODY, Vec::new()) {
                    Ok(w) => {
                        let targets = stack.targets(scenario);
                        load_scenario(&ctx, &targets, scenario, &w, &mut collected).await
                    }
                    Err(e) => Err(e),
                }
            }
            Scenario::FallbackCache | Scenario::FallbackTemplate => {
                fallback_scenario(&ctx, &stack, scenario, &mut collected).await
            }
            Scenario::Stream => stream_scenario(&ctx, &stack, &mut collected).await,
            Scenario::Memory => memory_scenario(&ctx, &stack, &answer, &mut collected).await,
        };
        if let Err(error) = result {
            eprintln!("==> scenario {} failed: {error:#}", scenario.name());
            errors.push(ScenarioError {
                scenario,
                error: format!("{error:#}"),
            });
        }
    }
    if ctx.settings.soak_s > 0 {
        eprintln!("==> soak: {} s", ctx.settings.soak_s);
        match soak(&ctx, &stack).await {
            Ok(soak) => collected.soak = Some(soak),
            Err(error) => errors.push(ScenarioError {
                scenario: Scenario::Answer,
                error: format!("soak: {error:#}"),
            }),
        }
    }
    let rss_last = stack.gateway.usage().map(|u| u.rss_bytes as f64 / MIB);
    let servers = stack
        .servers()
        .iter()
        .map(|s| ServerInfo {
            name: s.name.clone(),
            url: s.url.clone(),
            pid: s.pid,
            pids: s.pids_seen(),
        })
        .chain(collected.servers.drain(..))
        .collect();
    drop(stack);
    let summaries = report::summarize(&collected.rounds);
    let ratios = report::ratios(&summaries);
    let stream_added = report::stream_added(&collected.streams);
    let targets = goals::goals(&Inputs {
        ran: &ctx.settings.scenarios,
        failed: &errors,
        summaries: &summaries,
        ratios: &ratios,
        stream_added: &stream_added,
        memory: collected.memory.as_ref(),
        soak: collected.soak.as_ref(),
        identity_redis: collected.identity_redis.as_ref(),
    });
    let report = Report {
        machine: machine(ctx.clk_tck),
        settings: ctx.settings,
        servers,
        rounds: collected.rounds,
        summaries,
        ratios,
        streams: collected.streams,
        stream_added,
        memory: collected.memory,
        gateway_rss: rss_first.zip(rss_last).map(|(first, last)| Growth {
            first_mib: first,
            last_mib: last,
            pct: growth_pct(first, last),
        }),
        soak: collected.soak,
        identity_redis: collected.identity_redis,
        scenario_errors: errors,
        targets,
    };
    if let Some(parent) = report.settings.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&report.settings.json, json)
        .with_context(|| format!("cannot write {}", report.settings.json.display()))?;
    Ok(report)
}

/// The machine's cores, kernel and CPU model.
fn machine(clk_tck: u64) -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    Machine {
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned()),
        cpu_model,
        clk_tck,
    }
}

/// The scenario's workload, its wrk script written to the work dir.
fn workload(
    ctx: &Ctx,
    scenario: Scenario,
    path: &'static str,
    body: &'static str,
    headers: Vec<(String, String)>,
) -> anyhow::Result<Workload> {
    let script = ctx
        .settings
        .work_dir
        .join(format!("{}.lua", scenario.name()));
    std::fs::write(
        &script,
        confs::wrk_script("POST", body, "application/json", &headers),
    )
    .with_context(|| format!("cannot write {}", script.display()))?;
    Ok(Workload {
        path,
        body,
        headers,
        script,
    })
}

/// One second of wrk; fails when any request failed.
async fn warm_up(ctx: &Ctx, ep: &Endpoint<'_>, work: &Workload) -> anyhow::Result<()> {
    let url = ep.url(work.path)?;
    let summary = wrk::run(
        &ctx.settings.wrk,
        &work.script,
        &url,
        WARM_UP_CONNECTIONS,
        WARM_UP,
    )
    .await?;
    anyhow::ensure!(
        summary.requests > 0 && summary.errors.total() == 0,
        "the warm-up of {} ({url}) had {} errors in {} requests; its log ends with:\n{}",
        ep.target.name(),
        summary.errors.total(),
        summary.requests,
        ep.server.log_tail()
    );
    Ok(())
}

/// CPU µs per request and RSS MiB of `server` between two readings.
fn usage_figures(
    ctx: &Ctx,
    before: Option<&procfs::Usage>,
    after: Option<&procfs::Usage>,
    requests: u64,
) -> (Option<f64>, Option<f64>) {
    let cpu = before.zip(after).and_then(|(b, a)| {
        procfs::cpu_us_per_request(b.cpu_ticks, a.cpu_ticks, ctx.clk_tck, requests)
    });
    (cpu, after.map(|a| a.rss_bytes as f64 / MIB))
}

/// One closed-loop run of wrk at `concurrency`.
async fn closed_round(
    ctx: &Ctx,
    scenario: Scenario,
    ep: &Endpoint<'_>,
    work: &Workload,
    concurrency: u32,
    round: u32,
) -> anyhow::Result<Round> {
    let url = ep.url(work.path)?;
    let before = ep.server.usage();
    let summary = wrk::run(
        &ctx.settings.wrk,
        &work.script,
        &url,
        concurrency,
        Duration::from_secs(ctx.settings.duration_s),
    )
    .await?;
    let after = ep.server.usage();
    let (cpu, rss) = usage_figures(ctx, before.as_ref(), after.as_ref(), summary.requests);
    let seconds = summary.duration_us as f64 / 1e6;
    Ok(Round {
        scenario,
        concurrency: Some(concurrency),
        rate: None,
        target: ep.target,
        round,
        requests: summary.requests,
        seconds,
        rps: if seconds > 0.0 {
            summary.requests as f64 / seconds
        } else {
            0.0
        },
        p50_us: summary.latency.p50,
        p90_us: summary.latency.p90,
        p99_us: summary.latency.p99,
        p999_us: summary.latency.p999,
        errors: summary.errors.total(),
        cpu_us_per_request: cpu,
        rss_mib: rss,
    })
}

/// One fixed-rate run of the pacer.
async fn rate_round(
    ctx: &Ctx,
    scenario: Scenario,
    ep: &Endpoint<'_>,
    work: &Workload,
    round: u32,
) -> anyhow::Result<Round> {
    let before = ep.server.usage();
    let paced = pacer::run(
        work.post(ep),
        ctx.settings.rate,
        Duration::from_secs(ctx.settings.duration_s),
        PACER_CONNECTIONS,
    )
    .await?;
    let after = ep.server.usage();
    let requests = paced.ok + paced.errors;
    let (cpu, rss) = usage_figures(ctx, before.as_ref(), after.as_ref(), requests);
    let seconds = paced.elapsed.as_secs_f64();
    let at = |q: f64| paced.latency.value_at_quantile(q) as f64;
    Ok(Round {
        scenario,
        concurrency: None,
        rate: Some(ctx.settings.rate),
        target: ep.target,
        round,
        requests,
        seconds,
        rps: if seconds > 0.0 {
            paced.ok as f64 / seconds
        } else {
            0.0
        },
        p50_us: at(0.5),
        p90_us: at(0.9),
        p99_us: at(0.99),
        p999_us: at(0.999),
        errors: paced.errors,
        cpu_us_per_request: cpu,
        rss_mib: rss,
    })
}

/// The closed loop at each concurrency, then the fixed rate, each interleaved: for each
/// concurrency, for each round, for each target in order.
async fn load_scenario(
    ctx: &Ctx,
    targets: &[Endpoint<'_>],
    scenario: Scenario,
    work: &Workload,
    out: &mut Collected,
) -> anyhow::Result<()> {
    for ep in targets {
        warm_up(ctx, ep, work).await?;
    }
    let rounds = ctx.settings.rounds;
    for &concurrency in &ctx.settings.concurrency {
        for round in 1..=rounds {
            for ep in targets {
                eprintln!(
                    "    {} c={concurrency} round {round}/{rounds} {}",
                    scenario.name(),
                    ep.target.name()
                );
                out.rounds
                    .push(closed_round(ctx, scenario, ep, work, concurrency, round).await?);
            }
        }
    }
    for round in 1..=rounds {
        for ep in targets {
            eprintln!(
                "    {} rate {}/s round {round}/{rounds} {}",
                scenario.name(),
                ctx.settings.rate,
                ep.target.name()
            );
            out.rounds
                .push(rate_round(ctx, scenario, ep, work, round).await?);
        }
    }
    Ok(())
}

/// The breaker-open gateway: warmed up until its answers come from the expected tier (the
/// breaker open), then loaded like the others.
async fn fallback_scenario(
    ctx: &Ctx,
    stack: &Stack,
    scenario: Scenario,
    out: &mut Collected,
) -> anyhow::Result<()> {
    let (body, tier) = if scenario == Scenario::FallbackCache {
        (CACHE_BODY, "cache")
    } else {
        (TEMPLATE_BODY, "template")
    };
    let work = workload(ctx, scenario, CHAT_PATH, body, Vec::new())?;
    let url = format!("{}{CHAT_PATH}", stack.fallback.url);
    ensure_loopback(&url)?;
    let mut in_a_row = 0;
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while in_a_row < 3 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the breaker-open gateway never answered from the `{tier}` tier three times in a row \
             (last answer: {last}); its log ends with:\n{}",
            stack.fallback.log_tail()
        );
        let answer = ctx
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        match answer {
            Ok(answer) => {
                let header = answer
                    .headers()
                    .get("x-fallback-tier")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                last = format!("HTTP {}, x-fallback-tier {header:?}", answer.status());
                in_a_row = if answer.status().is_success() && header.as_deref() == Some(tier) {
                    in_a_row + 1
                } else {
                    0
                };
            }
            Err(error) => {
                last = error.to_string();
                in_a_row = 0;
            }
        }
    }
    load_scenario(ctx, &stack.targets(scenario), scenario, &work, out).await
}

/// Streams at each concurrency, interleaved by round, per target.
async fn stream_scenario(ctx: &Ctx, stack: &Stack, out: &mut Collected) -> anyhow::Result<()> {
    let targets = stack.targets(Scenario::Stream);
    for ep in &targets {
        let warm = stream::run(ep.post(CHAT_PATH, STREAM_BODY), 10, 2).await?;
        anyhow::ensure!(
            warm.errors == 0,
            "the warm-up streams of {} had {} errors; its log ends with:\n{}",
            ep.target.name(),
            warm.errors,
            ep.server.log_tail()
        );
    }
    let rounds = ctx.settings.rounds as usize;
    let per_round = (ctx.settings.streams / rounds).max(1);
    for concurrency in STREAM_CONCURRENCY {
        let mut totals = Vec::new();
        for _ in &targets {
            totals.push(Streamed::new()?);
        }
        for round in 1..=rounds {
            for (ep, total) in targets.iter().zip(totals.iter_mut()) {
                eprintln!(
                    "    stream c={concurrency} round {round}/{rounds} {}",
                    ep.target.name()
                );
                total.add(
                    &stream::run(ep.post(CHAT_PATH, STREAM_BODY), per_round, concurrency).await?,
                )?;
            }
        }
        for (ep, total) in targets.iter().zip(totals) {
            let at = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64;
            out.streams.push(StreamResult {
                concurrency,
                target: ep.target,
                streams: total.ok,
                errors: total.errors,
                ttft_p50_us: at(&total.ttft, 0.5),
                ttft_p99_us: at(&total.ttft, 0.99),
                gap_p50_us: at(&total.gaps, 0.5),
                gap_p99_us: at(&total.gaps, 0.99),
            });
        }
    }
    Ok(())
}

/// RSS of the gateway and the hop idle (after a warm-up), then holding idle connections.
async fn memory_scenario(
    ctx: &Ctx,
    stack: &Stack,
    answer: &Workload,
    out: &mut Collected,
) -> anyhow::Result<()> {
    let targets: Vec<Endpoint<'_>> = stack
        .targets(Scenario::Memory)
        .into_iter()
        .filter(|ep| ep.target != Target::Direct)
        .collect();
    for ep in &targets {
        warm_up(ctx, ep, answer).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = |ep: &Endpoint<'_>| ep.server.usage().map(|u| u.rss_bytes as f64 / MIB);
    let mut memory = Memory {
        connections: IDLE_CONNECTIONS,
        ..Memory::default()
    };
    for ep in &targets {
        let idle = rss(ep);
        let request = memory::raw_post(ep.addr(), answer.path, answer.body);
        let held = memory::hold(ep.addr(), &request, IDLE_CONNECTIONS).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let holding = rss(ep);
        drop(held);
        let show = |mib: Option<f64>| mib.map_or_else(|| "–".to_owned(), |m| format!("{m:.1}"));
        eprintln!(
            "    memory {}: idle {} MiB, holding {IDLE_CONNECTIONS} connections {} MiB",
            ep.target.name(),
            show(idle),
            show(holding)
        );
        if ep.target == Target::Gateway {
            (memory.gateway_idle_mib, memory.gateway_held_mib) = (idle, holding);
        } else {
            (memory.hop_idle_mib, memory.hop_held_mib) = (idle, holding);
        }
    }
    out.memory = Some(memory);
    Ok(())
}

/// The soak: the fixed rate on the gateway's answer path for `--soak` seconds, its RSS read
/// every 10 s.
async fn soak(ctx: &Ctx, stack: &Stack) -> anyhow::Result<Soak> {
    let seconds = ctx.settings.soak_s;
    let gateway = stack
        .targets(Scenario::Answer)
        .into_iter()
        .find(|ep| ep.target == Target::Gateway)
        .context("no gateway target")?;
    let rss = || stack.gateway.usage().map(|u| u.rss_bytes as f64 / MIB);
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let paced = async {
        let paced = pacer::run(
            gateway.post(CHAT_PATH, ANSWER_BODY),
            ctx.settings.rate,
            Duration::from_secs(seconds),
            PACER_CONNECTIONS,
        )
        .await;
        let _ = done_tx.send(());
        paced
    };
    let sampled = async {
        let mut samples: Vec<f64> = rss().into_iter().collect();
        loop {
            tokio::select! {
                () = tokio::time::sleep(SOAK_SAMPLE) => samples.extend(rss()),
                _ = &mut done_rx => break,
            }
        }
        samples.extend(rss());
        samples
    };
    let (paced, samples) = tokio::join!(paced, sampled);
    let paced = paced?;
    let growth = samples
        .first()
        .zip(samples.last())
        .map(|(&first, &last)| Growth {
            first_mib: first,
            last_mib: last,
            pct: growth_pct(first, last),
        });
    Ok(Soak {
        seconds,
        requests: paced.ok,
        errors: paced.errors,
        p99_us: paced.latency.value_at_quantile(0.99) as f64,
        rss_mib: samples,
        growth,
    })
}
