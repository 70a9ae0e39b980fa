//! Who made a request, once authenticated: the [`Identity`] the layer hands to the rate
//! limiter, the handlers and the logs. It names the caller (a JWT's `sub`, an API key's
//! owner, or `anonymous`), never the credential.

use std::borrow::Cow;
use std::net::IpAddr;

use super::scope::Scopes;

/// The subject of the anonymous caller (authentication off).
pub const ANONYMOUS: &str = "anonymous";
/// The tier of a caller whose credential names none (the lab's `standard` is this one).
pub const DEFAULT_TIER: &str = "default";
/// The longest tier name kept; a longer one counts as [`DEFAULT_TIER`].
pub const MAX_TIER_CHARS: usize = 64;

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// An API key (`Authorization: Bearer` or `x-api-key`).
    ApiKey,
    /// A JWT bearer token.
    Jwt,
    /// Nothing: authentication is off (`AUTH_MODE=none`).
    Anonymous,
}

impl AuthMethod {
    /// The method's name for logs and metrics (`api_key`, `jwt`, `anonymous`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::Anonymous => "anonymous",
        }
    }
}

/// The authenticated caller, in the request's extensions on every non-public route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The JWT's `sub` or the API key's owner; `anonymous` when authentication is off.
    /// Never the credential itself.
    pub subject: Cow<'static, str>,
    /// The rate-limit tier, normalised ([`normalise_tier`]); `default` when none is given.
    /// An unknown tier is kept as written: the rate limiter decides what it means.
    pub tier: Cow<'static, str>,
    /// What the caller may do.
    pub scopes: Scopes,
    /// How the caller was identified.
    pub method: AuthMethod,
    /// The client's address, when the server knows it (the rate limiter's key for
    /// anonymous callers).
    pub client: Option<IpAddr>,
}

impl Identity {
    /// The caller when authentication is off: every scope, the default tier; allocates
    /// nothing.
    pub const fn anonymous(client: Option<IpAddr>) -> Self {
        Self {
            subject: Cow::Borrowed(ANONYMOUS),
            tier: Cow::Borrowed(DEFAULT_TIER),
            scopes: Scopes::ALL,
            method: AuthMethod::Anonymous,
            client,
        }
    }

    /// Whether this is the anonymous caller.
    pub fn is_anonymous(&self) -> bool {
        self.method == AuthMethod::Anonymous
    }
}

/// A tier as written in a credential, normalised: lowercase, `standard` → `default`;
/// empty, longer than [`MAX_TIER_CHARS`] or not made of `a-z 0-9 _ -` → `default`.
/// The common tiers come back borrowed (no allocation).
pub fn normalise_tier(raw: &str) -> Cow<'static, str> {
    let raw = raw.trim();
    if !tier_is_valid(raw) {
        return Cow::Borrowed(DEFAULT_TIER);
    }
    for known in ["default", "standard", "premium", "enterprise"] {
        if raw.eq_ignore_ascii_case(known) {
            return Cow::Borrowed(if known == "standard" {
                DEFAULT_TIER
            } else {
                known
            });
        }
    }
    Cow::Owned(raw.to_ascii_lowercase())
}

/// Whether `raw` (any case) is a tier name [`normalise_tier`] keeps.
pub fn tier_is_valid(raw: &str) -> bool {
    (1..=MAX_TIER_CHARS).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
