//! End-to-end tests: the real `llm-service` binary on a free port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod api;
mod connections;
mod expiry;
mod faults;
mod harness;
mod headers;
mod input;
mod lifecycle;
mod openapi;
mod prefill;
mod resource_faults;
mod stream_faults;
