//! What the Redis backend decides without a server: configuration and key layout.

use std::time::Duration;

use crate::error::{Error, Fault};
use crate::registry::{DEFAULT_OP_TIMEOUT, LLM_SERVICE, RedisRegistry, ServiceRegistry};

#[test]
fn production_keys_have_no_prefix() {
    let registry = RedisRegistry::new("redis://127.0.0.1:6379").unwrap();
    assert_eq!(
        registry.entry_key(LLM_SERVICE, "llm_service_1"),
        "service:llm-service:llm_service_1"
    );
    assert_eq!(registry.index_key(LLM_SERVICE), "services:llm-service");
    assert_eq!(registry.backend(), "redis");
}

#[test]
fn prefix_namespaces_every_key() {
    let registry = RedisRegistry::new("redis://127.0.0.1:6379")
        .unwrap()
        .with_prefix("test:42:");
    assert_eq!(
        registry.entry_key(LLM_SERVICE, "a"),
        "test:42:service:llm-service:a"
    );
    assert_eq!(
        registry.index_key(LLM_SERVICE),
        "test:42:services:llm-service"
    );
}

#[test]
fn construction_needs_no_runtime_and_no_server() {
    // Port 1: nothing listens there, and nothing is dialled before the first operation.
    let registry = RedisRegistry::new("redis://127.0.0.1:1/3").unwrap();
    assert_eq!(registry.op_timeout(), DEFAULT_OP_TIMEOUT);
    assert!(format!("{registry:?}").contains("127.0.0.1:1"));
}

#[test]
fn op_timeout_is_configurable_and_never_zero() {
    let registry = RedisRegistry::new("redis://h").unwrap();
    assert_eq!(
        registry
            .with_op_timeout(Duration::from_millis(250))
            .op_timeout(),
        Duration::from_millis(250)
    );
    let registry = RedisRegistry::new("redis://h").unwrap();
    assert_eq!(
        registry.with_op_timeout(Duration::ZERO).op_timeout(),
        Duration::from_millis(1)
    );
}

#[test]
fn malformed_url_is_invalid_config_naming_redis_url() {
    for bad in [
        "",
        "127.0.0.1:6379",
        "http://127.0.0.1:6379",
        "redis://host:notaport",
    ] {
        let error = RedisRegistry::new(bad).unwrap_err();
        let Error::InvalidConfig { setting, reason } = &error else {
            panic!("{bad}: unexpected {error:?}");
        };
        assert_eq!(setting, "REDIS_URL");
        assert!(reason.contains(bad), "{reason}");
        assert_eq!(error.fault(), Fault::Internal);
    }
}

#[test]
fn malformed_url_error_does_not_echo_the_password() {
    let error = RedisRegistry::new("redis://user:hunter2@host:notaport").unwrap_err();
    let message = error.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("***@host"), "{message}");
}

#[tokio::test]
async fn invalid_ttl_fails_before_any_network_call() {
    let registry = RedisRegistry::new("redis://127.0.0.1:1").unwrap();
    let outcome = registry
        .heartbeat(LLM_SERVICE, "a", Duration::from_micros(1))
        .await;
    assert!(
        matches!(outcome, Err(Error::InvalidConfig { .. })),
        "{outcome:?}"
    );
}
