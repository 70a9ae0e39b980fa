//! What the bench measured, its aggregation over rounds (medians with min–max, ratios,
//! added latency) and the text table; the same structure is written as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::Settings;
use super::goals::{Goal, Verdict};
use super::stats::{Spread, added, ratio};

/// What the bench can measure (`--scenarios`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// OpenAI chat completions, whole answers: direct nginx, nginx hop, gateway.
    Answer,
    /// The answer path with an API key: the gateway without authentication (the baseline),
    /// with it and the in-memory limiter, and with the Redis limiter.
    Identity,
    /// The answer path with the history and the access log on (the gateway), off
    /// (`gateway-quiet`), and with the history's database down (`gateway+db-down`).
    Persistence,
    /// The lab's `POST /generate`: direct llm-service, nginx hop, gateway.
    Generate,
    /// Streamed chat completions: time to first token and gaps.
    Stream,
    /// The breaker-open gateway answering from the seeded cache.
    FallbackCache,
    /// The breaker-open gateway answering with the template.
    FallbackTemplate,
    /// RSS idle and holding 1,000 idle connections.
    Memory,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Self; 8] = [
        Self::Memory,
        Self::Answer,
        Self::Identity,
        Self::Persistence,
        Self::Generate,
        Self::Stream,
        Self::FallbackCache,
        Self::FallbackTemplate,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Identity => "identity",
            Self::Persistence => "persistence",
            Self::Generate => "generate",
            Self::Stream => "stream",
            Self::FallbackCache => "fallback-cache",
            Self::FallbackTemplate => "fallback-template",
            Self::Memory => "memory",
        }
    }
}

/// Where the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The upstream itself (nginx, or the llm-service).
    Direct,
    /// nginx in front of the upstream.
    Hop,
    /// The gateway in front of the upstream.
    Gateway,
    /// A gateway like it with API keys and the in-memory rate limiter on.
    #[serde(rename = "gateway+auth")]
    GatewayAuth,
    /// A gateway like it with API keys and the rate limiter in Redis.
    #[serde(rename = "gateway+redis")]
    GatewayRedis,
    /// A gateway like it without a history database and without the access log.
    #[serde(rename = "gateway-quiet")]
    GatewayQuiet,
    /// A gateway like it whose history database never answers.
    #[serde(rename = "gateway+db-down")]
    GatewayDbDown,
}

impl Target {
    /// Its name in the table (and in the JSON).
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Hop => "hop",
            Self::Gateway => "gateway",
            Self::GatewayAuth => "gateway+auth",
            Self::GatewayRedis => "gateway+redis",
            Self::GatewayQuiet => "gateway-quiet",
            Self::GatewayDbDown => "gateway+db-down",
        }
    }
}

/// Where the identity scenario's `gateway+redis` target found its Redis, or why it was
/// not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum RedisSource {
    /// `REDIS_URL` of the bench's environment (its credentials hidden).
    Environment {
        /// The URL, without user or password.
        url: String,
    },
    /// A private `redis-server` the bench started.
    Private {
        /// Its URL.
        url: String,
    },
    /// Not run.
    NotRun {
        /// Why.
        reason: String,
    },
}

impl RedisSource {
    /// One line for the report.
    pub fn describe(&self) -> String {
        match self {
            Self::Environment { url } => format!("REDIS_URL of the environment ({url})"),
            Self::Private { url } => format!("a private redis-server ({url})"),
            Self::NotRun { reason } => format!("not run: {reason}"),
        }
    }
}

/// One measured run of one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Round {
    /// The scenario.
    pub scenario: Scenario,
    /// The closed loop's connections; `None` for the fixed-rate run.
    pub concurrency: Option<u32>,
    /// The fixed rate, requests/s; `None` for the closed loop.
    pub rate: Option<f64>,
    /// The target.
    pub target: Target,
    /// 1-based round.
    pub round: u32,
    /// Requests answered (wrk: completed, including non-2xx).
    pub requests: u64,
    /// How long the run lasted.
    pub seconds: f64,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles in µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Non-2xx answers plus socket errors and timeouts.
    pub errors: u64,
    /// CPU time of the server under test per request, µs.
    pub cpu_us_per_request: Option<f64>,
    /// RSS of the server under test after the run, MiB.
    pub rss_mib: Option<f64>,
}

