//! Tests of the breaker, one file per concern: the machine's states and rules, then the
//! shared breaker, then properties; `support` holds what they share.

mod backoff;
mod bulkhead;
mod closed;
mod half_open;
mod history;
mod lock_free;
mod manual;
mod open;
mod properties;
mod rates;
mod shared;
mod support;
mod validation;
