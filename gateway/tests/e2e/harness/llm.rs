//! What the gateway's tests read from an llm-service: its identity in `served_by` and its
//! request counters.

use test_support::LlmService;

use super::prometheus_sum;

/// The gateway suite's calls on an [`LlmService`].
pub trait LlmExt {
    /// Whether the gateway's `served_by` names this instance (its SERVICE_ID, or its
    /// address for a gateway that only knows the static URL).
    fn is(&self, served_by: &str) -> bool;
    /// How many `/generate` requests it has answered (any status), from its `/metrics`.
    async fn generate_count(&self) -> f64;
    /// How many `/v1/chat/completions` requests it has answered (streams once they ended).
    async fn chat_count(&self) -> f64;
    /// Requests it is answering now (`http_requests_in_flight`).
    async fn in_flight(&self) -> f64;
}

impl LlmExt for LlmService {
    fn is(&self, served_by: &str) -> bool {
        let served_by = served_by.trim_end_matches('/');
        served_by == self.service_id
            || served_by == self.url
            || served_by == format!("127.0.0.1:{}", self.port)
            || served_by == format!("localhost:{}", self.port)
    }

    async fn generate_count(&self) -> f64 {
        let text = metrics_text(self).await;
        prometheus_sum(&text, "http_requests_total", &["endpoint=\"generate\""])
    }

    async fn chat_count(&self) -> f64 {
        let text = metrics_text(self).await;
        prometheus_sum(
            &text,
            "http_requests_total",
            &["endpoint=\"chat_completions\""],
        )
    }

    async fn in_flight(&self) -> f64 {
        let text = metrics_text(self).await;
        prometheus_sum(&text, "http_requests_in_flight", &[])
    }
}

/// Its `/metrics` in Prometheus text.
async fn metrics_text(llm: &LlmService) -> String {
    llm.client
        .get(format!("{}/metrics", llm.url))
        .header("accept", "text/plain")
        .send()
        .await
        .expect("llm-service /metrics answers")
        .text()
        .await
        .unwrap()
}
