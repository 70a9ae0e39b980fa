//! The verifier at pinned instants: every refusal, every key kind, tiers, leeway.

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::*;
use crate::auth::jwt::{JwtKey, KeyError, MAX_TOKEN_BYTES};
use crate::auth::{AuthError, AuthMethod, Identity, Scope};

fn check(auth: &Authenticator, token: &str) -> Result<Identity, AuthError> {
    auth.authenticate(&bearer(token), NOW)
}

fn hs_auth() -> Authenticator {
    jwt_auth(jwt_settings(vec![
        JwtKey::hs256(SECRET.as_bytes()).unwrap(),
    ]))
}

fn rsa_auth() -> Authenticator {
    jwt_auth(jwt_settings(vec![rsa_key()]))
}

#[test]
fn a_valid_hs256_token_names_its_subject_and_scopes() {
    let identity = check(&hs_auth(), &hs256(&claims(NOW))).unwrap();
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.tier, "default");
    assert_eq!(identity.method, AuthMethod::Jwt);
    assert!(identity.scopes.contains(Scope::Generate));
    assert!(!identity.scopes.contains(Scope::Admin));
}

#[test]
fn every_refusal_has_its_reason() {
    let auth = hs_auth();
    let c = claims(NOW);
    let cases: Vec<(&str, String, AuthError)> = vec![
        ("not a jwt", "abc".into(), AuthError::Malformed),
        (
            "four parts",
            format!("{}.x", hs256(&c)),
            AuthError::Malformed,
        ),
        ("garbage parts", "a.b.c".into(), AuthError::Malformed),
        (
            "bad signature",
            swapped_payload(&hs256(&c), &hs256(&with(c.clone(), "sub", json!("root")))),
            AuthError::Invalid,
        ),
        (
            "other secret",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-another-secret-0123"),
                None,
                &c,
            ),
            AuthError::Invalid,
        ),
        (
            "expired",
            hs256(&with(c.clone(), "exp", json!(NOW - 3600))),
            AuthError::Expired,
        ),
        (
            "not yet valid",
            hs256(&with(c.clone(), "nbf", json!(NOW + 3600))),
            AuthError::NotYetValid,
        ),
        (
            "issued in the future",
            hs256(&with(c.clone(), "iat", json!(NOW + 3600))),
            AuthError::NotYetValid,
        ),
        (
            "wrong audience",
            hs256(&with(c.clone(), "aud", json!("someone-else"))),
            AuthError::WrongAudience,
        ),
        (
            "no audience",
            hs256(&with(c.clone(), "aud", Value::Null)),
            AuthError::WrongAudience,
        ),
        (
            "wrong issuer",
            hs256(&with(c.clone(), "iss", json!("https://evil.test"))),
            AuthError::WrongIssuer,
        ),
        ("alg none", alg_none(&c), AuthError::Malformed),
        (
            "RS256 token, only a secret configured",
            rs256(None, &c),
            AuthError::Invalid,
        ),
        (
            "no sub",
            hs256(&with(c.clone(), "sub", Value::Null)),
            AuthError::Malformed,
        ),
        (
            "no exp",
            hs256(&with(c.clone(), "exp", Value::Null)),
            AuthError::Malformed,
        ),
        (
            "no iat",
            hs256(&with(c.clone(), "iat", Value::Null)),
            AuthError::Malformed,
        ),
        (
            "no scope",
            hs256(&with(c.clone(), "scope", Value::Null)),
            AuthError::Malformed,
        ),
        (
            "scope not a string",
            hs256(&with(c.clone(), "scope", json!(["llm:generate"]))),
            AuthError::Malformed,
        ),
        (
            "negative exp",
            hs256(&with(c.clone(), "exp", json!(-1))),
            AuthError::Malformed,
        ),
        (
            "empty sub",
            hs256(&with(c.clone(), "sub", json!(""))),
            AuthError::Malformed,
        ),
    ];
    for (name, token, expected) in cases {
        assert_eq!(check(&auth, &token), Err(expected), "{name}");
    }
}

#[test]
fn hs_rs_confusion_is_refused() {
    let token = hs256_with_rsa_public_key(&claims(NOW));
    assert_eq!(check(&rsa_auth(), &token), Err(AuthError::Invalid));
    // The same claims, properly signed, pass: the refusal is the algorithm's.
    assert!(check(&rsa_auth(), &rs256(None, &claims(NOW))).is_ok());
}

