//! llm-service's fault-injection API: `POST /chaos/faults` takes a [`FaultSpec`] and
//! answers 201 with a [`FaultView`]; `GET /chaos/faults` lists them ([`FaultList`]).
//!
//! Body examples: `{"kind": "error", "rate": 1.0, "status": 503, "duration_s": 30}`,
//! `{"kind": "latency", "min_ms": 500, "max_ms": 1500, "count": 10}`,
//! `{"kind": "stream_cut", "after_tokens": 3}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::FieldError;

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Adds `ms`, or a delay drawn from `min_ms..=max_ms`, before answering.
    Latency {
        /// A fixed delay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ms: Option<u64>,
        /// The low end of a drawn delay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_ms: Option<u64>,
        /// The high end of a drawn delay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_ms: Option<u64>,
    },
    /// Answers `status` with an OpenAI-style error body.
    Error {
        /// The HTTP status (400–599); default 500.
        #[serde(default = "default_status")]
        #[schema(minimum = 400, maximum = 599)]
        status: u16,
        /// The body's `error.code` (`rate_limit_exceeded`, `context_length_exceeded`…).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// The body's `error.message`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Adds a `Retry-After` header with this many seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<u64>,
    },
    /// Accepts the request and never answers.
    Hang,
    /// Resets the connection before any header is sent.
    Reset,
    /// Answers 200 with a body that is not valid JSON.
    Malformed,
    /// `/health` answers 503 `unhealthy`.
    Unhealthy,
    /// A stream's first content token comes after `ms`.
    SlowFirstToken {
        /// The delay.
        ms: u64,
    },
    /// A stream stops after `after_tokens` content chunks: no final chunk, no `[DONE]`, the
    /// connection is cut.
    StreamCut {
        /// Content chunks sent before the cut.
        after_tokens: u32,
    },
    /// A stream pauses `ms` after `after_tokens` content chunks, then goes on.
    StreamStall {
        /// Content chunks sent before the pause.
        after_tokens: u32,
        /// The pause.
        ms: u64,
    },
    /// A stream sends an event that is not valid JSON after `after_tokens` content chunks.
    StreamMalformed {
        /// Content chunks sent before the bad event.
        after_tokens: u32,
    },
    /// A stream ends cleanly but without `data: [DONE]`.
    NoDone,
    /// Answers 400 (`prefill_not_supported`) to a chat request whose last message is the
    /// assistant's (a prefill asking for the rest of an answer), as providers that do not
    /// continue an assistant message do; other requests are answered as usual.
    PrefillRefuse,
    /// Keeps `threads` threads spinning while the fault lasts.
    CpuBurn {
        /// Spinning threads; default 1.
        #[serde(default = "default_threads")]
        #[schema(minimum = 1, maximum = 64)]
        threads: u32,
    },
    /// Holds `mb` MiB of touched memory while the fault lasts.
    Memory {
        /// MiB to hold.
        #[schema(minimum = 1, maximum = 65536)]
        mb: u64,
    },
}

fn default_status() -> u16 {
    500
}

fn default_threads() -> u32 {
    1
}

fn default_rate() -> f64 {
    1.0
}

/// The longest delay any fault may ask for, in milliseconds: a day.
pub const MAX_DELAY_MS: u64 = 86_400_000;

/// Fields every fault takes.
pub const COMMON_FIELDS: [&str; 4] = ["kind", "rate", "duration_s", "count"];

/// The fields a fault of `kind` takes besides [`COMMON_FIELDS`]; `None` for an unknown kind.
pub fn kind_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "latency" => &["ms", "min_ms", "max_ms"],
        "error" => &["status", "code", "message", "retry_after_s"],
        "hang" | "reset" | "malformed" | "unhealthy" | "no_done" | "prefill_refuse" => &[],
        "slow_first_token" => &["ms"],
        "stream_cut" | "stream_malformed" => &["after_tokens"],
        "stream_stall" => &["after_tokens", "ms"],
        "cpu_burn" => &["threads"],
        "memory" => &["mb"],
        _ => return None,
    })
}

/// The most threads a CPU fault may spin, and the most MiB a memory fault may hold.
pub const MAX_BURN_THREADS: u32 = 64;
/// See [`MAX_BURN_THREADS`].
pub const MAX_MEMORY_MB: u64 = 64 * 1024;

