//! What the deployment files say, read back for checking against the binaries: metrics and
//! the labels they test in PromQL ([`promql`]), expressions in dashboards and rule files
//! ([`files`]), metrics and labels in a Prometheus exposition and environment variables in
//! a `--help` ([`binaries`]).
//!
//! The checks themselves are this crate's tests (`deploy/tests/`); they start the real
//! `gateway`, `llm-service` and `chaos-monkey` built in the workspace's target directory.

pub mod binaries;
pub mod files;
pub mod promql;
