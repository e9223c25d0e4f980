//! Faults a test can inject: the documented error replies ([`Canned`],
//! Green-API docs: Common errors, HTTP 466), any other reply ([`Fault`]), the shape
//! of an error body ([`BodyForm`]), and the injections queued on an instance.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::request::ApiMethod;

/// The shape of an error body (Green-API docs: Common errors; which one the server uses is unconfirmed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyForm {
    /// `text/plain`: the text as is.
    Plain,
    /// `application/json`: `{"message": text}`.
    Json,
    /// `application/json`: the text is already the whole JSON body.
    Raw,
}

/// The documented error replies (Green-API docs: Common errors, HTTP 466), ready to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Canned {
    Starting,
    StartingOrNotAuthorized,
    NotAuthorized,
    Expired,
    Deleted,
    BadRequestData,
    ValidationFailed,
    BadRequest,
    ChatIdFormat,
    FieldRequired,
    FieldNotAllowed,
    FieldEmpty,
    MessageTooLong,
    MessageIdTooShort,
    UnexpectedToken,
    ChatLimit2021,
    Unauthorized,
    Forbidden,
    WrongVerb,
    TooManyRequests,
    /// 466 with `correspondentsStatus` (the body's `QUOTE` spelling).
    Quota,
    /// 466 with `invokeStatus` in the webhook's `QUOTA` spelling.
    QuotaWebhookSpelling,
    ClientClosedRequest,
    ServerError,
    BadGateway,
    ServiceUnavailable,
    GatewayTimeout,
    /// 200 `{"code":401,"description":"Unauthorized"}` (ISS-619).
    CodeInBody401,
    /// 200 `{"status":false,"reason":"instance is starting or not authorized"}`.
    Refusal,
    /// 200 `{"isReboot": false}`.
    RebootFalse,
}

impl Canned {
    pub const ALL: [Canned; 30] = [
        Canned::Starting,
        Canned::StartingOrNotAuthorized,
        Canned::NotAuthorized,
        Canned::Expired,
        Canned::Deleted,
        Canned::BadRequestData,
        Canned::ValidationFailed,
        Canned::BadRequest,
        Canned::ChatIdFormat,
        Canned::FieldRequired,
        Canned::FieldNotAllowed,
        Canned::FieldEmpty,
        Canned::MessageTooLong,
        Canned::MessageIdTooShort,
        Canned::UnexpectedToken,
        Canned::ChatLimit2021,
        Canned::Unauthorized,
        Canned::Forbidden,
        Canned::WrongVerb,
        Canned::TooManyRequests,
        Canned::Quota,
        Canned::QuotaWebhookSpelling,
        Canned::ClientClosedRequest,
        Canned::ServerError,
        Canned::BadGateway,
        Canned::ServiceUnavailable,
        Canned::GatewayTimeout,
        Canned::CodeInBody401,
        Canned::Refusal,
        Canned::RebootFalse,
    ];

    pub fn status(self) -> u16 {
        match self {
            Canned::Starting
            | Canned::StartingOrNotAuthorized
            | Canned::NotAuthorized
            | Canned::Expired
            | Canned::Deleted
            | Canned::BadRequestData
            | Canned::ValidationFailed
            | Canned::BadRequest
            | Canned::ChatIdFormat
            | Canned::FieldRequired
            | Canned::FieldNotAllowed
            | Canned::FieldEmpty
            | Canned::MessageTooLong
            | Canned::MessageIdTooShort
            | Canned::UnexpectedToken
            | Canned::ChatLimit2021 => 400,
            Canned::Unauthorized => 401,
            Canned::Forbidden => 403,
            Canned::WrongVerb => 404,
            Canned::TooManyRequests => 429,
            Canned::Quota | Canned::QuotaWebhookSpelling => 466,
            Canned::ClientClosedRequest => 499,
            Canned::ServerError => 500,
            Canned::BadGateway => 502,
            Canned::ServiceUnavailable => 503,
            Canned::GatewayTimeout => 504,
            Canned::CodeInBody401 | Canned::Refusal | Canned::RebootFalse => 200,
        }
    }

