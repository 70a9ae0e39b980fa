//! The daemon's heartbeat, for `chaos-monkey healthcheck`: the daemon serves no HTTP, so it
//! proves its loop is alive by rewriting a file with the time every [`EVERY`]; the health
//! check reads that time back and fails when it is missing or older than `--max-age-s`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the daemon beats.
pub const EVERY: Duration = Duration::from_secs(10);

/// The flags of `chaos-monkey healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The oldest heartbeat that still counts as alive, in seconds.
    #[arg(long, default_value_t = 30)]
    pub max_age_s: u64,
}

impl HealthcheckArgs {
    /// Exit 0 when the heartbeat at `path` is fresh; prints what it found (stderr).
    pub fn run(&self, path: &Path) -> ExitCode {
        let max_age = Duration::from_secs(self.max_age_s);
        match age(path, SystemTime::now()) {
            Ok(age) if age <= max_age => {
                eprintln!("healthy: last heartbeat {} s ago", age.as_secs());
                ExitCode::SUCCESS
            }
            Ok(age) => {
                eprintln!(
                    "unhealthy: last heartbeat {} s ago (more than {} s)",
                    age.as_secs(),
                    max_age.as_secs()
                );
                ExitCode::FAILURE
            }
            Err(problem) => {
                eprintln!("unhealthy: {}: {problem}", path.display());
                ExitCode::FAILURE
            }
        }
    }
}

/// `CHAOS_HEARTBEAT_FILE`, or `chaos-monkey.heartbeat` in the temporary directory.
pub fn path(configured: Option<&Path>) -> PathBuf {
    configured.map_or_else(
        || std::env::temp_dir().join("chaos-monkey.heartbeat"),
        Path::to_path_buf,
    )
}

/// Writes the time `now` to `path`, atomically (a reader never sees half a file).
pub fn beat(path: &Path, now: SystemTime) -> std::io::Result<()> {
    let millis = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, millis.to_string())?;
    std::fs::rename(&temporary, path)
}

/// How long before `now` the heartbeat at `path` was written.
fn age(path: &Path, now: SystemTime) -> Result<Duration, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("no heartbeat ({e})"))?;
    let millis: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("not a heartbeat: {:?}", text.trim()))?;
    let written = UNIX_EPOCH + Duration::from_millis(millis);
    // A clock that stepped back makes a heartbeat "from the future": it is fresh.
    Ok(now.duration_since(written).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_heartbeat_passes_and_a_stale_or_missing_one_fails() {
        let dir = std::env::temp_dir().join(format!("heartbeat-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("beat");
        let check = HealthcheckArgs { max_age_s: 30 };
        assert_eq!(check.run(&file), ExitCode::FAILURE, "no file yet");

        beat(&file, SystemTime::now()).unwrap();
        assert_eq!(check.run(&file), ExitCode::SUCCESS);
        assert!(age(&file, SystemTime::now()).unwrap() < Duration::from_secs(5));

        beat(&file, SystemTime::now() - Duration::from_secs(31)).unwrap();
        assert_eq!(check.run(&file), ExitCode::FAILURE, "stale");

        let later = SystemTime::now() + Duration::from_secs(60);
        beat(&file, later).unwrap();
        assert_eq!(age(&file, SystemTime::now()).unwrap(), Duration::ZERO);

        std::fs::write(&file, "garbage").unwrap();
        assert_eq!(check.run(&file), ExitCode::FAILURE, "unreadable");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_lives_in_the_temporary_directory() {
        assert_eq!(
            path(None),
            std::env::temp_dir().join("chaos-monkey.heartbeat")
        );
        assert_eq!(path(Some(Path::new("/x/y"))), PathBuf::from("/x/y"));
    }
}
