//! Toxics as clients describe them: a type with its attributes, the direction it acts on,
//! its toxicity, and the JSON Toxiproxy 2.x uses for them. What a toxic does to bytes is in
//! [`plan`]; this module only parses, validates and prints.
//!
//! Attributes follow Toxiproxy: a missing attribute is 0, an update merges the attributes
//! it names into the current ones. Unlike Toxiproxy, an attribute the type does not have,
//! a negative or fractional number, or a duration over a day is refused with a 400 rather
//! than silently ignored.

pub mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::error::ProxyError;

/// The toxics of one proxy, in the order they were added (the order they apply in).
pub type ToxicList = Arc<Vec<Toxic>>;

/// Longest time attribute accepted, in milliseconds: a day.
const MAX_MILLIS: u64 = 86_400_000;

/// Which bytes a toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Client → upstream.
    Upstream,
    /// Upstream → client (Toxiproxy's default).
    Downstream,
}

/// What a toxic does, with its attributes (times in milliseconds unless said otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToxicKind {
    /// Passes everything through.
    Noop,
    /// Delays each chunk by `latency` ± `jitter`.
    Latency { latency: u64, jitter: u64 },
    /// At most `rate` KB/s (1 KB = 1000 bytes); 0 is unlimited.
    Bandwidth { rate: u64 },
    /// Delays the close (the FIN) by `delay`.
    SlowClose { delay: u64 },
    /// Drops all data; closes the connection after `timeout` (0: never).
    Timeout { timeout: u64 },
    /// On the first data, waits `timeout`, then resets the connection (RST).
    ResetPeer { timeout: u64 },
    /// Cuts data into pieces of `average_size` ± `size_variation` bytes, `delay` µs apart.
    Slicer {
        average_size: u64,
        size_variation: u64,
        delay: u64,
    },
    /// Closes the connection once `bytes` bytes went through.
    LimitData { bytes: u64 },
}

/// A toxic on a proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Toxic {
    /// Unique within its proxy.
    pub name: String,
    /// The direction it acts on.
    pub stream: Stream,
    /// The chance, 0 to 1, that a connection gets it.
    pub toxicity: f64,
    /// What it does.
    pub kind: ToxicKind,
    /// Unique across the process and renewed by every update, so a connection knows when
    /// to draw its toxicity again and start the toxic's state afresh.
    pub revision: u64,
}

/// A toxic as the API prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToxicView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub stream: &'static str,
    pub toxicity: f64,
    pub attributes: Value,
}

impl Stream {
    /// `upstream` or `downstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "upstream" => Some(Self::Upstream),
            "downstream" => Some(Self::Downstream),
            _ => None,
        }
    }
}

impl ToxicKind {
    /// The Toxiproxy type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Noop => "noop",
            Self::Latency { .. } => "latency",
            Self::Bandwidth { .. } => "bandwidth",
            Self::SlowClose { .. } => "slow_close",
            Self::Timeout { .. } => "timeout",
            Self::ResetPeer { .. } => "reset_peer",
            Self::Slicer { .. } => "slicer",
            Self::LimitData { .. } => "limit_data",
        }
    }

    /// Every attribute of the type, named as in Toxiproxy.
    pub fn attributes(&self) -> Map<String, Value> {
        let pairs: Vec<(&str, u64)> = match *self {
            Self::Noop => vec![],
            Self::Latency { latency, jitter } => vec![("latency", latency), ("jitter", jitter)],
            Self::Bandwidth { rate } => vec![("rate", rate)],
            Self::SlowClose { delay } => vec![("delay", delay)],
            Self::Timeout { timeout } | Self::ResetPeer { timeout } => vec![("timeout", timeout)],
            Self::Slicer {
                average_size,
                size_variation,
                delay,
            } => vec![
                ("average_size", average_size),
                ("size_variation", size_variation),
                ("delay", delay),
            ],
            Self::LimitData { bytes } => vec![("bytes", bytes)],
        };
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect()
    }

    /// Parses `attributes` for the type `type_name`; missing attributes are 0.
    pub fn parse(type_name: &str, attributes: &Map<String, Value>) -> Result<Self, ProxyError> {
        let known: &[&str] = match type_name {
            "noop" => &[],
            "latency" => &["latency", "jitter"],
            "bandwidth" => &["rate"],
            "slow_close" => &["delay"],
            "timeout" | "reset_peer" => &["timeout"],
            "slicer" => &["average_size", "size_variation", "delay"],
            "limit_data" => &["bytes"],
            _ => return Err(ProxyError::bad_request("invalid toxic type")),
        };
        if let Some(unknown) = attributes.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ProxyError::bad_request(format!(
                "a {type_name} toxic has no attribute {unknown:?} (it has: {})",
                known.join(", ")
            )));
        }
        let number = |key: &str, max: u64| -> Result<u64, ProxyError> {
            let n = match attributes.get(key) {
                None | Some(Value::Null) => 0,
                Some(value) => value.as_u64().ok_or_else(|| {
                    ProxyError::bad_request(format!(
                        "attribute {key} must be a non-negative integer, not {value}"
                    ))
                })?,
            };
            if n > max {
                return Err(ProxyError::bad_request(format!(
                    "attribute {key} must be at most {max}"
                )));
            }
            Ok(n)
        };
        let kind = match type_name {
            "noop" => Self::Noop,
            "latency" => Self::Latency {
                latency: number("latency", MAX_MILLIS)?,
                jitter: number("jitter", MAX_MILLIS)?,
            },
            "bandwidth" => Self::Bandwidth {
                rate: number("rate", u64::from(u32::MAX))?,
            },
            "slow_close" => Self::SlowClose {
                delay: number("delay", MAX_MILLIS)?,
            },
            "timeout" => Self::Timeout {
                timeout: number("timeout", MAX_MILLIS)?,
            },
            "reset_peer" => Self::ResetPeer {
                timeout: number("timeout", MAX_MILLIS)?,
            },
            "slicer" => {
                let average_size = number("average_size", u64::from(u32::MAX))?;
                if average_size == 0 {
                    return Err(ProxyError::bad_request(
                        "attribute average_size of a slicer must be at least 1",
                    ));
                }
                Self::Slicer {
                    average_size,
                    size_variation: number("size_variation", u64::from(u32::MAX))?,
                    delay: number("delay", MAX_MILLIS * 1000)?,
                }
            }
            _ => Self::LimitData {
                bytes: number("bytes", u64::MAX)?,
            },
        };
        Ok(kind)
    }
}

