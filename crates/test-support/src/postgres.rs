//! A schema of its own on the machine's PostgreSQL for each test: `TEST_POSTGRES_URL`, by
//! default `postgres://postgres@127.0.0.1:5432/test` (the local server, trust auth).

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{AssertSqlSafe, PgPool};

use crate::fail;

/// The server the tests use.
pub fn server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh schema, dropped by [`Schema::drop`] (a failed test leaves it, named after its
/// process, for a look).
pub struct Schema {
    admin: PgPool,
    /// Its name (`t_<pid>_<n>`).
    pub name: String,
}

impl Schema {
    /// Creates it; fails the test, saying so, when the server does not answer.
    pub async fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let base = server_url();
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = PgPool::connect(&base)
            .await
            .unwrap_or_else(|e| fail(format!("the test needs PostgreSQL at {base}: {e}")));
        for sql in [
            format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
            format!("CREATE SCHEMA {name}"),
        ] {
            if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&admin).await {
                fail(format!("creating schema {name}: {e}"));
            }
        }
        Self { admin, name }
    }

    /// A URL of the server at `host_port` (the server's own, or a proxy's) whose
    /// connections use this schema.
    pub fn url_via(&self, host_port: &str) -> String {
        let base = server_url();
        let (scheme_user, rest) = base
            .split_once('@')
            .unwrap_or(("postgres://postgres", &base));
        let database = rest.split_once('/').map_or("test", |(_, db)| db);
        let database = database.split('?').next().unwrap_or("test");
        format!(
            "{scheme_user}@{host_port}/{database}?options=-csearch_path%3D{}",
            self.name
        )
    }

    /// A URL of the server itself whose connections use this schema.
    pub fn url(&self) -> String {
        let base = server_url();
        let host_port = base
            .split_once('@')
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap_or("127.0.0.1:5432")
            .to_owned();
        self.url_via(&host_port)
    }

    /// A pool on this schema, to read what the binaries wrote.
    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url())
            .await
            .unwrap_or_else(|e| fail(format!("connecting to schema {}: {e}", self.name)))
    }

    /// Drops it.
    pub async fn drop(self) {
        let sql = format!("DROP SCHEMA {} CASCADE", self.name);
        if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&self.admin).await {
            fail(format!("dropping schema {}: {e}", self.name));
        }
    }
}
