//! [`HttpProbe`], the active health probe over the upstream client.

use std::time::Duration;

use resilience_core::health::{BoxFuture, HealthProbe};

use super::error::classify;
use super::{UpstreamClient, UpstreamError, join};

/// How long an [`HttpProbe`] bounds one probe when told nothing else; the active checker's
/// own (shorter) timeout normally ends a probe first.
pub const DEFAULT_PROBE_BOUND: Duration = Duration::from_secs(30);

/// A [`HealthProbe`] over HTTP: `GET {url}{path}`; any 2xx (a healthy or degraded
/// `overall_status` both answer 200) is up, anything else is down.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    client: UpstreamClient,
    path: String,
    bound: Duration,
}

impl HttpProbe {
    /// Probes `GET {url}{path}` through `client`, each probe bounded by
    /// [`DEFAULT_PROBE_BOUND`] unless [`Self::with_timeout`] says otherwise.
    pub fn new(client: UpstreamClient, path: impl Into<String>) -> Self {
        Self {
            client,
            path: path.into(),
            bound: DEFAULT_PROBE_BOUND,
        }
    }

    /// Bounds each probe by `timeout` (give it the checker's probe timeout).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.bound = timeout;
        self
    }

    /// The path probed, e.g. `/health`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl HealthProbe for HttpProbe {
    fn probe<'a>(&'a self, _id: &'a str, url: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.client.probe(url, &self.path, self.bound))
    }
}

impl UpstreamClient {
    /// `GET {base_url}{path}` bounded by `timeout`: `Ok` on a 2xx, otherwise a short reason
    /// (`HTTP 503`, `timed out after 2000 ms`, `connection failed: ...`).
    pub async fn probe(&self, base_url: &str, path: &str, timeout: Duration) -> Result<(), String> {
        let url = join(base_url, path);
        let call = async {
            let response = self
                .http
                .get(&url)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| classify(&e, timeout).to_string())?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {}", status.as_u16()))
            }
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(UpstreamError::Timeout(timeout).to_string()))
    }
}
