//! The attempt plan, rule by rule.

use std::time::Duration;

use super::support::*;
use crate::breaker::Outcome;
use crate::policy::{AttemptPlan, Exhausted, FailureClass, Selection, Step};

const STRICT: Selection = Selection {
    respect_breakers: true,
    avoid_tried: true,
};

/// Runs the plan's next step and, for a `Try`, returns the ids it would accept.
fn accepted<'a>(
    plan: &AttemptPlan<'_>,
    selection: Selection,
    cands: &[crate::policy::Candidate<'a>],
) -> Vec<&'a str> {
    cands
        .iter()
        .filter(|c| plan.eligible(c, selection))
        .map(|c| c.id)
        .collect()
}

#[test]
fn the_first_try_goes_to_any_healthy_admitting_candidate() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline);
    let cands = [up("a"), down("b"), ejected("c"), cooling("d", MS)];
    let Step::Try { selection, within } = plan.next(now, &cands) else {
        panic!("expected a try");
    };
    assert_eq!(selection, STRICT);
    assert_eq!(within, Duration::from_secs(10));
    assert_eq!(accepted(&plan, selection, &cands), ["a"]);
    assert_eq!(budget.snapshot().requests, 1, "the request was deposited");
}

#[test]
fn a_retryable_failure_waits_the_backoff_then_tries_another_candidate() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline).with_jitter(1.0);
    let cands = [up("a"), up("b")];
    plan.attempt_started("a");
    plan.attempt_failed(failure("a", FailureClass::ServerError), now, &cands);
    assert_eq!(
        plan.next(now, &cands),
        Step::Wait(Duration::from_millis(100))
    );
    let Step::Try { selection, .. } = plan.next(now, &cands) else {
        panic!("expected a try");
    };
    assert_eq!(accepted(&plan, selection, &cands), ["b"]);
    assert_eq!(budget.snapshot().retries, 1, "the retry took a token");
}

#[test]
fn the_same_candidate_is_tried_again_when_no_other_may_take_the_try() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline).with_jitter(0.0);
    let cands = [up("a"), down("b")];
    plan.attempt_started("a");
    plan.attempt_failed(failure("a", FailureClass::Transport), now, &cands);
    let Step::Try { selection, .. } = plan.next(now, &cands) else {
        panic!("expected a try");
    };
    assert!(!selection.avoid_tried);
    assert_eq!(accepted(&plan, selection, &cands), ["a"]);
}

#[test]
fn a_silent_candidate_is_never_tried_again_and_the_next_goes_at_once() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline).with_jitter(1.0);
    let only = [up("a")];
    plan.attempt_started("a");
    plan.attempt_failed(failure("a", FailureClass::Timeout), now, &only);
    let Step::GiveUp(Exhausted::TimedOut { after, last }) = plan.next(now, &only) else {
        panic!("a lone silent candidate ends the request");
    };
    assert_eq!(after, Duration::from_millis(200), "the attempt's limit");
    assert_eq!(last.unwrap().target, "a");

    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline).with_jitter(1.0);
    let two = [up("a"), up("b")];
    plan.attempt_started("a");
    plan.attempt_failed(failure("a", FailureClass::Timeout), now, &two);
    let Step::Try { selection, .. } = plan.next(now, &two) else {
        panic!("no wait after a timeout");
    };
    assert_eq!(accepted(&plan, selection, &two), ["b"]);
    let relaxed = Selection {
        respect_breakers: false,
        avoid_tried: false,
    };
    assert_eq!(
        accepted(&plan, relaxed, &two),
        ["b"],
        "silent even when relaxed"
    );
}

#[test]
fn a_refusal_goes_to_an_untried_candidate_outside_the_budget() {
    let (settings, budget, (now, deadline)) = (settings(), budget(true), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline);
    let cands = [up("a"), up("b")];
    plan.attempt_started("a");
    plan.attempt_failed(failure("a", FailureClass::Refused), now, &cands);
    let Step::Try { selection, .. } = plan.next(now, &cands) else {
        panic!("another instance may accept it");
    };
    assert_eq!(accepted(&plan, selection, &cands), ["b"]);
    plan.attempt_started("b");
    plan.attempt_failed(failure("b", FailureClass::Refused), now, &cands);
    let Step::GiveUp(exhausted) = plan.next(now, &cands) else {
        panic!("nobody else to ask");
    };
    assert_eq!(
        exhausted,
        Exhausted::Refused(failure("b", FailureClass::Refused))
    );
    assert_eq!(exhausted.breaker_outcome(), Outcome::Ignored);
}

