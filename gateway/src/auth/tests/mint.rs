//! `gateway keys` and `gateway token`: what they mint passes the gateway's checks.

use super::*;
use crate::auth::keys::{KEY_PREFIX, KeysFile, parse_env};
use crate::auth::mint::{KeysArgs, MintError, TokenArgs, TokenClaims, mint_key, mint_token};
use crate::auth::{AuthMethod, Scope};
use crate::config::Args;
use crate::config::validate::Problems;

#[test]
fn a_minted_key_is_prefixed_random_hex_with_its_hash() {
    let (key, hash) = mint_key();
    let hex = key.strip_prefix(KEY_PREFIX).unwrap();
    assert_eq!(hex.len(), 64);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(hash, sha256_hex(&key));
    assert_ne!(mint_key().0, key);
}

#[test]
fn keys_prints_the_key_once_and_entries_that_load() {
    let out = KeysArgs {
        owner: "alice".into(),
        tier: "Premium".into(),
        scopes: "llm:generate admin".into(),
    }
    .run()
    .unwrap();
    let key = out
        .lines()
        .find(|l| l.starts_with(KEY_PREFIX))
        .unwrap()
        .to_owned();
    assert_eq!(out.matches(&key).count(), 1, "the key is printed once");
    // The TOML part loads as a keys file.
    let toml_part: String = out
        .split("# For API_KEYS_FILE:\n")
        .nth(1)
        .unwrap()
        .split("# Or")
        .next()
        .unwrap()
        .to_owned();
    let file: KeysFile = toml::from_str(&toml_part).unwrap();
    let entry = file.keys[0].to_key().unwrap();
    assert_eq!(
        entry.sha256,
        super::super::keys::parse_sha256(&sha256_hex(&key)).unwrap()
    );
    assert_eq!(
        (entry.tier.as_ref(), entry.scopes),
        ("premium", Scopes::ALL)
    );
    // The env entry loads and verifies the key.
    let env_line = out.lines().last().unwrap();
    let mut problems = Problems::default();
    let store = KeyStore::from_keys(parse_env(env_line, &mut problems));
    assert!(problems.into_vec().is_empty());
    assert_eq!(store.verify(&key).unwrap().owner, "alice");

    let bad = KeysArgs {
        owner: "a:b".into(),
        tier: "default".into(),
        scopes: "llm:generate".into(),
    };
    assert!(matches!(bad.run(), Err(MintError::Invalid { .. })));
}

#[test]
fn a_minted_token_passes_the_gateway() {
    let args = Args::from_sources(
        std::iter::empty::<&str>(),
        &[
            ("JWT_SECRET_KEY", SECRET),
            ("JWT_AUDIENCE", AUD),
            ("JWT_ISSUER", ISS),
        ],
    )
    .unwrap();
    let token_args = TokenArgs {
        sub: "bob".into(),
        scope: "llm:generate admin".into(),
        tier: Some("Enterprise".into()),
        ttl_s: 60,
        aud: None,
        iss: None,
    };
    let token = token_args.run(&args, NOW).unwrap();
    let auth = jwt_auth(jwt_settings(vec![
        JwtKey::hs256(SECRET.as_bytes()).unwrap(),
    ]));
    let identity = auth.authenticate(&bearer(token.trim()), NOW).unwrap();
    assert_eq!(identity.subject, "bob");
    assert_eq!(identity.tier, "enterprise");
    assert_eq!(identity.scopes, Scopes::ALL);
    assert_eq!(identity.method, AuthMethod::Jwt);
    // It expires after its ttl.
    assert!(
        auth.authenticate(&bearer(token.trim()), NOW + 60 + 30)
            .is_err()
    );
}

#[test]
fn tokens_need_a_long_enough_secret_and_valid_flags() {
    let claims = TokenClaims {
        sub: "bob".into(),
        scope: Scope::Generate.as_str().into(),
        tier: None,
        iat: NOW,
        exp: NOW + 1,
        aud: None,
        iss: None,
    };
    assert!(matches!(
        mint_token(b"short", &claims),
        Err(MintError::Secret(_))
    ));
    let no_secret = Args::from_sources(std::iter::empty::<&str>(), &[]).unwrap();
    let token_args = |scope: &str| TokenArgs {
        sub: "bob".into(),
        scope: scope.into(),
        tier: None,
        ttl_s: 60,
        aud: None,
        iss: None,
    };
    if no_secret.jwt_secret_key.is_none() {
        assert!(matches!(
            token_args("llm:generate").run(&no_secret, NOW),
            Err(MintError::NoSecret)
        ));
    }
    assert!(matches!(
        token_args("llm:generat").claims(&no_secret, NOW),
        Err(MintError::Invalid { flag: "scope", .. })
    ));
}
