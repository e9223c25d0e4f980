//! Configuration: the TOML schema (every key in config.example.toml), defaults,
//! per-provider merging of `[canary]` and `[policy]`, semantic validation and
//! secret resolution. It turns one file into a resolved [`Config`] that the
//! rest of the daemon consumes without re-checking anything, and renders that
//! config back for `check-config` with secrets redacted.
//!
//! This module is the only one that knows TOML. It must not do anything but
//! read: no network, no database, no process-environment writes; the only
//! files it opens are the config file and `_file` secrets. It never prints,
//! logs or puts into an error a secret's value (see [`Secret`]).
//!
//! Keys are user-facing and stable. Unknown keys are errors with
//! `file:line:column`; everything else is checked after parsing, and the
//! error names the key path (`provider "waha-main": policy.max_restarts`).

mod database;
#[cfg(test)]
mod example_support;
mod maintenance;
mod merge;
mod name;
mod operator;
mod raw;
mod render;
mod resolve;
mod ring;
mod secret;
#[cfg(test)]
mod tests;
mod webhook;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::policy::PolicyConfig;
use raw::RawConfig;
use resolve::Resolver;

pub use operator::OperatorConfig;
pub use render::render_redacted;
pub use ring::{
    DEFAULT_RING_DEADLINE, DEFAULT_RING_INTERVAL, DEFAULT_RING_TEXT, RingConfig, RingMember,
};
pub use secret::{Secret, SecretSource};
pub use webhook::{
    DEFAULT_WEBHOOK_BODY_LIMIT, DEFAULT_WEBHOOK_QUEUE_SIZE, DEFAULT_WEBHOOK_REPLAY_WINDOW,
    WebhookAuth, WebhookConfig,
};

/// Default `daemon.lease_ttl`: a dead replica's sessions are taken over
/// within this (plus one lease round and one canary interval).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Shortest `daemon.lease_ttl`: a round (a third) must fit a database round trip.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(3);

/// The default replica name: the host name (Linux's
/// `/proc/sys/kernel/hostname`), else `wa-watchdog`.
pub fn default_replica_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| name::valid_name(h))
        .unwrap_or_else(|| "wa-watchdog".to_string())
}

/// Default `daemon.database` (systemd `StateDirectory=wa-watchdog`).
pub const DEFAULT_DATABASE: &str = "/var/lib/wa-watchdog/wa-watchdog.db";
/// Default `provider.max_concurrent_probes`.
pub const DEFAULT_MAX_CONCURRENT_PROBES: usize = 4;
/// Upper bound for `max_concurrent_probes`: one gateway server, not a fleet;
/// also keeps the value far below what a semaphore accepts.
pub const MAX_CONCURRENT_PROBES_LIMIT: usize = 1024;
/// Default `provider.connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `provider.min_request_interval` (Green-API): a little over the
/// vendor's one request per second, so arrival jitter never trips it.
pub const DEFAULT_MIN_REQUEST_INTERVAL: Duration = Duration::from_millis(1100);
/// Default `alertmanager.resend_interval`.
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_secs(60);
/// No duration in the config may exceed this (ten years): a larger one is a
/// typo, and adding it to an `Instant` could overflow and panic.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);
/// The placeholder in `canary.text` replaced by each probe's nonce.
pub const NONCE_PLACEHOLDER: &str = "{nonce}";

/// The resolved configuration: every default filled in, every secret read,
/// every value checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub daemon: DaemonConfig,
    /// In file order; names are unique.
    pub providers: Vec<ProviderConfig>,
    /// Direct push to Alertmanager; off when the table is absent.
    pub alertmanager: Option<AlertmanagerConfig>,
    /// `[[maintenance]]` windows, in file order; names are unique.
    pub maintenance: Vec<crate::maintenance::Window>,
    /// `[[ring]]` round-trip rings, in file order; names are unique and no
    /// session is in two rings.
    pub rings: Vec<RingConfig>,
    /// The file this came from, as given (used in messages and for reload).
    pub path: PathBuf,
    /// Things that work but deserve a look (inline secrets, cleartext HTTP,
    /// ...). Each was also logged with `tracing::warn!`; they are kept here so
    /// `check-config` can print them before logging is set up.
    pub warnings: Vec<String>,
}

