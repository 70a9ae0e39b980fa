//! What one request came to: an HTTP status or a transport error, and the fallback tier
//! that answered it.

use std::fmt;

/// How a request ended, as counted in the report's `status_counts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The gateway answered with this HTTP status.
    Http(u16),
    /// No HTTP answer (or not all of it) came back.
    Error(ErrorKind),
}

/// Why no (complete) HTTP answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `--timeout` elapsed before the whole answer arrived.
    Timeout,
    /// The connection could not be made (refused, DNS, reset while connecting).
    Connect,
    /// The status arrived but reading the body failed.
    Body,
    /// The request could not be sent on an established connection.
    Request,
    /// Anything reqwest does not classify further.
    Other,
}

/// One finished request, as the recorder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The status or the transport error.
    pub status: Status,
    /// For 2xx answers, the fallback tier that served them (`none`, `secondary`, `cache`,
    /// `template`, or `unknown` when the answer did not say in the expected shape).
    pub tier: Option<String>,
}

impl Status {
    /// The answer was a 2xx: the request counts towards availability.
    pub fn is_success(self) -> bool {
        matches!(self, Self::Http(code) if (200..300).contains(&code))
    }
}

impl fmt::Display for Status {
    /// `"200"`, `"503"`, `"error:timeout"`, …: the report's keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(code) => write!(f, "{code}"),
            Self::Error(kind) => write!(f, "error:{}", kind.as_str()),
        }
    }
}

impl ErrorKind {
    /// Classifies a reqwest error; a timeout wins over the phase it happened in, because
    /// `--timeout` is the limit the operator set.
    pub fn of(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Connect
        } else if error.is_body() || error.is_decode() {
            Self::Body
        } else if error.is_request() {
            Self::Request
        } else {
            Self::Other
        }
    }

    /// The name after `error:` in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Body => "body",
            Self::Request => "request",
            Self::Other => "other",
        }
    }
}

impl Outcome {
    /// An HTTP answer; `tier` is kept only for 2xx answers.
    pub fn http(code: u16, tier: Option<String>) -> Self {
        let status = Status::Http(code);
        let tier = if status.is_success() { tier } else { None };
        Self { status, tier }
    }

    /// A transport error.
    pub fn error(kind: ErrorKind) -> Self {
        Self {
            status: Status::Error(kind),
            tier: None,
        }
    }
}
