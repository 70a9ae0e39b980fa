//! Minting credentials for tests and operators: `gateway keys` (a new API key, printed
//! once, with the `API_KEYS_FILE` entry and the `API_KEYS` entry that hold only its hash)
//! and `gateway token` (an HS256 JWT signed with `JWT_SECRET_KEY`). The pure parts,
//! [`mint_key`] and [`mint_token`], are what the tests call; the commands return the text
//! to print, the binary prints it.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngExt;
use serde::Serialize;

use super::identity::tier_is_valid;
use super::jwt::{JwtKey, KeyError};
use super::keys::{KEY_PREFIX, KeyEntry, KeysFile, sha256_hex, to_hex};
use super::scope::{Scope, Scopes};
use crate::config::Args;

/// Why a credential cannot be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// `gateway token` without a secret.
    #[error("JWT_SECRET_KEY is not set: give it in the environment or as --jwt-secret-key")]
    NoSecret,
    /// A secret too short to sign with.
    #[error("JWT_SECRET_KEY {0}")]
    Secret(#[from] KeyError),
    /// A flag's value that is not valid.
    #[error("--{flag}: {why}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// Why.
        why: String,
    },
    /// jsonwebtoken could not sign, or TOML could not be written.
    #[error("cannot write the credential: {0}")]
    Encoding(String),
}

/// A new API key and its SHA-256 (64 hex digits): `gk_` then 64 hex digits of randomness
/// (256 bits) from the thread's cryptographically secure generator.
pub fn mint_key() -> (String, String) {
    let bytes: [u8; 32] = rand::rng().random();
    let key = format!("{KEY_PREFIX}{}", to_hex(&bytes));
    let hash = sha256_hex(&key);
    (key, hash)
}

/// The claims `gateway token` signs (those the gateway requires, and the optional ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenClaims {
    /// `sub`: who the token names.
    pub sub: String,
    /// `scope`: space-separated scopes.
    pub scope: String,
    /// `tier`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// `iat`, Unix seconds.
    pub iat: u64,
    /// `exp`, Unix seconds.
    pub exp: u64,
    /// `aud`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// `iss`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// `claims` as an HS256 JWT signed with `secret` (at least 32 bytes, as the gateway
/// requires).
pub fn mint_token(secret: &[u8], claims: &TokenClaims) -> Result<String, MintError> {
    JwtKey::hs256(secret)?;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| MintError::Encoding(e.to_string()))
}

/// `gateway keys`: mints an API key.
#[derive(Debug, Clone, clap::Args)]
pub struct KeysArgs {
    /// Who holds the key (the identity in logs and limits).
    #[arg(long)]
    pub owner: String,
    /// Its rate-limit tier.
    #[arg(long, default_value = "default")]
    pub tier: String,
    /// Its scopes, separated by spaces or commas (`llm:generate`, `admin`).
    #[arg(long, default_value = "llm:generate")]
    pub scopes: String,
}

impl KeysArgs {
    /// A new key: the text to print (the key once, then the two entries holding its hash).
    pub fn run(&self) -> Result<String, MintError> {
        let (key, hash) = mint_key();
        let scopes: Vec<String> = split_scopes(&self.scopes).map(str::to_owned).collect();
        let entry = KeyEntry {
            owner: self.owner.trim().to_owned(),
            tier: self.tier.trim().to_ascii_lowercase(),
            scopes,
            sha256: hash,
            revoked: false,
        };
        let checked = entry.to_key().map_err(|why| MintError::Invalid {
            flag: "owner, --tier or --scopes",
            why,
        })?;
        let file = toml::to_string(&KeysFile {
            keys: vec![entry.clone()],
        })
        .map_err(|e| MintError::Encoding(e.to_string()))?;
        Ok(format!(
            "# The new API key, shown this once (the gateway keeps only its hash):\n{key}\n\n\
             # For API_KEYS_FILE:\n{file}\n\
             # Or for API_KEYS (comma-separated entries):\n{}:{}:{}:{}\n",
            checked.owner,
            checked.tier,
            checked
                .scopes
                .iter()
                .map(Scope::as_str)
                .collect::<Vec<_>>()
                .join("+"),
            entry.sha256,
        ))
    }
}

/// `gateway token`: mints an HS256 JWT with `JWT_SECRET_KEY`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// `sub`: who the token names.
    #[arg(long)]
    pub sub: String,
    /// `scope`: space-separated scopes (`llm:generate`, `admin`).
    #[arg(long, default_value = "llm:generate")]
    pub scope: String,
    /// `tier` (`default`, `premium`, `enterprise`…); unset: none (the default tier).
    #[arg(long)]
    pub tier: Option<String>,
    /// Seconds until `exp`.
    #[arg(long, default_value_t = 3600)]
    pub ttl_s: u64,
    /// `aud`; unset: `JWT_AUDIENCE`, if set.
    #[arg(long)]
    pub aud: Option<String>,
    /// `iss`; unset: `JWT_ISSUER`, if set.
    #[arg(long)]
    pub iss: Option<String>,
}

impl TokenArgs {
    /// The claims at `now_unix_s`, `aud` and `iss` defaulting to the gateway's settings
    /// in `args` (so the token passes this gateway's checks).
    pub fn claims(&self, args: &Args, now_unix_s: u64) -> Result<TokenClaims, MintError> {
        let sub = self.sub.trim();
        if sub.is_empty() || sub.chars().any(char::is_control) {
            return Err(invalid("sub", "must be a non-empty name"));
        }
        let scopes = Scopes::parse_all(split_scopes(&self.scope))
            .map_err(|e| invalid("scope", &e.to_string()))?;
        if let Some(tier) = &self.tier
            && !tier_is_valid(tier.trim())
        {
            return Err(invalid("tier", "must be 1 to 64 of `a-z 0-9 _ -`"));
        }
        if self.ttl_s == 0 {
            return Err(invalid("ttl-s", "must be above zero"));
        }
        Ok(TokenClaims {
            sub: sub.to_owned(),
            scope: scopes.to_string(),
            tier: self.tier.as_ref().map(|t| t.trim().to_ascii_lowercase()),
            iat: now_unix_s,
            exp: now_unix_s.saturating_add(self.ttl_s),
            aud: self.aud.clone().or_else(|| args.jwt_audience.clone()),
            iss: self.iss.clone().or_else(|| args.jwt_issuer.clone()),
        })
    }

    /// The token (what to print), signed with `args`' `JWT_SECRET_KEY`.
    pub fn run(&self, args: &Args, now_unix_s: u64) -> Result<String, MintError> {
        let secret = args.jwt_secret_key.as_ref().ok_or(MintError::NoSecret)?;
        let claims = self.claims(args, now_unix_s)?;
        mint_token(secret.as_bytes(), &claims).map(|token| token + "\n")
    }
}

/// The scope names of a flag, separated by spaces or commas.
fn split_scopes(raw: &str) -> impl Iterator<Item = &str> {
    raw.split([' ', ',']).filter(|s| !s.is_empty())
}

fn invalid(flag: &'static str, why: &str) -> MintError {
    MintError::Invalid {
        flag,
        why: why.to_owned(),
    }
}
