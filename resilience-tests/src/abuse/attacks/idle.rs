//! The idle-connection flood: up to K idle keep-alive connections held by several worker
//! processes (this binary's hidden `abuse-worker`), while `/live` and the model route must
//! keep answering; after they close, RSS must come back to its baseline.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::super::report::Findings;
use super::super::rules::{self, mib};
use super::super::worker::MAX_PER_WORKER;
use super::Ctx;

/// How long a worker may take to open its connections.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a worker may take to report and exit once told to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Descriptors a worker keeps for itself.
const WORKER_HEADROOM: u64 = 64;
/// `/live` is asked this many times while the connections are held.
const LIVE_CHECKS: usize = 5;

/// A started worker.
struct Worker {
    child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
}

/// See the module documentation.
pub async fn run(ctx: &Ctx, findings: &mut Findings) {
    let wanted = ctx.sizes.idle;
    let per_worker = per_worker_count(super::super::nofile_limit());
    let baseline_rss = ctx.rss_now();
    findings.figure("connections_wanted", wanted);

    let mut workers = Vec::new();
    let mut remaining = wanted;
    while remaining > 0 {
        let count = remaining.min(per_worker);
        match spawn(ctx, count) {
            Ok(worker) => workers.push(worker),
            Err(error) => {
                findings.fail(format!("cannot start a worker process: {error}"));
                break;
            }
        }
        remaining -= count;
    }
    findings.figure("workers", workers.len());

    let mut opened = 0_u64;
    let mut failed = 0_u64;
    for worker in &mut workers {
        let line = tokio::time::timeout(OPEN_TIMEOUT, worker.lines.next_line()).await;
        match line
            .ok()
            .and_then(Result::ok)
            .flatten()
            .as_deref()
            .and_then(parse_opened)
        {
            Some((ok, bad)) => {
                opened += ok;
                failed += bad;
            }
            None => findings.fail("a worker did not report its connections in time"),
        }
    }
    findings.figure("connections_opened", opened);
    findings.figure("connections_refused", failed);
    let held_rss = ctx.rss_now();

    // While they are held: the model route at its rate, and /live.
    let client = ctx.client.start(ctx.rate);
    let mut live_ok = 0;
    let hold = Duration::from_secs(ctx.sizes.idle_hold_s.max(1));
    for _ in 0..LIVE_CHECKS {
        if ctx.client.get_ok("/live").await {
            live_ok += 1;
        }
        tokio::time::sleep(hold / LIVE_CHECKS as u32).await;
    }
    let figures = client.stop().await;
    findings.figure("live_ok", format!("{live_ok}/{LIVE_CHECKS}"));
    if live_ok < LIVE_CHECKS {
        findings.fail(format!(
            "GET /live answered {live_ok} of {LIVE_CHECKS} times while the connections were held"
        ));
    }
    findings.fail_all(figures.problems(None));
    findings.client = Some(figures);

    // Close them all; count those the server had already closed.
    let mut still_open = 0_u64;
    for worker in &mut workers {
        drop(worker.child.stdin.take());
        let line = tokio::time::timeout(STOP_TIMEOUT, worker.lines.next_line()).await;
        if let Some(open) = line
            .ok()
            .and_then(Result::ok)
            .flatten()
            .as_deref()
            .and_then(parse_still_open)
        {
            still_open += open;
        }
        if tokio::time::timeout(STOP_TIMEOUT, worker.child.wait())
            .await
            .is_err()
        {
            let _ = worker.child.kill().await;
        }
    }
    findings.figure("still_open_at_end", still_open);

    tokio::time::sleep(Duration::from_secs(ctx.sizes.idle_settle_s)).await;
    let after_rss = ctx.rss_now();
    match (baseline_rss, after_rss) {
        (Some(baseline), Some(after)) => {
            findings.figure("rss_before_mib", mib(baseline));
            if let Some(held) = held_rss {
                findings.figure("rss_held_mib", mib(held));
            }
            findings.figure("rss_after_mib", mib(after));
            if !rules::rss_returned(baseline, after) {
                findings.fail(format!(
                    "RSS {} MiB, {} s after the connections closed, is not within 10 % or 8 MiB \
                     of its baseline {} MiB",
                    mib(after),
                    ctx.sizes.idle_settle_s,
                    mib(baseline)
                ));
            }
        }
        _ => findings.skip("RSS check: the target's process is not known"),
    }
}

/// Connections one worker holds under the descriptor limit `nofile`.
pub fn per_worker_count(nofile: u64) -> usize {
    let usable = nofile.saturating_sub(WORKER_HEADROOM).max(1);
    usize::try_from(usable)
        .unwrap_or(MAX_PER_WORKER)
        .min(MAX_PER_WORKER)
}

/// `opened N failed F`.
pub fn parse_opened(line: &str) -> Option<(u64, u64)> {
    let mut words = line.split_whitespace();
    match (words.next()?, words.next()?, words.next()?, words.next()?) {
        ("opened", ok, "failed", bad) => Some((ok.parse().ok()?, bad.parse().ok()?)),
        _ => None,
    }
}

/// `still-open S`.
pub fn parse_still_open(line: &str) -> Option<u64> {
    line.strip_prefix("still-open ")?.trim().parse().ok()
}

/// Starts a worker holding `count` connections.
fn spawn(ctx: &Ctx, count: usize) -> std::io::Result<Worker> {
    let exe = std::env::current_exe()?;
    let hold = 60 + ctx.sizes.idle_hold_s + OPEN_TIMEOUT.as_secs();
    let mut child = Command::new(exe)
        .arg("abuse-worker")
        .arg("--addr")
        .arg(ctx.target.addr.to_string())
        .arg("--host")
        .arg(&ctx.target.host)
        .arg("--count")
        .arg(count.to_string())
        .arg("--hold")
        .arg(hold.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("the worker has no standard output"))?;
    Ok(Worker {
        child,
        lines: BufReader::new(stdout).lines(),
    })
}