/// Where the store lives (`daemon.database`, `daemon.database_url_env`,
/// `daemon.database_url_file`).
#[derive(Clone, Debug, PartialEq)]
pub enum Database {
    /// A SQLite file (a path, or `sqlite:PATH`); a relative path in the file
    /// is resolved against the config file's directory. The default.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://…`), shared by several replicas. A
    /// [`Secret`]: it may carry a password.
    Postgres(Secret),
}

impl Database {
    /// The SQLite file, if that is the backend.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }
}

impl std::fmt::Display for Database {
    /// The path, or where the PostgreSQL URL came from (never the URL).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => write!(f, "PostgreSQL ({})", url.source()),
        }
    }
}

/// `[daemon]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    /// The store: SQLite (default) or PostgreSQL.
    pub database: Database,
    /// This replica's name among several on one PostgreSQL store (default:
    /// the host name); unused on SQLite.
    pub replica: String,
    /// How long a shard lease lasts without renewal (renewed every third).
    pub lease_ttl: Duration,
    /// Address of /metrics, /healthz, /readyz, /api/v1 and /webhooks.
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    /// How often a WAHA server's session list is re-read (`sessions = ["*"]`).
    pub discovery_interval: Duration,
    /// A discovered session missing from the list is retired only after
    /// this many consecutive lists without it...
    pub retire_after_rounds: u32,
    /// ...and at least this long after the first list without it.
    pub retire_after: Duration,
    /// Probes older than this are pruned from the store.
    pub retention: Duration,
    /// Bearer token for `POST /api/v1/...`; `None` turns those endpoints off.
    pub admin_token: Option<Secret>,
    /// Extension: how long in-flight probes may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// A second address that serves `POST /webhooks/{provider}` only (and
    /// `/healthz`), to expose to the providers instead of `listen`.
    pub webhook_listen: Option<SocketAddr>,
    /// Extension: export the per-session families (`session_state`,
    /// `session_last_success_timestamp_seconds`,
    /// `session_consecutive_failures`); off on very large fleets, where the
    /// fleet-level families (per provider) remain.
    pub session_metrics: bool,
    /// Threads the daemon's async work runs on. 1 (the default): one thread
    /// for the scheduler, the probes, the HTTP server and the writer, with
    /// heavy pure work (encoding `/metrics`, reading a config) on tokio's
    /// blocking pool. Each probe hands work between tasks a dozen times;
    /// on one thread those are function calls, across threads they are
    /// wake-ups (futex calls, context switches), which cost more CPU per
    /// probe than a second core saves at the rates a watchdog runs (see the
    /// README's benchmarks). More than one: a multi-threaded runtime with
    /// that many workers, for a host where one core is not enough.
    pub worker_threads: usize,
}

/// `daemon.worker_threads`' bounds.
pub const MAX_WORKER_THREADS: usize = 64;

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            database: Database::Sqlite(PathBuf::from(DEFAULT_DATABASE)),
            replica: default_replica_name(),
            lease_ttl: DEFAULT_LEASE_TTL,
            listen: SocketAddr::from(([127, 0, 0, 1], 9797)),
            log_format: LogFormat::Text,
            discovery_interval: Duration::from_secs(60),
            retire_after_rounds: 3,
            retire_after: Duration::from_secs(10 * 60),
            retention: Duration::from_secs(30 * 24 * 3600),
            admin_token: None,
            shutdown_grace: Duration::from_secs(10),
            webhook_listen: None,
            session_metrics: true,
            worker_threads: 1,
        }
    }
}

/// `daemon.log_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (journald adds the timestamp).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `provider.kind`: which gateway API the provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// A WAHA server: many sessions, listed or discovered.
    Waha,
    /// One Green-API instance: one session, named after `id_instance`.
    GreenApi,
}

