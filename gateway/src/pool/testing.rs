//! A fake llm-service for the tests of `upstream` and `pool`: a real HTTP server on
//! 127.0.0.1:0 whose `/generate` answers as told (ok, an error status, 429 with
//! `Retry-After`, a hang, a truncated body) and that counts its calls.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use llm_api::generate::{GenerateRequest, GenerateResponse};
use llm_api::openai::OpenAiError;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the fake answers `/generate`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// 200 with a flat answer naming the fake's id and `fake-model`.
    Ok,
    /// This status with an OpenAI error body.
    Status(u16),
    /// This status with `Retry-After: seconds`.
    RetryAfter(u16, u64),
    /// Never answers.
    Hang,
    /// 200 with a cut-off JSON body.
    Malformed,
    /// 200 with a body larger than the gateway reads.
    Huge,
    /// This status with an OpenAI error body carrying this `code`.
    Refuse(u16, &'static str),
}

#[derive(Clone)]
struct Shared {
    id: String,
    calls: Arc<AtomicUsize>,
    /// Replies used once each, before `default`.
    queued: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
    /// `/health` status; 0 = hang.
    health: Arc<AtomicU16>,
    last_request_id: Arc<Mutex<Option<String>>>,
    last_prompt: Arc<Mutex<Option<String>>>,
    last_authorization: Arc<Mutex<Option<String>>>,
    /// The JSON body of the last chat call.
    last_body: Arc<Mutex<Option<serde_json::Value>>>,
    /// Chat calls for this model fail with 503 (the others follow the replies).
    failing_model: Arc<Mutex<Option<String>>>,
}

/// A running fake llm-service; stops accepting when dropped.
pub(crate) struct FakeLlm {
    pub(crate) id: String,
    pub(crate) url: String,
    shared: Shared,
    server: JoinHandle<()>,
}

impl FakeLlm {
    /// Starts a fake answering `reply` to every `/generate`.
    pub(crate) async fn start(id: &str, reply: Reply) -> Self {
        let shared = Shared {
            id: id.to_owned(),
            calls: Arc::default(),
            queued: Arc::default(),
            default: Arc::new(Mutex::new(reply)),
            health: Arc::new(AtomicU16::new(200)),
            last_request_id: Arc::default(),
            last_prompt: Arc::default(),
            last_authorization: Arc::default(),
            last_body: Arc::default(),
            failing_model: Arc::default(),
        };
        let app = Router::new()
            .route("/generate", post(generate))
            .route("/v1/chat/completions", post(chat))
            .route("/health", get(health))
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            id: id.to_owned(),
            url,
            shared,
            server,
        }
    }

    /// Starts a server that reads each request and closes the connection without a word.
    pub(crate) async fn start_closing(id: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls: Arc<AtomicUsize> = Arc::default();
        let counter = Arc::clone(&calls);
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                drop(socket);
            }
        });
        let shared = Shared {
            id: id.to_owned(),
            calls,
            queued: Arc::default(),
            default: Arc::new(Mutex::new(Reply::Hang)),
            health: Arc::new(AtomicU16::new(200)),
            last_request_id: Arc::default(),
            last_prompt: Arc::default(),
            last_authorization: Arc::default(),
            last_body: Arc::default(),
            failing_model: Arc::default(),
        };
        Self {
            id: id.to_owned(),
            url,
            shared,
            server,
        }
    }

    /// Answers `reply` from now on.
    pub(crate) fn set(&self, reply: Reply) {
        *self.shared.default.lock().unwrap() = reply;
    }

    /// Answers these replies once each, in order, before the default one.
    pub(crate) fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.queued.lock().unwrap().extend(replies);
    }

    /// `/health` answers `status` from now on; 0 makes it hang.
    pub(crate) fn set_health(&self, status: u16) {
        self.shared.health.store(status, Ordering::SeqCst);
    }

    /// `/generate` calls received (connections, for a closing server).
    pub(crate) fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn last_request_id(&self) -> Option<String> {
        self.shared.last_request_id.lock().unwrap().clone()
    }

    pub(crate) fn last_prompt(&self) -> Option<String> {
        self.shared.last_prompt.lock().unwrap().clone()
    }

    /// The `Authorization` header of the last chat call.
    pub(crate) fn last_authorization(&self) -> Option<String> {
        self.shared.last_authorization.lock().unwrap().clone()
    }

    /// The JSON body of the last chat call.
    pub(crate) fn last_body(&self) -> Option<serde_json::Value> {
        self.shared.last_body.lock().unwrap().clone()
    }

    /// Chat calls naming `model` fail with 503 from now on.
    pub(crate) fn fail_model(&self, model: &str) {
        *self.shared.failing_model.lock().unwrap() = Some(model.to_owned());
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A base URL on which nothing listens.
pub(crate) async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

async fn generate(
    State(shared): State<Shared>,
    headers: HeaderMap,
    axum::Json(req): axum::Json<GenerateRequest>,
) -> Response {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    *shared.last_request_id.lock().unwrap() = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    *shared.last_prompt.lock().unwrap() = Some(req.prompt.clone());
    let queued = shared.queued.lock().unwrap().pop_front();
    let reply = queued.unwrap_or_else(|| shared.default.lock().unwrap().clone());
    if let Some(failed) = failure(&reply).await {
        return failed;
    }
    match reply {
        Reply::Ok => answer(&shared.id, &req),
        Reply::Huge => {
            let text = "x".repeat(crate::upstream::ANSWER_BODY_LIMIT);
            axum::Json(serde_json::json!({"response": text})).into_response()
        }
        _ => (
            [(header::CONTENT_TYPE, "application/json")],
            "{\"response\": \"trunc",
        )
            .into_response(),
    }
}

fn answer(id: &str, req: &GenerateRequest) -> Response {
    let text = format!("echo: {}", req.prompt);
    axum::Json(GenerateResponse {
        response: text.clone(),
        text,
        tokens_used: 3,
        model_used: "fake-model".to_owned(),
        processing_time_ms: 1,
        service_id: id.to_owned(),
    })
    .into_response()
}

fn error(status: u16, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap();
    let body = OpenAiError::new(
        "server_error",
        format!("Simulated upstream error ({code})"),
        None,
        None,
    );
    let mut response = (code, axum::Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.into());
    }
    response
}

