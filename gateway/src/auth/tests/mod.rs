//! Authentication tests: the verifier at pinned instants ([`jwt`]), API keys ([`keys`]),
//! the settings ([`settings`]), minting ([`mint`]) and the layer on a small router, over
//! every route group ([`layer`]). Keys are the fixtures in `tests/fixtures/auth/`.

mod jwt;
mod keys;
mod layer;
mod mint;
mod settings;

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use resilience_core::clock::ManualClock;
use serde_json::{Value, json};

use super::jwt::{DEFAULT_LEEWAY_S, JwtKey, JwtSettings};
use super::keys::{ApiKey, KeyStore, sha256_hex};
use super::{AuthMode, AuthSettings, Authenticator, Scopes, X_API_KEY};

/// The instant the verifier tests check tokens at.
pub const NOW: u64 = 1_800_000_000;
/// An HS256 secret of the right length.
pub const SECRET: &str = "test-only-secret-0123456789abcdef";
/// The audience and issuer of the checks that have them.
pub const AUD: &str = "gateway";
pub const ISS: &str = "https://issuer.test";

/// The path of a fixture.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/auth")
        .join(name)
}

/// A fixture's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

/// Valid claims at `now`: `sub` alice, an hour to live, scope `llm:generate`, the
/// configured audience and issuer.
pub fn claims(now: u64) -> Value {
    json!({
        "sub": "alice",
        "iat": now,
        "exp": now + 3600,
        "scope": "llm:generate",
        "aud": AUD,
        "iss": ISS,
    })
}

/// `claims` with `key` set to `value` (`Value::Null` removes it).
pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
    let map = claims.as_object_mut().unwrap();
    if value.is_null() {
        map.remove(key);
    } else {
        map.insert(key.to_owned(), value);
    }
    claims
}

/// `claims` signed with `alg` and `key`, the header naming `kid`.
pub fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// HS256 with [`SECRET`].
pub fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        claims,
    )
}

/// RS256 with the fixture RSA key.
pub fn rs256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).unwrap();
    sign(Algorithm::RS256, &key, kid, claims)
}

/// ES256 with the fixture P-256 key.
pub fn es256(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&fixture("ec_private.pem")).unwrap();
    sign(Algorithm::ES256, &key, kid, claims)
}

/// The algorithm-confusion attack: an HS256 token whose HMAC secret is the RSA public
/// key's PEM (what a verifier that trusts the header's `alg` would check it with).
pub fn hs256_with_rsa_public_key(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&fixture("rsa_public.pem")),
        None,
        claims,
    )
}

pub use test_support::jwt::alg_none;

/// `good`'s header and signature around `other`'s payload: a bad signature.
pub fn swapped_payload(good: &str, other: &str) -> String {
    let good: Vec<&str> = good.split('.').collect();
    let other: Vec<&str> = other.split('.').collect();
    format!("{}.{}.{}", good[0], other[1], good[2])
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

/// `x-api-key: <key>`.
pub fn x_api_key(key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(X_API_KEY.clone(), HeaderValue::from_str(key).unwrap());
    headers
}

/// JWT checks with `keys`, the audience and issuer, the default leeway.
pub fn jwt_settings(keys: Vec<JwtKey>) -> JwtSettings {
    JwtSettings {
        keys,
        audience: Some(AUD.to_owned()),
        issuer: Some(ISS.to_owned()),
        leeway_s: DEFAULT_LEEWAY_S,
    }
}

/// The RSA public key of the fixtures.
pub fn rsa_key() -> JwtKey {
    JwtKey::from_public_pem(&fixture("rsa_public.pem")).unwrap()
}

/// An authenticator accepting JWTs checked by `jwt`.
pub fn jwt_auth(jwt: JwtSettings) -> Authenticator {
    Authenticator::new(&AuthSettings {
        mode: AuthMode {
            api_key: false,
            jwt: true,
        },
        keys: KeyStore::default(),
        jwt: Some(jwt),
    })
}

/// The API keys of the tests: `gk_right` (alice, premium, llm:generate), `gk_admin`
/// (ops, admin), `gk_revoked` (mallory, revoked).
pub fn key_store() -> KeyStore {
    let key = |owner: &str, tier: &'static str, scopes: Scopes, raw: &str, revoked: bool| ApiKey {
        owner: owner.to_owned(),
        tier: tier.into(),
        scopes,
        sha256: super::keys::parse_sha256(&sha256_hex(raw)).unwrap(),
        revoked,
    };
    KeyStore::from_keys(vec![
        key(
            "alice",
            "premium",
            Scopes::only(super::Scope::Generate),
            "gk_right",
            false,
        ),
        key(
            "ops",
            "default",
            Scopes::only(super::Scope::Admin),
            "gk_admin",
            false,
        ),
        key("mallory", "default", Scopes::ALL, "gk_revoked", true),
    ])
}

/// An authenticator with `mode`, the test keys, HS256 and the RSA key, on a clock that
/// does not move.
pub fn full_auth(mode: AuthMode) -> Arc<Authenticator> {
    let settings = AuthSettings {
        mode,
        keys: key_store(),
        jwt: Some(jwt_settings(vec![
            JwtKey::hs256(SECRET.as_bytes()).unwrap(),
            rsa_key(),
        ])),
    };
    Arc::new(Authenticator::with_clock(&settings, ManualClock::new()))
}