#[test]
fn alg_none_is_refused_by_every_verifier() {
    for auth in [hs_auth(), rsa_auth()] {
        assert_eq!(
            check(&auth, &alg_none(&claims(NOW))),
            Err(AuthError::Malformed)
        );
    }
    // Also with a signature part present.
    let token = format!("{}sig", alg_none(&claims(NOW)));
    assert_eq!(check(&hs_auth(), &token), Err(AuthError::Malformed));
}

#[test]
fn rs256_and_es256_from_pem() {
    let ec = JwtKey::from_public_pem(&fixture("ec_public.pem")).unwrap();
    assert_eq!(ec.algorithm(), Algorithm::ES256);
    assert_eq!(rsa_key().algorithm(), Algorithm::RS256);
    let auth = jwt_auth(jwt_settings(vec![rsa_key(), ec]));
    assert_eq!(
        check(&auth, &rs256(None, &claims(NOW))).unwrap().subject,
        "alice"
    );
    assert_eq!(
        check(&auth, &es256(None, &claims(NOW))).unwrap().subject,
        "alice"
    );
    // An ES256 token with only the RSA key: refused.
    assert_eq!(
        check(&rsa_auth(), &es256(None, &claims(NOW))),
        Err(AuthError::Invalid)
    );
}

#[test]
fn jwks_keys_are_picked_by_kid() {
    let json = String::from_utf8(fixture("jwks.json")).unwrap();
    let keys = JwtKey::from_jwks(&json).unwrap();
    assert_eq!(keys.len(), 2);
    let auth = jwt_auth(jwt_settings(keys));
    let c = claims(NOW);
    assert!(check(&auth, &rs256(Some("rsa-1"), &c)).is_ok());
    assert!(check(&auth, &es256(Some("ec-1"), &c)).is_ok());
    // Unknown kid, a kid of the other algorithm, no kid: refused.
    assert_eq!(
        check(&auth, &rs256(Some("rsa-2"), &c)),
        Err(AuthError::Invalid)
    );
    assert_eq!(
        check(&auth, &rs256(Some("ec-1"), &c)),
        Err(AuthError::Invalid)
    );
    assert_eq!(check(&auth, &rs256(None, &c)), Err(AuthError::Invalid));
}

#[test]
fn key_material_is_checked() {
    assert_eq!(
        JwtKey::hs256(b"short").unwrap_err(),
        KeyError::SecretTooShort(5)
    );
    assert_eq!(
        JwtKey::from_public_pem(&fixture("rsa_private.pem")).unwrap_err(),
        KeyError::PrivateKey
    );
    assert_eq!(
        JwtKey::from_public_pem(b"not a pem").unwrap_err(),
        KeyError::NotAPublicKey
    );
    assert!(matches!(
        JwtKey::from_jwks("{").unwrap_err(),
        KeyError::Jwks(_)
    ));
    // Symmetric keys and keys without a kid are not taken from a JWKS.
    let no_usable = r#"{"keys":[
        {"kty":"oct","kid":"h","k":"c2VjcmV0"},
        {"kty":"EC","crv":"P-256","x":"vyoRbhEVluk3KWj59RBhQQ80rsnO7WPPy4rEc4waBPo","y":"f1i9HDNDl5n6RcUACzaEd_pVONdcGXFVKVQGnZkttbI"}
    ]}"#;
    assert_eq!(
        JwtKey::from_jwks(no_usable).unwrap_err(),
        KeyError::NoUsableKey
    );
}

#[test]
fn tiers_are_normalised() {
    let auth = hs_auth();
    let tier_of = |tier: Value| {
        check(&auth, &hs256(&with(claims(NOW), "tier", tier)))
            .unwrap()
            .tier
            .into_owned()
    };
    assert_eq!(tier_of(json!("premium")), "premium");
    assert_eq!(tier_of(json!("Enterprise")), "enterprise");
    assert_eq!(tier_of(json!("standard")), "default");
    assert_eq!(tier_of(json!("STANDARD")), "default");
    assert_eq!(tier_of(json!("gold_plus-2")), "gold_plus-2");
    assert_eq!(tier_of(json!("x".repeat(65))), "default");
    assert_eq!(tier_of(json!("prem ium")), "default");
    assert_eq!(tier_of(json!("prémium")), "default");
    assert_eq!(tier_of(json!(42)), "default");
    assert_eq!(tier_of(Value::Null), "default");
}