    /// The body text (the error id of the docs, or a whole JSON body for the
    /// rows that [`Canned::is_json_body`]).
    pub fn text(self) -> &'static str {
        match self {
            Canned::Starting => "instance in starting process try later",
            Canned::StartingOrNotAuthorized => "instance is starting or not authorized",
            Canned::NotAuthorized => "instance account not authorized",
            Canned::Expired => {
                "Instance account is expired. Renew your instance from personal area"
            }
            Canned::Deleted => "Instance is deleted",
            Canned::BadRequestData => "bad request data",
            Canned::ValidationFailed => {
                "Validation failed. Details: 'chatId' must be one of the next formats: 'phone_number@c.us' or 'group_id@g.us'"
            }
            Canned::BadRequest => "Bad Request",
            Canned::ChatIdFormat => {
                "'chatId' must be one of the next formats: 'phone_number@c.us' or 'group_id@g.us'"
            }
            Canned::FieldRequired => "'message' is required",
            Canned::FieldNotAllowed => "'foo' is not allowed",
            Canned::FieldEmpty => "'message' is not allowed to be empty",
            Canned::MessageTooLong => {
                "'message' length must be less than or equal to 20000 characters long"
            }
            Canned::MessageIdTooShort => "'message id' must be at least 16 symbols",
            Canned::UnexpectedToken => "Unexpected token } in JSON at position 42",
            Canned::ChatLimit2021 => {
                "You have used up the chat limit on your tariff. Renew you instance from personal area."
            }
            Canned::Unauthorized => "Unauthorized",
            Canned::Forbidden => "Forbidden",
            Canned::WrongVerb => "Not Found",
            Canned::TooManyRequests => "Too Many Requests",
            Canned::Quota => {
                r#"{"invokeStatus":{"method":"sendmessage","used":12,"total":0,"status":"QUOTE_ALLOWED","description":""},"correspondentsStatus":{"method":"correspondents","used":3,"total":3,"status":"CORRESPONDENTS_QUOTE_EXCEEDED","description":"Monthly quota has been exceeded. You can send messages to chats: 79001234567@c.us, 79001234568@c.us, 79001234569@c.us"}}"#
            }
            Canned::QuotaWebhookSpelling => {
                r#"{"invokeStatus":{"method":"sendmessage","used":100,"total":100,"status":"QUOTA_EXCEEDED","description":"Monthly quota has been exceeded"}}"#
            }
            Canned::ClientClosedRequest => "Client Closed Request",
            Canned::ServerError => {
                "File from url exceeded max upload size. Size: 120mb Limit: 100mb Url: https://example.com/big.bin"
            }
            Canned::BadGateway => "Bad Gateway",
            Canned::ServiceUnavailable => "Service Unavailable",
            Canned::GatewayTimeout => "Gateway Timeout",
            Canned::CodeInBody401 => r#"{"code":401,"description":"Unauthorized"}"#,
            Canned::Refusal => {
                r#"{"status":false,"reason":"instance is starting or not authorized"}"#
            }
            Canned::RebootFalse => r#"{"isReboot":false}"#,
        }
    }

    /// Bodies that are JSON by documentation (466, the 200 shapes): the
    /// requested [`BodyForm`] does not apply to them.
    pub fn is_json_body(self) -> bool {
        matches!(
            self,
            Canned::Quota
                | Canned::QuotaWebhookSpelling
                | Canned::CodeInBody401
                | Canned::Refusal
                | Canned::RebootFalse
        )
    }

    /// The snake_case name used by the HTTP control API.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// One injected reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub status: u16,
    pub body: String,
    pub form: BodyForm,
    /// `Retry-After` in seconds (none is documented for 429).
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Real-time delay before this reply, instead of the instance's latency
    /// (so a test can answer the first attempt fast and a retry slowly).
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

impl Fault {
    pub fn new(status: u16, body: &str, form: BodyForm) -> Fault {
        Fault {
            status,
            body: body.to_string(),
            form,
            retry_after: None,
            delay_ms: None,
        }
    }

    /// A documented reply; `form` applies to text bodies only.
    pub fn canned(c: Canned, form: BodyForm) -> Fault {
        let form = if c.is_json_body() {
            BodyForm::Raw
        } else {
            form
        };
        Fault::new(c.status(), c.text(), form)
    }

    pub fn with_retry_after(mut self, secs: u64) -> Fault {
        self.retry_after = Some(secs);
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Fault {
        self.delay_ms = Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        self
    }
}

pub(super) struct Injection {
    /// None: every method.
    pub(super) method: Option<ApiMethod>,
    pub(super) remaining: u32,
    pub(super) fault: Fault,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn canned_json_bodies_parse_and_names_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        for c in Canned::ALL {
            if c.is_json_body() {
                assert!(serde_json::from_str::<Value>(c.text()).is_ok(), "{c:?}");
            }
            assert!(names.insert(c.name()), "{c:?}");
        }
    }
}
