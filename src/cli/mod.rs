//! The operator commands: `status`, `history`, `probe`, `pause`, `resume`.
//! They answer "what is each session doing, and why was this one restarted
//! at 03:12?" from a shell, while the daemon runs.
//!
//! Owns: the arguments of these commands, naming a session on the command
//! line ([`Target`]), their output (plain text that fits 100 columns and is
//! readable without colour, or JSON) and their exit codes: 0 ok, 1 failed
//! (a failed canary, an unreachable daemon, an API error), 2 usage or
//! config error. Must not: write to the database (it is opened read-only;
//! the daemon owns it), print a secret (the admin token and API keys are
//! only put on the wire), or hold logic the daemon needs.

pub(crate) mod format;
mod history;
mod pause;
mod probe;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::clock::Timestamp;
use crate::config::{Config, Database};
use crate::store::Store;

/// Where the daemon's config lives under systemd (`systemd/README.md`).
pub const DEFAULT_CONFIG: &str = "/etc/wa-watchdog/config.toml";

/// The operator subcommands; `main.rs` flattens them into its own.
#[derive(Subcommand, Debug)]
pub enum Op {
    /// Table of every watched session from the database (works while the daemon runs).
    Status(StatusArgs),
    /// Transitions with reasons, restarts with results, recent probes of one session.
    History(HistoryArgs),
    /// Send one canary now through the real client; exit 0 delivered, 1 failed, 2 usage.
    Probe(ProbeArgs),
    /// Pause a session through the daemon's API (needs daemon.admin_token).
    Pause(PauseArgs),
    /// Resume a paused session through the daemon's API (needs daemon.admin_token).
    Resume(ResumeArgs),
}

/// `--config` and `--database`, shared by the commands that read the database.
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Read this database file instead of the config's daemon.database.
    #[arg(long)]
    pub database: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// `provider/session`, or a session name that only one provider has.
    pub session: String,
    #[arg(long, short)]
    pub provider: Option<String>,
    /// How far back: a duration ("24h", "7d") or an RFC 3339 time.
    #[arg(long, default_value = "24h", value_parser = parse_since)]
    pub since: Since,
    /// At most this many of each kind (transitions, restarts, probes), newest.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    #[command(flatten)]
    pub db: DbArgs,
    /// JSON instead of a timeline.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// `provider/session`, or a session name that only one provider can have.
    pub session: String,
    #[arg(long, short)]
    pub provider: Option<String>,
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct PauseArgs {
    /// `provider/session`, or a session name that only one provider has.
    pub session: String,
    #[arg(long, short)]
    pub provider: Option<String>,
    /// Resume by itself after this long (e.g. "2h"); default: until `resume`.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    pub for_: Option<Duration>,
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// `provider/session`, or a session name that only one provider has.
    pub session: String,
    #[arg(long, short)]
    pub provider: Option<String>,
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// `--since`: a duration back from now, or a point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    Ago(Duration),
    At(Timestamp),
}

impl Since {
    fn at(self, now: Timestamp) -> Timestamp {
        match self {
            Since::Ago(d) => now.minus(d),
            Since::At(t) => t,
        }
    }
}

fn parse_since(text: &str) -> Result<Since, String> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(Since::Ago(d));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| Since::At(Timestamp::from_millis(t.timestamp_millis())))
        .map_err(|_| {
            format!("{text:?} is neither a duration (\"24h\") nor an RFC 3339 time (\"2027-01-15T03:00:00Z\")")
        })
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or config: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed: exit 1.
    #[error("{0}")]
    Failed(String),
    /// The canary was not delivered; the result is already printed: exit 1.
    #[error("the canary was not delivered")]
    ProbeFailed,
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) | CliError::ProbeFailed => 1,
        }
    }
}

/// How many threads a runtime runs its tasks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Everything on the calling thread (tokio's current-thread runtime;
    /// blocking work still goes to the blocking pool).
    One,
    /// A multi-threaded runtime with this many workers.
    Workers(usize),
    /// A multi-threaded runtime with a worker per core (the demo and the
    /// simulators, which run a simulated fleet beside the daemon).
    PerCore,
}

impl Threads {
    /// `daemon.worker_threads` as a runtime.
    pub fn for_daemon(worker_threads: usize) -> Threads {
        if worker_threads <= 1 {
            Threads::One
        } else {
            Threads::Workers(worker_threads)
        }
    }
}

/// The tokio runtime a command runs on: [`Threads::One`] for an operator
/// command and, by default, the daemon (`daemon.worker_threads`);
/// if it cannot start, the error is on stderr and the command exits 1.
pub fn runtime(threads: Threads) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::Workers(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().map_err(|e| {
        eprintln!("wa-watchdog: cannot start the async runtime: {e}");
        ExitCode::from(1)
    })
}

