//! HTTP to the upstreams: one pooled [`UpstreamClient`], its classified [`UpstreamError`],
//! and [`HttpProbe`], the active health probe over the same client.
//!
//! Two protocols ([`Protocol`]): the lab's llm-service (`/generate`, and
//! `/v1/chat/completions` for chat) and any OpenAI-compatible endpoint (`{base}/chat/completions`
//! with the target's model and API key). `openai` sends chat and turns a `/generate` request
//! into chat for an endpoint; `stream` opens server-sent event streams and reads them.
//!
//! The client has no global timeout: every call is bounded by the timeout its caller passes
//! (the pool's per-try timeout, cut to what is left of the request's deadline; the checker's
//! probe timeout), so one slow instance never holds a request longer than it allows. System
//! proxies are ignored: upstreams are internal addresses, and a stray `HTTP_PROXY` must not
//! route them elsewhere.
//!
//! Classification, the only place it is decided: [`UpstreamError::class`] turns each
//! failure into a `resilience_core::policy::FailureClass`, which every decision reads.

mod openai;
mod stream;

pub use openai::{Completed, Payload, count_words};
pub use stream::{Chunk, OpenStream, StreamEvent};

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use llm_api::generate::{GenerateRequest, GenerateResponse};
use llm_api::openai::OpenAiError;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use resilience_core::health::{BoxFuture, HealthProbe};
use resilience_core::policy::{AttemptFailure, FailureClass};
use serde::Deserialize;

/// The header carrying the request id to the upstream.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// How long an [`HttpProbe`] bounds one probe when told nothing else; the active checker's
/// own (shorter) timeout normally ends a probe first.
pub const DEFAULT_PROBE_BOUND: Duration = Duration::from_secs(30);

/// How much of an error body is read to find its message.
const ERROR_BODY_LIMIT: usize = 8 * 1024;

/// Connections kept idle per upstream host for reuse.
const POOL_IDLE_PER_HOST: usize = 64;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client of the llm-service instances; cheap to clone (the connection pool is
/// shared between clones).
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
}

/// Why one call to an upstream instance failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The connection could not be made, or broke before a full answer arrived.
    #[error("connection failed: {0}")]
    Connect(String),
    /// No full answer within the call's timeout.
    #[error("timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The upstream answered with a 4xx or 5xx status.
    #[error("HTTP {status}: {message}")]
    Status {
        /// The status code (400..=599).
        status: u16,
        /// The `Retry-After` header, when it held a number of seconds.
        retry_after: Option<Duration>,
        /// The upstream's error message (OpenAI or lab shape), or the start of its body.
        message: String,
        /// OpenAI's `error.code` (`context_length_exceeded`, `content_filter`…), if given.
        code: Option<String>,
    },
    /// A 2xx whose body is not a generate answer, or a status that is neither 2xx, 4xx nor
    /// 5xx.
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// How a target is spoken to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// The lab's llm-service: `/generate`, and `/v1/chat/completions` for chat; the client's
    /// model name is forwarded.
    Lab,
    /// An OpenAI-compatible endpoint: `{base_url}/chat/completions` for everything, with this
    /// upstream model name and, when set, `Authorization: Bearer <key>`.
    OpenAi {
        /// The model name the endpoint knows.
        model: String,
        /// The API key, if the endpoint needs one.
        api_key: Option<ApiKey>,
    },
}

/// An API key: sent upstream, never printed (`Debug` and `Display` show `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A [`HealthProbe`] over HTTP: `GET {url}{path}`; any 2xx (a healthy or degraded
/// `overall_status` both answer 200) is up, anything else is down.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    client: UpstreamClient,
    path: String,
    bound: Duration,
}

/// llm-service's answer, read leniently: `text` stands in for a missing `response`, and the
/// bookkeeping fields another lab-compatible backend may omit take defaults.
#[derive(Deserialize)]
struct LenientAnswer {
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tokens_used: u32,
    #[serde(default)]
    model_used: String,
    #[serde(default)]
    processing_time_ms: u64,
    #[serde(default)]
    service_id: String,
}

/// The lab's error shape, `{"status": "error", "error": {"message", ...}}`, or a bare
/// `{"message": ...}` / `{"detail": ...}`.
#[derive(Deserialize)]
struct OtherErrorBody {
    #[serde(default)]
    error: Option<MessageOnly>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Deserialize)]
