//! Breaker settings: defaults, every key, how sections and variables stack, and problems
//! named by the key that set the bad value.

use std::time::Duration;

use resilience_core::breaker::{BreakerConfig, ReopenBackoff};

use super::{URLS, fields, from_env, problem, with_file};
use crate::config::{Target, endpoint_key};

#[test]
fn the_pool_breaker_needs_two_probes_and_has_its_windows_off_by_default() {
    let b = from_env(&[URLS]).unwrap().breakers;
    assert_eq!(
        b.pool.success_threshold, 2,
        "two successful probes close it"
    );
    assert_eq!(b.pool.half_open_max_calls, 1, "one probe at a time");
    assert_eq!(b.pool.failure_rate_threshold, None);
    assert_eq!(b.pool.slow_call_rate_threshold, None);
    assert_eq!(b.pool.max_concurrent_calls, None);
    assert!(
        b.pool.reopen_backoff.is_none(),
        "OPEN for exactly the timeout"
    );
    assert_eq!(b.instance.failure_threshold, 5);
    assert_eq!(b.instance.success_threshold, 1);
    assert_eq!(b.instance.half_open_max_calls, 1);
    assert_eq!(b.instance.failure_rate_threshold, None);
    assert_eq!(b.instance.recovery_timeout, b.pool.recovery_timeout);
    assert!(b.by_pool.is_empty() && b.by_endpoint.is_empty());
}

#[test]
fn every_key_reaches_the_breaker() {
    let b = with_file(
        r#"
        [pool_breaker]
        failure_threshold = 0
        recovery_timeout_ms = 4000
        failure_rate_threshold = 0.5
        slow_call_rate_threshold = 0.8
        slow_call_duration_ms = 1500
        window_ms = 20000
        window_buckets = 20
        minimum_calls = 7
        half_open_max_calls = 3
        success_threshold = 3
        max_concurrent_calls = 50
        reopen_backoff = { multiplier = 3.0, max_ms = 60000, jitter = 0.1 }
        "#,
        &[URLS],
    )
    .unwrap()
    .breakers;
    assert_eq!(
        b.pool,
        BreakerConfig {
            failure_threshold: 0,
            recovery_timeout: Duration::from_secs(4),
            failure_rate_threshold: Some(0.5),
            slow_call_rate_threshold: Some(0.8),
            slow_call_duration: Duration::from_millis(1500),
            window: Duration::from_secs(20),
            window_buckets: 20,
            minimum_calls: 7,
            half_open_max_calls: 3,
            success_threshold: 3,
            max_concurrent_calls: Some(50),
            reopen_backoff: Some(ReopenBackoff {
                multiplier: 3.0,
                max: Duration::from_secs(60),
                jitter: 0.1,
            }),
        }
    );
    assert_eq!(
        b.instance.recovery_timeout,
        Duration::from_secs(4),
        "instances follow the pool breaker's recovery timeout"
    );
}

#[test]
fn the_variables_win_over_pool_breaker_keys() {
    let file = "[pool_breaker]\nfailure_threshold = 9\nrecovery_timeout_ms = 4000\n";
    let b = with_file(file, &[URLS]).unwrap().breakers;
    assert_eq!(b.pool.failure_threshold, 9);
    assert_eq!(b.pool.recovery_timeout, Duration::from_secs(4));
    let s = with_file(
        file,
        &[
            URLS,
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "3"),
            ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "2"),
        ],
    )
    .unwrap();
    assert_eq!(s.breakers.pool.failure_threshold, 3);
    assert_eq!(s.breakers.pool.recovery_timeout, Duration::from_secs(2));
    assert_eq!(s.retry_after_s(), 2);
    let s = with_file("[pool_breaker]\nrecovery_timeout_ms = 1500\n", &[URLS]).unwrap();
    assert_eq!(s.retry_after_s(), 2, "rounded up");
}

#[test]
fn instance_ejection_never_outlasts_the_pool_timeout() {
    let s = with_file(
        "[instance_breaker]\nrecovery_timeout_ms = 60000\n[routes.a]\ntargets = [{ url = \"http://x/v1\", model = \"m\", breaker = { recovery_timeout_ms = 90000 } }]\n",
        &[URLS, ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "2")],
    )
    .unwrap();
    assert_eq!(s.breakers.instance.recovery_timeout, Duration::from_secs(2));
    for config in s.breakers.by_endpoint.values() {
        assert_eq!(config.recovery_timeout, Duration::from_secs(2));
    }
    let s = with_file("[instance_breaker]\nrecovery_timeout_ms = 700\n", &[URLS]).unwrap();
    assert_eq!(
        s.breakers.instance.recovery_timeout,
        Duration::from_millis(700)
    );
}

