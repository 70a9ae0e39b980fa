//! Hostile clients (issue 16): slow bodies hold no in-flight slot and end in 408 at the
//! body deadline; `Expect: 100-continue` with an oversized length is refused at once;
//! slowloris is cut at the header timeout; an oversized header is 431; a saturated gateway
//! says so on `/ready` (503) and `/health` (degraded, 200). Raw TCP where a client must
//! misbehave in ways reqwest will not.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Gateway, GatewayExt, LlmService};

fn addr(gw: &Gateway) -> SocketAddr {
    gw.url
        .trim_start_matches("http://")
        .parse()
        .expect("the gateway's url is http://IP:PORT")
}

/// Reads until the server closes or `within` passes: what arrived, and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&seen).into(), false),
        }
    }
}

/// A `/generate` whose body announces 200 bytes and sends one every 200 ms; returns the
/// status line the gateway answered and how long after the headers it came.
async fn slow_body(to: SocketAddr) -> (String, Duration) {
    let mut stream = TcpStream::connect(to).await.unwrap();
    let head = "POST /generate HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
                content-length: 200\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if stream.write_all(b" ").await.is_err() {
                    break;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never answered"
        );
    }
    let text = String::from_utf8_lossy(&seen);
    (
        text.lines().next().unwrap_or("").to_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_no_slot_and_end_in_408_at_the_body_deadline() {
    let a = LlmService::builder().latency(5, 10).start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .max_concurrent(2)
        .env("BODY_READ_TIMEOUT_MS", 1_500)
        .start()
        .await;
    let to = addr(&gw);
    let slow: Vec<_> = (0..12).map(|_| tokio::spawn(slow_body(to))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Twelve trickling uploads, two slots: well-behaved requests are still all served.
    for n in 0..10 {
        let answer = gw.generate(&format!("while slow bodies trickle {n}")).await;
        assert!(answer.is_primary_success(), "{answer:?}");
    }
    let ready = gw.get("/ready", "application/json").await;
    assert_eq!(
        ready.status, 200,
        "slow uploads do not saturate the slots: {ready:?}"
    );
    let (_, metrics) = gw.metrics_text().await;
    assert!(
        metrics.contains("gateway_request_bodies_reading 12"),
        "the uploads are counted as such: {}",
        metrics
            .lines()
            .filter(|l| l.contains("bodies"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for upload in slow {
        let (status_line, took) = upload.await.unwrap();
        assert!(status_line.starts_with("HTTP/1.1 408"), "{status_line}");
        assert!(
            took >= Duration::from_millis(1_400) && took < Duration::from_secs(4),
            "408 at the body deadline, not later: {took:?}"
        );
    }
    let (_, metrics) = gw.metrics_text().await;
    assert!(
        metrics.contains(r#"gateway_request_bodies_refused_total{reason="too_slow"} 12"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_with_an_oversized_length_is_413_at_once() {
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder().upstreams(&[&a]).start().await;
    let mut stream = TcpStream::connect(addr(&gw)).await.unwrap();
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n\
                content-type: application/json\r\ncontent-length: 52428800\r\n\
                expect: 100-continue\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        answer.contains("invalid_request_error"),
        "OpenAI's shape: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_at_the_header_timeout_and_a_huge_header_is_431() {
    let a = LlmService::builder().start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .env("HEADER_READ_TIMEOUT_MS", 1_000)
        .start()
        .await;
    let mut slow = TcpStream::connect(addr(&gw)).await.unwrap();
    slow.write_all(b"GET /live HTTP/1.1\r\nhost: gw\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed_after = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"x").await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await
        {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the slowloris connection was never closed");
    assert!(
        closed_after < Duration::from_millis(2_000),
        "{closed_after:?}"
    );
    assert_eq!(gw.get("/live", "application/json").await.status, 200);

    let mut big = TcpStream::connect(addr(&gw)).await.unwrap();
    let head = format!(
        "GET /live HTTP/1.1\r\nhost: gw\r\nx-big: {}\r\n\r\n",
        "a".repeat(400 * 1024)
    );
    let _ = big.write_all(head.as_bytes()).await;
    let (answer, closed) = read_until_closed(&mut big, Duration::from_secs(3)).await;
    assert!(closed);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_gateway_is_not_ready_and_degraded() {
    let a = LlmService::builder().latency(1_500, 1_500).start().await;
    let gw = Gateway::builder()
        .upstreams(&[&a])
        .max_concurrent(1)
        .per_try_timeout_ms(5_000)
        .start()
        .await;
    assert_eq!(gw.ready_status().await, Some(200));
    let client = gw.client();
    let url = gw.url.clone();
    let busy = tokio::spawn(async move {
        crate::harness::generate_on(&client, &url, json!({"prompt": "slow"}), None).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = gw.get("/ready", "application/json").await;
    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(ready.body["status"], "saturated");
    let (status, health) = gw.health().await;
    assert_eq!(
        status, 200,
        "saturated is degraded, not unhealthy: {health}"
    );
    assert_eq!(health["overall_status"], "degraded", "{health}");
    let capacity = &health["health_checks"]["capacity"];
    assert_eq!(capacity["status"], "degraded", "{health}");
    assert_eq!(capacity["details"]["max_in_flight"], 1, "{health}");
    assert!(busy.await.unwrap().unwrap().is_primary_success());
    assert_eq!(gw.ready_status().await, Some(200));
}
