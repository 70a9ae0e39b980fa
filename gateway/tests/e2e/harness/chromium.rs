//! Headless Chromium (Debian's `chromium`, `/usr/bin/chromium`; `scripts/test` installs it)
//! loading one page: its DOM once the page's scripts ran (`--dump-dom`), or a screenshot.
//! `--virtual-time-budget` lets the page's timers run that many virtual milliseconds;
//! virtual time stands still while a fetch is on the wire, so the page's polls answered
//! within the budget are on the page. Each run has a fresh profile in a temporary
//! directory, its own process group, and a deadline; whatever it started is killed at the
//! end, and the profile removed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use test_support::unique_id;
use tokio::process::Command;

/// The longest one run may take.
const DEADLINE: Duration = Duration::from_secs(60);

/// Flags of every run: headless, no sandbox (root), and none of Chromium's own traffic
/// (updates, sync, background requests: this machine reaches no other host), the page's
/// console on stderr.
const FLAGS: [&str; 13] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--hide-scrollbars",
    "--window-size=1280,900",
    "--enable-logging=stderr",
    "--v=0",
];

/// What one run left.
#[derive(Debug)]
pub struct Rendered {
    /// The DOM as serialized by `--dump-dom` (empty for a screenshot).
    pub dom: String,
    /// The page's console messages (CSP violations and uncaught errors among them).
    pub console: Vec<String>,
}

impl Rendered {
    /// Fails the test when the console reports a Content-Security-Policy violation or an
    /// uncaught error.
    pub fn assert_clean_console(&self) {
        let bad: Vec<&String> = self
            .console
            .iter()
            .filter(|line| {
                line.contains("Content Security Policy")
                    || line.contains("Uncaught")
                    || line.contains("Refused to")
            })
            .collect();
        assert!(bad.is_empty(), "the page's console: {bad:#?}");
    }
}

/// The Chromium binary: `$CHROMIUM`, else Debian's.
fn binary() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// The DOM of `url` after `budget_ms` of virtual time.
pub async fn dump_dom(url: &str, budget_ms: u64) -> Rendered {
    run(url, budget_ms, &["--dump-dom".to_owned()]).await
}

/// A 1280×900 screenshot of `url` after `budget_ms` of virtual time, written to `path`.
pub async fn screenshot(url: &str, budget_ms: u64, path: &Path) -> Rendered {
    run(
        url,
        budget_ms,
        &[format!("--screenshot={}", path.display())],
    )
    .await
}

async fn run(url: &str, budget_ms: u64, mode: &[String]) -> Rendered {
    let chromium = binary();
    assert!(
        chromium.is_file(),
        "{} is missing: install Debian's chromium (`apt-get install chromium`; scripts/test does)",
        chromium.display()
    );
    let profile = std::env::temp_dir().join(unique_id("e2e-chromium"));
    let mut command = Command::new(&chromium);
    command
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(mode)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let child = command.spawn().expect("chromium starts");
    let group = child.id();
    let finished = tokio::time::timeout(DEADLINE, child.wait_with_output()).await;
    // Its renderer, GPU and zygote processes are in its group: none outlives the run.
    if let Some(group) = group {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status()
            .await;
    }
    let _ = std::fs::remove_dir_all(&profile);
    let output = finished
        .unwrap_or_else(|_| panic!("chromium did not finish {url} within {DEADLINE:?}"))
        .expect("chromium runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "chromium failed on {url} ({}): {stderr}",
        output.status
    );
    Rendered {
        dom: String::from_utf8_lossy(&output.stdout).into_owned(),
        console: stderr
            .lines()
            .filter(|line| line.contains(":CONSOLE"))
            .map(str::to_owned)
            .collect(),
    }
}
