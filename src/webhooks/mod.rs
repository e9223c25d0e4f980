//! Webhooks: what WAHA and Green-API push, heard as passive signals.
//!
//! A webhook can conclude a canary the watchdog sent (matched by message id),
//! ask for a probe at once (a status change), or move a session to
//! needs-pairing (WAHA `SCAN_QR_CODE` / `PASSKEY_*`, Green-API
//! `notAuthorized`, a `{{SWE003}}` marker). It can never start a restart: a
//! restart always needs the watchdog's own failed canaries, so a forged or
//! replayed event cannot restart anything.
//!
//! Code map: `auth` (WAHA HMAC-SHA512, Green-API token; constant time),
//! `parse` (bodies into typed [`Event`]s), `replay` (timestamp window and
//! the bounded window of ids seen), `rules` (what each event may do; pure), all
//! pure and table-tested; `receiver` (the checks of one request in order,
//! the bounded queue into the scheduler). the HTTP layer routes
//! `POST /webhooks/{provider}` here and the scheduler applies the effects.

pub mod auth;
pub mod parse;
pub mod receiver;
pub mod replay;
pub mod rules;

pub use parse::{Body, Event, Marker};
pub use receiver::{Queued, Receiver, Reply, Request};
pub use rules::{Effect, Evidence};

#[cfg(test)]
mod tests;
