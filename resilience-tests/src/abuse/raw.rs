//! Raw HTTP/1.1 over TCP, every operation under a deadline: what the attacks need that a
//! well-behaved HTTP client would never do (trickle bytes, send broken headers).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::rules::Ending;

/// How long a connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The most of an answer's head that is read.
const MAX_HEAD: usize = 16 * 1024;

/// Connects within [`CONNECT_TIMEOUT`].
pub async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )),
    }
}

/// The status code of an HTTP/1.x status line at the start of `head`.
pub fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let version = words.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

/// The status of `head` once its status line is complete.
fn complete_status(head: &[u8]) -> Option<u16> {
    if head.contains(&b'\n') {
        status_of(head)
    } else {
        None
    }
}

/// Writes `bytes` within `limit`. `Err` when the server closed or reset the connection
/// (or the write did not finish in time: then `Ok(false)`).
pub async fn write_within(
    stream: &mut TcpStream,
    bytes: &[u8],
    limit: Duration,
) -> std::io::Result<bool> {
    match tokio::time::timeout(limit, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(true),
        Ok(Err(error)) => Err(error),
        Err(_) => Ok(false),
    }
}

/// Reads until the server answers (a status line), closes, or `deadline` passes; `started`
/// is when the attack on this connection began.
pub async fn await_ending(stream: &mut TcpStream, started: Instant, deadline: Instant) -> Ending {
    let mut head = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Ending::StillOpen,
            Ok(Ok(0) | Err(_)) => {
                return match status_of(&head) {
                    Some(status) => Ending::Answered(status, started.elapsed()),
                    None => Ending::Closed(started.elapsed()),
                };
            }
            Ok(Ok(n)) => {
                head.extend_from_slice(buf.get(..n).unwrap_or_default());
                if let Some(status) = complete_status(&head) {
                    return Ending::Answered(status, started.elapsed());
                }
                if head.len() > MAX_HEAD {
                    return Ending::Closed(started.elapsed());
                }
            }
        }
    }
}

/// Holds a connection open while trickling `trickle` one byte per `every`, until the server
/// answers or closes, or `deadline` passes. `started` is when the attack began.
pub async fn trickle_until_ending(
    stream: TcpStream,
    trickle: &[u8],
    every: Duration,
    started: Instant,
    deadline: Instant,
) -> Ending {
    let (mut reader, mut writer) = stream.into_split();
    let reading = async {
        let mut head = Vec::new();
        let mut buf = [0_u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    return match status_of(&head) {
                        Some(status) => Ending::Answered(status, started.elapsed()),
                        None => Ending::Closed(started.elapsed()),
                    };
                }
                Ok(n) => {
                    head.extend_from_slice(buf.get(..n).unwrap_or_default());
                    if let Some(status) = complete_status(&head) {
                        return Ending::Answered(status, started.elapsed());
                    }
                    if head.len() > MAX_HEAD {
                        return Ending::Closed(started.elapsed());
                    }
                }
            }
        }
    };
    let writing = async {
        for byte in trickle.chunks(1) {
            tokio::time::sleep(every).await;
            if writer.write_all(byte).await.is_err() {
                // The server closed: the reader sees it too; let it say how.
                std::future::pending::<()>().await;
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        ending = reading => ending,
        () = writing => Ending::StillOpen,
        () = tokio::time::sleep_until(deadline) => Ending::StillOpen,
    }
}
