//! Logging: tracing-subscriber with text or JSON lines on stderr, filtered by
//! `RUST_LOG` (default `info`).
//!
//! Under journald (`JOURNAL_STREAM` set) or when stderr is not a terminal,
//! text lines have no colours and no timestamps of our own: the journal (or
//! whatever collects the stream) adds its own. JSON lines keep their
//! `timestamp` for log shippers reading a file, except under journald.
//! Every state change and remediation is one line whose fields carry
//! provider, session, from, to and reason (see `scheduler/apply.rs`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// How lines look, decided from the environment ([`Style::detect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours (text only).
    pub ansi: bool,
    /// Our own timestamp at the start of each line / in each JSON object.
    pub timestamp: bool,
}

impl Style {
    /// The style for `format` given whether `JOURNAL_STREAM` is set and
    /// whether stderr is a terminal.
    pub fn for_output(format: LogFormat, journald: bool, tty: bool) -> Style {
        match format {
            LogFormat::Text => {
                let plain = journald || !tty;
                Style {
                    ansi: !plain,
                    timestamp: !plain,
                }
            }
            LogFormat::Json => Style {
                ansi: false,
                timestamp: !journald,
            },
        }
    }

    /// The style for this process's stderr.
    pub fn detect(format: LogFormat) -> Style {
        let journald = std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty());
        Style::for_output(format, journald, std::io::stderr().is_terminal())
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls
/// are ignored), so tests and the demo can share it.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let style = Style::detect(format);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::redact::RedactingStderr)
        .with_target(false)
        .with_ansi(style.ansi);
    let result = match (format, style.timestamp) {
        (LogFormat::Json, true) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        (LogFormat::Json, false) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .without_time()
            .try_init(),
        (LogFormat::Text, true) => builder.try_init(),
        (LogFormat::Text, false) => builder.without_time().try_init(),
    };
    // An already-installed subscriber (tests, the demo) is fine.
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_under_journald_or_without_a_terminal() {
        let text = |journald, tty| Style::for_output(LogFormat::Text, journald, tty);
        let plain = Style {
            ansi: false,
            timestamp: false,
        };
        assert_eq!(text(true, true), plain);
        assert_eq!(text(true, false), plain);
        assert_eq!(text(false, false), plain);
        assert_eq!(
            text(false, true),
            Style {
                ansi: true,
                timestamp: true
            }
        );
        let json = |journald| Style::for_output(LogFormat::Json, journald, true);
        assert!(!json(true).ansi && !json(true).timestamp);
        assert!(!json(false).ansi && json(false).timestamp);
    }
}
