//! API keys: where they come from (`API_KEYS_FILE`, a TOML file of `[[keys]]`, and
//! `API_KEYS`, comma-separated `OWNER:TIER:SCOPE+SCOPE:SHA256HEX`) and how a presented key
//! is checked. Only SHA-256 hashes are held, never a key in clear; a presented key is hashed
//! once and compared with every stored hash in constant time, without stopping at a match,
//! so the time taken says nothing about which key (or how much of it) matched. At most
//! [`MAX_KEYS`] keys: the scan is linear.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::error::AuthError;
use super::identity::{DEFAULT_TIER, normalise_tier, tier_is_valid};
use super::scope::{Scope, Scopes};
use crate::config::validate::Problems;

/// The most keys the gateway holds (each request compares against all of them).
pub const MAX_KEYS: usize = 10_000;
/// The prefix of the keys `gateway keys` mints, so that a bearer value is recognised as a
/// key rather than a JWT.
pub const KEY_PREFIX: &str = "gk_";
/// The longest owner name.
pub const MAX_OWNER_CHARS: usize = 128;

/// One API key, by its hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Who holds it (the identity's subject).
    pub owner: String,
    /// Its rate-limit tier, normalised.
    pub tier: Cow<'static, str>,
    /// What it may do.
    pub scopes: Scopes,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// Refused like an unknown key when true.
    pub revoked: bool,
}

impl fmt::Debug for ApiKey {
    /// Without the hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("owner", &self.owner)
            .field("tier", &self.tier)
            .field("scopes", &self.scopes)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// Every configured key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KeyStore {
    keys: Vec<ApiKey>,
}

impl fmt::Debug for KeyStore {
    /// The count only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// One `[[keys]]` table of `API_KEYS_FILE` (also what `gateway keys` prints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Who holds the key.
    pub owner: String,
    /// Rate-limit tier [default: `default`].
    #[serde(default = "default_tier")]
    pub tier: String,
    /// Scopes [default: `["llm:generate"]`].
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// SHA-256 of the key, 64 hex digits.
    pub sha256: String,
    /// Whether the key is revoked [default: false].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
}

/// `API_KEYS_FILE`'s layout.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// The keys.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

fn default_tier() -> String {
    DEFAULT_TIER.to_owned()
}

fn default_scopes() -> Vec<String> {
    vec![Scope::Generate.as_str().to_owned()]
}

impl KeyStore {
    /// The keys of `file` (`API_KEYS_FILE`) and `env` (`API_KEYS`), each problem noted
    /// under its variable; a hash given twice and more than [`MAX_KEYS`] keys are problems.
    pub fn load(file: Option<&Path>, env: Option<&str>, problems: &mut Problems) -> Self {
        let mut keys = Vec::new();
        if let Some(path) = file {
            keys.extend(read_file(path, problems));
        }
        if let Some(raw) = env {
            keys.extend(parse_env(raw, problems));
        }
        if keys.len() > MAX_KEYS {
            problems.push(
                if env.is_some() {
                    "API_KEYS"
                } else {
                    "API_KEYS_FILE"
                },
                format!("{} keys: at most {MAX_KEYS}", keys.len()),
            );
        }
        let mut seen = HashSet::new();
        if keys.iter().any(|key| !seen.insert(key.sha256)) {
            problems.push(
                if file.is_some() {
                    "API_KEYS_FILE"
                } else {
                    "API_KEYS"
                },
                "the same key hash is given twice",
            );
        }
        Self { keys }
    }

    /// A store of `keys` (tests, tools).
    pub fn from_keys(keys: Vec<ApiKey>) -> Self {
        Self { keys }
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key `presented` is, when it is one and not revoked. Hashes it once and compares
    /// the hash with every stored one in constant time; `Invalid` for an unknown key,
    /// `Revoked` for a revoked one.
    pub fn verify(&self, presented: &str) -> Result<&ApiKey, AuthError> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, key) in self.keys.iter().enumerate() {
            let matches = key.sha256.ct_eq(&hash);
            index = u64::conditional_select(&index, &(i as u64), matches);
            found |= matches;
        }
        if !bool::from(found) {
            return Err(AuthError::Invalid);
        }
        let key = usize::try_from(index)
            .ok()
            .and_then(|i| self.keys.get(i))
            .ok_or(AuthError::Invalid)?;
        if key.revoked {
            return Err(AuthError::Revoked);
        }
        Ok(key)
    }
}

