//! PII redaction (the lab's data-protection part): [`Redactor`] masks e-mail addresses
//! (`[EMAIL]`), card numbers (`[CARD]`) and phone numbers (`[PHONE]`) in a text. With
//! `PII_REDACTION=mask` the validation layer masks the prompt of `/generate` and the text of
//! every chat message ([`mask_generate`], [`mask_chat`]) before anything goes upstream;
//! [`for_logs`] is the one redactor for text bound for a log line, in every mode.
//!
//! What counts, decided here:
//! - an e-mail address: `local@domain.tld`, a top-level domain of 2+ letters;
//! - a card number: 13 to 19 digits, optionally grouped by single spaces or dashes, that pass
//!   the Luhn check (so an order number of 16 digits stays, mostly);
//! - a phone number, 7 to 15 digits (17 with a trunk `(0)`): international, `+` and digits
//!   with optional spaces, dots, dashes and parentheses (`+1 (555) 123-4567`,
//!   `+44 20 7946 0958`, `+15551234567`); or national, grouped by separators, with an area
//!   code in parentheses (`(555) 123-4567`) or in three groups or more (`555-123-4567`,
//!   `06 12 34 56 78`). A bare run of digits (`5551234567`) is not taken for a phone: it is
//!   as likely an id or an amount. Dates (`2024-01-15`, `15.01.2024`), dotted quads
//!   (`10.20.30.40`), thousands (`10 000 000`, `1.234.567`), year ranges and small numbers
//!   (`42 tokens`) stay as they are.
//!
//! This runs on every prompt: a text with no `@` skips the e-mail pattern, one with fewer
//! than 7 digits the others, and a text where nothing matched comes back borrowed.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::LazyLock;

use llm_api::generate::GenerateRequest;
use llm_api::openai::ChatCompletionRequest;
use regex::Regex;
use serde_json::Value;

/// What replaces an e-mail address.
pub const EMAIL: &str = "[EMAIL]";
/// What replaces a phone number.
pub const PHONE: &str = "[PHONE]";
/// What replaces a card number.
pub const CARD: &str = "[CARD]";

/// `local@domain.tld`; ASCII classes only (the crate is built without `unicode-case`).
const EMAIL_PATTERN: &str =
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}";
/// 13 to 19 digits, single spaces or dashes between them; Luhn decides.
const CARD_PATTERN: &str = r"\b[0-9](?:[ -]?[0-9]){12,18}\b";
/// International (`+…`) or national (parenthesised area code, or groups by separators).
const PHONE_PATTERN: &str = concat!(
    r"\+[0-9]+(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]+))*\b",
    r"|\([0-9]{2,5}\)[ .-]?[0-9]{2,5}(?:[ .-][0-9]{2,5})*\b",
    r"|\b[0-9]{2,5}(?:[ .-][0-9]{2,5}){2,5}\b",
);

/// The fewest digits of a phone or card number.
const MIN_DIGITS: usize = 7;

/// Whether prompts are masked before they go upstream (`PII_REDACTION`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PiiMode {
    /// Prompts go upstream as sent (the default).
    #[default]
    Off,
    /// E-mail addresses, phone and card numbers are masked first.
    Mask,
}

/// `PII_REDACTION` is neither `off` nor `mask`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not `off` or `mask`")]
pub struct UnknownPiiMode(String);

impl FromStr for PiiMode {
    type Err = UnknownPiiMode;

    /// `off` or `mask` (any case, surrounding blanks ignored).
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "mask" => Ok(Self::Mask),
            _ => Err(UnknownPiiMode(raw.to_owned())),
        }
    }
}

/// The compiled patterns of the module doc; build once, share (cloning shares them too).
#[derive(Debug, Clone)]
pub struct Redactor {
    email: Regex,
    card: Regex,
    phone: Regex,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

impl Redactor {
    /// Compiles the patterns (a few hundred microseconds: do it once, at start).
    pub fn new() -> Self {
        Self {
            email: compile(EMAIL_PATTERN),
            card: compile(CARD_PATTERN),
            phone: compile(PHONE_PATTERN),
        }
    }

    /// `text` with every e-mail address, card and phone number masked; borrowed, with no
    /// allocation, when it holds none.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        if text.contains('@') {
            out = replace(out, &self.email, EMAIL, |_| true);
        }
        if text.bytes().filter(u8::is_ascii_digit).count() >= MIN_DIGITS {
            out = replace(out, &self.card, CARD, is_card);
            out = replace(out, &self.phone, PHONE, is_phone);
        }
        out
    }

    /// Masks `text` in place; leaves it untouched (no allocation) when it holds nothing.
    pub fn redact_in_place(&self, text: &mut String) {
        if let Cow::Owned(masked) = self.redact(text) {
            *text = masked;
        }
    }
}

