//! The merge rule of static and registry instances, kept pure so it is tested on its own.

use std::collections::{HashMap, HashSet};

use crate::registry::Instance;

/// Static instances first, in order, each replaced in place by the registry entry with the same
/// normalized URL; then the other registry instances sorted by id. One instance per URL: within
/// each source the first wins. Registry entries whose URL does not parse are skipped with a
/// warning. `statics` must already be normalized (the client normalizes them once).
pub(crate) fn merge(statics: &[Instance], mut dynamic: Vec<Instance>) -> Vec<Instance> {
    dynamic.sort_by(|a, b| a.id.cmp(&b.id));
    let mut by_url: HashMap<String, usize> = HashMap::new();
    let mut registered: Vec<Option<Instance>> = Vec::with_capacity(dynamic.len());
    for mut instance in dynamic {
        match instance.normalized_url() {
            Ok(url) if !by_url.contains_key(&url) => {
                by_url.insert(url.clone(), registered.len());
                instance.url = url;
                registered.push(Some(instance));
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(id = %instance.id, %error, "skipping registry instance"),
        }
    }

    let mut merged = Vec::with_capacity(statics.len() + registered.len());
    let mut taken = HashSet::new();
    for fixed in statics {
        if !taken.insert(fixed.url.clone()) {
            continue;
        }
        let replacement = by_url
            .get(&fixed.url)
            .and_then(|&at| registered.get_mut(at))
            .and_then(Option::take);
        merged.push(replacement.unwrap_or_else(|| fixed.clone()));
    }
    merged.extend(registered.into_iter().flatten());
    merged
}