/// The keys of the TOML file at `path`.
fn read_file(path: &Path, problems: &mut Problems) -> Vec<ApiKey> {
    const FIELD: &str = "API_KEYS_FILE";
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            problems.push(FIELD, format!("cannot read {}: {e}", path.display()));
            return Vec::new();
        }
    };
    let file: KeysFile = match toml::from_str(&text) {
        Ok(file) => file,
        Err(e) => {
            problems.push(FIELD, format!("{}: {}", path.display(), e.message()));
            return Vec::new();
        }
    };
    file.keys
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| match entry.to_key() {
            Ok(key) => Some(key),
            Err(why) => {
                problems.push(FIELD, format!("{}: keys[{i}]: {why}", path.display()));
                None
            }
        })
        .collect()
}

/// The keys of `API_KEYS`: comma-separated `OWNER:TIER:SCOPE+SCOPE:SHA256HEX` (a scope
/// may hold a colon, `llm:generate`: the owner and tier are the first two fields, the hash
/// the last, the scopes what lies between; an empty tier or scope list takes the default).
pub fn parse_env(raw: &str, problems: &mut Problems) -> Vec<ApiKey> {
    raw.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .filter_map(|(i, entry)| match parse_env_entry(entry) {
            Ok(key) => Some(key),
            Err(why) => {
                problems.push("API_KEYS", format!("entry {}: {why}", i + 1));
                None
            }
        })
        .collect()
}

/// One `OWNER:TIER:SCOPE+SCOPE:SHA256HEX`.
fn parse_env_entry(entry: &str) -> Result<ApiKey, String> {
    const SHAPE: &str = "not OWNER:TIER:SCOPE+SCOPE:SHA256HEX";
    let (rest, sha256) = entry.rsplit_once(':').ok_or(SHAPE)?;
    let (owner, rest) = rest.split_once(':').ok_or(SHAPE)?;
    let (tier, scopes) = rest.split_once(':').ok_or(SHAPE)?;
    let entry = KeyEntry {
        owner: owner.to_owned(),
        tier: if tier.is_empty() {
            default_tier()
        } else {
            tier.to_owned()
        },
        scopes: if scopes.is_empty() {
            default_scopes()
        } else {
            scopes.split('+').map(str::to_owned).collect()
        },
        sha256: sha256.to_owned(),
        revoked: false,
    };
    entry.to_key()
}

impl KeyEntry {
    /// The entry checked: an owner of 1 to [`MAX_OWNER_CHARS`] characters without
    /// control characters, `:` or `,`; a tier of `a-z 0-9 _ -`; known scopes; 64 hex digits.
    pub fn to_key(&self) -> Result<ApiKey, String> {
        let owner = self.owner.trim();
        if owner.is_empty()
            || owner.chars().count() > MAX_OWNER_CHARS
            || owner
                .chars()
                .any(|c| c.is_control() || c == ':' || c == ',')
        {
            return Err(format!(
                "owner must be 1 to {MAX_OWNER_CHARS} characters, without `:`, `,` or control characters"
            ));
        }
        if !tier_is_valid(self.tier.trim()) {
            return Err("tier must be 1 to 64 of `a-z 0-9 _ -`".to_owned());
        }
        let scopes =
            Scopes::parse_all(self.scopes.iter().map(String::as_str)).map_err(|e| e.to_string())?;
        let sha256 = parse_sha256(&self.sha256)
            .ok_or("sha256 must be 64 hex digits (the SHA-256 of the key)")?;
        Ok(ApiKey {
            owner: owner.to_owned(),
            tier: normalise_tier(&self.tier),
            scopes,
            sha256,
            revoked: self.revoked,
        })
    }
}

/// `hex` (64 hex digits, any case) as 32 bytes.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

/// `bytes` as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The SHA-256 of `key`, as 64 lowercase hex digits (what the key files hold).
pub fn sha256_hex(key: &str) -> String {
    to_hex(&Sha256::digest(key.as_bytes()))
}