#[test]
fn a_refusal_followed_by_an_upstream_failure_is_no_longer_the_clients() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline).with_jitter(0.0);
    let cands = [up("a"), up("b")];
    plan.attempt_started("a");
    plan.attempt_failed(failure("a", FailureClass::Refused), now, &cands);
    plan.attempt_started("b");
    let later = now + Duration::from_secs(10);
    plan.attempt_failed(failure("b", FailureClass::ServerError), later, &cands);
    assert_eq!(
        plan.next(later, &cands),
        Step::GiveUp(Exhausted::Failed(failure("b", FailureClass::ServerError)))
    );
}

#[test]
fn final_refusals_end_the_request_at_once() {
    for class in [FailureClass::ContextTooLong, FailureClass::ContentRefused] {
        let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
        let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline);
        let cands = [up("a"), up("b")];
        plan.attempt_started("a");
        plan.attempt_failed(failure("a", class), now, &cands);
        assert_eq!(
            plan.next(now, &cands),
            Step::GiveUp(Exhausted::Refused(failure("a", class))),
            "{class}"
        );
    }
}

#[test]
fn the_policy_bounds_the_attempts() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline).with_jitter(0.0);
    let cands = [up("a"), up("b"), up("c"), up("d")];
    for id in ["a", "b", "c"] {
        assert!(matches!(plan.next(now, &cands), Step::Try { .. }));
        plan.attempt_started(id);
        plan.attempt_failed(failure(id, FailureClass::ServerError), now, &cands);
    }
    assert_eq!(
        plan.next(now, &cands),
        Step::GiveUp(Exhausted::Failed(failure("c", FailureClass::ServerError)))
    );
    assert_eq!(plan.attempts(), 3);
}

#[test]
fn retry_after_moves_to_another_candidate_at_once_or_waits_for_the_one_that_asked() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let asked = Duration::from_millis(1500);
    // Another candidate may take it: no wait.
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline).with_jitter(1.0);
    plan.attempt_started("a");
    let after = [cooling("a", asked), up("b")];
    plan.attempt_failed(
        asking(failure("a", FailureClass::RateLimited), asked),
        now,
        &after,
    );
    let Step::Try { selection, .. } = plan.next(now, &after) else {
        panic!("no wait");
    };
    assert_eq!(accepted(&plan, selection, &after), ["b"]);
    // Alone: the wait asked for, then the same candidate although it still cools down.
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline).with_jitter(1.0);
    plan.attempt_started("a");
    let alone = [cooling("a", asked)];
    plan.attempt_failed(
        asking(failure("a", FailureClass::RateLimited), asked),
        now,
        &alone,
    );
    assert_eq!(plan.next(now, &alone), Step::Wait(asked));
    let Step::Try { selection, .. } = plan.next(now + asked, &alone) else {
        panic!("the waited-for candidate");
    };
    assert_eq!(accepted(&plan, selection, &alone), ["a"]);
    // `Retry-After: 0` still waits the backoff.
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline).with_jitter(1.0);
    plan.attempt_started("a");
    let zero = asking(failure("a", FailureClass::ServerError), Duration::ZERO);
    plan.attempt_failed(zero, now, &[cooling("a", Duration::ZERO)]);
    assert_eq!(
        plan.next(now, &alone),
        Step::Wait(Duration::from_millis(100))
    );
}

#[test]
fn a_retry_after_longer_than_max_retry_after_gives_up_on_the_target() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline);
    plan.attempt_started("a");
    let long = Duration::from_secs(3);
    let f = asking(failure("a", FailureClass::RateLimited), long);
    plan.attempt_failed(f.clone(), now, &[cooling("a", long)]);
    let step = plan.next(now, &[cooling("a", long)]);
    assert_eq!(step, Step::GiveUp(Exhausted::Failed(f)));
    let Step::GiveUp(exhausted) = step else {
        unreachable!()
    };
    assert_eq!(
        exhausted.breaker_outcome(),
        Outcome::Failure,
        "it was tried and failed"
    );
}

