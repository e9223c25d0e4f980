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
