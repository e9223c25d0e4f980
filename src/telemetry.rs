//! Logging: tracing-subscriber with text or JSON lines, filtered by
//! `RUST_LOG` (default `info`). Under journald (`JOURNAL_STREAM` set) or
//! when stderr is not a terminal there are no colours and no timestamps of
//! our own: the journal adds its own.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls
/// are ignored), so tests and the demo can share it.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let tty = std::io::stderr().is_terminal();
    let plain = journald || !tty;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text if plain => builder.with_ansi(false).without_time().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // An already-installed subscriber (tests, the demo) is fine.
    let _ = result;
}
