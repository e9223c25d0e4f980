//! The Green-API client against the Green-API simulator over loopback: every
//! classification row, the vendor's retries, the queue, reboots, states,
//! auth failures, pacing, and that the token never shows.
//!
//! Simulated time is a manual [`Clock`]; the only real-time waits are retry
//! delays of a few milliseconds and, where a test is about timeouts or
//! pacing, injected latencies of at most a few hundred milliseconds.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use wa_watchdog::clock::{Clock, Timestamp};
use wa_watchdog::confirm::Evidence;
use wa_watchdog::provider::green_api::{Call, GreenApiClient, InstanceState, RULES, RetryPolicy};
use wa_watchdog::provider::{BlockKind, NotReadyKind, Outcome};
use wa_watchdog::sim::green_api::{
    ApiMethod, BodyForm, Canned, FAILED_DESCRIPTION, Fault, GreenSim, GreenSimControl,
    GreenSimOptions, MessageFate, MessageStatus, NotFoundForm, QUEUE_LIST_CAP, QueueMode,
    SendWhenNotReady, SimInstance, SimState, start,
};

const TOKEN: &str = "tok3n-SEKRET-9f8e7d";
const ID: &str = "1101000001";
const WID: &str = "79001234567@c.us";
const CHAT: &str = "79001234568@c.us";
const T0: i64 = 1_764_000_000_000; // 2025-11-24, unix ms
const TIMEOUT: Duration = Duration::from_secs(5);

struct Env {
    sim: GreenSim,
    ctl: GreenSimControl,
    clock: Clock,
    client: GreenApiClient,
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        delay_502: Duration::from_millis(5),
        retries_502: 3,
        retries_499: 1,
    }
}

async fn env_with(adjust: impl FnOnce(GreenSimOptions) -> GreenSimOptions) -> Env {
    let clock = Clock::manual(Timestamp(T0));
    let opts = adjust(GreenSimOptions::new(
        clock.clone(),
        vec![SimInstance::new(ID, TOKEN, WID)],
    ));
    let sim = start("127.0.0.1:0".parse().expect("addr"), opts)
        .await
        .expect("start simulator");
    let client = GreenApiClient::new(&sim.url(), ID, TOKEN, Duration::from_secs(2))
        .expect("client")
        // The manual clock does not move while requests fly: pacing is
        // tested on its own (below, and under tokio's paused clock).
        .with_min_interval(Duration::ZERO)
        .with_retry_policy(fast_retries());
    Env {
        ctl: sim.control(),
        sim,
        clock,
        client,
    }
}

async fn env() -> Env {
    env_with(|o| o).await
}

/// Asserts that nothing derived from a result shows the token.
fn assert_no_token(what: &str, debug: &str) {
    let lower = debug.to_lowercase();
    assert!(
        !lower.contains(&TOKEN.to_lowercase()) && !lower.contains("sekret"),
        "{what} shows the token: {debug}"
    );
}

/// One client call reduced to (outcome, rule, status, detail); `None`
/// outcome = a successful read.
#[derive(Debug)]
struct Seen {
    outcome: Option<Outcome>,
    rule: &'static str,
    status: Option<u16>,
    detail: String,
}

async fn perform(client: &GreenApiClient, call: Call) -> Seen {
    let debug;
    let seen = match call {
        Call::Send => {
            let r = client
                .send_message(CHAT, "wa-watchdog canary 1", TIMEOUT)
                .await;
            debug = format!("{r:?}");
            Seen {
                outcome: (r.outcome != Outcome::Delivered).then_some(r.outcome),
                rule: r.rule,
                status: r.http_status,
                detail: r.detail,
            }
        }
        Call::State => {
            let r = client.state(TIMEOUT).await;
            debug = format!("{r:?}");
            seen_of(r, "state read")
        }
        Call::Settings => {
            let r = client.wid(TIMEOUT).await;
            debug = format!("{r:?}");
            seen_of(r, "settings read")
        }
        Call::Queue => {
            let r = client.queue_contains("3EB0C767D097B7C7C030", TIMEOUT).await;
            debug = format!("{r:?}");
            seen_of(r, "queue read")
        }
        Call::Reboot => {
            let r = client.reboot(TIMEOUT).await;
            debug = format!("{r:?}");
            seen_of(r, "reboot accepted")
        }
        Call::Incoming => {
            let r = client.incoming_seen(WID, "ab12", TIMEOUT).await;
            debug = format!("{r:?}");
            seen_of(r, "incoming journal read")
        }
        Call::Message => {
            let e = client
                .get_message(WID, "3EB0C767D097B7C7C030", TIMEOUT)
                .await;
            debug = format!("{e:?}");
            match e {
                Evidence::LookupFailed(r) => Seen {
                    outcome: Some(r.outcome),
                    rule: "lookup failed",
                    status: r.http_status,
                    detail: r.detail,
                },
                Evidence::NotFound { .. } => Seen {
                    outcome: None,
                    rule: "not in the journal (404)",
                    status: Some(404),
                    detail: String::new(),
                },
                _ => Seen {
                    outcome: None,
                    rule: "journal read",
                    status: Some(200),
                    detail: String::new(),
                },
            }
        }
    };
    assert_no_token(&format!("{call:?}"), &debug);
    assert_no_token("detail", &seen.detail);
    assert!(!seen.detail.contains("http://"), "no URL: {}", seen.detail);
    seen
}

fn seen_of<T>(
    r: Result<T, wa_watchdog::provider::green_api::Failure>,
    ok_rule: &'static str,
) -> Seen {
    match r {
        Ok(_) => Seen {
            outcome: None,
            rule: ok_rule,
            status: Some(200),
            detail: String::new(),
        },
        Err(f) => Seen {
            outcome: Some(f.outcome),
            rule: f.rule,
            status: f.http_status,
            detail: f.detail,
        },
    }
}

fn api(call: Call) -> ApiMethod {
    match call {
        Call::State => ApiMethod::GetStateInstance,
        Call::Settings => ApiMethod::GetSettings,
        Call::Send => ApiMethod::SendMessage,
        Call::Queue => ApiMethod::ShowMessagesQueue,
        Call::Reboot => ApiMethod::Reboot,
        Call::Message => ApiMethod::GetMessage,
        Call::Incoming => ApiMethod::LastIncomingMessages,
    }
}

