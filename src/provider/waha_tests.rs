//! The classification table row by row, with bodies recorded from real WAHA
//! servers (WAHA 2024.10.8 Core, NOWEB) and the WAHA issue #2084 report.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;
use crate::provider::NotReadyKind;
use crate::provider::http::Reply;

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        body: body.to_string(),
        truncated: false,
        retry_after: None,
    }
}

const DESYNC_2084: &str = r#"{"statusCode":500,"timestamp":"2026-05-18T22:20:44.455Z","exception":{"message":"2 UNKNOWN: server returned error 400","code":2,"details":"server returned error 400","metadata":{},"name":"Error"},"request":{"path":"/api/sendText","method":"POST","body":{"chatId":"5511999990001@c.us","text":"...","session":"example_session_001"}},"version":{"version":"2026.4.2","engine":"GOWS","tier":"PLUS","worker":{"id":"waha_gowdy"}}}"#;
const GRPC_403: &str = r#"{"statusCode":500,"exception":{"message":"2 UNKNOWN: server returned error 403","code":2,"details":"server returned error 403","metadata":[],"name":"Error"}}"#;
const GRPC_463: &str = r#"{"statusCode":500,"exception":{"message":"2 UNKNOWN: server returned error 463","code":2,"details":"server returned error 463","metadata":{},"name":"Error"}}"#;
const NOT_WORKING: &str = r#"{"error":"Session status is not as expected. Try again later or restart the session","session":"default","status":"STARTING","expected":["WORKING"]}"#;
const SCAN_QR: &str = r#"{"error":"Session status is not as expected. Try again later or restart the session","session":"default","status":"SCAN_QR_CODE","expected":["WORKING"]}"#;
const DOES_NOT_EXIST: &str = r#"{"error":"Session \"nosuch\" does not exist","session":"nosuch"}"#;
const NAME_REQUIRED: &str = r#"{"error":"Session name is required","session":null}"#;
const NOT_FOUND: &str = r#"{"statusCode":404,"message":"Session not found","error":"Not Found"}"#;
const NOT_FOUND_2024: &str = "{\"statusCode\":404,\"message\":\"We didn't find a session with name 'default'.\\nPlease start it first by using POST /api/sessions/default/start request\",\"error\":\"Not Found\"}";
const UNAUTHORIZED: &str = r#"{"message":"Unauthorized","statusCode":401}"#;
const GOWS_SENT: &str =
    r#"{"id":"true_5511999990001@c.us_3EB0C767D097B7C7C030","_data":{"Info":{"IsFromMe":true}}}"#;
const NOWEB_SENT: &str = r#"{"key":{"remoteJid":"5511999990001@s.whatsapp.net","fromMe":true,"id":"3EB0ABCDEF"},"message":{"extendedTextMessage":{"text":"hi"}},"messageTimestamp":"1700000000","status":"PENDING"}"#;
const WEBJS_SENT: &str = r#"{"id":{"fromMe":true,"remote":"5511999990001@c.us","id":"3EB0AA","_serialized":"true_5511999990001@c.us_3EB0AA"},"ack":0,"body":"hi"}"#;
const VALIDATION_400: &str =
    r#"{"statusCode":400,"message":["start must be a boolean value"],"error":"Bad Request"}"#;
const SESSION_INFO: &str = r#"{"name":"default","status":"WORKING","config":null,"me":{"id":"15550000001@c.us","pushName":"WAHA"},"engine":{"engine":"GOWS"}}"#;

fn sigs() -> Vec<String> {
    vec!["server returned error 400".to_string()]
}

