//! Tests of the fallback module, one file per concern, sharing the doubles in `support`.

mod cache;
mod chain;
mod chain_cache;
mod errors;
mod exhaustion;
mod key;
mod positions;
mod seed;
mod stats;
mod support;
mod template;
