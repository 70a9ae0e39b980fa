//! Unit tests of the registry backends, one file per concern. The Redis backend's behaviour
//! against a real server lives in the crate's integration tests.

mod heartbeat;
mod instance;
mod memory;
mod redis;
mod static_list;

use super::Instance;

/// An llm-service instance at `http://127.0.0.1:<port>` with a model label.
fn llm(id: &str, port: u16) -> Instance {
    Instance::new(super::LLM_SERVICE, id, format!("http://127.0.0.1:{port}"))
        .with_metadata("model", format!("model-{id}"))
}
