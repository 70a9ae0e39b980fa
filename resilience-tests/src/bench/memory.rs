//! Idle keep-alive client connections for the memory scenario: each sends one request,
//! reads its whole answer, then stays open until dropped.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Connections opened at once.
const OPENING: usize = 64;
/// The longest one connection's request and answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read.
const MAX_ANSWER: usize = 1 << 20;

/// Whether `buf` holds a whole HTTP/1.1 answer (by `Content-Length`, or the last chunk of
/// a chunked body); `None` while the head is incomplete.
pub fn answer_complete(buf: &[u8]) -> Option<bool> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let body = &buf[head_end..];
    let length = head.lines().find_map(|line| {
        line.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    Some(match length {
        Some(length) => body.len() >= length,
        None if head.contains("transfer-encoding: chunked") => body.ends_with(b"0\r\n\r\n"),
        None => true,
    })
}

/// `request` as raw HTTP/1.1: `POST path` with a JSON body, kept alive.
pub fn raw_post(addr: SocketAddr, path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Opens `count` connections to `addr`, each having sent `request` and read its answer.
pub async fn hold(
    addr: SocketAddr,
    request: &[u8],
    count: usize,
) -> anyhow::Result<Vec<TcpStream>> {
    anyhow::ensure!(addr.ip().is_loopback(), "refusing {addr}: not 127.0.0.1");
    let opened: Vec<anyhow::Result<TcpStream>> = futures::stream::iter(0..count)
        .map(|_| tokio::time::timeout(ANSWER_TIMEOUT, one(addr, request)))
        .buffer_unordered(OPENING)
        .map(|r| r.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 10 s"))))
        .collect()
        .await;
    let mut held = Vec::with_capacity(count);
    for connection in opened {
        held.push(connection.with_context(|| format!("one of {count} connections to {addr}"))?);
    }
    Ok(held)
}

/// One connection: the request sent, its answer read.
async fn one(addr: SocketAddr, request: &[u8]) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "closed before the answer was complete");
        buf.extend_from_slice(&chunk[..n]);
        if answer_complete(&buf) == Some(true) {
            anyhow::ensure!(
                buf.starts_with(b"HTTP/1.1 2"),
                "answered {}",
                String::from_utf8_lossy(buf.get(..12).unwrap_or(&buf))
            );
            return Ok(stream);
        }
        anyhow::ensure!(buf.len() < MAX_ANSWER, "the answer is larger than 1 MiB");
    }
}
