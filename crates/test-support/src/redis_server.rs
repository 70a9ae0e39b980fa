//! A private `redis-server` on a free port (never the shared one on 6379), stopped and
//! started again on the same port.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::process::{Address, Process};
use crate::{Error, fail, free_port, poll, unique_id};

/// A `redis-server` of this test stack alone, on a free port, in its own directory,
/// nothing saved; killed (and its directory removed) when dropped.
pub struct RedisServer {
    process: Option<Process>,
    /// Its port.
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one and waits until it answers PING.
    pub async fn start() -> RedisServer {
        let dir = std::env::temp_dir().join(unique_id("e2e-redis"));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            fail(format!("the redis directory {}: {e}", dir.display()));
        }
        let mut server = RedisServer {
            process: None,
            port: free_port(),
            dir,
        };
        server.spawn().await.unwrap_or_else(|e| fail(e));
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> Result<(), Error> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dbfilename", "dump.rdb"])
            .arg("--dir")
            .arg(&self.dir);
        let process =
            Process::try_start("redis-server", command, Address::Port(self.port), None).await?;
        let port = self.port;
        let ready = poll(
            Duration::from_secs(10),
            || async move { redis_command(port, "PING").await },
            |reply| reply.as_deref() == Some("+PONG"),
        )
        .await;
        if !ready.ok {
            return Err(Error::new(format!(
                "redis-server on port {port} answered PING with {:?}; its output:\n{}",
                ready.value,
                process.logs().tail(20)
            )));
        }
        self.process = Some(process);
        Ok(())
    }

    /// Kills it (SIGKILL) and reaps it.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9().await;
        }
    }

    /// Starts it again on the same port, empty (no persistence).
    pub async fn start_again(&mut self) {
        if self.process.is_some() {
            fail("start_again after stop only");
        }
        self.spawn().await.unwrap_or_else(|e| fail(e));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // The process (killed on drop) first, then its directory.
        self.process = None;
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
