use std::time::Duration;

use super::llm;
use crate::error::{Error, Fault};
use crate::registry::{
    ENV_LLM_SERVICE_URLS, Instance, InstanceSource, LLM_SERVICE, ServiceRegistry, StaticRegistry,
};

#[test]
fn urls_are_parsed_trimmed_and_given_host_port_ids() {
    let registry = StaticRegistry::from_urls(
        LLM_SERVICE,
        " http://127.0.0.1:8001/ , https://Api.Example.com ,http://llm:80/v1",
    )
    .unwrap();
    let got: Vec<_> = registry
        .instances()
        .iter()
        .map(|i| (i.id.as_str(), i.url.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("127.0.0.1:8001", "http://127.0.0.1:8001"),
            ("api.example.com:443", "https://api.example.com"),
            ("llm:80/v1", "http://llm/v1"),
        ]
    );
    assert!(
        registry
            .instances()
            .iter()
            .all(|i| i.source == InstanceSource::Static)
    );
    assert!(
        registry
            .instances()
            .iter()
            .all(|i| i.service == LLM_SERVICE)
    );
}

#[test]
fn blanks_are_ignored_and_an_empty_list_is_valid() {
    assert!(
        StaticRegistry::from_urls(LLM_SERVICE, "")
            .unwrap()
            .is_empty()
    );
    assert!(
        StaticRegistry::from_urls(LLM_SERVICE, " , ,, ")
            .unwrap()
            .is_empty()
    );
    let one = StaticRegistry::from_urls(LLM_SERVICE, ",http://a:1,,").unwrap();
    assert_eq!(one.instances().len(), 1);
}

#[test]
fn duplicates_after_normalization_keep_the_first() {
    let registry = StaticRegistry::from_urls(
        LLM_SERVICE,
        "http://a:8001,HTTP://A:8001/,http://b,http://B:80/",
    )
    .unwrap();
    let urls: Vec<_> = registry
        .instances()
        .iter()
        .map(|i| i.url.as_str())
        .collect();
    assert_eq!(urls, ["http://a:8001", "http://b"]);
}

#[test]
fn same_host_port_under_two_schemes_gets_distinct_ids() {
    let registry = StaticRegistry::from_urls(LLM_SERVICE, "http://a:8443,https://a:8443").unwrap();
    let ids: Vec<_> = registry.instances().iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["a:8443", "a:8443-2"]);
}

#[test]
fn invalid_entry_is_reported_against_llm_service_urls() {
    let error = StaticRegistry::from_urls(LLM_SERVICE, "http://ok:1, localhost:8002 ,http://ok:2")
        .unwrap_err();
    let Error::InvalidConfig { setting, reason } = &error else {
        panic!("unexpected {error:?}");
    };
    assert_eq!(setting, ENV_LLM_SERVICE_URLS);
    assert!(reason.contains("localhost:8002"), "{reason}");
    assert!(error.to_string().contains("LLM_SERVICE_URLS"), "{error}");
}

#[test]
fn from_instances_keeps_ids_and_metadata_and_normalizes() {
    let mut first = llm("llm-1", 8001).with_metadata("tier", "secondary");
    first.url = "http://127.0.0.1:8001/".to_owned();
    let registry =
        StaticRegistry::from_instances(vec![first, llm("dup", 8001), llm("llm-2", 8002)]).unwrap();
    let instances = registry.instances();
    assert_eq!(instances.len(), 2);
    assert_eq!(instances[0].id, "llm-1");
    assert_eq!(instances[0].url, "http://127.0.0.1:8001");
    assert_eq!(instances[0].tier(), "secondary");
    assert_eq!(instances[0].source, InstanceSource::Static);
}

#[test]
fn from_instances_names_the_bad_instance() {
    let error = StaticRegistry::from_instances(vec![Instance::new(LLM_SERVICE, "broken", "nope")])
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidConfig { setting, .. } if setting.contains("broken")),
        "{error:?}"
    );
}

#[tokio::test]
async fn list_returns_the_configured_service_sorted_by_id() {
    let registry = StaticRegistry::from_urls(LLM_SERVICE, "http://b:1,http://a:1").unwrap();
    let ids: Vec<_> = registry
        .list(LLM_SERVICE)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["a:1", "b:1"]);
    assert!(registry.list("other").await.unwrap().is_empty());
    assert_eq!(registry.backend(), "static");
}

#[tokio::test]
async fn writes_are_unsupported_internal_and_not_retryable() {
    let registry = StaticRegistry::from_urls(LLM_SERVICE, "http://a:1").unwrap();
    let ttl = Duration::from_secs(1);
    let errors = [
        registry.register(&llm("x", 1), ttl).await.unwrap_err(),
        registry
            .heartbeat(LLM_SERVICE, "a:1", ttl)
            .await
            .unwrap_err(),
        registry.deregister(LLM_SERVICE, "a:1").await.unwrap_err(),
    ];
    for error in errors {
        assert!(matches!(error, Error::Unsupported { .. }), "{error:?}");
        assert_eq!(error.fault(), Fault::Internal);
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("static registry"), "{error}");
    }
    assert_eq!(
        registry.list(LLM_SERVICE).await.unwrap().len(),
        1,
        "list unaffected"
    );
}
