//! Prompt normalisation and cache keys.

use proptest::prelude::*;

use crate::fallback::{CacheKey, normalise_prompt};

#[test]
fn case_whitespace_and_punctuation_are_folded() {
    assert_eq!(normalise_prompt("What is AI?"), "what is ai");
    assert_eq!(normalise_prompt("  what is   ai "), "what is ai");
    assert_eq!(
        CacheKey::any_model("What is AI?"),
        CacheKey::any_model("  what is   ai ")
    );
}

#[test]
fn normalisation_examples() {
    let cases = [
        ("Hello", "hello"),
        ("HELLO!!!", "hello"),
        ("\tTell me\na joke.\r\n", "tell me a joke"),
        ("What's up?", "whats up"),
        ("What is a circuit-breaker?", "what is a circuit breaker"),
        ("It’s 3.14, not 314", "its 3 14 not 314"),
        ("Wie geht's, Müller?", "wie gehts müller"),
        ("Version 2.0 ?", "version 2 0"),
        ("", ""),
        (" ?! ... ", ""),
    ];
    for (input, expected) in cases {
        assert_eq!(normalise_prompt(input), expected, "{input:?}");
    }
}

#[test]
fn punctuation_between_spaces_leaves_a_single_space() {
    assert_eq!(normalise_prompt("hello - world"), "hello world");
    assert_eq!(normalise_prompt("- hello"), "hello");
}

#[test]
fn model_is_trimmed_and_lowercased_and_blank_means_any_model() {
    let key = CacheKey::new(Some("  GPT-X "), "Hi");
    assert_eq!((key.model(), key.prompt()), (Some("gpt-x"), "hi"));
    assert_eq!(CacheKey::new(Some("  "), "Hi"), CacheKey::any_model("hi"));
    assert_eq!(key.without_model(), Some(CacheKey::any_model("hi")));
    assert_eq!(CacheKey::any_model("hi").without_model(), None);
}

#[test]
fn prompt_without_letters_or_digits_makes_a_blank_key() {
    assert!(CacheKey::any_model("?!").is_blank());
    assert!(!CacheKey::any_model("a?").is_blank());
}

fn messy_char() -> impl Strategy<Value = char> {
    prop_oneof![
        any::<char>(),
        prop::sample::select(vec![
            ' ', '\t', '\n', '?', '!', '.', ',', '\'', '-', 'A', 'z', 'Σ', 'İ'
        ]),
    ]
}

proptest! {
    #[test]
    fn a_bounded_key_is_the_key_when_its_prompt_fits_and_none_otherwise(
        chars in prop::collection::vec(messy_char(), 0..64),
        max in 0usize..40,
    ) {
        let prompt: String = chars.into_iter().collect();
        let full = CacheKey::new(Some(" M "), &prompt);
        let bounded = CacheKey::within(Some(" M "), &prompt, max);
        if full.prompt().len() <= max {
            prop_assert_eq!(bounded, Some(full));
        } else {
            prop_assert_eq!(bounded, None);
        }
    }

    #[test]
    fn normalise_is_idempotent(chars in prop::collection::vec(messy_char(), 0..64)) {
        let prompt: String = chars.into_iter().collect();
        let once = normalise_prompt(&prompt);
        prop_assert_eq!(normalise_prompt(&once), once);
    }

    #[test]
    fn normalised_text_has_no_edge_or_double_spaces(chars in prop::collection::vec(messy_char(), 0..64)) {
        let prompt: String = chars.into_iter().collect();
        let once = normalise_prompt(&prompt);
        prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
        prop_assert!(once.chars().all(|c| c == ' ' || c.is_alphanumeric()));
    }

    #[test]
    fn spacing_case_and_trailing_punctuation_do_not_change_the_key(
        words in prop::collection::vec("[a-z0-9]{1,8}", 1..6),
        gaps in prop::collection::vec("[ \t\n]{1,3}[?!.,]{0,2}", 6),
        upper in any::<bool>(),
    ) {
        let plain = words.join(" ");
        let mut messy = String::from("  ");
        for (word, gap) in words.iter().zip(&gaps) {
            messy.push_str(&if upper { word.to_uppercase() } else { word.clone() });
            messy.push_str(gap);
        }
        prop_assert_eq!(normalise_prompt(&messy), plain);
    }
}
