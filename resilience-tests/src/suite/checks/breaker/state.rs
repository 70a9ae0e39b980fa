//! Reading the breaker's state until it is the one a step waits for ([`wait_state`]),
//! through reads that may fail on a busy machine, and the HALF_OPEN step's verdict.

use std::time::Duration;

use llm_api::breaker::BreakerState;

use crate::suite::context::Ctx;
use crate::suite::report::{Verdict, format_duration};

/// The end of [`wait_state`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct StateWait {
    /// The last state read, if any read succeeded.
    pub(super) state: Option<BreakerState>,
    /// The last read's error, when the last read failed.
    pub(super) error: Option<String>,
    /// Reads that failed along the way.
    pub(super) errors: usize,
    /// Whether a state satisfying the condition was read.
    pub(super) done: bool,
}

/// Reads the breaker's state every `interval` until one satisfies `done` or `timeout`
/// passes (the first read is immediate). A read that fails — a slow answer on a busy
/// machine — does not end the wait: only the deadline does.
pub(super) async fn wait_state<R, Fut>(
    timeout: Duration,
    interval: Duration,
    mut read: R,
    done: impl Fn(BreakerState) -> bool,
) -> StateWait
where
    R: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<BreakerState>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = StateWait::default();
    loop {
        match read().await {
            Ok(state) => {
                wait.done = done(state);
                wait.state = Some(state);
                wait.error = None;
            }
            Err(error) => {
                wait.errors += 1;
                wait.error = Some(format!("{error:#}"));
            }
        }
        if wait.done || tokio::time::Instant::now() + interval > deadline {
            return wait;
        }
        tokio::time::sleep(interval).await;
    }
}

/// The state now, read again until a read succeeds (within the change timeout).
pub(super) async fn read_state(ctx: &Ctx) -> anyhow::Result<BreakerState> {
    let read = wait_state(
        ctx.settings.change_timeout,
        ctx.settings.poll_interval,
        || ctx.gateway.breaker_state(),
        |_| true,
    )
    .await;
    match (read.state, read.error) {
        (Some(state), _) if read.done => Ok(state),
        (_, error) => Err(anyhow::anyhow!(
            "no readable breaker state in {}: {}",
            format_duration(ctx.settings.change_timeout),
            error.unwrap_or_else(|| "no read".into())
        )),
    }
}

/// The HALF_OPEN step: the wait for a state other than OPEN after the breaker opened.
pub(super) fn half_open_verdict(
    half: &StateWait,
    open_for: Duration,
    recovery: Duration,
) -> Verdict {
    let timing = format!(
        "{} after opening (recovery timeout {})",
        format_duration(open_for),
        format_duration(recovery)
    );
    let errors = errors_note(half.errors);
    match (half.done, half.state, &half.error) {
        (true, Some(BreakerState::HalfOpen), _) => {
            Verdict::pass(format!("HALF_OPEN {timing}, with no request sent{errors}"))
        }
        (true, state, _) => Verdict::fail(format!(
            "read {} {timing}{errors}",
            state.map_or("nothing", BreakerState::as_str)
        )),
        (false, state, error) => {
            let mut detail = format!(
                "still {} {timing}",
                state.map_or("unread", BreakerState::as_str)
            );
            if let Some(error) = error {
                detail.push_str(&format!("; last /metrics error: {error}"));
            }
            detail.push_str(&errors);
            Verdict::fail(detail)
        }
    }
}

/// ` (2 /metrics reads failed and were retried)`, or nothing.
pub(super) fn errors_note(errors: usize) -> String {
    if errors == 0 {
        String::new()
    } else {
        format!(" ({errors} /metrics read(s) failed and were retried)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::report::Outcome;

    /// A scripted `/metrics`: each read takes the next reading (the last one repeats).
    fn script(
        readings: &[Result<BreakerState, &str>],
    ) -> impl FnMut() -> std::future::Ready<anyhow::Result<BreakerState>> {
        let readings: Vec<Result<BreakerState, String>> =
            readings.iter().map(|r| r.map_err(str::to_owned)).collect();
        let mut next = 0;
        move || {
            let reading = readings[next.min(readings.len() - 1)].clone();
            next += 1;
            std::future::ready(reading.map_err(|e| anyhow::anyhow!(e)))
        }
    }

    const SECOND: Duration = Duration::from_secs(1);
    const OPEN: BreakerState = BreakerState::Open;

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_does_not_end_the_wait_for_half_open() {
        let reads = script(&[
            Ok(OPEN),
            Err("GET /metrics: operation timed out"),
            Ok(OPEN),
            Err("GET /metrics: operation timed out"),
            Ok(BreakerState::HalfOpen),
        ]);
        let half = wait_state(10 * SECOND, SECOND, reads, |s| s != OPEN).await;
        assert_eq!(
            half,
            StateWait {
                state: Some(BreakerState::HalfOpen),
                error: None,
                errors: 2,
                done: true,
            }
        );
        let verdict = half_open_verdict(&half, 31 * SECOND, 30 * SECOND);
        assert_eq!(verdict.outcome, Outcome::Pass, "{}", verdict.detail);
        assert!(
            verdict.detail.contains("2 /metrics read(s) failed"),
            "{}",
            verdict.detail
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_deadline_fails_the_wait_with_the_last_error() {
        let started = tokio::time::Instant::now();
        let reads = script(&[Ok(OPEN), Err("GET /metrics: connection reset")]);
        let half = wait_state(5 * SECOND, SECOND, reads, |s| s != OPEN).await;
        assert!(started.elapsed() >= 4 * SECOND, "polled until the deadline");
        assert!(!half.done);
        assert_eq!(half.state, Some(OPEN));
        assert_eq!(
            half.errors, 5,
            "reads at 0 (OPEN), then 1 to 5 s, all failing"
        );
        let verdict = half_open_verdict(&half, 45 * SECOND, 30 * SECOND);
        assert_eq!(verdict.outcome, Outcome::Fail);
        assert!(
            verdict
                .detail
                .starts_with("still OPEN 45.0 s after opening")
                && verdict
                    .detail
                    .contains("last /metrics error: GET /metrics: connection reset"),
            "{}",
            verdict.detail
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_state_other_than_half_open_fails_at_once() {
        let reads = script(&[Ok(OPEN), Ok(BreakerState::Closed)]);
        let half = wait_state(10 * SECOND, SECOND, reads, |s| s != OPEN).await;
        let verdict = half_open_verdict(&half, 31 * SECOND, 30 * SECOND);
        assert_eq!(verdict.outcome, Outcome::Fail);
        assert!(
            verdict.detail.starts_with("read CLOSED"),
            "{}",
            verdict.detail
        );
    }
}
