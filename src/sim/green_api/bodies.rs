//! The bytes of a reply: status, `Content-Type` and body in the requested
//! [`BodyForm`], `Retry-After`; and the `getSettings` body. Nothing here
//! reads state or the clock; callers pass what the body needs.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::faults::{BodyForm, Fault};

pub(super) fn text_reply(status: u16, text: &str) -> Response {
    reply(&Fault::new(status, text, BodyForm::Plain))
}

pub(super) fn json_reply(status: u16, body: &Value) -> Response {
    reply(&Fault::new(status, &body.to_string(), BodyForm::Raw))
}

pub(super) fn reply(f: &Fault) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (content_type, body) = match f.form {
        BodyForm::Plain => ("text/plain; charset=utf-8", f.body.clone()),
        BodyForm::Json => (
            "application/json; charset=utf-8",
            json!({ "message": f.body }).to_string(),
        ),
        BodyForm::Raw => ("application/json; charset=utf-8", f.body.clone()),
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(secs) = f.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

pub(super) fn error_reply(form: BodyForm, status: u16, text: &str) -> Response {
    reply(&Fault::new(status, text, form))
}

/// A `getSettings` body (Green-API docs: getSettings): flags are the strings "yes"/"no".
pub(super) fn settings(wid: &str) -> Value {
    json!({
        "wid": wid,
        "countryInstance": "",
        "typeAccount": "",
        "webhookUrl": "",
        "webhookUrlToken": "",
        "delaySendMessagesMilliseconds": 5000,
        "markIncomingMessagesReaded": "no",
        "markIncomingMessagesReadedOnReply": "no",
        "sharedSession": "no",
        "outgoingWebhook": "no",
        "outgoingMessageWebhook": "no",
        "outgoingAPIMessageWebhook": "no",
        "incomingWebhook": "no",
        "deviceWebhook": "no",
        "statusInstanceWebhook": "no",
        "stateWebhook": "no",
        "enableMessagesHistory": "no",
        "keepOnlineStatus": "no",
        "pollMessageWebhook": "no",
        "incomingBlockWebhook": "no",
        "incomingCallWebhook": "no",
        "editedMessageWebhook": "no",
        "deletedMessageWebhook": "no"
    })
}
