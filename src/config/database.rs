//! `daemon.database`: the store's location, a SQLite file (a path or
//! `sqlite:PATH`, relative to the config file) or a PostgreSQL URL, inline or
//! from `daemon.database_url_env` / `daemon.database_url_file` like every
//! other secret. A URL is a [`Secret`] and its password is registered for
//! redaction on its own; no message quotes a URL (only an unknown scheme's
//! name).

use std::path::Path;

use super::resolve::Resolver;
use super::secret::SecretKeys;
use super::{Database, Secret, SecretSource};

impl Resolver<'_> {
    /// `daemon.database` (a path, `sqlite:PATH` or `postgres://…`) or the
    /// PostgreSQL URL from `daemon.database_url_env` / `_file`; `None` when
    /// nothing is given (the default).
    pub(super) fn database(
        &mut self,
        database: Option<&str>,
        url_env: Option<&str>,
        url_file: Option<&Path>,
    ) -> Result<Option<Database>, String> {
        let from_secret = self.secret(
            &SecretKeys {
                name: "daemon.database_url",
                env: url_env,
                file: url_file,
                inline: None,
            },
            "",
        )?;
        if let Some(url) = from_secret {
            if database.is_some() {
                return Err(
                    "daemon.database and daemon.database_url_env/_file are both set; \
                     give the database one way only"
                        .to_string(),
                );
            }
            if !is_postgres_url(url.expose()) {
                return Err(format!(
                    "daemon.database_url ({}) must be a postgres:// or postgresql:// URL",
                    url.source()
                ));
            }
            register_password(url.expose());
            return Ok(Some(Database::Postgres(url)));
        }
        let Some(text) = database else {
            return Ok(None);
        };
        if is_postgres_url(text) {
            register_password(text);
            let url = Secret::new(text, SecretSource::Inline);
            if url_password(text).is_some() {
                self.warn(
                    "daemon.database carries a password inline in the config file; prefer \
                     daemon.database_url_env or daemon.database_url_file"
                        .to_string(),
                );
            }
            return Ok(Some(Database::Postgres(url)));
        }
        let path = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
            .unwrap_or(text);
        if path.is_empty() {
            return Err("daemon.database must not be empty".to_string());
        }
        if let Some((scheme, _)) = path.split_once("://") {
            // Only the scheme: the rest of an unknown URL may hold a password.
            return Err(format!(
                "daemon.database: unknown scheme {scheme:?}; give a file path, sqlite:PATH \
                 or a postgres:// URL"
            ));
        }
        Ok(Some(Database::Sqlite(self.config_dir.join(path))))
    }
}

/// `postgres://` or `postgresql://` (the two schemes libpq accepts).
fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The password in a URL's user info (`scheme://user:password@host/...`)
/// or its `password=` parameter, if it has one.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if let Some((userinfo, _host)) = authority.rsplit_once('@')
        && let Some((_user, password)) = userinfo.split_once(':')
        && !password.is_empty()
    {
        return Some(password);
    }
    let query = rest.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("password="))
        .filter(|p| !p.is_empty())
}

/// Registers a URL's password with the redaction registry on its own (the
/// whole URL already is, as a [`Secret`]): a driver message could quote it.
fn register_password(url: &str) {
    if let Some(password) = url_password(url) {
        crate::redact::register(password);
    }
}
