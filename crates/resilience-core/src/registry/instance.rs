//! What the registry stores about one running instance, and the base-URL normalization that
//! decides when two instances are "the same" upstream.
//!
//! Normalization is deliberately small and strict instead of a full URL parser: a base URL is
//! `http(s)://host[:port][/path]` with no credentials, query or fragment. Scheme and host are
//! lowercased, a default port (80 for http, 443 for https) and trailing slashes are dropped, so
//! `HTTP://LLM-1:80/` and `http://llm-1` deduplicate to one instance.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The tier an instance serves when its metadata names none.
pub const DEFAULT_TIER: &str = "primary";

/// Where an [`Instance`] was learnt from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceSource {
    /// From configuration (`LLM_SERVICE_URLS` or a static list).
    Static,
    /// From the dynamic service registry; the default when a stored entry omits the field.
    #[default]
    Registry,
}

/// One running instance of a service, as stored in and listed from a registry.
///
/// Serialized as the JSON value of the registry entry. `source` defaults to
/// [`InstanceSource::Registry`] and `registered_at_ms` to 0 when an entry omits them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The instance id (the llm-service's `SERVICE_ID`), unique within its service.
    pub id: String,
    /// The service name, e.g. `llm-service`.
    pub service: String,
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8001`.
    pub url: String,
    /// Free-form labels; well-known keys are `model`, `tier` and `version`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Where this record came from.
    #[serde(default)]
    pub source: InstanceSource,
    /// When the instance (last) registered, in Unix milliseconds; 0 when unknown.
    #[serde(default)]
    pub registered_at_ms: u64,
}

impl Instance {
    /// A registry instance with no metadata; `url` is stored as given (normalized on register).
    pub fn new(service: impl Into<String>, id: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            service: service.into(),
            url: url.into(),
            metadata: BTreeMap::new(),
            source: InstanceSource::Registry,
            registered_at_ms: 0,
        }
    }

    /// Adds (or replaces) one metadata label; for building instances fluently.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The `tier` label, or [`DEFAULT_TIER`] (`primary`) when absent.
    pub fn tier(&self) -> &str {
        self.metadata
            .get("tier")
            .map_or(DEFAULT_TIER, String::as_str)
    }

    /// The `model` label, if the instance announced one.
    pub fn model(&self) -> Option<&str> {
        self.metadata.get("model").map(String::as_str)
    }

    /// The normalized form of `url` (see [`normalize_base_url`]); fails like it does.
    pub fn normalized_url(&self) -> Result<String> {
        normalize_base_url(&self.url)
    }

    /// A copy fit to be stored by a dynamic registry: non-empty service and id without
    /// whitespace, a normalized URL and `source: Registry`.
    ///
    /// Fails with [`Error::InvalidConfig`] naming `instance.service`, `instance.id` or
    /// `instance.url`.
    pub(crate) fn validated_for_registry(&self) -> Result<Self> {
        validate_name("instance.service", &self.service)?;
        if self.service.contains(':') {
            // Keys are `service:<name>:<id>`: a colon in the name would let two instances
            // of different services share a key.
            return Err(Error::invalid_config(
                "instance.service",
                format!("`{}` must not contain `:`", self.service),
            ));
        }
        validate_name("instance.id", &self.id)?;
        let url = parse_base_url(&self.url)
            .map_err(|reason| Error::invalid_config("instance.url", reason))?
            .to_string();
        Ok(Self {
            url,
            source: InstanceSource::Registry,
            ..self.clone()
        })
    }
}

/// Normalizes a base URL: trims it, lowercases scheme and host, drops a default port and
/// trailing slashes. Runs wherever instances are compared or stored.
///
/// Fails with [`Error::InvalidConfig`] (setting `url`) naming the offending value when the
/// scheme is not http/https, the host is missing or malformed, the port is not a number in
/// 1..=65535, or the URL carries credentials, a query or a fragment.
pub fn normalize_base_url(raw: &str) -> Result<String> {
    parse_base_url(raw)
        .map(|url| url.to_string())
        .map_err(|reason| Error::invalid_config("url", reason))
}

fn validate_name(setting: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid_config(setting, "must not be empty"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid_config(
            setting,
            format!("`{value}` must not contain whitespace"),
        ));
    }
    Ok(())
}

/// A parsed base URL; its `Display` is the normalized form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    scheme: &'static str,
    /// Lowercased; IPv6 literals keep their brackets.
    host: String,
    port: Option<u16>,
    /// Empty or starting with `/`, never ending with `/`.
    path: String,
}

impl BaseUrl {
    fn default_port(&self) -> u16 {
        if self.scheme == "https" { 443 } else { 80 }
    }

    /// `host:port` with the effective port, plus the path when there is one; the id given to
    /// instances that only have a URL.
    pub(crate) fn host_port_id(&self) -> String {
        let port = self.port.unwrap_or_else(|| self.default_port());
        format!("{}:{port}{}", self.host, self.path)
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port.filter(|&p| p != self.default_port()) {
            write!(f, ":{port}")?;
        }
        f.write_str(&self.path)
    }
}

/// Parses a base URL; the error is a sentence naming the value.
pub(crate) fn parse_base_url(raw: &str) -> std::result::Result<BaseUrl, String> {
    let trimmed = raw.trim();
    let bad = |why: &str| format!("`{trimmed}` is not a valid base URL: {why}");
    if trimmed.is_empty() {
        return Err("base URL is empty".to_owned());
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains whitespace"));
    }
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(bad("expected http:// or https://"));
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => "http",
        "https" => "https",
        _ => return Err(bad("the scheme must be http or https")),
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if path.contains(['?', '#']) {
        return Err(bad("a base URL carries no query or fragment"));
    }
    if authority.contains('@') {
        return Err(bad("a base URL carries no credentials"));
    }
    let (host, port) = split_host_port(authority).map_err(|why| bad(&why))?;
    Ok(BaseUrl {
        scheme,
        host,
        port,
        path: path.trim_end_matches('/').to_owned(),
    })
}

fn split_host_port(authority: &str) -> std::result::Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return Err("unclosed IPv6 bracket".to_owned());
        };
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("malformed IPv6 address".to_owned());
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
        };
        (format!("[{}]", addr.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("it has no host".to_owned());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(format!("host `{host}` contains invalid characters"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => Ok(n),
            _ => Err(format!("port `{p}` is not a number in 1..=65535")),
        })
        .transpose()?;
    Ok((host, port))
}
