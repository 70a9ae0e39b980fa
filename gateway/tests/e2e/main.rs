//! End-to-end tests of the `gateway` binary: the real gateway, real `llm-service`
//! processes and (for the Redis test) a private `redis-server`, all on free ports, talking
//! HTTP only. Run `cargo build -p llm-service` first: the llm-service binary is taken from
//! beside the gateway's in the shared target directory.
//!
//! Modules follow the "Done when" list of issue #4: `contract` (lab contract, load spread),
//! `failover` (`kill -9`, hanging instance), `breaker` (pool breaker transitions),
//! `fallback` (cache and template tiers), `redis` (registry outage), `protection` (bad
//! input, body limit, load shedding), `shutdown` (SIGTERM drain); `openai` covers issue #5 (OpenAI API, routes, stream
//! safety, upstream misbehaviour); `wire` holds every JSON document to its `llm_api` type.
//! `identity` covers issue #18's authentication (route groups × credentials, minting, modes).
//! `history` and `status_page` cover issue #19's history database and status page (the
//! latter in headless Chromium: `scripts/test` installs Debian's `chromium`).
//! `continuation` covers issue #20 (streams continued by prefill, or restarted and spliced).
//! `traces` covers issue #19's access log and traces (W3C `traceparent`, OTLP spans across
//! the gateway and llm-service).
//! The processes are started by the workspace's test harness (crates/test-support);
//! `harness` holds this suite's own helpers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod admin;
mod breaker;
mod clients;
mod continuation;
mod contract;
mod failover;
mod fallback;
mod harness;
mod headers;
mod history;
mod identity;
mod leaks;
mod limits;
mod openai;
mod openapi;
mod protection;
mod quotas;
mod redis;
mod shutdown;
mod status_page;
mod traces;
mod wire;
