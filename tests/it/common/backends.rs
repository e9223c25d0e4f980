//! The store backends as a test matrix: a behaviour test written once as
//! `async fn name(backend: Backend)` runs on SQLite and on PostgreSQL
//! (`matrix!(name)` makes `name::sqlite` and `name::postgres`).

use super::Settings;

/// The backends every matrix test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `settings` on this backend: unchanged for SQLite (the harness's file),
    /// a fresh database on the test PostgreSQL cluster otherwise.
    pub async fn settings(self, settings: &Settings) -> Settings {
        let mut s = settings.clone();
        if self == Backend::Postgres {
            let url = super::postgres::fresh_database().await;
            s.daemon("database", &format!("{url:?}"));
        }
        s
    }
}

/// One `sqlite` and one `postgres` test for each `name(backend)`; with
/// `multi_thread:` first, on a two-worker runtime.
#[allow(unused_macros)] // hostile_corpus includes the harness without it
macro_rules! matrix {
    (multi_thread: $($name:ident),+ $(,)?) => {
        $crate::common::backends::matrix!(@ [tokio::test(flavor = "multi_thread", worker_threads = 2)] $($name),+);
    };
    (@ [$test:meta] $($name:ident),+) => {$(
        mod $name {
            #[$test]
            async fn sqlite() {
                super::$name($crate::common::backends::Backend::Sqlite).await
            }
            #[$test]
            async fn postgres() {
                super::$name($crate::common::backends::Backend::Postgres).await
            }
        }
    )+};
    ($($name:ident),+ $(,)?) => {
        $crate::common::backends::matrix!(@ [tokio::test] $($name),+);
    };
}
#[allow(unused_imports)]
pub(crate) use matrix;
