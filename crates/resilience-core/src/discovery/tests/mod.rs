//! Unit tests of discovery: the merge rule, refresh rounds, and the background task under
//! paused time. Registries are the in-memory backend and a switchable failing fake.

mod merge;
mod refresh;
mod task;

use crate::registry::{Instance, InstanceSource, LLM_SERVICE};

/// A registry-style llm-service instance at `http://127.0.0.1:<port>`.
fn registered(id: &str, port: u16) -> Instance {
    Instance::new(LLM_SERVICE, id, format!("http://127.0.0.1:{port}"))
        .with_metadata("model", format!("model-{id}"))
}

/// A configured instance at `http://127.0.0.1:<port>`, as `LLM_SERVICE_URLS` gives them.
fn configured(port: u16) -> Instance {
    Instance {
        source: InstanceSource::Static,
        ..Instance::new(
            LLM_SERVICE,
            format!("127.0.0.1:{port}"),
            format!("http://127.0.0.1:{port}"),
        )
    }
}

fn ids(instances: &[Instance]) -> Vec<&str> {
    instances.iter().map(|i| i.id.as_str()).collect()
}
