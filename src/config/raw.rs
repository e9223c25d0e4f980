//! The file schema: exactly what serde reads from TOML, before defaults,
//! merging and validation. Every key is optional here (`Option` or an empty
//! table) so that the resolver can tell "not given" from "given", name missing
//! keys in its own words, and merge `[canary]`/`[policy]` with a provider's
//! tables. Unknown keys are rejected by serde with a position in the file.
//!
//! These types hold inline secrets as plain strings; they are private to
//! `config` and deliberately do not implement `Debug`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{LogFormat, ProviderKind};

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub daemon: RawDaemon,
    pub canary: RawCanary,
    pub policy: RawPolicy,
    #[serde(rename = "provider")]
    pub providers: Vec<RawProvider>,
    pub alertmanager: Option<RawAlertmanager>,
    pub maintenance: Vec<super::maintenance::RawMaintenance>,
    #[serde(rename = "ring")]
    pub rings: Vec<super::ring::RawRing>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub database: Option<String>,
    pub database_url_env: Option<String>,
    pub database_url_file: Option<PathBuf>,
    pub replica: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub lease_ttl: Option<Duration>,
    pub listen: Option<SocketAddr>,
    pub log_format: Option<LogFormat>,
    #[serde(deserialize_with = "duration")]
    pub discovery_interval: Option<Duration>,
    pub retire_after_rounds: Option<u32>,
    #[serde(deserialize_with = "duration")]
    pub retire_after: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub retention: Option<Duration>,
    pub admin_token_env: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    #[serde(deserialize_with = "inline_secret")]
    pub admin_token: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Option<Duration>,
    pub webhook_listen: Option<SocketAddr>,
    pub session_metrics: Option<bool>,
    pub worker_threads: Option<usize>,
}

/// `[canary]` and `[provider.canary]` share this shape.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawCanary {
    #[serde(deserialize_with = "duration")]
    pub interval: Option<Duration>,
    pub jitter: Option<f64>,
    #[serde(deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub ack_timeout: Option<Duration>,
    /// `"ack"` or `"accepted"`.
    pub confirm: Option<String>,
    pub text: Option<String>,
    pub chat: Option<String>,
}

/// `[policy]` and `[provider.policy]` share this shape.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub desync_signatures: Option<Vec<String>>,
    pub desync_confirmations: Option<u32>,
    pub send_failure_confirmations: Option<u32>,
    #[serde(deserialize_with = "duration")]
    pub confirm_interval: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub restart_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub restart_poll_interval: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub restart_call_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub starting_grace: Option<Duration>,
    pub restart_stopped: Option<bool>,
    pub max_restarts: Option<u32>,
    #[serde(deserialize_with = "duration")]
    pub restart_window: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub backoff_initial: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub backoff_max: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub healthy_reset: Option<Duration>,
    pub max_concurrent_restarts: Option<u32>,
    pub restart_budget: Option<u32>,
    #[serde(deserialize_with = "duration")]
    pub restart_budget_window: Option<Duration>,
    pub outage_fraction: Option<f64>,
    pub outage_min_sessions: Option<u32>,
    pub dry_run: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawProvider {
    pub name: Option<String>,
    pub kind: Option<ProviderKind>,
    pub url: Option<String>,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    #[serde(deserialize_with = "inline_secret")]
    pub api_key: Option<String>,
    #[serde(deserialize_with = "id_instance")]
    pub id_instance: Option<String>,
    pub api_token_env: Option<String>,
    pub api_token_file: Option<PathBuf>,
    #[serde(deserialize_with = "inline_secret")]
    pub api_token: Option<String>,
    pub sessions: Option<Vec<String>>,
    #[serde(rename = "session")]
    pub session_overrides: Vec<RawSession>,
    pub canary: RawCanary,
    pub policy: RawPolicy,
    pub max_concurrent_probes: Option<usize>,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Option<Duration>,
    pub reboot_on_yellow_card: Option<bool>,
    #[serde(deserialize_with = "duration")]
    pub min_request_interval: Option<Duration>,
    pub webhook_hmac_key_env: Option<String>,
    pub webhook_hmac_key_file: Option<PathBuf>,
    #[serde(deserialize_with = "inline_secret")]
    pub webhook_hmac_key: Option<String>,
    pub webhook_token_env: Option<String>,
    pub webhook_token_file: Option<PathBuf>,
    #[serde(deserialize_with = "inline_secret")]
    pub webhook_token: Option<String>,
    pub webhook_insecure: Option<bool>,
    #[serde(deserialize_with = "duration")]
    pub webhook_replay_window: Option<Duration>,
    pub webhook_body_limit: Option<usize>,
    pub webhook_queue_size: Option<usize>,
}

/// One `[[provider.session]]` override.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSession {
    pub name: Option<String>,
    pub chat: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub interval: Option<Duration>,
    pub enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAlertmanager {
    pub url: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub resend_interval: Option<Duration>,
}

/// `id_instance` as a string (the documented form) or a bare integer: the
/// Green-API console shows it as a number, and people will paste it as one.
fn id_instance<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the instance id as a string of digits, e.g. \"1101000001\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            // Negative numbers come through as text and fail the digits check
            // with the resolver's message.
            Ok(Some(v.to_string()))
        }
    }
    d.deserialize_any(Visitor)
}

/// A humantime duration (`"15s"`, `"5m"`, `"1h 30m"`, `"30d"`). Unlike
/// `humantime_serde`, the error keeps humantime's reason (which unit is
/// unknown, which number is too large).
pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<Duration>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration string such as \"15s\", \"5m\", \"1h\" or \"30d\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            humantime::parse_duration(v)
                .map(Some)
                .map_err(|e| E::custom(format!("invalid duration {v:?}: {e}")))
        }
    }
    d.deserialize_str(Visitor)
}

/// An inline secret. serde's own type errors quote the value they got
/// (`invalid type: integer `12345``); a secret typed without quotes must not
/// end up in an error message, so the non-string cases say only what it was.
fn inline_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Visitor;
    fn not_a_string<E: serde::de::Error>(what: &str) -> E {
        E::custom(format!(
            "invalid type: {what}, expected a quoted string (the value is not shown: it may be a secret)"
        ))
    }
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a quoted string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(not_a_string("boolean"))
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(not_a_string("integer"))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(not_a_string("integer"))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(not_a_string("floating point number"))
        }
    }
    d.deserialize_str(Visitor)
}
