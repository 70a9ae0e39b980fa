//! The command line: every setting a flag and an environment variable, as the seed named
//! them. Values are kept as written here and typed in [`super::validate`], so that every
//! bad one is reported at once rather than the first one alone.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use llm_api::FieldError;

use super::validate::Problems;

/// The API gateway in front of the LLM services.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about)]
pub struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value = "8000")]
    pub port: String,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Redis for the service registry and the response cache; unset: static list only.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// The history database when `DATABASE_URL` is unset (the lab's compose file sets it).
    #[arg(long, env = "POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// The history database (breaker transitions, health, one row per answer):
    /// `postgres://…`, `sqlite://PATH`, `sqlite::memory:` or `off` [default: `POSTGRES_URL`,
    /// else the SQLite file `HISTORY_SQLITE_PATH`].
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// The SQLite file of the history when neither `DATABASE_URL` nor `POSTGRES_URL` is set.
    #[arg(
        long,
        env = "HISTORY_SQLITE_PATH",
        default_value = "resilience-history.sqlite3"
    )]
    pub history_sqlite_path: String,
    /// History rows waiting for the database at most; beyond, rows are dropped (counted).
    #[arg(long, env = "HISTORY_QUEUE_ROWS", default_value = "10000")]
    pub history_queue_rows: String,
    /// History rows written per transaction at most (1–1000).
    #[arg(long, env = "HISTORY_BATCH_ROWS", default_value = "500")]
    pub history_batch_rows: String,
    /// Milliseconds a history batch, read or migration may take.
    #[arg(long, env = "HISTORY_WRITE_TIMEOUT_MS", default_value = "5000")]
    pub history_write_timeout_ms: String,
    /// Hours history rows are kept (0: forever).
    #[arg(long, env = "HISTORY_RETENTION_HOURS", default_value = "168")]
    pub history_retention_hours: String,
    /// Milliseconds between samples of every instance's health in the history (0: changes only).
    #[arg(long, env = "HISTORY_SAMPLE_INTERVAL_MS", default_value = "60000")]
    pub history_sample_interval_ms: String,
    /// Failed requests in a row that open the pool breaker [default: 5]; wins over
    /// `pool_breaker.failure_threshold` in the file.
    #[arg(long, env = "CIRCUIT_BREAKER_FAILURE_THRESHOLD")]
    pub circuit_breaker_failure_threshold: Option<String>,
    /// Seconds the pool breaker stays OPEN before probing [default: 30]; wins over
    /// `pool_breaker.recovery_timeout_ms` in the file.
    #[arg(long, env = "CIRCUIT_BREAKER_RECOVERY_TIMEOUT")]
    pub circuit_breaker_recovery_timeout: Option<String>,
    /// Requests in flight above which new ones get an immediate 503.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value = "100")]
    pub max_concurrent_requests: String,
    /// Seconds a whole request may take, retries and fallbacks included.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30")]
    pub request_timeout: String,
    /// Comma-separated base URLs of LLM services (static discovery).
    #[arg(long, env = "LLM_SERVICE_URLS", default_value = "")]
    pub llm_service_urls: String,
    /// Milliseconds between active health checks of each instance.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL_MS", default_value = "5000")]
    pub health_check_interval_ms: String,
    /// Path probed on each instance.
    #[arg(long, env = "HEALTH_CHECK_PATH", default_value = "/health")]
    pub health_check_path: String,
    /// Milliseconds between registry refreshes.
    #[arg(long, env = "DISCOVERY_REFRESH_MS", default_value = "1000")]
    pub discovery_refresh_ms: String,
    /// Milliseconds one try on one instance may take (overrides the file).
    #[arg(long, env = "PER_TRY_TIMEOUT_MS")]
    pub per_try_timeout_ms: Option<String>,
    /// Streams: the longest wait for the first token (overrides `stream.first_token_timeout_ms`).
    #[arg(long, env = "STREAM_FIRST_TOKEN_TIMEOUT_MS")]
    pub stream_first_token_timeout_ms: Option<String>,
    /// Streams: the longest silence between two events (overrides `stream.idle_timeout_ms`).
    #[arg(long, env = "STREAM_IDLE_TIMEOUT_MS")]
    pub stream_idle_timeout_ms: Option<String>,
    /// Streams: continuations of a broken stream at most, 0 for none (overrides
    /// `stream.max_continuations`; default 2).
    #[arg(long, env = "STREAM_MAX_CONTINUATIONS")]
    pub stream_max_continuations: Option<String>,
    /// Milliseconds to wait for in-flight requests at shutdown.
    #[arg(long, env = "DRAIN_TIMEOUT_MS", default_value = "10000")]
    pub drain_timeout_ms: String,
    /// Comma-separated origins (`https://app.example.com`) whose browser pages may call the
    /// gateway; empty: no CORS headers at all. `*` allows every origin (without
    /// credentials): never with admin routes exposed to the internet.
    #[arg(long, env = "CORS_ALLOW_ORIGINS", default_value = "")]
    pub cors_allow_origins: String,
    /// Largest `max_tokens` a request may ask for [default: 4096]; wins over `max_tokens`
    /// in the file.
    #[arg(long, env = "MAX_TOKENS")]
    pub max_tokens: Option<String>,
    /// Longest `model` name a request may give, in characters (of `A-Z a-z 0-9 . _ : / @ -`).
    #[arg(long, env = "MAX_MODEL_CHARS", default_value = "256")]
    pub max_model_chars: String,
    /// Most messages in one chat request.
    #[arg(long, env = "MAX_MESSAGES", default_value = "1024")]
    pub max_messages: String,
    /// Most characters in one prompt (all of a chat's messages together).
    #[arg(long, env = "MAX_PROMPT_CHARS", default_value = "524288")]
    pub max_prompt_chars: String,
    /// Largest `n` (answers per chat request).
    #[arg(long, env = "MAX_CHOICES", default_value = "8")]
    pub max_choices: String,
    /// Bytes the in-process response cache holds at most [default: 67108864, 64 MiB];
    /// wins over `cache.max_bytes` in the file.
    #[arg(long, env = "CACHE_MAX_BYTES")]
    pub cache_max_bytes: Option<String>,
    /// Bytes of the largest answer cached, in process and in Redis [default: 262144,
    /// 256 KiB]; wins over `cache.max_entry_bytes` in the file.
    #[arg(long, env = "CACHE_MAX_ENTRY_BYTES")]
    pub cache_max_entry_bytes: Option<String>,
    /// Optional TOML file with the settings below the environment's.
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Who may call: `none` (anonymous, the lab's default), `api_key`, `jwt` or `api_key,jwt`.
    #[arg(long, env = "AUTH_MODE", default_value = "none")]
    pub auth_mode: String,
    /// TOML file of API keys (`[[keys]]` with `owner`, `tier`, `scopes`, `sha256`,
    /// `revoked`); see `gateway keys`.
    #[arg(long, env = "API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// API keys as hashes, comma-separated `OWNER:TIER:SCOPE+SCOPE:SHA256HEX` entries.
    #[arg(long, env = "API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// HS256 secret of the JWTs callers present (the lab's variable).
    #[arg(long, env = "JWT_SECRET_KEY", hide_env_values = true)]
    pub jwt_secret_key: Option<String>,
    /// PEM public key (RSA for RS256, P-256 for ES256) that signs callers' JWTs.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// JWKS file (RS256/ES256 keys chosen by `kid`) that signs callers' JWTs.
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// The `aud` every JWT must carry; unset: not checked.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The `iss` every JWT must carry; unset: not checked.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Seconds of clock skew allowed on `exp`, `nbf` and `iat`.
    #[arg(long, env = "JWT_LEEWAY_S", default_value = "30")]
    pub jwt_leeway_s: String,
    /// Comma-separated networks (`10.0.0.0/8`, `127.0.0.1`, `::1/128`) that may call
    /// `/admin/*`; empty: any address (cross-site browser requests are refused either way).
    #[arg(long, env = "ADMIN_ALLOW", default_value = "")]
    pub admin_allow: String,
    /// PII in prompts: `off`, or `mask` (e-mail addresses, phone and card numbers replaced
    /// before the prompt goes upstream).
    #[arg(long, env = "PII_REDACTION", default_value = "off")]
    pub pii_redaction: String,
    /// Where rate limits are counted: `memory` (this process) or `redis` (`REDIS_URL`,
    /// shared by every replica).
    #[arg(long, env = "RATE_LIMIT_STORE", default_value = "memory")]
    pub rate_limit_store: String,
    /// When the Redis store cannot be reached: `fail_local` (this replica's share of the
    /// limit, in memory), `fail_closed` (refuse) or `fail_open` (allow).
    #[arg(long, env = "RATE_LIMIT_FAILURE_MODE", default_value = "fail_local")]
    pub rate_limit_failure_mode: String,
    /// Gateway replicas sharing the limits; `fail_local` gives each 1/N of a limit.
    #[arg(long, env = "RATE_LIMIT_REPLICAS", default_value = "1")]
    pub rate_limit_replicas: String,
    /// Limit anonymous callers per client address when `AUTH_MODE=none` (the `default`
    /// tier's limits).
    #[arg(long, env = "RATE_LIMIT_ANONYMOUS", default_value = "false")]
    pub rate_limit_anonymous: String,
    /// Milliseconds one rate-limit check may wait for Redis before the failure mode applies.
    #[arg(long, env = "RATE_LIMIT_REDIS_TIMEOUT_MS", default_value = "100")]
    pub rate_limit_redis_timeout_ms: String,
    /// Callers (keys, tokens' subjects, anonymous addresses) the in-process limiter tracks
    /// at most; a new caller beyond is refused until buckets refill.
    #[arg(long, env = "RATE_LIMIT_MAX_KEYS", default_value = "100000")]
    pub rate_limit_max_keys: String,
    /// Log format: `json` (the default: one JSON object per line) or `pretty` (for people).
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: String,
    /// Connection and request-body limits (shared by every service).
    #[command(flatten)]
    pub edge: http_edge::EdgeArgs,
}

