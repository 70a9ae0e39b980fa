//! An in-process stack for the tests: a fake gateway (axum) whose `/health`, `/metrics` and
//! `/generate` follow the state of a fake controller (stopped services), a simple pool
//! breaker (opens after 5 failed requests, HALF_OPEN after 300 ms) and the fault API of two
//! fake llm-services served under `/llm/{id}` — three with [`FakeState::secondary`], the
//! third the secondary tier that answers when the primaries cannot.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures::future::BoxFuture;
use llm_api::ErrorBody;
use llm_api::breaker::BreakerState;
use llm_api::envelope::{FallbackReason, FallbackType, GenerateSuccess};
use llm_api::fault::{FaultSpec, FaultView};
use llm_api::gateway::{GatewayHealth, HealthStatus, ResetAnswer};
use llm_api::health::ServiceHealth;
use llm_api::stats::GatewayMetrics;
use serde_json::{Value, json};
use stack_control::{
    API_GATEWAY, ControlError, Controller, LLM_SERVICE_1, LLM_SERVICE_2, LLM_SERVICE_3, REDIS,
    RunState, ServiceStatus,
};
use tokio::task::JoinHandle;

use super::wire;

const LLMS: [&str; 2] = [LLM_SERVICE_1, LLM_SERVICE_2];
const THRESHOLD: u32 = 5;
/// The fake breaker's recovery timeout.
pub const RECOVERY: Duration = Duration::from_millis(300);

/// What the fake gateway and the fake controller share.
#[derive(Debug, Default)]
pub struct FakeState {
    stopped: Mutex<BTreeSet<String>>,
    calls: Mutex<Vec<String>>,
    faulted: Mutex<BTreeSet<String>>,
    breaker: Mutex<Breaker>,
    forced_breaker: Mutex<Option<BreakerState>>,
    /// When false, the gateway never falls back: answers claim an instance served them.
    pub fallback_broken: AtomicBool,
    /// When true, the controller cannot start anything.
    pub start_fails: AtomicBool,
    /// When true, every `/generate` is answered by the template fallback, the instances
    /// up or not.
    pub template_only: AtomicBool,
    /// When true (set before the context reads the steady state), the stack has
    /// llm_service_3 in the secondary tier: it answers, `fallback_type` `secondary`, what the
    /// primaries cannot, unless it is stopped or faulted.
    pub secondary: AtomicBool,
    turn: AtomicUsize,
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive: u32,
    failures: u64,
    opened_at: Option<Instant>,
}

impl Breaker {
    fn state(&self) -> BreakerState {
        match self.opened_at {
            Some(at) if at.elapsed() >= RECOVERY => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
            None => BreakerState::Closed,
        }
    }
}

impl FakeState {
    /// Forces the breaker state every read reports.
    pub fn set_breaker(&self, state: BreakerState) {
        *self.forced_breaker.lock().unwrap() = Some(state);
    }

    /// Stops both llm-services (outside the controller).
    pub fn stop_all_llm(&self) {
        let mut stopped = self.stopped.lock().unwrap();
        for llm in LLMS {
            stopped.insert(llm.to_owned());
        }
    }

    /// Every controller call so far: `stop llm_service_1`, `start redis`…
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The services stopped now.
    pub fn stopped(&self) -> BTreeSet<String> {
        self.stopped.lock().unwrap().clone()
    }

    /// Faults `id` (outside its fault API): it fails every request.
    pub fn fault(&self, id: &str) {
        self.faulted.lock().unwrap().insert(id.to_owned());
    }

    /// The instances with a fault now.
    pub fn faulted(&self) -> BTreeSet<String> {
        self.faulted.lock().unwrap().clone()
    }

    fn is_stopped(&self, service: &str) -> bool {
        self.stopped.lock().unwrap().contains(service)
    }

    fn breaker_state(&self) -> BreakerState {
        if let Some(forced) = *self.forced_breaker.lock().unwrap() {
            return forced;
        }
        self.breaker.lock().unwrap().state()
    }

    fn running_llms(&self) -> Vec<&'static str> {
        LLMS.into_iter().filter(|l| !self.is_stopped(l)).collect()
    }

    fn has_secondary(&self) -> bool {
        self.secondary.load(Ordering::Relaxed)
    }

    /// The secondary, when the stack has one and it can answer.
    fn secondary_answers(&self) -> bool {
        self.has_secondary()
            && !self.is_stopped(LLM_SERVICE_3)
            && !self.faulted.lock().unwrap().contains(LLM_SERVICE_3)
    }

    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