/// Runs one operator command to completion and maps the result to an exit
/// code, printing errors on stderr.
pub fn run(op: Op) -> ExitCode {
    let rt = match runtime(Threads::One) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async move {
        match op {
            Op::Status(a) => status::run(a).await,
            Op::History(a) => history::run(a).await,
            Op::Probe(a) => probe::run(a).await,
            Op::Pause(a) => {
                pause::run(
                    pause::Action::Pause(a.for_),
                    &a.session,
                    a.provider,
                    &a.config,
                )
                .await
            }
            Op::Resume(a) => {
                pause::run(pause::Action::Resume, &a.session, a.provider, &a.config).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::ProbeFailed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wa-watchdog: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The database to read: `--database` (a SQLite file), else the config's
/// `daemon.database` (SQLite or PostgreSQL).
fn database_path(db: &DbArgs) -> Result<Database, CliError> {
    if let Some(p) = &db.database {
        return Ok(Database::Sqlite(p.clone()));
    }
    Config::load_operator(&db.config, false)
        .map(|c| c.database)
        .map_err(|e| CliError::Usage(e.to_string()))
}

/// Opens the database read-only (the daemon may be writing to it).
async fn open_store(db: &Database) -> Result<Store, CliError> {
    Store::open_database_read_only(db)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))
}

/// A session named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub provider: String,
    pub session: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider, self.session)
    }
}

impl Target {
    /// Resolves `arg` (`provider/session` or a plain session name) with an
    /// optional `--provider`. `known` are the `(provider, session)` pairs
    /// that exist (from the database or the config); `providers` the
    /// configured provider names. A plain name must match exactly one known
    /// session, or there must be only one provider.
    pub fn resolve(
        arg: &str,
        provider_flag: Option<&str>,
        known: &[(String, String)],
        providers: &[String],
    ) -> Result<Target, CliError> {
        let (provider, session) = match arg.split_once('/') {
            Some((p, s)) => (Some(p), s),
            None => (None, arg),
        };
        if session.is_empty() || provider == Some("") {
            return Err(CliError::Usage(format!(
                "{arg:?} is not a session; give provider/session or a session name"
            )));
        }
        let provider = match (provider, provider_flag) {
            (Some(a), Some(b)) if a != b => {
                return Err(CliError::Usage(format!(
                    "{arg:?} names provider {a:?} but --provider says {b:?}"
                )));
            }
            (Some(p), _) | (None, Some(p)) => Some(p.to_string()),
            (None, None) => None,
        };
        if let Some(provider) = provider {
            return Ok(Target {
                provider,
                session: session.to_string(),
            });
        }
        let matches: Vec<&String> = known
            .iter()
            .filter(|(_, s)| s == session)
            .map(|(p, _)| p)
            .collect();
        match (matches.as_slice(), providers) {
            ([p], _) => Ok(Target {
                provider: p.to_string(),
                session: session.to_string(),
            }),
            ([], [only]) => Ok(Target {
                provider: only.clone(),
                session: session.to_string(),
            }),
            ([], _) => Err(CliError::Usage(format!(
                "no session named {session:?} is known; give it as provider/session"
            ))),
            (many, _) => {
                let names: Vec<String> = many.iter().map(|p| format!("{p}/{session}")).collect();
                Err(CliError::Usage(format!(
                    "{session:?} is ambiguous: {}; give it as provider/session or with --provider",
                    names.join(", ")
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<(String, String)> {
        [
            ("waha", "s1"),
            ("waha", "dup"),
            ("other", "dup"),
            ("other", "x"),
        ]
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect()
    }

    fn t(p: &str, s: &str) -> Target {
        Target {
            provider: p.into(),
            session: s.into(),
        }
    }

    #[test]
    fn sessions_are_named_as_provider_slash_session_or_unambiguous_names() {
        let providers = vec!["waha".to_string(), "other".to_string()];
        let r = |arg: &str, flag: Option<&str>| Target::resolve(arg, flag, &known(), &providers);
        assert_eq!(r("s1", None).expect("plain"), t("waha", "s1"));
        assert_eq!(r("other/dup", None).expect("full"), t("other", "dup"));
        assert_eq!(r("dup", Some("waha")).expect("flag"), t("waha", "dup"));
        assert_eq!(
            r("waha/new", None).expect("unknown but explicit"),
            t("waha", "new")
        );
        let ambiguous = r("dup", None).expect_err("ambiguous").to_string();
        assert!(ambiguous.contains("waha/dup, other/dup"), "{ambiguous}");
        assert!(
            r("nope", None)
                .expect_err("unknown")
                .to_string()
                .contains("provider/session")
        );
        assert!(matches!(
            r("waha/s1", Some("other")),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(r("/s1", None), Err(CliError::Usage(_))));
        assert!(matches!(r("waha/", None), Err(CliError::Usage(_))));
        // One provider: any plain name is that provider's.
        let one = vec!["waha".to_string()];
        assert_eq!(
            Target::resolve("zz", None, &[], &one).expect("one"),
            t("waha", "zz")
        );
    }

    #[test]
    fn since_is_a_duration_or_a_time() {
        assert_eq!(
            parse_since("24h"),
            Ok(Since::Ago(Duration::from_secs(86400)))
        );
        assert_eq!(
            parse_since("1970-01-01T00:00:01Z"),
            Ok(Since::At(Timestamp::from_millis(1000)))
        );
        assert!(parse_since("yesterday").is_err());
        assert_eq!(
            Since::Ago(Duration::from_secs(1)).at(Timestamp::from_millis(5000)),
            Timestamp::from_millis(4000)
        );
    }
}