/// One target's figures over the rounds of one scenario and load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The scenario.
    pub scenario: Scenario,
    /// The closed loop's connections; `None` for the fixed-rate run.
    pub concurrency: Option<u32>,
    /// The target.
    pub target: Target,
    /// Rounds aggregated.
    pub rounds: usize,
    /// Requests per second.
    pub rps: Option<Spread>,
    /// Median latency, µs.
    pub p50_us: Option<Spread>,
    /// 99th percentile, µs.
    pub p99_us: Option<Spread>,
    /// 99.9th percentile, µs.
    pub p999_us: Option<Spread>,
    /// Errors per round.
    pub errors: Option<Spread>,
    /// CPU µs per request.
    pub cpu_us_per_request: Option<Spread>,
    /// RSS, MiB.
    pub rss_mib: Option<Spread>,
}

/// The gateway against the hop and the direct path, from the medians of one scenario and
/// load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratios {
    /// The scenario.
    pub scenario: Scenario,
    /// The closed loop's connections; `None` for the fixed-rate run.
    pub concurrency: Option<u32>,
    /// Gateway req/s ÷ hop req/s.
    pub gateway_over_hop_rps: Option<f64>,
    /// Gateway req/s ÷ direct req/s.
    pub gateway_over_direct_rps: Option<f64>,
    /// Gateway CPU/request ÷ hop CPU/request.
    pub gateway_over_hop_cpu: Option<f64>,
    /// Gateway CPU/request ÷ direct CPU/request.
    pub gateway_over_direct_cpu: Option<f64>,
    /// Gateway p50 − direct p50, µs.
    pub gateway_added_p50_us: Option<f64>,
    /// Gateway p99 − direct p99, µs.
    pub gateway_added_p99_us: Option<f64>,
    /// Hop p50 − direct p50, µs.
    pub hop_added_p50_us: Option<f64>,
    /// Hop p99 − direct p99, µs.
    pub hop_added_p99_us: Option<f64>,
    /// gateway+auth req/s ÷ gateway req/s (the identity scenario).
    pub auth_over_gateway_rps: Option<f64>,
    /// gateway+auth CPU/request ÷ gateway CPU/request.
    pub auth_over_gateway_cpu: Option<f64>,
    /// gateway+redis req/s ÷ gateway req/s.
    pub redis_over_gateway_rps: Option<f64>,
    /// gateway+redis CPU/request ÷ gateway CPU/request.
    pub redis_over_gateway_cpu: Option<f64>,
    /// gateway req/s ÷ gateway-quiet req/s (the persistence scenario: history and access log
    /// on, against both off).
    pub gateway_over_quiet_rps: Option<f64>,
    /// gateway CPU/request ÷ gateway-quiet CPU/request.
    pub gateway_over_quiet_cpu: Option<f64>,
    /// gateway+db-down req/s ÷ gateway req/s.
    pub db_down_over_gateway_rps: Option<f64>,
    /// gateway+db-down p99 − gateway p99, µs.
    pub db_down_added_p99_us: Option<f64>,
}

/// Streams of one target at one concurrency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamResult {
    /// Streams at once.
    pub concurrency: usize,
    /// The target.
    pub target: Target,
    /// Streams that delivered content and ended.
    pub streams: u64,
    /// Streams that failed.
    pub errors: u64,
    /// Time to first content token, median, µs.
    pub ttft_p50_us: f64,
    /// Time to first content token, p99, µs.
    pub ttft_p99_us: f64,
    /// Inter-chunk gap, median, µs.
    pub gap_p50_us: f64,
    /// Inter-chunk gap, p99, µs.
    pub gap_p99_us: f64,
}

/// The gateway's added time to first token at one concurrency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamAdded {
    /// Streams at once.
    pub concurrency: usize,
    /// Gateway median TTFT − direct median TTFT, µs.
    pub vs_direct_p50_us: Option<f64>,
    /// Gateway median TTFT − hop median TTFT, µs.
    pub vs_hop_p50_us: Option<f64>,
    /// Gateway p99 TTFT − direct p99 TTFT, µs.
    pub vs_direct_p99_us: Option<f64>,
}

