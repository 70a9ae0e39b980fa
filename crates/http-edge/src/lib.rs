//! The HTTP edge the services share (axum): [`input`] reads JSON bodies so that every bad
//! input is a 4xx naming the field, rendered in the lab's or OpenAI's error shape;
//! [`process`] sets up logging and the shutdown signal; [`healthcheck`] is the
//! `healthcheck` subcommand the container images run; [`security`] has the security
//! headers every response carries and the CORS setting.

pub mod healthcheck;
pub mod input;
pub mod process;
pub mod security;

pub use input::{BODY_LIMIT, BadInput, JsonBody, is_json, read_json};
