//! Any command of the workspace, started with its output kept, waited for until it listens
//! and is healthy, and killed when dropped.

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::logs::{LogSink, capture};
use crate::{Error, fail};

/// How long a process may take to log its address or to open its port.
const LISTEN_LIMIT: Duration = Duration::from_secs(30);
/// How long a listening process may take to answer its health path with 2xx.
const HEALTHY_LIMIT: Duration = Duration::from_secs(20);

/// Where a process listens.
#[derive(Debug, Clone, Copy)]
pub enum Address {
    /// The port it was told to take (`PORT=…`, `--listen 127.0.0.1:…`): ready once it
    /// accepts connections there.
    Port(u16),
    /// Whatever it logs as `listening … url=http://…` (started with `PORT=0`).
    FromLog,
    /// Nowhere (a daemon without a port): started once spawned; its url is empty.
    Nowhere,
}

/// A running process; killed when dropped.
pub struct Process {
    what: String,
    child: Option<Child>,
    url: String,
    logs: LogSink,
}

impl Process {
    /// Spawns `command` (stdout and stderr kept in [`Process::logs`], killed on drop),
    /// waits until it listens at `address`, then, with `health`, until `GET health`
    /// answers 2xx. Fails the test with the process's output when it does not.
    pub async fn start(
        what: &str,
        command: Command,
        address: Address,
        health: Option<&str>,
    ) -> Process {
        Self::try_start(what, command, address, health)
            .await
            .unwrap_or_else(|e| fail(e))
    }

    /// [`Process::start`], returning what went wrong.
    pub async fn try_start(
        what: &str,
        mut command: Command,
        address: Address,
        health: Option<&str>,
    ) -> Result<Process, Error> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| Error::new(format!("{what} does not start: {e}")))?;
        let logs = LogSink::default();
        let logged = capture(&mut child, &logs);
        let mut process = Process {
            what: what.to_owned(),
            child: Some(child),
            url: String::new(),
            logs,
        };
        process.url = match address {
            Address::FromLog => process.logged_url(logged).await?,
            Address::Port(port) => process.accepting(port).await?,
            Address::Nowhere => String::new(),
        };
        if let Some(path) = health {
            process.healthy(path).await?;
        }
        Ok(process)
    }

    async fn logged_url(&mut self, logged: oneshot::Receiver<String>) -> Result<String, Error> {
        match tokio::time::timeout(LISTEN_LIMIT, logged).await {
            Ok(Ok(url)) => Ok(url),
            Ok(Err(_)) => {
                let status = self.exit_within(Duration::from_secs(5)).await;
                Err(self.error(&format!(
                    "exited before logging `listening … url=…` (exit: {status:?})"
                )))
            }
            Err(_) => Err(self.error(&format!(
                "logged no `listening … url=…` line within {LISTEN_LIMIT:?}"
            ))),
        }
    }

    async fn accepting(&mut self, port: u16) -> Result<String, Error> {
        let deadline = Instant::now() + LISTEN_LIMIT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(format!("http://127.0.0.1:{port}"));
            }
            self.still_running(&format!("accepted connections on port {port}"))?;
            if Instant::now() >= deadline {
                return Err(self.error(&format!(
                    "accepted no connection on port {port} within {LISTEN_LIMIT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `GET {url}{path}` answers 2xx.
    async fn healthy(&mut self, path: &str) -> Result<(), Error> {
        let client = crate::client();
        let url = format!("{}{path}", self.url);
        let deadline = Instant::now() + HEALTHY_LIMIT;
        loop {
            self.still_running(&format!("{path} answered 2xx"))?;
            let answer = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            let last = match answer {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => Some(response.status().as_u16()),
                Err(_) => None,
            };
            if Instant::now() >= deadline {
                return Err(self.error(&format!(
                    "did not answer {path} with 2xx within {HEALTHY_LIMIT:?} (last status: {last:?})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn still_running(&mut self, before: &str) -> Result<(), Error> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => {
                Err(self.error(&format!("exited ({status}) before {before}")))
            }
            _ => Ok(()),
        }
    }

    /// An error naming the process, with its last output.
    fn error(&self, message: &str) -> Error {
        Error::new(format!(
            "{} {message}; its output:\n{}",
            self.what,
            self.logs.tail(40)
        ))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| fail(format!("no port in {}", self.url)))
    }

    /// Everything it logged (stdout and stderr).
    pub fn logs(&self) -> &LogSink {
        &self.logs
    }

    /// The process id; fails the test once it has been killed.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .unwrap_or_else(|| fail(format!("{} is not running", self.what)))
    }

    /// Whether it has been started and not killed by [`Process::kill9`].
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// Sends SIGTERM.
    pub async fn terminate(&self) {
        signal("-TERM", self.pid())
            .await
            .unwrap_or_else(|e| fail(e));
    }

    /// Kills it with SIGKILL and reaps it.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal("-KILL", pid).await.unwrap_or_else(|e| fail(e));
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                fail(self.error("did not exit within 10 s of SIGKILL"));
            }
        }
    }

    /// Waits for it to exit, at most `limit`; fails the test with its output otherwise.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match self.exit_within(limit).await {
            Some(Ok(status)) => status,
            Some(Err(e)) => fail(self.error(&format!("could not be waited for: {e}"))),
            None => fail(self.error(&format!("did not exit within {limit:?}"))),
        }
    }

    async fn exit_within(&mut self, limit: Duration) -> Option<std::io::Result<ExitStatus>> {
        let child = self.child.as_mut()?;
        tokio::time::timeout(limit, child.wait()).await.ok()
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(Some(_))))
    }
}

/// `kill SIGNAL PID`.
async fn signal(signal: &str, pid: u32) -> Result<(), Error> {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .await
        .map_err(|e| Error::new(format!("kill does not run: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::new(format!("kill {signal} {pid} failed ({status})")))
    }
}
