//! Tests of the policy: the attempt plan rule by rule, then the matrix of every outcome class
//! against a fresh budget, a spent one, a passed deadline and a `Retry-After` longer than the
//! time left; the chain's and the route's decisions.

mod fallback;
mod matrix;
mod plan;
pub(crate) mod support;
