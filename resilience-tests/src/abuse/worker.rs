//! The idle-connection flood's worker: a hidden subcommand (`abuse-worker`) that the suite
//! starts several times, so that the flood is bounded by the target, not by one client
//! process's descriptor limit. Each worker opens its connections, sends one keep-alive
//! `GET` on each, prints `opened N failed F`, holds them until its standard input closes
//! (or `--hold` passes), then prints `still-open S` and exits, closing them all.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::raw;

/// Connections opened at once by one worker.
const CONNECT_CONCURRENCY: usize = 64;
/// The most connections one worker holds.
pub const MAX_PER_WORKER: usize = 5_000;

/// `abuse-worker` options (internal).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Where to connect.
    #[arg(long)]
    pub addr: SocketAddr,
    /// The `Host` header.
    #[arg(long)]
    pub host: String,
    /// How many connections.
    #[arg(long)]
    pub count: usize,
    /// The longest the connections are held, in seconds.
    #[arg(long)]
    pub hold: u64,
}

/// Runs a worker; see the module documentation.
pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    super::raise_nofile_limit();
    let count = args.count.min(MAX_PER_WORKER);
    let request = format!(
        "GET /live HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n",
        args.host
    );
    let opened: Vec<TcpStream> = futures::stream::iter(0..count)
        .map(|_| open(args.addr, request.as_bytes()))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .filter_map(|stream| async move { stream })
        .collect()
        .await;
    let mut streams = opened;
    println!("opened {} failed {}", streams.len(), count - streams.len());

    // Hold until the suite closes our standard input, or the hold ends.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0_u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(args.hold), async {
        while let Ok(n) = stdin.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;

    let still_open = streams.iter_mut().map(is_open).filter(|open| *open).count();
    println!("still-open {still_open}");
    Ok(ExitCode::SUCCESS)
}

/// Connects and sends one request; the answer is left unread in the socket's buffer.
async fn open(addr: SocketAddr, request: &[u8]) -> Option<TcpStream> {
    let mut stream = raw::connect(addr).await.ok()?;
    match raw::write_within(&mut stream, request, raw::CONNECT_TIMEOUT).await {
        Ok(true) => Some(stream),
        _ => None,
    }
}

/// True unless the server closed the connection (reads drain what it answered).
fn is_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0_u8; 4096];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}
