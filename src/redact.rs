//! The one redaction path for secrets: every credential the daemon holds (a
//! WAHA API key, a Green-API token, the admin token, webhook secrets) is
//! registered here when it is created, and every text that leaves the
//! process — provider replies and transport errors as they are read, every
//! free-text column the store writes, every log line — passes [`redact`],
//! which replaces each registered value with `<redacted>`.
//!
//! Why a process-wide registry: the texts come from many places (a proxy
//! echoing `X-Api-Key` in an error page, a URL in a transport error, a panic
//! message) and must be cleaned at a few choke points that do not know which
//! provider they belong to. A new kind of secret needs only
//! [`crate::config::Secret::new`] (which registers) or [`register`].
//!
//! Values shorter than [`MIN_SECRET_CHARS`] are not registered: replacing
//! every `a` of every log line would make the logs useless, and such a value
//! is no secret anyway (the config warns about a short admin token).
//!
//! Must not: log, or keep anything but the values themselves.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::sync::RwLock;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// Shorter values are not treated as secrets (see the module docs).
pub const MIN_SECRET_CHARS: usize = 4;

/// The registered values, lower-cased (matching is ASCII case-insensitive:
/// proxies upper-case header values in some error pages).
static KNOWN: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Makes `secret` one of the values [`redact`] removes. Idempotent.
pub fn register(secret: &str) {
    if secret.chars().count() < MIN_SECRET_CHARS {
        return;
    }
    let lower = secret.to_ascii_lowercase();
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    if !known.contains(&lower) {
        known.insert(lower);
    }
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn redact(text: &str) -> String {
    let known = KNOWN.read().unwrap_or_else(|p| p.into_inner());
    if known.is_empty() {
        return text.to_string();
    }
    // Longest first, so a secret that contains another is removed whole.
    let mut secrets: Vec<&String> = known.iter().collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for secret in secrets {
        out = scrub(&out, secret);
    }
    out
}

/// `text` with every ASCII-case-insensitive occurrence of `secret` replaced
/// by [`REDACTED`].
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() || text.len() < secret.len() {
        return text.to_string();
    }
    let hay = text.to_ascii_lowercase();
    let needle = secret.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(pos) = hay[from..].find(&needle) {
        let start = from + pos;
        out.push_str(&text[last..start]);
        out.push_str(REDACTED);
        last = start + needle.len();
        from = last;
    }
    out.push_str(&text[last..]);
    out
}

/// A writer that redacts each write before passing it on (the tracing
/// formatter writes one whole line per call, so a secret is never split
/// across writes).
#[derive(Clone, Copy, Debug, Default)]
pub struct Redacting<W>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The log writer: stderr through [`Redacting`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RedactingStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = Redacting<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Redacting(io::stderr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_every_occurrence_case_insensitively() {
        assert_eq!(
            scrub("a SECRET b secret c", "secret"),
            "a <redacted> b <redacted> c"
        );
        assert_eq!(scrub("nothing here", "secret"), "nothing here");
        assert_eq!(scrub("é secret é", "secret"), "é <redacted> é");
        assert_eq!(scrub("short", ""), "short");
    }

    #[test]
    fn registered_secrets_are_redacted_longest_first_and_short_ones_ignored() {
        register("redact-test-key-0123");
        register("redact-test-key-0123-longer");
        register("abc");
        assert_eq!(
            redact("x redact-test-key-0123-longer y REDACT-TEST-KEY-0123 z abc"),
            "x <redacted> y <redacted> z abc"
        );
    }

    #[test]
    fn log_lines_are_redacted_on_their_way_out() {
        register("redact-test-log-secret");
        let mut w = Redacting(Vec::new());
        w.write_all(b"WARN cannot send: key=redact-test-log-secret\n")
            .expect("write");
        let out = String::from_utf8(w.0).expect("utf-8");
        assert_eq!(out, "WARN cannot send: key=<redacted>\n");
    }
}
