//! Every instance stopped: the cache tier answers seeded prompts, the template tier the
//! rest, fast, and each fallback answer logs one WARN line naming it.

use std::time::Duration;

use crate::contract::assert_success_envelope;
use crate::harness::{Answer, Gateway, GatewayExt, LlmService, poll};

const UNUSUAL: &str = "Compose a limerick about quaternion drift in the year 1987, zq";

fn assert_fallback(answer: &Answer, tier: &str, what: &str) {
    let data = assert_success_envelope(answer);
    assert_eq!(
        data["fallback_used"], true,
        "{what}: a fallback: {}",
        answer.body
    );
    assert_eq!(data["fallback_type"], tier, "{what}: tier: {}", answer.body);
    assert_eq!(
        data["served_by"], "fallback_manager",
        "{what}: served_by names the fallback manager: {}",
        answer.body
    );
    assert!(
        answer.elapsed < Duration::from_secs(1),
        "{what}: answered in < 1 s, took {:?}",
        answer.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_instances_stopped_answers_from_cache_then_template() {
    let mut a = LlmService::builder().start().await;
    let mut b = LlmService::builder().start().await;
    let gw = Gateway::builder().upstreams(&[&a, &b]).start().await;
    assert!(
        gw.generate("warm up zq").await.is_primary_success(),
        "serving before the stop"
    );

    a.kill9().await;
    b.kill9().await;

    // Right after the kill, before health checks notice.
    let seeded = gw.generate_with_id("What is AI?", "e2e-fb-cache-1").await;
    assert_fallback(&seeded, "cache", "seeded prompt right after the kill");
    assert!(
        seeded.data()["response"]
            .as_str()
            .is_some_and(|r| r.starts_with("Artificial intelligence")),
        "the seeded answer of config/fallback_responses.json: {}",
        seeded.body
    );
    let unusual = gw.generate_with_id(UNUSUAL, "e2e-fb-template-1").await;
    assert_fallback(&unusual, "template", "unusual prompt right after the kill");
    assert!(
        unusual.data()["response"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "a non-empty template answer: {}",
        unusual.body
    );

    // Once discovery has noticed: no instance at all.
    let none = poll(
        Duration::from_secs(5),
        || gw.available_services(),
        |n| *n == Some(0),
    )
    .await;
    assert!(none.ok, "available_services reaches 0: {:?}", none.value);
    let seeded = gw.generate_with_id("What is AI?", "e2e-fb-cache-2").await;
    assert_fallback(&seeded, "cache", "seeded prompt with no instance left");
    let unusual = gw.generate_with_id(UNUSUAL, "e2e-fb-template-2").await;
    assert_fallback(&unusual, "template", "unusual prompt with no instance left");
    // Matched on the normalised prompt: case, spacing and punctuation folded.
    let folded = gw.generate("  what   is ai  ").await;
    assert_fallback(&folded, "cache", "normalised seeded prompt");

    // One WARN line per fallback answer, with the request id and the tier.
    for (id, tier) in [
        ("e2e-fb-cache-1", "cache"),
        ("e2e-fb-template-1", "template"),
        ("e2e-fb-cache-2", "cache"),
        ("e2e-fb-template-2", "template"),
    ] {
        let logged = poll(
            Duration::from_secs(2),
            || async {
                gw.logs()
                    .records()
                    .into_iter()
                    .filter(|r| r.contains("WARN") && r.contains(id))
                    .collect::<Vec<_>>()
            },
            |lines| !lines.is_empty(),
        )
        .await;
        let lines = logged.value;
        assert!(
            lines.iter().any(|l| l.to_lowercase().contains("fallback")),
            "a WARN line with `fallback` and request id {id}; WARN lines with the id: {lines:?}\nlog tail:\n{}",
            gw.logs().tail(20)
        );
        assert!(
            lines.iter().any(|l| l.contains(tier)),
            "the WARN line for {id} names the tier `{tier}`: {lines:?}"
        );
        let fallback_lines = lines
            .iter()
            .filter(|l| l.to_lowercase().contains("fallback"))
            .count();
        assert_eq!(
            fallback_lines, 1,
            "exactly one fallback WARN line for {id}: {lines:?}"
        );
    }
}
