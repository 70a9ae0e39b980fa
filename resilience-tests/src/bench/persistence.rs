//! The persistence scenario (issue 19): what the history database and the access log cost.
//! The answer path's load goes to three gateways interleaved: the stack's gateway (the
//! history in a SQLite file, one `request_log` row per answer, and the JSON access log: the
//! defaults), `gateway-quiet` (the same settings with `DATABASE_URL=off` and the access log
//! filtered out: the baseline) and `gateway+db-down` (the history in a PostgreSQL that never
//! answers: a loopback listener the bench holds open and never accepts on, so every
//! connection attempt hangs until the writer's deadline). Before any load, `gateway+db-down`
//! must say so in `/health` (its `database` check not healthy), so a gateway that ignores
//! `DATABASE_URL` is never measured as one whose database is down.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::report::{Scenario, ServerInfo, Target};
use super::servers::Server;
use super::{ANSWER_BODY, CHAT_PATH, Collected, Ctx, Endpoint, Stack};

/// What the scenario starts; each server stopped when dropped.
#[derive(Default)]
struct Extra {
    quiet: Option<Server>,
    db_down: Option<Server>,
}

/// Runs the scenario; the servers it started are in the report whether it succeeded or not,
/// and stopped when it returns.
pub(super) async fn persistence_scenario(
    ctx: &Ctx,
    stack: &Stack,
    out: &mut Collected,
) -> anyhow::Result<()> {
    let mut extra = Extra::default();
    // Held for the whole scenario and never accepted on: the "database" that hangs.
    let blackhole = TcpListener::bind("127.0.0.1:0").context("cannot bind the blackhole")?;
    let result = run(ctx, stack, &mut extra, &blackhole, out).await;
    out.servers.extend(
        [&extra.quiet, &extra.db_down]
            .into_iter()
            .flatten()
            .map(|s| ServerInfo {
                name: s.name.clone(),
                url: s.url.clone(),
                pid: s.pid,
                pids: s.pids_seen(),
            }),
    );
    result
}

/// Starts the two gateways, checks that the second one's database is down, then loads the
/// three targets like the answer scenario.
async fn run(
    ctx: &Ctx,
    stack: &Stack,
    extra: &mut Extra,
    blackhole: &TcpListener,
    out: &mut Collected,
) -> anyhow::Result<()> {
    let quiet = start_gateway(ctx, stack, "gateway-quiet", "off", Some("info,access=off")).await?;
    extra.quiet = Some(quiet);
    let hole = blackhole.local_addr()?;
    let down_url = format!("postgres://bench@{hole}/none");
    let db_down = start_gateway(ctx, stack, "gateway-db-down", &down_url, None).await?;
    check_db_down(ctx, extra.db_down.insert(db_down)).await?;
    let work = super::workload(
        ctx,
        Scenario::Persistence,
        CHAT_PATH,
        ANSWER_BODY,
        Vec::new(),
    )?;
    let targets = Endpoint::beside(
        &stack.gateway,
        [
            (Target::GatewayQuiet, extra.quiet.as_ref()),
            (Target::GatewayDbDown, extra.db_down.as_ref()),
        ],
    );
    super::load_scenario(ctx, &targets, Scenario::Persistence, &work, out).await
}

/// A gateway like the stack's with `DATABASE_URL=database` (and `RUST_LOG=filter`).
async fn start_gateway(
    ctx: &Ctx,
    stack: &Stack,
    name: &str,
    database: &str,
    filter: Option<&str>,
) -> anyhow::Result<Server> {
    let toml = super::confs::gateway_toml(stack.upstream.port, stack.llm_stream.port);
    let mut env = vec![("DATABASE_URL", database.to_owned())];
    env.extend(filter.map(|filter| ("RUST_LOG", filter.to_owned())));
    super::start_variant(ctx, stack, name, &toml, env).await
}

/// Waits (15 s at most) until the gateway's `/health` says its database is not healthy.
async fn check_db_down(ctx: &Ctx, server: &Server) -> anyhow::Result<()> {
    let url = format!("{}/health", server.url);
    super::servers::ensure_loopback(&url)?;
    let started = Instant::now();
    loop {
        let body: serde_json::Value = ctx
            .http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .with_context(|| format!("{} ({url}) did not answer", server.name))?
            .json()
            .await
            .unwrap_or_default();
        let status = body["health_checks"]["database"]["status"]
            .as_str()
            .unwrap_or("");
        if !status.is_empty() && status != "healthy" {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(15),
            "{} does not report its database down (database check: {status:?}); does this \
             gateway have a history? Its log ends with:\n{}",
            server.name,
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
