//! The load client: builds each request for the chosen endpoint, sends it and classifies
//! what came back, including the fallback tier the gateway says answered.

use std::time::Duration;

use anyhow::Context;
use llm_api::envelope::{FallbackType, GenerateSuccess};
use llm_api::generate::GenerateRequest;
use llm_api::openai::ChatCompletionRequest;

use super::outcome::{ErrorKind, Outcome};

/// The answer's token budget, as in the seed's load test.
const MAX_TOKENS: u32 = 50;
/// `{n}` in a prompt becomes the request's number modulo this: prompts vary enough that the
/// cache does not answer everything, and repeat enough that it can answer during outages.
const PROMPT_VARIANTS: u64 = 100;
/// The longest the reachability check waits.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(10);
/// The chat route asked for when `--model` is not given: the gateway always has it.
const DEFAULT_CHAT_MODEL: &str = "default";
/// The chat answer's header naming the fallback tier (absent when none served it).
const FALLBACK_TIER_HEADER: &str = "x-fallback-tier";

/// Which gateway endpoint the load goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// The lab's `POST /generate`.
    Generate,
    /// `POST /v1/chat/completions`, whole answers.
    Chat,
}

/// Sends the load test's requests.
#[derive(Debug, Clone)]
pub struct LoadClient {
    http: reqwest::Client,
    base: String,
    url: String,
    endpoint: Endpoint,
    prompt: String,
    model: Option<String>,
}

impl Endpoint {
    /// The path under the gateway's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Self::Generate => "/generate",
            Self::Chat => "/v1/chat/completions",
        }
    }
}

impl LoadClient {
    /// A client for `gateway` (a base URL) whose requests give up after `timeout`;
    /// `prompt` may hold `{n}`. Fails on a URL that does not parse.
    pub fn new(
        gateway: &str,
        endpoint: Endpoint,
        prompt: String,
        model: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(gateway)
            .with_context(|| format!("--gateway {gateway:?} is not a URL"))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "--gateway {gateway:?} must be an http:// or https:// URL"
        );
        // No proxy: HTTP(S)_PROXY must never route the test's traffic elsewhere.
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .context("cannot build the HTTP client")?;
        let base = gateway.trim_end_matches('/').to_owned();
        let url = format!("{base}{}", endpoint.path());
        Ok(Self {
            http,
            base,
            url,
            endpoint,
            prompt,
            model,
        })
    }

    /// The URL the load goes to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks that the gateway answers HTTP at all (`GET /health`, any status will do), so
    /// that a wrong URL fails at once instead of as a run of 100 % connection errors.
    pub async fn preflight(&self) -> anyhow::Result<()> {
        let url = format!("{}/health", self.base);
        let answer = self.http.get(&url).timeout(PREFLIGHT_TIMEOUT).send().await;
        match answer {
            Ok(_) => Ok(()),
            Err(error) => Err(anyhow::Error::new(error).context(format!(
                "the gateway at {} is not reachable (GET {url} failed); is it running?",
                self.base
            ))),
        }
    }

    /// Sends request number `n` and waits for its whole answer. Never fails: transport
    /// errors are outcomes too.
    pub async fn send(&self, n: u64) -> Outcome {
        let prompt = prompt_for(&self.prompt, n);
        let request = match self.endpoint {
            Endpoint::Generate => {
                let body = GenerateRequest {
                    max_tokens: Some(MAX_TOKENS),
                    model: self.model.clone(),
                    ..GenerateRequest::new(prompt)
                };
                self.http.post(&self.url).json(&body)
            }
            Endpoint::Chat => {
                let model = self.model.as_deref().unwrap_or(DEFAULT_CHAT_MODEL);
                let body = ChatCompletionRequest {
                    max_tokens: Some(MAX_TOKENS),
                    ..ChatCompletionRequest::user(model, prompt)
                };
                self.http.post(&self.url).json(&body)
            }
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Outcome::error(ErrorKind::of(&error)),
        };
        let code = response.status().as_u16();
        let header_tier = response
            .headers()
            .get(FALLBACK_TIER_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => return Outcome::error(ErrorKind::of(&error)),
        };
        let tier = match self.endpoint {
            Endpoint::Generate => generate_tier(&body),
            Endpoint::Chat => header_tier.unwrap_or_else(|| "none".to_owned()),
        };
        Outcome::http(code, Some(tier))
    }
}

/// The prompt of request `n`: `{n}` replaced by `n` modulo [`PROMPT_VARIANTS`].
pub fn prompt_for(template: &str, n: u64) -> String {
    template.replace("{n}", &(n % PROMPT_VARIANTS).to_string())
}

/// `data.fallback_type` of a `/generate` answer: null → `none`; `unknown` when the body is
/// not the gateway's success envelope (an error, or another shape).
fn generate_tier(body: &[u8]) -> String {
    match serde_json::from_slice::<GenerateSuccess>(body) {
        Ok(answer) => answer
            .data
            .fallback_type
            .map_or("none", FallbackType::as_str)
            .to_owned(),
        Err(_) => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_vary_a_little() {
        assert_eq!(
            prompt_for("Load test request {n}", 7),
            "Load test request 7"
        );
        assert_eq!(
            prompt_for("Load test request {n}", 107),
            "Load test request 7"
        );
        assert_eq!(prompt_for("What is AI?", 3), "What is AI?");
    }

    #[test]
    fn generate_tier_reads_fallback_type() {
        use llm_api::ErrorBody;
        use llm_api::envelope::{FallbackReason, GenerateData};

        let data = GenerateData {
            fallback_reason: None,
            fallback_type: None,
            fallback_used: false,
            model_used: "sim".into(),
            request_id: "r".into(),
            response: "x".into(),
            response_time_ms: 1,
            served_by: "llm_service_1".into(),
            tokens_used: 1,
        };
        let tier = |data: &GenerateData| {
            generate_tier(&serde_json::to_vec(&GenerateSuccess::new(data.clone())).unwrap())
        };
        assert_eq!(tier(&data), "none");
        let cached = GenerateData {
            fallback_reason: Some(FallbackReason::CircuitOpen),
            fallback_type: Some(FallbackType::Cache),
            fallback_used: true,
            ..data
        };
        assert_eq!(tier(&cached), "cache");
        let error = ErrorBody::new("upstream_error", "down", None);
        assert_eq!(
            generate_tier(&serde_json::to_vec(&error).unwrap()),
            "unknown"
        );
        assert_eq!(
            generate_tier(br#"{"status":"success","data":{"fallback_type":"cache"}}"#),
            "unknown",
            "not the whole envelope"
        );
        assert_eq!(generate_tier(b"not json"), "unknown");
    }

    #[test]
    fn a_gateway_url_must_be_http() {
        let client = |url: &str| {
            LoadClient::new(
                url,
                Endpoint::Chat,
                "hi".to_owned(),
                None,
                Duration::from_secs(1),
            )
        };
        assert!(client("localhost:8000").is_err());
        let ok = client("http://127.0.0.1:8000/").unwrap();
        assert_eq!(ok.url(), "http://127.0.0.1:8000/v1/chat/completions");
    }
}
