//! Waiting for the stack: reading a probe until a condition holds ([`poll`]), and the
//! steady state every check starts from ([`wait_steady`]).

use std::future::Future;
use std::time::{Duration, Instant};

use llm_api::breaker::BreakerState;
use llm_api::gateway::ServiceView;

use super::client::{GatewayClient, health};
use super::report::format_duration;

/// The stack at steady state: `/health` 2xx, enough instances, breaker CLOSED.
#[derive(Debug, Clone)]
pub struct Steady {
    /// `available_services`.
    pub available: u64,
    /// `service_discovery.services[]`.
    pub services: Vec<ServiceView>,
    /// How long it took to get there.
    pub took: Duration,
}

/// The end of a [`poll`].
#[derive(Debug)]
pub struct Polled<T> {
    /// The last reading.
    pub value: T,
    /// Whether it satisfied the condition.
    pub ok: bool,
    /// From the first read to the last.
    pub took: Duration,
}

/// Reads `probe` every `interval` until `done` holds or `timeout` passes.
pub async fn poll<T, P, Fut>(
    timeout: Duration,
    interval: Duration,
    mut probe: P,
    done: impl Fn(&T) -> bool,
) -> Polled<T>
where
    P: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let value = probe().await;
        let ok = done(&value);
        if ok || Instant::now() + interval > deadline {
            return Polled {
                value,
                ok,
                took: started.elapsed(),
            };
        }
        tokio::time::sleep(interval).await;
    }
}

/// Waits until the gateway's `/health` answers 2xx with at least `min_available`
/// instances and the breaker CLOSED; the error describes the last reading.
pub async fn wait_steady(
    gateway: &GatewayClient,
    min_available: u64,
    timeout: Duration,
    interval: Duration,
) -> Result<Steady, String> {
    let polled = poll(
        timeout,
        interval,
        || gateway.health(),
        |reading| {
            reading.as_ref().is_ok_and(|doc| {
                (200..300).contains(&doc.status)
                    && health::available(doc).is_some_and(|n| n >= min_available)
                    && health::breaker(doc) == Some(BreakerState::Closed)
            })
        },
    )
    .await;
    match polled.value {
        Ok(doc) if polled.ok => Ok(Steady {
            available: health::available(&doc).unwrap_or(0),
            services: doc
                .get()
                .map(|h| h.service_discovery.services.clone())
                .unwrap_or_default(),
            took: polled.took,
        }),
        Ok(doc) => Err(format!(
            "no steady state after {}: /health HTTP {}, available_services {} (want ≥ {min_available}), breaker {}",
            format_duration(polled.took),
            doc.status,
            health::available(&doc).map_or("absent".into(), |n| n.to_string()),
            health::breaker(&doc).map_or("absent", BreakerState::as_str),
        )),
        Err(error) => Err(format!(
            "no steady state after {}: {error:#}",
            format_duration(polled.took)
        )),
    }
}
