//! Issue 18's settings: authentication mode, admin networks, PII masking, rate limits.

use std::time::Duration;

use resilience_core::limit::FailureMode;

use super::{URLS, fields, from_env, problem, with_file};
use crate::auth::AuthMode;
use crate::config::limits::LimitStore;
use crate::pii::PiiMode;

#[test]
fn the_lab_defaults_leave_everything_open_and_the_tiers_at_the_labs_limits() {
    let s = from_env(&[URLS]).unwrap();
    assert_eq!(s.auth.mode, AuthMode::NONE);
    assert!(s.admin_allow.is_any());
    assert_eq!(s.pii, PiiMode::Off);
    let r = &s.rate_limits;
    assert_eq!(r.store, LimitStore::Memory);
    assert_eq!(r.failure_mode, FailureMode::FailLocal);
    assert_eq!((r.replicas, r.anonymous), (1, false));
    assert_eq!(r.redis_timeout, Duration::from_millis(100));
    assert_eq!(r.max_keys, 100_000);
    for (tier, per_minute) in [("default", 100), ("premium", 1_000), ("enterprise", 10_000)] {
        let (name, limit) = r.tier(tier);
        assert_eq!(name, tier);
        assert_eq!(limit.requests.limit(), per_minute);
        assert_eq!(limit.requests.burst(), per_minute, "a whole minute at once");
        assert_eq!(limit.tokens, None);
    }
    assert_eq!(
        r.tier("gold").0,
        "default",
        "an unknown tier is the default one"
    );
}

#[test]
fn the_file_changes_and_adds_tiers() {
    let s = with_file(
        "[rate_limits.default]\nrequests_per_minute = 30\nburst = 5\ntokens_per_minute = 1000\n\
         [rate_limits.bulk]\nrequests_per_minute = 5000\n",
        &[URLS],
    )
    .unwrap();
    let (_, default) = s.rate_limits.tier("default");
    assert_eq!(
        (default.requests.limit(), default.requests.burst()),
        (30, 5)
    );
    let tokens = default.tokens.as_ref().unwrap();
    assert_eq!((tokens.limit(), tokens.burst()), (1000, 1000));
    let (name, bulk) = s.rate_limits.tier("bulk");
    assert_eq!(
        (name, bulk.requests.limit(), bulk.requests.burst()),
        ("bulk", 5000, 5000)
    );
    assert_eq!(
        s.rate_limits.tier("premium").1.requests.limit(),
        1_000,
        "kept"
    );
}

#[test]
fn every_bad_identity_setting_is_named() {
    let problems = with_file(
        "[rate_limits.gold]\nburst = 3\n[rate_limits.standard]\nrequests_per_minute = 5\n\
         [rate_limits.\"Bad Name\"]\nrequests_per_minute = 5\n[rate_limits.zero]\nrequests_per_minute = 0\n",
        &[
            URLS,
            ("AUTH_MODE", "oauth"),
            ("ADMIN_ALLOW", "10.0.0.0/33"),
            ("PII_REDACTION", "scrub"),
            ("RATE_LIMIT_STORE", "redis"),
            ("RATE_LIMIT_FAILURE_MODE", "fail_sometimes"),
            ("RATE_LIMIT_REPLICAS", "0"),
            ("RATE_LIMIT_ANONYMOUS", "maybe"),
            ("RATE_LIMIT_REDIS_TIMEOUT_MS", "0"),
            ("RATE_LIMIT_MAX_KEYS", "3"),
        ],
    )
    .unwrap_err();
    for field in [
        "AUTH_MODE",
        "ADMIN_ALLOW",
        "PII_REDACTION",
        "RATE_LIMIT_STORE",
        "RATE_LIMIT_FAILURE_MODE",
        "RATE_LIMIT_REPLICAS",
        "RATE_LIMIT_ANONYMOUS",
        "RATE_LIMIT_REDIS_TIMEOUT_MS",
        "RATE_LIMIT_MAX_KEYS",
        "rate_limits.gold.requests_per_minute",
        "rate_limits.standard",
        "rate_limits.Bad Name",
        "rate_limits.zero.requests_per_minute",
    ] {
        problem(&problems, field);
    }
    assert!(
        problem(&problems, "RATE_LIMIT_STORE")
            .message
            .contains("REDIS_URL"),
        "{:?}",
        fields(&problems)
    );
}

#[test]
fn the_redis_store_with_redis_and_anonymous_limits() {
    let s = from_env(&[
        URLS,
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("RATE_LIMIT_STORE", "redis"),
        ("RATE_LIMIT_FAILURE_MODE", "fail_open"),
        ("RATE_LIMIT_REPLICAS", "3"),
        ("RATE_LIMIT_ANONYMOUS", "true"),
        ("ADMIN_ALLOW", "127.0.0.1, 10.0.0.0/8"),
        ("PII_REDACTION", "mask"),
    ])
    .unwrap();
    let r = &s.rate_limits;
    assert_eq!(r.store, LimitStore::Redis);
    assert_eq!(r.failure_mode, FailureMode::FailOpen);
    assert_eq!((r.replicas, r.anonymous), (3, true));
    assert!(!s.admin_allow.is_any());
    assert_eq!(s.pii, PiiMode::Mask);
}
