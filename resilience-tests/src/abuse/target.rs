//! The target: its URL, its socket address, the request a well-behaved client sends, and
//! the refusal of hosts that are not loopback unless the user says they own them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use llm_api::generate::GenerateRequest;
use llm_api::openai::ChatCompletionRequest;

/// How long resolving the target's host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The answer's token budget of the well-behaved client's requests.
const MAX_TOKENS: u32 = 20;
/// The model the OpenAI-compatible route is asked for when `--model` is not given.
const DEFAULT_CHAT_MODEL: &str = "default";

/// Which model route the well-behaved client and the body attacks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// The lab's `POST /generate`.
    Lab,
    /// `POST /v1/chat/completions`.
    Openai,
}

/// A checked target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The base URL, without a trailing slash.
    pub base: String,
    /// The `Host` header value.
    pub host: String,
    /// Where raw connections go.
    pub addr: SocketAddr,
    /// Whether every address of the host is a loopback address.
    pub loopback: bool,
    /// The model route.
    pub api: Api,
    /// The model asked for, if any.
    pub model: Option<String>,
}

impl Target {
    /// Parses and resolves `url`; refuses a host that is not loopback unless `owned`.
    pub async fn resolve(
        url: &str,
        owned: bool,
        api: Api,
        model: Option<String>,
    ) -> anyhow::Result<Self> {
        let parsed =
            reqwest::Url::parse(url).with_context(|| format!("--target {url:?} is not a URL"))?;
        anyhow::ensure!(
            parsed.scheme() == "http",
            "--target {url:?} must be an http:// URL (the attacks speak plain HTTP/1.1 and h2c)"
        );
        let host = parsed
            .host_str()
            .with_context(|| format!("--target {url:?} has no host"))?
            .to_owned();
        let port = parsed.port_or_known_default().unwrap_or(80);
        let lookup = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let addrs: Vec<SocketAddr> = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            tokio::net::lookup_host((lookup.as_str(), port)),
        )
        .await
        .with_context(|| format!("resolving {host} took more than {RESOLVE_TIMEOUT:?}"))?
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
        let addr = *addrs
            .first()
            .with_context(|| format!("{host} resolves to no address"))?;
        let loopback = addrs.iter().all(|addr| addr.ip().is_loopback());
        anyhow::ensure!(
            loopback || owned,
            "--target {url:?} is not a loopback address: attack only hosts you own, and say so \
             with --i-own-this-host"
        );
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            host: match parsed.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            },
            addr,
            loopback,
            api,
            model,
        })
    }

    /// The model route's path.
    pub fn path(&self) -> &'static str {
        match self.api {
            Api::Lab => "/generate",
            Api::Openai => "/v1/chat/completions",
        }
    }

    /// The model route's URL.
    pub fn url(&self) -> String {
        format!("{}{}", self.base, self.path())
    }

    /// A URL under the base.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A valid request body for the model route, with `prompt`, and `model` when given.
    pub fn body(&self, prompt: &str, model: Option<&str>) -> Vec<u8> {
        let model = model.map(str::to_owned).or_else(|| self.model.clone());
        let encoded = match self.api {
            Api::Lab => serde_json::to_vec(&GenerateRequest {
                max_tokens: Some(MAX_TOKENS),
                model,
                ..GenerateRequest::new(prompt)
            }),
            Api::Openai => serde_json::to_vec(&ChatCompletionRequest {
                max_tokens: Some(MAX_TOKENS),
                ..ChatCompletionRequest::user(
                    model.unwrap_or_else(|| DEFAULT_CHAT_MODEL.to_owned()),
                    prompt,
                )
            }),
        };
        // Serialising these types cannot fail (string keys, no maps of other keys).
        encoded.unwrap_or_default()
    }
}
