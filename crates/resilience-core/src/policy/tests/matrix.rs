//! Every outcome class against every situation a retry can meet: a fresh budget, a spent
//! one, a failure at the deadline, and a `Retry-After` longer than the time left.

use std::time::Duration;

use super::support::*;
use crate::policy::{AttemptPlan, Exhausted, FailureClass, PlanSettings, Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Situation {
    Fresh,
    BudgetSpent,
    AtTheDeadline,
    RetryAfterPastTheDeadline,
}

/// What the plan must do next.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    /// Try the other candidate at once.
    TryOther,
    /// Wait the backoff, then try the other candidate.
    BackoffThenOther,
    /// Give up as the client's error.
    Refused,
    /// Give up as timed out.
    TimedOut,
    /// Give up with the failure.
    Failed,
}

/// The rules of the plan's documentation, written out as a table.
fn expected(class: FailureClass, situation: Situation) -> Expected {
    use Expected::*;
    use FailureClass as C;
    use Situation as S;
    match (class, situation) {
        (C::ContextTooLong | C::ContentRefused, _) => Refused,
        // Outside the budget; at the deadline the plan gives up with the refusal.
        (C::Refused, S::Fresh | S::BudgetSpent) => TryOther,
        (C::Refused, S::AtTheDeadline | S::RetryAfterPastTheDeadline) => Refused,
        (C::Timeout, S::Fresh) => TryOther,
        (C::Timeout, _) => TimedOut,
        (_, S::Fresh) => BackoffThenOther,
        (_, _) => Failed,
    }
}

fn run(class: FailureClass, situation: Situation) -> Expected {
    let settings = PlanSettings {
        max_retry_after: Duration::from_secs(30),
        ..settings()
    };
    let budget = budget(situation == Situation::BudgetSpent);
    let (now, deadline) = start();
    let mut plan = AttemptPlan::new(&settings, &budget, false, now, deadline).with_jitter(1.0);
    let long = Duration::from_secs(20);
    let (failure, at, cands) = match situation {
        Situation::RetryAfterPastTheDeadline => (
            asking(failure("a", class), long),
            now,
            vec![cooling("a", long)],
        ),
        Situation::AtTheDeadline => (failure("a", class), deadline, vec![up("a"), up("b")]),
        Situation::Fresh | Situation::BudgetSpent => {
            (failure("a", class), now, vec![up("a"), up("b")])
        }
    };
    assert!(matches!(
        plan.next(now, &[up("a"), up("b")]),
        Step::Try { .. }
    ));
    plan.attempt_started("a");
    plan.attempt_failed(failure.clone(), at, &cands);
    let outcome = |plan: &AttemptPlan<'_>, step: Step| match step {
        Step::Try { selection, .. } => {
            let ids: Vec<_> = cands
                .iter()
                .filter(|c| plan.eligible(c, selection))
                .map(|c| c.id)
                .collect();
            assert_eq!(ids, ["b"], "{class} {situation:?}");
            Expected::TryOther
        }
        Step::GiveUp(Exhausted::Refused(f)) => {
            assert_eq!(f, failure);
            Expected::Refused
        }
        Step::GiveUp(Exhausted::TimedOut { last, .. }) => {
            assert_eq!(last.as_ref(), Some(&failure));
            Expected::TimedOut
        }
        Step::GiveUp(Exhausted::Failed(f)) => {
            assert_eq!(f, failure);
            Expected::Failed
        }
        other => panic!("{class} {situation:?}: unexpected {other:?}"),
    };
    match plan.next(at, &cands) {
        Step::Wait(wait) => {
            assert_eq!(wait, Duration::from_millis(100), "{class} {situation:?}");
            let next = plan.next(at + wait, &cands);
            assert_eq!(outcome(&plan, next), Expected::TryOther);
            Expected::BackoffThenOther
        }
        step => outcome(&plan, step),
    }
}

#[test]
fn every_class_in_every_situation_follows_the_rules() {
    let situations = [
        Situation::Fresh,
        Situation::BudgetSpent,
        Situation::AtTheDeadline,
        Situation::RetryAfterPastTheDeadline,
    ];
    for class in FailureClass::ALL {
        for situation in situations {
            assert_eq!(
                run(class, situation),
                expected(class, situation),
                "{class} in {situation:?}"
            );
        }
    }
}

#[test]
fn classes_say_how_breakers_and_health_count_them() {
    use crate::breaker::Outcome;
    for class in FailureClass::ALL {
        let refusal = matches!(
            class,
            FailureClass::Refused | FailureClass::ContextTooLong | FailureClass::ContentRefused
        );
        assert_eq!(class.is_refusal(), refusal, "{class}");
        assert_eq!(class.is_retryable(), !refusal, "{class}");
        assert_eq!(class.says_target_healthy(), refusal, "{class}");
        let outcome = if refusal {
            Outcome::Ignored
        } else {
            Outcome::Failure
        };
        assert_eq!(class.breaker_outcome(), outcome, "{class}");
    }
}
