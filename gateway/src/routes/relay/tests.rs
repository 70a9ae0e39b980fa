use super::*;
use crate::upstream::Chunk;

fn chunk(text: &str, finished: bool) -> Chunk {
    Chunk {
        raw: format!(r#"{{"id":"c-1","choices":[{{"delta":{{"content":"{text}"}}}}]}}"#),
        text: Some(text.to_owned()),
        has_content: true,
        finished,
        usage: None,
        model: None,
    }
}

#[test]
fn the_relay_keeps_the_answer_for_the_cache_only_up_to_its_bound() {
    let mut seen = Seen::default();
    seen.observe(&chunk("Hello", false));
    seen.observe(&chunk(" world", true));
    assert_eq!(seen.text.as_deref(), Some("Hello world"));
    assert_eq!(seen.id.as_deref(), Some("c-1"));
    assert_eq!(seen.tokens, 2);
    assert!(seen.finished);

    let big = "x".repeat(MAX_CACHED_ANSWER / 2 + 1);
    seen.observe(&chunk(&big, false));
    seen.observe(&chunk(&big, false));
    assert_eq!(seen.text, None, "too long to cache: dropped, not grown");
    seen.observe(&chunk("more", false));
    assert_eq!(seen.text, None);
    assert_eq!(seen.tokens, 5, "tokens are still counted for usage");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_let_go_after_the_idle_limit() {
    let (tx, _rx) = mpsc::channel(1);
    assert!(deliver(&tx, Event::default().data("1"), Duration::from_millis(50)).await);
    let started = std::time::Instant::now();
    let delivered = deliver(&tx, Event::default().data("2"), Duration::from_millis(50)).await;
    assert!(!delivered, "the buffer is full and nobody reads");
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(_rx);
    assert!(!deliver(&tx, Event::default().data("3"), Duration::from_secs(5)).await);
}
