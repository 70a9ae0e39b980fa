//! The checks, one file per group of the lab's rubric (and its extras). Each group's
//! `run(&Ctx)` records its checks; a group that disturbs the stack ends with
//! [`Ctx::restore`](super::context::Ctx::restore), whatever its checks concluded. Each
//! group lists its check names in `NAMES`, for `--only`.

pub mod basic;
pub mod breaker;
pub mod chaos;
pub mod discovery;
pub mod fallback;
pub mod health;
pub mod performance;

use std::time::{SystemTime, UNIX_EPOCH};

/// A suffix that makes a prompt or a request id unique to this run.
pub fn nonce() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{micros:x}")
}
