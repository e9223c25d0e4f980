//! The classification table row by row (Green-API docs: Common errors, HTTP 466), the
//! state parser, the pacer under tokio's paused clock, and redaction.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::provider::http::{MAX_DETAIL_CHARS, Reply};
use crate::provider::{BlockKind, NotReadyKind};

const TOKEN: &str = "tok3n-SEKRET-9f8e7d";
const ID: &str = "1101000001";

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        body: body.to_string(),
        truncated: false,
        retry_after: None,
    }
}

fn client() -> GreenApiClient {
    GreenApiClient::new(
        "https://api.green-api.com",
        ID,
        TOKEN,
        Duration::from_secs(1),
    )
    .expect("client")
}

/// A reply body in a case.
#[derive(Clone, Copy, Debug)]
enum Body {
    /// An error text: classified twice, as plain text and as `{"message": text}`.
    Text(&'static str),
    /// The body exactly as given.
    Raw(&'static str),
}

const QUOTA_466: &str = r#"{"invokeStatus":{"method":"sendmessage","used":12,"total":0,"status":"QUOTE_ALLOWED"},"correspondentsStatus":{"method":"correspondents","used":3,"total":3,"status":"CORRESPONDENTS_QUOTE_EXCEEDED","description":"Monthly quota has been exceeded. You can write to 79001234567@c.us"}}"#;
const QUOTA_466_WEBHOOK_SPELLING: &str = r#"{"invokeStatus":{"method":"checkwhatsapp","used":100,"total":100,"status":"QUOTA_EXCEEDED","description":"Monthly quota has been exceeded"}}"#;
const QUEUE: &str = r#"[{"messageID":"3EB0C767D097B7C7C030","type":"sendMessage","body":{"chatId":"79001234567@c.us","message":"hi"}}]"#;

/// (call, status, body, expected rule, expected outcome)
fn cases() -> Vec<(Call, u16, Body, &'static str, Option<Outcome>)> {
    use Body::{Raw, Text};
    use Call::*;
    use Outcome::*;
    let starting = Some(NotReady(NotReadyKind::Starting));
    vec![
        (
            Send,
            200,
            Raw(r#"{"code":401,"description":"Unauthorized"}"#),
            "401 in the body",
            Some(AuthRejected),
        ),
        (
            State,
            200,
            Raw(r#"{"code":"401","description":"Unauthorized"}"#),
            "401 in the body",
            Some(AuthRejected),
        ),
        (
            Queue,
            200,
            Raw(r#"{"status":false,"reason":"instance is starting or not authorized"}"#),
            "refusal: starting",
            starting,
        ),
        (
            Queue,
            200,
            Raw(r#"{"status":false,"reason":"instance account not authorized"}"#),
            "refusal: not authorized",
            Some(NeedsPairing),
        ),
        (
            State,
            200,
            Raw(r#"{"stateInstance":"authorized"}"#),
            "state read",
            None,
        ),
        (State, 200, Raw("null"), "state read", None),
        (
            State,
            200,
            Raw(r#"{"stateInstance":"pendingCode"}"#),
            "state read",
            None,
        ),
        (
            Settings,
            200,
            Raw(r#"{"wid":"79001234567@c.us","stateWebhook":"no"}"#),
            "settings read",
            None,
        ),
        (
            Send,
            200,
            Raw(r#"{"idMessage":"3EB0C767D097B7C7C030"}"#),
            "message queued",
            None,
        ),
        (Queue, 200, Raw(QUEUE), "queue read", None),
        (Queue, 200, Raw("[]"), "queue read", None),
        (Queue, 200, Raw("null"), "queue read", None),
        (Queue, 200, Raw(""), "queue read", None),
        (
            Message,
            200,
            Raw(r#"{"idMessage":"A","statusMessage":"sent"}"#),
            "journal read",
            None,
        ),
        (Message, 200, Raw(""), "journal read", None),
        (Incoming, 200, Raw("[]"), "incoming journal read", None),
        (Incoming, 200, Raw("garbage"), "incoming journal read", None),
        (
            Message,
            404,
            Raw("Not Found"),
            "not in the journal (404)",
            None,
        ),
        (
            Message,
            400,
            Text("instance account not authorized"),
            "instance not authorized",
            Some(NeedsPairing),
        ),
        (
            Reboot,
            200,
            Raw(r#"{"isReboot":true}"#),
            "reboot accepted",
            None,
        ),
        (
            Reboot,
            200,
            Raw(r#"{"isReboot":false}"#),
            "reboot refused",
            Some(SendFailed),
        ),
        (
            Send,
            200,
            Raw(r#"{"idMessage":""}"#),
            "unusable send reply",
            Some(BadReply),
        ),
        (State, 200, Raw(""), "unusable state reply", Some(BadReply)),
        (
            State,
            200,
            Raw(r#"{"statusInstance":"online"}"#),
            "unusable state reply",
            Some(BadReply),
        ),
        (
            Settings,
            200,
            Raw("<html>proxy</html>"),
            "unusable settings reply",
            Some(BadReply),
        ),
        (
            Queue,
            200,
            Raw(r#"{"status":false,"reason":"something else"}"#),
            "unexpected 2xx body",
            Some(SendFailed),
        ),
        (Send, 204, Raw(""), "unusable send reply", Some(BadReply)),
        (
            Send,
            400,
            Text("instance is starting or not authorized"),
            "starting or not authorized",
            starting,
        ),
        (
            Send,
            400,
            Text("instance in starting process try later"),
            "instance starting",
            starting,
        ),
        (
            State,
            400,
            Text("Instance is starting"),
            "instance starting",
            starting,
        ),
        (
            Send,
            400,
            Text(
                "You have used up the chat limit on your tariff. Renew you instance from personal area.",
            ),
            "chat limit used up (2021)",
            Some(QuotaExceeded),
        ),
        (
            Send,
            400,
            Text("Instance account is expired. Renew your instance from personal area"),
            "instance expired",
            Some(InstanceExpired),
        ),
        (
            Settings,
            400,
            Text("Instance is deleted"),
            "instance deleted",
            Some(InstanceExpired),
        ),
        (
            Send,
            400,
            Text("instance account not authorized"),
            "instance not authorized",
            Some(NeedsPairing),
        ),
        (
            Reboot,
            400,
            Text("Not authorized"),
            "instance not authorized",
            Some(NeedsPairing),
        ),
        (
            Send,
            400,
            Text("bad request data"),
            "bad request data",
            Some(BadRequest),
        ),
        (
            Send,
            400,
            Text(
                "Validation failed. Details: 'chatId' must be one of the next formats: 'phone_number@c.us' or 'group_id@g.us'",
            ),
            "validation failed",
            Some(BadRequest),
        ),
        (
            Send,
            400,
            Text("Bad Request"),
            "validation failed",
            Some(BadRequest),
        ),
        (
            Send,
            400,
            Text(
                "'chatId' must be one of the next formats: 'phone_number@c.us' or 'group_id@g.us'",
            ),
            "field validation",
            Some(BadRequest),
        ),
        (
            Send,
            400,
            Text("'message' is required"),
            "field validation",
            Some(BadRequest),
        ),
        (
            Send,
            400,
            Text("'archive' is not allowed"),
            "field validation",
            Some(BadRequest),
        ),
        (
            Send,
            400,
            Text("'message' is not allowed to be empty"),
            "field validation",
            Some(BadRequest),
        ),
        (
            Send,
            400,
            Text("'message' length must be less than or equal to 20000 characters long"),
            "field validation",
            Some(BadRequest),
        ),
        (
            Send,
            400,
            Text("'message id' must be at least 16 symbols"),
            "field validation",
            Some(BadRequest),
        ),
        (
            Send,
            400,
            Text("Unexpected token } in JSON at position 42"),
            "malformed JSON",
            Some(BadRequest),
        ),
        (
            Send,
            400,
            Text("something new"),
            "other 400",
            Some(BadRequest),
        ),
        (Send, 400, Raw(""), "other 400", Some(BadRequest)),
        (
            Send,
            401,
            Text("Unauthorized"),
            "token rejected (401)",
            Some(AuthRejected),
        ),
        (
            State,
            403,
            Text("Forbidden"),
            "instance rejected (403)",
            Some(AuthRejected),
        ),
        (
            Send,
            404,
            Text("Not Found"),
            "wrong verb (404)",
            Some(BadRequest),
        ),
        (
            State,
            429,
            Raw(""),
            "rate limited (429)",
            Some(RateLimited { retry_after: None }),
        ),
        (
            Send,
            466,
            Raw(QUOTA_466),
            "quota exceeded (466)",
            Some(QuotaExceeded),
        ),
        (
            Send,
            466,
            Raw(QUOTA_466_WEBHOOK_SPELLING),
            "quota exceeded (466)",
            Some(QuotaExceeded),
        ),
        (
            Send,
            499,
            Text("Client Closed Request"),
            "client closed request (499)",
            Some(Timeout),
        ),
        (Send, 405, Raw(""), "other 4xx", Some(BadRequest)),
        (
            State,
            502,
            Text("Bad Gateway"),
            "bad gateway (502)",
            Some(Unreachable),
        ),
        (
            Send,
            502,
            Raw("<html>502</html>"),
            "bad gateway (502)",
            Some(Unreachable),
        ),
        (
            Send,
            503,
            Raw(""),
            "unavailable (503/504)",
            Some(Unreachable),
        ),
        (
            Queue,
            504,
            Raw(""),
            "unavailable (503/504)",
            Some(Unreachable),
        ),
        (
            Send,
            500,
            Text("File from url exceeded max upload size. Size: 120mb Limit: 100mb Url:"),
            "server error on send",
            Some(SendFailed),
        ),
        (
            State,
            500,
            Raw(""),
            "server error on read",
            Some(Unreachable),
        ),
        (
            Reboot,
            500,
            Raw("{}"),
            "server error on read",
            Some(Unreachable),
        ),
        (Send, 302, Raw(""), "unexpected status", Some(SendFailed)),
    ]
}

/// The bodies a case stands for: both forms for a text.
fn bodies(b: Body) -> Vec<String> {
    match b {
        Body::Raw(s) => vec![s.to_string()],
        Body::Text(t) => vec![
            t.to_string(),
            serde_json::json!({ "message": t }).to_string(),
        ],
    }
}

#[test]
fn every_row_classifies_its_reply_in_both_body_forms() {
    for (call, status, body, rule, outcome) in cases() {
        for b in bodies(body) {
            let c = classify(call, &reply(status, &b));
            assert_eq!(c.rule, rule, "{call:?} {status} {b}");
            assert_eq!(c.outcome, outcome, "{call:?} {status} {b}");
            assert!(!c.detail.is_empty());
            assert!(c.detail.chars().count() <= MAX_DETAIL_CHARS);
        }
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
    let names: BTreeSet<&str> = RULES.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), RULES.len(), "row names are unique");
}

#[test]
fn every_400_row_has_a_text_case_for_both_forms() {
    let text_rows: BTreeSet<&str> = cases()
        .iter()
        .filter(|c| c.1 == 400 && matches!(c.2, Body::Text(_)))
        .map(|c| c.3)
        .collect();
    for r in RULES.iter().filter(|r| matches!(r.codes, Codes::One(400))) {
        assert!(
            text_rows.contains(r.name),
            "400 row `{}` needs a text case",
            r.name
        );
    }
}

#[test]
fn only_499_and_502_are_retried() {
    for r in RULES {
        let expected = match r.name {
            "client closed request (499)" => Retry::LongerTimeout,
            "bad gateway (502)" => Retry::Repeat,
            _ => Retry::No,
        };
        assert_eq!(r.extra, expected, "{}", r.name);
    }
    assert_eq!(classify(Call::Send, &reply(502, "")).extra, Retry::Repeat);
    assert_eq!(
        classify(Call::State, &reply(499, "")).extra,
        Retry::LongerTimeout
    );
    assert_eq!(
        RetryPolicy::default(),
        RetryPolicy {
            delay_502: Duration::from_secs(1),
            retries_502: 3,
            retries_499: 1
        }
    );
}

#[test]
fn plain_and_json_bodies_give_the_same_detail() {
    let text = "instance in starting process try later";
    let plain = classify(Call::Send, &reply(400, text));
    let json = classify(
        Call::Send,
        &reply(400, &serde_json::json!({ "message": text }).to_string()),
    );
    assert_eq!(plain.detail, format!("HTTP 400: {text}"));
    assert_eq!(json.detail, plain.detail);
    // A JSON string may escape what the raw search would look for.
    let escaped = r#"{"message":"instance account not \u0061uthorized"}"#;
    assert_eq!(
        classify(Call::Send, &reply(400, escaped)).outcome,
        Some(Outcome::NeedsPairing)
    );
}

#[test]
fn details_are_short_and_name_the_quota() {
    let c = classify(Call::Send, &reply(466, QUOTA_466));
    assert_eq!(
        c.detail,
        "HTTP 466: correspondents quota exceeded (3/3, CORRESPONDENTS_QUOTE_EXCEEDED)"
    );
    assert!(
        !c.detail.contains("79001234567"),
        "no chat list: {}",
        c.detail
    );
    let c = classify(Call::Send, &reply(466, QUOTA_466_WEBHOOK_SPELLING));
    assert_eq!(
        c.detail,
        "HTTP 466: checkwhatsapp quota exceeded (100/100, QUOTA_EXCEEDED)"
    );
    let c = classify(Call::Send, &reply(466, ""));
    assert_eq!(c.detail, "HTTP 466: quota exceeded");
    let huge = format!("<html>{}</html>", "x".repeat(100_000));
    let c = classify(Call::Send, &reply(502, &huge));
    assert!(c.detail.chars().count() <= MAX_DETAIL_CHARS);
    let c = classify(Call::Send, &reply(503, ""));
    assert_eq!(c.detail, "HTTP 503 with an empty body");
    let c = classify(
        Call::Send,
        &reply(200, r#"{"code":401,"description":"Unauthorized"}"#),
    );
    assert_eq!(c.detail, "HTTP 200: Unauthorized");
}

#[test]
fn retry_after_is_carried_into_the_outcome() {
    let mut r = reply(429, "Too Many Requests");
    r.retry_after = Some(Duration::from_secs(42));
    assert_eq!(
        classify(Call::State, &r).outcome,
        Some(Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(42))
        })
    );
}

#[test]
fn truncated_bodies_are_not_parsed() {
    let mut r = reply(200, r#"{"idMessage":"3EB0C767D097B7C7C030"}"#);
    r.truncated = true;
    let c = classify(Call::Send, &r);
    assert_eq!(c.outcome, Some(Outcome::BadReply));
    assert!(c.detail.contains("cut off"), "{}", c.detail);
    let mut r = reply(200, "");
    r.truncated = true;
    assert_eq!(classify(Call::Queue, &r).outcome, Some(Outcome::SendFailed));
}

#[test]
fn instance_states_parse_including_null() {
    use serde_json::json;
    let parse = |v: serde_json::Value| InstanceState::from_json(&v);
    assert_eq!(
        parse(json!({"stateInstance": "authorized"})),
        Some(InstanceState::Authorized)
    );
    assert_eq!(
        parse(json!({"stateInstance": "notAuthorized"})),
        Some(InstanceState::NotAuthorized)
    );
    assert_eq!(
        parse(json!({"stateInstance": "blocked"})),
        Some(InstanceState::Blocked)
    );
    assert_eq!(
        parse(json!({"stateInstance": "sleepMode"})),
        Some(InstanceState::SleepMode)
    );
    assert_eq!(
        parse(json!({"stateInstance": "starting"})),
        Some(InstanceState::Starting)
    );
    assert_eq!(
        parse(json!({"stateInstance": "yellowCard"})),
        Some(InstanceState::YellowCard)
    );
    assert_eq!(
        parse(json!({"stateInstance": "YELLOWCARD"})),
        Some(InstanceState::YellowCard)
    );
    assert_eq!(parse(json!(null)), Some(InstanceState::Provisioning));
    assert_eq!(
        parse(json!({"stateInstance": null})),
        Some(InstanceState::Provisioning)
    );
    assert_eq!(
        parse(json!({"stateInstance": "pendingCode"})),
        Some(InstanceState::Unknown("pendingCode".into()))
    );
    assert_eq!(parse(json!({"stateInstance": 3})), None);
    assert_eq!(parse(json!({})), None);
    assert_eq!(parse(json!([])), None);
    assert_eq!(parse(json!("authorized")), None);
}

#[test]
fn instance_states_map_to_outcomes() {
    use InstanceState as S;
    let cases = [
        (S::Authorized, None),
        (S::NotAuthorized, Some(Outcome::NeedsPairing)),
        (S::Blocked, Some(Outcome::Blocked(BlockKind::Banned))),
        (S::YellowCard, Some(Outcome::Blocked(BlockKind::YellowCard))),
        (
            S::SleepMode,
            Some(Outcome::NotReady(NotReadyKind::Sleeping)),
        ),
        (S::Starting, Some(Outcome::NotReady(NotReadyKind::Starting))),
        (
            S::Provisioning,
            Some(Outcome::NotReady(NotReadyKind::Provisioning)),
        ),
        (
            S::Unknown("suspended".into()),
            Some(Outcome::NotReady(NotReadyKind::Unrecognised)),
        ),
    ];
    for (state, outcome) in cases {
        assert_eq!(state.outcome(), outcome, "{state:?}");
        if !matches!(state, S::Provisioning | S::Unknown(_)) {
            assert_eq!(InstanceState::from_wire(state.as_str()), state);
        }
    }
    assert_eq!(S::Provisioning.to_string(), "null");
}

#[test]
fn queue_lookup_tolerates_odd_shapes() {
    use serde_json::json;
    let id = "3EB0C767D097B7C7C030";
    assert!(queue_has(
        Some(&serde_json::from_str(QUEUE).expect("json")),
        id
    ));
    assert!(queue_has(
        Some(&json!([{"messageId": id.to_lowercase()}])),
        id
    ));
    assert!(queue_has(Some(&json!([1, null, {"idMessage": id}])), id));
    assert!(!queue_has(Some(&json!([{"messageID": "OTHER"}, {}])), id));
    assert!(!queue_has(Some(&json!(null)), id));
    assert!(!queue_has(Some(&json!({"messageID": id})), id));
    assert!(!queue_has(None, id));
}

#[test]
fn the_client_builds_its_urls_and_never_shows_the_token() {
    let c = client();
    assert_eq!(
        c.url(Call::State).as_str(),
        format!("https://api.green-api.com/waInstance{ID}/getStateInstance/{TOKEN}")
    );
    let prefixed = GreenApiClient::new(
        "http://127.0.0.1:9/proxy/",
        ID,
        TOKEN,
        Duration::from_secs(1),
    )
    .expect("client");
    assert_eq!(
        prefixed.url(Call::Send).as_str(),
        format!("http://127.0.0.1:9/proxy/waInstance{ID}/sendMessage/{TOKEN}")
    );
    assert_eq!(
        c.endpoint(),
        "https://api.green-api.com/waInstance1101000001/<method>/<redacted>"
    );
    let debug = format!("{c:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(!debug.to_lowercase().contains("sekret"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

#[test]
fn the_client_names_no_forbidden_method() {
    for call in Call::ALL {
        let name = call.method_name().to_lowercase();
        assert!(
            !["logout", "setsettings", "clearmessagesqueue"].contains(&name.as_str()),
            "{name}"
        );
        let url = client().url(call);
        assert!(!url.path().to_lowercase().contains("logout"));
    }
    assert_eq!(Call::Send.http_method(), reqwest::Method::POST);
    assert_eq!(Call::Reboot.http_method(), reqwest::Method::GET);
}

#[test]
fn bad_configuration_is_rejected_without_echoing_the_token() {
    let secs = Duration::from_secs(1);
    let bad = [
        GreenApiClient::new("ftp://x", ID, TOKEN, secs),
        GreenApiClient::new("not a url", ID, TOKEN, secs),
        GreenApiClient::new("https://x/?a=b", ID, TOKEN, secs),
        GreenApiClient::new("https://x", "11a", TOKEN, secs),
        GreenApiClient::new("https://x", "", TOKEN, secs),
        GreenApiClient::new("https://x", ID, "", secs),
        GreenApiClient::new("https://x", ID, "tok3n-SEKRET-9f8e7d with space", secs),
        GreenApiClient::new("https://x", ID, "tok3n-SEKRET-9f8e7d/x", secs),
    ];
    for r in bad {
        let e = r.expect_err("must be rejected").to_string();
        assert!(!e.contains("SEKRET"), "{e}");
    }
}

/// The typed constructor errors keep the messages they had as text.
#[test]
fn constructor_errors_are_typed_and_keep_their_messages() {
    use crate::provider::ClientError;
    let secs = Duration::from_secs(1);
    let cases: [(Result<GreenApiClient, ClientError>, ClientError, &str); 5] = [
        (
            GreenApiClient::new("ftp://x", ID, TOKEN, secs),
            ClientError::Url {
                provider: "Green-API",
                reason: "must be http:// or https://".into(),
            },
            "invalid Green-API url: must be http:// or https://",
        ),
        (
            GreenApiClient::new("https://x/?a=b", ID, TOKEN, secs),
            ClientError::Url {
                provider: "Green-API",
                reason: "no query or fragment allowed".into(),
            },
            "invalid Green-API url: no query or fragment allowed",
        ),
        (
            GreenApiClient::new("not a url", ID, TOKEN, secs),
            ClientError::Url {
                provider: "Green-API",
                reason: "relative URL without a base".into(),
            },
            "invalid Green-API url: relative URL without a base",
        ),
        (
            GreenApiClient::new("https://x", "11a", TOKEN, secs),
            ClientError::IdInstance,
            "invalid Green-API id_instance: must be 1 to 20 digits",
        ),
        (
            GreenApiClient::new("https://x", ID, "a/b", secs),
            ClientError::ApiToken,
            "invalid Green-API api token: must be printable ASCII without spaces, `/`, `?`, `#` or `%`",
        ),
    ];
    for (got, want, text) in cases {
        let e = got.expect_err("must be rejected");
        assert_eq!(e, want);
        assert_eq!(e.to_string(), text);
    }
    let waha = crate::provider::waha::WahaClient::new("ftp://x", None, secs, &[]);
    assert_eq!(
        waha.expect_err("rejected").to_string(),
        "invalid WAHA url: must be http:// or https://"
    );
    let waha = crate::provider::waha::WahaClient::new("http://x", Some("a\nb"), secs, &[]);
    assert_eq!(waha.expect_err("rejected"), ClientError::ApiKeyHeader);
}

#[test]
fn details_are_scrubbed_of_the_token() {
    let c = client();
    // A proxy error page that echoes the request path.
    let body = format!(
        "<html>502 upstream error for /waInstance{ID}/sendMessage/{}</html>",
        TOKEN.to_uppercase()
    );
    let classified = classify(Call::Send, &reply(502, &body));
    let f = c.failure(
        classified.outcome.expect("outcome"),
        Some(502),
        &classified.detail,
        classified.rule,
    );
    assert!(!format!("{f:?}").to_lowercase().contains("sekret"), "{f:?}");
    assert!(f.detail.contains("<redacted>"), "{}", f.detail);
    let t = c.transport_failure(Transport::Timeout(format!("timed out on {TOKEN}")));
    assert_eq!(t.outcome, Outcome::Timeout);
    assert!(!t.detail.contains(TOKEN));
    assert!(!t.to_string().contains(TOKEN));
}

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

#[tokio::test(start_paused = true)]
async fn the_pacer_grants_one_permit_per_interval() {
    let p = Pacer::new(Duration::from_secs(1));
    let t0 = Instant::now();
    assert_eq!(p.acquire().await, t0);
    assert_eq!(p.acquire().await, t0 + Duration::from_secs(1));
    assert_eq!(p.acquire().await, t0 + Duration::from_secs(2));
    assert_eq!(Instant::now(), t0 + Duration::from_secs(2));
    // After a quiet spell the next permit is immediate, not "owed".
    tokio::time::advance(Duration::from_secs(10)).await;
    let t1 = Instant::now();
    assert_eq!(p.acquire().await, t1);
    assert_eq!(p.acquire().await, t1 + Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_are_spaced_in_arrival_order() {
    let p = std::sync::Arc::new(Pacer::new(Duration::from_secs(1)));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move { p.acquire().await }));
    }
    let mut grants = Vec::new();
    for t in tasks {
        grants.push(t.await.expect("task"));
    }
    grants.sort();
    let expected: Vec<Instant> = (0..4).map(|i| t0 + Duration::from_secs(i)).collect();
    assert_eq!(grants, expected);
}

#[tokio::test(start_paused = true)]
async fn pacing_is_per_method_and_per_instance_and_shared_by_clones() {
    let a = client();
    let b = GreenApiClient::new(
        "https://api.green-api.com",
        "1101000002",
        TOKEN,
        Duration::from_secs(1),
    )
    .expect("client");
    let a2 = a.clone();
    let t0 = Instant::now();
    let pace = |c: &GreenApiClient, call: Call| {
        let c = c.clone();
        async move { c.pacers.get(call).expect("paced").acquire().await }
    };
    // Different methods of one instance do not wait for each other.
    assert_eq!(pace(&a, Call::State).await, t0);
    assert_eq!(pace(&a, Call::Settings).await, t0);
    assert_eq!(pace(&a, Call::Queue).await, t0);
    assert_eq!(pace(&a, Call::Reboot).await, t0);
    // Another instance has its own pacers.
    assert_eq!(pace(&b, Call::State).await, t0);
    // A clone is the same instance: it waits.
    assert_eq!(pace(&a2, Call::State).await, t0 + DEFAULT_MIN_INTERVAL);
    assert!(
        DEFAULT_MIN_INTERVAL >= Duration::from_secs(1),
        "Green-API request frequency: 1 request/s"
    );
    assert!(
        a.pacers.get(Call::Send).is_none(),
        "sendMessage is not paced"
    );
    // with_min_interval replaces the pacers.
    let fast = client().with_min_interval(Duration::from_millis(10));
    let t1 = Instant::now();
    assert_eq!(pace(&fast, Call::State).await, t1);
    assert_eq!(
        pace(&fast, Call::State).await,
        t1 + Duration::from_millis(10)
    );
}
