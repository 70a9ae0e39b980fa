//! Why a request was refused ([`AuthError`]) and the answer it gets: 401 with
//! `WWW-Authenticate` (RFC 6750) or 403 for a missing scope, in the API's error shape. The
//! client learns only "missing", "invalid" or "insufficient scope": never whether the
//! signature, the key id or the expiry was wrong, never its own token echoed back. The
//! exact reason is for logs and metrics ([`AuthError::reason`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::scope::Scope;
use crate::layers::{Api, ErrorKind, RequestId};

/// Why a caller was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential the gateway accepts was presented.
    #[error("missing credentials")]
    Missing,
    /// A credential that is not one: not `Bearer`, not a JWT's three parts, unreadable
    /// claims, a required claim missing, too long.
    #[error("malformed credentials")]
    Malformed,
    /// A bad signature, an algorithm no key is configured for (`alg: none`, HS/RS
    /// confusion), an unknown key id, an unknown API key.
    #[error("invalid credentials")]
    Invalid,
    /// A revoked API key.
    #[error("revoked credentials")]
    Revoked,
    /// A JWT past its `exp` (plus the leeway).
    #[error("expired credentials")]
    Expired,
    /// A JWT before its `nbf`, or issued (`iat`) in the future, beyond the leeway.
    #[error("credentials not yet valid")]
    NotYetValid,
    /// A JWT whose `aud` is not the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A JWT whose `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// A valid credential without the scope the route needs.
    #[error("insufficient scope: needs {0}")]
    Forbidden(Scope),
}

impl AuthError {
    /// Every reason [`AuthError::reason`] returns (a metric's label values).
    pub const REASONS: [&'static str; 9] = [
        "missing",
        "malformed",
        "invalid",
        "revoked",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "wrong_issuer",
        "forbidden",
    ];

    /// The refusal's reason, one of [`AuthError::REASONS`]: for a metric label and the
    /// DEBUG log, never for the client.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Invalid => "invalid",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::Forbidden(_) => "forbidden",
        }
    }

    /// 403 for a missing scope, 401 for everything else.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// What the client is told: generic on purpose.
    pub fn client_message(self) -> String {
        match self {
            Self::Missing => "missing credentials".to_owned(),
            Self::Forbidden(scope) => format!("insufficient scope: needs {scope}"),
            _ => "invalid credentials".to_owned(),
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3): the realm alone when nothing was
    /// presented, `error="invalid_token"` for a presented but refused credential,
    /// `error="insufficient_scope"` with the scope needed for a 403.
    pub fn challenge(self) -> HeaderValue {
        match self {
            Self::Missing => HeaderValue::from_static(r#"Bearer realm="gateway""#),
            Self::Forbidden(Scope::Generate) => HeaderValue::from_static(
                r#"Bearer realm="gateway", error="insufficient_scope", scope="llm:generate""#,
            ),
            Self::Forbidden(Scope::Admin) => HeaderValue::from_static(
                r#"Bearer realm="gateway", error="insufficient_scope", scope="admin""#,
            ),
            _ => HeaderValue::from_static(r#"Bearer realm="gateway", error="invalid_token""#),
        }
    }

    /// The answer in `api`'s shape: OpenAI's error object (`invalid_request_error`, code
    /// `invalid_api_key` or `insufficient_permissions`) or the lab's envelope (`unauthorized`
    /// or `forbidden`, with the request id).
    pub fn into_response_for(self, api: Api, request_id: Option<&RequestId>) -> Response {
        let kind = if matches!(self, Self::Forbidden(_)) {
            ErrorKind {
                lab: "forbidden",
                openai: "invalid_request_error",
                code: "insufficient_permissions",
            }
        } else {
            ErrorKind {
                lab: "unauthorized",
                openai: "invalid_request_error",
                code: "invalid_api_key",
            }
        };
        let mut response = api.refuse(self.status(), kind, self.client_message(), request_id);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, self.challenge());
        response
    }
}
