//! Issue #16, point 5: an upstream's error text never reaches the client. Fake
//! OpenAI-compatible upstreams answer 400, 503 and a broken stream with a database
//! connection string in their message; the client gets the gateway's own words, the
//! upstream's status class, its OpenAI `type` and `code`, and the request id, and the
//! gateway's log gets the upstream's message with the password masked.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{Gateway, GatewayExt, LlmService};

/// What the fake upstreams leak.
const SECRET: &str = "postgres://admin:hunter2@db.internal:5432/prod";

/// An OpenAI error object whose message carries [`SECRET`].
fn leaky_error(kind: &str, code: &str) -> String {
    json!({"error": {
        "message": format!("query failed on {SECRET}; api_key=abc123"),
        "type": kind,
        "param": null,
        "code": code,
    }})
    .to_string()
}

/// A stream with one token, then an error event carrying [`SECRET`], then the end.
fn leaky_stream() -> String {
    let chunk = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                     "finish_reason": null}],
    });
    let error = json!({"error": {"message": format!("lost {SECRET}"), "type": "server_error"}});
    format!("data: {chunk}\n\ndata: {error}\n\n")
}

/// Reads one request's head and body (by `content-length`), within a bound.
async fn read_request(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length || buf.len() > 1 << 20 {
                return text.into_owned();
            }
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).into_owned(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A fake upstream on a free port answering every request with `status` and the JSON
/// `body`, or a stream request with [`leaky_stream`]; its base URL.
async fn fake_upstream(status: u16, body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let request =
                    tokio::time::timeout(Duration::from_secs(5), read_request(&mut conn)).await;
                let streamed = request.is_ok_and(|r| r.contains("\"stream\":true"));
                let reply = if streamed {
                    let events = leaky_stream();
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                         connection: close\r\n\r\n{events}"
                    )
                } else {
                    format!(
                        "HTTP/1.1 {status} Oops\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    url
}

/// Neither the password nor the host nor the upstream's words are in `text`.
fn assert_clean(text: &str) {
    for leaked in [
        "hunter2",
        "db.internal",
        "postgres://",
        "abc123",
        "query failed",
    ] {
        assert!(
            !text.contains(leaked),
            "{leaked} reached the client: {text}"
        );
    }
}

#[tokio::test]
async fn upstream_error_text_reaches_the_log_masked_and_never_the_client() {
    let primary = LlmService::builder().start().await;
    let refusing = fake_upstream(
        400,
        leaky_error("invalid_request_error", "context_length_exceeded"),
    )
    .await;
    let failing = fake_upstream(503, leaky_error("server_error", "db_down")).await;
    let config = format!(
        "[tiers]\ncache = false\ntemplate = false\n\
         [routes.refusing]\ntargets = [{{ url = \"{refusing}/v1\", model = \"m\" }}]\n\
         [routes.failing]\ntargets = [{{ url = \"{failing}/v1\", model = \"m\" }}]\n"
    );
    let gw = Gateway::builder()
        .upstreams(&[&primary])
        .config(&config)
        .start()
        .await;
    let chat = |model: &str, stream: bool| {
        json!({"model": model, "stream": stream,
               "messages": [{"role": "user", "content": "hello"}]})
    };

    // A refusal: the upstream's 4xx, type and code; our words and the request id.
    let refused = gw.chat(chat("refusing", false)).await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert_clean(&refused.body.to_string());
    assert_eq!(refused.body["error"]["code"], "context_length_exceeded");
    assert_eq!(refused.body["error"]["type"], "invalid_request_error");
    let request_id = refused.header("x-request-id").unwrap();
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("HTTP 4xx"), "{message}");
    assert!(message.contains(&request_id), "{message}");

    // The lab's API: 422, the code, the request id.
    let lab = gw
        .generate_body(
            json!({"prompt": "hello", "model": "refusing"}),
            Some("lab-1"),
        )
        .await;
    assert_eq!(lab.status, 422, "{:?}", lab.body);
    assert_clean(&lab.body.to_string());
    assert_eq!(lab.body["request_id"], "lab-1");
    assert!(
        lab.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("context_length_exceeded"),
        "{:?}",
        lab.body
    );

    // Nothing could answer: the upstream's 5xx, type and code.
    let failed = gw.chat(chat("failing", false)).await;
    assert_eq!(failed.status, 503, "{:?}", failed.body);
    assert_clean(&failed.body.to_string());
    assert_eq!(failed.body["error"]["code"], "db_down");
    assert_eq!(failed.body["error"]["type"], "server_error");
    assert!(
        failed.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 5xx")
    );

    // A stream broken by an error event after its first token.
    let streamed = gw.chat_stream(chat("failing", true)).await;
    let error: Value = streamed.error().unwrap();
    assert_eq!(error["error"]["code"], "stream_interrupted");
    assert_clean(&error.to_string());
    assert_clean(&format!("{:?}", streamed.data));

    // The log has what the upstreams said, the secrets masked.
    let logs = gw.logs().settled().await.join("\n");
    assert!(!logs.contains("hunter2"), "the password was logged");
    assert!(!logs.contains("abc123"), "the key was logged");
    for said in [
        "query failed on postgres://***@db.internal:5432/prod; api_key=***",
        "lost postgres://***@db.internal:5432/prod",
    ] {
        assert!(logs.contains(said), "{said} not in the log:\n{logs}");
    }
}
