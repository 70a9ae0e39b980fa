//! The API's request bodies for proxies, read the way Toxiproxy reads them: a proxy to
//! create ([`NewProxy`]) and a change to one ([`ProxyChange`]), with their addresses
//! checked.

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{Map, Value};

use crate::proxy::error::ProxyError;

/// Where a proxy listens when the client does not say.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:0";

/// A proxy to create, as a client describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProxy {
    pub name: String,
    /// `IP:PORT` or `localhost:PORT`; port 0 picks a free port.
    pub listen: String,
    /// `HOST:PORT`.
    pub upstream: String,
    pub enabled: bool,
}

/// A change to a proxy: what is `Some` changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyChange {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub enabled: Option<bool>,
}

impl NewProxy {
    /// From a `POST /proxies` body: `name` and `upstream` are required, `listen` defaults
    /// to [`DEFAULT_LISTEN`], `enabled` to true.
    pub fn from_json(body: &Value) -> Result<Self, ProxyError> {
        let body = object(body)?;
        let name = text(body, "name")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ProxyError::bad_request("missing required field: name"))?;
        let upstream = text(body, "upstream")?
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ProxyError::bad_request("missing required field: upstream"))?;
        check_upstream(&upstream)?;
        let listen = text(body, "listen")?
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        listen_addr(&listen)?;
        Ok(Self {
            name,
            listen,
            upstream,
            enabled: flag(body, "enabled")?.unwrap_or(true),
        })
    }
}

impl ProxyChange {
    /// From a `POST /proxies/{name}` body; other fields (`name`, `toxics`) are ignored.
    pub fn from_json(body: &Value) -> Result<Self, ProxyError> {
        let body = object(body)?;
        let listen = text(body, "listen")?.filter(|l| !l.is_empty());
        if let Some(listen) = &listen {
            listen_addr(listen)?;
        }
        let upstream = text(body, "upstream")?.filter(|u| !u.is_empty());
        if let Some(upstream) = &upstream {
            check_upstream(upstream)?;
        }
        Ok(Self {
            listen,
            upstream,
            enabled: flag(body, "enabled")?,
        })
    }
}

/// The socket address of a listen setting: `IP:PORT`, `localhost:PORT`, or `:PORT`, which
/// here means loopback (Toxiproxy would listen on every interface).
pub fn listen_addr(listen: &str) -> Result<SocketAddr, ProxyError> {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port = match listen.rsplit_once(':') {
        Some(("localhost" | "", port)) => port.parse::<u16>().ok(),
        _ => None,
    };
    port.map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .ok_or_else(|| {
            ProxyError::bad_request(format!(
                "listen must be IP:PORT or localhost:PORT, not {listen:?}"
            ))
        })
}

fn check_upstream(upstream: &str) -> Result<(), ProxyError> {
    match upstream.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(ProxyError::bad_request(format!(
            "upstream must be HOST:PORT, not {upstream:?}"
        ))),
    }
}

fn object(body: &Value) -> Result<&Map<String, Value>, ProxyError> {
    body.as_object()
        .ok_or_else(|| ProxyError::bad_request("the body must be a JSON object"))
}

fn text(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ProxyError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ProxyError::bad_request(format!("{key} must be a string"))),
    }
}

fn flag(body: &Map<String, Value>, key: &str) -> Result<Option<bool>, ProxyError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ProxyError::bad_request(format!(
            "{key} must be true or false"
        ))),
    }
}
