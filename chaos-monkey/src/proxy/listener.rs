//! A running proxy: the task that owns its listener and its connections.
//!
//! Stopping it is a partition: the listener closes (new connections are refused) and every
//! open connection is closed; [`Runner::stop`] completes only when all of that is done, so
//! an API call that disables a proxy answers after the partition is in place.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use rand::RngExt;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::connection;
use super::toxic::ToxicList;

/// Completes when a stopped runner has closed everything; cloneable, so whoever needs the
/// port free again can wait for it too.
pub type Stopped = Shared<BoxFuture<'static, ()>>;

/// A proxy that listens.
pub struct Runner {
    /// The address it is bound to.
    pub listen: SocketAddr,
    /// Where its connections go.
    pub upstream: Arc<str>,
    stop: oneshot::Sender<()>,
    done: Stopped,
}

impl Runner {
    /// Serves `listener` for proxy `name`: each connection accepted goes to `upstream`
    /// through the toxics `toxics` holds at the time. Call inside a Tokio runtime.
    pub fn spawn(
        name: &str,
        listener: TcpListener,
        listen: SocketAddr,
        upstream: Arc<str>,
        toxics: watch::Receiver<ToxicList>,
    ) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(
            name.to_owned(),
            listener,
            Arc::clone(&upstream),
            toxics,
            stopped,
        ));
        let done = async move {
            let _ = task.await;
        }
        .boxed()
        .shared();
        Self {
            listen,
            upstream,
            stop,
            done,
        }
    }

    /// Closes the listener and every connection; the future completes when they are closed.
    pub fn stop(self) -> Stopped {
        let _ = self.stop.send(());
        self.done
    }
}

async fn accept_loop(
    name: String,
    listener: TcpListener,
    upstream: Arc<str>,
    toxics: watch::Receiver<ToxicList>,
    mut stop: oneshot::Receiver<()>,
) {
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // A dropped sender stops it too: a runner never outlives its owner.
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    tracing::debug!(proxy = %name, %peer, "connection accepted");
                    let seed: u64 = rand::rng().random();
                    connections.spawn(connection::run(
                        client,
                        Arc::clone(&upstream),
                        toxics.clone(),
                        closing_rx.clone(),
                        seed,
                    ));
                }
                Err(error) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    tracing::warn!(proxy = %name, %error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    tracing::debug!(proxy = %name, "stopped: listener and connections closed");
}
