use proptest::prelude::*;

use super::llm;
use crate::error::Error;
use crate::registry::{Instance, InstanceSource, normalize_base_url};

#[test]
fn normalization_lowercases_scheme_and_host_and_strips_trailing_slashes() {
    assert_eq!(
        normalize_base_url("  HTTP://LLM-Service_1.Local:8001/// ").unwrap(),
        "http://llm-service_1.local:8001"
    );
    assert_eq!(
        normalize_base_url("https://Api.Example.com/V1/").unwrap(),
        "https://api.example.com/V1"
    );
}

#[test]
fn normalization_drops_default_ports_only() {
    assert_eq!(normalize_base_url("http://h:80").unwrap(), "http://h");
    assert_eq!(normalize_base_url("https://h:443/").unwrap(), "https://h");
    assert_eq!(normalize_base_url("https://h:80").unwrap(), "https://h:80");
    assert_eq!(normalize_base_url("http://h:443").unwrap(), "http://h:443");
}

#[test]
fn normalization_keeps_ipv6_literals() {
    assert_eq!(
        normalize_base_url("http://[::1]:8001/").unwrap(),
        "http://[::1]:8001"
    );
    assert_eq!(
        normalize_base_url("http://[FE80::1]").unwrap(),
        "http://[fe80::1]"
    );
}

#[test]
fn normalization_rejects_what_is_not_a_base_url_and_names_the_value() {
    for bad in [
        "",
        "   ",
        "127.0.0.1:8001",
        "ftp://host",
        "http://",
        "http://:8001",
        "http://host:0",
        "http://host:99999",
        "http://host:",
        "http://host:+80",
        "http://user:secret@host",
        "http://host/path?x=1",
        "http://host#frag",
        "http://ho st",
        "http://[::1",
        "http://[::1]x",
        "http://h%6Fst",
    ] {
        let error = normalize_base_url(bad).expect_err(bad);
        let Error::InvalidConfig { setting, reason } = &error else {
            panic!("{bad}: unexpected {error:?}");
        };
        assert_eq!(setting, "url");
        if !bad.trim().is_empty() {
            assert!(reason.contains(bad.trim()), "{reason} does not name {bad}");
        }
    }
}

#[test]
fn tier_defaults_to_primary_and_model_is_optional() {
    let plain = Instance::new("llm-service", "a", "http://a");
    assert_eq!(plain.tier(), "primary");
    assert_eq!(plain.model(), None);
    let labelled = plain
        .with_metadata("tier", "secondary")
        .with_metadata("model", "gpt-4-simulation");
    assert_eq!(labelled.tier(), "secondary");
    assert_eq!(labelled.model(), Some("gpt-4-simulation"));
}

#[test]
fn instance_json_round_trips_with_lowercase_source() {
    let instance = Instance {
        source: InstanceSource::Static,
        registered_at_ms: 1_700_000_000_000,
        ..llm("llm-1", 8001)
    };
    let json = serde_json::to_value(&instance).unwrap();
    assert_eq!(json["source"], "static");
    assert_eq!(json["metadata"]["model"], "model-llm-1");
    let back: Instance = serde_json::from_value(json).unwrap();
    assert_eq!(back, instance);
}

#[test]
fn instance_json_defaults_source_metadata_and_timestamp() {
    let json = r#"{"id":"x","service":"llm-service","url":"http://x:1"}"#;
    let instance: Instance = serde_json::from_str(json).unwrap();
    assert_eq!(instance.source, InstanceSource::Registry);
    assert_eq!(instance.registered_at_ms, 0);
    assert!(instance.metadata.is_empty());
}

#[test]
fn validation_for_registry_normalizes_and_names_the_bad_field() {
    let valid = Instance::new("llm-service", "a", "HTTP://A:80/")
        .validated_for_registry()
        .unwrap();
    assert_eq!(valid.url, "http://a");
    for (instance, setting) in [
        (Instance::new("", "a", "http://a"), "instance.service"),
        (Instance::new("llm-service", "", "http://a"), "instance.id"),
        (
            Instance::new("llm-service", "a b", "http://a"),
            "instance.id",
        ),
        (Instance::new("llm-service", "a", "a:80"), "instance.url"),
    ] {
        match instance.validated_for_registry() {
            Err(Error::InvalidConfig { setting: s, .. }) => assert_eq!(s, setting),
            other => panic!("{instance:?}: {other:?}"),
        }
    }
}

proptest! {
    #[test]
    fn normalization_is_idempotent(
        https in any::<bool>(),
        host in "[a-zA-Z][a-zA-Z0-9-]{0,12}(\\.[a-zA-Z0-9]{1,8}){0,2}",
        port in proptest::option::of(1u16..),
        path in "(/[a-zA-Z0-9_-]{1,6}){0,3}/{0,2}",
    ) {
        let scheme = if https { "HTTPS" } else { "http" };
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let raw = format!("{scheme}://{host}{port}{path}");
        let once = normalize_base_url(&raw).unwrap();
        prop_assert_eq!(normalize_base_url(&once).unwrap(), once.clone());
        prop_assert!(!once.ends_with('/'));
        prop_assert!(once.starts_with("http://") || once.starts_with("https://"));
    }
}
