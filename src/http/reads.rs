//! The read routes of the JSON API (`GET /api/v1/sessions` and
//! `GET /api/v1/sessions/{provider}/{session}`): their JSON shapes, in the
//! contract's key order, and their handlers.
//!
//! What it owns: the shapes and the reads. What it must not do: lock or wait
//! on the scheduler (everything comes from the store), or show a retired
//! session as watched.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{HISTORY_LIMIT, HttpState, error};
use crate::clock::Timestamp;
use crate::store::{ProbeRecord, RemediationRecord, SessionRecord, TransitionRecord};

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
}

impl From<&SessionRecord> for SessionJson {
    fn from(r: &SessionRecord) -> Self {
        SessionJson {
            provider: r.provider.clone(),
            session: r.session.clone(),
            state: r.state.clone(),
            since: rfc3339(r.since),
            consecutive_failures: r.consecutive_failures,
            last_success: r.last_success_at.map(rfc3339),
            last_outcome: r.last_outcome.clone(),
            next_probe: r.next_probe_at.map(rfc3339),
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
    transitions: Vec<TransitionJson>,
    probes: Vec<ProbeJson>,
    remediations: Vec<RemediationJson>,
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

fn unknown_session(provider: &str, session: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no watched session \"{session}\" at provider \"{provider}\""),
    )
}

pub(super) async fn list_sessions(State(s): State<Arc<HttpState>>) -> Response {
    match s.store.list_sessions(false).await {
        Ok(rows) => {
            axum::Json(rows.iter().map(SessionJson::from).collect::<Vec<_>>()).into_response()
        }
        Err(e) => store_error("sessions", e),
    }
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
    let (transitions, probes, remediations) = tokio::join!(
        s.store
            .recent_transitions(&provider, &session, None, HISTORY_LIMIT),
        s.store
            .recent_probes(&provider, &session, None, HISTORY_LIMIT),
        s.store
            .recent_remediations(&provider, &session, None, HISTORY_LIMIT),
    );
    let (transitions, probes, remediations) = match (transitions, probes, remediations) {
        (Ok(t), Ok(p), Ok(r)) => (t, p, r),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return store_error("the session's history", e);
        }
    };
    axum::Json(SessionDetailJson {
        session: SessionJson::from(&rec),
        reason: rec.state_reason,
        transitions: transitions.into_iter().map(Into::into).collect(),
        probes: probes.into_iter().map(Into::into).collect(),
        remediations: remediations.into_iter().map(Into::into).collect(),
    })
    .into_response()
}
