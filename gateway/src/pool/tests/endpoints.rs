//! Endpoint targets, chat to lab instances, and `Retry-After` against the deadline.

use super::*;

pub(super) fn endpoint(llm: &FakeLlm, model: &str, key: Option<&str>) -> EndpointSpec {
    EndpointSpec {
        id: format!("{model}@fake"),
        url: format!("{}/v1", llm.url),
        protocol: Protocol::OpenAi {
            model: model.to_owned(),
            api_key: key.map(crate::upstream::ApiKey::new),
        },
    }
}

#[tokio::test]
async fn an_endpoint_gets_chat_with_its_model_and_key_and_answers_generate() {
    let llm = FakeLlm::start("ext", Reply::Ok).await;
    let h = Setup::new()
        .settings(|s| s.endpoint = Some(endpoint(&llm, "llama3", Some("sk-secret"))))
        .build()
        .await;
    let answer = h.generate().await.unwrap();
    assert_eq!(answer.model_used, "llama3", "the model that served");
    assert_eq!(answer.served_by, "llama3@fake");
    assert_eq!(answer.response, "echo: hi");
    assert_eq!(
        llm.last_authorization().as_deref(),
        Some("Bearer sk-secret")
    );
    let spec = endpoint(&llm, "m", Some("sk-secret"));
    assert!(
        !format!("{spec:?}").contains("sk-secret"),
        "keys never print"
    );
}

#[tokio::test]
async fn one_failing_model_never_blocks_another_model_on_the_same_host() {
    let llm = FakeLlm::start("host", Reply::Ok).await;
    llm.fail_model("bad");
    let build = |model: &'static str| {
        let spec = endpoint(&llm, model, None);
        Setup::new()
            .settings(move |s| {
                s.endpoint = Some(spec);
                s.instance_breaker.failure_threshold = 2;
                s.retry.max_attempts = 1;
            })
            .build()
    };
    let bad = build("bad").await;
    let good = build("good").await;
    for _ in 0..3 {
        assert!(bad.generate().await.is_err());
        assert!(good.generate().await.is_ok());
    }
    let state = |h: &Harness| {
        h.pool
            .breaker_snapshots()
            .into_values()
            .next()
            .unwrap()
            .state
    };
    assert_eq!(state(&bad), StateKind::Open);
    assert_eq!(state(&good), StateKind::Closed);
}

#[tokio::test]
async fn a_chat_request_goes_to_a_lab_instance_as_chat_with_the_client_model() {
    let llm = FakeLlm::start("lab", Reply::Ok).await;
    let h = Setup::new().healthy(&llm).build().await;
    let chat = llm_api::openai::ChatCompletionRequest::user("client-model", "hello");
    let req = GatewayRequest::new(Payload::Chat(chat), "r", Duration::from_secs(5));
    let answer = whole(h.pool.generate(&req).await.unwrap());
    assert_eq!(answer.model_used, "client-model");
    let completion = answer
        .completion
        .expect("the upstream's completion is kept");
    assert_eq!(completion.usage.map(|u| u.total_tokens), Some(5));
    assert_eq!(llm.last_prompt().as_deref(), Some("hello"));
}

#[tokio::test]
async fn retry_after_never_outlasts_the_deadline() {
    let only = FakeLlm::start("only", Reply::RetryAfter(503, 5)).await;
    let h = Setup::new()
        .healthy(&only)
        .settings(|s| s.retry.max_delay = Duration::from_secs(10))
        .build()
        .await;

    let started = Instant::now();
    let error = h
        .pool
        .generate(&h.request(Duration::from_millis(800)))
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Upstream(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(600));
    assert_eq!(only.calls(), 1);
}
