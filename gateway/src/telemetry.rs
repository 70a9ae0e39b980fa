//! The request's trace: its W3C context ([`RequestTrace`]) and the OpenTelemetry spans the
//! gateway opens ([`http_edge::otel`]; exported only when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set).
//!
//! - `request` (server): one per request, a child of the incoming `traceparent`'s parent
//!   (a new trace without one), opened and ended by the access-log layer;
//! - `fallback.tier` (internal): each provider of a fallback tier tried ([`Traced`]), a
//!   child of `request`;
//! - `upstream.attempt` (client): each try on an instance, a child of `request`; its span
//!   id is the parent id of the `traceparent` sent with the try;
//! - `breaker.rejected` (internal): a breaker that refused a request or a try.
//!
//! With the export off, the ids are still made (random, on the stack) so that the access
//! log has a trace id and each try sends a `traceparent`; nothing else is done.

use http_edge::otel::{self, Kind};
use http_edge::trace::{Hex, SpanId, TraceParent};
use resilience_core::fallback::{BoxFuture, FallbackProvider, ProviderError, TierKind};
use sha2::{Digest as _, Sha256};

use crate::answer::Answer;
use crate::pool::GatewayRequest;
use crate::upstream::Payload;

/// The request's trace context, in the request's extensions: its trace id, and its
/// `request` span's id as the parent of what it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTrace(pub TraceParent);

/// A fallback tier's provider whose every call is a `fallback.tier` span.
pub struct Traced<P> {
    tier: TierKind,
    inner: P,
}

impl<P> Traced<P> {
    /// `inner`, traced as a provider of `tier`.
    pub fn new(tier: TierKind, inner: P) -> Self {
        Self { tier, inner }
    }
}

impl<P> FallbackProvider<GatewayRequest, Answer> for Traced<P>
where
    P: FallbackProvider<GatewayRequest, Answer>,
{
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn call<'a>(&'a self, req: &'a GatewayRequest) -> BoxFuture<'a, Result<Answer, ProviderError>> {
        if !otel::enabled() {
            return self.inner.call(req);
        }
        Box::pin(async move {
            let mut span = otel::start("fallback.tier", Kind::Internal, Some(req.trace));
            span.set("tier", self.tier.as_str());
            span.set_with("provider", || self.inner.name().to_owned());
            let result = self.inner.call(req).await;
            if let Err(error) = &result {
                span.error(|| error.to_string());
            }
            result
        })
    }
}

/// A `breaker.rejected` span for the breaker `breaker` refusing the request `req` (only
/// when the export is on).
pub fn breaker_rejected(req: &GatewayRequest, breaker: &str, reason: &'static str) {
    if !otel::enabled() {
        return;
    }
    let mut span = otel::start("breaker.rejected", Kind::Internal, Some(req.trace));
    span.set_with("breaker", || breaker.to_owned());
    span.set("reason", reason);
    span.end();
}

/// The prompt as the access log may show it: the first 8 bytes of its SHA-256 (16 hex
/// characters) and its length in bytes, never its text. The hash is computed only when the
/// access log is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PromptDigest {
    /// The SHA-256 prefix, when computed.
    pub sha256: Option<Hex<16>>,
    /// The prompt's length in bytes (a chat's: its messages' texts together).
    pub len: usize,
}

impl PromptDigest {
    /// The digest of `payload`'s prompt (a chat's messages, each role and text).
    pub fn of(payload: &Payload) -> Self {
        let hashed = tracing::enabled!(target: "access", tracing::Level::INFO);
        let mut hasher = hashed.then(Sha256::new);
        let mut len = 0;
        let mut feed = |hasher: &mut Option<Sha256>, part: &[u8]| {
            len += part.len();
            if let Some(hasher) = hasher {
                hasher.update(part);
            }
        };
        match payload {
            Payload::Generate(generate) => feed(&mut hasher, generate.prompt.as_bytes()),
            Payload::Chat(chat) => {
                for message in &chat.messages {
                    if let Some(hasher) = &mut hasher {
                        hasher.update(message.role.as_bytes());
                        hasher.update([0]);
                    }
                    feed(&mut hasher, message.text().as_bytes());
                }
            }
        }
        let sha256 = hasher.map(|hasher| {
            let digest = hasher.finalize();
            let mut prefix = [0u8; 8];
            prefix.copy_from_slice(&digest[..8]);
            // Eight bytes in hex, as a span id is written.
            SpanId(prefix).hex()
        });
        Self { sha256, len }
    }
}
