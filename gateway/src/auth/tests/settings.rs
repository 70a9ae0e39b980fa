//! `AUTH_MODE` and its settings: what is read, what is a problem, what Debug shows.

use super::*;
use crate::auth::jwt::JwtKey;
use crate::config::Args;
use crate::config::validate::Problems;

fn args(env: &[(&str, &str)]) -> Args {
    Args::from_sources(std::iter::empty::<&str>(), env).unwrap()
}

/// The settings, or the fields of the problems.
fn load(env: &[(&str, &str)]) -> Result<AuthSettings, Vec<String>> {
    let mut problems = Problems::default();
    let settings = AuthSettings::from_args(&args(env), &mut problems);
    let problems: Vec<String> = problems.into_vec().into_iter().map(|p| p.field).collect();
    match settings {
        Some(settings) if problems.is_empty() => Ok(settings),
        _ => Err(problems),
    }
}

fn path(name: &str) -> String {
    fixture_path(name).display().to_string()
}

#[test]
fn modes_parse() {
    for (raw, api_key, jwt) in [
        ("none", false, false),
        ("api_key", true, false),
        ("jwt", false, true),
        ("api_key,jwt", true, true),
        ("jwt, api_key", true, true),
    ] {
        assert_eq!(
            raw.parse::<AuthMode>().unwrap(),
            AuthMode { api_key, jwt },
            "{raw}"
        );
    }
    for raw in ["", "oauth", "none,jwt", "api_key,"] {
        assert!(raw.parse::<AuthMode>().is_err(), "{raw}");
    }
    assert_eq!(
        AuthMode {
            api_key: true,
            jwt: true
        }
        .to_string(),
        "api_key,jwt"
    );
}

#[test]
fn the_lab_default_needs_nothing_and_ignores_what_it_does_not_use() {
    let settings = load(&[("JWT_SECRET_KEY", "short")]).unwrap();
    assert_eq!(settings.mode, AuthMode::NONE);
    assert!(settings.jwt.is_none());
    assert!(settings.keys.is_empty());
    assert!(!Authenticator::new(&settings).enabled());
}

#[test]
fn every_problem_names_its_variable() {
    assert_eq!(load(&[("AUTH_MODE", "oauth")]).unwrap_err(), ["AUTH_MODE"]);
    assert_eq!(
        load(&[("AUTH_MODE", "api_key")]).unwrap_err(),
        ["API_KEYS_FILE"]
    );
    assert_eq!(
        load(&[("AUTH_MODE", "jwt")]).unwrap_err(),
        ["JWT_SECRET_KEY"]
    );
    assert_eq!(
        load(&[("AUTH_MODE", "jwt"), ("JWT_SECRET_KEY", "too-short")]).unwrap_err(),
        ["JWT_SECRET_KEY"]
    );
    let rsa_private = path("rsa_private.pem");
    let missing = path("missing.pem");
    let readme = path("README.md");
    assert_eq!(
        load(&[
            ("AUTH_MODE", "api_key,jwt"),
            ("API_KEYS", "nonsense"),
            ("API_KEYS_FILE", &missing),
            ("JWT_PUBLIC_KEY_FILE", &rsa_private),
            ("JWT_JWKS_FILE", &readme),
            ("JWT_LEEWAY_S", "3601"),
        ])
        .unwrap_err(),
        [
            "API_KEYS_FILE",
            "API_KEYS",
            "JWT_PUBLIC_KEY_FILE",
            "JWT_JWKS_FILE",
            "JWT_LEEWAY_S"
        ]
    );
    assert_eq!(
        load(&[
            ("AUTH_MODE", "jwt"),
            ("JWT_SECRET_KEY", SECRET),
            ("JWT_LEEWAY_S", "soon")
        ])
        .unwrap_err(),
        ["JWT_LEEWAY_S"]
    );
}

#[test]
fn every_key_source_is_read() {
    let pem = path("ec_public.pem");
    let jwks = path("jwks.json");
    let settings = load(&[
        ("AUTH_MODE", "jwt"),
        ("JWT_SECRET_KEY", SECRET),
        ("JWT_PUBLIC_KEY_FILE", &pem),
        ("JWT_JWKS_FILE", &jwks),
        ("JWT_AUDIENCE", AUD),
        ("JWT_ISSUER", " "),
        ("JWT_LEEWAY_S", "5"),
    ])
    .unwrap();
    let jwt = settings.jwt.as_ref().unwrap();
    let algs: Vec<(Algorithm, Option<&str>)> =
        jwt.keys.iter().map(|k| (k.algorithm(), k.kid())).collect();
    assert_eq!(
        algs,
        [
            (Algorithm::HS256, None),
            (Algorithm::ES256, None),
            (Algorithm::RS256, Some("rsa-1")),
            (Algorithm::ES256, Some("ec-1")),
        ]
    );
    assert_eq!(jwt.audience.as_deref(), Some(AUD));
    assert_eq!(jwt.issuer, None);
    assert_eq!(jwt.leeway_s, 5);
    // The same sources give equal settings; another secret does not.
    let again = settings.clone();
    assert_eq!(settings, again);
    let mut other = settings.clone();
    other.jwt.as_mut().unwrap().keys[0] =
        JwtKey::hs256(b"another-secret-another-secret-0123").unwrap();
    assert_ne!(settings, other);
}

#[test]
fn debug_shows_no_secret() {
    let hash = sha256_hex("gk_x");
    let env = format!("alice:default:llm:generate:{hash}");
    let settings = load(&[
        ("AUTH_MODE", "api_key,jwt"),
        ("API_KEYS", &env),
        ("JWT_SECRET_KEY", SECRET),
    ])
    .unwrap();
    let shown = format!("{settings:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains(&hash), "{shown}");
    assert!(
        shown.contains("api_key,jwt") && shown.contains("HS256"),
        "{shown}"
    );
    let auth = Authenticator::new(&settings);
    let shown = format!("{auth:?}");
    assert!(!shown.contains(SECRET) && !shown.contains(&hash), "{shown}");
}
