//! `llm-service`: a simulated LLM backend that answers like a model server and fails on
//! command.
//!
//! - [`config`]: settings from the environment and flags.
//! - [`routes`]: `/generate`, `/v1/chat/completions` (+ SSE), `/v1/models`, `/health`,
//!   `/model/health`, `/metrics`, and the `/chaos` fault API (off unless `CHAOS_ENABLED`);
//!   [`routes::app`] builds them.
//! - [`sim`]: the simulated model (latency, failures, deterministic text).
//! - [`faults`]: active faults and what they do to a request.
//! - connections are served by [`http_edge::serve`] under the connection limits (and reset
//!   on purpose by the `reset` fault); request bodies are read by [`http_edge::Uploads`].
//! - [`registration`]: self-registration in the Redis registry.
//! - [`openapi`]: `GET /openapi.json`, the OpenAPI document derived from the handlers.
//! - [`health`], [`metrics`], [`state`].
//!
//! [`run`] is the whole service on a bound listener, until a shutdown future completes.

pub mod config;
pub mod faults;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod registration;
pub mod routes;
pub mod sim;
pub mod state;

use std::future::Future;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::state::AppState;

/// Runs the service on `listener` until `shutdown` completes: registers, serves, and at
/// shutdown deregisters first, then stops accepting and drains in-flight requests.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let bound = listener.local_addr()?;
    let url = config.advertised_url(bound);
    let drain = config.drain_timeout();
    let limits = config
        .edge
        .limits()
        .map_err(|problems| anyhow::anyhow!("invalid settings: {problems:?}"))?;
    let connections = http_edge::Connections::new(limits);
    let state = AppState::new(config)?;
    tracing::info!(
        addr = %bound,
        url = %url,
        service_id = %state.config.service_id,
        model = %state.config.model_name,
        "listening"
    );
    announce_chaos_api(&state.config, bound);
    state.registration.start(&state.config, &url)?;
    let reaper = state.faults.spawn_reaper();
    let registration = std::sync::Arc::clone(&state.registration);
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: deregistering, then draining");
        registration.deregister().await;
    };
    let app = routes::app(state.clone(), limits.body);
    http_edge::serve(listener, app, connections, shutdown, drain).await;
    reaper.abort();
    state.faults.clear();
    Ok(())
}

/// Says at start whether the fault-injection API is on and guarded (never the token itself),
/// with a warning when anyone who reaches a non-loopback address could use it.
fn announce_chaos_api(config: &Config, bound: std::net::SocketAddr) {
    match (config.chaos_enabled, config.chaos_token().is_some()) {
        (false, _) => tracing::info!("fault-injection API off (CHAOS_ENABLED=true turns it on)"),
        (true, true) => tracing::info!("fault-injection API on, guarded by CHAOS_TOKEN"),
        (true, false) if !bound.ip().is_loopback() => tracing::warn!(
            addr = %bound,
            "fault-injection API on without CHAOS_TOKEN on a non-loopback address: \
             anyone who reaches it can inject faults"
        ),
        (true, false) => tracing::info!("fault-injection API on, loopback only, no CHAOS_TOKEN"),
    }
}
