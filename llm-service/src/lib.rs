//! `llm-service`: a simulated LLM backend that answers like a model server and fails on
//! command.
//!
//! - [`config`]: settings from the environment and flags.
//! - [`routes`]: `/generate`, `/v1/chat/completions` (+ SSE), `/v1/models`, `/health`,
//!   `/model/health`, `/metrics`, and the `/chaos` fault API; [`routes::app`] builds them.
//! - [`sim`]: the simulated model (latency, failures, deterministic text).
//! - [`faults`]: active faults and what they do to a request.
//! - [`serve`]: the connection loop (connection resets on purpose, drain with a deadline).
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
pub mod serve;
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
    let state = AppState::new(config)?;
    tracing::info!(
        addr = %bound,
        url = %url,
        service_id = %state.config.service_id,
        model = %state.config.model_name,
        "listening"
    );
    state.registration.start(&state.config, &url)?;
    let reaper = state.faults.spawn_reaper();
    let registration = std::sync::Arc::clone(&state.registration);
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: deregistering, then draining");
        registration.deregister().await;
    };
    serve::serve(listener, routes::app(state.clone()), shutdown, drain).await;
    reaper.abort();
    state.faults.clear();
    Ok(())
}
