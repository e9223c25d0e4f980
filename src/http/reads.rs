//! The read routes of the JSON API (`GET /api/v1/sessions` and
//! `GET /api/v1/sessions/{provider}/{session}`): their JSON shapes, in the
//! contract's key order, and their handlers.
//!
//! What it owns: the shapes and the reads. What it must not do: lock or wait
//! on the scheduler (everything comes from the store), or show a retired
//! session as watched.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{HISTORY_LIMIT, HttpState, error};
use crate::clock::Timestamp;
use crate::store::{ProbeRecord, ProbeRollup, RemediationRecord, SessionRecord, TransitionRecord};

pub(super) fn rfc3339(t: Timestamp) -> String {
    t.to_rfc3339()
}

/// One session in `GET /api/v1/sessions` (the contract's keys, in order).
#[derive(Serialize)]
struct SessionJson {
    provider: String,
    session: String,
    state: String,
    since: String,
    consecutive_failures: u32,
    last_success: Option<String>,
    last_outcome: Option<String>,
    next_probe: Option<String>,
    /// On a shared store only: the replica holding the session's shard
    /// (`null`: none right now, a lease ran out and is not yet taken over).
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<Option<String>>,
}

impl From<&SessionRecord> for SessionJson {
    fn from(r: &SessionRecord) -> Self {
        SessionJson {
            provider: r.provider.clone(),
            session: r.session.clone(),
            state: r.machine.state.clone(),
            since: rfc3339(r.machine.since),
            consecutive_failures: r.machine.consecutive_failures,
            last_success: r.machine.last_success_at.map(rfc3339),
            last_outcome: r.machine.last_outcome.clone(),
            next_probe: r.next_probe_at.map(rfc3339),
            owner: None,
        }
    }
}

/// `GET /api/v1/sessions/{provider}/{session}`: the list entry plus why it
/// is in its state and its recent history, newest first.
#[derive(Serialize)]
struct SessionDetailJson {
    #[serde(flatten)]
    session: SessionJson,
    reason: String,
    /// On a shared store only: the replica answering. When it is not the
    /// `owner`, this is the shared store's copy, written by the owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    answered_by: Option<String>,
    transitions: Vec<TransitionJson>,
    probes: Vec<ProbeJson>,
    /// Delivered probes older than the last few, counted per bucket.
    probe_rollups: Vec<RollupJson>,
    remediations: Vec<RemediationJson>,
}

#[derive(Serialize)]
struct RollupJson {
    start: String,
    span_seconds: u64,
    outcome: String,
    probes: u64,
    latency_mean_ms: u64,
    latency_max_ms: u64,
}

impl From<ProbeRollup> for RollupJson {
    fn from(r: ProbeRollup) -> Self {
        RollupJson {
            start: rfc3339(r.start),
            span_seconds: r.span.as_secs(),
            latency_mean_ms: r.latency_sum_ms / r.probes.max(1),
            outcome: r.outcome,
            probes: r.probes,
            latency_max_ms: r.latency_max_ms,
        }
    }
}

#[derive(Serialize)]
struct TransitionJson {
    at: String,
    from: String,
    to: String,
    reason: String,
}

impl From<TransitionRecord> for TransitionJson {
    fn from(t: TransitionRecord) -> Self {
        TransitionJson {
            at: rfc3339(t.at),
            from: t.from_state,
            to: t.to_state,
            reason: t.reason,
        }
    }
}

#[derive(Serialize)]
struct ProbeJson {
    at: String,
    kind: String,
    outcome: String,
    http_status: Option<u16>,
    latency_ms: u64,
    detail: String,
}

impl From<ProbeRecord> for ProbeJson {
    fn from(p: ProbeRecord) -> Self {
        ProbeJson {
            at: rfc3339(p.at),
            kind: p.kind,
            outcome: p.outcome,
            http_status: p.http_status,
            latency_ms: p.latency_ms,
            detail: p.detail,
        }
    }
}

#[derive(Serialize)]
struct RemediationJson {
    id: i64,
    started_at: String,
    action: String,
    reason: String,
    result: String,
    detail: String,
    finished_at: Option<String>,
    duration_ms: Option<u64>,
    recovery_ms: Option<u64>,
}

impl From<RemediationRecord> for RemediationJson {
    fn from(r: RemediationRecord) -> Self {
        RemediationJson {
            id: r.id,
            started_at: rfc3339(r.started_at),
            action: r.action,
            reason: r.reason,
            result: r.result,
            detail: r.detail,
            finished_at: r.finished_at.map(rfc3339),
            duration_ms: r.duration_ms,
            recovery_ms: r.recovery_ms,
        }
    }
}

