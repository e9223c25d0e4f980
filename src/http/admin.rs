//! The admin routes (`POST .../pause`, `.../resume`, `.../restart`): their
//! input, checked and bounded, and the scheduler's answer as JSON. The
//! bearer-token gate in front of them is the parent module's.
//!
//! What it owns: parsing the pause's `for` and `reason` (query string or
//! body), and turning a [`Command`] result into 200, 409 or 503. What it
//! must not do: change a session itself (the scheduler does, through
//! [`Handle::command`](crate::scheduler::Handle::command)), or echo the token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::reads::{owned_session, rfc3339};
use super::{HttpState, error, too_large};
use crate::config::MAX_DURATION;
use crate::scheduler::Command;
use crate::scheduler::CommandError;

/// `?for=2h`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PauseQuery {
    #[serde(rename = "for")]
    duration: Option<String>,
    reason: Option<String>,
}

/// `{"for": "2h", "reason": "..."}`; both optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    #[serde(rename = "for")]
    duration: Option<String>,
    reason: Option<String>,
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// Parses the pause duration: positive, humantime, at most ten years. The
/// error is the message of the 400.
fn pause_duration(text: &str, source: &str) -> Result<Duration, String> {
    let invalid = |why: String| {
        format!(
            "invalid \"for\" in the {source}: {why} (expected a duration such as \"30m\" or \"2h\")"
        )
    };
    let d = humantime::parse_duration(text.trim()).map_err(|e| invalid(e.to_string()))?;
    if d.is_zero() {
        return Err(invalid("must be longer than zero".into()));
    }
    if d > MAX_DURATION {
        return Err(invalid("longer than ten years".into()));
    }
    Ok(d)
}

pub(super) async fn pause(
    State(s): State<Arc<HttpState>>,
    Path((provider, session)): Path<(String, String)>,
    query: Result<Query<PauseQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return bad_request(format!("invalid query string: {}", e.body_text())),
    };
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(),
        Err(e) => {
            return error(
                e.status(),
                format!("cannot read the body: {}", e.body_text()),
            );
        }
    };
    let body: PauseBody = if body.iter().all(u8::is_ascii_whitespace) {
        PauseBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return bad_request(format!(
                    "invalid JSON body: {e} (expected {{\"for\": \"2h\", \"reason\": \"...\"}}, both optional)"
                ));
            }
        }
    };
    let duration = match (query.duration, body.duration) {
        (Some(_), Some(_)) => {
            return bad_request("give \"for\" in the query string or in the body, not both");
        }
        (Some(q), None) => match pause_duration(&q, "query string") {
            Ok(d) => Some(d),
            Err(why) => return bad_request(why),
        },
        (None, Some(b)) => match pause_duration(&b, "body") {
            Ok(d) => Some(d),
            Err(why) => return bad_request(why),
        },
        (None, None) => None,
    };
    let reason = body
        .reason
        .or(query.reason)
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "paused by an operator through the HTTP API".to_string());
    if let Err(r) = owned_session(&s, &provider, &session).await {
        return r;
    }
    let until = duration.map(|d| s.clock.now().plus(d));
    let cmd = Command::Pause {
        provider: provider.clone(),
        session: session.clone(),
        until,
        reason: reason.clone(),
    };
    tracing::info!(%provider, %session, until = ?until, %reason, "admin API: pause");
    run_command(&s, cmd, &provider, &session, "pause", |body| {
        body["until"] = json!(until.map(rfc3339));
        body["reason"] = json!(reason);
    })
    .await
}

pub(super) async fn resume(
    State(s): State<Arc<HttpState>>,
    Path((provider, session)): Path<(String, String)>,
) -> Response {
    if let Err(r) = owned_session(&s, &provider, &session).await {
        return r;
    }
    tracing::info!(%provider, %session, "admin API: resume");
    let cmd = Command::Resume {
        provider: provider.clone(),
        session: session.clone(),
    };
    run_command(&s, cmd, &provider, &session, "resume", |_| {}).await
}

pub(super) async fn restart(
    State(s): State<Arc<HttpState>>,
    Path((provider, session)): Path<(String, String)>,
) -> Response {
    if let Err(r) = owned_session(&s, &provider, &session).await {
        return r;
    }
    tracing::info!(%provider, %session, "admin API: restart");
    let cmd = Command::Restart {
        provider: provider.clone(),
        session: session.clone(),
    };
    run_command(&s, cmd, &provider, &session, "restart", |_| {}).await
}

/// Sends `cmd` and answers 200 `{"ok": true, ...}`, 409 with the scheduler's
/// reason when it refuses, or 503 when it is not running.
async fn run_command(
    s: &HttpState,
    cmd: Command,
    provider: &str,
    session: &str,
    action: &str,
    extra: impl FnOnce(&mut serde_json::Value),
) -> Response {
    match s.handle.command(cmd).await {
        Ok(()) => {
            let mut body = json!({
                "ok": true,
                "provider": provider,
                "session": session,
                "action": action,
            });
            extra(&mut body);
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(CommandError::Refused(why)) => {
            tracing::info!(%provider, %session, action, reason = %why, "admin API: refused");
            error(StatusCode::CONFLICT, why.to_string())
        }
        Err(e @ CommandError::NotRunning) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_durations_are_humantime_positive_and_bounded() {
        assert_eq!(
            pause_duration("2h", "query string").ok(),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            pause_duration(" 90s ", "body").ok(),
            Some(Duration::from_secs(90))
        );
        for bad in ["", "soon", "0s", "-1h", "20000y", "2 parsecs"] {
            assert!(pause_duration(bad, "query string").is_err(), "{bad:?}");
        }
    }
}
