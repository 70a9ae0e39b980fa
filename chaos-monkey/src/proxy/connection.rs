//! One proxied connection: dial the upstream, run a [`pump`] task per direction, and close
//! both sockets when the connection ends.
//!
//! A direction whose source closes passes the close on (a half-close) and the other goes
//! on until its own source closes. Anything else that ends one direction — an error, a
//! toxic, the proxy being disabled — stops the other and closes both sockets; a
//! `reset_peer` toxic closes them with SO_LINGER 0, which sends an RST instead of a FIN.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::pump::{End, Pumped, pump};
use super::toxic::{Stream, ToxicList};

/// The longest wait for the upstream to accept; a refusal closes the client at once.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Proxies `client` to `upstream` until either side or a toxic ends the connection, or
/// `closing` turns true (the proxy is disabled, changed or deleted). Returns once both
/// sockets are closed.
pub async fn run(
    client: TcpStream,
    upstream: Arc<str>,
    toxics: watch::Receiver<ToxicList>,
    mut closing: watch::Receiver<bool>,
    seed: u64,
) {
    let dial = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&*upstream));
    let server = tokio::select! {
        dialed = dial => match dialed {
            Ok(Ok(server)) => server,
            Ok(Err(error)) => {
                tracing::debug!(%upstream, %error, "upstream refused: closing the client");
                return;
            }
            Err(_) => {
                tracing::debug!(%upstream, "upstream did not answer: closing the client");
                return;
            }
        },
        _ = closing.wait_for(|closing| *closing) => return,
    };
    // Toxics decide the pace; Nagle would add its own.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let (stop, stopped) = watch::channel(false);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut up: JoinHandle<Pumped> = tokio::spawn(pump(
        client_read,
        server_write,
        Stream::Upstream,
        toxics.clone(),
        stopped.clone(),
        SmallRng::from_rng(&mut rng),
    ));
    let mut down: JoinHandle<Pumped> = tokio::spawn(pump(
        server_read,
        client_write,
        Stream::Downstream,
        toxics,
        stopped,
        SmallRng::from_rng(&mut rng),
    ));

    let mut up_done: Option<Option<Pumped>> = None;
    let mut down_done: Option<Option<Pumped>> = None;
    let mut reset = false;
    let mut stopping = false;
    while up_done.is_none() || down_done.is_none() {
        let ended = tokio::select! {
            joined = &mut up, if up_done.is_none() => {
                let pumped = joined.ok();
                let end = pumped.as_ref().map(|p| p.end);
                up_done = Some(pumped);
                end
            }
            joined = &mut down, if down_done.is_none() => {
                let pumped = joined.ok();
                let end = pumped.as_ref().map(|p| p.end);
                down_done = Some(pumped);
                end
            }
            _ = closing.wait_for(|closing| *closing), if !stopping => Some(End::Stopped),
        };
        reset |= ended == Some(End::Reset);
        if ended != Some(End::Eof) && !stopping {
            stopping = true;
            let _ = stop.send(true);
        }
    }
    if let (Some(Some(up)), Some(Some(down))) = (up_done, down_done) {
        close(up.src, down.dst, reset);
        close(down.src, up.dst, reset);
    }
}

/// Closes one socket from its halves: at once with an RST when `reset`, else as usual.
fn close(
    read: tokio::net::tcp::OwnedReadHalf,
    write: tokio::net::tcp::OwnedWriteHalf,
    reset: bool,
) {
    match read.reunite(write) {
        Ok(socket) if reset => {
            if let Err(error) = socket.set_zero_linger() {
                tracing::debug!(%error, "cannot set SO_LINGER 0: closing with a FIN");
            }
        }
        _ => {}
    }
}
