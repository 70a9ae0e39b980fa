//! The identity scenario (issue 18): what an API key and the rate limiter cost. The answer
//! path's load, every request carrying `Authorization: Bearer <key>`, goes to three gateways
//! interleaved: the stack's gateway (authentication off, no limiter: the baseline),
//! `gateway+auth` (the same settings plus `AUTH_MODE=api_key`, a key file and a tier whose
//! limit is never reached; the in-memory limiter) and `gateway+redis` (the limiter in Redis:
//! `REDIS_URL` of the environment, else a private `redis-server`, else not run). The two
//! extra gateways (and the private Redis) run only while the scenario does; before any load
//! each must refuse a request without the key (401) and answer one with it carrying
//! `X-RateLimit-Limit`, so a gateway that ignores the settings is never measured as one
//! that checks them. The key lives in the work dir's wrk script only; the gateways get its
//! SHA-256, and nothing prints it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::confs::{self, KeyEntry};
use super::report::{RedisSource, Scenario, ServerInfo, Target};
use super::servers::{Ready, Server, Spec, free_port};
use super::{ANSWER_BODY, CHAT_PATH, Collected, Ctx, Endpoint, Stack};

/// The key's owner in the gateways' key file.
pub const OWNER: &str = "bench";
/// The key's tier (configured with a limit never reached).
pub const TIER: &str = "bench";
/// The scope the answer path needs.
pub const SCOPE: &str = "llm:generate";
/// The prefix of the bench's API key.
pub const KEY_PREFIX: &str = "gk_";
/// The key file's name in the work dir.
const KEYS_FILE: &str = "identity-keys.toml";
/// The header that shows a request went through the limiter.
const LIMIT_HEADER: &str = "x-ratelimit-limit";

/// SHA-256 of `text` in lowercase hex (64 digits).
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An API key derived from `seed`: [`KEY_PREFIX`] and 64 hex digits.
pub fn api_key(seed: &str) -> String {
    format!("{KEY_PREFIX}{}", sha256_hex(seed))
}

/// A key for this run alone (process id, time and work dir: a key of an earlier run, left
/// in its wrk script, is worth nothing to this one's gateways).
fn fresh_api_key(work_dir: &Path) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    api_key(&format!(
        "{} {nanos} {}",
        std::process::id(),
        work_dir.display()
    ))
}

/// `url` without its user and password (`redis://***@host:port/db`): what the report
/// may show of a Redis URL.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Where `gateway+redis` gets its Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisPlan {
    /// `REDIS_URL` of the environment.
    Environment(String),
    /// A private `redis-server`, this program.
    Private(PathBuf),
    /// None: the target is not run, for this reason.
    Skip(String),
}

/// The plan: a non-blank `REDIS_URL` first, else `redis_server` when it is a file, else
/// none.
pub fn redis_plan(env_url: Option<String>, redis_server: Option<&Path>) -> RedisPlan {
    match (env_url.filter(|u| !u.trim().is_empty()), redis_server) {
        (Some(url), _) => RedisPlan::Environment(url),
        (None, Some(path)) if path.is_file() => RedisPlan::Private(path.to_owned()),
        (None, Some(path)) => RedisPlan::Skip(format!("no redis-server at {}", path.display())),
        (None, None) => RedisPlan::Skip("no redis-server".to_owned()),
    }
}

