//! `chaos-monkey proxy`: a loopback TCP fault proxy with a Toxiproxy-compatible HTTP API
//! (Shopify's Toxiproxy 2.x: same routes, JSON and status codes), so Toxiproxy's clients
//! (`toxiproxy-python`, toxiproxy-go, the Ruby gem…) drive it as they would Toxiproxy.
//!
//! ```text
//! chaos-monkey proxy --listen 127.0.0.1:8474 [--proxy NAME=LISTEN=UPSTREAM]...
//! ```
//!
//! It logs `listening addr=… url=http://…` once the API is up. A proxy is a listener
//! whose connections are piped to an upstream through the proxy's toxics; disabling it
//! (`POST /proxies/{name}` `{"enabled": false}`) closes its listener and every open
//! connection: a partition. Re-enabling binds the same address again.
//!
//! Modules: [`api`] (routes), [`registry`] (proxies and their lifecycle), [`listener`]
//! (a running proxy), [`connection`] and [`pump`] (one connection; one task per
//! direction), [`toxic`] (toxics and their JSON) with [`toxic::plan`] (what toxics do
//! to bytes, pure), [`error`].
//!
//! Toxics, per direction (`downstream`: upstream → client, the default; `upstream`:
//! client → upstream), applied in the order they were added:
//! - `latency` {latency, jitter} ms: each chunk goes out `latency ± jitter` after it was
//!   read (throughput is kept);
//! - `bandwidth` {rate} KB/s: paced in pieces of at most 100 ms worth; 0 is unlimited;
//! - `slow_close` {delay} ms: the close is passed on `delay` late;
//! - `timeout` {timeout} ms: all data is dropped; the connection is closed `timeout`
//!   after the toxic reached it (0: never, data flows again once the toxic is removed);
//! - `reset_peer` {timeout} ms: from the first data on, data is dropped and `timeout`
//!   later both sockets are reset (SO_LINGER 0: an RST);
//! - `slicer` {average_size, size_variation, delay µs}: chunks cut into small writes;
//! - `limit_data` {bytes}: the connection closes once that many bytes went through;
//! - `noop`.
//!
//! Toxicity (0 to 1) is drawn once per connection and toxic. Toxics reach open
//! connections too: one added, updated (drawn again, state afresh) or removed acts from
//! the connection's next chunk on, and `timeout` starts counting on open connections as
//! soon as it is added.
//!
//! Where it differs from Toxiproxy:
//! - a source that closes is passed on as a half-close (FIN) and the other direction
//!   goes on until it closes too; Toxiproxy closes the whole connection;
//! - `:PORT` and a missing `listen` mean loopback, not every interface;
//! - an attribute the type lacks, a negative or fractional number, a time over a day or
//!   a slicer `average_size` of 0 is a 400 (Toxiproxy ignores or zeroes them);
//! - slicer pieces are drawn one after the other (`average_size ± size_variation`, at
//!   least 1 byte) rather than by recursive halving;
//! - `GET /version` answers the crate version as text; there is no `/events`,
//!   `/metrics`, nor `toxics` accepted in `POST /proxies` (add them afterwards).

pub mod api;
pub mod connection;
pub mod error;
pub mod listener;
pub mod pump;
pub mod registry;
pub mod toxic;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

use self::registry::{NewProxy, Registry};

/// The longest the API waits for its open requests at shutdown.
const API_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// `proxy` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// Where the Toxiproxy-compatible HTTP API listens (port 0: a free port, logged).
    #[arg(long, default_value = "127.0.0.1:8474")]
    pub listen: String,
    /// A proxy to create at start, `NAME=LISTEN=UPSTREAM` (e.g.
    /// `llm=127.0.0.1:9001=127.0.0.1:8001`); repeatable.
    #[arg(long = "proxy", value_name = "NAME=LISTEN=UPSTREAM")]
    pub proxies: Vec<String>,
    /// The API's connection and request-body limits (as every service's).
    #[command(flatten)]
    pub edge: http_edge::EdgeArgs,
}

/// Serves the API until `shutdown` resolves, then closes every proxy and its connections.
/// Fails when the API address or a `--proxy` cannot be bound, or a `--proxy` is malformed.
pub async fn serve(
    args: ProxyArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = args
        .edge
        .limits()
        .map_err(|problems| anyhow::anyhow!("invalid settings: {problems:?}"))?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let registry = Arc::new(Registry::new());
    for spec in &args.proxies {
        let created = parse_proxy_flag(spec).and_then(|new| Ok(registry.create(new)?));
        if let Err(error) = created {
            registry.shutdown().await;
            return Err(error.context(format!("--proxy {spec}")));
        }
    }
    let addr = listener.local_addr()?;
    tracing::info!(
        addr = %addr,
        url = %format!("http://{addr}"),
        proxies = args.proxies.len(),
        "listening"
    );
    let uploads = Arc::new(http_edge::Uploads::new(limits.body));
    let app = api::app(Arc::clone(&registry)).layer(axum::middleware::from_fn_with_state(
        uploads,
        http_edge::body::read_whole,
    ));
    let connections = http_edge::Connections::new(limits);
    http_edge::serve(listener, app, connections, shutdown, API_DRAIN).await;
    registry.shutdown().await;
    tracing::info!("proxy stopped: every listener and connection closed");
    Ok(())
}

/// `NAME=LISTEN=UPSTREAM` as an enabled proxy.
fn parse_proxy_flag(spec: &str) -> anyhow::Result<NewProxy> {
    let mut parts = spec.splitn(3, '=');
    let (Some(name), Some(listen), Some(upstream)) = (parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!("expected NAME=LISTEN=UPSTREAM");
    };
    let body = serde_json::json!({ "name": name, "listen": listen, "upstream": upstream });
    Ok(NewProxy::from_json(&body)?)
}

#[cfg(test)]
mod tests;
