//! Traffic for the checks: N requests at a concurrency (like `ab -n N -c C`), or a steady
//! rate for as long as needed ([`Traffic`]), and what came of it ([`Summary`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use llm_api::generate::GenerateRequest;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use super::client::{Answer, GatewayClient};

/// The `/generate` body of the `n`-th request of a run: `{"prompt": "<prompt> #n",
/// "max_tokens": 50}` (distinct prompts, so no answer is an echo of another).
pub fn body(prompt: &str, n: usize) -> GenerateRequest {
    GenerateRequest {
        max_tokens: Some(50),
        ..GenerateRequest::new(format!("{prompt} #{n}"))
    }
}

/// Sends `total` requests, `concurrency` at a time; the answers in completion order.
pub async fn concurrent(
    gateway: &GatewayClient,
    total: usize,
    concurrency: usize,
    prompt: &str,
) -> Vec<Answer> {
    futures::stream::iter(0..total)
        .map(|n| {
            let body = body(prompt, n);
            async move { gateway.post_generate(&body, None).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// Sends `rps` requests per second for `duration`, and waits for every answer.
pub async fn at_rate(gateway: &GatewayClient, rps: u32, duration: Duration, prompt: &str) -> Sent {
    let traffic = Traffic::start(gateway.clone(), rps, prompt);
    tokio::time::sleep(duration).await;
    traffic.stop().await
}

/// What a [`Traffic`] sent: every answer, and how long it was sending.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// Every answer (one per request sent).
    pub answers: Vec<Answer>,
    /// From the first request sent to the stop.
    pub sending: Duration,
}

impl Sent {
    /// Requests sent per second over the sending time (0 when nothing was sent).
    pub fn achieved_rps(&self) -> f64 {
        achieved_rps(self.answers.len(), self.sending)
    }
}

/// `requests` over `over`, per second (0 for no time at all).
pub fn achieved_rps(requests: usize, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 {
        as_f64(requests) / secs
    } else {
        0.0
    }
}

/// Requests at a steady rate in the background until stopped (dropping it aborts them).
///
/// The ticks are scheduled from the start ([`MissedTickBehavior::Burst`]): a generator held
/// up (a busy machine) catches up with the ticks it missed instead of drifting below the
/// rate, so the number sent is the rate times the time; a generator that could not catch
/// up at all shows in [`Sent::achieved_rps`].
#[derive(Debug)]
pub struct Traffic {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Sent>>,
}

impl Traffic {
    /// Starts sending `rps` requests per second (each without waiting for the previous).
    pub fn start(gateway: GatewayClient, rps: u32, prompt: &str) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let prompt = prompt.to_owned();
        let period = Duration::from_secs(1) / rps.max(1);
        let task = tokio::spawn(async move {
            let mut in_flight = JoinSet::new();
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let started = Instant::now();
            let mut n = 0;
            loop {
                // Ticks first: the ticks a held-up generator missed are sent before it
                // stops (finitely many: a caught-up interval waits).
                tokio::select! {
                    biased;
                    _ = ticks.tick() => {
                        let gateway = gateway.clone();
                        let body = body(&prompt, n);
                        n += 1;
                        in_flight.spawn(async move { gateway.post_generate(&body, None).await });
                    }
                    _ = &mut stopped => break,
                }
            }
            let sending = started.elapsed();
            let mut answers = Vec::with_capacity(n);
            while let Some(joined) = in_flight.join_next().await {
                if let Ok(answer) = joined {
                    answers.push(answer);
                }
            }
            Sent { answers, sending }
        });
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops sending and returns every answer (waiting for those in flight).
    pub async fn stop(mut self) -> Sent {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => Sent::default(),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// What a run's answers add up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Requests sent.
    pub total: usize,
    /// 200 with `status: success`.
    pub ok: usize,
    /// Of those, answered by a fallback tier.
    pub fallback: usize,
    /// 503 with `Retry-After` (load shedding).
    pub shed: usize,
    /// Not answered at all (refused, reset, timed out).
    pub unanswered: usize,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, usize>,
    /// Successes by `served_by`.
    pub served_by: BTreeMap<String, usize>,
    /// 50th, 95th and 99th percentile and the slowest, over every request.
    pub p50: Duration,
    /// See [`Summary::p50`].
    pub p95: Duration,
    /// See [`Summary::p50`].
    pub p99: Duration,
    /// See [`Summary::p50`].
    pub max: Duration,
}

impl Summary {
    /// Adds up `answers`.
    pub fn of(answers: &[Answer]) -> Self {
        let mut summary = Self {
            total: answers.len(),
            ..Self::default()
        };
        let mut times: Vec<Duration> = answers.iter().map(|a| a.elapsed).collect();
        times.sort_unstable();
        for answer in answers {
            match answer.status {
                Some(status) => *summary.statuses.entry(status).or_default() += 1,
                None => summary.unanswered += 1,
            }
            if answer.is_success() {
                summary.ok += 1;
                if answer.fallback_used() {
                    summary.fallback += 1;
                }
                let by = answer.served_by().unwrap_or("unknown").to_owned();
                *summary.served_by.entry(by).or_default() += 1;
            } else if answer.is_shed() {
                summary.shed += 1;
            }
        }
        summary.p50 = percentile(&times, 50.0).unwrap_or_default();
        summary.p95 = percentile(&times, 95.0).unwrap_or_default();
        summary.p99 = percentile(&times, 99.0).unwrap_or_default();
        summary.max = times.last().copied().unwrap_or_default();
        summary
    }

    /// Successes served by an instance (not by a fallback tier).
    pub fn by_instances(&self) -> usize {
        self.ok.saturating_sub(self.fallback)
    }

    /// Every request answered 200, and by the instances: at most [`fallback_allowance`]
    /// of them by a fallback tier (the simulated failures that outlast the gateway's
    /// retries). What a check means by "the instances kept serving".
    pub fn kept_serving(&self) -> bool {
        self.total > 0 && self.ok == self.total && self.fallback <= fallback_allowance(self.total)
    }

    /// `1 by fallback (at most 2 allowed)`, for the detail of a [`Summary::kept_serving`]
    /// check.
    pub fn fallback_note(&self) -> String {
        format!(
            "{} by fallback (at most {} allowed)",
            self.fallback,
            fallback_allowance(self.total)
        )
    }

    /// The share of successes, 0 to 1 (1 with no request).
    pub fn ok_ratio(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            as_f64(self.ok) / as_f64(self.total)
        }
    }

    /// `98/100 200 (2 fallback), 2 × HTTP 503, p95 1.9 s`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("{}/{} answered 200", self.ok, self.total)];
        if self.fallback > 0 {
            parts[0].push_str(&format!(" ({} by fallback)", self.fallback));
        }
        for (status, count) in &self.statuses {
            if *status != 200 {
                parts.push(format!("{count} × HTTP {status}"));
            }
        }
        if self.unanswered > 0 {
            parts.push(format!("{} unanswered", self.unanswered));
        }
        parts.push(format!(
            "p50 {} p95 {} p99 {}",
            secs(self.p50),
            secs(self.p95),
            secs(self.p99)
        ));
        parts.join(", ")
    }

    /// `llm_service_1: 11, llm_service_2: 9`.
    pub fn distribution(&self) -> String {
        self.served_by
            .iter()
            .map(|(by, n)| format!("{by}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Fallback answers tolerated among `total` requests that the instances should serve: 10 %
/// of them, at least 1. The lab's llm-services fail 10 % of requests on purpose; the
/// gateway retries them, and the rare one that fails twice is answered by a fallback tier.
pub fn fallback_allowance(total: usize) -> usize {
    (total / 10).max(1)
}

/// The `p`-th percentile (nearest rank) of `sorted` times; `None` when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * as_f64(sorted.len())).ceil();
    let index = if rank <= 1.0 {
        0
    } else {
        // `rank` is a whole number between 1 and len: the conversion is exact.
        (rank as usize).min(sorted.len()) - 1
    };
    sorted.get(index).copied()
}

/// `1.23 s`.
pub fn secs(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

fn as_f64(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use llm_api::ErrorBody;
    use serde_json::Value;

    use super::*;
    use crate::suite::tests::wire;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn answer(status: Option<u16>, body: Value, elapsed: u64) -> Answer {
        Answer {
            error: status.is_none().then(|| "refused".to_owned()),
            ..Answer::new(status, body, ms(elapsed))
        }
    }

    fn ok(by: &str, fallback: bool) -> Value {
        serde_json::to_value(wire::served(by, fallback)).unwrap()
    }

    fn error() -> Value {
        serde_json::to_value(ErrorBody::new("upstream_error", "failed", None)).unwrap()
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let times: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&times, 50.0), Some(ms(50)));
        assert_eq!(percentile(&times, 95.0), Some(ms(95)));
        assert_eq!(percentile(&times, 99.0), Some(ms(99)));
        assert_eq!(percentile(&times, 100.0), Some(ms(100)));
        assert_eq!(percentile(&times, 0.0), Some(ms(1)));
        let few = [ms(10), ms(20), ms(30)];
        assert_eq!(percentile(&few, 95.0), Some(ms(30)));
        assert_eq!(percentile(&few, 50.0), Some(ms(20)));
        assert_eq!(percentile(&[], 95.0), None);
    }

    #[test]
    fn a_summary_counts_successes_fallbacks_shedding_and_silence() {
        let mut shed = answer(Some(503), error(), 5);
        shed.retry_after = Some("1".into());
        let answers = vec![
            answer(Some(200), ok("llm_service_1", false), 100),
            answer(Some(200), ok("llm_service_2", false), 300),
            answer(Some(200), ok("fallback_manager", true), 10),
            shed,
            answer(None, Value::Null, 40_000),
        ];
        let summary = Summary::of(&answers);
        assert_eq!(summary.total, 5);
        assert_eq!(summary.ok, 3);
        assert_eq!(summary.fallback, 1);
        assert_eq!(summary.shed, 1);
        assert_eq!(summary.unanswered, 1);
        assert_eq!(summary.statuses.get(&200), Some(&3));
        assert_eq!(summary.max, ms(40_000));
        assert_eq!(
            summary.distribution(),
            "fallback_manager: 1, llm_service_1: 1, llm_service_2: 1"
        );
        assert!((summary.ok_ratio() - 0.6).abs() < 1e-9);
        let text = summary.describe();
        assert!(
            text.starts_with("3/5 answered 200 (1 by fallback)"),
            "{text}"
        );
        assert!(
            text.contains("1 × HTTP 503") && text.contains("1 unanswered"),
            "{text}"
        );
    }

    #[test]
    fn a_tenth_of_the_requests_may_fall_back_and_at_least_one() {
        assert_eq!(fallback_allowance(0), 1);
        assert_eq!(fallback_allowance(1), 1);
        assert_eq!(fallback_allowance(10), 1);
        assert_eq!(fallback_allowance(19), 1);
        assert_eq!(fallback_allowance(20), 2);
        assert_eq!(fallback_allowance(300), 30);
    }

    #[test]
    fn the_instances_kept_serving_only_when_every_answer_is_200_and_few_fell_back() {
        let served = |by: &str, fallback: bool| answer(Some(200), ok(by, fallback), 10);
        let mut answers: Vec<Answer> = (0..9).map(|_| served("llm_service_2", false)).collect();
        answers.push(served("fallback_manager", true));
        let one = Summary::of(&answers);
        assert!(one.kept_serving(), "1 fallback in 10 is allowed");
        assert_eq!(one.by_instances(), 9);
        assert_eq!(one.fallback_note(), "1 by fallback (at most 1 allowed)");

        answers[0] = served("fallback_manager", true);
        let two = Summary::of(&answers);
        assert!(!two.kept_serving(), "2 fallbacks in 10 are not");
        assert_eq!(two.ok, two.total, "although every answer is a 200");

        let templates: Vec<Answer> = (0..10).map(|_| served("fallback_manager", true)).collect();
        assert!(
            !Summary::of(&templates).kept_serving(),
            "all from templates"
        );

        answers[0] = answer(Some(502), error(), 10);
        assert!(!Summary::of(&answers).kept_serving(), "a failed request");
        assert!(!Summary::of(&[]).kept_serving(), "no request at all");
    }

    #[test]
    fn the_achieved_rate_is_requests_over_the_sending_time() {
        assert!((achieved_rps(300, Duration::from_secs(30)) - 10.0).abs() < 1e-9);
        assert_eq!(achieved_rps(5, Duration::ZERO), 0.0);
        let sent = Sent {
            answers: vec![answer(Some(200), Value::Null, 1); 45],
            sending: Duration::from_secs(1),
        };
        assert!((sent.achieved_rps() - 45.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn traffic_keeps_its_rate() {
        let gateway = crate::suite::tests::fake::FakeGateway::start().await;
        let http = crate::suite::client::http_client().unwrap();
        let client = GatewayClient::new(http, &gateway.url);

        let sent = at_rate(&client, 40, Duration::from_secs(1), "rate probe").await;

        // A tick every 25 ms from the start, the first at once: a held-up generator
        // catches up, so the count follows the time it was sending.
        let total = sent.answers.len();
        let expected = 40.0 * sent.sending.as_secs_f64();
        assert!(
            (as_f64(total) - expected).abs() <= 2.0,
            "{total} requests in {:?}",
            sent.sending
        );
        assert!(sent.sending >= Duration::from_secs(1), "{:?}", sent.sending);
        assert!(sent.achieved_rps() >= 36.0, "{}", sent.achieved_rps());
        assert!(sent.answers.iter().all(Answer::is_success));
    }
}
