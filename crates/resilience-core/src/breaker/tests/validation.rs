//! Config validation names every bad setting.

use std::time::Duration;

use crate::breaker::{BreakerConfig, ReopenBackoff};

#[test]
fn validation_names_every_bad_setting() {
    let bad = BreakerConfig {
        failure_threshold: 0,
        failure_rate_threshold: Some(1.5),
        half_open_max_calls: 0,
        success_threshold: 0,
        recovery_timeout: Duration::ZERO,
        max_concurrent_calls: Some(0),
        reopen_backoff: Some(ReopenBackoff {
            multiplier: 0.5,
            max: Duration::ZERO,
            jitter: 1.0,
        }),
        ..BreakerConfig::default()
    };
    let text: Vec<String> = bad.problems().iter().map(ToString::to_string).collect();
    for setting in [
        "breaker.failure_rate_threshold",
        "breaker.recovery_timeout",
        "breaker.half_open_max_calls",
        "breaker.success_threshold",
        "breaker.max_concurrent_calls",
        "breaker.reopen_backoff.multiplier",
        "breaker.reopen_backoff.jitter",
    ] {
        assert!(
            text.iter().any(|t| t.contains(setting)),
            "{setting} missing from {text:?}"
        );
    }
    let short_cap = BreakerConfig {
        reopen_backoff: Some(ReopenBackoff {
            max: Duration::from_secs(1),
            ..ReopenBackoff::default()
        }),
        ..BreakerConfig::default()
    };
    let err = short_cap.validate().unwrap_err().to_string();
    assert!(err.contains("breaker.reopen_backoff.max"), "{err}");
    for (bad, setting) in [
        (
            BreakerConfig {
                window_buckets: 5_000,
                ..BreakerConfig::default()
            },
            "breaker.window_buckets",
        ),
        (
            BreakerConfig {
                slow_call_duration: Duration::ZERO,
                ..BreakerConfig::default()
            },
            "breaker.slow_call_duration",
        ),
        (
            BreakerConfig {
                recovery_timeout: Duration::MAX,
                ..BreakerConfig::default()
            },
            "breaker.recovery_timeout",
        ),
        (
            BreakerConfig {
                window: Duration::from_secs(86_401),
                ..BreakerConfig::default()
            },
            "breaker.window",
        ),
    ] {
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains(setting), "{err}");
    }
    assert!(BreakerConfig::default().validate().is_ok());
    let never_opens = BreakerConfig {
        failure_threshold: 0,
        ..BreakerConfig::default()
    };
    assert!(never_opens.validate().is_err());
}
