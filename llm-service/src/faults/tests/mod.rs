//! Unit tests of fault injection: the per-request draw and the set's bookkeeping (`set`),
//! resource faults (`resource`), and the `/chaos` routes through `oneshot` (`chaos_routes`).
//! Expiry runs under paused tokio time; only burning threads are real, and their stop is
//! polled with a deadline.

mod chaos_routes;
mod resource;
mod set;

use std::time::{Duration, Instant};

use llm_api::fault::FaultSpec;

/// A spec from its JSON body.
fn spec(body: &str) -> FaultSpec {
    serde_json::from_str(body).unwrap()
}

/// Waits (real time, up to 5 s) until `done` holds; false if it never did.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::yield_now();
    }
    done()
}
