//! The template provider and the default degraded text.

use std::time::Duration;

use super::support::{Req, Scripted, req, tier};
use crate::fallback::TierKind::{Primary, Template};
use crate::fallback::{
    DEGRADED_QUOTE_CHARS, FallbackChain, FallbackProvider, ProviderError, TemplateProvider, Tier,
    degraded_text,
};

#[derive(Debug, PartialEq)]
struct Degraded {
    text: String,
    model: String,
}

fn template() -> TemplateProvider<Req, Degraded> {
    TemplateProvider::new("degraded", |r: &Req| Degraded {
        text: degraded_text(&r.prompt),
        model: r.model.clone().unwrap_or_else(|| "default".into()),
    })
}

#[tokio::test]
async fn template_builds_its_answer_from_the_request() {
    let provider = template();

    let answer = provider
        .call(&super::support::req_for("gpt-x", "What is AI?"))
        .await
        .unwrap();

    assert_eq!(provider.name(), "degraded");
    assert_eq!(answer.model, "gpt-x");
    assert!(answer.text.contains("\"What is AI?\""), "{}", answer.text);
}

#[tokio::test(start_paused = true)]
async fn template_tier_answers_when_everything_else_fails() {
    let primary = Scripted::failing("pool", ProviderError::CircuitOpen);
    let chain = FallbackChain::new([
        tier(Primary, &[&primary]),
        Tier::new(Template).with_provider(TemplateProvider::new("degraded", |r: &Req| {
            degraded_text(&r.prompt)
        })),
    ])
    .unwrap();

    let served = chain.execute(&req("hello")).await.unwrap();

    assert_eq!(
        (served.tier, served.provider.as_str()),
        (Template, "degraded")
    );
    assert_eq!(served.response, degraded_text("hello"));
    assert_eq!(served.elapsed, Duration::ZERO);
}

#[test]
fn degraded_text_says_degraded_and_names_nothing_internal() {
    let text = degraded_text("What is AI?");

    assert!(text.contains("reduced mode"), "{text}");
    assert!(text.contains("try again"), "{text}");
    for internal in [
        "circuit", "breaker", "upstream", "fallback", "tier", "error", "cache", "redis",
    ] {
        assert!(
            !text.to_lowercase().contains(internal),
            "{text:?} mentions {internal}"
        );
    }
}

#[test]
fn degraded_text_quotes_a_bounded_collapsed_prompt() {
    let long = format!("  many\n\nwords {}", "é".repeat(200));
    let text = degraded_text(&long);

    let quote = text.split('"').nth(1).unwrap();
    assert!(quote.starts_with("many words é"), "{quote}");
    assert!(quote.ends_with('…'), "{quote}");
    assert_eq!(quote.chars().count(), DEGRADED_QUOTE_CHARS + 1);
}

#[test]
fn degraded_text_for_a_blank_prompt_quotes_nothing() {
    let text = degraded_text("   ");
    assert!(!text.contains('"'), "{text}");
    assert!(text.contains("your request"), "{text}");
}
