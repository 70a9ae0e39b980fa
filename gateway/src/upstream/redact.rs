//! [`redact`]: an upstream's words with the secrets they may carry masked, before they are
//! kept in an [`super::UpstreamError`] and so before any log line prints them. Upstreams
//! have been seen to put a database connection string in a 4xx message; what the client
//! gets is never the upstream's text (see `routes::errors`), and what the log gets is this.
//!
//! Masked, each as `***`: the user and password of a URL (`scheme://user:pass@host` →
//! `scheme://***@host`); the value after `password`, `passwd`, `pwd`, `secret`, `token`,
//! `access_token`, `api_key`, `apikey`, `api-key` and `key` followed by `=` or `:` (quoted
//! or not, any case); the credentials after `Bearer` or `Basic`; `sk-…` style keys. Then
//! personal data ([`crate::pii::for_logs`]): e-mail addresses, phone and card numbers, which
//! an upstream may quote from the prompt.

/// Names whose value is a secret when followed by `=` or `:` (matched in any case, at the
/// start of a word). Longer names first, so `api_key` is not taken as `key`.
const SECRET_NAMES: [&str; 10] = [
    "access_token",
    "password",
    "api_key",
    "api-key",
    "passwd",
    "secret",
    "apikey",
    "token",
    "pwd",
    "key",
];

/// Authorization schemes whose next word is a credential.
const AUTH_SCHEMES: [&str; 2] = ["bearer", "basic"];

/// The shortest run after `sk-` taken for a key (so `sk-learn` stays).
const MIN_KEY_LEN: usize = 12;

/// What replaces a secret.
const MASK: &str = "***";

/// `text` with every secret it holds masked (see the module doc).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(rest) = text.get(at..) {
        let Some(c) = rest.chars().next() else { break };
        let boundary = text[..at]
            .chars()
            .next_back()
            .is_none_or(|p| !(p.is_ascii_alphanumeric() || p == '_' || p == '-'));
        let found = if boundary {
            url_credentials(rest)
                .or_else(|| authorization(rest))
                .or_else(|| named_value(rest))
                .or_else(|| openai_key(rest))
        } else {
            None
        };
        match found {
            Some((consumed, kept)) => {
                out.push_str(&kept);
                out.push_str(MASK);
                at += consumed;
            }
            None => {
                out.push(c);
                at += c.len_utf8();
            }
        }
    }
    crate::pii::for_logs().redact_in_place(&mut out);
    out
}

/// For each match: how many bytes of the text it covers, and what of them is kept before
/// the mask.
type Found = Option<(usize, String)>;

/// Whether `c` ends a secret value (or a URL's authority).
fn ends_value(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '&' | ';' | ',' | ')' | ']' | '}' | '<' | '>'
        )
}

/// `scheme://user:pass@` at the start of `text`: keeps `scheme://`, masks up to the `@`.
fn url_credentials(text: &str) -> Found {
    let scheme_len = text
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')))
        .map_or(text.len(), |(i, _)| i);
    if scheme_len == 0 || !text[scheme_len..].starts_with("://") {
        return None;
    }
    let authority_start = scheme_len + 3;
    let authority = &text[authority_start..];
    let authority_len = authority
        .char_indices()
        .find(|&(_, c)| ends_value(c) || matches!(c, '/' | '?' | '#'))
        .map_or(authority.len(), |(i, _)| i);
    let at = authority[..authority_len].rfind('@')?;
    Some((authority_start + at, text[..authority_start].to_owned()))
}

/// `Bearer <credential>` or `Basic <credential>` at the start of `text`.
fn authorization(text: &str) -> Found {
    let scheme = AUTH_SCHEMES
        .iter()
        .find(|s| starts_with_ignore_case(text, s))?;
    let after = &text[scheme.len()..];
    let spaces = after.len() - after.trim_start_matches(' ').len();
    if spaces == 0 {
        return None;
    }
    let value = value_len(&after[spaces..]);
    (value > 0).then(|| {
        (
            scheme.len() + spaces + value,
            text[..scheme.len() + spaces].to_owned(),
        )
    })
}

/// `name=value`, `name: value`, `"name": "value"` for a name of [`SECRET_NAMES`]: keeps the
/// name and what joins it to the value.
fn named_value(text: &str) -> Found {
    let name = SECRET_NAMES
        .iter()
        .find(|n| starts_with_ignore_case(text, n))?;
    let bytes = text.as_bytes();
    let mut i = name.len();
    if matches!(bytes.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    if !matches!(bytes.get(i), Some(b'=' | b':')) {
        return None;
    }
    i += 1;
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    if matches!(bytes.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    let value = value_len(text.get(i..)?);
    (value > 0).then(|| (i + value, text[..i].to_owned()))
}

/// `sk-` and at least [`MIN_KEY_LEN`] key characters at the start of `text`.
fn openai_key(text: &str) -> Found {
    let rest = text.strip_prefix("sk-")?;
    let len = rest
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .map_or(rest.len(), |(i, _)| i);
    (len >= MIN_KEY_LEN).then(|| (3 + len, "sk-".to_owned()))
}

/// The length of the value at the start of `text`, up to the first [`ends_value`] char.
fn value_len(text: &str) -> usize {
    text.char_indices()
        .find(|&(_, c)| ends_value(c))
        .map_or(text.len(), |(i, _)| i)
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn masks_the_credentials_of_a_url_and_keeps_the_rest() {
        assert_eq!(
            redact("cannot reach postgres://admin:hunter2@db.internal:5432/prod now"),
            "cannot reach postgres://***@db.internal:5432/prod now"
        );
        assert_eq!(
            redact("redis://:s3cret@cache:6379 and https://example.com/a@b"),
            "redis://***@cache:6379 and https://example.com/a@b"
        );
    }

    #[test]
    fn masks_named_values_in_any_case_and_quoting() {
        assert_eq!(
            redact("host=db password=hunter2 user=admin"),
            "host=db password=*** user=admin"
        );
        assert_eq!(redact("Server=x;Pwd=hunter2;"), "Server=x;Pwd=***;");
        assert_eq!(
            redact(r#"{"api_key": "abc123", "model": "m"}"#),
            r#"{"api_key": "***", "model": "m"}"#
        );
        assert_eq!(redact("?API_KEY=abc&x=1"), "?API_KEY=***&x=1");
        assert_eq!(redact("secret: topsecret"), "secret: ***");
    }

    #[test]
    fn masks_authorization_credentials_and_openai_keys() {
        assert_eq!(
            redact("Authorization: Bearer eyJhbGciOi.x.y failed"),
            "Authorization: Bearer *** failed"
        );
        assert_eq!(
            redact("invalid key sk-proj-abcdefghijklmnop1234"),
            "invalid key sk-***"
        );
    }

    #[test]
    fn masks_personal_data_an_upstream_quotes_from_the_prompt() {
        assert_eq!(
            redact("cannot answer for alice@example.com, call +44 20 7946 0958"),
            "cannot answer for [EMAIL], call [PHONE]"
        );
        assert_eq!(
            redact("refused: card 4111 1111 1111 1111 in the prompt"),
            "refused: card [CARD] in the prompt"
        );
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for text in [
            "max_tokens: 5 exceeds the limit",
            "the model's maximum context length is 4096 tokens",
            "sk-learn is a library",
            "a monkey: bananas",
            "Simulated upstream error",
            "ünïcödé: ✓ key",
            "",
        ] {
            assert_eq!(redact(text), text);
        }
    }
}