/// A fault to inject: what, how often, for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FaultSpec {
    /// What it does.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// The share of matching requests it affects (0 < r ≤ 1); default 1.
    #[serde(default = "default_rate")]
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub rate: f64,
    /// It removes itself after this many seconds; absent: until deleted (or `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0.0, maximum = 86400.0)]
    pub duration_s: Option<f64>,
    /// It removes itself after affecting this many requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub count: Option<u32>,
}

impl FaultSpec {
    /// A fault of `kind` on every request, until removed.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            rate: 1.0,
            duration_s: None,
            count: None,
        }
    }

    /// The same fault, removed after `seconds`.
    pub fn for_seconds(mut self, seconds: f64) -> Self {
        self.duration_s = Some(seconds);
        self
    }

    /// The same fault, for the next `count` requests only.
    pub fn times(mut self, count: u32) -> Self {
        self.count = Some(count);
        self
    }

    /// The kind's name as in the API (`latency`, `stream_cut`…).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            FaultKind::Latency { .. } => "latency",
            FaultKind::Error { .. } => "error",
            FaultKind::Hang => "hang",
            FaultKind::Reset => "reset",
            FaultKind::Malformed => "malformed",
            FaultKind::Unhealthy => "unhealthy",
            FaultKind::SlowFirstToken { .. } => "slow_first_token",
            FaultKind::StreamCut { .. } => "stream_cut",
            FaultKind::StreamStall { .. } => "stream_stall",
            FaultKind::StreamMalformed { .. } => "stream_malformed",
            FaultKind::NoDone => "no_done",
            FaultKind::PrefillRefuse => "prefill_refuse",
            FaultKind::CpuBurn { .. } => "cpu_burn",
            FaultKind::Memory { .. } => "memory",
        }
    }

    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(self.rate > 0.0 && self.rate <= 1.0) {
            return Err(FieldError::new("rate", "must be in (0, 1]"));
        }
        if let Some(d) = self.duration_s
            && !(d > 0.0 && d <= 86_400.0)
        {
            return Err(FieldError::new("duration_s", "must be in (0, 86400]"));
        }
        if self.count == Some(0) {
            return Err(FieldError::new("count", "must be at least 1"));
        }
        let delays: [(&str, Option<u64>); 3] = match &self.kind {
            FaultKind::Latency { ms, min_ms, max_ms } => {
                [("ms", *ms), ("min_ms", *min_ms), ("max_ms", *max_ms)]
            }
            FaultKind::SlowFirstToken { ms } | FaultKind::StreamStall { ms, .. } => {
                [("ms", Some(*ms)), ("ms", None), ("ms", None)]
            }
            FaultKind::Error { retry_after_s, .. } => [
                (
                    "retry_after_s",
                    retry_after_s.map(|s| s.saturating_mul(1000)),
                ),
                ("ms", None),
                ("ms", None),
            ],
            _ => [("ms", None), ("ms", None), ("ms", None)],
        };
        for (field, ms) in delays {
            if ms.is_some_and(|ms| ms > MAX_DELAY_MS) {
                return Err(FieldError::new(field, "must be at most a day"));
            }
        }
        match &self.kind {
            FaultKind::Latency { ms, min_ms, max_ms } => match (ms, min_ms, max_ms) {
                (Some(_), None, None) => {}
                (None, Some(lo), Some(hi)) if lo <= hi => {}
                (None, Some(_), Some(_)) => {
                    return Err(FieldError::new("min_ms", "must not be above max_ms"));
                }
                _ => {
                    return Err(FieldError::new(
                        "ms",
                        "give `ms`, or both `min_ms` and `max_ms`",
                    ));
                }
            },
            FaultKind::Error { status, .. } if !(400..=599).contains(status) => {
                return Err(FieldError::new(
                    "status",
                    "must be an error status, 400 to 599",
                ));
            }
            FaultKind::CpuBurn { threads } if !(1..=MAX_BURN_THREADS).contains(threads) => {
                return Err(FieldError::new("threads", "must be between 1 and 64"));
            }
            FaultKind::Memory { mb } if !(1..=MAX_MEMORY_MB).contains(mb) => {
                return Err(FieldError::new("mb", "must be between 1 and 65536"));
            }
            FaultKind::Unhealthy | FaultKind::CpuBurn { .. } | FaultKind::Memory { .. }
                if self.count.is_some() =>
            {
                return Err(FieldError::new(
                    "count",
                    "only request faults can be limited to a count of requests",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// An active fault as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FaultView {
    /// Its id, for `DELETE /chaos/faults/{id}`.
    pub id: String,
    /// What was asked for.
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Milliseconds until it removes itself, when it has a duration.
    #[serde(default)]
    pub expires_in_ms: Option<u64>,
    /// Requests it may still affect, when it has a count.
    #[serde(default)]
    pub remaining: Option<u32>,
    /// Requests it affected so far.
    pub hits: u64,
}

/// `GET /chaos/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FaultList {
    /// The active faults, oldest first.
    pub faults: Vec<FaultView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_body_parses() {
        let spec: FaultSpec = serde_json::from_str(
            r#"{"kind": "error", "rate": 1.0, "status": 503, "duration_s": 30}"#,
        )
        .unwrap();
        assert_eq!(spec.duration_s, Some(30.0));
        assert!(matches!(spec.kind, FaultKind::Error { status: 503, .. }));
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn defaults_apply() {
        let spec: FaultSpec = serde_json::from_str(r#"{"kind": "error"}"#).unwrap();
        assert_eq!(spec.rate, 1.0);
        assert!(matches!(spec.kind, FaultKind::Error { status: 500, .. }));
        let burn: FaultSpec = serde_json::from_str(r#"{"kind": "cpu_burn"}"#).unwrap();
        assert_eq!(burn.kind, FaultKind::CpuBurn { threads: 1 });
    }

    #[test]
    fn every_kind_has_its_fields_listed() {
        for kind in [
            "latency",
            "error",
            "hang",
            "reset",
            "malformed",
            "unhealthy",
            "slow_first_token",
            "stream_cut",
            "stream_stall",
            "stream_malformed",
            "no_done",
            "prefill_refuse",
            "cpu_burn",
            "memory",
        ] {
            assert!(kind_fields(kind).is_some(), "{kind}");
        }
        assert_eq!(
            kind_fields("stream_stall"),
            Some(&["after_tokens", "ms"][..])
        );
        assert_eq!(kind_fields("teleport"), None);
    }

    #[test]
    fn every_kind_round_trips() {
        for body in [
            r#"{"kind":"latency","ms":5}"#,
            r#"{"kind":"latency","min_ms":1,"max_ms":9}"#,
            r#"{"kind":"error","status":429,"code":"rate_limit_exceeded","retry_after_s":2}"#,
            r#"{"kind":"hang"}"#,
            r#"{"kind":"reset"}"#,
            r#"{"kind":"malformed"}"#,
            r#"{"kind":"unhealthy"}"#,
            r#"{"kind":"slow_first_token","ms":100}"#,
            r#"{"kind":"stream_cut","after_tokens":3}"#,
            r#"{"kind":"stream_stall","after_tokens":3,"ms":100}"#,
            r#"{"kind":"stream_malformed","after_tokens":3}"#,
            r#"{"kind":"no_done"}"#,
            r#"{"kind":"prefill_refuse"}"#,
            r#"{"kind":"cpu_burn","threads":1}"#,
            r#"{"kind":"memory","mb":256}"#,
        ] {
            let spec: FaultSpec = serde_json::from_str(body).unwrap();
            assert!(spec.validate().is_ok(), "{body}");
            let back: FaultSpec =
                serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
            assert_eq!(back, spec, "{body}");
            let kind = serde_json::to_value(&spec).unwrap()["kind"].clone();
            assert_eq!(kind, spec.kind_name());
        }
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (r#"{"kind":"error","rate":0}"#, "rate"),
            (r#"{"kind":"error","duration_s":-1}"#, "duration_s"),
            (r#"{"kind":"error","count":0}"#, "count"),
            (r#"{"kind":"error","status":200}"#, "status"),
            (r#"{"kind":"latency"}"#, "ms"),
            (r#"{"kind":"latency","min_ms":9,"max_ms":1}"#, "min_ms"),
            (r#"{"kind":"cpu_burn","threads":0}"#, "threads"),
            (r#"{"kind":"memory","mb":0}"#, "mb"),
            (r#"{"kind":"unhealthy","count":3}"#, "count"),
            (r#"{"kind":"latency","ms":86400001}"#, "ms"),
            (
                r#"{"kind":"latency","min_ms":1,"max_ms":86400001}"#,
                "max_ms",
            ),
            (
                r#"{"kind":"stream_stall","after_tokens":1,"ms":99999999999}"#,
                "ms",
            ),
            (r#"{"kind":"error","retry_after_s":86401}"#, "retry_after_s"),
        ];
        for (body, field) in cases {
            let spec: FaultSpec = serde_json::from_str(body).unwrap();
            assert_eq!(spec.validate().unwrap_err().field, field, "{body}");
        }
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind":"teleport"}"#).is_err());
    }
}