struct MessageOnly {
    message: String,
}

impl UpstreamClient {
    /// A client with a shared connection pool, no global timeout and no proxy.
    ///
    /// Fails only when the HTTP stack cannot be initialised.
    pub fn new() -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http })
    }

    /// `POST {base_url}/generate` with `req` as JSON and `x-request-id: request_id`,
    /// bounded by `timeout` from sending to the last byte of the answer.
    ///
    /// An id that is not a valid header value is not sent (the call still is).
    pub async fn generate(
        &self,
        base_url: &str,
        req: &GenerateRequest,
        timeout: Duration,
        request_id: &str,
    ) -> Result<GenerateResponse, UpstreamError> {
        let url = join(base_url, "/generate");
        let call = async {
            let mut builder = self.http.post(&url).json(req).timeout(timeout);
            match HeaderValue::from_str(request_id) {
                Ok(value) => builder = builder.header(REQUEST_ID_HEADER, value),
                Err(_) => tracing::debug!(request_id, "request id is not a header value; not sent"),
            }
            let response = builder.send().await.map_err(|e| classify(&e, timeout))?;
            let status = response.status();
            if !status.is_success() {
                return Err(status_error(response, timeout).await);
            }
            let body = response.bytes().await.map_err(|e| classify(&e, timeout))?;
            parse_answer(&body)
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(UpstreamError::Timeout(timeout)))
    }

    /// `GET {base_url}{path}` bounded by `timeout`: `Ok` on a 2xx, otherwise a short reason
    /// (`HTTP 503`, `timed out after 2000 ms`, `connection failed: ...`).
    pub async fn probe(&self, base_url: &str, path: &str, timeout: Duration) -> Result<(), String> {
        let url = join(base_url, path);
        let call = async {
            let response = self
                .http
                .get(&url)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| classify(&e, timeout).to_string())?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {}", status.as_u16()))
            }
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(UpstreamError::Timeout(timeout).to_string()))
    }
}

impl UpstreamError {
    /// What kind of failure this is: the one place an upstream's error is classified.
    /// Connection failures, timeouts, 5xx, 408 (the upstream gave up waiting), 429 and
    /// malformed answers are the upstream's; 401/403/404/405 say the instance is
    /// misconfigured or not the service we think (its fault, not the request's); every
    /// other 4xx refuses the request itself — by its OpenAI `error.code`, a prompt too long
    /// for the context, refused content, or another refusal.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Connect(_) => FailureClass::Transport,
            Self::Timeout(_) => FailureClass::Timeout,
            Self::Malformed(_) => FailureClass::Malformed,
            Self::Status { status, code, .. } => match status {
                429 => FailureClass::RateLimited,
                408 => FailureClass::ServerError,
                401 | 403 | 404 | 405 => FailureClass::Misconfigured,
                400..=499 => match code.as_deref() {
                    Some("context_length_exceeded") => FailureClass::ContextTooLong,
                    Some("content_filter" | "content_policy_violation" | "content_policy") => {
                        FailureClass::ContentRefused
                    }
                    _ => FailureClass::Refused,
                },
                _ => FailureClass::ServerError,
            },
        }
    }

    /// The failure as a value, on `target`.
    pub fn failure(&self, target: &str) -> AttemptFailure {
        let (status, retry_after, message, code) = match self {
            Self::Status {
                status,
                retry_after,
                message,
                code,
            } => (Some(*status), *retry_after, message.clone(), code.clone()),
            other => (None, None, other.to_string(), None),
        };
        AttemptFailure {
            target: target.to_owned(),
            class: self.class(),
            status,
            code,
            message,
            detail: self.to_string(),
            retry_after,
            timeout: match self {
                Self::Timeout(after) => Some(*after),
                _ => None,
            },
        }
    }

    /// The metrics label: `connect`, `timeout`, `http_5xx`, `http_429`, `http_4xx` or
    /// `malformed`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Timeout(_) => "timeout",
            Self::Status { status: 429, .. } => "http_429",
            Self::Status { status, .. } if (400..500).contains(status) => "http_4xx",
            Self::Status { .. } => "http_5xx",
            Self::Malformed(_) => "malformed",
        }
    }
}