impl ProviderKind {
    /// The config spelling (`"waha"`, `"green-api"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Waha => "waha",
            ProviderKind::GreenApi => "green-api",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[provider]]`: an API endpoint with its credentials, its sessions and
/// its resolved canary and policy settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderConfig {
    /// Unique, `[A-Za-z0-9_.-]{1,64}` and not `.`/`..`: it becomes a metric
    /// label and a URL path segment.
    pub name: String,
    pub kind: ProviderKind,
    /// `http://` or `https://` base URL without a trailing `/`, query,
    /// fragment or credentials.
    pub url: String,
    /// WAHA only: the `X-Api-Key`; `None` for servers run with `WAHA_NO_API_KEY`.
    pub api_key: Option<Secret>,
    /// Green-API only (always `Some` there): the instance id, digits.
    pub id_instance: Option<String>,
    /// Green-API only (always `Some` there): the `apiTokenInstance`.
    pub api_token: Option<Secret>,
    /// Which sessions to watch. Green-API: `Named([id_instance])`.
    pub sessions: SessionSelector,
    /// `[[provider.session]]` overrides; names are unique.
    pub session_overrides: Vec<SessionOverride>,
    /// `[canary]` merged with `[provider.canary]`.
    pub canary: CanaryConfig,
    /// `[policy]` merged with `[provider.policy]`.
    pub policy: PolicyConfig,
    /// Extension: probes of this provider in flight at once (1..=1024).
    pub max_concurrent_probes: usize,
    /// Extension: TCP/TLS connect deadline for this provider's requests.
    pub connect_timeout: Duration,
    /// Extension, Green-API only: whether a `yellowCard` state may be answered
    /// with `reboot` (off: a yellow card wants rest, not restarts).
    pub reboot_on_yellow_card: bool,
    /// Extension, Green-API only: client-side spacing of the calls Green-API
    /// limits to one per second per instance (state, settings, queue, reboot).
    pub min_request_interval: Duration,
    /// Extension: `webhook_*` keys, the receiver of `POST /webhooks/{name}`.
    pub webhook: WebhookConfig,
}

impl ProviderConfig {
    /// The `[[provider.session]]` override for `session`, if any.
    pub fn session_override(&self, session: &str) -> Option<&SessionOverride> {
        self.session_overrides.iter().find(|o| o.name == session)
    }

    /// Canary interval for `session`: its override, else the provider's.
    pub fn interval_for(&self, session: &str) -> Duration {
        self.session_override(session)
            .and_then(|o| o.interval)
            .unwrap_or(self.canary.interval)
    }

    /// Canary target for `session`: its override, else the provider's.
    pub fn chat_for(&self, session: &str) -> ChatTarget {
        self.session_override(session)
            .and_then(|o| o.chat.clone())
            .unwrap_or_else(|| self.canary.chat.clone())
    }

    /// Whether `session` is to be probed: selected by `sessions` and not
    /// turned off by an override with `enabled = false`.
    pub fn is_enabled(&self, session: &str) -> bool {
        self.sessions.includes(session) && self.session_override(session).is_none_or(|o| o.enabled)
    }
}

/// `provider.sessions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionSelector {
    /// `["*"]`: every session the server lists (re-read every `discovery_interval`).
    All,
    /// Exactly these sessions, in file order, without duplicates.
    Named(Vec<String>),
}

impl SessionSelector {
    /// Whether `session` is selected.
    pub fn includes(&self, session: &str) -> bool {
        match self {
            SessionSelector::All => true,
            SessionSelector::Named(names) => names.iter().any(|n| n == session),
        }
    }
}

/// One `[[provider.session]]`: settings for one session that differ from the
/// provider's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOverride {
    pub name: String,
    /// Canary target instead of `canary.chat`.
    pub chat: Option<ChatTarget>,
    /// Canary interval instead of `canary.interval`.
    pub interval: Option<Duration>,
    /// `false`: the session is not probed (default `true`).
    pub enabled: bool,
}

