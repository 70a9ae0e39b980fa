//! The limits every HTTP server of the workspace applies to its clients, as one set of
//! settings ([`EdgeArgs`], flattened into each binary's command line) and their typed form
//! ([`EdgeLimits`]): connections ([`crate::serve`]) and request bodies ([`crate::body`]).

use std::time::Duration;

use llm_api::FieldError;

/// Connection and body limits as flags and environment variables; the defaults are the
/// documented ones (README, "Limits").
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct EdgeArgs {
    /// Open connections at most; 0 derives it from the open-file limit (the soft limit,
    /// raised to the hard one at start, less a fifth, at least 256, for upstreams and files).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,
    /// Milliseconds a client may take to send a request's headers (HTTP/1.1): a new
    /// connection's first request from the connection's start, a later one from its first
    /// byte. Slower: the connection is closed (slowloris).
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Milliseconds a keep-alive connection may stay open with no request in progress
    /// (HTTP/1.1 and HTTP/2); then it is closed.
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Largest request head in bytes: request line and headers (HTTP/1.1, at least 8192),
    /// the header list (HTTP/2). Larger: 431 (HTTP/1.1) or a stream reset (HTTP/2).
    #[arg(long, env = "MAX_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,
    /// Concurrent streams one HTTP/2 connection may open.
    #[arg(long, env = "H2_MAX_CONCURRENT_STREAMS", default_value_t = 100)]
    pub h2_max_concurrent_streams: u32,
    /// Streams an HTTP/2 client may reset before the server read them, at once; more and
    /// the connection is closed (the "rapid reset" attack).
    #[arg(long, env = "H2_MAX_PENDING_RESETS", default_value_t = 20)]
    pub h2_max_pending_resets: usize,
    /// Largest request body in bytes; a larger `Content-Length` is refused with 413 before
    /// the body is read (and before `100 Continue`).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = crate::BODY_LIMIT)]
    pub max_body_bytes: usize,
    /// Milliseconds a whole request body may take to arrive (not per chunk); later: 408.
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_read_timeout_ms: u64,
    /// Request bodies being read at once; more: 503 with `Retry-After` (slow uploads have
    /// their own budget and do not hold the in-flight slots of requests being answered).
    #[arg(long, env = "MAX_CONCURRENT_UPLOADS", default_value_t = 512)]
    pub max_concurrent_uploads: usize,
}

impl Default for EdgeArgs {
    fn default() -> Self {
        Self {
            max_connections: 0,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_header_bytes: 32 * 1024,
            h2_max_concurrent_streams: 100,
            h2_max_pending_resets: 20,
            max_body_bytes: crate::BODY_LIMIT,
            body_read_timeout_ms: 10_000,
            max_concurrent_uploads: 512,
        }
    }
}

/// The typed limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Open connections at most; `None`: derived from the open-file limit at start.
    pub max_connections: Option<usize>,
    /// The longest a request's headers may take.
    pub header_read_timeout: Duration,
    /// The longest a connection stays open with no request in progress.
    pub idle_timeout: Duration,
    /// Largest request head, in bytes.
    pub max_header_bytes: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
    /// Pending client resets per HTTP/2 connection.
    pub h2_max_pending_resets: usize,
    /// Request bodies.
    pub body: BodyLimits,
}

/// How much body a request may have, how long it may take, and how many may be read at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The largest body, in bytes.
    pub max_bytes: usize,
    /// The longest the whole body may take to arrive.
    pub deadline: Duration,
    /// Bodies being read at once.
    pub max_concurrent: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        // The defaults are valid by construction.
        EdgeArgs::default().limits().unwrap_or(Self {
            max_connections: None,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            h2_max_concurrent_streams: 100,
            h2_max_pending_resets: 20,
            body: BodyLimits {
                max_bytes: crate::BODY_LIMIT,
                deadline: Duration::from_secs(10),
                max_concurrent: 512,
            },
        })
    }
}

/// The smallest HTTP/1.1 head buffer hyper accepts.
const MIN_HEADER_BYTES: usize = 8192;

