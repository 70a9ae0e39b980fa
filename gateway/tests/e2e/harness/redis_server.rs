//! A private `redis-server` on a free port (never the shared one on 6379), stopped and
//! started again on the same port.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{free_port, poll, unique_id};

/// A `redis-server` of this test alone, on a free port, in its own directory.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one and waits until it answers PING.
    pub async fn start() -> RedisServer {
        let dir = std::env::temp_dir().join(unique_id("gateway-e2e-redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir,
        };
        server.spawn().await;
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dbfilename", "dump.rdb"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed and starts");
        self.child = Some(child);
        let port = self.port;
        let ready = poll(
            Duration::from_secs(10),
            || async move { redis_command(port, "PING").await },
            |reply| reply.as_deref() == Some("+PONG"),
        )
        .await;
        assert!(
            ready.ok,
            "redis-server on port {port} answered PING with {:?}",
            ready.value
        );
    }

    /// Kills it (SIGKILL) and reaps it.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("redis-server is killed");
        }
    }

    /// Starts it again on the same port, empty (no persistence).
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again after stop only");
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one inline command; the first reply line, `None` when the server is unreachable.
async fn redis_command(port: u16, command: &'static str) -> Option<String> {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).ok()?;
        let reply = String::from_utf8_lossy(&buf[..n]);
        Some(reply.lines().next().unwrap_or("").to_owned())
    })
    .await
    .ok()
    .flatten()
}
