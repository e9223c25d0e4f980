//! Per-provider webhook keys (`webhook_*` in `[[provider]]`) and
//! `daemon.webhook_listen`. Resolved like every other secret (`_env`,
//! `_file`, inline with a warning); the values never appear in a message.

use std::path::PathBuf;
use std::time::Duration;

use super::ProviderKind;
use super::Secret;
use super::resolve::Resolver;
use super::secret::SecretKeys;

/// Default `webhook_replay_window`.
pub const DEFAULT_WEBHOOK_REPLAY_WINDOW: Duration = Duration::from_secs(300);
/// Default `webhook_body_limit` (message events can be large).
pub const DEFAULT_WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;
/// Largest `webhook_body_limit` accepted.
pub const MAX_WEBHOOK_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Default `webhook_queue_size`: events of one provider waiting for the
/// scheduler loop.
pub const DEFAULT_WEBHOOK_QUEUE_SIZE: usize = 256;
/// Largest `webhook_queue_size` accepted.
pub const MAX_WEBHOOK_QUEUE_SIZE: usize = 65_536;
/// Longest `webhook_replay_window` accepted: ids are remembered that long.
pub const MAX_WEBHOOK_REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How a provider's webhooks are authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookAuth {
    /// No key configured: `POST /webhooks/{provider}` answers 403.
    Off,
    /// `webhook_insecure = true`: accepted without a signature or token.
    Insecure,
    /// WAHA: `X-Webhook-Hmac` (HMAC-SHA512) with this key.
    Hmac(Secret),
    /// Green-API: `Authorization: Bearer <token>` or the raw token.
    Token(Secret),
}

/// The resolved webhook settings of one provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    pub auth: WebhookAuth,
    /// Events older or newer than now ± this are not acted upon.
    pub replay_window: Duration,
    /// Largest body accepted (413 beyond).
    pub body_limit: usize,
    /// Events of this provider queued for the scheduler at most (503 beyond).
    pub queue_size: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            auth: WebhookAuth::Off,
            replay_window: DEFAULT_WEBHOOK_REPLAY_WINDOW,
            body_limit: DEFAULT_WEBHOOK_BODY_LIMIT,
            queue_size: DEFAULT_WEBHOOK_QUEUE_SIZE,
        }
    }
}

/// The `webhook_*` keys of one `[[provider]]`, as read.
pub(super) struct RawWebhookKeys<'a> {
    pub hmac_key_env: Option<&'a str>,
    pub hmac_key_file: Option<&'a PathBuf>,
    pub hmac_key: Option<&'a str>,
    pub token_env: Option<&'a str>,
    pub token_file: Option<&'a PathBuf>,
    pub token: Option<&'a str>,
    pub insecure: Option<bool>,
    pub replay_window: Option<Duration>,
    pub body_limit: Option<usize>,
    pub queue_size: Option<usize>,
}