/// The resolved `[canary]` settings of one provider.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryConfig {
    /// Time between canaries of one session.
    pub interval: Duration,
    /// Each interval is randomised by ± this fraction (0..=0.5).
    pub jitter: f64,
    /// Deadline of one probe's HTTP requests.
    pub timeout: Duration,
    /// How long a canary may take to be confirmed sent before it is `Stuck`.
    /// Default 2 minutes, 3 minutes for Green-API (its journal lags up to 2).
    pub ack_timeout: Duration,
    /// What proves a canary: WhatsApp's ack (default) or the provider's
    /// acceptance of the send.
    pub confirm: ConfirmMode,
    /// Message text; `{nonce}` is replaced by each probe's nonce.
    pub text: String,
    /// Where canaries go.
    pub chat: ChatTarget,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            interval: Duration::from_secs(300),
            jitter: 0.1,
            timeout: Duration::from_secs(20),
            ack_timeout: Duration::from_secs(120),
            confirm: ConfirmMode::Ack,
            text: "wa-watchdog canary {nonce}".to_string(),
            chat: ChatTarget::SelfChat,
        }
    }
}

/// What proves that a canary arrived (`[canary] confirm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConfirmMode {
    /// `"ack"`: WhatsApp's own evidence: WAHA ack >= 1 (SERVER) read back or
    /// in the send reply, Green-API `statusMessage` sent/delivered/read.
    #[default]
    Ack,
    /// `"accepted"`: the provider accepting the send (WAHA 201, Green-API
    /// 200 + idMessage) counts as delivered. Knowingly weaker: it misses
    /// "accepted but never delivered".
    Accepted,
}

impl ConfirmMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmMode::Ack => "ack",
            ConfirmMode::Accepted => "accepted",
        }
    }

    pub fn parse(text: &str) -> Option<ConfirmMode> {
        match text {
            "ack" => Some(ConfirmMode::Ack),
            "accepted" => Some(ConfirmMode::Accepted),
            _ => None,
        }
    }
}

/// The Green-API default `ack_timeout`: its journal lags up to 2 minutes
/// (Green-API docs: getMessage), so the deadline must exceed that.
pub const GREEN_API_DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(180);

/// How long Green-API's journal may lag behind a send (Green-API docs: getMessage).
pub const GREEN_API_JOURNAL_LAG: Duration = Duration::from_secs(120);

impl CanaryConfig {
    /// The canary text for one probe: `text` with every `{nonce}` replaced.
    pub fn render_text(&self, nonce: &str) -> String {
        self.text.replace(NONCE_PLACEHOLDER, nonce)
    }
}

/// A canary's destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatTarget {
    /// `"self"`: the session's own chat (WAHA `me.id`, Green-API the wid).
    SelfChat,
    /// A chat id such as `5511999990001@c.us` or `...@g.us`.
    Id(String),
}

impl ChatTarget {
    /// Parses the config spelling: `"self"` or `local@domain` without
    /// whitespace. `None` if it is neither.
    pub fn parse(s: &str) -> Option<ChatTarget> {
        if s == "self" {
            return Some(ChatTarget::SelfChat);
        }
        let (local, domain) = s.split_once('@')?;
        let ok = !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && s.len() <= 256
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        ok.then(|| ChatTarget::Id(s.to_string()))
    }

    /// The config spelling.
    pub fn as_str(&self) -> &str {
        match self {
            ChatTarget::SelfChat => "self",
            ChatTarget::Id(id) => id,
        }
    }
}

