//! The migrations of `sql/migrations/<engine>/`, embedded in the binary: the same versions
//! and descriptions for both engines, each in its own dialect.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// (version, description, PostgreSQL, SQLite).
const MIGRATIONS: [(i64, &str, &str, &str); 3] = [
    (
        1,
        "init",
        include_str!("../../../sql/migrations/postgres/0001_init.sql"),
        include_str!("../../../sql/migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "history",
        include_str!("../../../sql/migrations/postgres/0002_history.sql"),
        include_str!("../../../sql/migrations/sqlite/0002_history.sql"),
    ),
    (
        3,
        "request log index",
        include_str!("../../../sql/migrations/postgres/0003_request_log_index.sql"),
        include_str!("../../../sql/migrations/sqlite/0003_request_log_index.sql"),
    ),
];

/// The migrator of one engine.
pub(crate) fn migrator(postgres: bool) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, pg, lite)| {
                let sql = if postgres { pg } else { lite };
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}