impl Resolver<'_> {
    /// Resolves one provider's webhook keys; `scope` is `provider "x": `.
    pub(super) fn webhook(
        &mut self,
        kind: ProviderKind,
        raw: &RawWebhookKeys<'_>,
        scope: &str,
    ) -> Result<WebhookConfig, String> {
        let (secret, wanted) = match kind {
            ProviderKind::Waha => (
                self.secret(
                    &SecretKeys {
                        name: "webhook_hmac_key",
                        env: raw.hmac_key_env,
                        file: raw.hmac_key_file.map(PathBuf::as_path),
                        inline: raw.hmac_key,
                    },
                    scope,
                )?,
                "webhook_hmac_key_env or webhook_hmac_key_file",
            ),
            ProviderKind::GreenApi => (
                self.secret(
                    &SecretKeys {
                        name: "webhook_token",
                        env: raw.token_env,
                        file: raw.token_file.map(PathBuf::as_path),
                        inline: raw.token,
                    },
                    scope,
                )?,
                "webhook_token_env or webhook_token_file",
            ),
        };
        let insecure = raw.insecure.unwrap_or(false);
        let auth = match (secret, insecure, kind) {
            (Some(_), true, _) => {
                return Err(format!(
                    "webhook_insecure = true and {wanted} are both set; remove one"
                ));
            }
            (Some(s), false, ProviderKind::Waha) => WebhookAuth::Hmac(s),
            (Some(s), false, ProviderKind::GreenApi) => WebhookAuth::Token(s),
            (None, true, _) => {
                self.warn(format!(
                    "{scope}webhook_insecure = true: POST /webhooks/... for this provider is \
                     accepted from anyone who can reach the listener; set {wanted} instead"
                ));
                WebhookAuth::Insecure
            }
            (None, false, _) => WebhookAuth::Off,
        };
        let d = WebhookConfig::default();
        let replay_window = raw.replay_window.unwrap_or(d.replay_window);
        if replay_window.is_zero() || replay_window > MAX_WEBHOOK_REPLAY_WINDOW {
            return Err(format!(
                "webhook_replay_window must be greater than 0 and at most 24h, got {}",
                humantime::format_duration(replay_window)
            ));
        }
        let body_limit = raw.body_limit.unwrap_or(d.body_limit);
        if !(1024..=MAX_WEBHOOK_BODY_LIMIT).contains(&body_limit) {
            return Err(format!(
                "webhook_body_limit must be between 1024 and {MAX_WEBHOOK_BODY_LIMIT} bytes, \
                 got {body_limit}"
            ));
        }
        let queue_size = raw.queue_size.unwrap_or(d.queue_size);
        if !(1..=MAX_WEBHOOK_QUEUE_SIZE).contains(&queue_size) {
            return Err(format!(
                "webhook_queue_size must be between 1 and {MAX_WEBHOOK_QUEUE_SIZE}, got \
                 {queue_size}"
            ));
        }
        Ok(WebhookConfig {
            auth,
            replay_window,
            body_limit,
            queue_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, SecretSource};

    fn load(waha_extra: &str, green_extra: &str) -> Result<Config, String> {
        let text = format!(
            r#"
[daemon]
database = "w.db"

[[provider]]
name = "w"
kind = "waha"
url = "http://127.0.0.1:3000"
{waha_extra}

[[provider]]
name = "g"
kind = "green-api"
url = "http://127.0.0.1:3001"
id_instance = "1101"
api_token_env = "T"
{green_extra}
"#
        );
        let env = |k: &str| match k {
            "T" => Some("api-token".to_string()),
            "K" => Some("hook-key-value".to_string()),
            _ => None,
        };
        Config::from_toml_str(&text, "/tmp/c.toml", &env).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_off_with_the_documented_bounds() {
        let c = load("", "").expect("config");
        for p in &c.providers {
            assert_eq!(p.webhook, WebhookConfig::default());
            assert_eq!(p.webhook.auth, WebhookAuth::Off);
            assert_eq!(p.webhook.replay_window, Duration::from_secs(300));
            assert_eq!(p.webhook.body_limit, 1024 * 1024);
        }
        assert_eq!(c.daemon.webhook_listen, None);
    }

    #[test]
    fn keys_resolve_like_every_secret() {
        let c = load(
            "webhook_hmac_key_env = \"K\"\nwebhook_replay_window = \"2m\"\nwebhook_body_limit = 4096\nwebhook_queue_size = 8",
            "webhook_token_env = \"K\"",
        )
        .expect("config");
        let w = &c.providers[0].webhook;
        assert_eq!(
            w.auth,
            WebhookAuth::Hmac(Secret::new("hook-key-value", SecretSource::Env("K".into())))
        );
        assert_eq!(
            (w.replay_window, w.body_limit, w.queue_size),
            (Duration::from_secs(120), 4096, 8)
        );
        assert!(matches!(c.providers[1].webhook.auth, WebhookAuth::Token(_)));
        let rendered = crate::config::render_redacted(&c);
        assert!(!rendered.contains("hook-key-value"), "{rendered}");
        assert!(rendered.contains("webhook_hmac_key"), "{rendered}");
    }

    #[test]
    fn insecure_is_explicit_and_warned() {
        let c = load("webhook_insecure = true", "").expect("config");
        assert_eq!(c.providers[0].webhook.auth, WebhookAuth::Insecure);
        assert!(
            c.warnings.iter().any(|w| w.contains("webhook_insecure")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn bad_keys_are_named() {
        let cases = [
            (
                "webhook_insecure = true\nwebhook_hmac_key_env = \"K\"",
                "",
                "both set",
            ),
            (
                "webhook_token_env = \"K\"",
                "",
                "webhook_token_env is not allowed for kind \"waha\"",
            ),
            (
                "",
                "webhook_hmac_key_env = \"K\"",
                "webhook_hmac_key_env is not allowed",
            ),
            (
                "webhook_hmac_key_env = \"MISSING\"",
                "",
                "webhook_hmac_key_env: environment variable MISSING is not set",
            ),
            (
                "webhook_replay_window = \"0s\"",
                "",
                "webhook_replay_window",
            ),
            (
                "webhook_replay_window = \"2d\"",
                "",
                "webhook_replay_window",
            ),
            ("webhook_body_limit = 10", "", "webhook_body_limit"),
            ("webhook_body_limit = 999999999", "", "webhook_body_limit"),
            ("webhook_queue_size = 0", "", "webhook_queue_size"),
            ("webhook_hmac_key = 12345", "", "the value is not shown"),
        ];
        for (w, g, want) in cases {
            let err = load(w, g).expect_err(w);
            assert!(err.contains(want), "{w} / {g}: {err}");
            assert!(
                !err.contains("hook-key-value") && !err.contains("12345"),
                "{err}"
            );
        }
    }
}
