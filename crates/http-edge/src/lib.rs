//! The HTTP edge the services share (axum, hyper): [`serve`] is the one server, with the
//! connection discipline no caller can starve; [`body`] reads request bodies within a size,
//! a deadline and a budget; [`limits`] holds their settings; [`security`] has the security
//! headers every response carries and the CORS setting; [`input`] parses JSON bodies so that
//! every bad input is a 4xx naming the field, rendered in the lab's or OpenAI's error shape;
//! [`process`] sets up logging (written in batches off the request path by [`logwriter`])
//! and the shutdown signal; [`healthcheck`] is the
//! `healthcheck` subcommand the container images run; [`trace`] reads and writes the W3C
//! `traceparent` header.

pub mod body;
pub mod healthcheck;
pub mod input;
pub mod limits;
pub mod logwriter;
pub mod otel;
pub mod process;
pub mod security;
pub mod serve;
pub mod trace;

pub use body::{UploadStats, Uploads};
pub use input::{BODY_LIMIT, BadInput, JsonBody, is_json, read_json};
pub use limits::{BodyLimits, EdgeArgs, EdgeLimits};
pub use serve::{ConnectionControl, ConnectionStats, Connections, serve};