/// How a case makes the simulator answer.
#[derive(Clone, Debug)]
enum Setup {
    /// The simulator's own reply.
    Normal,
    /// A documented reply, in this body form.
    Canned(Canned, BodyForm),
    /// Any reply, `times` times.
    Custom(u16, &'static str, BodyForm, u32),
    /// A documented reply, `times` times (retried rows).
    Repeated(Canned, u32),
}

/// (call, setup, expected rule, expected outcome); `None` = success.
fn sim_cases() -> Vec<(Call, Setup, &'static str, Option<Outcome>)> {
    use Outcome::*;
    let starting = Some(NotReady(NotReadyKind::Starting));
    let mut v = vec![
        (Call::State, Setup::Normal, "state read", None),
        (Call::Settings, Setup::Normal, "settings read", None),
        (Call::Send, Setup::Normal, "message queued", None),
        (Call::Queue, Setup::Normal, "queue read", None),
        (Call::Reboot, Setup::Normal, "reboot accepted", None),
        (Call::Incoming, Setup::Normal, "incoming journal read", None),
        (
            Call::Message,
            Setup::Normal,
            "not in the journal (404)",
            None,
        ),
        (
            Call::Message,
            Setup::Custom(200, r#"{"statusMessage":"sent"}"#, BodyForm::Raw, 1),
            "journal read",
            None,
        ),
        (
            Call::Send,
            Setup::Canned(Canned::CodeInBody401, BodyForm::Raw),
            "401 in the body",
            Some(AuthRejected),
        ),
        (
            Call::Queue,
            Setup::Canned(Canned::Refusal, BodyForm::Raw),
            "refusal: starting",
            starting,
        ),
        (
            Call::Queue,
            Setup::Custom(
                200,
                r#"{"status":false,"reason":"instance account not authorized"}"#,
                BodyForm::Raw,
                1,
            ),
            "refusal: not authorized",
            Some(NeedsPairing),
        ),
        (
            Call::Reboot,
            Setup::Canned(Canned::RebootFalse, BodyForm::Raw),
            "reboot refused",
            Some(SendFailed),
        ),
        (
            Call::Reboot,
            Setup::Custom(200, r#"{"rebooted":"maybe"}"#, BodyForm::Raw, 1),
            "unexpected 2xx body",
            Some(SendFailed),
        ),
        (
            Call::State,
            Setup::Custom(200, r#"{"statusInstance":"online"}"#, BodyForm::Raw, 1),
            "unusable state reply",
            Some(BadReply),
        ),
        (
            Call::State,
            Setup::Custom(
                200,
                "<html><body>Welcome to nginx</body></html>",
                BodyForm::Raw,
                1,
            ),
            "unusable state reply",
            Some(BadReply),
        ),
        (
            Call::Send,
            Setup::Custom(200, "<html>queued?</html>", BodyForm::Raw, 1),
            "unusable send reply",
            Some(BadReply),
        ),
        (
            Call::Settings,
            Setup::Custom(200, "not json at all", BodyForm::Raw, 1),
            "unusable settings reply",
            Some(BadReply),
        ),
        (
            Call::Send,
            Setup::Canned(Canned::Unauthorized, BodyForm::Plain),
            "token rejected (401)",
            Some(AuthRejected),
        ),
        (
            Call::State,
            Setup::Canned(Canned::Forbidden, BodyForm::Plain),
            "instance rejected (403)",
            Some(AuthRejected),
        ),
        (
            Call::Send,
            Setup::Canned(Canned::WrongVerb, BodyForm::Plain),
            "wrong verb (404)",
            Some(BadRequest),
        ),
        (
            Call::State,
            Setup::Canned(Canned::TooManyRequests, BodyForm::Plain),
            "rate limited (429)",
            Some(RateLimited { retry_after: None }),
        ),
        (
            Call::Send,
            Setup::Canned(Canned::Quota, BodyForm::Raw),
            "quota exceeded (466)",
            Some(QuotaExceeded),
        ),
        (
            Call::Send,
            Setup::Canned(Canned::QuotaWebhookSpelling, BodyForm::Raw),
            "quota exceeded (466)",
            Some(QuotaExceeded),
        ),
        (
            Call::Send,
            Setup::Repeated(Canned::ClientClosedRequest, 2),
            "client closed request (499)",
            Some(Timeout),
        ),
        (
            Call::Send,
            Setup::Custom(409, "Conflict", BodyForm::Plain, 1),
            "other 4xx",
            Some(BadRequest),
        ),
        (
            Call::State,
            Setup::Repeated(Canned::BadGateway, 4),
            "bad gateway (502)",
            Some(Unreachable),
        ),
        (
            Call::Send,
            Setup::Canned(Canned::ServiceUnavailable, BodyForm::Plain),
            "unavailable (503/504)",
            Some(Unreachable),
        ),
        (
            Call::Queue,
            Setup::Canned(Canned::GatewayTimeout, BodyForm::Plain),
            "unavailable (503/504)",
            Some(Unreachable),
        ),
        (
            Call::Send,
            Setup::Canned(Canned::ServerError, BodyForm::Plain),
            "server error on send",
            Some(SendFailed),
        ),
        (
            Call::State,
            Setup::Canned(Canned::ServerError, BodyForm::Json),
            "server error on read",
            Some(Unreachable),
        ),
        (
            Call::Send,
            Setup::Custom(302, "", BodyForm::Plain, 1),
            "unexpected status",
            Some(SendFailed),
        ),
    ];
    // Every 400 row, in both body forms.
    let rows_400 = [
        (
            Call::Send,
            Canned::StartingOrNotAuthorized,
            "starting or not authorized",
            starting,
        ),
        (Call::Send, Canned::Starting, "instance starting", starting),
        (
            Call::Send,
            Canned::ChatLimit2021,
            "chat limit used up (2021)",
            Some(QuotaExceeded),
        ),
        (
            Call::State,
            Canned::Expired,
            "instance expired",
            Some(InstanceExpired),
        ),
        (
            Call::Settings,
            Canned::Deleted,
            "instance deleted",
            Some(InstanceExpired),
        ),
        (
            Call::Send,
            Canned::NotAuthorized,
            "instance not authorized",
            Some(NeedsPairing),
        ),
        (
            Call::Send,
            Canned::BadRequestData,
            "bad request data",
            Some(BadRequest),
        ),
        (
            Call::Send,
            Canned::ValidationFailed,
            "validation failed",
            Some(BadRequest),
        ),
        (
            Call::Send,
            Canned::BadRequest,
            "validation failed",
            Some(BadRequest),
        ),
        (
            Call::Send,
            Canned::ChatIdFormat,
            "field validation",
            Some(BadRequest),
        ),
        (
            Call::Send,
            Canned::FieldRequired,
            "field validation",
            Some(BadRequest),
        ),
        (
            Call::Send,
            Canned::FieldNotAllowed,
            "field validation",
            Some(BadRequest),
        ),
        (
            Call::Send,
            Canned::FieldEmpty,
            "field validation",
            Some(BadRequest),
        ),
        (
            Call::Send,
            Canned::MessageTooLong,
            "field validation",
            Some(BadRequest),
        ),
        (
            Call::Send,
            Canned::MessageIdTooShort,
            "field validation",
            Some(BadRequest),
        ),
        (
            Call::Send,
            Canned::UnexpectedToken,
            "malformed JSON",
            Some(BadRequest),
        ),
    ];
    for (call, canned, rule, outcome) in rows_400 {
        for form in [BodyForm::Plain, BodyForm::Json] {
            v.push((call, Setup::Canned(canned, form), rule, outcome));
        }
    }
    for form in [BodyForm::Plain, BodyForm::Json] {
        v.push((
            Call::Send,
            Setup::Custom(400, "a text nobody documented", form, 1),
            "other 400",
            Some(BadRequest),
        ));
    }
    v
}

/// Runs every simulator case of one classification row: each 400 row in
/// both body forms (plain text and JSON `{"message": ...}`).
async fn check_row(row: &str) {
    let e = env().await;
    let cases: Vec<_> = sim_cases().into_iter().filter(|c| c.2 == row).collect();
    assert!(!cases.is_empty(), "row `{row}` has no simulator case");
    for (call, setup, rule, outcome) in cases {
        let method = Some(api(call));
        match &setup {
            Setup::Normal => {}
            Setup::Canned(c, form) => e
                .ctl
                .inject(ID, method, 1, Fault::canned(*c, *form))
                .expect("inject"),
            Setup::Custom(status, body, form, times) => e
                .ctl
                .inject(ID, method, *times, Fault::new(*status, body, *form))
                .expect("inject"),
            Setup::Repeated(c, times) => e
                .ctl
                .inject(ID, method, *times, Fault::canned(*c, BodyForm::Plain))
                .expect("inject"),
        }
        let seen = perform(&e.client, call).await;
        assert_eq!(seen.rule, rule, "{call:?} {setup:?}: {seen:?}");
        assert_eq!(seen.outcome, outcome, "{call:?} {setup:?}: {seen:?}");
        if outcome.is_some() {
            assert!(!seen.detail.is_empty(), "{call:?} {setup:?}");
            assert!(seen.status.is_some(), "{call:?} {setup:?}");
        }
        assert_eq!(
            e.ctl.instance(ID).expect("instance").faults_pending,
            0,
            "{call:?} {setup:?}: every injected reply was consumed"
        );
        // Undo what the normal replies changed.
        e.ctl.set_state(ID, SimState::Authorized).expect("state");
    }
    // The watchdog's forbidden methods are never called on the way.
    for forbidden in ["logout", "setSettings", "clearMessagesQueue"] {
        assert_eq!(e.ctl.count(forbidden), 0, "{forbidden}");
    }
    e.sim.shutdown().await;
}

/// One test per row of the classification table, against the simulator.
macro_rules! row_tests {
    ($($name:ident => $row:literal,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                check_row($row).await;
            }
        )*
        /// The rows that have a test of their own.
        const TESTED_ROWS: &[&str] = &[$($row),*];
    };
}

row_tests! {
    row_401_in_the_body => "401 in the body",
    row_refusal_starting => "refusal: starting",
    row_refusal_not_authorized => "refusal: not authorized",
    row_state_read => "state read",
    row_settings_read => "settings read",
    row_message_queued => "message queued",
    row_queue_read => "queue read",
    row_reboot_accepted => "reboot accepted",
    row_reboot_refused => "reboot refused",
    row_journal_read => "journal read",
    row_incoming_journal_read => "incoming journal read",
    row_not_in_the_journal_404 => "not in the journal (404)",
    row_unexpected_2xx_body => "unexpected 2xx body",
    row_unusable_send_reply => "unusable send reply",
    row_unusable_state_reply => "unusable state reply",
    row_unusable_settings_reply => "unusable settings reply",
    row_starting_or_not_authorized => "starting or not authorized",
    row_instance_starting => "instance starting",
    row_chat_limit_used_up_2021 => "chat limit used up (2021)",
    row_instance_expired => "instance expired",
    row_instance_deleted => "instance deleted",
    row_instance_not_authorized => "instance not authorized",
    row_bad_request_data => "bad request data",
    row_validation_failed => "validation failed",
    row_field_validation => "field validation",
    row_malformed_json => "malformed JSON",
    row_other_400 => "other 400",
    row_token_rejected_401 => "token rejected (401)",
    row_instance_rejected_403 => "instance rejected (403)",
    row_wrong_verb_404 => "wrong verb (404)",
    row_rate_limited_429 => "rate limited (429)",
    row_quota_exceeded_466 => "quota exceeded (466)",
    row_client_closed_request_499 => "client closed request (499)",
    row_other_4xx => "other 4xx",
    row_bad_gateway_502 => "bad gateway (502)",
    row_unavailable_503_504 => "unavailable (503/504)",
    row_server_error_on_send => "server error on send",
    row_server_error_on_read => "server error on read",
    row_unexpected_status => "unexpected status",
}

#[test]
fn every_row_of_the_table_has_its_own_test() {
    let tested: BTreeSet<&str> = TESTED_ROWS.iter().copied().collect();
    for r in RULES {
        assert!(tested.contains(r.name), "row `{}` has no test", r.name);
    }
    assert_eq!(
        tested.len(),
        RULES.len(),
        "a test names a row the table does not have"
    );
}

#[tokio::test]
async fn rate_limit_carries_retry_after() {
    let e = env().await;
    e.ctl
        .inject(
            ID,
            Some(ApiMethod::GetStateInstance),
            1,
            Fault::canned(Canned::TooManyRequests, BodyForm::Plain).with_retry_after(7),
        )
        .expect("inject");
    let f = e.client.state(TIMEOUT).await.expect_err("429");
    assert_eq!(
        f.outcome,
        Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(f.rule, "rate limited (429)");
    assert_eq!(f.http_status, Some(429));
}

#[tokio::test]
async fn a_502_is_retried_exactly_three_times_then_unreachable() {
    let e = env().await;
    e.ctl
        .inject(
            ID,
            Some(ApiMethod::GetStateInstance),
            10,
            Fault::canned(Canned::BadGateway, BodyForm::Plain),
        )
        .expect("inject");
    let f = e.client.state(TIMEOUT).await.expect_err("502");
    assert_eq!(f.outcome, Outcome::Unreachable);
    assert_eq!(f.http_status, Some(502));
    assert_eq!(e.ctl.count("getStateInstance"), 4, "1 try + 3 retries");
    assert_eq!(e.client.attempts_made(), 4);
    assert_eq!(e.ctl.instance(ID).expect("instance").faults_pending, 6);

    // On a send too, and nothing is queued.
    e.ctl.clear_faults(ID).expect("clear");
    e.ctl
        .inject(
            ID,
            Some(ApiMethod::SendMessage),
            4,
            Fault::canned(Canned::BadGateway, BodyForm::Json),
        )
        .expect("inject");
    let r = e.client.send_message(CHAT, "canary", TIMEOUT).await;
    assert_eq!(r.outcome, Outcome::Unreachable);
    assert_eq!(r.message_id, None);
    assert_eq!(e.ctl.count("sendMessage"), 4);
    assert!(e.ctl.messages(ID).expect("messages").is_empty());
}

#[tokio::test]
async fn a_502_then_200_succeeds() {
    let e = env().await;
    e.ctl
        .inject(
            ID,
            Some(ApiMethod::GetStateInstance),
            1,
            Fault::canned(Canned::BadGateway, BodyForm::Plain),
        )
        .expect("inject");
    assert_eq!(
        e.client.state(TIMEOUT).await.expect("state"),
        InstanceState::Authorized
    );
    assert_eq!(e.ctl.count("getStateInstance"), 2);

    // Three 502s still leave the fourth try.
    e.ctl
        .inject(
            ID,
            Some(ApiMethod::SendMessage),
            3,
            Fault::canned(Canned::BadGateway, BodyForm::Plain),
        )
        .expect("inject");
    let r = e.client.send_message(CHAT, "canary", TIMEOUT).await;
    assert_eq!(r.outcome, Outcome::Delivered, "{r:?}");
    assert!(r.message_id.is_some());
    assert_eq!(e.ctl.count("sendMessage"), 4);
}

#[tokio::test]
async fn retries_follow_the_policy() {
    let e = env().await;
    let client = e.client.clone().with_retry_policy(RetryPolicy {
        delay_502: Duration::from_millis(1),
        retries_502: 0,
        retries_499: 0,
    });
    e.ctl
        .inject(
            ID,
            None,
            1,
            Fault::canned(Canned::BadGateway, BodyForm::Plain),
        )
        .expect("inject");
    assert_eq!(
        client.state(TIMEOUT).await.expect_err("502").outcome,
        Outcome::Unreachable
    );
    e.ctl
        .inject(
            ID,
            None,
            1,
            Fault::canned(Canned::ClientClosedRequest, BodyForm::Plain),
        )
        .expect("inject");
    assert_eq!(
        client
            .queue_contains("X", TIMEOUT)
            .await
            .expect_err("499")
            .outcome,
        Outcome::Timeout
    );
    assert_eq!(e.ctl.count("getStateInstance"), 1);
    assert_eq!(e.ctl.count("showMessagesQueue"), 1);
}

#[tokio::test]
async fn a_499_is_retried_once_then_timeout() {
    let e = env().await;
    e.ctl
        .inject(
            ID,
            Some(ApiMethod::SendMessage),
            5,
            Fault::canned(Canned::ClientClosedRequest, BodyForm::Plain),
        )
        .expect("inject");
    let r = e.client.send_message(CHAT, "canary", TIMEOUT).await;
    assert_eq!(r.outcome, Outcome::Timeout);
    assert_eq!(r.http_status, Some(499));
    assert_eq!(e.ctl.count("sendMessage"), 2, "1 try + 1 retry");
}

#[tokio::test]
async fn the_499_retry_waits_twice_as_long() {
    let e = env().await;
    // Normal replies take 300 ms; the request timeout is 200 ms; the 499
    // comes at once. Only a retry with the doubled timeout (400 ms) succeeds.
    e.ctl
        .set_latency(ID, Some(ApiMethod::SendMessage), Duration::from_millis(300))
        .expect("latency");
    e.ctl
        .inject(
            ID,
            Some(ApiMethod::SendMessage),
            1,
            Fault::canned(Canned::ClientClosedRequest, BodyForm::Plain).with_delay(Duration::ZERO),
        )
        .expect("inject");
    let timeout = Duration::from_millis(200);
    let r = e.client.send_message(CHAT, "canary", timeout).await;
    assert_eq!(r.outcome, Outcome::Delivered, "{r:?}");
    assert_eq!(e.ctl.count("sendMessage"), 2);

    // Without the 499 the same request times out on our side: no retry.
    let r = e.client.send_message(CHAT, "canary", timeout).await;
    assert_eq!(r.outcome, Outcome::Timeout, "{r:?}");
    assert_eq!(r.rule, "transport");
    assert_eq!(r.http_status, None);
    assert_no_token("transport timeout", &format!("{r:?}"));
    assert_eq!(e.ctl.count("sendMessage"), 3);
}

#[tokio::test]
async fn a_dead_endpoint_is_unreachable_without_showing_the_token() {
    // Bind and drop a listener: the port is then closed.
    let addr = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    };
    let client = GreenApiClient::new(&format!("http://{addr}"), ID, TOKEN, Duration::from_secs(1))
        .expect("client")
        .with_min_interval(Duration::ZERO);
    let f = client.state(TIMEOUT).await.expect_err("refused");
    assert_eq!(f.outcome, Outcome::Unreachable);
    assert_eq!(f.rule, "transport");
    assert_no_token("refused", &format!("{f:?} {f}"));
    let r = client.send_message(CHAT, "canary", TIMEOUT).await;
    assert_eq!(r.outcome, Outcome::Unreachable);
    assert_no_token("refused send", &format!("{r:?}"));
    let f = client.reboot(TIMEOUT).await.expect_err("refused");
    assert_no_token("refused reboot", &format!("{f:?}"));
}

#[tokio::test]
async fn the_queue_drains_after_queue_drain_after() {
    let e = env_with(|mut o| {
        o.queue_drain_after = Duration::from_secs(3);
        o
    })
    .await;
    let r = e.client.send_message(CHAT, "canary", TIMEOUT).await;
    assert_eq!(r.outcome, Outcome::Delivered);
    let id = r.message_id.expect("idMessage");
    assert_eq!(id.len(), 20);
    assert!(e.client.queue_contains(&id, TIMEOUT).await.expect("queue"));
    assert!(
        !e.client
            .queue_contains("OTHER", TIMEOUT)
            .await
            .expect("queue")
    );
    e.clock.advance(Duration::from_millis(2_999));
    assert!(e.client.queue_contains(&id, TIMEOUT).await.expect("queue"));
    e.clock.advance(Duration::from_millis(1));
    assert!(!e.client.queue_contains(&id, TIMEOUT).await.expect("queue"));
    let m = &e.ctl.messages(ID).expect("messages")[0];
    assert_eq!(m.status, MessageStatus::Sent);
    assert_eq!(m.chat_id, CHAT);
}

#[tokio::test]
async fn messages_wait_in_the_queue_while_the_instance_is_not_authorized() {
    let e = env().await;
    e.ctl.set_state(ID, SimState::NotAuthorized).expect("state");
    let id = e
        .client
        .send_message(CHAT, "canary", TIMEOUT)
        .await
        .message_id
        .expect("queued with 200 by default");
    e.clock.advance(Duration::from_secs(60));
    assert!(e.client.queue_contains(&id, TIMEOUT).await.expect("queue"));
    e.ctl.set_state(ID, SimState::Authorized).expect("state");
    assert!(!e.client.queue_contains(&id, TIMEOUT).await.expect("queue"));
}

#[tokio::test]
async fn a_queue_that_never_drains_stays_and_the_canary_is_stuck() {
    let e = env().await;
    e.ctl
        .set_queue_mode(ID, QueueMode::NeverDrains)
        .expect("mode");
    let id = e
        .client
        .send_message(CHAT, "canary", TIMEOUT)
        .await
        .message_id
        .expect("id");
    e.clock.advance(Duration::from_secs(3_600));
    assert!(e.client.queue_contains(&id, TIMEOUT).await.expect("queue"));
    let queue_body: Value = reqwest::get(format!(
        "{}/waInstance{ID}/showMessagesQueue/{TOKEN}",
        e.sim.url()
    ))
    .await
    .expect("get")
    .json()
    .await
    .expect("json");
    assert_eq!(
        queue_body,
        json!([{
            "messageID": id,
            "type": "sendMessage",
            "body": {"chatId": CHAT, "message": "canary"},
        }])
    );
}

#[tokio::test]
async fn a_yellow_card_drop_is_accepted_and_vanishes() {
    let e = env().await;
    e.ctl
        .set_queue_mode(ID, QueueMode::SilentDrop)
        .expect("mode");
    let r = e.client.send_message(CHAT, "canary", TIMEOUT).await;
    assert_eq!(
        r.outcome,
        Outcome::Delivered,
        "200 + idMessage as documented"
    );
    let id = r.message_id.expect("id");
    assert!(!e.client.queue_contains(&id, TIMEOUT).await.expect("queue"));
    let m = &e.ctl.messages(ID).expect("messages")[0];
    assert_eq!(m.status, MessageStatus::Dropped);
}

#[tokio::test]
async fn a_reboot_starts_then_returns_to_the_previous_state() {
    let e = env_with(|mut o| {
        o.reboot_starting_for = Duration::from_secs(90);
        o
    })
    .await;
    e.client.reboot(TIMEOUT).await.expect("reboot");
    assert_eq!(
        e.client.state(TIMEOUT).await.expect("state"),
        InstanceState::Starting
    );
    e.clock.advance(Duration::from_secs(89));
    assert_eq!(
        e.client.state(TIMEOUT).await.expect("state"),
        InstanceState::Starting
    );
    e.clock.advance(Duration::from_secs(1));
    assert_eq!(
        e.client.state(TIMEOUT).await.expect("state"),
        InstanceState::Authorized
    );

    // The previous state, whatever it was.
    e.ctl.set_state(ID, SimState::SleepMode).expect("state");
    e.client.reboot(TIMEOUT).await.expect("reboot");
    assert_eq!(e.ctl.state(ID).expect("state"), SimState::Starting);
    e.clock.advance(Duration::from_secs(90));
    assert_eq!(
        e.client.state(TIMEOUT).await.expect("state"),
        InstanceState::SleepMode
    );
    assert_eq!(e.ctl.count("reboot"), 2);
}

#[tokio::test]
async fn every_state_value_reads_back_including_null() {
    let e = env().await;
    let expected = [
        (SimState::Authorized, InstanceState::Authorized, None),
        (
            SimState::NotAuthorized,
            InstanceState::NotAuthorized,
            Some(Outcome::NeedsPairing),
        ),
        (
            SimState::Blocked,
            InstanceState::Blocked,
            Some(Outcome::Blocked(BlockKind::Banned)),
        ),
        (
            SimState::YellowCard,
            InstanceState::YellowCard,
            Some(Outcome::Blocked(BlockKind::YellowCard)),
        ),
        (
            SimState::SleepMode,
            InstanceState::SleepMode,
            Some(Outcome::NotReady(NotReadyKind::Sleeping)),
        ),
        (
            SimState::Starting,
            InstanceState::Starting,
            Some(Outcome::NotReady(NotReadyKind::Starting)),
        ),
        (
            SimState::Provisioning,
            InstanceState::Provisioning,
            Some(Outcome::NotReady(NotReadyKind::Provisioning)),
        ),
    ];
    assert_eq!(expected.len(), SimState::ALL.len());
    for (sim_state, state, outcome) in expected {
        e.ctl.set_state(ID, sim_state).expect("set");
        let read = e.client.state(TIMEOUT).await.expect("state");
        assert_eq!(read, state);
        assert_eq!(read.outcome(), outcome, "{state:?}");
    }
    // The wire form of the null state really is JSON null.
    e.ctl.set_state(ID, SimState::Provisioning).expect("set");
    let raw = reqwest::get(format!(
        "{}/waInstance{ID}/getStateInstance/{TOKEN}",
        e.sim.url()
    ))
    .await
    .expect("get")
    .text()
    .await
    .expect("text");
    assert_eq!(raw, "null");
}

#[tokio::test]
async fn a_wrong_token_is_401_and_an_unknown_instance_403() {
    let e = env().await;
    let wrong = GreenApiClient::new(
        &e.sim.url(),
        ID,
        "tok3n-SEKRET-wrong",
        Duration::from_secs(1),
    )
    .expect("client")
    .with_min_interval(Duration::ZERO);
    let f = wrong.state(TIMEOUT).await.expect_err("401");
    assert_eq!(f.outcome, Outcome::AuthRejected);
    assert_eq!(f.http_status, Some(401));
    assert_eq!(f.rule, "token rejected (401)");
    assert_no_token("401", &format!("{f:?}"));

    let unknown = GreenApiClient::new(&e.sim.url(), "1101999999", TOKEN, Duration::from_secs(1))
        .expect("client")
        .with_min_interval(Duration::ZERO);
    let r = unknown.send_message(CHAT, "canary", TIMEOUT).await;
    assert_eq!(r.outcome, Outcome::AuthRejected);
    assert_eq!(r.http_status, Some(403));
    assert_eq!(r.rule, "instance rejected (403)");

    let calls = e.ctl.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].status, 401);
    assert_eq!(calls[0].method_name, "getStateInstance");
    assert_eq!(calls[1].status, 403);
    assert_eq!(calls[1].instance, "1101999999");
    assert_no_token("call log", &format!("{calls:?}"));
    assert!(e.ctl.messages(ID).expect("messages").is_empty());
}

#[tokio::test]
async fn the_simulator_answers_wrong_verbs_with_404_and_options_with_204() {
    let e = env().await;
    let http = reqwest::Client::new();
    let url = |m: &str| format!("{}/waInstance{ID}/{m}/{TOKEN}", e.sim.url());
    let r = http
        .post(url("getStateInstance"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 404);
    let r = http.get(url("sendMessage")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 404);
    let r = http
        .get(url("deleteInstanceAccount"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 404);
    let r = http
        .request(reqwest::Method::OPTIONS, url("getStateInstance"))
        .send()
        .await
        .expect("options");
    assert_eq!(r.status().as_u16(), 204);
    // Method names match case-insensitively.
    let r = http.get(url("GetStateInstance")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(e.ctl.count("getStateInstance"), 3);
}

#[tokio::test]
async fn malformed_paths_are_refused_and_logged_without_the_token() {
    let e = env().await;
    let http = reqwest::Client::new();
    let base = e.sim.url();
    let status = |p: String| {
        let http = http.clone();
        async move { http.get(p).send().await.expect("get").status().as_u16() }
    };
    // The token where the method belongs.
    assert_eq!(status(format!("{base}/waInstance{ID}/{TOKEN}")).await, 401);
    assert_eq!(
        status(format!("{base}/waInstance{ID}/{TOKEN}/{TOKEN}")).await,
        404
    );
    // No waInstance prefix, or not digits: a wrong URL is 403 (Green-API docs: Common errors).
    assert_eq!(
        status(format!("{base}/{ID}/getStateInstance/{TOKEN}")).await,
        403
    );
    assert_eq!(
        status(format!("{base}/waInstance{TOKEN}/getStateInstance/{TOKEN}")).await,
        403
    );
    let calls = e.ctl.calls();
    assert_eq!(calls.len(), 4);
    assert_no_token("call log", &format!("{calls:?}"));
    assert_eq!(calls[3].instance, "<invalid>");
}

#[tokio::test]
async fn the_simulator_validates_sends_in_either_body_form() {
    let e = env().await;
    for form in [BodyForm::Plain, BodyForm::Json] {
        e.ctl.set_error_form(ID, form).expect("form");
        let r = e.client.send_message("12345", "canary", TIMEOUT).await;
        assert_eq!(r.outcome, Outcome::BadRequest, "{form:?} {r:?}");
        assert_eq!(r.rule, "field validation");
        assert!(
            r.detail.contains("must be one of the next formats"),
            "{}",
            r.detail
        );
        let r = e.client.send_message(CHAT, "", TIMEOUT).await;
        assert_eq!(r.outcome, Outcome::BadRequest, "{form:?} {r:?}");
        let r = e
            .client
            .send_message(CHAT, &"x".repeat(20_001), TIMEOUT)
            .await;
        assert_eq!(r.outcome, Outcome::BadRequest, "{form:?} {r:?}");
    }
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/waInstance{ID}/sendMessage/{TOKEN}",
            e.sim.url()
        ))
        .header("content-type", "application/json")
        .body("{\"chatId\": }")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("json form");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Unexpected token } in JSON at position")),
        "{body}"
    );
    assert!(e.ctl.messages(ID).expect("messages").is_empty());
}

