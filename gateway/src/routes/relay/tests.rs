use super::*;
use crate::upstream::Chunk;

fn chunk(text: &str, finished: bool) -> Chunk {
    Chunk {
        raw: format!(r#"{{"id":"c-1","choices":[{{"delta":{{"content":"{text}"}}}}]}}"#),
        text: Some(text.to_owned()),
        has_content: true,
        finished,
        tool_call: false,
        usage: None,
        model: None,
    }
}

/// Notes `chunk` with its own text.
fn observe(seen: &mut Seen, chunk: &Chunk) {
    seen.observe(chunk.text.as_deref(), chunk);
}

#[test]
fn the_relay_keeps_the_delivered_text_only_up_to_its_bound() {
    let mut seen = Seen::default();
    observe(&mut seen, &chunk("Hello", false));
    observe(&mut seen, &chunk(" world", true));
    assert_eq!(seen.text.as_deref(), Some("Hello world"));
    assert_eq!(seen.id.as_deref(), Some("c-1"));
    assert_eq!(seen.tokens, 2);
    assert!(seen.finished && !seen.tool_call);

    let big = "x".repeat(MAX_CONTINUED_ANSWER / 2 + 1);
    observe(&mut seen, &chunk(&big, false));
    observe(&mut seen, &chunk(&big, false));
    assert_eq!(seen.text, None, "too long to keep: dropped, not grown");
    observe(&mut seen, &chunk("more", false));
    assert_eq!(seen.text, None);
    assert_eq!(seen.tokens, 5, "tokens are still counted for usage");

    // A tool call makes the stream one that is never continued.
    let mut tool = chunk("", false);
    (tool.text, tool.tool_call) = (None, true);
    observe(&mut seen, &tool);
    assert!(seen.tool_call);
    assert_eq!(seen.tokens, 5);
}

#[test]
fn a_continuations_chunk_takes_the_streams_id_and_the_spliced_text() {
    let raw = r#"{"id":"c-2","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Here is a"},"finish_reason":null}]}"#;
    let event = continued_event(raw, "c-1", Some(" a"));
    let expected = Event::default().data(
        r#"{"choices":[{"delta":{"content":" a"},"finish_reason":null,"index":0}],"id":"c-1","object":"chat.completion.chunk"}"#,
    );
    assert_eq!(format!("{event:?}"), format!("{expected:?}"));
    let finish = r#"{"id":"c-2","choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    let event = continued_event(finish, "c-1", None);
    let expected =
        Event::default().data(r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"id":"c-1"}"#);
    assert_eq!(format!("{event:?}"), format!("{expected:?}"));
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