/// The answer of a failing reply; `None` for `Ok`, `Malformed` and `Huge`, which each endpoint
/// answers in its own shape.
async fn failure(reply: &Reply) -> Option<Response> {
    match reply {
        Reply::Status(status) => Some(error(*status, None)),
        Reply::Refuse(status, code) => Some(refuse(*status, code)),
        Reply::RetryAfter(status, seconds) => Some(error(*status, Some(*seconds))),
        Reply::Hang => std::future::pending().await,
        Reply::Ok | Reply::Malformed | Reply::Huge => None,
    }
}

fn refuse(status: u16, code: &str) -> Response {
    let body = OpenAiError::new(
        "invalid_request_error",
        format!("refused: {code}"),
        None,
        Some(code.to_owned()),
    );
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

/// `/v1/chat/completions` (an endpoint's base URL is the fake's `/v1`): a whole answer
/// naming the model asked for, or the reply's failure.
async fn chat(
    State(shared): State<Shared>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> Response {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    *shared.last_body.lock().unwrap() = Some(body.clone());
    let req: llm_api::openai::ChatCompletionRequest = serde_json::from_value(body).unwrap();
    *shared.last_authorization.lock().unwrap() = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    *shared.last_prompt.lock().unwrap() = Some(req.last_user_text());
    if shared.failing_model.lock().unwrap().as_deref() == Some(req.model.as_str()) {
        return error(503, None);
    }
    let queued = shared.queued.lock().unwrap().pop_front();
    let reply = queued.unwrap_or_else(|| shared.default.lock().unwrap().clone());
    if let Some(failed) = failure(&reply).await {
        return failed;
    }
    match reply {
        Reply::Ok => {
            let text = format!("echo: {}", req.last_user_text());
            axum::Json(serde_json::json!({
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1,
                "model": req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
            }))
            .into_response()
        }
        _ => (
            [(header::CONTENT_TYPE, "application/json")],
            "{\"choices\": [",
        )
            .into_response(),
    }
}

async fn health(State(shared): State<Shared>) -> Response {
    match shared.health.load(Ordering::SeqCst) {
        0 => std::future::pending().await,
        status => StatusCode::from_u16(status).unwrap().into_response(),
    }
}
