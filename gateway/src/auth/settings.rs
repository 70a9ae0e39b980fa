//! `AUTH_MODE` and the credentials it needs, typed and checked once ([`AuthSettings`]):
//! every problem is noted under its variable, the key files are read and parsed here, so
//! that a gateway that starts has usable keys. Settings of a mode that is off are not read
//! (the lab may set `JWT_SECRET_KEY` while leaving `AUTH_MODE=none`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::jwt::{JwtKey, JwtSettings};
use super::keys::KeyStore;
use crate::config::Args;
use crate::config::validate::Problems;

/// The most clock skew `JWT_LEEWAY_S` may allow, in seconds.
pub const MAX_LEEWAY_S: u64 = 600;

/// Which credentials are accepted (`AUTH_MODE`): none (anonymous), API keys, JWTs, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthMode {
    /// API keys accepted.
    pub api_key: bool,
    /// JWTs accepted.
    pub jwt: bool,
}

/// An `AUTH_MODE` that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not none, api_key, jwt or api_key,jwt")]
pub struct UnknownAuthMode(pub String);

impl AuthMode {
    /// Anonymous callers (the lab's default).
    pub const NONE: AuthMode = AuthMode {
        api_key: false,
        jwt: false,
    };

    /// Whether any credential is required.
    pub const fn enabled(self) -> bool {
        self.api_key || self.jwt
    }
}

impl FromStr for AuthMode {
    type Err = UnknownAuthMode;

    /// `none`, `api_key`, `jwt`, `api_key,jwt` (or `jwt,api_key`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownAuthMode(s.to_owned());
        if s.trim() == "none" {
            return Ok(Self::NONE);
        }
        let mut mode = Self::NONE;
        for part in s.split(',').map(str::trim) {
            match part {
                "api_key" => mode.api_key = true,
                "jwt" => mode.jwt = true,
                _ => return Err(unknown()),
            }
        }
        Ok(mode)
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.api_key, self.jwt) {
            (false, false) => "none",
            (true, false) => "api_key",
            (false, true) => "jwt",
            (true, true) => "api_key,jwt",
        })
    }
}

/// Authentication, typed: the mode and the key material of the credentials it accepts.
#[derive(Clone, PartialEq, Default)]
pub struct AuthSettings {
    /// `AUTH_MODE`.
    pub mode: AuthMode,
    /// The API keys (hashes only); empty unless the mode accepts keys.
    pub keys: KeyStore,
    /// The JWT keys and checks; `None` unless the mode accepts JWTs.
    pub jwt: Option<JwtSettings>,
}

impl fmt::Debug for AuthSettings {
    /// The mode, the number of keys, the JWT algorithms and checks: no secret, no hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("mode", &self.mode.to_string())
            .field("api_keys", &self.keys.len())
            .field("jwt", &self.jwt)
            .finish()
    }
}

impl AuthSettings {
    /// The settings of `args`, or `None` with every problem noted in `problems` (under
    /// `AUTH_MODE`, `API_KEYS_FILE`, `API_KEYS`, `JWT_SECRET_KEY`, `JWT_PUBLIC_KEY_FILE`,
    /// `JWT_JWKS_FILE`, `JWT_LEEWAY_S`). A mode that accepts keys without any key, or JWTs
    /// without any key material, is a problem; so is an HS256 secret under 32 bytes.
    pub fn from_args(args: &Args, problems: &mut Problems) -> Option<AuthSettings> {
        let mut found = Problems::default();
        let mode = args.auth_mode.parse::<AuthMode>().unwrap_or_else(|e| {
            found.push("AUTH_MODE", e.to_string());
            AuthMode::NONE
        });
        let keys = if mode.api_key {
            api_keys(args, &mut found)
        } else {
            KeyStore::default()
        };
        let jwt = mode.jwt.then(|| jwt(args, &mut found));
        let found = found.into_vec();
        let ok = found.is_empty();
        for problem in found {
            problems.push(problem.field, problem.message);
        }
        ok.then_some(AuthSettings { mode, keys, jwt })
    }
}

/// `API_KEYS_FILE` and `API_KEYS`: at least one key.
fn api_keys(args: &Args, p: &mut Problems) -> KeyStore {
    let mut local = Problems::default();
    let keys = KeyStore::load(
        args.api_keys_file.as_deref(),
        args.api_keys.as_deref(),
        &mut local,
    );
    let local = local.into_vec();
    if local.is_empty() && keys.is_empty() {
        p.push(
            "API_KEYS_FILE",
            "AUTH_MODE accepts API keys but none is given: set API_KEYS_FILE or API_KEYS",
        );
    }
    for problem in local {
        p.push(problem.field, problem.message);
    }
    keys
}

/// `JWT_SECRET_KEY`, `JWT_PUBLIC_KEY_FILE`, `JWT_JWKS_FILE`, `JWT_AUDIENCE`,
/// `JWT_ISSUER` and `JWT_LEEWAY_S`: at least one key.
fn jwt(args: &Args, p: &mut Problems) -> JwtSettings {
    let mut keys = Vec::new();
    if let Some(secret) = &args.jwt_secret_key {
        match JwtKey::hs256(secret.as_bytes()) {
            Ok(key) => keys.push(key),
            Err(e) => p.push("JWT_SECRET_KEY", e.to_string()),
        }
    }
    if let Some(path) = &args.jwt_public_key_file
        && let Some(pem) = read(p, "JWT_PUBLIC_KEY_FILE", path)
    {
        match JwtKey::from_public_pem(&pem) {
            Ok(key) => keys.push(key),
            Err(e) => p.push("JWT_PUBLIC_KEY_FILE", format!("{} {e}", path.display())),
        }
    }
    if let Some(path) = &args.jwt_jwks_file
        && let Some(json) = read(p, "JWT_JWKS_FILE", path)
    {
        match JwtKey::from_jwks(&String::from_utf8_lossy(&json)) {
            Ok(found) => keys.extend(found),
            Err(e) => p.push("JWT_JWKS_FILE", format!("{} {e}", path.display())),
        }
    }
    let given = args.jwt_secret_key.is_some()
        || args.jwt_public_key_file.is_some()
        || args.jwt_jwks_file.is_some();
    if !given {
        p.push(
            "JWT_SECRET_KEY",
            "AUTH_MODE accepts JWTs but no key is given: set JWT_SECRET_KEY, \
             JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE",
        );
    }
    let leeway_s = p
        .parse::<u64>(
            "JWT_LEEWAY_S",
            &args.jwt_leeway_s,
            "a whole number of seconds",
        )
        .unwrap_or(0);
    if leeway_s > MAX_LEEWAY_S {
        p.push(
            "JWT_LEEWAY_S",
            format!("must be 0 to {MAX_LEEWAY_S} seconds"),
        );
    }
    JwtSettings {
        keys,
        audience: non_empty(args.jwt_audience.as_deref()),
        issuer: non_empty(args.jwt_issuer.as_deref()),
        leeway_s,
    }
}

/// The file at `path`, or `None` with a problem under `field`.
fn read(p: &mut Problems, field: &str, path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| p.push(field, format!("cannot read {}: {e}", path.display())))
        .ok()
}

/// `raw` trimmed, `None` when empty.
fn non_empty(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