impl fmt::Display for ChatTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[alertmanager]`: direct push of alerts to Alertmanager's v2 API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertmanagerConfig {
    /// Base URL without a trailing `/`.
    pub url: String,
    /// Extension: how often firing alerts are re-sent (Alertmanager forgets
    /// an alert whose `endsAt` passes).
    pub resend_interval: Duration,
}

/// Line and column (1-based, columns in characters) of a TOML error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// Why a config could not be loaded. The message always starts with the file
/// path; map every variant to exit code 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, permissions, not UTF-8).
    #[error("{}: cannot read config file: {error}", .path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{}{}: {message}", .path.display(), location_suffix(.location))]
    Parse {
        path: PathBuf,
        location: Option<Location>,
        message: String,
    },
    /// Parsed, but a value is not acceptable; `message` names the key path.
    #[error("{}: {message}", .path.display())]
    Invalid { path: PathBuf, message: String },
}

fn location_suffix(location: &Option<Location>) -> String {
    match location {
        Some(l) => format!(":{}:{}", l.line, l.column),
        None => String::new(),
    }
}

impl Config {
    /// Reads and resolves the file at `path`, taking secrets from the process
    /// environment and `$CREDENTIALS_DIRECTORY`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(path, &process_env)
    }

    /// Like [`Config::load`] with `env` as the environment lookup.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::from_toml_str(&text, path, env)
    }

    /// Resolves config `text` as if read from `path` (relative paths in it are
    /// resolved against `path`'s directory). `env` looks up environment
    /// variables, `CREDENTIALS_DIRECTORY` included, so tests need not touch
    /// the process environment.
    pub fn from_toml_str(
        text: &str,
        path: impl AsRef<Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let raw = parse_raw(text, path)?;
        let credentials_dir = env("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        let mut resolver = Resolver {
            path,
            config_dir: path.parent().unwrap_or(Path::new("")),
            credentials_dir: credentials_dir.as_deref(),
            env,
            warnings: Vec::new(),
        };
        resolver
            .config(raw)
            .map_err(|message| ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            })
    }

    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The ring `provider/session` is a member of, and its position there.
    pub fn ring_of(&self, provider: &str, session: &str) -> Option<(&RingConfig, usize)> {
        self.rings
            .iter()
            .find_map(|r| r.position(provider, session).map(|i| (r, i)))
    }
}

/// The raw schema of `text`; syntax errors and unknown keys carry their position.
fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end().to_string();
        // Type, range, duplicate and address errors say what is wrong but
        // not where in the schema: name the key (an unknown key's message
        // already names it).
        let message = match e.span().and_then(|span| key_at(text, span.start)) {
            Some(key) if !message.starts_with("unknown field") => {
                format!("{message}, in key {key}")
            }
            _ => message,
        };
        ConfigError::Parse {
            path: path.to_path_buf(),
            location: e.span().map(|span| location(text, span.start)),
            message,
        }
    })
}

/// The key whose `key = value` line holds byte `offset` (or the nearest
/// such line above it, for a value spanning lines), with the table it is
/// in: `policy.max_restarts`, `provider.policy.max_restarts of [[provider]]
/// #2`. Read from the text, because a file with a duplicate key does not
/// parse at all. `None` outside any key (a header, a comment).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let lines: Vec<&str> = text[..line_end].lines().collect();
    let is_bare = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
    };
    let mut key = None;
    let mut header = None;
    for (i, line) in lines.iter().enumerate().rev() {
        let t = line.trim();
        if t.starts_with('[') {
            header = Some((i, t));
            break;
        }
        if key.is_none()
            && let Some((k, _)) = t.split_once('=')
            && is_bare(k.trim())
        {
            key = Some(k.trim().replace(' ', ""));
        }
    }
    let key = key?;
    let Some((at, header)) = header else {
        return Some(key);
    };
    let table = header.trim_matches(|c| c == '[' || c == ']').trim();
    let first = table.split('.').next().unwrap_or(table);
    let array_header = format!("[[{first}]]");
    let index = lines[..=at]
        .iter()
        .filter(|l| l.trim().replace(' ', "") == array_header)
        .count();
    Some(if index > 0 {
        format!("{table}.{key} of {array_header} #{index}")
    } else {
        format!("{table}.{key}")
    })
}

/// The real environment. A variable that is not valid UTF-8 counts as unset
/// (no key or token is anything but ASCII).
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Line and column of byte `offset` in `text`.
fn location(text: &str, offset: usize) -> Location {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}
