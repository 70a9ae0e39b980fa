//! The token of llm-service's fault-injection API (`CHAOS_TOKEN`): llm-service checks it,
//! chaos-monkey and resilience-tests send it, as `Authorization: Bearer <token>`.

use std::fmt;
use std::str::FromStr;

/// `CHAOS_TOKEN`, a secret: `Debug` shows `***`, [`ChaosToken::matches`] compares in
/// constant time, and only [`ChaosToken::bearer`] gives the header's value (mark that header
/// sensitive). It is printable ASCII without spaces, so it always fits the header. An empty
/// token is as good as none: [`ChaosToken::given`] filters it out.
#[derive(Clone)]
pub struct ChaosToken(String);

impl ChaosToken {
    /// `token` unless it is absent or empty (`CHAOS_TOKEN=` guards nothing).
    pub fn given(token: Option<&Self>) -> Option<&Self> {
        token.filter(|t| !t.0.is_empty())
    }

    /// Whether `presented` is this token; the time taken depends on the lengths only, not on
    /// where the bytes differ.
    pub fn matches(&self, presented: &str) -> bool {
        let (given, expected) = (presented.as_bytes(), self.0.as_bytes());
        let mut diff = given.len() ^ expected.len();
        for i in 0..given.len().max(expected.len()) {
            let a = given.get(i).copied().unwrap_or(0);
            let b = expected.get(i).copied().unwrap_or(0);
            diff |= usize::from(a ^ b);
        }
        diff == 0
    }

    /// `Bearer <token>`: the `Authorization` header's value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for ChaosToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChaosToken(***)")
    }
}

/// Why a string is no [`ChaosToken`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAToken;

impl fmt::Display for NotAToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token must be printable ASCII without spaces")
    }
}

impl std::error::Error for NotAToken {}

impl FromStr for ChaosToken {
    type Err = NotAToken;

    fn from_str(token: &str) -> Result<Self, NotAToken> {
        if token.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(token.to_owned()))
        } else {
            Err(NotAToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> ChaosToken {
        s.parse().unwrap()
    }

    #[test]
    fn only_the_same_token_matches() {
        let t = token("s3cret");
        assert!(t.matches("s3cret"));
        for other in ["", "s3cre", "s3cret!", "S3cret", "x3cret"] {
            assert!(!t.matches(other), "{other}");
        }
    }

    #[test]
    fn debug_hides_it_and_the_bearer_carries_it() {
        let t = token("s3cret");
        assert_eq!(format!("{t:?}"), "ChaosToken(***)");
        assert_eq!(t.bearer(), "Bearer s3cret");
    }

    #[test]
    fn a_token_fits_a_header() {
        for bad in ["two words", "tab\t", "nl\n", "é"] {
            assert_eq!(bad.parse::<ChaosToken>().unwrap_err(), NotAToken, "{bad:?}");
        }
    }

    #[test]
    fn an_empty_token_is_none() {
        assert!(ChaosToken::given(Some(&token(""))).is_none());
        assert!(ChaosToken::given(None).is_none());
        assert!(ChaosToken::given(Some(&token("t"))).is_some());
    }
}