/// (call, status, body, expected rule, expected outcome)
fn cases() -> Vec<(Call, u16, &'static str, &'static str, Option<Outcome>)> {
    use Outcome::*;
    vec![
        (Call::Send, 201, GOWS_SENT, "send accepted", Some(Delivered)),
        (
            Call::Send,
            201,
            NOWEB_SENT,
            "send accepted",
            Some(Delivered),
        ),
        (
            Call::Send,
            201,
            WEBJS_SENT,
            "send accepted",
            Some(Delivered),
        ),
        (
            Call::Send,
            201,
            "<html>ok</html>",
            "send accepted without a JSON body",
            Some(BadReply),
        ),
        (Call::Status, 200, SESSION_INFO, "status read", None),
        (
            Call::Status,
            200,
            "",
            "status reply is not JSON",
            Some(BadReply),
        ),
        (Call::Restart, 201, SESSION_INFO, "restart accepted", None),
        (Call::Restart, 201, "", "restart accepted", None),
        (
            Call::Send,
            500,
            DESYNC_2084,
            "desync signature (#2084)",
            Some(Desync),
        ),
        (
            Call::Send,
            502,
            "Bad Gateway",
            "gateway or proxy error",
            Some(Unreachable),
        ),
        (
            Call::Status,
            503,
            "",
            "gateway or proxy error",
            Some(Unreachable),
        ),
        (
            Call::Restart,
            504,
            "",
            "gateway or proxy error",
            Some(Unreachable),
        ),
        (
            Call::Send,
            500,
            GRPC_403,
            "WhatsApp refused the send (403)",
            Some(SendRefused),
        ),
        (
            Call::Send,
            500,
            GRPC_463,
            "reachout timelock (463)",
            Some(ReachoutTimelock),
        ),
        (
            Call::Send,
            500,
            "Internal Server Error",
            "server error on send",
            Some(SendFailed),
        ),
        (
            Call::Send,
            501,
            "{}",
            "server error on send",
            Some(SendFailed),
        ),
        (Call::Status, 500, "{}", "server error", Some(Unreachable)),
        (Call::Restart, 500, "{}", "server error", Some(Unreachable)),
        (
            Call::Send,
            422,
            NOT_WORKING,
            "session not working",
            Some(NotReady(NotReadyKind::Starting)),
        ),
        (
            Call::Send,
            422,
            SCAN_QR,
            "session not working",
            Some(NeedsPairing),
        ),
        (
            Call::Send,
            422,
            DOES_NOT_EXIST,
            "session does not exist (422)",
            Some(SessionMissing),
        ),
        (
            Call::Status,
            404,
            NOT_FOUND,
            "session not found (404)",
            Some(SessionMissing),
        ),
        (
            Call::Send,
            404,
            NOT_FOUND_2024,
            "session not found (404)",
            Some(SessionMissing),
        ),
        (
            Call::Restart,
            404,
            NOT_FOUND,
            "session not found (404)",
            Some(SessionMissing),
        ),
        (
            Call::Send,
            401,
            UNAUTHORIZED,
            "api key rejected (401)",
            Some(AuthRejected),
        ),
        (
            Call::Status,
            401,
            UNAUTHORIZED,
            "api key rejected (401)",
            Some(AuthRejected),
        ),
        (
            Call::Send,
            403,
            r#"{"message":"Forbidden resource","statusCode":403}"#,
            "api key not permitted (403)",
            Some(AuthRejected),
        ),
        (
            Call::Send,
            429,
            "",
            "rate limited",
            Some(RateLimited { retry_after: None }),
        ),
        (
            Call::Send,
            422,
            NAME_REQUIRED,
            "request rejected",
            Some(BadRequest),
        ),
        (
            Call::Send,
            400,
            VALIDATION_400,
            "request rejected",
            Some(BadRequest),
        ),
        (Call::Send, 302, "", "unexpected status", Some(SendFailed)),
    ]
}

#[test]
fn every_row_classifies_its_recorded_reply() {
    for (call, status, body, rule, outcome) in cases() {
        let c = classify(call, &reply(status, body), &sigs());
        assert_eq!(c.rule, rule, "{call:?} {status} {body}");
        assert_eq!(c.outcome, outcome, "{call:?} {status} {body}");
        assert!(!c.detail.is_empty());
        assert!(c.detail.chars().count() <= crate::provider::http::MAX_DETAIL_CHARS);
    }
}

#[test]
fn every_row_is_covered_by_a_case() {
    let covered: BTreeSet<&str> = cases().iter().map(|c| c.3).collect();
    for r in RULES {
        assert!(
            covered.contains(r.name),
            "row `{}` has no test case",
            r.name
        );
    }
}

#[test]
fn desync_signatures_are_configurable_and_case_insensitive() {
    let grpc_408 = GRPC_403.replace("error 403", "error 408");
    let body = reply(500, &grpc_408);
    assert_eq!(
        classify(Call::Send, &body, &sigs()).outcome,
        Some(Outcome::SendFailed)
    );
    let more = vec![
        "server returned error 400".into(),
        "server returned error 408".into(),
    ];
    assert_eq!(
        classify(Call::Send, &body, &more).outcome,
        Some(Outcome::Desync)
    );
    // The signature only means desync on a send, and only when it sits in
    // the error fields, not anywhere in the echoed request.
    let echoed = r#"{"statusCode":500,"exception":{"message":"boom"},"request":{"body":{"text":"server returned error 400"}}}"#;
    assert_eq!(
        classify(Call::Send, &reply(500, echoed), &sigs()).outcome,
        Some(Outcome::SendFailed)
    );
    let upper = DESYNC_2084.replace("server returned error 400", "SERVER RETURNED ERROR 400");
    assert_eq!(
        classify(Call::Send, &reply(500, &upper), &sigs()).outcome,
        Some(Outcome::Desync)
    );
    assert_eq!(
        classify(Call::Send, &reply(500, DESYNC_2084), &[]).outcome,
        Some(Outcome::SendFailed)
    );
}

