//! The one HTTP server of the workspace's services (hyper-util; HTTP/1.1 and HTTP/2 on one
//! port), with the connection discipline no caller can starve:
//!
//! - the open-file soft limit raised to the hard limit at start, and a cap on open
//!   connections derived from it ([`crate::limits::derived_max_connections`]) or set;
//! - at the cap, the connection idle the longest is closed to make room; when none is idle,
//!   the new connection is closed at once (the ones being served are not disturbed);
//! - a header-read timeout (a new connection's first request from its start, a later one
//!   from its first byte: slowloris), and a keep-alive idle timeout, both enforced by one
//!   sweep over the open connections ([`Connections::sweep`], a pure decision per
//!   connection: [`verdict`]);
//! - HTTP/2 limits: concurrent streams, header list size, pending resets; the HTTP/1.1 head
//!   buffer bounded by the same header size;
//! - a connection can be reset on purpose ([`ConnectionControl`]: llm-service's `reset`
//!   fault, a TCP RST before any header), and shutdown drains with a deadline.
//!
//! Request bodies are bounded by [`crate::body`], a layer of each service's router.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::limits::{EdgeLimits, derived_max_connections, raise_open_file_limit};

/// How often the open connections are checked against the timeouts.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// A handle on the connection a request came in on; handlers find it in the request's
/// extensions.
#[derive(Debug, Clone, Default)]
pub struct ConnectionControl {
    reset: CancellationToken,
}

impl ConnectionControl {
    /// Resets the connection: it is dropped at once with `SO_LINGER` 0 (a TCP RST).
    pub fn reset(&self) {
        self.reset.cancel();
    }
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its request's headers did not arrive within the header-read timeout.
    HeaderTimeout,
    /// No request in progress for the idle timeout.
    Idle,
    /// Closed to make room at the connection cap (it was the longest idle).
    Evicted,
    /// A new connection closed at once: the cap was reached and none was idle.
    Refused,
}

impl CloseReason {
    /// Every reason, in the order of [`ConnectionStats::closed`].
    pub const ALL: [Self; 4] = [
        Self::HeaderTimeout,
        Self::Idle,
        Self::Evicted,
        Self::Refused,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::Idle => "idle",
            Self::Evicted => "evicted",
            Self::Refused => "refused",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::HeaderTimeout => 0,
            Self::Idle => 1,
            Self::Evicted => 2,
            Self::Refused => 3,
        }
    }
}

/// What one connection is doing, as the sweep sees it (times in ms since the server began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionPhase {
    /// Requests in progress (from their headers to the end of their answer's body).
    pub busy: usize,
    /// Since when nothing has been in progress.
    pub idle_since_ms: u64,
    /// When the next request's head began (its first byte, or the connection's start);
    /// `None` while idle between requests.
    pub head_started_ms: Option<u64>,
    /// HTTP/2: no head phase between streams.
    pub http2: bool,
}

/// The sweep's decision for one connection at `now_ms`: close it, and why, or keep it.
pub fn verdict(phase: ConnectionPhase, now_ms: u64, limits: &EdgeLimits) -> Option<CloseReason> {
    if phase.busy > 0 {
        return None;
    }
    let over =
        |since: u64, limit: Duration| u128::from(now_ms.saturating_sub(since)) > limit.as_millis();
    match phase.head_started_ms {
        Some(started) if !phase.http2 => {
            over(started, limits.header_read_timeout).then_some(CloseReason::HeaderTimeout)
        }
        _ => over(phase.idle_since_ms, limits.idle_timeout).then_some(CloseReason::Idle),
    }
}

/// No head phase (`head_started_ms`).
const NONE: u64 = u64::MAX;

/// One open connection's shared state.
#[derive(Debug)]
struct Conn {
    busy: AtomicUsize,
    idle_since_ms: AtomicU64,
    head_started_ms: AtomicU64,
    http2: AtomicBool,
    seen_bytes: AtomicBool,
    close: CancellationToken,
}