impl HttpProbe {
    /// Probes `GET {url}{path}` through `client`, each probe bounded by
    /// [`DEFAULT_PROBE_BOUND`] unless [`Self::with_timeout`] says otherwise.
    pub fn new(client: UpstreamClient, path: impl Into<String>) -> Self {
        Self {
            client,
            path: path.into(),
            bound: DEFAULT_PROBE_BOUND,
        }
    }

    /// Bounds each probe by `timeout` (give it the checker's probe timeout).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.bound = timeout;
        self
    }

    /// The path probed, e.g. `/health`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl HealthProbe for HttpProbe {
    fn probe<'a>(&'a self, _id: &'a str, url: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.client.probe(url, &self.path, self.bound))
    }
}

/// `base` without its trailing slashes, then `path` (given a leading slash if it lacks one).
fn join(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    if path.starts_with('/') || path.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

/// A reqwest failure as an [`UpstreamError`]; `timeout` is the bound the call ran under.
fn classify(error: &reqwest::Error, timeout: Duration) -> UpstreamError {
    if error.is_timeout() {
        UpstreamError::Timeout(timeout)
    } else if error.is_decode() {
        UpstreamError::Malformed(chain(error))
    } else {
        UpstreamError::Connect(chain(error))
    }
}

/// The error and its causes, `: `-separated (reqwest's own message names only the URL).
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The error for a non-2xx answer, with its message and `Retry-After`.
async fn status_error(mut response: reqwest::Response, timeout: Duration) -> UpstreamError {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_LIMIT.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= ERROR_BODY_LIMIT {
                    break;
                }
            }
            Ok(None) => break,
            // The status already says what happened; a broken error body only loses the
            // message, unless it was the clock that broke it.
            Err(e) if e.is_timeout() => return UpstreamError::Timeout(timeout),
            Err(_) => break,
        }
    }
    let code = status.as_u16();
    if !(400..600).contains(&code) {
        return UpstreamError::Malformed(format!("unexpected status {code}"));
    }
    let (message, error_code) = error_message(&body).unwrap_or_else(|| {
        (
            status.canonical_reason().unwrap_or("error").to_owned(),
            None,
        )
    });
    UpstreamError::Status {
        status: code,
        retry_after,
        message,
        code: error_code,
    }
}

