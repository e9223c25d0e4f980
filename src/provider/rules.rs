//! The classification engine every provider's table runs on: a table is a
//! slice of rows, each naming the calls it covers, the status [`Codes`], a
//! body matcher and a verdict; the first row that matches a reply decides.
//! Providers differ only in their call set, body matchers and verdicts (the
//! types a [`Rule`] is generic over), so a new provider writes a table, not a
//! loop.
//!
//! Owns: the matching order and the status-code rule. Must not: know a
//! provider's JSON (the provider's body matcher does).

use super::http::{self, Reply};
use crate::outcome::Outcome;

/// Status codes a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codes {
    One(u16),
    /// Inclusive.
    Range(u16, u16),
}

impl Codes {
    pub fn covers(self, status: u16) -> bool {
        match self {
            Codes::One(c) => status == c,
            Codes::Range(lo, hi) => (lo..=hi).contains(&status),
        }
    }
}

/// One row of a provider's classification table: the calls it covers
/// (`S`, e.g. `Option<Call>` = one call or all), the status codes, what the
/// body must show (`B`, the provider's matcher), what a match means (`V`)
/// and anything else the provider's rows say (`X`: Green-API's retry advice).
#[derive(Clone, Copy, Debug)]
pub struct Rule<S, B, V, X = ()> {
    pub name: &'static str,
    pub scope: S,
    pub codes: Codes,
    pub body: B,
    pub verdict: V,
    pub extra: X,
}

/// Which calls a row covers.
pub trait Scope<C> {
    fn covers(&self, call: C) -> bool;
}

/// `None`: every call; `Some(c)`: only `c`.
impl<C: PartialEq + Copy> Scope<C> for Option<C> {
    fn covers(&self, call: C) -> bool {
        self.is_none_or(|c| c == call)
    }
}

/// The first row of `table` that covers `call`, the reply's status and its
/// body (`body_matches` is the provider's matcher, bound to the parsed body).
pub fn first_match<'t, C: Copy, S: Scope<C>, B: Copy, V, X>(
    table: &'t [Rule<S, B, V, X>],
    call: C,
    reply: &Reply,
    body_matches: impl Fn(B) -> bool,
) -> Option<&'t Rule<S, B, V, X>> {
    table
        .iter()
        .find(|r| r.scope.covers(call) && r.codes.covers(reply.status) && body_matches(r.body))
}

/// The classification of one reply: the row that matched and its meaning.
#[derive(Clone, Debug, PartialEq)]
pub struct Classified<X = ()> {
    pub rule: &'static str,
    /// None for a success to read further.
    pub outcome: Option<Outcome>,
    /// Short, one line (a provider's client scrubs secrets a proxy echoed).
    pub detail: String,
    /// What else the row said (Green-API: the vendor's retry advice).
    pub extra: X,
}

/// The name a reply gets when no row matches (every table ends with a
/// catch-all row of that name, so this is only a fallback).
pub const UNEXPECTED: &str = "unexpected status";

/// The outcome of the verdicts every provider shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Common {
    Is(Outcome),
    /// 429, with the `Retry-After` header if any.
    RateLimited,
    /// A successful answer to read further (no outcome).
    Success,
}

impl Common {
    /// `None` for [`Common::Success`].
    pub fn outcome(self, reply: &Reply) -> Option<Outcome> {
        match self {
            Common::Is(o) => Some(o),
            Common::RateLimited => Some(Outcome::RateLimited {
                retry_after: reply.retry_after,
            }),
            Common::Success => None,
        }
    }
}

/// A short description of a reply from the most telling message a provider
/// found in it (`message`; `suffix` is appended): never the whole body,
/// which may echo the request. `preview` caps the raw body shown when it is
/// not JSON; `not_json` prefixes it.
pub fn describe(
    reply: &Reply,
    is_json: bool,
    message: Option<String>,
    suffix: &str,
    not_json: &str,
    preview: usize,
) -> String {
    match message {
        Some(m) => http::short(&format!("HTTP {}: {m}{suffix}", reply.status)),
        None if reply.body.trim().is_empty() => format!("HTTP {} with an empty body", reply.status),
        None if !is_json => http::short(&format!(
            "HTTP {}: {not_json}{}",
            reply.status,
            reply.body.chars().take(preview).collect::<String>()
        )),
        None => format!("HTTP {}", reply.status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(
        name: &'static str,
        scope: Option<u8>,
        codes: Codes,
        body: bool,
    ) -> Rule<Option<u8>, bool, ()> {
        Rule {
            name,
            scope,
            codes,
            body,
            verdict: (),
            extra: (),
        }
    }

    fn reply(status: u16) -> Reply {
        Reply {
            status,
            body: String::new(),
            retry_after: None,
            truncated: false,
        }
    }

    #[test]
    fn the_first_row_covering_call_status_and_body_wins() {
        let table = [
            r("send 2xx", Some(1), Codes::Range(200, 299), true),
            r("body refuses", None, Codes::One(500), false),
            r("500", None, Codes::One(500), true),
            r("any", None, Codes::Range(0, 999), true),
        ];
        let name = |call, status| first_match(&table, call, &reply(status), |b| b).map(|r| r.name);
        assert_eq!(name(1, 200), Some("send 2xx"));
        assert_eq!(name(1, 299), Some("send 2xx"));
        assert_eq!(name(2, 200), Some("any"), "another call skips the send row");
        assert_eq!(
            name(1, 500),
            Some("500"),
            "a failing body matcher skips its row"
        );
        assert_eq!(name(2, 300), Some("any"));
        assert_eq!(
            first_match(&table[..1], 2, &reply(200), |b| b).map(|r| r.name),
            None
        );
    }

    #[test]
    fn common_verdicts() {
        let mut r = reply(429);
        r.retry_after = Some(std::time::Duration::from_secs(3));
        assert_eq!(
            Common::RateLimited.outcome(&r),
            Some(Outcome::RateLimited {
                retry_after: Some(std::time::Duration::from_secs(3))
            })
        );
        assert_eq!(Common::Success.outcome(&r), None);
        assert_eq!(
            Common::Is(Outcome::Desync).outcome(&r),
            Some(Outcome::Desync)
        );
    }
}