#[test]
fn pool_and_target_sections_stack_over_instance_breaker() {
    let s = with_file(
        r#"
        [instance_breaker]
        failure_threshold = 7
        failure_rate_threshold = 0.5
        [pools.secondary.instance_breaker]
        success_threshold = 3
        failure_rate_threshold = 0
        [routes.a]
        targets = [
          { url = "http://x/v1", model = "m", breaker = { failure_threshold = 2, max_concurrent_calls = 4 } },
          { url = "http://y/v1", model = "m" },
          { pool = "secondary", breaker = { half_open_max_calls = 2 } },
          { pool = "backup", breaker = { failure_threshold = 1 } },
        ]
        [routes.b]
        targets = [{ pool = "secondary", breaker = { half_open_max_calls = 2 } }, { pool = "primary" }]
        "#,
        &[URLS],
    )
    .unwrap();
    let b = &s.breakers;
    assert_eq!(b.instance.failure_threshold, 7);
    assert_eq!(b.for_pool("primary"), &b.instance, "no section of its own");

    let secondary = b.for_pool("secondary");
    assert_eq!(secondary.failure_threshold, 7, "from [instance_breaker]");
    assert_eq!(secondary.success_threshold, 3, "from [pools.secondary]");
    assert_eq!(secondary.failure_rate_threshold, None, "0 turns it off");
    assert_eq!(secondary.half_open_max_calls, 2, "from the route targets");
    assert_eq!(b.for_pool("backup").failure_threshold, 1);
    assert_eq!(b.for_pool("backup").success_threshold, 1);

    let route = s.routes.iter().find(|r| r.name == "a").unwrap();
    let [Target::Endpoint(x), Target::Endpoint(y), ..] = route.targets.as_slice() else {
        panic!("{:?}", route.targets)
    };
    let x_breaker = b.for_endpoint(x);
    assert_eq!(x_breaker.failure_threshold, 2);
    assert_eq!(x_breaker.max_concurrent_calls, Some(4));
    assert_eq!(
        x_breaker.failure_rate_threshold,
        Some(0.5),
        "the rest inherited"
    );
    assert_eq!(b.for_endpoint(y), &b.instance, "no section of its own");
    assert_eq!(b.by_endpoint.keys().collect::<Vec<_>>(), [&endpoint_key(x)]);
}

#[test]
fn a_bad_breaker_value_is_named_by_the_key_that_set_it() {
    let problems = with_file(
        r#"
        [pool_breaker]
        reopen_backoff = { max_ms = 5000 }
        window_buckets = 0
        [pools.backup.instance_breaker]
        failure_threshold = 0
        [routes.a]
        targets = [
          { url = "http://x/v1", model = "m", breaker = { window_ms = 0, slow_call_rate_threshold = 2.0 } },
          { pool = "secondary", breaker = { success_threshold = 2 } },
        ]
        [routes.b]
        targets = [{ pool = "secondary", breaker = { success_threshold = 3 } }, { pool = "backup" }]
        "#,
        &[URLS, ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "10")],
    )
    .unwrap_err();
    let expected = [
        "pool_breaker.reopen_backoff.max_ms",
        "pool_breaker.window_buckets",
        "pools.backup.instance_breaker.failure_threshold",
        "routes.a.targets[0].breaker.window_ms",
        "routes.a.targets[0].breaker.slow_call_rate_threshold",
        "routes.b.targets[0].breaker",
    ];
    for field in expected {
        problem(&problems, field);
    }
    assert_eq!(problems.len(), expected.len(), "{:?}", fields(&problems));
    assert!(
        problem(&problems, "routes.b.targets[0].breaker")
            .message
            .contains("routes.a.targets[1].breaker"),
        "names the other section"
    );
}

#[test]
fn an_unknown_breaker_key_is_refused_naming_its_section() {
    let problems = with_file("[pool_breaker]\nsucess_threshold = 2\n", &[URLS]).unwrap_err();
    assert!(
        problem(&problems, "pool_breaker")
            .message
            .contains("sucess_threshold")
    );
    let problems = with_file(
        "[routes.a]\ntargets = [{ pool = \"primary\", breaker = { treshold = 1 } }]\n",
        &[URLS],
    )
    .unwrap_err();
    assert!(problem(&problems, "routes.a").message.contains("treshold"));
}
