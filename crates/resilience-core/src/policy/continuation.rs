//! The decisions of a stream that broke after it reached the client (a cut, a stall, an
//! early end): whether it is continued on another target, how that target is asked for the
//! rest, and which of the new answer's text the client still needs.
//!
//! Rules:
//! 1. Only a single-choice text stream is continued: one that carried a tool call, or that
//!    asked for several choices, ends as before (an error event, no `[DONE]`).
//! 2. A request is continued at most `max_continuations` times; each continuation needs the
//!    request's deadline not passed and one retry from the retry budget of the target whose
//!    stream broke (a continuation is a retry). A request whose token budget the delivered
//!    text already spent is not continued (its continuation could say nothing).
//! 3. A target that takes an assistant prefill ([`PrefillMode::On`], or [`PrefillMode::Auto`]
//!    until it refused one) is asked for the rest of the answer: the messages, then the text
//!    delivered as the assistant's. Any other target is asked the request again, and its
//!    answer is spliced ([`Splice`]): what repeats the delivered text is dropped, the rest
//!    relayed; an answer that does not begin with the delivered text ends the stream.
//! 4. The continuation's `max_tokens` is the request's less the tokens delivered
//!    ([`remaining_tokens`]).

use std::time::Instant;

use crate::retry::RetryBudget;

/// Continuations per request by default.
pub const DEFAULT_MAX_CONTINUATIONS: u32 = 2;

/// Whether a target continues an assistant prefill (a trailing assistant message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefillMode {
    /// It does: it is sent the delivered text as a prefill.
    On,
    /// It does not (or may answer afresh): the answer is restarted there and spliced.
    Off,
    /// It is tried with a prefill; a 400 to one is remembered as a refusal, and from then on
    /// the target is treated as [`PrefillMode::Off`].
    Auto,
}

/// How a target is asked for the rest of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// With the delivered text as an assistant prefill: its answer is the continuation.
    Prefill,
    /// With the request as it was: its answer is the whole text again, spliced.
    Restart,
}

impl Resume {
    /// `prefill` or `restart` (metrics, logs, traces).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prefill => "prefill",
            Self::Restart => "restart",
        }
    }
}

/// How a target with `mode` is asked for a continuation, `refused` saying whether it
/// already refused a prefill (rule 3).
pub fn resume_with(mode: PrefillMode, refused: bool) -> Resume {
    match mode {
        PrefillMode::On => Resume::Prefill,
        PrefillMode::Auto if !refused => Resume::Prefill,
        PrefillMode::Auto | PrefillMode::Off => Resume::Restart,
    }
}

/// Whether a prefill request's failure is the target refusing the prefill itself: a 400
/// that is not about the context's length (that one follows the route's context fallback).
pub fn is_prefill_refusal(status: Option<u16>, class: super::FailureClass) -> bool {
    status == Some(400) && class == super::FailureClass::Refused
}

/// A broken stream, as far as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub struct Broken {
    /// Continuations this request already had.
    pub continuations: u32,
    /// The most a request may have.
    pub max_continuations: u32,
    /// Whether the stream carried only text of a single choice (rule 1).
    pub text_only: bool,
    /// Whether the delivered text was kept whole (a relay keeps it up to a bound).
    pub text_kept: bool,
    /// Tokens left of the request's budget after the delivered text (`None`: no budget set).
    pub tokens_left: Option<u32>,
    /// Now.
    pub now: Instant,
    /// The request's deadline.
    pub deadline: Instant,
}

/// Why a broken stream is not continued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Tool calls or several choices (rule 1).
    NotText,
    /// The delivered text outgrew what the relay keeps.
    TooLong,
    /// `max_continuations` reached.
    Limit,
    /// The request's deadline passed.
    Deadline,
    /// The retry budget is spent.
    Budget,
    /// The request's token budget is spent.
    Tokens,
    /// No target could continue it, or the continuation did not match (decided by the
    /// caller after trying).
    NoTarget,
    /// The restarted answer did not begin with the delivered text.
    Mismatch,
}

impl GiveUp {
    /// The reason's label (metrics, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotText => "not_text",
            Self::TooLong => "too_long",
            Self::Limit => "limit",
            Self::Deadline => "deadline",
            Self::Budget => "budget",
            Self::Tokens => "tokens",
            Self::NoTarget => "no_target",
            Self::Mismatch => "mismatch",
        }
    }
}

