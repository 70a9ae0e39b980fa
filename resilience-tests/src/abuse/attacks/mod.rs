//! The attacks, each bounded in size and time. Each runs while the well-behaved client
//! sends its requests, and writes its figures and failed rules into [`Findings`].

mod headers;
pub mod idle;
pub mod malformed;
pub mod oversized;
mod slow;
mod slow_h2;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::probe::Client;
use super::report::{AttackReport, Findings};
use super::rss::RssSource;
use super::target::Target;

/// Time an attack may take beyond its own bounds before it is cut off and failed.
const OVERRUN: Duration = Duration::from_secs(30);

/// The attacks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttackKind {
    /// Request line, then a header byte a second.
    Slowloris,
    /// HTTP/1.1 POSTs whose bodies trickle a byte a second.
    SlowBodies,
    /// One HTTP/2 connection opening many streams whose bodies trickle.
    SlowH2,
    /// Many idle keep-alive connections, from several worker processes.
    Idle,
    /// Requests naming a 900 KB model.
    Oversized,
    /// Broken bodies and wrong content types.
    Malformed,
    /// One huge header, many headers, a huge total.
    Headers,
}

impl AttackKind {
    /// Every attack, in order.
    pub const ALL: [Self; 7] = [
        Self::Slowloris,
        Self::SlowBodies,
        Self::SlowH2,
        Self::Idle,
        Self::Oversized,
        Self::Malformed,
        Self::Headers,
    ];

    /// The attack's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Slowloris => "slowloris",
            Self::SlowBodies => "slow-bodies",
            Self::SlowH2 => "slow-h2",
            Self::Idle => "idle",
            Self::Oversized => "oversized",
            Self::Malformed => "malformed",
            Self::Headers => "headers",
        }
    }
}

/// The sizes of the attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sizes {
    /// Slowloris connections.
    pub slowloris: usize,
    /// Slow-body HTTP/1.1 connections.
    pub slow_bodies: usize,
    /// HTTP/2 streams tried on one connection.
    pub h2_streams: usize,
    /// Idle connections.
    pub idle: usize,
    /// How long the idle connections are held, in seconds.
    pub idle_hold_s: u64,
    /// How long after they close RSS is read again, in seconds.
    pub idle_settle_s: u64,
    /// Requests with an oversized model name.
    pub oversized: usize,
}

/// What every attack needs.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The target.
    pub target: Arc<Target>,
    /// The well-behaved client.
    pub client: Client,
    /// Its rate, requests per second.
    pub rate: f64,
    /// Its latency bar under attack.
    pub bar: Duration,
    /// The target's process, when found.
    pub rss: Option<RssSource>,
    /// Sizes.
    pub sizes: Sizes,
    /// The target's header-read timeout.
    pub header_timeout: Duration,
    /// The target's whole-body deadline.
    pub body_deadline: Duration,
    /// Allowed lateness on each time limit.
    pub slack: Duration,
    /// A Redis whose memory the oversized attack watches.
    pub redis: Option<String>,
}

impl Ctx {
    /// The longest `kind` should take, from its sizes and limits.
    fn bound(&self, kind: AttackKind) -> Duration {
        let base = match kind {
            AttackKind::Slowloris => self.header_timeout + self.slack * 2,
            AttackKind::SlowBodies | AttackKind::SlowH2 => self.body_deadline + self.slack * 2,
            AttackKind::Idle => Duration::from_secs(
                30 + self.sizes.idle_hold_s
                    + self.sizes.idle_settle_s
                    + self.sizes.idle as u64 / 200,
            ),
            // A debug gateway took 159 s for 1,200 (a gigabyte of upload).
            AttackKind::Oversized => Duration::from_secs(30 + self.sizes.oversized as u64 / 4),
            AttackKind::Malformed | AttackKind::Headers => Duration::from_secs(60),
        };
        base + OVERRUN
    }

    /// The target's RSS now, when its process is known.
    pub fn rss_now(&self) -> Option<u64> {
        self.rss.as_ref().and_then(RssSource::sample)
    }
}

/// Runs `kind` within its bound and reports it.
pub async fn run(kind: AttackKind, ctx: &Ctx) -> AttackReport {
    let started = Instant::now();
    let mut findings = Findings::default();
    let bound = ctx.bound(kind);
    let attack = async {
        match kind {
            AttackKind::Slowloris => slow::slowloris(ctx, &mut findings).await,
            AttackKind::SlowBodies => slow::bodies(ctx, &mut findings).await,
            AttackKind::SlowH2 => slow_h2::run(ctx, &mut findings).await,
            AttackKind::Idle => idle::run(ctx, &mut findings).await,
            AttackKind::Oversized => oversized::run(ctx, &mut findings).await,
            AttackKind::Malformed => malformed::run(ctx, &mut findings).await,
            AttackKind::Headers => headers::run(ctx, &mut findings).await,
        }
    };
    if tokio::time::timeout(bound, attack).await.is_err() {
        let mut cut = Findings::default();
        cut.fail(format!(
            "the attack did not finish within its bound of {:.0} s",
            bound.as_secs_f64()
        ));
        return cut.into_report(kind.name(), started.elapsed().as_secs_f64());
    }
    findings.into_report(kind.name(), started.elapsed().as_secs_f64())
}

/// Checks that `/live` answers 2xx after an attack.
async fn still_live(ctx: &Ctx, findings: &mut Findings) {
    let live = ctx.client.get_ok("/live").await;
    findings.figure("live_after", live);
    if !live {
        findings.fail("GET /live did not answer 2xx after the attack");
    }
}
