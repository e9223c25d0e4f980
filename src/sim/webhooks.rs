//! What the providers push, sent the way they send it: the simulators'
//! webhook sender, for tests, the demo and `simulate`.
//!
//! WAHA (WAHA docs "Events → Webhooks"): POST of the JSON envelope `{id:
//! "evt_…", timestamp: <ms>, event, session, me, payload, engine,
//! environment}` with `X-Webhook-Request-Id`, `X-Webhook-Timestamp` (ms) and,
//! with a key, `X-Webhook-Hmac` (hex HMAC-SHA512 of the body) and
//! `X-Webhook-Hmac-Algorithm: sha512`. Green-API (Green-API docs "Webhook
//! Endpoint", "Notifications format"): POST of the notification with
//! `Authorization: Bearer <webhookUrlToken>` when a token is set.
//!
//! Faults: [`HookFault::WrongSignature`] signs with another key (or sends
//! another token); [`HookFault::Replay`] sends every request twice, byte for
//! byte, and [`HookSender::replay`] sends the last one again, as a
//! provider's retry or an attacker's replay would.
//!
//! The simulators push by themselves when given a [`HookTarget`]
//! (`WahaSimOptions::webhook`, `GreenSimOptions::webhook`, or at run time
//! `SimControl::set_webhook`; `wa-watchdog simulate --webhook-url ...`):
//! WAHA `message.ack` as a sent message's ack moves on the simulator's clock
//! and `session.status` when a session's status is set or it restarts;
//! Green-API `outgoingMessageStatus` when a message leaves the queue and
//! `stateInstanceChanged` when the state is set. Every answer the receiver
//! gives is kept ([`HookSender::answers`]).

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::clock::{Clock, Timestamp};
use crate::webhooks::auth::sign_waha;

/// How the sender authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookAuth {
    /// Nothing (a provider without a key).
    None,
    /// WAHA: `X-Webhook-Hmac` with this key.
    Hmac(String),
    /// Green-API: `Authorization: Bearer` with this token.
    Token(String),
}

/// A fault of the next sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HookFault {
    #[default]
    None,
    /// Signed with the wrong key / the wrong token.
    WrongSignature,
    /// Every request is sent twice, the second a byte-for-byte replay.
    Replay,
}

impl std::str::FromStr for HookFault {
    type Err = String;

    /// `none`, `wrong-signature`, `replay` (the `simulate` flag).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(HookFault::None),
            "wrong-signature" => Ok(HookFault::WrongSignature),
            "replay" => Ok(HookFault::Replay),
            other => Err(format!(
                "unknown webhook fault `{other}` (none, wrong-signature, replay)"
            )),
        }
    }
}

/// Where a simulator pushes its events, and which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookTarget {
    /// The receiver, e.g. `http://127.0.0.1:9797/webhooks/waha`.
    pub url: String,
    pub auth: HookAuth,
    /// Event names to push (`message.ack`, `session.status`,
    /// `outgoingMessageStatus`, `stateInstanceChanged`); empty: all.
    pub events: Vec<String>,
    /// The fault of every push from the start.
    pub fault: HookFault,
}

impl HookTarget {
    /// All events to `url`, no fault.
    pub fn new(url: impl Into<String>, auth: HookAuth) -> HookTarget {
        HookTarget {
            url: url.into(),
            auth,
            events: Vec::new(),
            fault: HookFault::None,
        }
    }

    /// Whether `event` is pushed.
    pub fn wants(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }

    /// A sender to this target on `clock`, with the target's fault.
    pub fn sender(&self, clock: Clock) -> HookSender {
        let s = HookSender::new(self.url.clone(), self.auth.clone(), clock);
        s.set_fault(self.fault);
        s
    }
}

/// A simulator's push target and its sender, set at start or at run time.
#[derive(Debug, Default)]
pub(crate) struct SimHooks {
    current: Mutex<Option<(HookTarget, HookSender)>>,
}

impl SimHooks {
    pub(crate) fn new(target: Option<HookTarget>, clock: &Clock) -> SimHooks {
        let hooks = SimHooks::default();
        hooks.set(target, clock);
        hooks
    }

    pub(crate) fn set(&self, target: Option<HookTarget>, clock: &Clock) {
        let next = target.map(|t| {
            let sender = t.sender(clock.clone());
            (t, sender)
        });
        *self.lock() = next;
    }

    /// The sender, if `event` is to be pushed and a runtime is there to push
    /// from.
    pub(crate) fn for_event(&self, event: &str) -> Option<HookSender> {
        tokio::runtime::Handle::try_current().ok()?;
        self.lock()
            .as_ref()
            .filter(|(t, _)| t.wants(event))
            .map(|(_, s)| s.clone())
    }

