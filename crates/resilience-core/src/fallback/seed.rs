//! The seed file: common prompts with ready answers, loaded into the response cache.
//!
//! The file is JSON (see the [module documentation](super) for the shape), parsed with
//! unknown fields refused, then validated as a whole so that one error message lists every
//! problem. Errors are [`crate::Error::InvalidConfig`] whose setting is the file's path.

use std::collections::HashMap;
use std::path::Path;

use super::key::CacheKey;

/// A parsed and validated seed file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    /// Free text for the people who edit the file; ignored by the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The seeded answers.
    pub entries: Vec<SeedEntry>,
}

/// One seeded answer and the prompts it answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedEntry {
    /// The prompts this answer is for, as users type them; each is normalised for lookup.
    pub prompts: Vec<String>,
    /// The answer text.
    pub response: String,
    /// The model the answer is for; absent (the default) means any model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl SeedEntry {
    /// The cache keys of this entry, one per prompt variant.
    pub fn keys(&self) -> impl Iterator<Item = CacheKey> + '_ {
        self.prompts
            .iter()
            .map(|p| CacheKey::new(self.model.as_deref(), p))
    }
}

impl SeedFile {
    /// Reads, parses and validates the file at `path`. Blocking I/O: call at start-up.
    ///
    /// Fails with [`crate::Error::InvalidConfig`] (setting = the path) when the file cannot
    /// be read, is not valid JSON of this shape, or fails [`SeedFile::validate`].
    pub fn load(path: impl AsRef<Path>) -> crate::Result<Self> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::invalid_config(&origin, format!("cannot read: {e}")))?;
        Self::parse(&text, &origin)
    }

    /// Parses and validates `text`; `origin` names it in errors (usually the file path).
    ///
    /// Fails with [`crate::Error::InvalidConfig`] (setting = `origin`) on malformed JSON,
    /// unknown fields or any problem [`SeedFile::validate`] finds.
    pub fn parse(text: &str, origin: &str) -> crate::Result<Self> {
        let file: Self = serde_json::from_str(text)
            .map_err(|e| crate::Error::invalid_config(origin, format!("cannot parse: {e}")))?;
        file.validate()
            .map_err(|problems| crate::Error::invalid_config(origin, problems.join("; ")))?;
        Ok(file)
    }

    /// Checks every entry and returns every problem found, each naming its place (for
    /// example `entries[2].prompts[0]`): an entry without prompts, a prompt with no letters
    /// or digits, a blank response, or a prompt that repeats another for the same model.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let mut seen: HashMap<CacheKey, String> = HashMap::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if entry.prompts.is_empty() {
                problems.push(format!("entries[{i}].prompts: is empty"));
            }
            if entry.response.trim().is_empty() {
                problems.push(format!("entries[{i}].response: is blank"));
            }
            for (j, (prompt, key)) in entry.prompts.iter().zip(entry.keys()).enumerate() {
                let place = format!("entries[{i}].prompts[{j}]");
                if key.is_blank() {
                    problems.push(format!("{place}: {prompt:?} has no letters or digits"));
                } else if let Some(first) = seen.get(&key) {
                    problems.push(format!(
                        "{place}: {prompt:?} is the same prompt as {first} once normalised"
                    ));
                } else {
                    seen.insert(key, place);
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
