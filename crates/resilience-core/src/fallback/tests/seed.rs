//! Seed file parsing and validation, and the shipped `config/fallback_responses.json`.

use std::path::PathBuf;
use std::time::Duration;

use super::support::manual_cache;
use crate::Error;
use crate::fallback::{CacheKey, SeedEntry, SeedFile};

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/fallback_responses.json"
);

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "resilience-core-seed-{}-{name}.json",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn invalid_config(err: Error) -> (String, String) {
    match err {
        Error::InvalidConfig { setting, reason } => (setting, reason),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn valid_seed_file_loads_into_the_cache() {
    let file = TempFile::new(
        "valid",
        r#"{
            "description": "test seeds",
            "entries": [
                {"prompts": ["What is AI?", "Define AI"], "response": "AI is…"},
                {"prompts": ["Hello"], "response": "Hi from gpt-x", "model": "gpt-x"}
            ]
        }"#,
    );
    let (_clock, cache) = manual_cache(Duration::from_secs(60), 10);

    let seeded = cache
        .load_seed_file(&file.0, |e: &SeedEntry| e.response.clone())
        .unwrap();

    assert_eq!(seeded, 3);
    assert_eq!(
        cache
            .get(&CacheKey::new(Some("any"), "what is ai"))
            .as_deref(),
        Some("AI is…")
    );
    assert_eq!(
        cache.get(&CacheKey::any_model("define ai!")).as_deref(),
        Some("AI is…")
    );
    assert_eq!(
        cache.get(&CacheKey::new(Some("gpt-x"), "hello")).as_deref(),
        Some("Hi from gpt-x")
    );
    assert_eq!(cache.get(&CacheKey::new(Some("other"), "hello")), None);
}

#[test]
fn conversion_closure_sees_the_whole_entry() {
    let seeds = SeedFile::parse(
        r#"{"entries": [{"prompts": ["Hi"], "response": "Hello", "model": "m1"}]}"#,
        "inline",
    )
    .unwrap();
    let (_clock, cache) = manual_cache(Duration::from_secs(60), 10);

    cache.seed(&seeds, |e| {
        format!("{} ({})", e.response, e.model.as_deref().unwrap_or("-"))
    });

    assert_eq!(
        cache.get(&CacheKey::new(Some("m1"), "hi")).as_deref(),
        Some("Hello (m1)")
    );
}

#[test]
fn malformed_json_error_names_the_path_and_the_position() {
    let file = TempFile::new(
        "malformed",
        "{\"entries\": [\n  {\"prompts\": [\"Hi\"], }\n]}",
    );

    let (setting, reason) = invalid_config(SeedFile::load(&file.0).unwrap_err());

    assert_eq!(setting, file.0.display().to_string());
    assert!(reason.starts_with("cannot parse:"), "{reason}");
    assert!(reason.contains("line 2"), "{reason}");
}

#[test]
fn missing_file_error_names_the_path() {
    let path = std::env::temp_dir().join("resilience-core-seed-does-not-exist.json");
    let (_clock, cache) = manual_cache(Duration::from_secs(60), 10);

    let err = cache
        .load_seed_file(&path, |e| e.response.clone())
        .unwrap_err();

    let message = err.to_string();
    let (setting, reason) = invalid_config(err);
    assert_eq!(setting, path.display().to_string());
    assert!(reason.starts_with("cannot read:"), "{reason}");
    assert!(
        message.contains("resilience-core-seed-does-not-exist.json"),
        "{message}"
    );
    assert_eq!(cache.stats().seeded, 0);
}

#[test]
fn unknown_fields_are_refused() {
    let err = SeedFile::parse(
        r#"{"entries": [{"prompts": ["Hi"], "response": "Hello", "ttl": 5}]}"#,
        "seeds.json",
    )
    .unwrap_err();

    let (setting, reason) = invalid_config(err);
    assert_eq!(setting, "seeds.json");
    assert!(reason.contains("unknown field `ttl`"), "{reason}");
}

#[test]
fn every_invalid_entry_is_reported_at_once() {
    let err = SeedFile::parse(
        r#"{"entries": [
            {"prompts": [], "response": "orphan"},
            {"prompts": ["?!"], "response": "   "},
            {"prompts": ["What is AI?"], "response": "one"},
            {"prompts": ["what is ai"], "response": "two"},
            {"prompts": ["what is ai"], "response": "for m1", "model": "m1"}
        ]}"#,
        "seeds.json",
    )
    .unwrap_err();

    let (_, reason) = invalid_config(err);
    let problems: Vec<_> = reason.split("; ").collect();
    assert_eq!(
        problems,
        [
            "entries[0].prompts: is empty",
            "entries[1].response: is blank",
            "entries[1].prompts[0]: \"?!\" has no letters or digits",
            "entries[3].prompts[0]: \"what is ai\" is the same prompt as entries[2].prompts[0] once normalised",
        ]
    );
}

#[test]
fn shipped_seed_file_parses_and_answers_common_prompts() {
    let seeds = SeedFile::load(SHIPPED).unwrap();
    assert!(
        (10..=20).contains(&seeds.entries.len()),
        "{} entries",
        seeds.entries.len()
    );
    let (_clock, cache) = manual_cache(Duration::from_secs(60), 10);

    let seeded = cache.seed(&seeds, |e| e.response.clone());

    assert_eq!(
        seeded,
        seeds.entries.iter().map(|e| e.prompts.len()).sum::<usize>()
    );
    for prompt in [
        "What is AI?",
        "hello",
        "what is machine learning",
        "Tell me a joke!",
        "What is a circuit breaker?",
    ] {
        let answer = cache.get(&CacheKey::new(Some("any-model"), prompt));
        assert!(
            answer.is_some_and(|a| !a.is_empty()),
            "no seeded answer for {prompt:?}"
        );
    }
}
