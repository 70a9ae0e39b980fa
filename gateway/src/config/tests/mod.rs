//! The settings, built from argument lists, variable maps and TOML text: the process
//! environment is never changed.

mod breakers;
mod identity;
mod routes;
mod sources;

use std::sync::atomic::{AtomicUsize, Ordering};

use llm_api::FieldError;

use super::Settings;

/// A static list, so that there is something to route to.
const URLS: (&str, &str) = ("LLM_SERVICE_URLS", "http://a:1");

/// The settings from `env` alone.
fn from_env(env: &[(&str, &str)]) -> Result<Settings, Vec<FieldError>> {
    Settings::from_sources::<_, &str>([], env)
}

/// The settings with a file holding `toml`, and `env`.
fn with_file(toml: &str, env: &[(&str, &str)]) -> Result<Settings, Vec<FieldError>> {
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "gateway-settings-{}-{}.toml",
        std::process::id(),
        FILES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, toml).unwrap();
    let path_text = path.display().to_string();
    let mut env = env.to_vec();
    env.push(("GATEWAY_CONFIG", &path_text));
    let settings = from_env(&env);
    std::fs::remove_file(&path).ok();
    settings
}

/// The fields of `problems`.
fn fields(problems: &[FieldError]) -> Vec<&str> {
    problems.iter().map(|p| p.field.as_str()).collect()
}

/// The problem of `field`; fails when there is none.
fn problem<'a>(problems: &'a [FieldError], field: &str) -> &'a FieldError {
    problems
        .iter()
        .find(|p| p.field == field)
        .unwrap_or_else(|| panic!("{field} missing from {:?}", fields(problems)))
}
