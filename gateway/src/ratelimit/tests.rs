//! Callers, tiers and verdicts of the gateway's limits, over the in-process store (and a
//! Redis store that cannot be reached, for `fail_closed`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use axum::http::HeaderMap;
use resilience_core::SystemClock;
use resilience_core::limit::{FailureMode, Quota, Source};

use super::{Limits, Refusal};
use crate::auth::{AuthMethod, Identity, Scopes};
use crate::config::limits::{LimitStore, RateLimitSettings, TierLimit};

fn tier(requests: (u32, u32), tokens: Option<(u32, u32)>) -> TierLimit {
    TierLimit {
        requests: Quota::per_minute(requests.0, requests.1).unwrap(),
        tokens: tokens.map(|(limit, burst)| Quota::per_minute(limit, burst).unwrap()),
    }
}

fn settings(anonymous: bool) -> RateLimitSettings {
    let tiers = BTreeMap::from([
        ("default".to_owned(), tier((60, 2), None)),
        ("premium".to_owned(), tier((600, 5), None)),
        ("metered".to_owned(), tier((600, 100), Some((60, 10)))),
    ]);
    RateLimitSettings {
        store: LimitStore::Memory,
        failure_mode: FailureMode::FailLocal,
        replicas: 1,
        anonymous,
        redis_timeout: Duration::from_millis(100),
        max_keys: 1000,
        tiers,
    }
}

fn limits(anonymous: bool, authenticated: bool) -> Limits {
    Limits::new(
        &settings(anonymous),
        None,
        authenticated,
        SystemClock::shared(),
    )
    .unwrap()
}

fn identity(method: AuthMethod, subject: &str, tier: &str) -> Identity {
    Identity {
        subject: Cow::Owned(subject.to_owned()),
        tier: Cow::Owned(tier.to_owned()),
        scopes: Scopes::ALL,
        method,
        client: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))),
    }
}

#[test]
fn anonymous_callers_are_limited_only_when_asked_and_only_with_an_address() {
    let off = limits(false, false);
    assert!(
        !off.active(),
        "auth off, anonymous limits off: nothing is limited"
    );
    assert_eq!(
        off.caller(&Identity::anonymous(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)))),
        None
    );

    let on = limits(true, false);
    assert!(on.active());
    assert_eq!(
        on.caller(&Identity::anonymous(None)),
        None,
        "no address, no key"
    );
    let v4 = on
        .caller(&Identity::anonymous(Some(IpAddr::V4(Ipv4Addr::new(
            1, 2, 3, 4,
        )))))
        .unwrap();
    let mapped = on
        .caller(&Identity::anonymous(Some(IpAddr::V6(
            Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped(),
        ))))
        .unwrap();
    assert_eq!(v4, mapped, "an IPv4-mapped address is the same client");
    assert_eq!(v4.tier, "default");
    let other = on
        .caller(&Identity::anonymous(Some(IpAddr::V6(Ipv6Addr::LOCALHOST))))
        .unwrap();
    assert_ne!(v4, other);
}

#[test]
fn a_credentials_tier_picks_the_limit_and_unknown_tiers_are_default() {
    let l = limits(false, true);
    assert!(l.active());
    let premium = l
        .caller(&identity(AuthMethod::Jwt, "alice", "premium"))
        .unwrap();
    assert_eq!(premium.tier, "premium");
    let unknown = l
        .caller(&identity(AuthMethod::Jwt, "alice", "gold"))
        .unwrap();
    assert_eq!(unknown.tier, "default");
    let key = l
        .caller(&identity(AuthMethod::ApiKey, "alice", "premium"))
        .unwrap();
    assert_ne!(
        premium, key,
        "a key owner and a token subject of one name are two callers"
    );
    assert!(
        !premium.key.contains("alice") && premium.key.len() == 32,
        "the key is a digest, never the subject: {}",
        premium.key
    );
}

#[tokio::test]
async fn the_burst_then_429_with_retry_after_and_the_headers() {
    let l = limits(false, true);
    let caller = l
        .caller(&identity(AuthMethod::ApiKey, "bob", "default"))
        .unwrap();
    for remaining in [1, 0] {
        let admission = l.admit(&caller).await;
        assert_eq!(admission.refusal(), None);
        assert_eq!(admission.requests.source, Source::Memory);
        let mut headers = HeaderMap::new();
        admission.write_headers(&mut headers);
        assert_eq!(headers["x-ratelimit-limit"], "60");
        assert_eq!(
            headers["x-ratelimit-remaining"],
            remaining.to_string().as_str()
        );
        assert!(
            !headers.contains_key("retry-after"),
            "no Retry-After on an admitted request"
        );
    }
    let refused = l.admit(&caller).await;
    assert_eq!(refused.refusal(), Some(Refusal::Requests));
    let mut headers = HeaderMap::new();
    refused.write_headers(&mut headers);
    assert_eq!(
        headers["retry-after"], "1",
        "one a second refills: wait 1 s"
    );
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    let reset: u64 = headers["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=2).contains(&reset),
        "the bucket is whole again in 2 s: {reset}"
    );
    assert_eq!(Refusal::Requests.as_str(), "rate_limited");
}

#[tokio::test]
async fn tokens_charged_past_the_allowance_refuse_the_next_request() {
    let l = limits(false, true);
    let metered = l
        .caller(&identity(AuthMethod::Jwt, "carol", "metered"))
        .unwrap();
    let plain = l
        .caller(&identity(AuthMethod::Jwt, "carol", "default"))
        .unwrap();
    assert!(l.limits_tokens(&metered));
    assert!(!l.limits_tokens(&plain));
    assert_eq!(
        l.admit(&metered).await.refusal(),
        None,
        "no tokens spent yet"
    );
    l.charge_tokens(&metered, 25).await;
    let refused = l.admit(&metered).await;
    assert_eq!(
        refused.refusal(),
        Some(Refusal::Tokens),
        "25 of a burst of 10: in debt"
    );
    let mut headers = HeaderMap::new();
    refused.write_headers(&mut headers);
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (15..=16).contains(&wait),
        "15 tokens of debt at one a second: {wait}"
    );
}

#[tokio::test]
async fn fail_closed_without_redis_refuses_as_unavailable() {
    let mut s = settings(false);
    s.store = LimitStore::Redis;
    s.failure_mode = FailureMode::FailClosed;
    // A port nothing listens on: every check fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let l = Limits::new(&s, Some(&url), true, SystemClock::shared()).unwrap();
    let caller = l
        .caller(&identity(AuthMethod::ApiKey, "dave", "premium"))
        .unwrap();
    let admission = l.admit(&caller).await;
    assert_eq!(admission.refusal(), Some(Refusal::Unavailable));
    assert_eq!(admission.requests.source, Source::FailedClosed);
    let status = l.status();
    assert!(!status.redis_available);
    assert_eq!(status.active.as_str(), "fail_closed");
}