/// The memory scenario's readings, MiB.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Memory {
    /// Idle connections held.
    pub connections: usize,
    /// The gateway idle, after warm-up.
    pub gateway_idle_mib: Option<f64>,
    /// The hop nginx idle (master and workers).
    pub hop_idle_mib: Option<f64>,
    /// The gateway holding the connections.
    pub gateway_held_mib: Option<f64>,
    /// The hop nginx holding the connections.
    pub hop_held_mib: Option<f64>,
}

/// RSS at two instants, MiB, and the growth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Growth {
    /// The first reading.
    pub first_mib: f64,
    /// The last reading.
    pub last_mib: f64,
    /// (last − first) ÷ first, percent.
    pub pct: Option<f64>,
}

/// The soak run: fixed rate on the gateway's answer path, RSS every 10 s.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Soak {
    /// Its length.
    pub seconds: u64,
    /// Requests answered.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// p99 latency, µs.
    pub p99_us: f64,
    /// The gateway's RSS readings, MiB.
    pub rss_mib: Vec<f64>,
    /// From the first reading to the last.
    pub growth: Option<Growth>,
}

/// A scenario that could not complete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioError {
    /// The scenario.
    pub scenario: Scenario,
    /// Why.
    pub error: String,
}

/// The machine the bench ran on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    /// Cores available to the bench.
    pub cores: usize,
    /// The kernel release.
    pub kernel: String,
    /// The CPU model.
    pub cpu_model: String,
    /// Clock ticks per second of `/proc/<pid>/stat`.
    pub clk_tck: u64,
}

/// A server the bench started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerInfo {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Its main process id.
    pub pid: u32,
    /// Every process id counted for it (nginx's workers too).
    pub pids: Vec<u32>,
}

/// Everything the bench measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// The settings.
    pub settings: Settings,
    /// The servers it started.
    pub servers: Vec<ServerInfo>,
    /// Every measured run.
    pub rounds: Vec<Round>,
    /// Medians with min–max.
    pub summaries: Vec<Summary>,
    /// Ratios and added latency.
    pub ratios: Vec<Ratios>,
    /// Streams.
    pub streams: Vec<StreamResult>,
    /// The gateway's added TTFT.
    pub stream_added: Vec<StreamAdded>,
    /// The memory scenario.
    pub memory: Option<Memory>,
    /// The gateway's RSS from the start of measurement to the end of the run.
    pub gateway_rss: Option<Growth>,
    /// The soak run.
    pub soak: Option<Soak>,
    /// The identity scenario's Redis, when the scenario got that far.
    pub identity_redis: Option<RedisSource>,
    /// Scenarios that could not complete.
    pub scenario_errors: Vec<ScenarioError>,
    /// The goals.
    pub targets: Vec<Goal>,
}

