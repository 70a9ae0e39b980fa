use std::net::SocketAddr;

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::limits::BodyLimits;

fn limits() -> EdgeLimits {
    EdgeLimits {
        max_connections: Some(64),
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(1_200),
        max_header_bytes: 16 * 1024,
        h2_max_concurrent_streams: 4,
        h2_max_pending_resets: 20,
        body: BodyLimits {
            max_bytes: 1024,
            deadline: Duration::from_secs(1),
            max_concurrent: 8,
        },
    }
}

fn phase(busy: usize, idle_since_ms: u64, head: Option<u64>, http2: bool) -> ConnectionPhase {
    ConnectionPhase {
        busy,
        idle_since_ms,
        head_started_ms: head,
        http2,
    }
}

#[test]
fn a_connection_with_a_request_in_progress_is_never_closed() {
    let l = limits();
    assert_eq!(verdict(phase(1, 0, None, false), 1_000_000, &l), None);
    assert_eq!(verdict(phase(2, 0, None, true), 1_000_000, &l), None);
}

#[test]
fn headers_must_arrive_within_the_header_timeout() {
    let l = limits();
    assert_eq!(verdict(phase(0, 0, Some(1_000), false), 1_300, &l), None);
    assert_eq!(
        verdict(phase(0, 0, Some(1_000), false), 1_301, &l),
        Some(CloseReason::HeaderTimeout)
    );
}

#[test]
fn an_idle_keep_alive_connection_lasts_the_idle_timeout() {
    let l = limits();
    assert_eq!(verdict(phase(0, 1_000, None, false), 2_200, &l), None);
    assert_eq!(
        verdict(phase(0, 1_000, None, false), 2_201, &l),
        Some(CloseReason::Idle)
    );
    // HTTP/2 frames between streams (pings, settings) are not a request head.
    assert_eq!(verdict(phase(0, 1_000, Some(1_000), true), 2_000, &l), None);
    assert_eq!(
        verdict(phase(0, 1_000, Some(1_000), true), 2_201, &l),
        Some(CloseReason::Idle)
    );
}

async fn slow(axum::extract::Path(ms): axum::extract::Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slow"
}

async fn start(limits: EdgeLimits) -> (SocketAddr, Arc<Connections>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/slow/{ms}", get(slow));
    let connections = Connections::new(limits);
    let serving = Arc::clone(&connections);
    tokio::spawn(serve(
        listener,
        app,
        serving,
        std::future::pending(),
        Duration::from_millis(100),
    ));
    (addr, connections)
}

/// Reads until the server closes the connection or `within` passes; the bytes read, and
/// whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (seen, false),
        }
    }
}

async fn get_once(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") || !seen.ends_with(b"o") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the answer");
        seen.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&seen).ends_with("hello") || seen.ends_with(b"slow") {
            break;
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_at_the_header_timeout() {
    let (addr, connections) = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if stream.write_all(b"x").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_500),
        "the trickling client was cut only after {took:?}"
    );
    assert_eq!(
        connections.stats().closed[0],
        1,
        "{:?}",
        connections.stats()
    );
}

#[tokio::test]
async fn a_connection_that_never_sends_is_closed_at_the_header_timeout() {
    let (addr, _) = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_millis(1_000)).await;
    assert!(closed);
}

#[tokio::test]
async fn keep_alive_connections_live_for_the_idle_timeout_not_the_header_timeout() {
    let (addr, connections) = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert!(get_once(&mut stream, "/").await.starts_with("HTTP/1.1 200"));
    // Longer than the header timeout, shorter than the idle timeout: still open.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(get_once(&mut stream, "/").await.starts_with("HTTP/1.1 200"));
    let started = std::time::Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(closed);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_100) && took < Duration::from_millis(2_000),
        "{took:?}"
    );
    assert_eq!(connections.stats().closed[1], 1);
    assert_eq!(connections.stats().open, 0);
}

#[tokio::test]
async fn a_long_answer_is_not_cut_by_the_idle_timeout() {
    let (addr, _) = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    assert!(get_once(&mut stream, "/slow/1600").await.ends_with("slow"));
}

#[tokio::test]
async fn at_the_cap_the_longest_idle_connection_makes_room() {
    let (addr, connections) = start(EdgeLimits {
        max_connections: Some(2),
        ..limits()
    })
    .await;
    let mut oldest = TcpStream::connect(addr).await.unwrap();
    assert!(get_once(&mut oldest, "/").await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut newer = TcpStream::connect(addr).await.unwrap();
    assert!(get_once(&mut newer, "/").await.starts_with("HTTP/1.1 200"));
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(get_once(&mut third, "/").await.starts_with("HTTP/1.1 200"));
    let (_, closed) = read_until_closed(&mut oldest, Duration::from_millis(200)).await;
    assert!(closed, "the longest idle connection was not closed");
    assert!(get_once(&mut newer, "/").await.starts_with("HTTP/1.1 200"));
    let stats = connections.stats();
    assert_eq!(stats.closed[2], 1, "{stats:?}");
    assert_eq!(stats.open, 2);
    assert!(stats.saturated());
}

#[tokio::test]
async fn at_the_cap_with_none_idle_a_new_connection_is_refused_and_the_busy_one_served() {
    let (addr, connections) = start(EdgeLimits {
        max_connections: Some(1),
        ..limits()
    })
    .await;
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"GET /slow/400 HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let (seen, closed) = read_until_closed(&mut refused, Duration::from_millis(500)).await;
    assert!(closed && seen.is_empty());
    let (answer, _) = read_until_closed(&mut busy, Duration::from_millis(800)).await;
    assert!(String::from_utf8_lossy(&answer).ends_with("slow"));
    assert_eq!(connections.stats().closed[3], 1);
}

#[tokio::test]
async fn a_head_larger_than_the_limit_is_refused() {
    let (addr, _) = start(limits()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let big = "a".repeat(40 * 1024);
    let request = format!("GET / HTTP/1.1\r\nhost: t\r\nx-big: {big}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let (seen, closed) = read_until_closed(&mut stream, Duration::from_secs(2)).await;
    assert!(closed);
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
}

#[tokio::test]
async fn http2_is_served_within_its_stream_and_header_limits() {
    let (addr, _) = start(limits()).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("http://{addr}/");
    let answer = client.get(&url).send().await.unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert_eq!(answer.text().await.unwrap(), "hello");
    // More streams than allowed at once still all finish: the client waits for room.
    let slow = format!("http://{addr}/slow/200");
    let started = std::time::Instant::now();
    let answers = futures::future::join_all((0..8).map(|_| client.get(&slow).send())).await;
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().is_ok_and(|a| a.status() == 200))
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "4 streams at a time: two rounds"
    );
    let refused = client
        .get(&url)
        .header("x-big", "a".repeat(40 * 1024))
        .send()
        .await;
    assert!(refused.is_err() || refused.is_ok_and(|r| r.status() == 431));
}
