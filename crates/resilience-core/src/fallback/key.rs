//! Cache keys: a model (or none) and a normalised prompt.
//!
//! Two prompts that differ only in case, spacing or punctuation ask the same thing, so the
//! cache folds those differences away before comparing: `"What is AI?"` and
//! `"  what is   ai "` share one key. Normalisation is idempotent, which the tests check
//! with a property test.

use std::sync::Arc;

/// Turns a request into the key the response cache stores and looks it up under; `None`
/// when the request must not be cached or looked up (for example, a streamed request).
pub type CacheKeyFn<Req> = Arc<dyn Fn(&Req) -> Option<CacheKey> + Send + Sync>;

/// Where a cached answer is filed: an optional model and a normalised prompt.
///
/// A key without a model is model-agnostic: lookups for any model fall back to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    model: Option<String>,
    prompt: String,
}

impl CacheKey {
    /// A key for `prompt` asked of `model`; the prompt goes through [`normalise_prompt`],
    /// the model is trimmed and lowercased, and a blank model means model-agnostic.
    pub fn new(model: Option<&str>, prompt: &str) -> Self {
        let model = model
            .map(|m| m.trim().to_lowercase())
            .filter(|m| !m.is_empty());
        Self {
            model,
            prompt: normalise_prompt(prompt),
        }
    }

    /// [`CacheKey::new`], or `None` when the normalised prompt would be longer than
    /// `max_prompt_bytes`: normalising stops there, so a huge prompt costs no more than a
    /// bounded one.
    pub fn within(model: Option<&str>, prompt: &str, max_prompt_bytes: usize) -> Option<Self> {
        let prompt = normalise_within(prompt, max_prompt_bytes)?;
        let model = model
            .map(|m| m.trim().to_lowercase())
            .filter(|m| !m.is_empty());
        Some(Self { model, prompt })
    }

    /// A model-agnostic key for `prompt`.
    pub fn any_model(prompt: &str) -> Self {
        Self::new(None, prompt)
    }

    /// The normalised model, or `None` for a model-agnostic key.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The normalised prompt.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// Whether the prompt normalised to nothing; such keys are never stored or matched.
    pub fn is_blank(&self) -> bool {
        self.prompt.is_empty()
    }

    /// The same prompt without a model; `None` when the key is already model-agnostic.
    pub fn without_model(&self) -> Option<Self> {
        self.model.as_ref().map(|_| Self {
            model: None,
            prompt: self.prompt.clone(),
        })
    }
}

/// Folds case, treats every character that is neither alphanumeric nor an apostrophe as
/// a word break, drops apostrophes, and collapses runs of breaks into one space (none at
/// either end).
///
/// `"What is AI?"` and `"  what is   ai "` both become `"what is ai"`; `"What's up?"`
/// becomes `"whats up"`; `"circuit-breaker"` becomes `"circuit breaker"`. Punctuation
/// breaks words rather than vanishing so that `"3.14"` and `"314"` stay different prompts.
/// Idempotent: normalising twice changes nothing.
pub fn normalise_prompt(prompt: &str) -> String {
    normalise_within(prompt, usize::MAX).unwrap_or_default()
}

/// [`normalise_prompt`], or `None` as soon as the result exceeds `max_bytes`.
fn normalise_within(prompt: &str, max_bytes: usize) -> Option<String> {
    let mut out = String::with_capacity(prompt.len().min(max_bytes.saturating_add(4)));
    let mut pending_space = false;
    for c in prompt.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
            if out.len() > max_bytes {
                return None;
            }
        } else if !APOSTROPHES.contains(&c) {
            pending_space = !out.is_empty();
        }
    }
    Some(out)
}

/// Dropped inside words rather than breaking them: "what's" and "whats" are one prompt.
const APOSTROPHES: [char; 2] = ['\'', '\u{2019}'];
