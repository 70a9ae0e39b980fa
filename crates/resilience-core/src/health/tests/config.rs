use std::time::Duration;

use crate::Error;
use crate::health::HealthCheckConfig;

fn setting_of(error: &Error) -> &str {
    match error {
        Error::InvalidConfig { setting, .. } => setting,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = HealthCheckConfig::default();
    assert_eq!(config.interval, Duration::from_millis(5000));
    assert_eq!(config.timeout, Duration::from_millis(2000));
    assert_eq!(config.healthy_threshold, 2);
    assert_eq!(config.unhealthy_threshold, 3);
    assert_eq!(config.passive_failure_threshold, 5);
    assert!(config.validate().is_ok());
}

/// A setting's name and how to make it invalid.
type Spoiler = (&'static str, fn(&mut HealthCheckConfig));

#[test]
fn each_zero_setting_is_rejected_by_name() {
    let cases: [Spoiler; 5] = [
        ("health.interval", |c| c.interval = Duration::ZERO),
        ("health.timeout", |c| c.timeout = Duration::ZERO),
        ("health.healthy_threshold", |c| c.healthy_threshold = 0),
        ("health.unhealthy_threshold", |c| c.unhealthy_threshold = 0),
        ("health.passive_failure_threshold", |c| {
            c.passive_failure_threshold = 0
        }),
    ];
    for (setting, spoil) in cases {
        let mut config = HealthCheckConfig::default();
        spoil(&mut config);
        let error = config.validate().expect_err(setting);
        assert_eq!(setting_of(&error), setting);
        assert!(error.to_string().contains(setting), "{error}");
    }
}

#[test]
fn timeout_may_equal_but_not_exceed_interval() {
    let mut config = HealthCheckConfig {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        ..HealthCheckConfig::default()
    };
    assert!(config.validate().is_ok());
    config.timeout = Duration::from_millis(1001);
    let error = config.validate().expect_err("timeout over interval");
    assert_eq!(setting_of(&error), "health.timeout");
    assert!(error.to_string().contains("1001 ms"), "{error}");
}

#[test]
fn problems_lists_every_bad_setting() {
    let config = HealthCheckConfig {
        interval: Duration::ZERO,
        timeout: Duration::from_secs(1),
        healthy_threshold: 0,
        unhealthy_threshold: 1,
        passive_failure_threshold: 0,
    };
    let settings: Vec<String> = config
        .problems()
        .iter()
        .map(|e| setting_of(e).to_owned())
        .collect();
    assert_eq!(
        settings,
        [
            "health.interval",
            "health.healthy_threshold",
            "health.passive_failure_threshold"
        ]
    );
    assert!(HealthCheckConfig::default().problems().is_empty());
}