/// Whether `broken` is continued (rule 2): `Ok` after taking one retry from `budget`, or why
/// not. The budget is asked last, so a stream that may not be continued takes nothing.
pub fn decide(broken: &Broken, budget: &RetryBudget) -> Result<(), GiveUp> {
    if !broken.text_only {
        return Err(GiveUp::NotText);
    }
    if !broken.text_kept {
        return Err(GiveUp::TooLong);
    }
    if broken.continuations >= broken.max_continuations {
        return Err(GiveUp::Limit);
    }
    if broken.now >= broken.deadline {
        return Err(GiveUp::Deadline);
    }
    if broken.tokens_left == Some(0) {
        return Err(GiveUp::Tokens);
    }
    if !budget.try_withdraw() {
        return Err(GiveUp::Budget);
    }
    Ok(())
}

/// The continuation's token budget: the request's `requested` less the `delivered` tokens
/// (rule 4); `None` when the request set none (the target's default applies).
pub fn remaining_tokens(requested: Option<u32>, delivered: u32) -> Option<u32> {
    requested.map(|r| r.saturating_sub(delivered))
}

/// What a restarted answer's next text gives the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spliced<'a> {
    /// Nothing yet: all of it repeats the delivered text.
    Hold,
    /// This part is new: relay it (the text after the delivered part).
    Pass(&'a str),
    /// The answer says something else than what was delivered: the stream ends.
    Mismatch,
}

/// Splices a restarted answer onto the delivered text (rule 3): the answer's text is
/// compared with the delivered one after whitespace normalisation (leading whitespace
/// ignored, every run of whitespace one space), and only what follows the delivered text
/// is passed on.
#[derive(Debug, Clone)]
pub struct Splice {
    /// The delivered text, normalised.
    expected: Vec<char>,
    /// How much of it the answer matched so far.
    matched: usize,
    /// Whether the answer's last character was whitespace (or nothing came yet).
    in_space: bool,
}

impl Splice {
    /// A splice onto `delivered`.
    pub fn new(delivered: &str) -> Self {
        let mut expected = Vec::with_capacity(delivered.len());
        for word in delivered.split_whitespace() {
            if !expected.is_empty() {
                expected.push(' ');
            }
            expected.extend(word.chars());
        }
        if delivered.ends_with(char::is_whitespace) && !expected.is_empty() {
            expected.push(' ');
        }
        Self {
            expected,
            matched: 0,
            in_space: true,
        }
    }

    /// Whether the delivered text was matched whole (everything after passes as it is).
    pub fn is_done(&self) -> bool {
        self.matched == self.expected.len()
    }

