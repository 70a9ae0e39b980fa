//! What a target or a fallback tier answers: [`Answer::Whole`], a complete answer, or
//! [`Answer::Stream`], an upstream stream past its first token that the handler relays.
//! Only whole answers are cached; a stream is kept once it completed.

use std::sync::Arc;

use llm_api::openai::{ChatCompletion, Usage};

use crate::pool::LiveStream;

/// A complete answer, from an upstream or a fallback tier.
#[derive(Debug, Clone, PartialEq)]
pub struct WholeAnswer {
    /// The generated text.
    pub response: String,
    /// The model that answered, as the upstream reported it.
    pub model_used: String,
    /// Tokens in the answer.
    pub tokens_used: u32,
    /// The id of the instance, endpoint or tier that answered.
    pub served_by: String,
    /// Prompt and completion tokens, when counted by the upstream.
    pub usage: Option<Usage>,
    /// The upstream's chat completion, passed on whole to a chat client.
    pub completion: Option<Arc<ChatCompletion>>,
}

impl WholeAnswer {
    /// A text answer without usage or upstream body (fallback tiers, `/generate`).
    pub fn text(
        response: impl Into<String>,
        model_used: impl Into<String>,
        tokens_used: u32,
        served_by: impl Into<String>,
    ) -> Self {
        Self {
            response: response.into(),
            model_used: model_used.into(),
            tokens_used,
            served_by: served_by.into(),
            usage: None,
            completion: None,
        }
    }
}

/// A target's or a tier's answer.
#[derive(Debug)]
pub enum Answer {
    /// Complete.
    Whole(WholeAnswer),
    /// Still coming: the handler relays it, then tells it how it ended.
    Stream(LiveStream),
}

impl Answer {
    /// Who answered.
    pub fn served_by(&self) -> &str {
        match self {
            Self::Whole(whole) => &whole.served_by,
            Self::Stream(live) => &live.served_by,
        }
    }

    /// The model that answered.
    pub fn model_used(&self) -> &str {
        match self {
            Self::Whole(whole) => &whole.model_used,
            Self::Stream(live) => &live.model,
        }
    }
}

impl From<WholeAnswer> for Answer {
    fn from(whole: WholeAnswer) -> Self {
        Self::Whole(whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_answer_says_who_answered_with_which_model() {
        let answer = Answer::from(WholeAnswer::text("hi", "m-1", 1, "llm-a"));
        assert_eq!(answer.served_by(), "llm-a");
        assert_eq!(answer.model_used(), "m-1");
        let Answer::Whole(whole) = answer else {
            panic!("whole");
        };
        assert_eq!(whole.response, "hi");
        assert_eq!(whole.tokens_used, 1);
        assert_eq!(whole.usage, None);
    }
}
