//! Slow clients over HTTP/1.1: slowloris (a request line, then a header byte a second) and
//! slow bodies (a valid POST whose body trickles a byte a second).

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::raw;
use super::super::report::Findings;
use super::super::rules::{Ending, EndingTally};
use super::Ctx;

/// A byte every this long.
const TRICKLE_EVERY: Duration = Duration::from_secs(1);
/// Connections opened at once.
const CONNECT_CONCURRENCY: usize = 50;

/// Slowloris: pass when each connection is closed (or refused with a status) within the
/// header timeout + slack, and the well-behaved client stays within its bar.
pub async fn slowloris(ctx: &Ctx, findings: &mut Findings) {
    let limit = ctx.header_timeout + ctx.slack;
    let head = format!(
        "GET /live HTTP/1.1\r\nHost: {}\r\nX-Slowloris: ",
        ctx.target.host
    );
    // A header value that outlasts any limit at a byte a second.
    let trickle = vec![b'a'; trickle_len(limit)];
    let endings = hold(
        ctx,
        ctx.sizes.slowloris,
        head.into_bytes(),
        trickle,
        limit,
        findings,
    )
    .await;
    // Any status is a refusal here: the request never completed.
    let tally = tally_any_status(&endings, limit);
    findings.figure("connections", ctx.sizes.slowloris);
    findings.figure("limit_s", limit.as_secs_f64());
    findings.figure("ended", &tally);
    findings.fail_all(tally.problems("slowloris connections", limit));
}

/// Slow bodies: pass when each POST gets 408 (or a close) within the body deadline + slack,
/// and the well-behaved client stays within its bar.
pub async fn bodies(ctx: &Ctx, findings: &mut Findings) {
    let limit = ctx.body_deadline + ctx.slack;
    let body = padded_body(ctx, trickle_len(limit));
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        ctx.target.path(),
        ctx.target.host,
        body.len()
    );
    let endings = hold(
        ctx,
        ctx.sizes.slow_bodies,
        head.into_bytes(),
        body,
        limit,
        findings,
    )
    .await;
    let tally = EndingTally::of(&endings, limit, &[408]);
    findings.figure("connections", ctx.sizes.slow_bodies);
    findings.figure("limit_s", limit.as_secs_f64());
    findings.figure("ended", &tally);
    findings.fail_all(tally.problems("slow bodies", limit));
}

/// A valid request body for the model route, padded with JSON whitespace to `len` bytes.
pub fn padded_body(ctx: &Ctx, len: usize) -> Vec<u8> {
    let mut body = ctx.target.body("a slow body", None);
    if body.len() < len {
        body.resize(len, b' ');
    }
    body
}

/// How many bytes, at one a second, outlast `limit` by a comfortable margin.
pub fn trickle_len(limit: Duration) -> usize {
    usize::try_from(limit.as_secs())
        .unwrap_or(usize::MAX / 2)
        .saturating_mul(2)
        + 30
}

/// The tally of slowloris endings: any status counts as a refusal.
fn tally_any_status(endings: &[Ending], limit: Duration) -> EndingTally {
    let statuses: Vec<u16> = (100..600).collect();
    EndingTally::of(endings, limit, &statuses)
}

/// Opens `count` connections that send `head` then trickle `trickle`, with the
/// well-behaved client running, and returns how each ended; watched until `limit` + slack.
async fn hold(
    ctx: &Ctx,
    count: usize,
    head: Vec<u8>,
    trickle: Vec<u8>,
    limit: Duration,
    findings: &mut Findings,
) -> Vec<Ending> {
    let client = ctx.client.start(ctx.rate);
    let watch_until = Instant::now() + limit + ctx.slack;
    let mut connections = JoinSet::new();
    let head = std::sync::Arc::new(head);
    let trickle = std::sync::Arc::new(trickle);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    for _ in 0..count {
        let (addr, head, trickle, gate) =
            (ctx.target.addr, head.clone(), trickle.clone(), gate.clone());
        connections.spawn(async move {
            let stream = {
                let _permit = gate.acquire().await;
                raw::connect(addr).await
            };
            let Ok(mut stream) = stream else {
                return Ending::NotOpened;
            };
            let started = Instant::now();
            match raw::write_within(&mut stream, &head, raw::CONNECT_TIMEOUT).await {
                Ok(true) => {}
                Ok(false) => return Ending::StillOpen,
                Err(_) => return Ending::Closed(started.elapsed()),
            }
            raw::trickle_until_ending(stream, &trickle, TRICKLE_EVERY, started, watch_until).await
        });
    }
    let mut endings = Vec::with_capacity(count);
    while let Some(joined) = connections.join_next().await {
        endings.push(joined.unwrap_or(Ending::StillOpen));
    }
    let figures = client.stop().await;
    findings.fail_all(figures.problems(Some(ctx.bar)));
    findings.client = Some(figures);
    endings
}