impl Toxic {
    /// A toxic from a `POST /proxies/{name}/toxics` body: `type` is required; `stream`
    /// defaults to downstream, `toxicity` to 1, `name` to `<type>_<stream>`.
    pub fn from_request(body: &Value, revision: u64) -> Result<Self, ProxyError> {
        let body = body
            .as_object()
            .ok_or_else(|| ProxyError::bad_request("the body must be a JSON object"))?;
        let type_name = match body.get("type") {
            Some(Value::String(t)) if !t.is_empty() => t.as_str(),
            None | Some(Value::Null) => {
                return Err(ProxyError::bad_request("missing required field: type"));
            }
            Some(_) => return Err(ProxyError::bad_request("invalid toxic type")),
        };
        let stream = match body.get("stream") {
            None | Some(Value::Null) => Stream::Downstream,
            Some(Value::String(s)) if s.is_empty() => Stream::Downstream,
            Some(Value::String(s)) => Stream::parse(s).ok_or_else(bad_stream)?,
            Some(_) => return Err(bad_stream()),
        };
        let toxicity = parse_toxicity(body.get("toxicity"))?.unwrap_or(1.0);
        let kind = ToxicKind::parse(type_name, &attributes_of(body)?)?;
        let name = match body.get("name") {
            None | Some(Value::Null) => format!("{}_{}", kind.type_name(), stream.as_str()),
            Some(Value::String(n)) if n.is_empty() => {
                format!("{}_{}", kind.type_name(), stream.as_str())
            }
            Some(Value::String(n)) => n.clone(),
            Some(_) => return Err(ProxyError::bad_request("name must be a string")),
        };
        Ok(Self {
            name,
            stream,
            toxicity,
            kind,
            revision,
        })
    }

    /// This toxic changed by a `POST /proxies/{name}/toxics/{toxic}` body: the attributes
    /// it names and its toxicity; type, stream and name stay.
    pub fn updated(&self, body: &Value, revision: u64) -> Result<Self, ProxyError> {
        let body = body
            .as_object()
            .ok_or_else(|| ProxyError::bad_request("the body must be a JSON object"))?;
        let mut attributes = self.kind.attributes();
        attributes.extend(attributes_of(body)?);
        Ok(Self {
            name: self.name.clone(),
            stream: self.stream,
            toxicity: parse_toxicity(body.get("toxicity"))?.unwrap_or(self.toxicity),
            kind: ToxicKind::parse(self.kind.type_name(), &attributes)?,
            revision,
        })
    }

    /// The API's view.
    pub fn view(&self) -> ToxicView {
        ToxicView {
            name: self.name.clone(),
            kind: self.kind.type_name(),
            stream: self.stream.as_str(),
            toxicity: self.toxicity,
            attributes: Value::Object(self.kind.attributes()),
        }
    }
}

fn bad_stream() -> ProxyError {
    ProxyError::bad_request("stream was invalid, can be either upstream or downstream")
}

fn attributes_of(body: &Map<String, Value>) -> Result<Map<String, Value>, ProxyError> {
    match body.get("attributes") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err(ProxyError::bad_request("attributes must be a JSON object")),
    }
}

fn parse_toxicity(value: Option<&Value>) -> Result<Option<f64>, ProxyError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => Ok(Some(t)),
            _ => Err(ProxyError::bad_request(
                "toxicity must be a number between 0 and 1",
            )),
        },
    }
}