/// The redactor for text bound for a log line, whatever `PII_REDACTION` says (upstream
/// messages, excerpts of their answers): compiled on first use.
pub fn for_logs() -> &'static Redactor {
    static LOGS: LazyLock<Redactor> = LazyLock::new(Redactor::new);
    &LOGS
}

/// Masks the prompt of a `/generate` request.
pub fn mask_generate(redactor: &Redactor, request: &mut GenerateRequest) {
    redactor.redact_in_place(&mut request.prompt);
}

/// Masks the text of every message of a chat request: string content, and the `text` of
/// each content part (other parts, images and the rest, are left as they are).
pub fn mask_chat(redactor: &Redactor, request: &mut ChatCompletionRequest) {
    for message in &mut request.messages {
        match &mut message.content {
            Value::String(text) => redactor.redact_in_place(text),
            Value::Array(parts) => {
                for part in parts {
                    if let Some(Value::String(text)) = part.get_mut("text") {
                        redactor.redact_in_place(text);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A constant pattern of this module compiled.
#[expect(
    clippy::expect_used,
    reason = "constant patterns, each compiled by the tests: no input reaches this"
)]
fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a valid constant pattern")
}

/// `text` with each match of `pattern` that `keep` accepts replaced by `label`; `text`
/// itself when none is.
fn replace<'a>(
    text: Cow<'a, str>,
    pattern: &Regex,
    label: &str,
    keep: fn(&str) -> bool,
) -> Cow<'a, str> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    for found in pattern.find_iter(&text) {
        if !keep(found.as_str()) {
            continue;
        }
        let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
        out.push_str(&text[copied..found.start()]);
        out.push_str(label);
        copied = found.end();
    }
    match out {
        None => text,
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

/// The digits of `text`, as numbers.
fn digits(text: &str) -> impl DoubleEndedIterator<Item = u32> + '_ {
    text.chars().filter_map(|c| c.to_digit(10))
}

/// 13 to 19 digits passing the Luhn check.
fn is_card(candidate: &str) -> bool {
    let count = digits(candidate).count();
    if !(13..=19).contains(&count) {
        return false;
    }
    let sum: u32 = digits(candidate)
        .rev()
        .enumerate()
        .map(|(i, d)| match (i % 2 == 1, d * 2) {
            (true, doubled) if doubled > 9 => doubled - 9,
            (true, doubled) => doubled,
            (false, _) => d,
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A phone-number candidate of [`PHONE_PATTERN`] that is one (see the module doc).
fn is_phone(candidate: &str) -> bool {
    let count = digits(candidate).count();
    if candidate.starts_with('+') {
        return (MIN_DIGITS..=17).contains(&count);
    }
    if !(MIN_DIGITS..=15).contains(&count) {
        return false;
    }
    if candidate.starts_with('(') {
        return true;
    }
    let groups: Vec<&str> = candidate.split([' ', '.', '-']).collect();
    !is_date(&groups) && !is_dotted_quad(candidate, &groups) && !is_thousands(candidate, &groups)
}

/// Groups of three digits after a first of at most three, by spaces or dots: a number
/// written with thousands separators (`10 000 000`, `1.234.567`).
fn is_thousands(candidate: &str, groups: &[&str]) -> bool {
    !candidate.contains('-')
        && groups.first().is_some_and(|g| g.len() <= 3)
        && groups.iter().skip(1).all(|g| g.len() == 3)
}

/// Three groups: a 4-digit year and two of at most 2 digits (either end).
fn is_date(groups: &[&str]) -> bool {
    match groups {
        [a, b, c] => {
            let short = |g: &&str| g.len() <= 2;
            (a.len() == 4 && short(b) && short(c)) || (c.len() == 4 && short(a) && short(b))
        }
        _ => false,
    }
}

/// Four groups of at most 3 digits separated by dots: an IPv4 address.
fn is_dotted_quad(candidate: &str, groups: &[&str]) -> bool {
    groups.len() == 4 && groups.iter().all(|g| g.len() <= 3) && !candidate.contains([' ', '-'])
}

#[cfg(test)]
mod tests {
    use llm_api::openai::ChatMessage;
    use serde_json::json;

    use super::*;

    fn masked(text: &str) -> String {
        Redactor::new().redact(text).into_owned()
    }

    #[test]
    fn modes_parse_from_off_and_mask() {
        assert_eq!("off".parse(), Ok(PiiMode::Off));
        assert_eq!(" Mask ".parse(), Ok(PiiMode::Mask));
        let error = "on".parse::<PiiMode>().unwrap_err();
        assert_eq!(error.to_string(), "`on` is not `off` or `mask`");
        assert_eq!(PiiMode::default(), PiiMode::Off);
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(
            masked("write to alice@example.com or bob.smith+tag@mail.co.uk."),
            "write to [EMAIL] or [EMAIL]."
        );
        assert_eq!(masked("<a.b@c-d.io>"), "<[EMAIL]>");
    }

    #[test]
    fn things_that_look_like_emails_are_not() {
        for text in [
            "@handle",
            "user@localhost",
            "a @ b.com",
            "price: 3@5",
            "x@y.1",
        ] {
            assert_eq!(masked(text), text);
        }
    }

    #[test]
    fn luhn_valid_cards_are_masked_in_any_grouping() {
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "378282246310005",
            "6011 0009 9013 9424",
            "4222222222222",
        ] {
            assert_eq!(
                masked(&format!("pay with {card} now")),
                "pay with [CARD] now",
                "{card}"
            );
        }
    }

    #[test]
    fn luhn_invalid_or_odd_length_numbers_stay() {
        for text in [
            "order 4111 1111 1111 1112",
            "id 1234567890123",
            "twelve 411111111111",
            "twenty 41111111111111111111",
        ] {
            assert_eq!(masked(text), text);
        }
    }

    #[test]
    fn international_phones_are_masked() {
        for phone in [
            "+1 555 123 4567",
            "+1 (555) 123-4567",
            "+44 20 7946 0958",
            "+33 6 12 34 56 78",
            "+49 (0)30 1234567",
            "+15551234567",
            "+1-555-123-4567",
        ] {
            assert_eq!(
                masked(&format!("call {phone} today")),
                "call [PHONE] today",
                "{phone}"
            );
        }
    }

    #[test]
    fn national_phones_with_separators_are_masked() {
        for phone in [
            "(555) 123-4567",
            "555-123-4567",
            "555.123.4567",
            "555 123 4567",
            "020 7946 0958",
            "06 12 34 56 78",
        ] {
            assert_eq!(
                masked(&format!("call {phone} today")),
                "call [PHONE] today",
                "{phone}"
            );
        }
    }

    #[test]
    fn plain_numbers_years_dates_and_addresses_stay() {
        for text in [
            "In 2024 we used 42 tokens.",
            "from 1990-2020",
            "on 2024-01-15 at 10.30",
            "on 15.01.2024",
            "host 10.20.30.40",
            "version 1.2.3",
            "id 5551234567",
            "+5 points",
            "12 345",
            "total 1 000 000",
            "total 10 000 000",
            "total 1.234.567",
        ] {
            assert_eq!(masked(text), text, "{text}");
        }
    }

    #[test]
    fn everything_at_once() {
        assert_eq!(
            masked("Alice (alice@example.com, +1 555 123 4567) paid 4111 1111 1111 1111 in 2024."),
            "Alice ([EMAIL], [PHONE]) paid [CARD] in 2024."
        );
    }

    #[test]
    fn clean_text_is_borrowed() {
        let redactor = Redactor::new();
        for text in [
            "hello",
            "in 2024 we used 42 tokens",
            "@me 1234567 x",
            "4111 1111 1111 1112",
        ] {
            assert!(matches!(redactor.redact(text), Cow::Borrowed(_)), "{text}");
        }
        assert!(matches!(redactor.redact("a@b.io"), Cow::Owned(_)));
    }

    #[test]
    fn logs_share_one_redactor() {
        assert!(std::ptr::eq(for_logs(), for_logs()));
        assert_eq!(for_logs().redact("to a@b.io"), "to [EMAIL]");
    }

    #[test]
    fn generate_masks_the_prompt_only() {
        let mut request = GenerateRequest::new("mail alice@example.com");
        request.user_id = Some("alice@example.com".to_owned());
        mask_generate(&Redactor::new(), &mut request);
        assert_eq!(request.prompt, "mail [EMAIL]");
        assert_eq!(request.user_id.as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn chat_masks_string_content_and_text_parts() {
        let mut request: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "call +44 20 7946 0958"},
                {"role": "user", "content": [
                    {"type": "text", "text": "I am alice@example.com"},
                    {"type": "image_url", "image_url": {"url": "https://x.io/a@b.io.png"}},
                ]},
                {"role": "assistant", "content": null, "tool_calls": []},
            ],
        }))
        .unwrap();
        mask_chat(&Redactor::new(), &mut request);
        assert_eq!(request.messages[0].content, json!("call [PHONE]"));
        assert_eq!(
            request.messages[1].content,
            json!([
                {"type": "text", "text": "I am [EMAIL]"},
                {"type": "image_url", "image_url": {"url": "https://x.io/a@b.io.png"}},
            ])
        );
        assert_eq!(request.messages[2].content, Value::Null);
        let untouched = ChatMessage::new("user", "nothing here");
        let mut clean = request.clone();
        clean.messages = vec![untouched.clone()];
        mask_chat(&Redactor::new(), &mut clean);
        assert_eq!(clean.messages, vec![untouched]);
    }
}