/// The message and OpenAI code of an error body: OpenAI's `error.message` and `error.code`,
/// the lab's `error.message`, a top-level `message` or `detail`, else the body's first line
/// of text.
fn error_message(body: &[u8]) -> Option<(String, Option<String>)> {
    if let Ok(openai) = serde_json::from_slice::<OpenAiError>(body) {
        return Some((openai.error.message, openai.error.code));
    }
    if let Ok(other) = serde_json::from_slice::<OtherErrorBody>(body)
        && let Some(message) = other
            .error
            .map(|e| e.message)
            .or(other.message)
            .or(other.detail)
    {
        return Some((message, None));
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some((line.chars().take(200).collect(), None))
}

/// `Retry-After` as a number of seconds (an HTTP date is not honoured).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// A 2xx body as the flat generate answer.
fn parse_answer(body: &[u8]) -> Result<GenerateResponse, UpstreamError> {
    let answer: LenientAnswer = serde_json::from_slice(body)
        .map_err(|e| UpstreamError::Malformed(format!("not a generate answer: {e}")))?;
    let (response, text) = match (answer.response, answer.text) {
        (Some(response), Some(text)) => (response, text),
        (Some(one), None) | (None, Some(one)) => (one.clone(), one),
        (None, None) => {
            return Err(UpstreamError::Malformed(
                "generate answer without `response` or `text`".to_owned(),
            ));
        }
    };
    Ok(GenerateResponse {
        response,
        text,
        tokens_used: answer.tokens_used,
        model_used: answer.model_used,
        processing_time_ms: answer.processing_time_ms,
        service_id: answer.service_id,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::pool::testing::{FakeLlm, Reply, closed_port_url};

    fn client() -> UpstreamClient {
        UpstreamClient::new().unwrap()
    }

    fn status(status: u16) -> UpstreamError {
        UpstreamError::Status {
            status,
            retry_after: None,
            message: "m".into(),
            code: None,
        }
    }

    #[test]
    fn classification_table() {
        use FailureClass as C;
        let d = Duration::from_millis(5);
        let coded = |status, code: &str| UpstreamError::Status {
            status,
            retry_after: None,
            message: "m".into(),
            code: Some(code.to_owned()),
        };
        // (error, class, metrics label)
        let table = [
            (
                UpstreamError::Connect("refused".into()),
                C::Transport,
                "connect",
            ),
            (UpstreamError::Timeout(d), C::Timeout, "timeout"),
            (
                UpstreamError::Malformed("x".into()),
                C::Malformed,
                "malformed",
            ),
            (status(500), C::ServerError, "http_5xx"),
            (status(503), C::ServerError, "http_5xx"),
            (status(429), C::RateLimited, "http_429"),
            (status(408), C::ServerError, "http_4xx"),
            (status(400), C::Refused, "http_4xx"),
            (status(404), C::Misconfigured, "http_4xx"),
            (status(401), C::Misconfigured, "http_4xx"),
            (status(403), C::Misconfigured, "http_4xx"),
            (status(405), C::Misconfigured, "http_4xx"),
            (status(413), C::Refused, "http_4xx"),
            (status(422), C::Refused, "http_4xx"),
            (
                coded(400, "context_length_exceeded"),
                C::ContextTooLong,
                "http_4xx",
            ),
            (coded(400, "content_filter"), C::ContentRefused, "http_4xx"),
            (
                coded(400, "content_policy_violation"),
                C::ContentRefused,
                "http_4xx",
            ),
            (
                coded(500, "context_length_exceeded"),
                C::ServerError,
                "http_5xx",
            ),
        ];
        for (error, class, label) in table {
            assert_eq!(error.class(), class, "{error}");
            assert_eq!(error.error_type(), label, "{error}");
        }
    }

    #[test]
    fn a_failure_keeps_status_code_message_and_retry_after() {
        let error = UpstreamError::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(3)),
            message: "slow down".into(),
            code: Some("rate_limit".into()),
        };
        let failure = error.failure("llm-1");
        assert_eq!(failure.target, "llm-1");
        assert_eq!(failure.class, FailureClass::RateLimited);
        assert_eq!(failure.status, Some(429));
        assert_eq!(failure.code.as_deref(), Some("rate_limit"));
        assert_eq!(failure.message, "slow down");
        assert_eq!(failure.detail, "HTTP 429: slow down");
        assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
        let timeout = UpstreamError::Timeout(Duration::from_millis(250)).failure("llm-2");
        assert_eq!(timeout.timeout, Some(Duration::from_millis(250)));
        assert_eq!(timeout.message, "timed out after 250 ms");
        assert_eq!(timeout.status, None);
    }

    #[test]
    fn error_messages_are_read_from_every_known_shape() {
        let openai =
            br#"{"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#;
        let message = |body: &[u8]| error_message(body).map(|(message, _)| message);
        assert_eq!(message(openai).as_deref(), Some("boom"));
        let coded = br#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
        assert_eq!(
            error_message(coded),
            Some((
                "too long".to_owned(),
                Some("context_length_exceeded".to_owned())
            ))
        );
        let lab = br#"{"status":"error","error":{"type":"validation_error","message":"bad prompt","field":"prompt"}}"#;
        assert_eq!(message(lab).as_deref(), Some("bad prompt"));
        assert_eq!(message(br#"{"detail":"nope"}"#).as_deref(), Some("nope"));
        assert_eq!(
            message(b"\n  upstream exploded\nmore").as_deref(),
            Some("upstream exploded")
        );
        assert_eq!(error_message(b""), None);
    }

    #[test]
    fn answers_are_read_leniently_but_not_blindly() {
        let only_text = parse_answer(br#"{"text":"hi","tokens_used":1}"#).unwrap();
        assert_eq!(
            (only_text.response.as_str(), only_text.text.as_str()),
            ("hi", "hi")
        );
        assert!(matches!(
            parse_answer(br#"{"tokens_used":1}"#),
            Err(UpstreamError::Malformed(_))
        ));
        assert!(matches!(
            parse_answer(br#"{"response": "trunc"#),
            Err(UpstreamError::Malformed(_))
        ));
    }

    #[test]
    fn urls_are_joined_with_one_slash() {
        assert_eq!(join("http://a:1/", "/generate"), "http://a:1/generate");
        assert_eq!(join("http://a:1", "health"), "http://a:1/health");
        assert_eq!(join("http://a:1/v1", "/generate"), "http://a:1/v1/generate");
    }

    #[tokio::test]
    async fn generate_returns_the_flat_answer_and_passes_the_request_id() {
        let llm = FakeLlm::start("llm-a", Reply::Ok).await;
        let answer = client()
            .generate(
                &llm.url,
                &GenerateRequest::new("hello"),
                Duration::from_secs(5),
                "req-42",
            )
            .await
            .unwrap();
        assert_eq!(answer.service_id, "llm-a");
        assert_eq!(answer.model_used, "fake-model");
        assert!(answer.response.contains("hello"));
        assert_eq!(answer.tokens_used, 3);
        assert_eq!(llm.calls(), 1);
        assert_eq!(llm.last_request_id().as_deref(), Some("req-42"));
        assert_eq!(llm.last_prompt().as_deref(), Some("hello"));
    }

    #[tokio::test]
    async fn error_statuses_keep_message_and_retry_after() {
        let llm = FakeLlm::start("llm-a", Reply::Status(503)).await;
        let c = client();
        let req = GenerateRequest::new("x");
        let t = Duration::from_secs(5);
        let err = c.generate(&llm.url, &req, t, "r").await.unwrap_err();
        assert_eq!(err.failure("a").status, Some(503));
        assert!(
            err.to_string().contains("Simulated upstream error"),
            "{err}"
        );
        assert_eq!(err.class(), FailureClass::ServerError);

        llm.set(Reply::RetryAfter(429, 7));
        let err = c.generate(&llm.url, &req, t, "r").await.unwrap_err();
        assert_eq!(err.error_type(), "http_429");
        assert_eq!(err.failure("a").retry_after, Some(Duration::from_secs(7)));

        llm.set(Reply::Status(400));
        let err = c.generate(&llm.url, &req, t, "r").await.unwrap_err();
        assert_eq!(err.class(), FailureClass::Refused);
        assert!(!err.class().is_retryable());
    }

    #[tokio::test]
    async fn a_hanging_upstream_times_out_on_time() {
        let llm = FakeLlm::start("llm-a", Reply::Hang).await;
        let started = Instant::now();
        let err = client()
            .generate(
                &llm.url,
                &GenerateRequest::new("x"),
                Duration::from_millis(200),
                "r",
            )
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert_eq!(err, UpstreamError::Timeout(Duration::from_millis(200)));
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[tokio::test]
    async fn connection_failures_are_connect_errors() {
        let c = client();
        let req = GenerateRequest::new("x");
        let t = Duration::from_secs(5);
        let refused = c
            .generate(&closed_port_url().await, &req, t, "r")
            .await
            .unwrap_err();
        assert_eq!(refused.error_type(), "connect", "{refused}");

        let closing = FakeLlm::start_closing("llm-c").await;
        let closed = c.generate(&closing.url, &req, t, "r").await.unwrap_err();
        assert_eq!(closed.error_type(), "connect", "{closed}");
        assert!(closed.class().is_retryable());
        assert!(closing.calls() >= 1);
    }

    #[tokio::test]
    async fn a_truncated_body_is_malformed() {
        let llm = FakeLlm::start("llm-a", Reply::Malformed).await;
        let err = client()
            .generate(
                &llm.url,
                &GenerateRequest::new("x"),
                Duration::from_secs(5),
                "r",
            )
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "malformed", "{err}");
        assert!(err.class().is_retryable());
    }

    #[tokio::test]
    async fn http_probe_tells_up_from_down() {
        let llm = FakeLlm::start("llm-a", Reply::Ok).await;
        let probe = HttpProbe::new(client(), "/health").with_timeout(Duration::from_millis(300));
        assert_eq!(probe.probe("llm-a", &llm.url).await, Ok(()));

        llm.set_health(503);
        let down = probe.probe("llm-a", &llm.url).await.unwrap_err();
        assert_eq!(down, "HTTP 503");

        llm.set_health(0); // hang
        let started = Instant::now();
        let hung = probe.probe("llm-a", &llm.url).await.unwrap_err();
        assert!(hung.contains("timed out"), "{hung}");
        assert!(started.elapsed() < Duration::from_secs(2));

        let refused = probe
            .probe("gone", &closed_port_url().await)
            .await
            .unwrap_err();
        assert!(refused.contains("connection failed"), "{refused}");

        let other_path = HttpProbe::new(client(), "/model/health");
        assert_eq!(other_path.path(), "/model/health");
        assert_eq!(
            other_path.probe("llm-a", &llm.url).await.unwrap_err(),
            "HTTP 404"
        );
    }
}
