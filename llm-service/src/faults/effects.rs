//! What the active faults do to one request: [`RequestFaults`], and how each kind adds to it.

use std::time::Duration;

use llm_api::fault::FaultKind;
use rand::RngExt;

/// An error answer a fault asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorFault {
    /// HTTP status.
    pub status: u16,
    /// OpenAI error `code`.
    pub code: Option<String>,
    /// OpenAI error `message`.
    pub message: Option<String>,
    /// `Retry-After` seconds.
    pub retry_after_s: Option<u64>,
}

/// What the faults do to one stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamFaults {
    /// Delay before the first content token (the sum of every `slow_first_token` that hit).
    pub slow_first_token: Option<Duration>,
    /// Cut the connection after this many content chunks (the earliest cut that hit).
    pub cut_after: Option<u32>,
    /// Pause this long after this many content chunks (the oldest stall that hit).
    pub stall: Option<(u32, Duration)>,
    /// Send a malformed event after this many content chunks (the earliest that hit).
    pub malformed_after: Option<u32>,
    /// End without `[DONE]`.
    pub no_done: bool,
}

/// What the faults do to one request of `/generate` or `/v1/chat/completions`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFaults {
    /// Extra delay before answering (the sum of every latency fault that hit).
    pub latency: Option<Duration>,
    /// Answer with this error instead (the oldest error fault that hit).
    pub error: Option<ErrorFault>,
    /// Never answer.
    pub hang: bool,
    /// Reset the connection before the headers.
    pub reset: bool,
    /// Answer 200 with a body that is not JSON.
    pub malformed: bool,
    /// Answer 400 to a chat request whose last message is the assistant's (a prefill).
    pub refuse_prefill: bool,
    /// Stream faults (streaming requests only).
    pub stream: StreamFaults,
}

/// Which requests a kind affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every `/generate` and chat request.
    Request,
    /// Streaming chat requests only.
    Stream,
    /// No request: health and resource faults act elsewhere.
    None,
}

impl Scope {
    /// The scope of `kind`.
    pub(crate) fn of(kind: &FaultKind) -> Self {
        match kind {
            FaultKind::Latency { .. }
            | FaultKind::Error { .. }
            | FaultKind::Hang
            | FaultKind::Reset
            | FaultKind::Malformed
            | FaultKind::PrefillRefuse => Self::Request,
            FaultKind::SlowFirstToken { .. }
            | FaultKind::StreamCut { .. }
            | FaultKind::StreamStall { .. }
            | FaultKind::StreamMalformed { .. }
            | FaultKind::NoDone => Self::Stream,
            FaultKind::Unhealthy | FaultKind::CpuBurn { .. } | FaultKind::Memory { .. } => {
                Self::None
            }
        }
    }

    /// Whether a request (streaming or not) is in this scope.
    pub(crate) fn covers(self, streaming: bool) -> bool {
        match self {
            Self::Request => true,
            Self::Stream => streaming,
            Self::None => false,
        }
    }
}

impl RequestFaults {
    /// Whether no fault touches the request.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Adds the effect of one fault of `kind` that hit this request. Faults are applied
    /// oldest first, which is what "the oldest error wins" relies on.
    pub(crate) fn apply(&mut self, kind: &FaultKind) {
        match kind {
            FaultKind::Latency { ms, min_ms, max_ms } => {
                let drawn = match (ms, min_ms, max_ms) {
                    (Some(ms), _, _) => *ms,
                    (None, Some(lo), Some(hi)) if lo < hi => rand::rng().random_range(*lo..=*hi),
                    (None, Some(lo), _) => *lo,
                    _ => 0,
                };
                self.latency = Some(add(self.latency, drawn));
            }
            FaultKind::Error {
                status,
                code,
                message,
                retry_after_s,
            } => {
                self.error.get_or_insert_with(|| ErrorFault {
                    status: *status,
                    code: code.clone(),
                    message: message.clone(),
                    retry_after_s: *retry_after_s,
                });
            }
            FaultKind::Hang => self.hang = true,
            FaultKind::Reset => self.reset = true,
            FaultKind::Malformed => self.malformed = true,
            FaultKind::PrefillRefuse => self.refuse_prefill = true,
            FaultKind::SlowFirstToken { ms } => {
                self.stream.slow_first_token = Some(add(self.stream.slow_first_token, *ms));
            }
            FaultKind::StreamCut { after_tokens } => {
                self.stream.cut_after = Some(earliest(self.stream.cut_after, *after_tokens));
            }
            FaultKind::StreamStall { after_tokens, ms } => {
                self.stream
                    .stall
                    .get_or_insert((*after_tokens, Duration::from_millis(*ms)));
            }
            FaultKind::StreamMalformed { after_tokens } => {
                self.stream.malformed_after =
                    Some(earliest(self.stream.malformed_after, *after_tokens));
            }
            FaultKind::NoDone => self.stream.no_done = true,
            FaultKind::Unhealthy | FaultKind::CpuBurn { .. } | FaultKind::Memory { .. } => {}
        }
    }
}

fn add(total: Option<Duration>, ms: u64) -> Duration {
    total
        .unwrap_or_default()
        .saturating_add(Duration::from_millis(ms))
}

fn earliest(current: Option<u32>, after: u32) -> u32 {
    current.map_or(after, |c| c.min(after))
}
