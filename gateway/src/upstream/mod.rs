//! HTTP to the upstreams: one pooled [`UpstreamClient`], its classified [`UpstreamError`],
//! and [`HttpProbe`], the active health probe over the same client.
//!
//! Two protocols ([`Protocol`]): the lab's llm-service (`/generate`, and
//! `/v1/chat/completions` for chat) and any OpenAI-compatible endpoint (`{base}/chat/completions`
//! with the target's model and API key). `openai` sends chat and turns a `/generate` request
//! into chat for an endpoint; `stream` opens server-sent event streams and reads them;
//! `probe` is the health probe; `error` holds [`UpstreamError`] and its classification.
//!
//! The client has no global timeout: every call is bounded by the timeout its caller passes
//! (the pool's per-try timeout, cut to what is left of the request's deadline; the checker's
//! probe timeout), so one slow instance never holds a request longer than it allows. System
//! proxies are ignored: upstreams are internal addresses, and a stray `HTTP_PROXY` must not
//! route them elsewhere.
//!
//! Classification, the only place it is decided: [`UpstreamError::class`] turns each
//! failure into a `resilience_core::policy::FailureClass`, which every decision reads.

mod error;
mod openai;
mod probe;
mod redact;
mod stream;

pub use error::UpstreamError;
pub use openai::{Completed, Payload, count_words};
pub use probe::{DEFAULT_PROBE_BOUND, HttpProbe};
pub use redact::redact;
pub use stream::{Chunk, OpenStream, StreamEvent};

use std::fmt;
use std::time::Duration;

use http_edge::trace::{TRACEPARENT, TraceParent};
use llm_api::generate::{GenerateRequest, GenerateResponse};
use reqwest::header::HeaderValue;
use serde::Deserialize;

use error::{classify, status_error};

/// The header carrying the request id to the upstream.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What a call carries upstream to tie it to its request: `x-request-id`, and the W3C
/// `traceparent` of the try (the request's trace, the try's span as the parent).
#[derive(Debug, Clone, Copy)]
pub struct Tags<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The try's trace context, when it has one.
    pub traceparent: Option<TraceParent>,
}

impl<'a> From<&'a str> for Tags<'a> {
    fn from(request_id: &'a str) -> Self {
        Self {
            request_id,
            traceparent: None,
        }
    }
}

impl Tags<'_> {
    /// `builder` with the request id (when it is a valid header value) and `traceparent`.
    pub(crate) fn apply(&self, mut builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match HeaderValue::from_str(self.request_id) {
            Ok(value) => builder = builder.header(REQUEST_ID_HEADER, value),
            Err(_) => tracing::debug!(
                request_id = self.request_id,
                "request id is not a header value; not sent"
            ),
        }
        if let Some(traceparent) = &self.traceparent
            && let Ok(value) = HeaderValue::from_str(traceparent.header().as_str())
        {
            builder = builder.header(TRACEPARENT, value);
        }
        builder
    }
}

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

/// A target's addresses, parsed once when it joins a pool: a try never parses a URL (the
/// parse, with its IDNA processing, cost more than the rest of building the request).
///
/// A base URL that does not parse is kept as its error: each try on it fails as a
/// connection failure, as it did when the URL was parsed per try.
#[derive(Debug, Clone)]
pub struct Upstream {
    base: String,
    protocol: Protocol,
    chat: Result<reqwest::Url, String>,
    generate: Result<reqwest::Url, String>,
    /// `Bearer <key>` for an endpoint with a key (marked sensitive: never logged).
    authorization: Option<HeaderValue>,
}

impl Upstream {
    /// The target at `base_url`, spoken to in `protocol`.
    pub fn new(base_url: &str, protocol: Protocol) -> Self {
        let parse = |path: &str| {
            reqwest::Url::parse(&join(base_url, path))
                .map_err(|e| redact(&format!("invalid upstream URL {base_url}: {e}")))
        };
        let chat = parse(match protocol {
            Protocol::Lab => "/v1/chat/completions",
            Protocol::OpenAi { .. } => "/chat/completions",
        });
        let authorization = match &protocol {
            Protocol::OpenAi {
                api_key: Some(key), ..
            } => match HeaderValue::from_str(&format!("Bearer {}", key.expose())) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    Some(value)
                }
                Err(_) => {
                    tracing::warn!(url = %redact(base_url),
                        "the API key is not a valid header value; not sent");
                    None
                }
            },
            _ => None,
        };
        Self {
            base: base_url.to_owned(),
            generate: parse("/generate"),
            chat,
            protocol,
            authorization,
        }
    }

    /// A lab llm-service at `base_url`.
    pub fn lab(base_url: &str) -> Self {
        Self::new(base_url, Protocol::Lab)
    }

    /// How it is spoken to.
    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    /// The base URL it was given.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The `Authorization` header an endpoint with a key is sent.
    fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }

    /// Where chat goes: the lab's `/v1/chat/completions`, an endpoint's
    /// `{base}/chat/completions`.
    pub(crate) fn chat_url(&self) -> Result<reqwest::Url, UpstreamError> {
        self.chat.clone().map_err(UpstreamError::Connect)
    }

    /// The lab's `/generate`.
    fn generate_url(&self) -> Result<reqwest::Url, UpstreamError> {
        self.generate.clone().map_err(UpstreamError::Connect)
    }
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

    /// `POST {base}/generate` with `req` as JSON, `x-request-id` and `traceparent`
    /// ([`Tags`]), bounded by `timeout` from sending to the last byte of the answer.
    ///
    /// An id that is not a valid header value is not sent (the call still is).
    pub async fn generate<'t>(
        &self,
        upstream: &Upstream,
        req: &GenerateRequest,
        timeout: Duration,
        tags: impl Into<Tags<'t>>,
    ) -> Result<GenerateResponse, UpstreamError> {
        let url = upstream.generate_url()?;
        let tags = tags.into();
        let call = async {
            let builder = tags.apply(self.http.post(url).json(req).timeout(timeout));
            let response = builder.send().await.map_err(|e| classify(&e, timeout))?;
            let status = response.status();
            if !status.is_success() {
                return Err(status_error(response, timeout).await);
            }
            let body = read_answer(response, timeout).await?;
            parse_answer(&body)
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(UpstreamError::Timeout(timeout)))
    }
}

/// The largest successful answer read from an upstream; a larger one is malformed (an
/// answer of a few thousand tokens is tens of KiB).
pub const ANSWER_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// A successful answer's body, read whole up to [`ANSWER_BODY_LIMIT`].
pub(crate) async fn read_answer(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, timeout))? {
        if body.len() + chunk.len() > ANSWER_BODY_LIMIT {
            return Err(UpstreamError::Malformed(format!(
                "answer larger than {ANSWER_BODY_LIMIT} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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

/// A 2xx body as the flat generate answer.
fn parse_answer(body: &[u8]) -> Result<GenerateResponse, UpstreamError> {
    let answer: LenientAnswer = serde_json::from_slice(body)
        .map_err(|e| UpstreamError::Malformed(redact(&format!("not a generate answer: {e}"))))?;
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
mod tests;
