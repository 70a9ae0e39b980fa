//! Hot-path micro-benchmarks: what the gateway pays per request inside `resilience-core`.
//!
//! Run with `cargo bench -p resilience-core --bench hot_path`. Each benchmark runs on one
//! thread (uncontended) and on two threads sharing one breaker, balancer or retry budget
//! (contended).
//! Target: well under a microsecond per operation.
#![expect(
    clippy::expect_used,
    reason = "a benchmark that cannot set up must stop, not time an empty function"
)]

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use resilience_core::SystemClock;
use resilience_core::balancer::{Endpoint, LoadBalancer, Strategy};
use resilience_core::breaker::{Breaker, BreakerConfig, Outcome};
use resilience_core::policy::{AttemptPlan, Candidate, PlanSettings, Step};
use resilience_core::retry::{BudgetConfig, RetryBudget, RetryPolicy};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    divan::main();
}

static BREAKER: LazyLock<Breaker> = LazyLock::new(|| {
    Breaker::new("bench", BreakerConfig::default(), SystemClock::shared())
        .expect("the default breaker configuration is valid")
});

/// Acquire a permit on a CLOSED breaker and record a success: the per-request cost.
#[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 500)]
fn breaker_closed_call() {
    let guard = BREAKER
        .try_acquire()
        .expect("a CLOSED breaker admits every call");
    guard.record(divan::black_box(Outcome::Success));
}

struct Pool {
    endpoints: Vec<Arc<Endpoint<(String, AtomicBool)>>>,
    p2c: LoadBalancer,
    round_robin: LoadBalancer,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| Pool {
    endpoints: (0..4)
        .map(|i| {
            Endpoint::new((
                format!("http://127.0.0.1:{}", 8001 + i),
                AtomicBool::new(true),
            ))
        })
        .collect(),
    p2c: LoadBalancer::new(Strategy::PowerOfTwoChoices),
    round_robin: LoadBalancer::new(Strategy::RoundRobin),
});

fn healthy(endpoint: &(String, AtomicBool)) -> bool {
    endpoint.1.load(Ordering::Relaxed)
}

/// Power-of-two-choices pick over 4 healthy endpoints, guard dropped at once.
#[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 500)]
fn balancer_pick_p2c() {
    let pool = &*POOL;
    drop(divan::black_box(pool.p2c.pick(&pool.endpoints, healthy)));
}

/// Round-robin pick over 4 healthy endpoints, guard dropped at once.
#[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 500)]
fn balancer_pick_round_robin() {
    let pool = &*POOL;
    drop(divan::black_box(
        pool.round_robin.pick(&pool.endpoints, healthy),
    ));
}

/// The gateway's retry settings (config/gateway.example.toml's defaults).
static PLAN: LazyLock<PlanSettings> = LazyLock::new(|| PlanSettings {
    retry: RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(1),
    },
    max_retry_after: Duration::from_secs(2),
    bypass_when_all_ejected: true,
});

static BUDGET: LazyLock<RetryBudget> = LazyLock::new(|| {
    RetryBudget::new(BudgetConfig::default(), SystemClock::shared())
        .expect("the default budget configuration is valid")
});

const CANDIDATES: [Candidate<'static>; 4] = {
    const fn up(id: &'static str) -> Candidate<'static> {
        Candidate {
            id,
            healthy: true,
            admits: true,
            cooling: None,
        }
    }
    [up("a"), up("b"), up("c"), up("d")]
};

/// A request's plan on a pool of 4 healthy instances: built (a deposit in the shared retry
/// budget), its first step decided, the try started: what every request pays before its
/// first upstream call.
#[divan::bench(threads = [1, 2], sample_count = 200, sample_size = 500)]
fn plan_first_step() {
    let now = Instant::now();
    let mut plan = AttemptPlan::new(&PLAN, &BUDGET, false, now, now + Duration::from_secs(30));
    let step = plan.next(now, &CANDIDATES);
    assert!(matches!(step, Step::Try { .. }), "{step:?}");
    plan.attempt_started(divan::black_box("a"));
    divan::black_box(plan);
}
