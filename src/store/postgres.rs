//! Opening the PostgreSQL backend: the pool, its migrations
//! (`migrations/postgres/`), the schema check of a read-only open. Every
//! query lives with the SQLite ones (see the module comment of `store`).
//!
//! The URL may carry a password, so it never appears in an error or a log
//! line: errors name the database by [`target`] (host, port, database).

use std::collections::HashSet;
use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{ACQUIRE_TIMEOUT, Pools, Store, StoreError};

/// PostgreSQL's migrations, embedded at build time from `migrations/postgres/`.
/// Same versions and meaning as SQLite's in `migrations/`, in its dialect.
static PG_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per process. Writes are short and few per probe; reads come
/// from the API and the status page.
const PG_CONNECTIONS: u32 = 8;

/// The database as errors name it: `postgres://host:port/database` without
/// user or password (a socket directory stands in for the host).
fn target(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(dir) => dir.display().to_string(),
        None => options.get_host().to_string(),
    };
    format!(
        "postgres://{host}:{}/{}",
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// Parses the URL; the error does not repeat it.
fn parse(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url)
        .map_err(|_| StoreError::BadUrl)
        .map(|o| o.application_name("wa-watchdog"))
}

async fn pool(options: PgConnectOptions, target: &str) -> Result<PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(PG_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|error| StoreError::Connect {
            target: target.to_string(),
            error,
        })
}

impl Store {
    /// Opens the PostgreSQL database at `url` for the daemon and runs the
    /// embedded migrations (sqlx takes an advisory lock, so replicas starting
    /// together migrate once).
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let options = parse(url)?;
        let target = target(&options);
        let pool = pool(options, &target).await?;
        if let Err(error) = PG_MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(StoreError::MigrateRemote { target, error });
        }
        Ok(Store {
            pools: Pools::Postgres(pool),
            read_only: false,
            health: Default::default(),
        })
    }

    /// Opens the PostgreSQL database at `url` read-only (every transaction
    /// is `READ ONLY`, and the store refuses writes itself), for the operator
    /// CLI. Runs no migrations; fails naming the database if the schema is
    /// missing or older than this binary's.
    pub async fn open_postgres_read_only(url: &str) -> Result<Store, StoreError> {
        let options = parse(url)?.options([("default_transaction_read_only", "on")]);
        let target = target(&options);
        let pool = pool(options, &target).await?;
        if let Err(e) = check_schema(&pool, &target).await {
            pool.close().await;
            return Err(e);
        }
        Ok(Store {
            pools: Pools::Postgres(pool),
            read_only: true,
            health: Default::default(),
        })
    }
}

/// Fails unless every embedded migration has been applied.
async fn check_schema(pool: &PgPool, target: &str) -> Result<(), StoreError> {
    let connect = |error| StoreError::Connect {
        target: target.to_string(),
        error,
    };
    let has_table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
            .fetch_one(pool)
            .await
            .map_err(connect)?;
    if has_table.is_none() {
        return Err(StoreError::Schema {
            target: target.to_string(),
            problem: "has no wa-watchdog schema (the daemon creates it on its first start)"
                .to_string(),
        });
    }
    let applied: HashSet<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_all(pool)
            .await
            .map_err(connect)?
            .into_iter()
            .collect();
    match PG_MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .find(|m| !applied.contains(&m.version))
    {
        Some(m) => Err(StoreError::Schema {
            target: target.to_string(),
            problem: format!(
                "lacks schema migration {} that this binary needs: restart the daemon to migrate it",
                m.version
            ),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_database_without_user_or_password() {
        let o = parse("postgres://watch:hunter2-secret@db.example:6543/fleet").expect("parses");
        let t = target(&o);
        assert_eq!(t, "postgres://db.example:6543/fleet");
        let o = parse("postgres:///fleet?host=/run/postgresql").expect("socket");
        assert!(
            target(&o).starts_with("postgres:///run/postgresql:"),
            "{}",
            target(&o)
        );
        let err = parse("postgres://watch:hunter2-secret@[::1").expect_err("bad");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
