//! Health probes: is a service healthy now?

use std::time::Duration;

use super::Health;

/// How long a health probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the health check passes now.
pub(super) async fn probe(health: &Health) -> bool {
    match health {
        Health::Alive => true,
        Health::Http { url } => {
            let Ok(client) = reqwest::Client::builder()
                .no_proxy()
                .timeout(PROBE_TIMEOUT)
                .build()
            else {
                return false;
            };
            client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
        Health::Redis { url } => {
            let ping = async {
                let client = redis::Client::open(url.as_str()).ok()?;
                let mut con = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .ok()
            };
            matches!(
                tokio::time::timeout(PROBE_TIMEOUT, ping).await,
                Ok(Some(pong)) if pong == "PONG"
            )
        }
    }
}
