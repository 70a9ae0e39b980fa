//! `gateway`: the single entry point in front of the LLM services.
//!
//! - [`config`]: one typed [`config::Settings`] from the seed's environment variables and
//!   flags and an optional TOML file, checked at once.
//! - [`state`]: wiring (discovery, health checks, pools, breakers, fallback chain, metrics).
//! - [`pool`]: the request path of one pool (balancing, per-try timeout, budgeted retries
//!   on other instances, instance and pool breakers); [`upstream`]: the HTTP client.
//! - [`routes`]: `/generate`, `/health`, `/live`, `/ready`, `/metrics`, `/admin/*`.
//! - [`wire`]: the library's snapshots as the `llm_api` types the routes write.
//! - [`answer`]: what a target or tier answers (whole, or a live stream); [`cache`]: the
//!   response cache, every read and write of it (in-process and shared through Redis).
//! - [`layers`]: the request path's tower layers, in order (request id, access log, body
//!   read, validation, load shedding, metrics); [`metrics`]: Prometheus.
//! - [`openapi`]: `GET /openapi.json`, the OpenAPI document derived from the handlers.
//!
//! [`run`] is the whole gateway on a bound listener until a shutdown future completes.

pub mod answer;
pub mod auth;
pub mod cache;
pub mod config;
pub mod layers;
pub mod metrics;
pub mod openapi;
pub mod pii;
pub mod pool;
pub mod ratelimit;
pub mod records;
pub mod routes;
pub mod routing;
pub mod state;
pub mod telemetry;
pub mod upstream;
pub mod wire;

use std::future::Future;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;

use crate::config::Settings;
use crate::state::Gateway;

/// Runs the gateway with `settings` on `listener` until `shutdown` completes; then readiness turns false,
/// new connections are refused and in-flight requests finish (up to `DRAIN_TIMEOUT_MS`).
/// Connections are served by [`http_edge::serve`] under the connection limits.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bound = listener.local_addr()?;
    let drain = settings.drain_timeout;
    let gateway = Gateway::start(settings).await?;
    // Nothing is answered before one health round: a request would find no healthy
    // instance (and count against the pool breaker), and /health must not say 2xx yet.
    // The listener is bound, so early clients wait in its backlog.
    if !gateway.checker.first_round().await {
        anyhow::bail!("the health checker stopped before its first round");
    }
    let limiter = gateway.limits.status();
    tracing::info!(
        addr = %bound,
        url = %format!("http://127.0.0.1:{}", bound.port()),
        instances = gateway.discovery.snapshot().len(),
        auth_mode = %gateway.auth.mode(),
        rate_limits = gateway.limits.active(),
        rate_limit_store = limiter.kind.as_str(),
        rate_limit_failure_mode = limiter.failure_mode.map_or("-", |m| m.as_str()),
        "listening"
    );
    let for_signal = std::sync::Arc::clone(&gateway);
    let signal = async move {
        shutdown.await;
        for_signal.accepting.store(false, Ordering::Release);
        tracing::info!("shutting down: not ready, refusing new connections, draining");
    };
    http_edge::serve(
        listener,
        routes::app(std::sync::Arc::clone(&gateway)),
        std::sync::Arc::clone(&gateway.connections),
        signal,
        drain,
    )
    .await;
    // The last answers' history rows, if the database takes them soon.
    if let Some(history) = &gateway.history
        && !history.flush(HISTORY_FLUSH_AT_EXIT).await
    {
        tracing::warn!(target: "history", "history rows still queued at exit were not written");
    }
    Ok(())
}

/// The longest wait at exit for the history's queued rows.
const HISTORY_FLUSH_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(2);