impl Conn {
    fn phase(&self) -> ConnectionPhase {
        let head = self.head_started_ms.load(Ordering::Acquire);
        ConnectionPhase {
            busy: self.busy.load(Ordering::Acquire),
            idle_since_ms: self.idle_since_ms.load(Ordering::Acquire),
            head_started_ms: (head != NONE).then_some(head),
            http2: self.http2.load(Ordering::Relaxed),
        }
    }
}

/// The open connections of one server, and what happened to the ones it closed.
#[derive(Debug)]
pub struct Connections {
    limits: EdgeLimits,
    cap: usize,
    epoch: Instant,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    count: AtomicUsize,
    closed: [AtomicU64; 4],
}

/// A snapshot of [`Connections`], for metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Open now.
    pub open: usize,
    /// The cap.
    pub cap: usize,
    /// Closed by the server so far, by [`CloseReason::ALL`].
    pub closed: [u64; 4],
}

impl ConnectionStats {
    /// Whether the cap is reached: a load balancer should send elsewhere.
    pub fn saturated(&self) -> bool {
        self.open >= self.cap
    }
}

impl Connections {
    /// Connections under `limits`, the cap set or derived from the open-file limit (which
    /// is raised to the hard limit first).
    pub fn new(limits: EdgeLimits) -> Arc<Self> {
        let open_files = raise_open_file_limit();
        let cap = limits
            .max_connections
            .unwrap_or_else(|| derived_max_connections(open_files));
        tracing::info!(open_files, max_connections = cap, "connection limits");
        Arc::new(Self {
            limits,
            cap,
            epoch: Instant::now(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            count: AtomicUsize::new(0),
            closed: Default::default(),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &EdgeLimits {
        &self.limits
    }

    /// Open connections, the cap, and the closings so far.
    pub fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            open: self.count.load(Ordering::Acquire),
            cap: self.cap,
            closed: self.closed.each_ref().map(|c| c.load(Ordering::Relaxed)),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        // A panic while holding the map cannot leave it inconsistent: take it anyway.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count_closed(&self, reason: CloseReason) {
        self.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Registers a new connection, making room at the cap; `None` when it must be refused.
    fn admit(&self) -> Option<(u64, Arc<Conn>)> {
        if self.count.load(Ordering::Acquire) >= self.cap && !self.evict_longest_idle() {
            self.count_closed(CloseReason::Refused);
            return None;
        }
        let now = self.now_ms();
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(now),
            head_started_ms: AtomicU64::new(now),
            http2: AtomicBool::new(false),
            seen_bytes: AtomicBool::new(false),
            close: CancellationToken::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::clone(&conn));
        self.count.fetch_add(1, Ordering::AcqRel);
        Some((id, conn))
    }

    fn forget(&self, id: u64) {
        if self.lock().remove(&id).is_some() {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Closes the connection idle the longest (no request in progress); false when none is.
    fn evict_longest_idle(&self) -> bool {
        let victim = {
            let open = self.lock();
            open.iter()
                .filter(|(_, c)| !c.close.is_cancelled())
                .map(|(id, c)| (*id, c.phase(), c))
                .filter(|(_, phase, _)| phase.busy == 0)
                .min_by_key(|(_, phase, _)| phase.idle_since_ms)
                .map(|(id, _, c)| (id, Arc::clone(c)))
        };
        let Some((id, conn)) = victim else {
            return false;
        };
        conn.close.cancel();
        self.forget(id);
        self.count_closed(CloseReason::Evicted);
        true
    }

    /// Closes every connection whose [`verdict`] says so; returns how many.
    pub fn sweep(&self) -> usize {
        let now = self.now_ms();
        let doomed: Vec<(u64, Arc<Conn>, CloseReason)> = self
            .lock()
            .iter()
            .filter_map(|(id, conn)| {
                verdict(conn.phase(), now, &self.limits).map(|why| (*id, Arc::clone(conn), why))
            })
            .collect();
        for (id, conn, why) in &doomed {
            conn.close.cancel();
            self.forget(*id);
            self.count_closed(*why);
        }
        doomed.len()
    }
}

/// Counts a request as in progress on its connection until dropped (with its answer's body).
struct Busy(Arc<Conn>, Instant);

impl Busy {
    fn enter(conn: &Arc<Conn>, epoch: Instant) -> Self {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        conn.head_started_ms.store(NONE, Ordering::Release);
        Self(Arc::clone(conn), epoch)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = u64::try_from(self.1.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.0.idle_since_ms.store(now, Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body that keeps its request counted as in progress until it is done.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's TCP stream: marks the start of a request's head when bytes arrive on
/// an idle connection, recognises HTTP/2, and is reset instead of closed when asked.
struct Stream {
    inner: TcpStream,
    conn: Arc<Conn>,
    epoch: Instant,
    reset: CancellationToken,
}

/// The start of the HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl Stream {
    fn saw(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if !self.conn.seen_bytes.swap(true, Ordering::Relaxed)
            && bytes.starts_with(&H2_PREFACE[..bytes.len().min(H2_PREFACE.len())])
        {
            self.conn.http2.store(true, Ordering::Relaxed);
        }
        if self.conn.busy.load(Ordering::Acquire) == 0
            && self.conn.head_started_ms.load(Ordering::Acquire) == NONE
        {
            let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
            self.conn.head_started_ms.store(now, Ordering::Release);
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.reset.is_cancelled()
            && let Err(error) = self.inner.set_zero_linger()
        {
            tracing::warn!(%error, "could not arm the connection reset");
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.saw(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// hyper's connection settings from `limits`.
fn builder(limits: &EdgeLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(limits.max_header_bytes);
    let header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(header_list)
        .max_pending_accept_reset_streams(limits.h2_max_pending_resets)
        .max_local_error_reset_streams(limits.h2_max_pending_resets.saturating_mul(50));
    builder
}

/// Serves `app` on `listener` under the limits of `connections` until `shutdown`
/// completes; then stops accepting and waits up to `drain` for the open connections to
/// finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let builder = builder(connections.limits());
    let graceful = GracefulShutdown::new();
    let sweeper = {
        let connections = Arc::clone(&connections);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                connections.sweep();
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: make room, or back off.
                    tracing::warn!(%error, "accept failed");
                    if !connections.evict_longest_idle() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some((id, conn)) = connections.admit() else {
            tracing::debug!(%peer, "connection refused: at the connection cap and none idle");
            drop(stream);
            continue;
        };
        // Tokens go out one small write at a time: Nagle would hold them back.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let control = ConnectionControl::default();
        let io = TokioIo::new(Stream {
            inner: stream,
            conn: Arc::clone(&conn),
            epoch: connections.epoch,
            reset: control.reset.clone(),
        });
        let app = app.clone();
        let per_request = control.clone();
        let for_requests = Arc::clone(&conn);
        let epoch = connections.epoch;
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let busy = Busy::enter(&for_requests, epoch);
            request.extensions_mut().insert(per_request.clone());
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let answer = app.clone().oneshot(request);
            async move {
                let response = answer.await?;
                // Wrapped, not boxed again: the guard costs no allocation per request.
                Ok::<_, std::convert::Infallible>(
                    response.map(|inner| Tracked { inner, _busy: busy }),
                )
            }
        });
        let connection = graceful.watch(
            builder
                .serve_connection_with_upgrades(io, service)
                .into_owned(),
        );
        let connections = Arc::clone(&connections);
        tokio::spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                }
                () = control.reset.cancelled() => {
                    tracing::debug!(%peer, "connection reset on purpose");
                }
                () = conn.close.cancelled() => {
                    tracing::debug!(%peer, "connection closed by the server (timeout or room)");
                }
            }
            connections.forget(id);
        });
    }
    drop(listener);
    sweeper.abort();
    tracing::info!("stopped accepting; draining open connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained"),
        () = tokio::time::sleep(drain) => {
            tracing::warn!(drain_ms = drain.as_millis(), "drain deadline passed; exiting anyway");
        }
    }
}

#[cfg(test)]
mod tests;
