//! JWT bearer tokens: the keys that may sign them ([`JwtKey`]: an HS256 secret, an RS256
//! or ES256 public key in PEM, the RS256/ES256 keys of a JWKS picked by `kid`) and the
//! check of one token at a given instant ([`JwtVerifier::verify`]).
//!
//! Rules:
//! - A token is verified only with a key configured for the algorithm its header names:
//!   HS256 only with `JWT_SECRET_KEY`, so an HS256 token "signed" with the RSA public key
//!   finds no key (algorithm confusion); `alg: none` and every other algorithm find none.
//! - Required claims `sub`, `iat`, `exp`, `scope` (a space-separated string); `nbf`
//!   honoured when present; `aud` and `iss` checked when configured; every instant with a
//!   leeway (`JWT_LEEWAY_S`), an `iat` in the future beyond it refused.
//! - The verifier never reads the clock: `now` is an argument (jsonwebtoken's own time
//!   checks are switched off).
//! - A token longer than [`MAX_TOKEN_BYTES`] is malformed, unread.

use std::borrow::Cow;
use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::AuthError;
use super::identity::{DEFAULT_TIER, normalise_tier};
use super::scope::Scopes;

/// The longest token read (8 KiB); a longer one is malformed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The shortest HS256 secret (RFC 7518 §3.2: at least the hash's size).
pub const MIN_SECRET_BYTES: usize = 32;
/// The default clock-skew leeway on `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_LEEWAY_S: u64 = 30;
/// The longest `sub` accepted.
pub const MAX_SUBJECT_CHARS: usize = 256;

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An HS256 secret shorter than [`MIN_SECRET_BYTES`].
    #[error("must be at least {MIN_SECRET_BYTES} bytes for HS256, got {0}")]
    SecretTooShort(usize),
    /// A private key where a public one belongs.
    #[error("holds a private key: give the public key only")]
    PrivateKey,
    /// A PEM that is neither an RSA nor a P-256 public key.
    #[error("is not an RSA or P-256 (EC) public key in PEM")]
    NotAPublicKey,
    /// A JWKS that does not parse.
    #[error("is not a JWKS: {0}")]
    Jwks(String),
    /// A JWKS without one RS256 or ES256 signing key that has a `kid`.
    #[error("holds no RS256 or ES256 signing key with a `kid`")]
    NoUsableKey,
}

/// One key that may sign tokens, with the one algorithm it verifies.
#[derive(Clone)]
pub struct JwtKey {
    /// Its `kid` (JWKS keys only); a token naming a `kid` is checked with that key.
    kid: Option<String>,
    /// HS256, RS256 or ES256.
    alg: Algorithm,
    /// The key.
    key: DecodingKey,
    /// SHA-256 of the material it was made from: equality without holding it twice.
    fingerprint: [u8; 32],
}

impl fmt::Debug for JwtKey {
    /// The algorithm and key id, never the material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl PartialEq for JwtKey {
    fn eq(&self, other: &Self) -> bool {
        self.alg == other.alg && self.kid == other.kid && self.fingerprint == other.fingerprint
    }
}

impl JwtKey {
    /// An HS256 key; refused when `secret` is shorter than [`MIN_SECRET_BYTES`].
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        Ok(Self::new(
            None,
            Algorithm::HS256,
            DecodingKey::from_secret(secret),
            secret,
        ))
    }

    /// An RS256 (RSA) or ES256 (P-256) key from a PEM public key (`PUBLIC KEY` or
    /// `RSA PUBLIC KEY`), the kind detected.
    pub fn from_public_pem(pem: &[u8]) -> Result<Self, KeyError> {
        if pem.windows(11).any(|w| w == b"PRIVATE KEY") {
            return Err(KeyError::PrivateKey);
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::new(None, Algorithm::RS256, key, pem));
        }
        match DecodingKey::from_ec_pem(pem) {
            Ok(key) if is_p256_point(&key) => Ok(Self::new(None, Algorithm::ES256, key, pem)),
            _ => Err(KeyError::NotAPublicKey),
        }
    }

    /// The RS256 and ES256 signing keys of a JWKS document that have a `kid`; other keys
    /// (encryption keys, other algorithms and curves, symmetric keys) are left out.
    pub fn from_jwks(json: &str) -> Result<Vec<Self>, KeyError> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| KeyError::Jwks(e.to_string()))?;
        let keys: Vec<Self> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                    return None;
                }
                let alg = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                        Algorithm::ES256
                    }
                    _ => return None,
                };
                let declared = jwk.common.key_algorithm;
                let matches = match alg {
                    Algorithm::RS256 => declared.is_none_or(|a| a == KeyAlgorithm::RS256),
                    _ => declared.is_none_or(|a| a == KeyAlgorithm::ES256),
                };
                let key = DecodingKey::from_jwk(jwk).ok().filter(|_| matches)?;
                let material = serde_json::to_vec(jwk).unwrap_or_default();
                Some(Self::new(Some(kid), alg, key, &material))
            })
            .collect();
        if keys.is_empty() {
            return Err(KeyError::NoUsableKey);
        }
        Ok(keys)
    }

    fn new(kid: Option<String>, alg: Algorithm, key: DecodingKey, material: &[u8]) -> Self {
        Self {
            kid,
            alg,
            key,
            fingerprint: Sha256::digest(material).into(),
        }
    }

    /// The one algorithm the key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Its key id (JWKS keys).
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// Whether an EC key is an uncompressed P-256 point (ES256), not P-384.
fn is_p256_point(key: &DecodingKey) -> bool {
    key.try_get_as_bytes().is_ok_and(|point| point.len() == 65)
}