/// The fake gateway, served on a free loopback port until dropped.
pub struct FakeGateway {
    /// Its base URL.
    pub url: String,
    /// Its state, shared with [`FakeGateway::controller`].
    pub state: Arc<FakeState>,
    task: JoinHandle<()>,
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGateway {
    /// Starts it.
    pub async fn start() -> Self {
        let state = Arc::new(FakeState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = app(Arc::clone(&state), url.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, state, task }
    }

    /// A controller of the same fake stack.
    pub fn controller(&self) -> FakeController {
        FakeController {
            state: Arc::clone(&self.state),
        }
    }
}

/// A server that answers `GET path` with a status, until dropped: a fake Prometheus or
/// Grafana.
pub struct FakeProbe {
    /// Its base URL.
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for FakeProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProbe {
    /// Starts it on a free loopback port.
    pub async fn start(path: &str, status: StatusCode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route(path, get(move || async move { status }));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, task }
    }
}

/// A URL where nothing listens.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[derive(Clone)]
struct AppState {
    state: Arc<FakeState>,
    base: String,
}

fn app(state: Arc<FakeState>, base: String) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/generate", post(generate))
        .route("/admin/reset-circuit-breaker", post(reset))
        .route("/llm/{id}/chaos/faults", post(add_fault))
        .route("/llm/{id}/chaos/faults", delete(clear_faults))
        .route("/llm/{id}/health", get(llm_health))
        .with_state(AppState { state, base })
}

async fn health(State(app): State<AppState>) -> Json<GatewayHealth> {
    let s = &app.state;
    let mut services: Vec<_> = LLMS
        .iter()
        .map(|id| wire::service(id, format!("{}/llm/{id}", app.base), !s.is_stopped(id)))
        .collect();
    if s.has_secondary() {
        let id = LLM_SERVICE_3;
        let mut secondary = wire::service(id, format!("{}/llm/{id}", app.base), !s.is_stopped(id));
        secondary.tier = "secondary".into();
        services.push(secondary);
    }
    let available = s.running_llms().len();
    let redis_up = !s.is_stopped(REDIS);
    let overall = if redis_up && available > 0 {
        HealthStatus::Healthy
    } else {
        HealthStatus::Degraded
    };
    let checks = [
        ("redis", redis_up),
        ("system_resources", true),
        ("service_discovery", available > 0),
    ];
    let breaker = wire::breaker(s.breaker_state(), 0);
    Json(wire::health(overall, breaker, services, &checks))
}

async fn metrics(State(app): State<AppState>) -> Json<GatewayMetrics> {
    let s = &app.state;
    let failures = s.breaker.lock().unwrap().failures;
    let mut breaker = wire::breaker(s.breaker_state(), failures);
    breaker.retry_after_ms = u64::try_from(RECOVERY.as_millis()).ok();
    Json(wire::metrics(breaker))
}

/// A 4xx for the seed's invalid input, else a success from an instance or a fallback tier.
async fn generate(State(app): State<AppState>, Json(body): Json<Value>) -> Response {
    let s = &app.state;
    // Raw: the seed's invalid input (a negative `max_tokens`) must reach the check.
    let prompt = body["prompt"].as_str().unwrap_or("");
    if prompt.trim().is_empty() || body["max_tokens"].as_i64().is_some_and(|n| n < 1) {
        let error = ErrorBody::new("validation_error", "bad", Some("prompt".into()));
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(error)).into_response();
    }
    let running = s.running_llms();
    let healthy: Vec<&str> = running
        .iter()
        .copied()
        .filter(|l| !s.faulted.lock().unwrap().contains(*l))
        .collect();
    let turn = s.turn.fetch_add(1, Ordering::Relaxed);
    let served = {
        let mut breaker = s.breaker.lock().unwrap();
        match breaker.state() {
            BreakerState::Open => Err(FallbackReason::CircuitOpen),
            state => {
                if let Some(id) = healthy.get(turn % healthy.len().max(1)) {
                    if state == BreakerState::HalfOpen {
                        breaker.opened_at = None;
                    }
                    breaker.consecutive = 0;
                    Ok(*id)
                } else if running.is_empty() {
                    Err(FallbackReason::NoServicesAvailable)
                } else {
                    breaker.consecutive += 1;
                    breaker.failures += 1;
                    if breaker.consecutive >= THRESHOLD || state == BreakerState::HalfOpen {
                        breaker.opened_at = Some(Instant::now());
                    }
                    Err(FallbackReason::UpstreamError)
                }
            }
        }
    };
    let served = if s.template_only.load(Ordering::Relaxed) {
        Err(FallbackReason::UpstreamError)
    } else {
        served
    };
    let answer: GenerateSuccess = match served {
        Ok(id) => wire::success(id, None),
        Err(_) if s.fallback_broken.load(Ordering::Relaxed) => wire::success(LLM_SERVICE_1, None),
        Err(reason) if s.secondary_answers() && !s.template_only.load(Ordering::Relaxed) => {
            wire::success(LLM_SERVICE_3, Some((FallbackType::Secondary, reason)))
        }
        Err(reason) => {
            let tier = if prompt == "What is AI?" {
                FallbackType::Cache
            } else {
                FallbackType::Template
            };
            wire::success(wire::FALLBACK_MANAGER, Some((tier, reason)))
        }
    };
    Json(answer).into_response()
}

