//! The progress bar: time-based over the run's duration, with the live request rate and
//! error rate in its message, redrawn four times a second on standard error.

use std::collections::VecDeque;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::driver::SharedRecorder;

/// Redraws per second, at most.
const REDRAW_HZ: u8 = 4;
/// How often the message is refreshed.
const TICK: Duration = Duration::from_millis(250);
/// The live rate is measured over this window.
const RATE_WINDOW: Duration = Duration::from_secs(2);
const TEMPLATE: &str = "[{elapsed_precise}] {wide_bar:.cyan/blue} {percent:>3}% {msg}";

/// A running progress bar; [`Progress::finish`] stops and clears it.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    done: Option<oneshot::Sender<()>>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the bar for a run from `start` lasting `duration`; `quiet` shows nothing.
    pub fn start(
        quiet: bool,
        start: Instant,
        duration: Duration,
        recorder: SharedRecorder,
    ) -> Self {
        if quiet {
            return Self {
                bar: ProgressBar::hidden(),
                done: None,
                ticker: None,
            };
        }
        let length = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let bar = ProgressBar::with_draw_target(
            Some(length),
            ProgressDrawTarget::stderr_with_hz(REDRAW_HZ),
        );
        if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        let (done, stopped) = oneshot::channel();
        let ticker = tokio::spawn(tick(bar.clone(), start, duration, recorder, stopped));
        Self {
            bar,
            done: Some(done),
            ticker: Some(ticker),
        }
    }

    /// Stops the ticker, waits for it and clears the bar.
    pub async fn finish(mut self) {
        if let Some(done) = self.done.take() {
            // The ticker may have stopped already; nothing to tell it then.
            let _ = done.send(());
        }
        if let Some(ticker) = self.ticker.take() {
            // A ticker that panicked has nothing left to clean up.
            let _ = ticker.await;
        }
        self.bar.finish_and_clear();
    }
}

async fn tick(
    bar: ProgressBar,
    start: Instant,
    duration: Duration,
    recorder: SharedRecorder,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut ticks = tokio::time::interval(TICK);
    let mut window: VecDeque<(Instant, u64)> = VecDeque::new();
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = ticks.tick() => {}
        }
        let now = Instant::now();
        let elapsed = now.duration_since(start).min(duration);
        bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        let snapshot = recorder.lock().snapshot();
        window.push_back((now, snapshot.requests));
        while window
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            window.pop_front();
        }
        let rate = match window.front() {
            Some((at, count)) if now > *at => {
                (snapshot.requests - count) as f64 / now.duration_since(*at).as_secs_f64()
            }
            _ => 0.0,
        };
        let error_pct = if snapshot.requests == 0 {
            0.0
        } else {
            snapshot.errors as f64 * 100.0 / snapshot.requests as f64
        };
        let draining = if now.duration_since(start) >= duration {
            " · waiting for the requests in flight"
        } else {
            ""
        };
        bar.set_message(format!(
            "{rate:.1} req/s · errors {error_pct:.1}% · {} done · {} in flight{draining}",
            snapshot.requests, snapshot.in_flight
        ));
    }
}
