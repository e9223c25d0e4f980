//! Store set-ups the store-level tests share: a session to hang restart
//! intents on, a pending intent, and a second connection that holds a
//! SQLite file's write lock (as another process would).

use std::path::Path;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use wa_watchdog::clock::Timestamp;
use wa_watchdog::store::{NewRemediation, SessionRecord, Store};

use super::PROVIDER;

/// Saves `PROVIDER`/`session` in `state` since `at`, with nothing else known.
pub async fn save_session(store: &Store, session: &str, state: &str, at: Timestamp) {
    store
        .save_session(&SessionRecord::new(PROVIDER, session, state, at))
        .await
        .expect("save session");
}

/// A pending restart intent of `PROVIDER`/`session` decided at `at`
/// ("desync confirmed"), identified by `intent_key`.
pub fn intent(session: &str, at: Timestamp, intent_key: &str) -> NewRemediation {
    NewRemediation {
        provider: PROVIDER.into(),
        session: session.into(),
        started_at: at,
        action: "restart".into(),
        reason: "desync confirmed".into(),
        result: "pending".into(),
        intent_key: intent_key.into(),
    }
}

/// Another connection to the SQLite file holding its write lock
/// (`BEGIN IMMEDIATE`) until [`WriteLock::release`].
pub struct WriteLock(SqliteConnection);

impl WriteLock {
    /// Takes the write lock of the SQLite file `db`.
    pub async fn take(db: &Path) -> WriteLock {
        let opts = SqliteConnectOptions::new()
            .filename(db)
            .busy_timeout(Duration::from_millis(100));
        let mut conn = SqliteConnection::connect_with(&opts)
            .await
            .expect("second connection");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .expect("take the write lock");
        WriteLock(conn)
    }

    /// Gives the lock back (rolls back) and closes the connection.
    pub async fn release(mut self) {
        sqlx::query("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("release");
        self.0.close().await.expect("close");
    }
}