    /// The next piece of the restarted answer's text. A restarted answer that ends while
    /// [`Self::is_done`] is still false was shorter than the delivered text: a mismatch too.
    pub fn feed<'a>(&mut self, text: &'a str) -> Spliced<'a> {
        if self.is_done() {
            return Spliced::Pass(text);
        }
        for (at, c) in text.char_indices() {
            if self.is_done() {
                return Spliced::Pass(&text[at..]);
            }
            if c.is_whitespace() {
                if !self.in_space {
                    // The end of a word: the delivered text must have a space here too.
                    if self.expected.get(self.matched) != Some(&' ') {
                        return Spliced::Mismatch;
                    }
                    self.matched += 1;
                }
                // Leading whitespace, and the rest of a run, say nothing more.
                self.in_space = true;
                continue;
            }
            self.in_space = false;
            if self.expected.get(self.matched) != Some(&c) {
                return Spliced::Mismatch;
            }
            self.matched += 1;
        }
        Spliced::Hold
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::retry::BudgetConfig;

    fn broken(now: Instant) -> Broken {
        Broken {
            continuations: 0,
            max_continuations: DEFAULT_MAX_CONTINUATIONS,
            text_only: true,
            text_kept: true,
            tokens_left: Some(10),
            now,
            deadline: now + Duration::from_secs(5),
        }
    }

    fn retries(min_per_sec: u32) -> RetryBudget {
        let clock = ManualClock::new();
        let config = BudgetConfig {
            ratio: 0.0,
            min_per_sec,
            window: Duration::from_secs(10),
        };
        RetryBudget::new(config, clock).unwrap()
    }

    #[test]
    fn a_text_stream_within_every_limit_is_continued_and_takes_a_retry() {
        let now = Instant::now();
        let budget = retries(1);
        assert_eq!(decide(&broken(now), &budget), Ok(()));
        assert_eq!(budget.snapshot().retries, 1);
    }

    #[test]
    fn each_limit_gives_up_with_its_reason_and_takes_nothing() {
        let now = Instant::now();
        let budget = retries(1);
        let cases = [
            (
                Broken {
                    text_only: false,
                    ..broken(now)
                },
                GiveUp::NotText,
            ),
            (
                Broken {
                    text_kept: false,
                    ..broken(now)
                },
                GiveUp::TooLong,
            ),
            (
                Broken {
                    continuations: 2,
                    ..broken(now)
                },
                GiveUp::Limit,
            ),
            (
                Broken {
                    deadline: now,
                    ..broken(now)
                },
                GiveUp::Deadline,
            ),
            (
                Broken {
                    tokens_left: Some(0),
                    ..broken(now)
                },
                GiveUp::Tokens,
            ),
        ];
        for (case, reason) in cases {
            assert_eq!(decide(&case, &budget), Err(reason));
        }
        assert_eq!(
            budget.snapshot().retries,
            0,
            "nothing taken from the budget"
        );
        assert_eq!(
            decide(
                &Broken {
                    max_continuations: 0,
                    ..broken(now)
                },
                &budget
            ),
            Err(GiveUp::Limit),
            "0 turns continuations off"
        );
        assert_eq!(decide(&broken(now), &retries(0)), Err(GiveUp::Budget));
    }

    #[test]
    fn prefill_modes_choose_how_to_resume() {
        assert_eq!(resume_with(PrefillMode::On, false), Resume::Prefill);
        assert_eq!(resume_with(PrefillMode::On, true), Resume::Prefill);
        assert_eq!(resume_with(PrefillMode::Off, false), Resume::Restart);
        assert_eq!(resume_with(PrefillMode::Auto, false), Resume::Prefill);
        assert_eq!(resume_with(PrefillMode::Auto, true), Resume::Restart);
        use super::super::FailureClass;
        assert!(is_prefill_refusal(Some(400), FailureClass::Refused));
        assert!(!is_prefill_refusal(Some(400), FailureClass::ContextTooLong));
        assert!(!is_prefill_refusal(Some(422), FailureClass::Refused));
        assert!(!is_prefill_refusal(None, FailureClass::Transport));
    }

    #[test]
    fn the_token_budget_shrinks_by_what_was_delivered() {
        assert_eq!(remaining_tokens(Some(100), 30), Some(70));
        assert_eq!(remaining_tokens(Some(10), 30), Some(0));
        assert_eq!(remaining_tokens(None, 30), None);
    }

    /// Feeds `pieces` and returns what passes, or `None` on a mismatch.
    fn splice(delivered: &str, pieces: &[&str]) -> Option<String> {
        let mut splice = Splice::new(delivered);
        let mut out = String::new();
        for piece in pieces {
            match splice.feed(piece) {
                Spliced::Hold => {}
                Spliced::Pass(text) => out.push_str(text),
                Spliced::Mismatch => return None,
            }
        }
        Some(out)
    }

    #[test]
    fn a_restarted_answer_passes_only_what_follows_the_delivered_text() {
        let pieces = ["Here", " is", " a", " simulated", " answer."];
        assert_eq!(
            splice("Here is", &pieces).as_deref(),
            Some(" a simulated answer.")
        );
        assert_eq!(
            splice("Here is a", &pieces).as_deref(),
            Some(" simulated answer.")
        );
        // The delivered text ends within a piece, or with a space.
        assert_eq!(
            splice("Here is a sim", &pieces).as_deref(),
            Some("ulated answer.")
        );
        assert_eq!(
            splice("Here is ", &pieces).as_deref(),
            Some("a simulated answer.")
        );
        // Whitespace differs only in kind and amount.
        assert_eq!(
            splice("Here  is\na", &["  Here is", " a", " simulated"]).as_deref(),
            Some(" simulated")
        );
        // Other pieces' boundaries.
        assert_eq!(
            splice("Here is a", &["Here is a simu", "lated"]).as_deref(),
            Some(" simulated")
        );
        assert_eq!(
            splice("", &pieces).as_deref(),
            Some("Here is a simulated answer.")
        );
    }

    #[test]
    fn an_answer_that_says_something_else_is_a_mismatch() {
        let pieces = ["Here", " is", " the", " answer."];
        assert_eq!(splice("Here is a", &pieces), None);
        // A delivered text that ends within a word of the new answer is its beginning: the
        // client reads the new answer whole.
        let other = ["Here", " is", " another", " answer."];
        assert_eq!(
            splice("Here is a", &other).as_deref(),
            Some("nother answer.")
        );
        assert_eq!(
            splice("Hereis", &["Here", " is"]),
            None,
            "a space it lacked"
        );
        assert_eq!(splice("Here is", &["Here", "is"]), None, "a space it lacks");
        assert_eq!(
            splice("Here is a long answer", &["Here is"]).as_deref(),
            Some("")
        );
    }
}
