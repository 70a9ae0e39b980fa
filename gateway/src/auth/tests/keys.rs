//! API keys: lookup by hash, revocation, both headers, both sources, both modes.

use std::io::Write as _;

use super::*;
use crate::auth::keys::{KeyStore, MAX_KEYS, parse_env};
use crate::auth::{AuthError, AuthMethod, Scope};
use crate::config::validate::Problems;

const KEYS: AuthMode = AuthMode {
    api_key: true,
    jwt: false,
};
const BOTH: AuthMode = AuthMode {
    api_key: true,
    jwt: true,
};

#[test]
fn a_right_key_names_its_owner_through_either_header() {
    let auth = full_auth(KEYS);
    for headers in [bearer("gk_right"), x_api_key("gk_right")] {
        let identity = auth.authenticate(&headers, NOW).unwrap();
        assert_eq!(identity.subject, "alice");
        assert_eq!(identity.tier, "premium");
        assert_eq!(identity.scopes, Scopes::only(Scope::Generate));
        assert_eq!(identity.method, AuthMethod::ApiKey);
    }
}

#[test]
fn unknown_and_revoked_keys_are_refused() {
    let auth = full_auth(KEYS);
    for headers in [bearer("gk_wrong"), x_api_key("gk_wrong")] {
        assert_eq!(auth.authenticate(&headers, NOW), Err(AuthError::Invalid));
    }
    for headers in [bearer("gk_revoked"), x_api_key("gk_revoked")] {
        assert_eq!(auth.authenticate(&headers, NOW), Err(AuthError::Revoked));
    }
    // A key is matched whole: a prefix or a longer value is another key.
    assert_eq!(
        auth.authenticate(&bearer("gk_righ"), NOW),
        Err(AuthError::Invalid)
    );
    assert_eq!(
        auth.authenticate(&bearer("gk_rightt"), NOW),
        Err(AuthError::Invalid)
    );
}

#[test]
fn with_both_modes_a_bearer_value_is_a_jwt_when_it_has_two_dots() {
    let auth = full_auth(BOTH);
    let key = auth.authenticate(&bearer("gk_right"), NOW).unwrap();
    assert_eq!(key.method, AuthMethod::ApiKey);
    let now = auth.now_unix_s();
    let jwt = auth
        .authenticate(&bearer(&hs256(&claims(now))), now)
        .unwrap();
    assert_eq!(jwt.method, AuthMethod::Jwt);
    // With keys only, a JWT is just an unknown key.
    let keys_only = full_auth(KEYS);
    assert_eq!(
        keys_only.authenticate(&bearer(&hs256(&claims(now))), now),
        Err(AuthError::Invalid)
    );
    // Authorization wins over x-api-key.
    let mut headers = bearer("gk_admin");
    headers.insert(X_API_KEY.clone(), HeaderValue::from_static("gk_right"));
    assert_eq!(auth.authenticate(&headers, NOW).unwrap().subject, "ops");
}

#[test]
fn keys_load_from_the_file_and_the_environment() {
    let mut file = tempfile();
    write!(
        file.1,
        r#"
[[keys]]
owner = "alice"
sha256 = "{}"

[[keys]]
owner = "ops"
tier = "Enterprise"
scopes = ["admin", "llm:generate"]
sha256 = "{}"
revoked = true
"#,
        sha256_hex("gk_a"),
        sha256_hex("gk_b").to_uppercase()
    )
    .unwrap();
    let env = format!(
        "carol:standard:llm:generate+admin:{},dave:::{}",
        sha256_hex("gk_c"),
        sha256_hex("gk_d")
    );
    let mut problems = Problems::default();
    let store = KeyStore::load(Some(&file.0), Some(&env), &mut problems);
    assert!(problems.into_vec().is_empty());
    assert_eq!(store.len(), 4);
    let a = store.verify("gk_a").unwrap();
    assert_eq!(
        (a.tier.as_ref(), a.scopes),
        ("default", Scopes::only(Scope::Generate))
    );
    assert_eq!(store.verify("gk_b"), Err(AuthError::Revoked));
    let c = store.verify("gk_c").unwrap();
    assert_eq!(
        (c.owner.as_str(), c.tier.as_ref(), c.scopes),
        ("carol", "default", Scopes::ALL)
    );
    let d = store.verify("gk_d").unwrap();
    assert_eq!(
        (d.tier.as_ref(), d.scopes),
        ("default", Scopes::only(Scope::Generate))
    );
    std::fs::remove_file(&file.0).unwrap();
}

#[test]
fn bad_entries_are_problems_naming_their_variable() {
    let hash = sha256_hex("gk_x");
    let cases = [
        "alice:default:llm:generate",
        &format!("alice:default:llm:generate:{}", &hash[..63]),
        &format!("alice:default:llm:generate:{}z", &hash[..63]),
        &format!("alice:default:root:{hash}"),
        &format!(":default:llm:generate:{hash}"),
        &format!("alice:pre mium:llm:generate:{hash}"),
    ];
    for case in cases {
        let mut problems = Problems::default();
        assert!(parse_env(case, &mut problems).is_empty(), "{case}");
        let problems = problems.into_vec();
        assert_eq!(problems.len(), 1, "{case}");
        assert_eq!(problems[0].field, "API_KEYS");
        assert!(!problems[0].message.contains(&hash), "no hash echoed");
    }
    let mut problems = Problems::default();
    let twice = format!("a::llm:generate:{hash},b::admin:{hash}");
    KeyStore::load(None, Some(&twice), &mut problems);
    assert_eq!(
        problems.into_vec()[0].message,
        "the same key hash is given twice"
    );

    let mut file = tempfile();
    write!(
        file.1,
        "[[keys]]\nowner = \"a\"\nsha256 = \"{hash}\"\ncolour = \"red\"\n"
    )
    .unwrap();
    let mut problems = Problems::default();
    KeyStore::load(Some(&file.0), None, &mut problems);
    let problems = problems.into_vec();
    assert_eq!(problems[0].field, "API_KEYS_FILE");
    std::fs::remove_file(&file.0).unwrap();
}

#[test]
fn more_than_the_limit_is_a_problem() {
    let env: Vec<String> = (0..=MAX_KEYS)
        .map(|i| format!("k{i}:::{}", sha256_hex(&i.to_string())))
        .collect();
    let mut problems = Problems::default();
    let store = KeyStore::load(None, Some(&env.join(",")), &mut problems);
    assert_eq!(store.len(), MAX_KEYS + 1);
    let problems = problems.into_vec();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field, "API_KEYS");
}

#[test]
fn debug_never_shows_a_hash() {
    let store = key_store();
    let shown = format!("{store:?} {:?}", store.verify("gk_right").unwrap());
    assert!(!shown.contains(&sha256_hex("gk_right")), "{shown}");
    assert!(!shown.contains("sha256"), "{shown}");
}

/// A fresh file in the temporary directory.
fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("gateway-keys-{}.toml", uuid::Uuid::new_v4()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}