fn store_error(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "http: cannot read {what} from the store");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot read {what} from the store: {e}"),
    )
}

/// Who holds each shard (empty without replicas), or the response to send.
async fn owners(s: &HttpState) -> Result<Vec<Option<String>>, Response> {
    if s.replica.is_none() {
        return Ok(Vec::new());
    }
    s.store
        .lease_owners()
        .await
        .map_err(|e| store_error("the leases", e))
}

/// The owner entry of a session from `owners` (`None` without replicas).
fn owner_in(owners: &[Option<String>], provider: &str, session: &str) -> Option<Option<String>> {
    let shard = crate::lease::shard_of(provider, session) as usize;
    owners.get(shard).cloned()
}

/// For an admin command: the session's active record when this replica
/// watches it (always without replicas); else 421 naming the replica that
/// does, or 503 when no replica holds its shard right now (a lease ran out
/// and the takeover is due within a lease round).
pub(super) async fn owned_session(
    s: &HttpState,
    provider: &str,
    session: &str,
) -> Result<SessionRecord, Response> {
    let rec = active_session(s, provider, session).await?;
    let Some(me) = &s.replica else {
        return Ok(rec);
    };
    match owner_in(&owners(s).await?, provider, session) {
        Some(Some(owner)) if &owner == me => Ok(rec),
        Some(Some(owner)) => Err(error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "session \"{session}\" at provider \"{provider}\" is watched by replica \"{owner}\", not \"{me}\": send the command to it"
            ),
        )),
        _ => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no replica holds the shard of session \"{session}\" at provider \"{provider}\" right now; try again after the next lease round"
            ),
        )),
    }
}

fn unknown_session(provider: &str, session: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no watched session \"{session}\" at provider \"{provider}\""),
    )
}

/// Sessions per page of `GET /api/v1/sessions` unless `limit` says otherwise.
pub const PAGE_DEFAULT: u32 = 500;
/// The largest `limit` accepted.
pub const PAGE_MAX: u32 = 5000;

/// The query of `GET /api/v1/sessions`, checked.
#[derive(Debug, Default, PartialEq)]
struct ListQuery {
    provider: Option<String>,
    state: Option<String>,
    limit: u32,
    after: Option<(String, String)>,
}

/// `provider=&state=&limit=&cursor=`; anything else, a state that does not
/// exist, a limit out of `1..=PAGE_MAX` or a cursor this daemon did not hand
/// out is an error naming the parameter.
fn list_query(pairs: &[(String, String)]) -> Result<ListQuery, String> {
    let mut q = ListQuery {
        limit: PAGE_DEFAULT,
        ..ListQuery::default()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "provider" => q.provider = Some(v.clone()),
            "state" => {
                v.parse::<crate::machine::State>()
                    .map_err(|_| format!("state: unknown state {v:?}"))?;
                q.state = Some(v.clone());
            }
            "limit" => {
                q.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=PAGE_MAX).contains(n))
                    .ok_or_else(|| {
                        format!("limit: {v:?} is not a whole number from 1 to {PAGE_MAX}")
                    })?;
            }
            "cursor" => {
                q.after = Some(
                    decode_cursor(v)
                        .ok_or_else(|| "cursor: not a cursor from a previous page".to_string())?,
                );
            }
            other => {
                return Err(format!(
                    "unknown query parameter {other:?} (known: provider, state, limit, cursor)"
                ));
            }
        }
    }
    Ok(q)
}