#[test]
fn details_are_short_and_name_the_error() {
    let c = classify(Call::Send, &reply(500, DESYNC_2084), &sigs());
    assert_eq!(c.detail, "HTTP 500: 2 UNKNOWN: server returned error 400");
    let c = classify(Call::Send, &reply(422, NOT_WORKING), &sigs());
    assert!(c.detail.contains("(status STARTING)"), "{}", c.detail);
    let c = classify(Call::Send, &reply(400, VALIDATION_400), &sigs());
    assert!(
        c.detail.contains("start must be a boolean value"),
        "{}",
        c.detail
    );
    let huge = format!("<html>{}</html>", "x".repeat(100_000));
    let c = classify(Call::Send, &reply(500, &huge), &sigs());
    assert!(c.detail.chars().count() <= crate::provider::http::MAX_DETAIL_CHARS);
    let c = classify(Call::Send, &reply(500, ""), &sigs());
    assert_eq!(c.detail, "HTTP 500 with an empty body");
}

#[test]
fn retry_after_is_carried_into_the_outcome() {
    let mut r = reply(429, "");
    r.retry_after = Some(Duration::from_secs(42));
    assert_eq!(
        classify(Call::Send, &r, &sigs()).outcome,
        Some(Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(42))
        })
    );
}

#[test]
fn truncated_bodies_are_not_parsed() {
    let mut r = reply(201, GOWS_SENT);
    r.truncated = true;
    let c = classify(Call::Send, &r, &sigs());
    assert_eq!(c.outcome, Some(Outcome::BadReply));
    assert!(c.detail.contains("cut off"), "{}", c.detail);
}

#[test]
fn message_ids_are_read_from_every_engine_shape() {
    let id = |b: &str| message_id(&serde_json::from_str(b).expect("json"));
    assert_eq!(
        id(GOWS_SENT).as_deref(),
        Some("true_5511999990001@c.us_3EB0C767D097B7C7C030")
    );
    assert_eq!(id(NOWEB_SENT).as_deref(), Some("3EB0ABCDEF"));
    assert_eq!(
        id(WEBJS_SENT).as_deref(),
        Some("true_5511999990001@c.us_3EB0AA")
    );
    assert_eq!(id("{}"), None);
}

#[test]
fn statuses_map_to_outcomes() {
    assert_eq!(status_outcome("WORKING"), None);
    assert_eq!(
        status_outcome("STARTING"),
        Some(Outcome::NotReady(NotReadyKind::Starting))
    );
    assert_eq!(
        status_outcome("STOPPED"),
        Some(Outcome::NotReady(NotReadyKind::Stopped))
    );
    assert_eq!(
        status_outcome("FAILED"),
        Some(Outcome::NotReady(NotReadyKind::Failed))
    );
    assert_eq!(status_outcome("SCAN_QR_CODE"), Some(Outcome::NeedsPairing));
    assert_eq!(
        status_outcome("PAIRING"),
        Some(Outcome::NotReady(NotReadyKind::Unrecognised))
    );
}

#[test]
fn the_client_rejects_bad_urls_and_hides_its_key() {
    assert!(WahaClient::new("ftp://x", None, Duration::from_secs(1), &[]).is_err());
    assert!(WahaClient::new("not a url", None, Duration::from_secs(1), &[]).is_err());
    let c = WahaClient::new(
        "http://127.0.0.1:3000",
        Some("sekret-XYZ-123"),
        Duration::from_secs(1),
        &[],
    )
    .expect("client");
    assert!(!format!("{c:?}").contains("sekret-XYZ-123"));
    assert_eq!(
        c.url(&["api", "sessions", "a b/c"]).as_str(),
        "http://127.0.0.1:3000/api/sessions/a%20b%2Fc"
    );
}

#[test]
fn a_session_list_read_item_by_item_keeps_and_skips_what_parse_session_does() {
    let body = r#"[
        {"name":"a","status":"WORKING","me":{"id":"1@c.us","reachoutTimelock":{"isActive":true}}},
        "not an object",
        {"status":"WORKING"},
        {"name":"b","status":"SCAN_QR_CODE","me":{"id":7}},
        null,
        {"name":"c","status":"STOPPED","me":null,"extra":[1,2,{"deep":true}]}
    ]"#;
    let SessionList(read) = serde_json::from_str(body).expect("an array");
    let values: Vec<Value> = serde_json::from_str(body).expect("json");
    let want: Vec<SessionInfo> = values.iter().filter_map(parse_session).collect();
    assert_eq!(read, want);
    let names: Vec<&str> = read.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(read[0].reachout_timelock);
    assert_eq!(read[1].me, None, "a non-string me.id is no chat");
    // Not an array: the reader refuses, and list_sessions falls back to the
    // classification table (which names the shape).
    assert!(serde_json::from_str::<SessionList>(r#"{"name":"a"}"#).is_err());
    assert!(serde_json::from_str::<SessionList>("[1,").is_err());
}
