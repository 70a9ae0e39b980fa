//! Authentication (issue 18): who may call which route.
//!
//! - [`settings`]: `AUTH_MODE` (`none` | `api_key` | `jwt` | `api_key,jwt`) and the key
//!   material, checked once ([`AuthSettings`]).
//! - [`keys`]: API keys, held as SHA-256 hashes, compared in constant time.
//! - [`jwt`]: JWT bearer tokens (HS256 secret, RS256/ES256 PEM or JWKS), checked at an
//!   instant the caller gives.
//! - [`scope`]: what a route needs ([`RouteGroup`]) and what a credential grants
//!   ([`Scopes`]); [`identity`]: the [`Identity`] a request carries once authenticated.
//! - [`error`]: [`AuthError`], the 401/403 answers in the API's error shape.
//! - [`layer`]: the tower layer; [`mint`]: `gateway keys` and `gateway token`.
//!
//! [`Authenticator`] decides: which credential a request presents (`Authorization:
//! Bearer …` before `x-api-key: …`; with both modes on, a bearer value with two dots is a
//! JWT, anything else an API key) and who it names. Whether that caller may use the route
//! is [`Authenticator::authorize`]'s answer.

pub mod error;
pub mod identity;
pub mod jwt;
pub mod keys;
pub mod layer;
pub mod mint;
pub mod scope;
pub mod settings;

#[cfg(test)]
mod tests;

pub use error::AuthError;
pub use identity::{AuthMethod, Identity};
pub use scope::{RouteGroup, Scope, Scopes};
pub use settings::{AuthMode, AuthSettings};

use std::borrow::Cow;
use std::time::UNIX_EPOCH;

use axum::http::{HeaderMap, HeaderName, header};
use resilience_core::clock::{SharedClock, SystemClock};

use self::jwt::{JwtVerifier, MAX_TOKEN_BYTES};
use self::keys::KeyStore;

/// `x-api-key`, the header the OpenAI-style SDKs (and Anthropic's) send a key in.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Checks the credentials of requests against the configured keys.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    keys: KeyStore,
    jwt: Option<JwtVerifier>,
    clock: SharedClock,
}

/// The credential a request presents.
enum Credential<'a> {
    /// `Authorization: Bearer <value>`.
    Bearer(&'a str),
    /// `x-api-key: <value>`.
    ApiKey(&'a str),
}

impl Authenticator {
    /// An authenticator of `settings`, on the system clock.
    pub fn new(settings: &AuthSettings) -> Self {
        Self::with_clock(settings, SystemClock::shared())
    }

    /// An authenticator of `settings` whose [`Authenticator::now_unix_s`] reads `clock`
    /// (tests pin time with a `ManualClock`).
    pub fn with_clock(settings: &AuthSettings, clock: SharedClock) -> Self {
        Self {
            mode: settings.mode,
            keys: settings.keys.clone(),
            jwt: settings
                .jwt
                .as_ref()
                .filter(|_| settings.mode.jwt)
                .map(JwtVerifier::new),
            clock,
        }
    }

    /// Whether credentials are required (`AUTH_MODE` is not `none`).
    pub fn enabled(&self) -> bool {
        self.mode.enabled()
    }

    /// The accepted credentials.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The clock's wall time in Unix seconds, the `now` of [`Authenticator::authenticate`].
    pub fn now_unix_s(&self) -> u64 {
        self.clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Who `headers` name, at `now_unix_s`: the anonymous caller when authentication is
    /// off; else the owner of a valid API key or the subject of a valid JWT, or why not.
    /// Scopes are not checked here ([`Authenticator::authorize`]).
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        now_unix_s: u64,
    ) -> Result<Identity, AuthError> {
        if !self.enabled() {
            return Ok(Identity::anonymous(None));
        }
        match credential(headers)? {
            Credential::Bearer(value) => {
                if self.mode.jwt && (!self.mode.api_key || looks_like_jwt(value)) {
                    self.by_jwt(value, now_unix_s)
                } else {
                    self.by_key(value)
                }
            }
            Credential::ApiKey(value) if self.mode.api_key => self.by_key(value),
            Credential::ApiKey(_) => Err(AuthError::Missing),
        }
    }

    /// Whether `identity` may use a route of `group`: `Forbidden` with the missing scope.
    pub fn authorize(identity: &Identity, group: RouteGroup) -> Result<(), AuthError> {
        match group.required_scope() {
            Some(scope) if !identity.scopes.contains(scope) => Err(AuthError::Forbidden(scope)),
            _ => Ok(()),
        }
    }

    fn by_key(&self, presented: &str) -> Result<Identity, AuthError> {
        let key = self.keys.verify(presented)?;
        Ok(Identity {
            subject: Cow::Owned(key.owner.clone()),
            tier: key.tier.clone(),
            scopes: key.scopes,
            method: AuthMethod::ApiKey,
            client: None,
        })
    }

    fn by_jwt(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        let verifier = self.jwt.as_ref().ok_or(AuthError::Invalid)?;
        let verified = verifier.verify(token, now)?;
        Ok(Identity {
            subject: Cow::Owned(verified.subject),
            tier: verified.tier,
            scopes: verified.scopes,
            method: AuthMethod::Jwt,
            client: None,
        })
    }
}

/// The credential of `headers`: `Authorization` (`Bearer` only, given once) before
/// `x-api-key`; `Missing` when neither is there, `Malformed` when one is not a credential.
fn credential(headers: &HeaderMap) -> Result<Credential<'_>, AuthError> {
    if let Some(value) = single(headers, &header::AUTHORIZATION)? {
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        return checked(token.trim()).map(Credential::Bearer);
    }
    match single(headers, &X_API_KEY)? {
        Some(value) => checked(value.trim()).map(Credential::ApiKey),
        None => Err(AuthError::Missing),
    }
}

/// The one value of `name`, when given; `Malformed` when given twice or not visible ASCII.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    first.to_str().map(Some).map_err(|_| AuthError::Malformed)
}

/// `value` when it can be a credential: not empty, no space, at most 8 KiB.
fn checked(value: &str) -> Result<&str, AuthError> {
    if value.is_empty() || value.len() > MAX_TOKEN_BYTES || value.contains(' ') {
        return Err(AuthError::Malformed);
    }
    Ok(value)
}

/// Whether a bearer value has a JWT's shape (three parts); API keys have no dot.
fn looks_like_jwt(value: &str) -> bool {
    value.bytes().filter(|b| *b == b'.').count() == 2
}