impl Args {
    /// `args` as if given on the command line (the program name first is added), each
    /// variable of `env` as its flag unless the flag is given; the process environment
    /// fills in what neither gives (clap reads it).
    pub fn from_sources<I, T>(args: I, env: &[(&str, &str)]) -> Result<Self, FieldError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString>,
    {
        let mut argv: Vec<std::ffi::OsString> = std::iter::once("gateway".into())
            .chain(args.into_iter().map(Into::into))
            .collect();
        let command = Self::command();
        for (name, value) in env {
            let flag = command
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == *name))
                .and_then(|a| a.get_long());
            let Some(flag) = flag else {
                return Err(FieldError::new(*name, "not a variable of the gateway"));
            };
            let given = argv.iter().any(|a| {
                a.to_str().is_some_and(|a| {
                    a == format!("--{flag}") || a.starts_with(&format!("--{flag}="))
                })
            });
            if !given {
                argv.push(format!("--{flag}={value}").into());
            }
        }
        Self::try_parse_from(argv).map_err(|e| FieldError::new("args", e.to_string()))
    }

    /// The address to listen on (`HOST`, `PORT`), the only settings `gateway healthcheck`
    /// needs.
    pub fn listen(&self) -> Result<(IpAddr, u16), Vec<FieldError>> {
        let mut problems = Problems::default();
        let host = problems.parse::<IpAddr>("HOST", &self.host, "an IP address");
        let port = problems.parse::<u16>("PORT", &self.port, "a port number (0 to 65535)");
        match (host, port) {
            (Some(host), Some(port)) => Ok((host, port)),
            _ => Err(problems.into_vec()),
        }
    }
}
