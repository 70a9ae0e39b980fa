//! The crate's single integration-test binary (one binary per crate saves link time), and the
//! harness its modules share.
//!
//! - `redis_registry`: the Redis registry backend and discovery over it, against the real
//!   Redis at `redis://127.0.0.1:6379` (`REDIS_URL` overrides). Every test writes under its
//!   own random key prefix ([`TestRedis`]) and removes its keys at the end, so parallel runs
//!   never collide; [`RedisProxy`] plays an outage without touching the shared server.
//! - `rate_limit`: the Redis rate-limit store (Lua GCRA) and the limiter's failure modes,
//!   against the same Redis, under per-test prefixes, with [`RedisProxy`] for the outage.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness helpers fail loudly by design"
)]

mod rate_limit;
mod redis_registry;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use resilience_core::registry::RedisRegistry;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// The operation timeout the tests give registries.
const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// How long [`eventually`] polls before failing.
const DEADLINE: Duration = Duration::from_secs(5);

/// A namespace of the real Redis for one test; its keys are deleted when it is dropped.
struct TestRedis {
    url: String,
    prefix: String,
}

impl TestRedis {
    fn new() -> Self {
        let url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let prefix = format!(
            "test:{}:{:016x}:",
            std::process::id(),
            rand::random::<u64>()
        );
        Self { url, prefix }
    }

    fn registry(&self) -> RedisRegistry {
        self.registry_at(&self.url)
    }

    /// A registry writing under this test's prefix on another address (a proxy, a dead port).
    fn registry_at(&self, url: &str) -> RedisRegistry {
        RedisRegistry::new(url)
            .unwrap()
            .with_prefix(&self.prefix)
            .with_op_timeout(OP_TIMEOUT)
    }

    /// A plain connection for looking at raw keys.
    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        tokio::time::timeout(DEADLINE, client.get_multiplexed_async_connection())
            .await
            .unwrap_or_else(|_| panic!("no Redis answering at {} (set REDIS_URL)", self.url))
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need Redis at {} (set REDIS_URL): {e}",
                    self.url
                )
            })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // Blocking, and tolerant of failures: cleanup must not mask the test's own outcome.
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
            return;
        };
        let mut cursor = 0_u64;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(500)
                .query(&mut conn)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// A TCP proxy in front of Redis that can be cut (connections dropped, new ones refused
/// after accept) and restored, to play a Redis outage without touching the shared server.
struct RedisProxy {
    url: String,
    cut: Arc<Mutex<bool>>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    acceptor: AbortHandle,
}

impl RedisProxy {
    async fn start(redis: &TestRedis) -> Self {
        let upstream = redis
            .url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let cut = Arc::new(Mutex::new(false));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (cut2, links2) = (cut.clone(), links.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if *cut2.lock().unwrap() {
                    continue; // dropped at once: the client sees the connection closed
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links2.lock().unwrap().push(link.abort_handle());
            }
        })
        .abort_handle();
        Self {
            url,
            cut,
            links,
            acceptor,
        }
    }

    fn cut(&self) {
        *self.cut.lock().unwrap() = true;
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        *self.cut.lock().unwrap() = false;
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

/// Polls `check` every 20 ms until it holds; fails the test after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < DEADLINE,
            "not within {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