async fn reset(State(app): State<AppState>) -> Json<ResetAnswer> {
    *app.state.breaker.lock().unwrap() = Breaker::default();
    app.state.log("reset breaker".into());
    Json(ResetAnswer {
        message: ResetAnswer::MESSAGE.into(),
        state: BreakerState::Closed,
    })
}

async fn add_fault(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(spec): Json<FaultSpec>,
) -> (StatusCode, Json<FaultView>) {
    app.state.faulted.lock().unwrap().insert(id.clone());
    app.state.log(format!("fault {id}"));
    (StatusCode::CREATED, Json(wire::fault("f1", spec)))
}

async fn clear_faults(State(app): State<AppState>, Path(id): Path<String>) -> Json<Value> {
    app.state.faulted.lock().unwrap().remove(&id);
    app.state.log(format!("clear {id}"));
    // llm-service's `{"removed": n}` has no llm-api type.
    Json(json!({"removed": 1}))
}

async fn llm_health(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> (StatusCode, Json<ServiceHealth>) {
    if app.state.is_stopped(&id) {
        let body = wire::service_health(&id, HealthStatus::Unhealthy);
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    (
        StatusCode::OK,
        Json(wire::service_health(&id, HealthStatus::Healthy)),
    )
}

/// The fake stack's controller: stops and starts by editing the shared state.
pub struct FakeController {
    state: Arc<FakeState>,
}

impl FakeController {
    fn act(&self, verb: &str, service: &str) -> Result<(), ControlError> {
        self.state.log(format!("{verb} {service}"));
        match verb {
            "start" | "resume" => {
                if self.state.start_fails.load(Ordering::Relaxed) {
                    return Err(ControlError::Command(format!("{service} will not start")));
                }
                self.state.stopped.lock().unwrap().remove(service);
            }
            _ => {
                self.state
                    .stopped
                    .lock()
                    .unwrap()
                    .insert(service.to_owned());
            }
        }
        Ok(())
    }
}

impl Controller for FakeController {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn status(&self) -> BoxFuture<'_, Result<Vec<ServiceStatus>, ControlError>> {
        Box::pin(async {
            let secondary = self.state.has_secondary().then_some(LLM_SERVICE_3);
            Ok([API_GATEWAY, LLM_SERVICE_1, LLM_SERVICE_2, REDIS]
                .into_iter()
                .chain(secondary)
                .map(|name| ServiceStatus {
                    name: name.to_owned(),
                    state: if self.state.is_stopped(name) {
                        RunState::Stopped
                    } else {
                        RunState::Healthy
                    },
                    pid: None,
                    url: None,
                })
                .collect())
        })
    }

    fn stop<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.act("stop", service) })
    }

    fn start<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.act("start", service) })
    }

    fn kill<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.act("kill", service) })
    }

    fn pause<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.act("pause", service) })
    }

    fn resume<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move { self.act("resume", service) })
    }
    fn logs<'a>(&'a self, _service: &'a str) -> BoxFuture<'a, Result<String, ControlError>> {
        Box::pin(async {
            Err(ControlError::Unsupported(
                "the fake stack keeps no log".to_owned(),
            ))
        })
    }
}
