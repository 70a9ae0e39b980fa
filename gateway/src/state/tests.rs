//! Wiring: each breaker gets the settings meant for it.

use std::sync::Arc;

use resilience_core::breaker::StateKind;

use super::Gateway;
use crate::config::{Settings, Target};
use crate::pool::Pool;

/// The settings of a gateway with `toml` as its file (the process environment untouched).
fn settings(toml: &str) -> Settings {
    let path = std::env::temp_dir().join(format!("gateway-state-{}.toml", std::process::id()));
    std::fs::write(&path, toml).unwrap();
    let path_text = path.display().to_string();
    let settings = Settings::from_sources::<_, &str>(
        [],
        &[
            ("LLM_SERVICE_URLS", "http://127.0.0.1:9"),
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "4"),
            ("GATEWAY_CONFIG", &path_text),
        ],
    );
    std::fs::remove_file(&path).ok();
    settings.unwrap()
}

#[tokio::test]
async fn each_target_breaker_gets_its_own_settings() {
    let gateway = Gateway::start(settings(
        r#"
        [pool_breaker]
        success_threshold = 3
        [instance_breaker]
        failure_threshold = 6
        [pools.secondary.instance_breaker]
        failure_threshold = 8
        [routes.a]
        targets = [
          { url = "http://127.0.0.1:9/v1", model = "m", breaker = { failure_threshold = 2 } },
          { url = "http://127.0.0.1:9/v1", model = "other" },
          { pool = "backup", breaker = { success_threshold = 4 } },
          { pool = "primary" },
        ]
        "#,
    ))
    .await
    .unwrap();
    let breaker = |pool: &Arc<Pool>| pool.settings().instance_breaker.clone();

    let pool_breaker = gateway.pool_breaker.snapshot();
    assert_eq!(pool_breaker.state, StateKind::Closed);
    assert_eq!(
        gateway.settings.breakers.pool.failure_threshold, 4,
        "the variable"
    );
    assert_eq!(
        gateway.settings.breakers.pool.success_threshold, 3,
        "the file"
    );
    assert_eq!(breaker(&gateway.primary).failure_threshold, 6);
    assert_eq!(breaker(&gateway.secondary).failure_threshold, 8);
    let backup = breaker(&gateway.pools["backup"]);
    assert_eq!((backup.failure_threshold, backup.success_threshold), (6, 4));

    let route = gateway
        .settings
        .routes
        .iter()
        .find(|r| r.name == "a")
        .unwrap();
    let mut by_model = Vec::new();
    for target in &route.targets {
        if let Target::Endpoint(endpoint) = target {
            let pool = gateway
                .endpoints
                .iter()
                .find(|p| p.settings().endpoint.as_ref() == Some(endpoint))
                .unwrap();
            by_model.push((endpoint.id.clone(), breaker(pool).failure_threshold));
        }
    }
    assert_eq!(
        by_model,
        [
            ("m@http://127.0.0.1:9/v1".to_owned(), 2),
            ("other@http://127.0.0.1:9/v1".to_owned(), 6)
        ]
    );
}
