//! Secrets from the config: API keys, tokens. Owns the [`Secret`] type and the
//! `X_env` / `X_file` / `X` resolution rules.
//!
//! Must not: print, log or put into an error message a secret's value. The only
//! way to the value is [`Secret::expose`], which callers use at the moment they
//! put it on the wire.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Secret files larger than this are rejected: a key is a few dozen bytes, and
/// a `_file` that points at a log or at `/dev/zero` must not be read whole.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// A credential from the config. `Debug` and `Display` show where it came from,
/// never what it is, so a `Secret` may sit in any struct that gets logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    source: SecretSource,
}

/// Where a [`Secret`] came from; safe to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable (`X_env = "NAME"`), e.g. from systemd's `EnvironmentFile=`.
    Env(String),
    /// A file (`X_file = "path"`), e.g. systemd's `LoadCredential=`; the resolved path.
    File(PathBuf),
    /// Written in the config file itself (`X = "..."`); accepted with a warning.
    Inline,
}

impl Secret {
    /// Wraps a value. For code that builds a config without a file (tests, the
    /// demo); the config loader uses the resolution rules instead.
    /// Registers the value with [`crate::redact`], so no text the daemon
    /// logs, stores or serves can carry it.
    pub fn new(value: impl Into<String>, source: SecretSource) -> Secret {
        let value = value.into();
        crate::redact::register(&value);
        Secret { value, source }
    }

    /// The secret itself. Call it only where the value goes on the wire.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where the secret came from.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// Compares `candidate` with the secret in time that does not depend on
    /// where they first differ (only on the candidate's length), for checking
    /// a bearer token an HTTP client sent.
    pub fn matches(&self, candidate: &str) -> bool {
        let a = self.value.as_bytes();
        let b = candidate.as_bytes();
        let mut diff = u8::from(a.len() != b.len());
        for (i, &y) in b.iter().enumerate() {
            // Compare against a byte of our value even past its end, so the
            // loop does the same work whatever the lengths.
            let x = a.get(i).copied().unwrap_or(0);
            diff |= x ^ y;
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<redacted>, from {})", self.source)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted: {}>", self.source)
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(var) => write!(f, "env {var}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Inline => f.write_str("inline"),
        }
    }
}

/// The three keys that may carry one secret, as read from the file.
pub(super) struct SecretKeys<'a> {
    /// The key name without suffix (`api_key`), with its table prefix when the
    /// caller's message does not already say where (`daemon.admin_token`).
    pub name: &'a str,
    pub env: Option<&'a str>,
    pub file: Option<&'a Path>,
    pub inline: Option<&'a str>,
}

/// What resolution needs from the outside world, passed in so tests do not
/// touch the process environment.
pub(super) struct SecretContext<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Directory of the config file: base for relative `_file` paths.
    pub config_dir: &'a Path,
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`): the base for
    /// relative `_file` paths when set, so `api_key_file = "waha"` works.
    pub credentials_dir: Option<&'a Path>,
}

/// The outcome of resolving one secret: the secret (if any key was given) and
/// whether it was inline, so the caller can warn with its own context.
pub(super) struct Resolved {
    pub secret: Option<Secret>,
    pub inline: bool,
    /// The secret's file is readable by every user (mode `o+r`): its mode.
    pub world_readable: Option<u32>,
}

/// Applies the rules: at most one of `X_env`, `X_file`, `X`; env must be set
/// and non-empty; a file is read, one trailing newline trimmed, and must be
/// non-empty; no value may contain control characters (a header or URL path
/// cannot carry them, and a second line in a file is a mistake). Errors name
/// keys, variables and paths, never the value.
pub(super) fn resolve(keys: &SecretKeys<'_>, ctx: &SecretContext<'_>) -> Result<Resolved, String> {
    let name = keys.name;
    let given: Vec<String> = [
        keys.env.map(|_| format!("{name}_env")),
        keys.file.map(|_| format!("{name}_file")),
        keys.inline.map(|_| name.to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        return Err(format!(
            "{} are both set; give the secret one way only",
            given.join(" and ")
        ));
    }

    if let Some(var) = keys.env {
        let key = format!("{name}_env");
        if var.is_empty() {
            return Err(format!("{key} must name an environment variable"));
        }
        let value = match (ctx.env)(var) {
            None => return Err(format!("{key}: environment variable {var} is not set")),
            Some(v) => v,
        };
        check_value(&value, || format!("{key}: environment variable {var}"))?;
        return Ok(Resolved {
            secret: Some(Secret::new(value, SecretSource::Env(var.to_string()))),
            inline: false,
            world_readable: None,
        });
    }

    if let Some(file) = keys.file {
        let key = format!("{name}_file");
        if file.as_os_str().is_empty() {
            return Err(format!("{key} must name a file"));
        }
        let path = if file.is_absolute() {
            file.to_path_buf()
        } else {
            ctx.credentials_dir.unwrap_or(ctx.config_dir).join(file)
        };
        let value =
            read_secret_file(&path).map_err(|e| format!("{key} {}: {e}", path.display()))?;
        check_value(&value, || format!("{key} {}", path.display()))?;
        let world_readable = file_mode(&path).filter(|mode| mode & 0o004 != 0);
        return Ok(Resolved {
            secret: Some(Secret::new(value, SecretSource::File(path))),
            inline: false,
            world_readable,
        });
    }

    if let Some(value) = keys.inline {
        check_value(value, || name.to_string())?;
        return Ok(Resolved {
            secret: Some(Secret::new(value, SecretSource::Inline)),
            inline: true,
            world_readable: None,
        });
    }

    Ok(Resolved {
        secret: None,
        inline: false,
        world_readable: None,
    })
}

/// The permission bits of `path` (Unix); `None` elsewhere or if unreadable.
fn file_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Reads at most [`MAX_SECRET_FILE_BYTES`] and trims one trailing newline
/// (`echo key > file` and editors add one; a token never ends in one).
fn read_secret_file(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "file is larger than {MAX_SECRET_FILE_BYTES} bytes; is this the right file?"
        ));
    }
    let mut text = String::from_utf8(bytes).map_err(|_| "file is not valid UTF-8".to_string())?;
    if text.ends_with("\r\n") {
        text.truncate(text.len() - 2);
    } else if text.ends_with('\n') {
        text.truncate(text.len() - 1);
    }
    Ok(text)
}

/// Rejects values no HTTP header or URL path can carry. `what` is built only
/// on error and names the key or variable.
fn check_value(value: &str, what: impl Fn() -> String) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{} is empty", what()));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{} contains a control character (more than one line?)",
            what()
        ));
    }
    Ok(())
}