#[tokio::test]
async fn sends_can_be_rejected_while_not_ready() {
    let e = env().await;
    e.ctl
        .set_send_when_not_ready(ID, SendWhenNotReady::Reject)
        .expect("mode");
    e.ctl.set_state(ID, SimState::Starting).expect("state");
    let r = e.client.send_message(CHAT, "canary", TIMEOUT).await;
    assert_eq!(r.outcome, Outcome::NotReady(NotReadyKind::Starting));
    assert_eq!(r.rule, "instance starting");
    e.ctl.set_state(ID, SimState::NotAuthorized).expect("state");
    let r = e.client.send_message(CHAT, "canary", TIMEOUT).await;
    assert_eq!(r.outcome, Outcome::NeedsPairing);
    e.ctl.set_state(ID, SimState::Provisioning).expect("state");
    let r = e.client.send_message(CHAT, "canary", TIMEOUT).await;
    assert_eq!(r.outcome, Outcome::NeedsPairing);
    assert!(e.ctl.messages(ID).expect("messages").is_empty());
}

#[tokio::test]
async fn the_forbidden_methods_exist_in_the_simulator() {
    let e = env_with(|mut o| {
        o.reboot_starting_for = Duration::from_secs(10);
        o
    })
    .await;
    e.ctl
        .set_queue_mode(ID, QueueMode::NeverDrains)
        .expect("mode");
    let http = reqwest::Client::new();
    let url = |m: &str| format!("{}/waInstance{ID}/{m}/{TOKEN}", e.sim.url());

    let _ = e.client.send_message(CHAT, "canary", TIMEOUT).await;
    let r: Value = http
        .get(url("clearMessagesQueue"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(r, json!({"isCleared": true}));
    assert_eq!(
        e.ctl.messages(ID).expect("messages")[0].status,
        MessageStatus::Cleared
    );

    let r: Value = http
        .post(url("setSettings"))
        .json(&json!({"stateWebhook": "yes"}))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(r, json!({"saveSettings": true}));
    assert_eq!(
        e.ctl.state(ID).expect("state"),
        SimState::Starting,
        "setSettings reboots"
    );
    e.clock.advance(Duration::from_secs(10));
    assert_eq!(e.ctl.state(ID).expect("state"), SimState::Authorized);

    let r: Value = http
        .get(url("logout"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(r, json!({"isLogout": true}));
    assert_eq!(
        e.client.state(TIMEOUT).await.expect("state"),
        InstanceState::NotAuthorized
    );
    let counts = e.ctl.counts();
    assert_eq!(counts.get("logout"), Some(&1));
    assert_eq!(counts.get("setSettings"), Some(&1));
    assert_eq!(counts.get("clearMessagesQueue"), Some(&1));
}

#[tokio::test]
async fn the_simulator_enforces_the_documented_rate_limits_on_request() {
    let e = env().await;
    e.ctl.set_rate_limits(ID, true).expect("limits");
    assert!(e.client.state(TIMEOUT).await.is_ok());
    let f = e
        .client
        .state(TIMEOUT)
        .await
        .expect_err("second in the same second");
    assert_eq!(f.outcome, Outcome::RateLimited { retry_after: None });
    // Another method has its own budget.
    assert!(e.client.wid(TIMEOUT).await.is_ok());
    e.clock.advance(Duration::from_secs(1));
    assert!(e.client.state(TIMEOUT).await.is_ok());
}

#[tokio::test]
async fn the_client_paces_each_method_against_the_simulator() {
    // The system clock here: the call log's times are real.
    let opts = GreenSimOptions::new(Clock::system(), vec![SimInstance::new(ID, TOKEN, WID)]);
    let sim = start("127.0.0.1:0".parse().expect("addr"), opts)
        .await
        .expect("start");
    let ctl = sim.control();
    let interval = Duration::from_millis(100);
    let client = GreenApiClient::new(&sim.url(), ID, TOKEN, Duration::from_secs(2))
        .expect("client")
        .with_min_interval(interval);
    let started = std::time::Instant::now();
    for _ in 0..3 {
        client.state(TIMEOUT).await.expect("state");
    }
    let paced = started.elapsed();
    let _ = client.send_message(CHAT, "a", TIMEOUT).await;
    let _ = client.send_message(CHAT, "b", TIMEOUT).await;
    let at = |name: &str| -> Vec<i64> {
        ctl.calls()
            .iter()
            .filter(|c| c.method_name == name)
            .map(|c| c.at.as_millis())
            .collect()
    };
    let states = at("getStateInstance");
    assert_eq!(states.len(), 3);
    // The pacer spaces departures (exactly: see the paused-clock tests in
    // green_api_tests.rs): the third leaves at least two intervals after the
    // first, so three calls take at least that long. Arrival times at the
    // simulator are no measure on a loaded machine (a request can arrive
    // late and the next one right after it), so only this lower bound is
    // checked.
    assert!(
        paced >= interval * 2,
        "3 paced calls took {paced:?}: {states:?}"
    );
    assert_eq!(at("sendMessage").len(), 2, "sends are not paced");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_http_control_api_drives_the_simulator_and_hides_tokens() {
    let e = env().await;
    let http = reqwest::Client::new();
    let ctl = |p: &str| format!("{}/_sim{p}", e.sim.url());

    let r = http
        .put(ctl(&format!("/instances/{ID}/state")))
        .json(&json!({"state": null}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        e.client.state(TIMEOUT).await.expect("state"),
        InstanceState::Provisioning
    );
    let r = http
        .put(ctl(&format!("/instances/{ID}/state")))
        .json(&json!({"state": "yellowCard"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        e.client.state(TIMEOUT).await.expect("state"),
        InstanceState::YellowCard
    );
    let r = http
        .put(ctl(&format!("/instances/{ID}/state")))
        .json(&json!({"state": "pendingCode"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .put(ctl("/instances/999/state"))
        .json(&json!({"state": "authorized"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 404);
    http.put(ctl(&format!("/instances/{ID}/state")))
        .json(&json!({"state": "authorized"}))
        .send()
        .await
        .expect("put");

    let r = http
        .post(ctl(&format!("/instances/{ID}/faults")))
        .json(&json!({"method": "sendMessage", "times": 2, "canned": "instance_starting_typo"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .post(ctl(&format!("/instances/{ID}/faults")))
        .json(&json!({"method": "sendMessage", "times": 2, "canned": "starting", "form": "json"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 204);
    for _ in 0..2 {
        let r = e.client.send_message(CHAT, "canary", TIMEOUT).await;
        assert_eq!(r.outcome, Outcome::NotReady(NotReadyKind::Starting));
    }
    let r = http
        .post(ctl(&format!("/instances/{ID}/faults")))
        .json(&json!({"status": 429, "body": "slow down", "retry_after": 3}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 204);
    let f = e.client.wid(TIMEOUT).await.expect_err("429");
    assert_eq!(
        f.outcome,
        Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );

    let r = http
        .put(ctl(&format!("/instances/{ID}/queue_mode")))
        .json(&json!({"mode": "never_drains"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 204);
    let id = e
        .client
        .send_message(CHAT, "canary", TIMEOUT)
        .await
        .message_id
        .expect("id");
    let r = http
        .post(ctl("/clock/advance"))
        .json(&json!({"ms": 60_000}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(e.clock.now(), Timestamp(T0 + 60_000));
    assert!(e.client.queue_contains(&id, TIMEOUT).await.expect("queue"));

    let messages: Value = http
        .get(ctl(&format!("/instances/{ID}/messages")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(messages[0]["id_message"], json!(id));
    assert_eq!(messages[0]["status"], json!("queued"));

    let counts: Value = http
        .get(ctl("/calls/counts"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(counts["sendMessage"], json!(3));
    assert_eq!(counts["getSettings"], json!(1));

    let mut everything = String::new();
    for p in [
        "/instances".to_string(),
        format!("/instances/{ID}"),
        format!("/instances/{ID}/messages"),
        "/calls".to_string(),
        "/calls/counts".to_string(),
        "/canned".to_string(),
        "/clock".to_string(),
    ] {
        let r = http.get(ctl(&p)).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 200, "{p}");
        everything.push_str(&r.text().await.expect("text"));
    }
    assert_no_token("control API", &everything);
    assert!(everything.contains(WID));

    let r = http.delete(ctl("/calls")).send().await.expect("delete");
    assert_eq!(r.status().as_u16(), 204);
    assert!(e.ctl.calls().is_empty());
}

// ---------------------------------------------------------------------------
// The journal: getMessage, message fates, the backlog

/// One raw Green-API call: (status, body text).
async fn raw(e: &Env, method: &str, body: Option<Value>) -> (u16, String) {
    let http = reqwest::Client::new();
    let url = format!("{}/waInstance{ID}/{method}/{TOKEN}", e.sim.url());
    let req = match body {
        Some(b) => http.post(url).json(&b),
        None => http.get(url),
    };
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

async fn sim_send(e: &Env, chat: &str) -> String {
    let (status, text) = raw(
        e,
        "sendMessage",
        Some(json!({"chatId": chat, "message": "canary"})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["idMessage"].as_str().expect("idMessage").to_owned()
}

async fn get_message(e: &Env, chat: &str, id: &str) -> (u16, String) {
    raw(
        e,
        "getMessage",
        Some(json!({"chatId": chat, "idMessage": id})),
    )
    .await
}

fn status_of(text: &str) -> Value {
    serde_json::from_str::<Value>(text).expect("json")["statusMessage"].clone()
}

#[tokio::test]
async fn get_message_reports_the_status_progression() {
    let e = env_with(|mut o| {
        o.journal_lag = Duration::from_secs(10);
        o
    })
    .await;
    let own = sim_send(&e, WID).await;
    let other = sim_send(&e, CHAT).await;
    // Not in the journal yet: 404 by default.
    assert_eq!(
        get_message(&e, WID, &own).await,
        (404, "Not Found".to_owned())
    );
    e.clock.advance(Duration::from_secs(10));
    let (status, text) = get_message(&e, WID, &own).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "outgoing");
    assert_eq!(v["idMessage"], own.as_str());
    assert_eq!(v["chatId"], WID);
    assert_eq!(v["textMessage"], "canary");
    assert_eq!(v["sendByApi"], true);
    // Left the queue: `sent` to one's own number, `delivered` elsewhere.
    assert_eq!(v["statusMessage"], "sent");
    assert_eq!(
        status_of(&get_message(&e, CHAT, &other).await.1),
        "delivered"
    );
    // The chat must match the message.
    assert_eq!(get_message(&e, CHAT, &own).await.0, 404);

    e.ctl.set_queue_mode(ID, QueueMode::NeverDrains).unwrap();
    let queued = sim_send(&e, WID).await;
    e.clock.advance(Duration::from_secs(10));
    assert_eq!(status_of(&get_message(&e, WID, &queued).await.1), "pending");

    // The other not-found forms.
    e.ctl
        .set_not_found_form(ID, NotFoundForm::EmptyBody)
        .unwrap();
    assert_eq!(get_message(&e, WID, "NOPE").await, (200, String::new()));
    e.ctl
        .set_not_found_form(ID, NotFoundForm::EmptyObject)
        .unwrap();
    assert_eq!(get_message(&e, WID, "NOPE").await, (200, "{}".to_owned()));
    // Bad bodies are 400s, GET is a wrong verb.
    assert_eq!(
        raw(&e, "getMessage", Some(json!({"chatId": WID}))).await.0,
        400
    );
    assert_eq!(raw(&e, "getMessage", None).await.0, 404);
    assert_eq!(e.ctl.count("getMessage"), 9);
}

#[tokio::test]
async fn fates_leaves_failed_until_reboot_and_no_account_sticks() {
    let e = env().await;
    e.ctl.set_fate(ID, MessageFate::LeavesFailed).unwrap();
    let id = sim_send(&e, WID).await;
    e.clock.advance(Duration::from_secs(1));
    let (_, text) = get_message(&e, WID, &id).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["statusMessage"], "failed");
    assert_eq!(v["description"], FAILED_DESCRIPTION);
    // It left the queue: the old verdict would have called it delivered.
    assert!(e.ctl.queued(ID).unwrap().is_empty());
    assert_eq!(e.ctl.messages(ID).unwrap()[0].status, MessageStatus::Failed);

    // A reboot clears it.
    assert_eq!(raw(&e, "reboot", None).await.0, 200);
    e.clock.advance(Duration::from_secs(60));
    let id = sim_send(&e, WID).await;
    e.clock.advance(Duration::from_secs(1));
    assert_eq!(status_of(&get_message(&e, WID, &id).await.1), "sent");

    e.ctl.set_fate(ID, MessageFate::NoAccount).unwrap();
    raw(&e, "reboot", None).await;
    e.clock.advance(Duration::from_secs(60));
    let id = sim_send(&e, CHAT).await;
    e.clock.advance(Duration::from_secs(1));
    assert_eq!(status_of(&get_message(&e, CHAT, &id).await.1), "noAccount");
    assert_eq!(e.ctl.instance(ID).unwrap().fate, MessageFate::NoAccount);
}

#[tokio::test]
async fn a_backlog_above_500_hides_the_canary_from_show_messages_queue() {
    let e = env().await;
    e.ctl.add_backlog(ID, 600).unwrap();
    let canary = sim_send(&e, WID).await;
    e.clock.advance(Duration::from_secs(30));
    let (status, text) = raw(&e, "showMessagesQueue", None).await;
    assert_eq!(status, 200);
    let listed: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(listed.len(), QUEUE_LIST_CAP);
    assert!(!text.contains(&canary), "the canary is the 601st");
    assert_eq!(e.ctl.queued(ID).unwrap().len(), 601);
    // The journal still knows it is pending.
    assert_eq!(status_of(&get_message(&e, WID, &canary).await.1), "pending");
    // A reboot lets the queue drain.
    raw(&e, "reboot", None).await;
    e.clock.advance(Duration::from_secs(60));
    assert_eq!(status_of(&get_message(&e, WID, &canary).await.1), "sent");
    assert!(e.ctl.queued(ID).unwrap().is_empty());
}

#[tokio::test]
async fn journal_controls_over_http() {
    let e = env().await;
    let http = reqwest::Client::new();
    let base = format!("{}/_sim/instances/{ID}", e.sim.url());
    let put = |path: &str, body: Value| http.put(format!("{base}/{path}")).json(&body).send();
    assert_eq!(
        put("fate", json!({"fate": "leaves_failed"}))
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    assert_eq!(e.ctl.instance(ID).unwrap().fate, MessageFate::LeavesFailed);
    assert_eq!(
        put("fate", json!({"fate": "lost"}))
            .await
            .unwrap()
            .status()
            .as_u16(),
        400
    );
    assert_eq!(
        put("not_found_form", json!({"form": "empty_object"}))
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let r = http
        .post(format!("{base}/backlog"))
        .json(&json!({"count": 501}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(e.ctl.queued(ID).unwrap().len(), 501);
    assert_eq!(
        e.ctl.instance(ID).unwrap().queue_mode,
        QueueMode::StuckUntilReboot
    );
}
