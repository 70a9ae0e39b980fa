//! Tests of the rate limiter, one file per piece: the pure GCRA decision, the in-process
//! store, the Redis back-off, and the limiter that picks a store and applies the failure mode.

mod backoff;
mod gcra;
mod local;
mod store;
