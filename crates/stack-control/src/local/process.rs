//! The processes of a stack: who they are (beyond their number), their state, the signals
//! they get, and the ports and programs they need.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::ControlError;

/// A process named beyond its number: its start time (in clock ticks since boot) and the
/// boot it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcessId {
    pub(super) pid: u32,
    pub(super) start_time: u64,
    pub(super) boot_id: String,
}

impl ProcessId {
    /// The identity of running process `pid`.
    pub(super) fn of(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            start_time: start_time(pid)?,
            boot_id: boot_id(),
        })
    }

    /// `pid start_time boot_id`, as written to a pid file.
    pub(super) fn to_line(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start_time, self.boot_id)
    }

    pub(super) fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split_whitespace();
        Some(Self {
            pid: parts.next()?.parse().ok()?,
            start_time: parts.next()?.parse().ok()?,
            boot_id: parts.next()?.to_owned(),
        })
    }

    /// Whether the process this names is the one running under its pid now.
    pub(super) fn is_current(&self) -> bool {
        Self::of(self.pid).is_some_and(|now| now == *self)
    }
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks after boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with the state, field 3.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), empty where there is none.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// Whether `pid` is a live (not zombie) process running `program`.
pub(super) fn process_runs(pid: u32, program: &Path) -> bool {
    if matches!(process_state(pid), None | Some('Z' | 'X')) {
        return false;
    }
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let resolved = which(program).unwrap_or_else(|| program.to_path_buf());
    let expected = std::fs::canonicalize(&resolved).unwrap_or(resolved);
    // A binary rebuilt while it runs shows as "path (deleted)".
    let exe = exe.to_string_lossy();
    Path::new(exe.trim_end_matches(" (deleted)")) == expected
}

/// The state letter of `/proc/<pid>/stat` (R, S, T, Z…), `None` when there is no such process.
pub(super) fn process_state(pid: u32) -> Option<char> {
    state_letter(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The state letter of a `stat` file's text.
pub(super) fn state_letter(stat: &str) -> Option<char> {
    // "pid (comm) S …": the comm may hold spaces and parentheses; the state follows the
    // last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Whether the process `id` names has exited: nothing runs under its number any more (or
/// another process does), or only its zombie is left. Its first thread alone is not
/// enough: when that thread ends before the others, `/proc/<pid>/stat` already says zombie
/// (and `/proc/<pid>/exe` cannot be read) while the other threads still run and hold the
/// process's sockets; it has exited once every thread in `/proc/<pid>/task` has.
pub(super) fn exited(id: &ProcessId) -> bool {
    if !id.is_current() {
        return true;
    }
    let Ok(threads) = std::fs::read_dir(format!("/proc/{}/task", id.pid)) else {
        return true;
    };
    threads.filter_map(Result::ok).all(|thread| {
        let stat = std::fs::read_to_string(thread.path().join("stat")).unwrap_or_default();
        matches!(state_letter(&stat), None | Some('Z' | 'X'))
    })
}

/// `program` resolved through `PATH` when it is a bare name. Symbolic links are kept: some
/// programs (`redis-server`) act on the name they were started by.
pub fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Whether something listens on 127.0.0.1:`port` (or it cannot be bound).
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Sends `sig` (`-TERM`, `-KILL`, `-STOP`, `-CONT`) to `pid` with the system's `kill`.
pub(super) async fn signal(pid: u32, sig: &str) -> Result<(), ControlError> {
    let status = tokio::process::Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| ControlError::Command(format!("kill {sig} {pid}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(ControlError::Command(format!("kill {sig} {pid}: {status}")))
    }
}