/// The summaries of `rounds`: one per (scenario, load, target), in the order first met.
pub fn summarize(rounds: &[Round]) -> Vec<Summary> {
    let mut keys: Vec<(Scenario, Option<u32>, Target)> = Vec::new();
    for r in rounds {
        let key = (r.scenario, r.concurrency, r.target);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(scenario, concurrency, target)| {
            let of: Vec<&Round> = rounds
                .iter()
                .filter(|r| {
                    (r.scenario, r.concurrency, r.target) == (scenario, concurrency, target)
                })
                .collect();
            let spread = |f: &dyn Fn(&Round) -> f64| {
                Spread::of(&of.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let spread_opt = |f: &dyn Fn(&Round) -> Option<f64>| {
                Spread::of(&of.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            Summary {
                scenario,
                concurrency,
                target,
                rounds: of.len(),
                rps: spread(&|r| r.rps),
                p50_us: spread(&|r| r.p50_us),
                p99_us: spread(&|r| r.p99_us),
                p999_us: spread(&|r| r.p999_us),
                errors: spread(&|r| r.errors as f64),
                cpu_us_per_request: spread_opt(&|r| r.cpu_us_per_request),
                rss_mib: spread_opt(&|r| r.rss_mib),
            }
        })
        .collect()
}

/// The median of `pick` of `target`'s summary in `group`.
fn median(group: &[&Summary], target: Target, pick: fn(&Summary) -> Option<Spread>) -> Option<f64> {
    group
        .iter()
        .find(|s| s.target == target)
        .and_then(|s| pick(s))
        .map(|s| s.median)
}

/// The ratios of every (scenario, load) whose summaries include the gateway.
pub fn ratios(summaries: &[Summary]) -> Vec<Ratios> {
    let mut keys: Vec<(Scenario, Option<u32>)> = Vec::new();
    for s in summaries {
        if !keys.contains(&(s.scenario, s.concurrency)) {
            keys.push((s.scenario, s.concurrency));
        }
    }
    keys.into_iter()
        .filter_map(|(scenario, concurrency)| {
            let group: Vec<&Summary> = summaries
                .iter()
                .filter(|s| (s.scenario, s.concurrency) == (scenario, concurrency))
                .collect();
            if group.len() < 2 {
                return None;
            }
            let get = |t, pick| median(&group, t, pick);
            let rps = |s: &Summary| s.rps;
            let cpu = |s: &Summary| s.cpu_us_per_request;
            let p50 = |s: &Summary| s.p50_us;
            let p99 = |s: &Summary| s.p99_us;
            use Target::{
                Direct, Gateway, GatewayAuth, GatewayDbDown, GatewayQuiet, GatewayRedis, Hop,
            };
            Some(Ratios {
                scenario,
                concurrency,
                gateway_over_hop_rps: ratio(get(Gateway, rps), get(Hop, rps)),
                gateway_over_direct_rps: ratio(get(Gateway, rps), get(Direct, rps)),
                gateway_over_hop_cpu: ratio(get(Gateway, cpu), get(Hop, cpu)),
                gateway_over_direct_cpu: ratio(get(Gateway, cpu), get(Direct, cpu)),
                gateway_added_p50_us: added(get(Gateway, p50), get(Direct, p50)),
                gateway_added_p99_us: added(get(Gateway, p99), get(Direct, p99)),
                hop_added_p50_us: added(get(Hop, p50), get(Direct, p50)),
                hop_added_p99_us: added(get(Hop, p99), get(Direct, p99)),
                auth_over_gateway_rps: ratio(get(GatewayAuth, rps), get(Gateway, rps)),
                auth_over_gateway_cpu: ratio(get(GatewayAuth, cpu), get(Gateway, cpu)),
                redis_over_gateway_rps: ratio(get(GatewayRedis, rps), get(Gateway, rps)),
                redis_over_gateway_cpu: ratio(get(GatewayRedis, cpu), get(Gateway, cpu)),
                gateway_over_quiet_rps: ratio(get(Gateway, rps), get(GatewayQuiet, rps)),
                gateway_over_quiet_cpu: ratio(get(Gateway, cpu), get(GatewayQuiet, cpu)),
                db_down_over_gateway_rps: ratio(get(GatewayDbDown, rps), get(Gateway, rps)),
                db_down_added_p99_us: added(get(GatewayDbDown, p99), get(Gateway, p99)),
            })
        })
        .collect()
}

/// The added TTFT of the gateway at each concurrency of `streams`.
pub fn stream_added(streams: &[StreamResult]) -> Vec<StreamAdded> {
    let mut levels: Vec<usize> = streams.iter().map(|s| s.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    levels
        .into_iter()
        .map(|concurrency| {
            let get = |target: Target, p99: bool| {
                streams
                    .iter()
                    .find(|s| s.concurrency == concurrency && s.target == target && s.streams > 0)
                    .map(|s| if p99 { s.ttft_p99_us } else { s.ttft_p50_us })
            };
            StreamAdded {
                concurrency,
                vs_direct_p50_us: added(get(Target::Gateway, false), get(Target::Direct, false)),
                vs_hop_p50_us: added(get(Target::Gateway, false), get(Target::Hop, false)),
                vs_direct_p99_us: added(get(Target::Gateway, true), get(Target::Direct, true)),
            }
        })
        .collect()
}

/// `Some(x)` with `decimals` decimals, or `–`.
fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

/// `Some(x)` as signed µs, or `–`.
fn signed_us(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:+.0} µs"))
}

/// A spread, or `–`.
fn spread(value: Option<Spread>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |s| s.show(decimals))
}

/// The load's label: `c=16` or `rate=2000/s`.
fn load_label(concurrency: Option<u32>, settings: &Settings) -> String {
    concurrency.map_or_else(
        || format!("fixed rate {}/s (own pacer)", settings.rate),
        |c| format!("c={c} (wrk)"),
    )
}

/// The identity scenario's ratio lines: each gateway with identity against the baseline.
fn identity_lines(out: &mut String, r: Option<&Ratios>, redis: Option<&RedisSource>) {
    let (auth_rps, auth_cpu, redis_rps, redis_cpu) = r.map_or((None, None, None, None), |r| {
        (
            r.auth_over_gateway_rps,
            r.auth_over_gateway_cpu,
            r.redis_over_gateway_rps,
            r.redis_over_gateway_cpu,
        )
    });
    let _ = writeln!(
        out,
        "  gateway+auth/gateway: req/s ×{}, CPU/req ×{}",
        opt(auth_rps, 2),
        opt(auth_cpu, 2)
    );
    match redis {
        Some(source @ RedisSource::NotRun { .. }) => {
            let _ = writeln!(out, "  gateway+redis/gateway: {}", source.describe());
        }
        _ => {
            let _ = writeln!(
                out,
                "  gateway+redis/gateway: req/s ×{}, CPU/req ×{}",
                opt(redis_rps, 2),
                opt(redis_cpu, 2)
            );
        }
    }
}

/// The persistence scenario's ratio lines: the defaults against both off, and the
/// database down against the defaults.
fn persistence_lines(out: &mut String, r: Option<&Ratios>) {
    let pick = |f: fn(&Ratios) -> Option<f64>| r.and_then(f);
    let _ = writeln!(
        out,
        "  gateway/gateway-quiet (history + access log on vs off): req/s ×{}, CPU/req ×{}",
        opt(pick(|r| r.gateway_over_quiet_rps), 2),
        opt(pick(|r| r.gateway_over_quiet_cpu), 2)
    );
    let _ = writeln!(
        out,
        "  gateway+db-down/gateway: req/s ×{}, p99 {}",
        opt(pick(|r| r.db_down_over_gateway_rps), 2),
        signed_us(pick(|r| r.db_down_added_p99_us))
    );
}

/// The whole text report.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let s = &report.settings;
    let m = &report.machine;
    let _ = writeln!(
        out,
        "resilience-tests bench — {} cores, {}, kernel {}",
        m.cores, m.cpu_model, m.kernel
    );
    let _ = writeln!(
        out,
        "gateway MAX_CONCURRENT_REQUESTS={} · rounds {} × {} s · concurrency {:?} · rate {}/s · \
         streams {} · each figure: median [min–max] over rounds",
        s.max_concurrent_requests, s.rounds, s.duration_s, s.concurrency, s.rate, s.streams
    );
    let mut groups: Vec<(Scenario, Option<u32>)> = Vec::new();
    for summary in &report.summaries {
        if !groups.contains(&(summary.scenario, summary.concurrency)) {
            groups.push((summary.scenario, summary.concurrency));
        }
    }
    for (scenario, concurrency) in groups {
        let _ = writeln!(
            out,
            "\n{} · {}",
            scenario.name(),
            load_label(concurrency, s)
        );
        let _ = writeln!(
            out,
            "  {:<13} {:>26} {:>24} {:>24} {:>24} {:>12} {:>20} {:>20}",
            "target", "req/s", "p50 µs", "p99 µs", "p99.9 µs", "errors", "CPU µs/req", "RSS MiB"
        );
        for summary in report
            .summaries
            .iter()
            .filter(|x| (x.scenario, x.concurrency) == (scenario, concurrency))
        {
            let _ = writeln!(
                out,
                "  {:<13} {:>26} {:>24} {:>24} {:>24} {:>12} {:>20} {:>20}",
                summary.target.name(),
                spread(summary.rps, 0),
                spread(summary.p50_us, 0),
                spread(summary.p99_us, 0),
                spread(summary.p999_us, 0),
                spread(summary.errors, 0),
                spread(summary.cpu_us_per_request, 1),
                spread(summary.rss_mib, 1),
            );
        }
        let group_ratios = report
            .ratios
            .iter()
            .find(|r| (r.scenario, r.concurrency) == (scenario, concurrency));
        if scenario == Scenario::Identity {
            identity_lines(&mut out, group_ratios, report.identity_redis.as_ref());
        } else if scenario == Scenario::Persistence {
            persistence_lines(&mut out, group_ratios);
        } else if let Some(r) = group_ratios {
            let _ = writeln!(
                out,
                "  gateway/hop: req/s ×{}, CPU/req ×{} · gateway/direct: req/s ×{}, CPU/req ×{}",
                opt(r.gateway_over_hop_rps, 2),
                opt(r.gateway_over_hop_cpu, 2),
                opt(r.gateway_over_direct_rps, 2),
                opt(r.gateway_over_direct_cpu, 2),
            );
            let _ = writeln!(
                out,
                "  added over direct: gateway p50 {}, p99 {} · hop p50 {}, p99 {}",
                signed_us(r.gateway_added_p50_us),
                signed_us(r.gateway_added_p99_us),
                signed_us(r.hop_added_p50_us),
                signed_us(r.hop_added_p99_us),
            );
        }
    }
    if let Some(redis) = &report.identity_redis {
        let _ = writeln!(
            out,
            "\nidentity · gateway+redis's Redis: {}",
            redis.describe()
        );
    }
    if !report.streams.is_empty() {
        let _ = writeln!(
            out,
            "\nstream · own client, {} streams per target and concurrency",
            s.streams
        );
        let _ = writeln!(
            out,
            "  {:<4} {:<8} {:>8} {:>7} {:>14} {:>14} {:>14} {:>14}",
            "c",
            "target",
            "streams",
            "errors",
            "TTFT p50 µs",
            "TTFT p99 µs",
            "gap p50 µs",
            "gap p99 µs"
        );
        for r in &report.streams {
            let _ = writeln!(
                out,
                "  {:<4} {:<8} {:>8} {:>7} {:>14.0} {:>14.0} {:>14.0} {:>14.0}",
                r.concurrency,
                r.target.name(),
                r.streams,
                r.errors,
                r.ttft_p50_us,
                r.ttft_p99_us,
                r.gap_p50_us,
                r.gap_p99_us
            );
        }
        for a in &report.stream_added {
            let _ = writeln!(
                out,
                "  c={}: gateway added TTFT p50 {} vs direct, {} vs hop; p99 {} vs direct",
                a.concurrency,
                signed_us(a.vs_direct_p50_us),
                signed_us(a.vs_hop_p50_us),
                signed_us(a.vs_direct_p99_us),
            );
        }
    }
    if let Some(mem) = &report.memory {
        let _ = writeln!(out, "\nmemory · RSS MiB (nginx: master + workers)");
        let _ = writeln!(
            out,
            "  gateway: idle {}, holding {} idle connections {}",
            opt(mem.gateway_idle_mib, 1),
            mem.connections,
            opt(mem.gateway_held_mib, 1)
        );
        let _ = writeln!(
            out,
            "  hop:     idle {}, holding {} idle connections {}",
            opt(mem.hop_idle_mib, 1),
            mem.connections,
            opt(mem.hop_held_mib, 1)
        );
    }
    if let Some(g) = &report.gateway_rss {
        let _ = writeln!(
            out,
            "  gateway RSS over the whole run: {:.1} → {:.1} MiB ({}%)",
            g.first_mib,
            g.last_mib,
            opt(g.pct, 1)
        );
    }
    if let Some(soak) = &report.soak {
        let _ = writeln!(
            out,
            "\nsoak · {} s at {}/s on the gateway's answer path: {} answered, {} errors, p99 {:.0} µs, RSS {:?} MiB, growth {}%",
            soak.seconds,
            s.rate,
            soak.requests,
            soak.errors,
            soak.p99_us,
            soak.rss_mib,
            opt(soak.growth.as_ref().and_then(|g| g.pct), 1)
        );
    }
    for e in &report.scenario_errors {
        let _ = writeln!(out, "\n{} FAILED: {}", e.scenario.name(), e.error);
    }
    let _ = writeln!(out, "\ntargets");
    for goal in &report.targets {
        let verdict = match goal.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotRun => "not run",
        };
        let _ = writeln!(out, "  {verdict:<7}  {} — {}", goal.goal, goal.measured);
    }
    out
}
