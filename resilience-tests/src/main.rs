//! `resilience-tests`: placeholder binary. The real service lands with issue #6; until then it
//! says so and exits with a failure status, so nothing mistakes it for a working service.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "resilience-tests {}: not implemented yet (issue #6); resilience-core {} is linked",
        env!("CARGO_PKG_VERSION"),
        resilience_core::VERSION
    );
    ExitCode::FAILURE
}
