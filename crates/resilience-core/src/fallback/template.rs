//! The last tier: a structured degraded answer built from the request alone.
//!
//! A template needs nothing but the request, so it answers whenever its tier is enabled.
//! [`degraded_text`] is the default wording: it tells the user the service is degraded
//! and to try again, and names nothing internal (no hosts, tiers, breakers or errors).

use std::fmt;

use super::error::ProviderError;
use super::tier::{BoxFuture, FallbackProvider};

/// How much of the prompt [`degraded_text`] quotes back, in characters.
pub const DEGRADED_QUOTE_CHARS: usize = 80;

/// A [`FallbackProvider`] that always answers with what its closure builds from the request.
///
/// Never fails; disable its tier to stop it answering.
pub struct TemplateProvider<Req, Resp> {
    name: String,
    build: Box<dyn Fn(&Req) -> Resp + Send + Sync>,
}

impl<Req, Resp> TemplateProvider<Req, Resp> {
    /// A provider named `name` that answers with `build(request)`.
    pub fn new(
        name: impl Into<String>,
        build: impl Fn(&Req) -> Resp + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            build: Box::new(build),
        }
    }
}

impl<Req, Resp> FallbackProvider<Req, Resp> for TemplateProvider<Req, Resp>
where
    Resp: Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn call<'a>(&'a self, req: &'a Req) -> BoxFuture<'a, Result<Resp, ProviderError>> {
        Box::pin(std::future::ready(Ok((self.build)(req))))
    }
}

impl<Req, Resp> fmt::Debug for TemplateProvider<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateProvider")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The default degraded answer to `prompt`: says the service is running in a reduced mode
/// and cannot answer in full, quotes the start of the prompt (at most
/// [`DEGRADED_QUOTE_CHARS`] characters, whitespace collapsed) so the user sees which request
/// it refers to, and asks them to try again shortly.
pub fn degraded_text(prompt: &str) -> String {
    let collapsed = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut quote: String = collapsed.chars().take(DEGRADED_QUOTE_CHARS).collect();
    if quote.len() < collapsed.len() {
        quote.push('…');
    }
    let subject = if quote.is_empty() {
        String::from("your request")
    } else {
        format!("your request (\"{quote}\")")
    };
    format!(
        "The assistant is temporarily running in a reduced mode and cannot answer {subject} \
         in full right now. Please try again in a few moments."
    )
}