#[test]
fn the_leeway_bounds_every_instant() {
    let auth = hs_auth(); // leeway 30 s
    let at = |key: &str, value: u64| check(&auth, &hs256(&with(claims(NOW), key, json!(value))));
    assert!(at("exp", NOW - 29).is_ok());
    assert_eq!(at("exp", NOW - 30), Err(AuthError::Expired));
    assert!(at("nbf", NOW + 30).is_ok());
    assert_eq!(at("nbf", NOW + 31), Err(AuthError::NotYetValid));
    assert!(at("iat", NOW + 30).is_ok());
    assert_eq!(at("iat", NOW + 31), Err(AuthError::NotYetValid));
    // Without leeway, exp is exclusive.
    let mut strict = jwt_settings(vec![JwtKey::hs256(SECRET.as_bytes()).unwrap()]);
    strict.leeway_s = 0;
    let strict = jwt_auth(strict);
    let token = hs256(&with(claims(NOW), "exp", json!(NOW)));
    assert_eq!(check(&strict, &token), Err(AuthError::Expired));
    // Fractional NumericDates are read.
    let token = hs256(&with(claims(NOW), "exp", json!(NOW as f64 + 10.5)));
    assert!(check(&strict, &token).is_ok());
}

#[test]
fn audience_lists_and_unchecked_claims() {
    let auth = hs_auth();
    let token = hs256(&with(claims(NOW), "aud", json!(["other", AUD])));
    assert!(check(&auth, &token).is_ok());
    // No audience or issuer configured: neither is checked.
    let mut open = jwt_settings(vec![JwtKey::hs256(SECRET.as_bytes()).unwrap()]);
    open.audience = None;
    open.issuer = None;
    let open = jwt_auth(open);
    let bare = with(with(claims(NOW), "aud", json!("x")), "iss", Value::Null);
    assert!(check(&open, &hs256(&bare)).is_ok());
}

#[test]
fn scopes_come_from_the_space_separated_claim() {
    let auth = hs_auth();
    let scopes = |scope: &str| {
        check(&auth, &hs256(&with(claims(NOW), "scope", json!(scope))))
            .unwrap()
            .scopes
    };
    assert_eq!(scopes("llm:generate admin"), Scopes::ALL);
    assert_eq!(scopes("openid admin profile"), Scopes::only(Scope::Admin));
    assert_eq!(scopes(""), Scopes::EMPTY);
}

#[test]
fn an_over_long_token_is_malformed_unread() {
    let padding = "x".repeat(MAX_TOKEN_BYTES);
    let token = hs256(&with(claims(NOW), "pad", json!(padding)));
    assert!(token.len() > MAX_TOKEN_BYTES);
    assert_eq!(check(&hs_auth(), &token), Err(AuthError::Malformed));
}

#[test]
fn the_credential_must_be_a_single_bearer() {
    let auth = hs_auth();
    let token = hs256(&claims(NOW));
    assert_eq!(
        auth.authenticate(&HeaderMap::new(), NOW),
        Err(AuthError::Missing)
    );
    let mut basic = HeaderMap::new();
    basic.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Basic YWI6Y2Q="),
    );
    assert_eq!(auth.authenticate(&basic, NOW), Err(AuthError::Malformed));
    let mut empty = HeaderMap::new();
    empty.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
    assert_eq!(auth.authenticate(&empty, NOW), Err(AuthError::Malformed));
    let mut twice = bearer(&token);
    twice.append(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    assert_eq!(auth.authenticate(&twice, NOW), Err(AuthError::Malformed));
    let mut lower = HeaderMap::new();
    lower.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("bearer {token}")).unwrap(),
    );
    assert!(auth.authenticate(&lower, NOW).is_ok());
    // JWT only: a key in x-api-key is no credential this gateway accepts.
    assert_eq!(
        auth.authenticate(&x_api_key("gk_right"), NOW),
        Err(AuthError::Missing)
    );
}
