//! A child's output, kept line by line, and the `listening … url=…` line every service of
//! the workspace logs once it accepts connections.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::oneshot;

/// How long no new line must arrive for a log to count as settled: three of the services'
/// 100 ms flush intervals.
pub const SETTLE_QUIET: std::time::Duration = std::time::Duration::from_millis(300);
/// The longest [`LogSink::settled`] waits (a child that logs without pause never settles).
pub const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Every line a child printed on stdout and stderr, ANSI colours removed.
#[derive(Clone, Default)]
pub struct LogSink(Arc<Mutex<Vec<String>>>);

impl LogSink {
    /// A copy of the lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The lines once the child wrote out what it logged so far: the services write their
    /// log in batches at least every 100 ms (`http_edge::logwriter`), so this waits until
    /// no line arrived for [`SETTLE_QUIET`] (at most [`SETTLE_LIMIT`]). Read this, not
    /// [`LogSink::lines`], before asserting that something is *not* in the log.
    pub async fn settled(&self) -> Vec<String> {
        let started = tokio::time::Instant::now();
        let mut seen = self.lines().len();
        let mut quiet_since = started;
        while started.elapsed() < SETTLE_LIMIT {
            tokio::time::sleep(SETTLE_QUIET / 6).await;
            let now = self.lines().len();
            if now != seen {
                seen = now;
                quiet_since = tokio::time::Instant::now();
            } else if quiet_since.elapsed() >= SETTLE_QUIET {
                break;
            }
        }
        self.lines()
    }

    /// Log records: a line with a level and the indented lines that continue it.
    pub fn records(&self) -> Vec<String> {
        let mut records: Vec<String> = Vec::new();
        for line in self.lines() {
            let continues = line.starts_with(char::is_whitespace) && !has_level(&line);
            match records.last_mut() {
                Some(last) if continues => {
                    last.push('\n');
                    last.push_str(&line);
                }
                _ => records.push(line),
            }
        }
        records
    }

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn push(&self, line: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }
}

fn has_level(line: &str) -> bool {
    ["TRACE", "DEBUG", " INFO", " WARN", "ERROR", "\"level\""]
        .iter()
        .any(|level| line.contains(level))
}

/// Removes `ESC [ … letter` sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `... listening addr=127.0.0.1:PORT url=http://127.0.0.1:PORT ...` → the url; in a JSON
/// line (`LOG_FORMAT=json`), its `"url":"http://…"` field.
fn listening_url(line: &str) -> Option<String> {
    if !line.contains("listening") {
        return None;
    }
    let json = line
        .split_once("\"url\":\"")
        .and_then(|(_, rest)| rest.split('"').next());
    json.or_else(|| {
        line.split(|c: char| c.is_whitespace() || c == ',' || c == '"')
            .find_map(|word| word.strip_prefix("url="))
    })
    .map(|url| url.trim_end_matches('/').to_owned())
    .filter(|url| url.starts_with("http://"))
}

type UrlSender = Arc<Mutex<Option<oneshot::Sender<String>>>>;

/// Copies the child's stdout and stderr into `sink`; the receiver gets the first
/// listening url, or is dropped when the child closes both streams without one.
pub(crate) fn capture(child: &mut Child, sink: &LogSink) -> oneshot::Receiver<String> {
    let (tx, rx) = oneshot::channel();
    let tx: UrlSender = Arc::new(Mutex::new(Some(tx)));
    if let Some(stdout) = child.stdout.take() {
        pump(stdout, sink.clone(), Arc::clone(&tx));
    }
    if let Some(stderr) = child.stderr.take() {
        pump(stderr, sink.clone(), tx);
    }
    rx
}

fn pump<R: AsyncRead + Unpin + Send + 'static>(stream: R, sink: LogSink, tx: UrlSender) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = strip_ansi(&line);
            if let Some(url) = listening_url(&line)
                && let Some(tx) = tx.lock().unwrap_or_else(PoisonError::into_inner).take()
            {
                let _ = tx.send(url);
            }
            sink.push(line);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_of_a_listening_line_with_colours_or_a_trailing_slash() {
        let pretty = "\u{1b}[32m INFO\u{1b}[0m listening addr=127.0.0.1:4 url=http://127.0.0.1:4";
        assert_eq!(
            listening_url(&strip_ansi(pretty)).as_deref(),
            Some("http://127.0.0.1:4")
        );
        let trailing = "listening addr=127.0.0.1:5, url=http://127.0.0.1:5/";
        assert_eq!(
            listening_url(trailing).as_deref(),
            Some("http://127.0.0.1:5")
        );
        assert_eq!(listening_url("ready url=http://127.0.0.1:6"), None);
        let json = r#"{"level":"INFO","fields":{"message":"listening","addr":"127.0.0.1:7","url":"http://127.0.0.1:7"}}"#;
        assert_eq!(listening_url(json).as_deref(), Some("http://127.0.0.1:7"));
    }
}
