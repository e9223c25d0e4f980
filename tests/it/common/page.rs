//! Helpers for the status page tests: reading session rows out of the HTML
//! (the server's or the DOM a browser built), and a session whose name is
//! markup.
//!
//! Why the hostile name goes into the store directly: the WAHA simulator
//! enforces WAHA's own session-name rule (letters, digits, `-`, `_`), so it
//! cannot list `<script>…`; but a provider, a proxy in front of it or an
//! older database can hold any name, and the page shows what the store
//! holds — which is what this checks.

use std::time::Duration;

use wa_watchdog::clock::Timestamp;
use wa_watchdog::store::{SessionRecord, Store};

pub const XSS: &str = "<script>alert(1)</script>";
pub const XSS_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

/// The `data-state` of a session's row on the fleet page, if it has one
/// (`session` as it appears in the HTML, i.e. escaped).
pub fn row_state(html: &str, session: &str) -> Option<String> {
    let marker = format!("data-session=\"{session}\" data-state=\"");
    let at = html.find(&marker)? + marker.len();
    let rest = &html[at..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Saves a healthy session named [`XSS`] at `provider`.
pub async fn save_hostile_session(store: &Store, provider: &str, now: Timestamp) {
    let mut rec = SessionRecord::new(provider, XSS, "healthy", now);
    rec.machine.reason = "<img src=x onerror=alert(2)>".into();
    rec.machine.last_success_at = Some(now);
    rec.machine.last_outcome = Some("delivered".into());
    rec.machine.last_probe_at = Some(now);
    rec.machine.healthy_since = Some(now);
    rec.next_probe_at = Some(now.plus(Duration::from_secs(60)));
    store
        .save_session(&rec)
        .await
        .expect("save the hostile session");
}