/// What a token must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSettings {
    /// Every key that may sign (at least one when JWTs are accepted).
    pub keys: Vec<JwtKey>,
    /// The `aud` a token must carry (`JWT_AUDIENCE`); `None`: not checked.
    pub audience: Option<String>,
    /// The `iss` a token must carry (`JWT_ISSUER`); `None`: not checked.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds (`JWT_LEEWAY_S`).
    pub leeway_s: u64,
}

/// What a valid token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `sub`.
    pub subject: String,
    /// `tier`, normalised; `default` when missing or absurd.
    pub tier: Cow<'static, str>,
    /// The known scopes of `scope`.
    pub scopes: Scopes,
}

/// Checks tokens against [`JwtSettings`].
pub struct JwtVerifier {
    /// Each key with the validation of its one algorithm.
    keys: Vec<(JwtKey, Validation)>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway_s: u64,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field(
                "keys",
                &self.keys.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("leeway_s", &self.leeway_s)
            .finish()
    }
}

/// The claims read; the rest of the token's claims are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    iat: Option<serde_json::Number>,
    exp: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    scope: Option<String>,
    tier: Option<serde_json::Value>,
    aud: Option<Audience>,
    iss: Option<String>,
}

/// `aud`: one audience or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Self::One(aud) => aud == wanted,
            Self::Many(auds) => auds.iter().any(|aud| aud == wanted),
        }
    }
}

impl JwtVerifier {
    /// A verifier of `settings`.
    pub fn new(settings: &JwtSettings) -> Self {
        let keys = settings
            .keys
            .iter()
            .map(|key| (key.clone(), signature_only(key.alg)))
            .collect();
        Self {
            keys,
            audience: settings.audience.clone(),
            issuer: settings.issuer.clone(),
            leeway_s: settings.leeway_s,
        }
    }

    /// What `token` says about its bearer, when it is valid at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Verified, AuthError> {
        if token.len() > MAX_TOKEN_BYTES || token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(AuthError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let mut candidates = self.keys.iter().filter(|(key, _)| {
            key.alg == header.alg && (key.kid.is_none() || key.kid == header.kid)
        });
        let claims = loop {
            let Some((key, validation)) = candidates.next() else {
                return Err(AuthError::Invalid);
            };
            match jsonwebtoken::decode::<Claims>(token, &key.key, validation) {
                Ok(data) => break data.claims,
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                Err(e) => return Err(classify(e.kind())),
            }
        };
        self.check(claims, now)
    }

    /// The claims of a correctly signed token, checked at `now`.
    fn check(&self, claims: Claims, now: u64) -> Result<Verified, AuthError> {
        let (Some(sub), Some(iat), Some(exp), Some(scope)) =
            (claims.sub, claims.iat, claims.exp, claims.scope)
        else {
            return Err(AuthError::Malformed);
        };
        let (iat, exp) = (seconds(&iat)?, seconds(&exp)?);
        let nbf = claims.nbf.as_ref().map(seconds).transpose()?;
        if sub.is_empty()
            || sub.chars().count() > MAX_SUBJECT_CHARS
            || sub.chars().any(char::is_control)
        {
            return Err(AuthError::Malformed);
        }
        let leeway = self.leeway_s;
        if now >= exp.saturating_add(leeway) {
            return Err(AuthError::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway))
            || iat > now.saturating_add(leeway)
        {
            return Err(AuthError::NotYetValid);
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_deref() != Some(issuer.as_str())
        {
            return Err(AuthError::WrongIssuer);
        }
        if let Some(audience) = &self.audience
            && !claims.aud.is_some_and(|aud| aud.contains(audience))
        {
            return Err(AuthError::WrongAudience);
        }
        let tier = match &claims.tier {
            Some(serde_json::Value::String(tier)) => normalise_tier(tier),
            _ => Cow::Borrowed(DEFAULT_TIER),
        };
        Ok(Verified {
            subject: sub,
            tier,
            scopes: Scopes::from_claim(&scope),
        })
    }
}

/// jsonwebtoken's checks reduced to the signature and the algorithm: the claims and
/// instants are checked by [`JwtVerifier::check`] with the caller's `now`.
fn signature_only(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    validation
}

/// A decoding failure other than a bad signature.
fn classify(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::MissingRequiredClaim(_) => AuthError::Malformed,
        _ => AuthError::Invalid,
    }
}

/// A NumericDate (RFC 7519 §2: seconds, possibly fractional) as whole seconds.
fn seconds(value: &serde_json::Number) -> Result<u64, AuthError> {
    if let Some(whole) = value.as_u64() {
        return Ok(whole);
    }
    match value.as_f64() {
        // Finite, non-negative and below u64::MAX: the cast only drops the fraction.
        Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(f as u64),
        _ => Err(AuthError::Malformed),
    }
}
