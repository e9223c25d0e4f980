//! What the operator CLI (`status`, `history`, `pause`, `resume`) needs from
//! the config: the database, the listen address and, for the POST API, the
//! admin token — without resolving the providers' secrets, which an
//! operator's shell usually cannot read (they come from `LoadCredential=` or
//! the service's environment). The whole file is still parsed, so a syntax
//! error or an unknown key is reported as for the daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::resolve::Resolver;
use super::{Config, ConfigError, Secret};

/// The operator's view of a config file.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// The file, as given.
    pub path: PathBuf,
    /// `daemon.database`, resolved like the daemon resolves it.
    pub database: super::Database,
    /// `daemon.listen`.
    pub listen: SocketAddr,
    /// `daemon.admin_token`, only when asked for (and configured).
    pub admin_token: Option<Secret>,
    /// Names of the `[[provider]]` tables, in file order.
    pub providers: Vec<String>,
}

impl Config {
    /// Reads the operator's view of the file at `path` (see the module doc).
    /// `admin_token`: resolve `daemon.admin_token` too (from the process
    /// environment and `$CREDENTIALS_DIRECTORY`), else it is left out.
    pub fn load_operator(
        path: impl AsRef<Path>,
        admin_token: bool,
    ) -> Result<OperatorConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let mut raw = super::parse_raw(&text, path)?;
        if !admin_token {
            raw.daemon.admin_token = None;
            raw.daemon.admin_token_env = None;
            raw.daemon.admin_token_file = None;
        }
        let env = super::process_env;
        let credentials_dir = env("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        let mut resolver = Resolver {
            path,
            config_dir: path.parent().unwrap_or(Path::new("")),
            credentials_dir: credentials_dir.as_deref(),
            env: &env,
            warnings: Vec::new(),
        };
        let daemon = resolver
            .daemon(raw.daemon)
            .map_err(|message| ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(OperatorConfig {
            path: path.to_path_buf(),
            database: daemon.database,
            listen: daemon.listen,
            admin_token: daemon.admin_token,
            providers: raw
                .providers
                .iter()
                .filter_map(|p| p.name.clone())
                .collect(),
        })
    }
}