/// A private `redis-server` on 127.0.0.1:`port`: nothing saved, no append-only file.
fn redis_spec(program: PathBuf, port: u16) -> Spec {
    Spec {
        name: "identity-redis".to_owned(),
        program,
        args: [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(str::to_owned)
        .to_vec(),
        env: Vec::new(),
        env_remove: Vec::new(),
        port,
        ready: Ready::RedisPing,
        stop_signal: "TERM",
        extra_logs: Vec::new(),
    }
}

/// What the scenario starts; each server stopped when dropped.
#[derive(Default)]
struct Extra {
    /// `gateway+auth`.
    auth: Option<Server>,
    /// The private Redis.
    redis: Option<Server>,
    /// `gateway+redis`.
    redis_gateway: Option<Server>,
}

impl Extra {
    /// The report's record of each server started.
    fn infos(&self) -> Vec<ServerInfo> {
        [&self.auth, &self.redis, &self.redis_gateway]
            .into_iter()
            .flatten()
            .map(|s| ServerInfo {
                name: s.name.clone(),
                url: s.url.clone(),
                pid: s.pid,
                pids: s.pids_seen(),
            })
            .collect()
    }
}

/// Runs the scenario; the servers it started are in the report whether it succeeded or not,
/// and stopped when it returns.
pub(super) async fn identity_scenario(
    ctx: &Ctx,
    stack: &Stack,
    out: &mut Collected,
) -> anyhow::Result<()> {
    let mut extra = Extra::default();
    let result = run(ctx, stack, &mut extra, out).await;
    out.servers.extend(extra.infos());
    result
}

/// Writes the key file, starts the gateways (and Redis), checks that they enforce the key,
/// then loads the three targets like the answer scenario.
async fn run(
    ctx: &Ctx,
    stack: &Stack,
    extra: &mut Extra,
    out: &mut Collected,
) -> anyhow::Result<()> {
    let dir = &ctx.settings.work_dir;
    let key = fresh_api_key(dir);
    let keys_path = dir.join(KEYS_FILE);
    let hash = sha256_hex(&key);
    let keys = confs::api_keys_toml(&[KeyEntry {
        owner: OWNER,
        tier: TIER,
        scopes: &[SCOPE],
        sha256: &hash,
    }]);
    std::fs::write(&keys_path, keys)
        .with_context(|| format!("cannot write {}", keys_path.display()))?;
    let auth = start_gateway(ctx, stack, "gateway-auth", &keys_path, None).await?;
    check_enforced(ctx, extra.auth.insert(auth), &key).await?;
    let plan = redis_plan(
        std::env::var("REDIS_URL").ok(),
        ctx.settings.redis_server.as_deref(),
    );
    let (redis_url, source) = match plan {
        RedisPlan::Environment(url) => {
            let shown = redact_url(&url);
            (Some(url), RedisSource::Environment { url: shown })
        }
        RedisPlan::Private(program) => {
            let port = free_port()?;
            let redis = Server::start(redis_spec(program, port), dir, &ctx.http).await?;
            let url = extra.redis.insert(redis).url.clone();
            (Some(url.clone()), RedisSource::Private { url })
        }
        RedisPlan::Skip(reason) => (None, RedisSource::NotRun { reason }),
    };
    eprintln!("    identity: gateway+redis's Redis: {}", source.describe());
    out.identity_redis = Some(source);
    if let Some(url) = redis_url {
        let gateway = start_gateway(ctx, stack, "gateway-redis", &keys_path, Some(&url)).await?;
        check_enforced(ctx, extra.redis_gateway.insert(gateway), &key).await?;
    }
    let headers = vec![("Authorization".to_owned(), format!("Bearer {key}"))];
    let work = super::workload(ctx, Scenario::Identity, CHAT_PATH, ANSWER_BODY, headers)?;
    let targets = Endpoint::beside(
        &stack.gateway,
        [
            (Target::GatewayAuth, extra.auth.as_ref()),
            (Target::GatewayRedis, extra.redis_gateway.as_ref()),
        ],
    );
    super::load_scenario(ctx, &targets, Scenario::Identity, &work, out).await
}

/// A gateway like the stack's, with API keys from `keys` and the `bench` tier; its limiter
/// in Redis at `redis_url` (failing closed, so a Redis it cannot reach shows as errors,
/// never as the local limiter's figures) or else in memory.
async fn start_gateway(
    ctx: &Ctx,
    stack: &Stack,
    name: &str,
    keys: &Path,
    redis_url: Option<&str>,
) -> anyhow::Result<Server> {
    let toml = confs::identity_gateway_toml(stack.upstream.port, stack.llm_stream.port, TIER);
    let mut env = vec![
        ("AUTH_MODE", "api_key".to_owned()),
        ("API_KEYS_FILE", keys.display().to_string()),
    ];
    match redis_url {
        Some(url) => env.extend([
            ("RATE_LIMIT_STORE", "redis".to_owned()),
            ("RATE_LIMIT_FAILURE_MODE", "fail_closed".to_owned()),
            ("REDIS_URL", url.to_owned()),
        ]),
        None => env.push(("RATE_LIMIT_STORE", "memory".to_owned())),
    }
    super::start_variant(ctx, stack, name, &toml, env).await
}

/// Fails unless `server` answers the answer path 401 without the key and 2xx with it,
/// `X-RateLimit-Limit` set: authentication and the limiter are on.
async fn check_enforced(ctx: &Ctx, server: &Server, key: &str) -> anyhow::Result<()> {
    let url = format!("{}{CHAT_PATH}", server.url);
    super::servers::ensure_loopback(&url)?;
    let send = |bearer: Option<&str>| {
        let mut request = ctx
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(ANSWER_BODY)
            .timeout(Duration::from_secs(15));
        if let Some(key) = bearer {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    let anonymous = send(None)
        .await
        .with_context(|| format!("{} ({url}) did not answer", server.name))?;
    anyhow::ensure!(
        anonymous.status() == reqwest::StatusCode::UNAUTHORIZED,
        "{} answered HTTP {} to a request without a key (expected 401): does this gateway \
         support AUTH_MODE=api_key? Its log ends with:\n{}",
        server.name,
        anonymous.status(),
        server.log_tail()
    );
    let keyed = send(Some(key))
        .await
        .with_context(|| format!("{} ({url}) did not answer", server.name))?;
    let limited = keyed.headers().contains_key(LIMIT_HEADER);
    anyhow::ensure!(
        keyed.status().is_success() && limited,
        "{} answered HTTP {} ({LIMIT_HEADER} {}) to a request with the bench's key (expected \
         2xx through the limiter); its log ends with:\n{}",
        server.name,
        keyed.status(),
        if limited { "set" } else { "missing" },
        server.log_tail()
    );
    Ok(())
}
