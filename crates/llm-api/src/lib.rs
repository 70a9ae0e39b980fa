//! Wire types shared by every binary, so that one definition is parsed everywhere.
//!
//! - [`generate`]: the lab's `POST /generate` request and llm-service's flat answer.
//! - [`openai`]: OpenAI chat completions (request, answer, stream chunks), models, errors.
//! - [`fault`]: llm-service's fault-injection API (`/chaos/faults`).
//! - [`health`]: llm-service's `/health` body.
//! - [`limits`]: the bounds of a request's values (model name, messages, prompt, `n`…).
//! - [`error`]: the 4xx body for invalid input on the lab's endpoints, naming the field.
//! - [`envelope`]: the gateway's `/generate` success envelope (its errors are [`ErrorBody`]).
//! - [`gateway`]: the gateway's `/health`, `/admin/status` and breaker-reset answers.
//! - [`stats`]: the gateway's JSON `/metrics` and the fallback and cache counters in it.
//! - [`breaker`]: a circuit breaker and its transitions, as those documents show them.
//! - [`sse`]: one server-sent event of a streamed answer, as the OpenAPI documents say.
//! - [`token`]: the fault API's `CHAOS_TOKEN`, checked by llm-service, sent by its callers.
//! - [`time`]: the calendar date of a Unix day, for the RFC 3339 timestamps written.
//!
//! Types that carry OpenAI request bodies keep the fields they do not know (`extra`), so a
//! gateway forwards them unchanged.

pub mod breaker;
mod checks;
pub mod envelope;
pub mod error;
pub mod fault;
pub mod gateway;
pub mod generate;
pub mod health;
pub mod history;
pub mod limits;
pub mod openai;
pub mod sse;
pub mod stats;
pub mod time;
pub mod token;

pub use error::{ErrorBody, FieldError};