/// The opaque cursor after `(provider, session)`: hex of `provider NUL session`.
fn encode_cursor(provider: &str, session: &str) -> String {
    let mut out = String::with_capacity(2 * (provider.len() + session.len() + 1));
    for b in provider
        .bytes()
        .chain(std::iter::once(0))
        .chain(session.bytes())
    {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn decode_cursor(cursor: &str) -> Option<(String, String)> {
    if cursor.len() % 2 != 0 || cursor.len() > 4096 {
        return None;
    }
    let bytes: Vec<u8> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let text = String::from_utf8(bytes).ok()?;
    let (provider, session) = text.split_once('\0')?;
    Some((provider.to_string(), session.to_string()))
}

/// `GET /api/v1/sessions`: one page, in provider and session order. The
/// body is the array of sessions; when there are more, the `X-Next-Cursor`
/// header holds the `cursor` of the next page (and `Link` its URL).
pub(super) async fn list_sessions(
    State(s): State<Arc<HttpState>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad query string: {e}")),
    };
    let q = match list_query(&pairs) {
        Ok(q) => q,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let after = q.after.as_ref().map(|(p, s)| (p.as_str(), s.as_str()));
    // One more than asked: whether there is a next page.
    let rows = match s
        .store
        .sessions_page(
            q.provider.as_deref(),
            q.state.as_deref(),
            after,
            q.limit + 1,
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return store_error("sessions", e),
    };
    let more = rows.len() > q.limit as usize;
    let page = &rows[..rows.len().min(q.limit as usize)];
    let owners = match owners(&s).await {
        Ok(o) => o,
        Err(response) => return response,
    };
    let body: Vec<SessionJson> = page
        .iter()
        .map(|r| SessionJson {
            owner: owner_in(&owners, &r.provider, &r.session),
            ..SessionJson::from(r)
        })
        .collect();
    let mut response = axum::Json(body).into_response();
    if let (true, Some(last)) = (more, page.last()) {
        let cursor = encode_cursor(&last.provider, &last.session);
        let mut next = format!("/api/v1/sessions?limit={}&cursor={cursor}", q.limit);
        for (k, v) in [("provider", &q.provider), ("state", &q.state)] {
            if let Some(v) = v {
                let v: String = url_component(v);
                next.push_str(&format!("&{k}={v}"));
            }
        }
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&cursor) {
            headers.insert("x-next-cursor", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            headers.insert(axum::http::header::LINK, v);
        }
    }
    response
}

/// `s` percent-encoded for a query string (unreserved characters kept).
fn url_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The active (not retired) record of one session, or the response to send.
pub(super) async fn active_session(
    s: &HttpState,
    provider: &str,
    session: &str,
) -> Result<SessionRecord, Response> {
    match s.store.session(provider, session).await {
        Ok(Some(r)) if r.retired_at.is_none() => Ok(r),
        Ok(_) => Err(unknown_session(provider, session)),
        Err(e) => Err(store_error("the session", e)),
    }
}

pub(super) async fn one_session(
    State(s): State<Arc<HttpState>>,
    Path((provider, session)): Path<(String, String)>,
) -> Response {
    let rec = match active_session(&s, &provider, &session).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let owners = match owners(&s).await {
        Ok(o) => o,
        Err(response) => return response,
    };
    let (transitions, probes, rollups, remediations) = tokio::join!(
        s.store
            .recent_transitions(&provider, &session, None, HISTORY_LIMIT),
        s.store
            .recent_probes(&provider, &session, None, HISTORY_LIMIT),
        s.store
            .probe_rollups(&provider, &session, None, HISTORY_LIMIT),
        s.store
            .recent_remediations(&provider, &session, None, HISTORY_LIMIT),
    );
    let (transitions, probes, rollups, remediations) =
        match (transitions, probes, rollups, remediations) {
            (Ok(t), Ok(p), Ok(u), Ok(r)) => (t, p, u, r),
            (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
                return store_error("the session's history", e);
            }
        };
    axum::Json(SessionDetailJson {
        session: SessionJson {
            owner: owner_in(&owners, &provider, &session),
            ..SessionJson::from(&rec)
        },
        answered_by: s.replica.clone(),
        reason: rec.machine.reason,
        transitions: transitions.into_iter().map(Into::into).collect(),
        probes: probes.into_iter().map(Into::into).collect(),
        probe_rollups: rollups.into_iter().map(Into::into).collect(),
        remediations: remediations.into_iter().map(Into::into).collect(),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<ListQuery, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        list_query(&pairs)
    }

    #[test]
    fn the_list_query_is_checked_and_errors_name_the_parameter() {
        assert_eq!(q(&[]).map(|q| q.limit), Ok(PAGE_DEFAULT));
        let ok = q(&[("provider", "waha"), ("state", "healthy"), ("limit", "10")]).expect("ok");
        assert_eq!(ok.provider.as_deref(), Some("waha"));
        assert_eq!(ok.state.as_deref(), Some("healthy"));
        assert_eq!(ok.limit, 10);
        #[rustfmt::skip]
        let bad = [
            (("state", "sleepy"), "state:"),
            (("limit", "0"), "limit:"),
            (("limit", "5001"), "limit:"),
            (("limit", "ten"), "limit:"),
            (("cursor", "zz"), "cursor:"),
            (("cursor", "abc"), "cursor:"),
            (("cursor", "6869"), "cursor:"), // no NUL: not ours
            (("page", "2"), "\"page\""),
        ];
        for ((k, v), want) in bad {
            let e = q(&[(k, v)]).expect_err(k);
            assert!(e.contains(want), "{k}={v}: {e}");
        }
    }

    #[test]
    fn cursors_round_trip_any_names() {
        for (p, s) in [("waha", "default"), ("a/b", "x y&z=1"), ("ü", "")] {
            let c = encode_cursor(p, s);
            assert_eq!(decode_cursor(&c), Some((p.to_string(), s.to_string())));
        }
    }
}
