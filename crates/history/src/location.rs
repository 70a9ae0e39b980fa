//! Where the history is kept, from a URL.

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use crate::Error;

/// The SQLite file used when no database is configured, relative to the working directory.
pub const DEFAULT_SQLITE_FILE: &str = "resilience-history.sqlite3";

/// Where the history is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A PostgreSQL server: the whole `postgres://` URL (with its credentials: never logged,
    /// see [`Location::describe`]).
    Postgres(String),
    /// A SQLite file, created when missing.
    SqliteFile(PathBuf),
    /// A SQLite database in memory, gone with the process (tests).
    SqliteMemory,
    /// No history.
    Off,
}

impl Location {
    /// `postgres://…` or `postgresql://…`; `sqlite://PATH` or `sqlite:PATH`;
    /// `sqlite::memory:`; `off` (or `none`, or empty).
    pub fn parse(url: &str) -> Result<Self, Error> {
        let url = url.trim();
        if url.is_empty() || url.eq_ignore_ascii_case("off") || url.eq_ignore_ascii_case("none") {
            return Ok(Self::Off);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Checked here so that a typo fails at start-up, not at the first write.
            PgConnectOptions::from_str(url)
                .map_err(|_| Error::Location("the PostgreSQL URL does not parse".into()))?;
            return Ok(Self::Postgres(url.to_owned()));
        }
        if url == "sqlite::memory:" || url == ":memory:" {
            return Ok(Self::SqliteMemory);
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(Error::Location("a sqlite: URL needs a file path".into()));
            }
            return Ok(Self::SqliteFile(PathBuf::from(path)));
        }
        Err(Error::Location(
            "a database URL is postgres://…, sqlite://PATH, sqlite::memory: or off".into(),
        ))
    }

    /// The location without credentials, for logs and `/health`: `postgres://HOST:PORT/DB`,
    /// `sqlite:PATH`, `sqlite::memory:` or `off`.
    pub fn describe(&self) -> String {
        match self {
            Self::Postgres(url) => match PgConnectOptions::from_str(url) {
                Ok(options) => format!(
                    "postgres://{}:{}/{}",
                    options.get_host(),
                    options.get_port(),
                    options.get_database().unwrap_or_default()
                ),
                Err(_) => "postgres".to_owned(),
            },
            Self::SqliteFile(path) => format!("sqlite:{}", path.display()),
            Self::SqliteMemory => "sqlite::memory:".to_owned(),
            Self::Off => "off".to_owned(),
        }
    }

    /// `postgres`, `sqlite` or `off`.
    pub fn engine(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::SqliteFile(_) | Self::SqliteMemory => "sqlite",
            Self::Off => "off",
        }
    }
}
