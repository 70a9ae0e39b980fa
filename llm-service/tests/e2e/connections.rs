//! The connection limits every service shares (`http_edge::serve`), seen on llm-service: a
//! trickled body ends in 408 at `BODY_READ_TIMEOUT_MS`, a slowloris connection is closed at
//! `HEADER_READ_TIMEOUT_MS`, and a too large `Content-Length` is 413 at once.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::LlmService;

async fn connect(llm: &LlmService) -> TcpStream {
    TcpStream::connect(llm.url.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// The first line the server answers within `within`, and when; "" when it closed silently.
async fn first_line(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(within, stream.read(&mut buf))
        .await
        .expect("answered or closed in time")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    (
        text.lines().next().unwrap_or("").to_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_trickled_body_is_408_at_the_body_deadline() {
    let llm = LlmService::builder()
        .env("BODY_READ_TIMEOUT_MS", 800)
        .start()
        .await;
    let mut stream = connect(&llm).await;
    let head = "POST /generate HTTP/1.1\r\nhost: llm\r\ncontent-type: application/json\r\n\
                content-length: 100\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1_200), trickle).await;
    let (line, _) = first_line(&mut stream, Duration::from_secs(2)).await;
    assert!(line.starts_with("HTTP/1.1 408"), "{line}");
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_and_an_oversized_length_refused_at_once() {
    let llm = LlmService::builder()
        .env("HEADER_READ_TIMEOUT_MS", 500)
        .env("MAX_BODY_BYTES", 4096)
        .start()
        .await;
    let mut slow = connect(&llm).await;
    slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let (line, took) = first_line(&mut slow, Duration::from_secs(3)).await;
    assert_eq!(line, "", "closed without an answer");
    assert!(took < Duration::from_millis(1_500), "{took:?}");

    let mut large = connect(&llm).await;
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: llm\r\n\
                content-type: application/json\r\ncontent-length: 5000\r\n\
                expect: 100-continue\r\n\r\n";
    large.write_all(head.as_bytes()).await.unwrap();
    let (line, took) = first_line(&mut large, Duration::from_secs(2)).await;
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    assert!(took < Duration::from_millis(500), "{took:?}");
}