impl EdgeArgs {
    /// The typed limits, or every setting out of range, each naming its variable.
    pub fn limits(&self) -> Result<EdgeLimits, Vec<FieldError>> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, name: &str, why: &str| {
            if !ok {
                problems.push(FieldError::new(name, why));
            }
        };
        check(
            self.max_connections == 0 || self.max_connections >= 16,
            "MAX_CONNECTIONS",
            "must be 0 (derived from the open-file limit) or at least 16",
        );
        check(
            (100..=600_000).contains(&self.header_read_timeout_ms),
            "HEADER_READ_TIMEOUT_MS",
            "must be between 100 ms and 10 minutes",
        );
        check(
            (1_000..=86_400_000).contains(&self.idle_timeout_ms),
            "IDLE_TIMEOUT_MS",
            "must be between 1 s and a day",
        );
        check(
            (MIN_HEADER_BYTES..=1024 * 1024).contains(&self.max_header_bytes),
            "MAX_HEADER_BYTES",
            "must be between 8192 and 1048576",
        );
        check(
            (1..=10_000).contains(&self.h2_max_concurrent_streams),
            "H2_MAX_CONCURRENT_STREAMS",
            "must be between 1 and 10000",
        );
        check(
            (1..=10_000).contains(&self.h2_max_pending_resets),
            "H2_MAX_PENDING_RESETS",
            "must be between 1 and 10000",
        );
        check(
            (1024..=64 * 1024 * 1024).contains(&self.max_body_bytes),
            "MAX_BODY_BYTES",
            "must be between 1 KiB and 64 MiB",
        );
        check(
            (100..=600_000).contains(&self.body_read_timeout_ms),
            "BODY_READ_TIMEOUT_MS",
            "must be between 100 ms and 10 minutes",
        );
        check(
            (1..=1_000_000).contains(&self.max_concurrent_uploads),
            "MAX_CONCURRENT_UPLOADS",
            "must be between 1 and 1000000",
        );
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(EdgeLimits {
            max_connections: (self.max_connections > 0).then_some(self.max_connections),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_header_bytes: self.max_header_bytes,
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            h2_max_pending_resets: self.h2_max_pending_resets,
            body: BodyLimits {
                max_bytes: self.max_body_bytes,
                deadline: Duration::from_millis(self.body_read_timeout_ms),
                max_concurrent: self.max_concurrent_uploads,
            },
        })
    }
}

/// The connection cap derived from an open-file limit: a fifth (at least 256) is kept for
/// upstream connections, Redis, logs and the listener; never under 64.
pub fn derived_max_connections(open_files: u64) -> usize {
    let headroom = (open_files / 5).max(256);
    usize::try_from(open_files.saturating_sub(headroom))
        .unwrap_or(usize::MAX)
        .max(64)
}

/// Raises this process's open-file soft limit to its hard limit; returns the soft limit in
/// force afterwards (the old one when raising failed, which is logged).
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            let current = rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024);
            tracing::warn!(%error, current, "could not raise the open-file limit");
            current
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_documented_values() {
        let limits = EdgeArgs::default().limits().unwrap();
        assert_eq!(limits, EdgeLimits::default());
        assert_eq!(limits.max_connections, None);
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(limits.max_header_bytes, 32 * 1024);
        assert_eq!(limits.body.max_bytes, 1024 * 1024);
        assert_eq!(limits.body.deadline, Duration::from_secs(10));
    }

    #[test]
    fn every_out_of_range_setting_is_named() {
        let args = EdgeArgs {
            max_connections: 3,
            header_read_timeout_ms: 0,
            idle_timeout_ms: 10,
            max_header_bytes: 100,
            h2_max_concurrent_streams: 0,
            h2_max_pending_resets: 0,
            max_body_bytes: 1,
            body_read_timeout_ms: 0,
            max_concurrent_uploads: 0,
        };
        let names: Vec<String> = args
            .limits()
            .unwrap_err()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            names,
            [
                "MAX_CONNECTIONS",
                "HEADER_READ_TIMEOUT_MS",
                "IDLE_TIMEOUT_MS",
                "MAX_HEADER_BYTES",
                "H2_MAX_CONCURRENT_STREAMS",
                "H2_MAX_PENDING_RESETS",
                "MAX_BODY_BYTES",
                "BODY_READ_TIMEOUT_MS",
                "MAX_CONCURRENT_UPLOADS",
            ]
        );
    }

    #[test]
    fn the_derived_cap_keeps_headroom() {
        assert_eq!(derived_max_connections(20_000), 16_000);
        assert_eq!(derived_max_connections(1024), 768);
        assert_eq!(derived_max_connections(100), 64);
        assert_eq!(derived_max_connections(1_048_576), 838_861);
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let raised = raise_open_file_limit();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!(raised, soft);
        // Linux caps the soft limit at nr_open even when the hard limit is infinite.
        assert!(soft == hard || hard == rlimit::INFINITY, "{soft} {hard}");
    }
}
