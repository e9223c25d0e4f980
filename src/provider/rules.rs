//! The classification engine every provider's table runs on: a table is a
//! slice of rows, each naming the calls it covers, the status [`Codes`], a
//! body matcher and a verdict; the first row that matches a reply decides.
//! Providers differ only in their call set, body matchers and verdicts (the
//! types a [`Row`] names), so a new provider writes a table, not a loop.
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

/// One row of a provider's classification table.
pub trait Row {
    /// The closed set of requests the provider's client makes.
    type Call: Copy;
    /// What the body must show (the provider's matcher).
    type Body: Copy;
    /// What a match means.
    type Verdict: Copy;

    fn name(&self) -> &'static str;
    /// Whether this row applies to replies to `call`.
    fn covers(&self, call: Self::Call) -> bool;
    fn codes(&self) -> Codes;
    fn body(&self) -> Self::Body;
    fn verdict(&self) -> Self::Verdict;
}

/// The first row of `table` that covers `call`, the reply's status and its
/// body (`body_matches` is the provider's matcher, bound to the parsed body).
pub fn first_match<'t, R: Row>(
    table: &'t [R],
    call: R::Call,
    reply: &Reply,
    body_matches: impl Fn(R::Body) -> bool,
) -> Option<&'t R> {
    table
        .iter()
        .find(|r| r.covers(call) && r.codes().covers(reply.status) && body_matches(r.body()))
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

    #[derive(Clone, Copy)]
    struct R(&'static str, Option<u8>, Codes, bool);

    impl Row for R {
        type Call = u8;
        type Body = bool;
        type Verdict = ();
        fn name(&self) -> &'static str {
            self.0
        }
        fn covers(&self, call: u8) -> bool {
            self.1.is_none_or(|c| c == call)
        }
        fn codes(&self) -> Codes {
            self.2
        }
        fn body(&self) -> bool {
            self.3
        }
        fn verdict(&self) {}
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
            R("send 2xx", Some(1), Codes::Range(200, 299), true),
            R("body refuses", None, Codes::One(500), false),
            R("500", None, Codes::One(500), true),
            R("any", None, Codes::Range(0, 999), true),
        ];
        let name = |call, status| first_match(&table, call, &reply(status), |b| b).map(Row::name);
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
            first_match(&table[..1], 2, &reply(200), |b| b).map(Row::name),
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
