//! Steady traffic: one `/generate` every period, each answer recorded with its send time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinHandle;

use super::{Answer, Gateway, MAX_TOKENS, generate_on};

/// One request of a [`Traffic`] run.
#[derive(Debug, Clone)]
pub struct Record {
    /// When it was sent.
    pub sent: Instant,
    /// The answer, or the transport error.
    pub answer: Result<Answer, String>,
}

impl Record {
    /// 200 from the primary pool.
    pub fn is_primary_success(&self) -> bool {
        self.answer.as_ref().is_ok_and(Answer::is_primary_success)
    }

    /// A one-line description for failure messages.
    pub fn describe(&self, origin: Instant) -> String {
        let at = self.sent.saturating_duration_since(origin).as_millis();
        match &self.answer {
            Ok(a) => format!(
                "t={at}ms status={} served_by={} fallback_used={:?} fallback_type={} reason={} took={}ms",
                a.status,
                a.served_by(),
                a.fallback_used(),
                a.data()["fallback_type"],
                a.data()["fallback_reason"],
                a.elapsed.as_millis()
            ),
            Err(e) => format!("t={at}ms transport error: {e}"),
        }
    }
}

/// A task sending one `/generate` every `period` (sequentially) until stopped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Record>>>,
    task: JoinHandle<()>,
}

impl Traffic {
    /// Starts sending to `gateway`.
    pub fn start(gateway: &Gateway, period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let client = gateway.client();
        let url = gateway.url.clone();
        let task = {
            let stop = Arc::clone(&stop);
            let records = Arc::clone(&records);
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(period);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    ticker.tick().await;
                    n += 1;
                    let sent = Instant::now();
                    let body =
                        json!({"prompt": format!("steady traffic {n}"), "max_tokens": MAX_TOKENS});
                    let answer = generate_on(&client, &url, body, None).await;
                    records.lock().unwrap().push(Record { sent, answer });
                }
            })
        };
        Traffic {
            stop,
            records,
            task,
        }
    }

    /// The records so far.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Stops after the request in flight and returns every record.
    pub async fn stop(self) -> Vec<Record> {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(40), self.task)
            .await
            .expect("the traffic task stops")
            .expect("the traffic task did not panic");
        self.records.lock().unwrap().clone()
    }
}