#[test]
fn cooling_candidates_are_waited_for_or_the_target_is_only_throttled() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline);
    let short = [
        cooling("a", Duration::from_millis(700)),
        cooling("b", Duration::from_millis(300)),
    ];
    assert_eq!(
        plan.next(now, &short),
        Step::Wait(Duration::from_millis(300))
    );
    let Step::Try { selection, .. } = plan.next(now, &short) else {
        panic!("the waited-for candidate is tried");
    };
    assert_eq!(accepted(&plan, selection, &short), ["b"]);

    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline);
    let long = [cooling("a", Duration::from_secs(60))];
    let Step::GiveUp(exhausted) = plan.next(now, &long) else {
        panic!("too long to wait");
    };
    assert_eq!(exhausted, Exhausted::NoneAvailable { throttled: true });
    assert_eq!(exhausted.breaker_outcome(), Outcome::Ignored);
}

#[test]
fn nothing_healthy_is_none_available_and_a_failure() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline);
    let Step::GiveUp(exhausted) = plan.next(now, &[down("a"), down("b")]) else {
        panic!("nothing to try");
    };
    assert_eq!(exhausted, Exhausted::NoneAvailable { throttled: false });
    assert_eq!(exhausted.breaker_outcome(), Outcome::Failure);
    assert_eq!(
        plan.next(now, &[]),
        Step::GiveUp(Exhausted::NoneAvailable { throttled: false })
    );
}

#[test]
fn ejection_is_bypassed_by_a_probe_or_when_every_healthy_candidate_is_ejected() {
    let (mut settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let cands = [ejected("a"), ejected("b"), down("c")];
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline);
    let Step::Try { selection, .. } = plan.next(now, &cands) else {
        panic!("all ejected: bypassed");
    };
    assert_eq!(
        selection,
        Selection {
            respect_breakers: false,
            avoid_tried: true
        }
    );
    assert_eq!(accepted(&plan, selection, &cands), ["a", "b"]);

    settings.bypass_when_all_ejected = false;
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline);
    assert_eq!(
        plan.next(now, &cands),
        Step::GiveUp(Exhausted::NoneAvailable { throttled: false }),
        "a target without a breaker of its own never bypasses ejection"
    );
    // A probe does, even when one healthy candidate still admits calls but was tried.
    let mixed = [ejected("a"), up("b")];
    let mut plan = AttemptPlan::new(&settings, &budget, true, now, deadline).with_jitter(0.0);
    plan.attempt_started("b");
    plan.attempt_failed(failure("b", FailureClass::Timeout), now, &mixed);
    let Step::Try { selection, .. } = plan.next(now, &mixed) else {
        panic!("a probe uses the ejected candidate");
    };
    assert!(!selection.respect_breakers);
    assert_eq!(accepted(&plan, selection, &mixed), ["a"]);
}

#[test]
fn a_breaker_that_refuses_the_picked_candidate_takes_it_out_of_this_request() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline);
    let cands = [up("a"), up("b")];
    plan.breaker_refused("a");
    let Step::Try { selection, .. } = plan.next(now, &cands) else {
        panic!("b is left");
    };
    assert_eq!(accepted(&plan, selection, &cands), ["b"]);
}

#[test]
fn the_deadline_ends_the_request_as_timed_out_with_the_last_failure() {
    let (settings, budget, (now, deadline)) = (settings(), budget(false), start());
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline).with_jitter(0.0);
    let cands = [up("a"), up("b")];
    plan.attempt_started("a");
    plan.attempt_failed(failure("a", FailureClass::ServerError), now, &cands);
    assert_eq!(
        plan.next(deadline, &cands),
        Step::GiveUp(Exhausted::TimedOut {
            after: Duration::from_secs(10),
            last: Some(failure("a", FailureClass::ServerError)),
        })
    );
}

#[test]
fn a_retry_after_cools_the_candidate_down_within_a_bound_but_a_refusal_never_does() {
    use crate::policy::{MAX_COOLDOWN, cooldown};
    let asked = |class, wait| asking(failure("a", class), wait);
    let short = Duration::from_secs(3);
    assert_eq!(
        cooldown(&asked(FailureClass::RateLimited, short)),
        Some(short)
    );
    assert_eq!(
        cooldown(&asked(FailureClass::ServerError, short)),
        Some(short)
    );
    assert_eq!(
        cooldown(&asked(FailureClass::RateLimited, Duration::from_secs(3600))),
        Some(MAX_COOLDOWN)
    );
    assert_eq!(cooldown(&asked(FailureClass::Refused, short)), None);
    assert_eq!(cooldown(&failure("a", FailureClass::RateLimited)), None);
}
