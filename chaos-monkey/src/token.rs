//! The llm-service fault API's token (`CHAOS_TOKEN`, [`ChaosToken`]), which the daemon and
//! the experiments send as `Authorization: Bearer` when it is set: the same variable the
//! llm-services read, so one setting in the environment guards and opens the API.

use llm_api::token::ChaosToken;
use reqwest::header::{AUTHORIZATION, HeaderValue};

/// `request` with `token` as `Authorization: Bearer`, the header marked sensitive (never
/// logged); no token, or an empty one (`CHAOS_TOKEN=`, which llm-service takes as unset),
/// adds nothing.
pub fn authorize(
    token: Option<&ChaosToken>,
    request: reqwest::RequestBuilder,
) -> reqwest::RequestBuilder {
    // A `ChaosToken` is printable ASCII: it always makes a header value.
    match ChaosToken::given(token).and_then(|t| HeaderValue::from_str(&t.bearer()).ok()) {
        Some(mut value) => {
            value.set_sensitive(true);
            request.header(AUTHORIZATION, value)
        }
        None => request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorization(token: Option<&ChaosToken>) -> Option<String> {
        let client = reqwest::Client::new();
        let request = authorize(token, client.get("http://127.0.0.1:1/"))
            .build()
            .unwrap();
        let header = request.headers().get(AUTHORIZATION)?;
        assert!(header.is_sensitive());
        Some(header.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_token_is_sent_as_a_sensitive_bearer() {
        let token: ChaosToken = "s3cret".parse().unwrap();
        assert_eq!(
            authorization(Some(&token)).as_deref(),
            Some("Bearer s3cret")
        );
    }

    #[test]
    fn no_token_or_an_empty_one_sends_nothing() {
        assert_eq!(authorization(None), None);
        let empty: ChaosToken = "".parse().unwrap();
        assert_eq!(authorization(Some(&empty)), None);
    }
}