    pub(crate) fn sender(&self) -> Option<HookSender> {
        self.lock().as_ref().map(|(_, s)| s.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(HookTarget, HookSender)>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The receiver's answer to one push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushAnswer {
    /// The event (`message.ack`) or notification type (`outgoingMessageStatus`).
    pub event: String,
    /// The HTTP status; None when the request failed (connection refused …).
    pub status: Option<u16>,
    /// The second, byte-for-byte copy of a [`HookFault::Replay`] push.
    pub replay: bool,
}

/// One request as sent (kept for [`HookSender::replay`]).
#[derive(Clone, Debug)]
pub struct SentHook {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Sends webhooks to one URL. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HookSender {
    url: String,
    auth: HookAuth,
    clock: Clock,
    client: reqwest::Client,
    state: Arc<Mutex<SenderState>>,
}

#[derive(Debug)]
struct SenderState {
    fault: HookFault,
    seq: u64,
    last: Option<SentHook>,
    answers: Vec<PushAnswer>,
    /// The number of answers, for [`HookSender::wait_answers`].
    count: tokio::sync::watch::Sender<usize>,
}

impl Default for SenderState {
    fn default() -> Self {
        SenderState {
            fault: HookFault::None,
            seq: 0,
            last: None,
            answers: Vec::new(),
            count: tokio::sync::watch::channel(0).0,
        }
    }
}

/// Answers kept per sender; older ones are dropped.
const MAX_ANSWERS: usize = 10_000;

impl HookSender {
    /// A sender to `url` (e.g. `http://127.0.0.1:9797/webhooks/waha`), using
    /// `clock` for timestamps.
    pub fn new(url: impl Into<String>, auth: HookAuth, clock: Clock) -> HookSender {
        HookSender {
            url: url.into(),
            auth,
            clock,
            // The daemon's client builder: it installs the TLS provider.
            client: crate::provider::http::build_client(std::time::Duration::from_secs(5))
                .unwrap_or_default(),
            state: Arc::new(Mutex::new(SenderState::default())),
        }
    }

    pub fn set_fault(&self, fault: HookFault) {
        self.lock().fault = fault;
    }

    /// WAHA `session.status`.
    pub async fn waha_session_status(&self, session: &str, status: &str) -> reqwest::Result<u16> {
        let now = self.clock.now();
        self.waha(
            session,
            "session.status",
            json!({
                "name": session,
                "status": status,
                "statuses": [{"status": status, "timestamp": now.as_millis()}],
            }),
        )
        .await
    }

    /// WAHA `message.ack` for a message the session sent.
    pub async fn waha_message_ack(
        &self,
        session: &str,
        message_id: &str,
        ack: i64,
    ) -> reqwest::Result<u16> {
        let name = match ack {
            -1 => "ERROR",
            0 => "PENDING",
            1 => "SERVER",
            2 => "DEVICE",
            3 => "READ",
            4 => "PLAYED",
            _ => "UNKNOWN",
        };
        self.waha(
            session,
            "message.ack",
            json!({
                "id": message_id, "from": "me", "to": "me", "fromMe": true,
                "ack": ack, "ackName": name, "_data": {},
            }),
        )
        .await
    }

    /// WAHA `message`: an inbound text from `from` (a ring canary reaching
    /// `session`).
    pub async fn waha_message(
        &self,
        session: &str,
        message_id: &str,
        from: &str,
        body: &str,
    ) -> reqwest::Result<u16> {
        self.waha(
            session,
            "message",
            json!({
                "id": message_id, "from": from, "fromMe": false, "body": body,
                "hasMedia": false, "ack": 2, "ackName": "DEVICE", "_data": {},
            }),
        )
        .await
    }

    /// Green-API `incomingMessageReceived`: a text from `from`.
    pub async fn green_incoming_from(
        &self,
        id_instance: &str,
        id_message: &str,
        from: &str,
        text: &str,
    ) -> reqwest::Result<u16> {
        let mut body = self.green_envelope("incomingMessageReceived", id_instance);
        body["idMessage"] = json!(id_message);
        body["senderData"] = json!({
            "chatId": from, "sender": from,
            "chatName": "", "senderName": "Ring", "senderContactName": "",
        });
        body["messageData"] = json!({
            "typeMessage": "textMessage",
            "textMessageData": {"textMessage": text},
        });
        self.send(body).await
    }

    /// Green-API `stateInstanceChanged`.
    pub async fn green_state(&self, id_instance: &str, state: &str) -> reqwest::Result<u16> {
        let mut body = self.green_envelope("stateInstanceChanged", id_instance);
        body["stateInstance"] = json!(state);
        self.send(body).await
    }

    /// Green-API `outgoingMessageStatus`.
    pub async fn green_outgoing_status(
        &self,
        id_instance: &str,
        id_message: &str,
        status: &str,
    ) -> reqwest::Result<u16> {
        let mut body = self.green_envelope("outgoingMessageStatus", id_instance);
        body["idMessage"] = json!(id_message);
        body["status"] = json!(status);
        body["sendByApi"] = json!(true);
        self.send(body).await
    }

    /// Green-API `incomingMessageReceived` with a text (`{{SWE003}}` …).
    pub async fn green_incoming_text(
        &self,
        id_instance: &str,
        id_message: &str,
        text: &str,
    ) -> reqwest::Result<u16> {
        let mut body = self.green_envelope("incomingMessageReceived", id_instance);
        body["idMessage"] = json!(id_message);
        body["senderData"] = json!({
            "chatId": "79001234568@c.us", "sender": "79001234568@c.us",
            "chatName": "", "senderName": "Peer", "senderContactName": "",
        });
        body["messageData"] = json!({
            "typeMessage": "textMessage",
            "textMessageData": {"textMessage": text},
        });
        self.send(body).await
    }

    /// Sends the last request again, byte for byte.
    pub async fn replay(&self) -> reqwest::Result<Option<u16>> {
        let last = self.lock().last.clone();
        match last {
            Some(hook) => self.post(&hook).await.map(Some),
            None => Ok(None),
        }
    }

    /// The last request sent.
    pub fn last(&self) -> Option<SentHook> {
        self.lock().last.clone()
    }

    /// The receiver's answers so far, oldest first.
    pub fn answers(&self) -> Vec<PushAnswer> {
        self.lock().answers.clone()
    }

    /// Waits until at least `n` answers are in (bound it with a timeout).
    pub async fn wait_answers(&self, n: usize) {
        let mut rx = self.lock().count.subscribe();
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    fn record(&self, event: &str, status: Option<u16>, replay: bool) {
        let mut s = self.lock();
        if s.answers.len() >= MAX_ANSWERS {
            s.answers.remove(0);
        }
        s.answers.push(PushAnswer {
            event: event.to_string(),
            status,
            replay,
        });
        let n = s.answers.len();
        s.count.send_replace(n);
    }

    async fn waha(&self, session: &str, event: &str, payload: Value) -> reqwest::Result<u16> {
        let now = self.clock.now();
        let seq = {
            let mut s = self.lock();
            s.seq += 1;
            s.seq
        };
        let id = format!("evt_sim{:013}{seq:08}", now.as_millis());
        let body = json!({
            "id": id,
            "timestamp": now.as_millis(),
            "event": event,
            "session": session,
            "metadata": {},
            "me": {"id": "11111111111@c.us", "pushName": "sim"},
            "payload": payload,
            "engine": "GOWS",
            "environment": {"version": "2026.7.2", "engine": "GOWS", "tier": "PLUS"},
        });
        self.send_with_ids(event, body, Some((&format!("req{seq}"), now)))
            .await
    }

    fn green_envelope(&self, type_webhook: &str, id_instance: &str) -> Value {
        let id: Value = id_instance
            .parse::<u64>()
            .map_or_else(|_| json!(id_instance), |n| json!(n));
        json!({
            "typeWebhook": type_webhook,
            "instanceData": {"idInstance": id, "wid": "11111111111@c.us", "typeInstance": "whatsapp"},
            "timestamp": self.clock.now().as_millis() / 1000,
        })
    }

    async fn send(&self, body: Value) -> reqwest::Result<u16> {
        let event = body["typeWebhook"].as_str().unwrap_or("").to_string();
        self.send_with_ids(&event, body, None).await
    }

    async fn send_with_ids(
        &self,
        event: &str,
        body: Value,
        waha: Option<(&str, Timestamp)>,
    ) -> reqwest::Result<u16> {
        let body = body.to_string();
        let fault = self.lock().fault;
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some((request_id, at)) = waha {
            headers.push(("x-webhook-request-id".into(), request_id.to_string()));
            headers.push(("x-webhook-timestamp".into(), at.as_millis().to_string()));
        }
        match &self.auth {
            HookAuth::None => {}
            HookAuth::Hmac(key) => {
                let key = match fault {
                    HookFault::WrongSignature => format!("{key}-wrong"),
                    HookFault::None | HookFault::Replay => key.clone(),
                };
                headers.push(("x-webhook-hmac".into(), sign_waha(&key, body.as_bytes())));
                headers.push(("x-webhook-hmac-algorithm".into(), "sha512".into()));
            }
            HookAuth::Token(token) => {
                let token = match fault {
                    HookFault::WrongSignature => format!("{token}-wrong"),
                    HookFault::None | HookFault::Replay => token.clone(),
                };
                headers.push(("authorization".into(), format!("Bearer {token}")));
            }
        }
        let hook = SentHook { headers, body };
        self.lock().last = Some(hook.clone());
        let first = self.post(&hook).await;
        self.record(event, first.as_ref().ok().copied(), false);
        if fault == HookFault::Replay {
            let again = self.post(&hook).await;
            self.record(event, again.as_ref().ok().copied(), true);
        }
        first
    }

    async fn post(&self, hook: &SentHook) -> reqwest::Result<u16> {
        let mut req = self.client.post(&self.url).body(hook.body.clone());
        for (k, v) in &hook.headers {
            req = req.header(k, v);
        }
        Ok(req.send().await?.status().as_u16())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SenderState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}
