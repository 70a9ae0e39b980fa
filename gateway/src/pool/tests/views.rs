//! What `/health` and `/admin/status` see, discovery refreshes, unknown fields, the same instance again.

use super::endpoints::endpoint;
use super::*;

#[tokio::test]
async fn instances_report_health_model_and_circuit_state() {
    let a = FakeLlm::start("a", Reply::Ok).await;
    let b = FakeLlm::start("b", Reply::Status(503)).await;
    let backup = FakeLlm::start("backup", Reply::Ok).await;
    let h = Setup::new()
        .unhealthy(&a)
        .with_instance(Instance::new("llm-service", "b", b.url.clone()))
        .with_instance(instance(&backup).with_metadata("tier", "secondary"))
        .settings(|s| s.instance_breaker.failure_threshold = 1)
        .build()
        .await;

    assert_eq!(
        h.pool.instances(),
        vec![
            InstanceView {
                id: "a".into(),
                url: a.url.clone(),
                tier: "primary".into(),
                model: Some("model-a".into()),
                healthy: false,
                circuit_state: StateKind::Closed,
            },
            InstanceView {
                id: "b".into(),
                url: b.url.clone(),
                tier: "primary".into(),
                model: None,
                healthy: true,
                circuit_state: StateKind::Closed,
            },
        ]
    );

    // b answers once (its model is learnt), then fails and is ejected.
    b.then([Reply::Ok]);
    assert_eq!(h.generate().await.unwrap().served_by, "b");
    assert!(h.generate().await.is_err());
    let view = h.view("b");
    assert_eq!(view.model.as_deref(), Some("fake-model"));
    assert_eq!(view.circuit_state, StateKind::Open);
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["circuit_state"], "OPEN");
    assert_eq!(json["healthy"], true);

    let snapshots = h.pool.breaker_snapshots();
    assert_eq!(snapshots.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(snapshots["b"].name, "instance:b");
    assert_eq!(snapshots["b"].state, StateKind::Open);

    h.pool.reset_instance_breakers();
    assert_eq!(h.view("b").circuit_state, StateKind::Closed);
}

#[tokio::test]
async fn endpoints_and_breakers_survive_discovery_refreshes() {
    let a = FakeLlm::start("a", Reply::Ok).await;
    let b = FakeLlm::start("b", Reply::Ok).await;
    let h = Setup::new().healthy(&a).healthy(&b).build().await;

    let before = h.pool.current();
    h.discovery.refresh().await.unwrap();
    let after = h.pool.current();
    assert!(after.generation > before.generation);
    assert_eq!(before.endpoints.len(), 2);
    for (x, y) in before.endpoints.iter().zip(&after.endpoints) {
        assert!(Arc::ptr_eq(x, y), "endpoint of {} replaced", x.value().id);
    }
    assert_eq!(h.pool.lock_breakers().len(), 2);
}

#[tokio::test]
async fn unknown_chat_fields_travel_to_an_endpoint_with_its_model_and_usage_asked_for_streams() {
    let llm = FakeLlm::start("ext", Reply::Ok).await;
    let h = Setup::new()
        .settings(|s| s.endpoint = Some(endpoint(&llm, "upstream-model", None)))
        .build()
        .await;
    let mut chat = llm_api::openai::ChatCompletionRequest::user("public-name", "hi");
    for (key, value) in [
        ("top_p", serde_json::json!(0.5)),
        ("stop", serde_json::json!(["\n"])),
        (
            "tools",
            serde_json::json!([{"type": "function", "function": {"name": "f"}}]),
        ),
    ] {
        chat.extra.insert(key.to_owned(), value);
    }
    let req = GatewayRequest::new(Payload::Chat(chat.clone()), "r", Duration::from_secs(5));
    h.pool.generate(&req).await.unwrap();
    let body = llm.last_body().unwrap();
    assert_eq!(body["model"], "upstream-model");
    assert_eq!(body["top_p"], 0.5);
    assert_eq!(body["stop"][0], "\n");
    assert_eq!(body["tools"][0]["function"]["name"], "f");

    // A stream always asks for usage (the gateway reports it at the end of every stream).
    chat.stream = true;
    let streamed = Payload::Chat(chat).chat_for(&Protocol::Lab);
    assert!(streamed.stream_options.is_some_and(|o| o.include_usage));
}

#[tokio::test]
async fn with_the_other_instance_ejected_a_failed_try_is_retried_on_the_same_one() {
    let a = FakeLlm::start("a", Reply::Ok).await;
    let b = FakeLlm::start("b", Reply::Status(503)).await;
    let h = Setup::new()
        .healthy(&a)
        .healthy(&b)
        .settings(|s| s.instance_breaker.failure_threshold = 2)
        .build()
        .await;
    let b_state = |h: &Harness| h.pool.breaker_snapshots()["b"].state;
    while b_state(&h) != StateKind::Open {
        assert_eq!(h.generate().await.unwrap().served_by, "a");
    }
    // b is ejected now; a fails once (the lab's llm-services fail 10 % of calls at random).
    a.then([Reply::Status(500)]);
    let before = a.calls();
    assert_eq!(
        h.generate().await.unwrap().served_by,
        "a",
        "retried, not lost"
    );
    assert_eq!(a.calls(), before + 2);
    assert_eq!(b.calls(), 2, "the ejected instance is left alone");
}
