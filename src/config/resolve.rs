//! From the raw schema to the resolved types: defaults, merging of the global
//! `[canary]`/`[policy]` tables into each provider, semantic validation and
//! secret resolution. Errors are plain messages naming the key path
//! (`provider "waha-main": policy.max_restarts must be at least 1`); the
//! caller prefixes the file path.
//!
//! Must not: read anything but `_file` secrets, or put a secret's value or a
//! URL (which may carry credentials) into a message.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::merge::{merge_canary, merge_policy};
use super::name::{NAME_RULE, valid_name};
use super::raw::{RawAlertmanager, RawConfig, RawDaemon, RawProvider, RawSession};
use super::secret::{self, SecretContext, SecretKeys};
use super::webhook::RawWebhookKeys;
use super::{
    AlertmanagerConfig, CanaryConfig, ChatTarget, Config, ConfirmMode, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_PROBES, DEFAULT_MIN_REQUEST_INTERVAL, DEFAULT_RESEND_INTERVAL,
    DaemonConfig, GREEN_API_DEFAULT_ACK_TIMEOUT, GREEN_API_JOURNAL_LAG,
    MAX_CONCURRENT_PROBES_LIMIT, MAX_DURATION, MIN_LEASE_TTL, NONCE_PLACEHOLDER, ProviderConfig,
    ProviderKind, Secret, SessionOverride, SessionSelector,
};
use crate::policy::PolicyConfig;

/// Turns the raw schema into a [`Config`]. Errors are plain messages naming
/// the key path; the caller adds the file path.
pub(super) struct Resolver<'a> {
    pub path: &'a Path,
    pub config_dir: &'a Path,
    pub credentials_dir: Option<&'a Path>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub warnings: Vec<String>,
}

/// An admin token shorter than this is warned about.
const MIN_ADMIN_TOKEN_CHARS: usize = 16;

impl Resolver<'_> {
    pub(super) fn warn(&mut self, message: String) {
        tracing::warn!(config = %self.path.display(), "{message}");
        self.warnings.push(message);
    }

    pub fn config(&mut self, raw: RawConfig) -> Result<Config, String> {
        let daemon = self.daemon(raw.daemon)?;
        // The global tables are checked on their own first, so a bad global
        // value is reported once, without a provider name.
        let global_ack_timeout = raw.canary.ack_timeout;
        let canary = merge_canary(&CanaryConfig::default(), raw.canary)?;
        let policy = merge_policy(&PolicyConfig::default(), raw.policy)?;

        if raw.providers.is_empty() {
            return Err("at least one [[provider]] is required".to_string());
        }
        let mut providers: Vec<ProviderConfig> = Vec::with_capacity(raw.providers.len());
        for (i, raw_provider) in raw.providers.into_iter().enumerate() {
            let provider =
                self.provider(i + 1, raw_provider, &canary, global_ack_timeout, &policy)?;
            if let Some(first) = providers.iter().position(|p| p.name == provider.name) {
                return Err(format!(
                    "duplicate provider name {:?} ([[provider]] #{} and #{})",
                    provider.name,
                    first + 1,
                    i + 1
                ));
            }
            providers.push(provider);
        }

        for p in &providers {
            let longest = p.policy.restart_window.max(p.policy.restart_budget_window);
            if daemon.retention < longest {
                self.warn(format!(
                    "provider {:?}: daemon.retention ({}) is shorter than its restart \
                     window or restart budget window ({}): restarts pruned early no longer \
                     count toward max_restarts and the budget",
                    p.name,
                    humantime::format_duration(daemon.retention),
                    humantime::format_duration(longest)
                ));
            }
        }
        let alertmanager = raw.alertmanager.map(alertmanager).transpose()?;
        let maintenance = super::maintenance::resolve(raw.maintenance, &providers)?;
        let rings = super::ring::resolve(raw.rings, &providers)?;
        for r in &rings {
            for m in &r.members {
                let Some(p) = providers.iter().find(|p| p.name == m.provider) else {
                    continue;
                };
                if p.chat_for(&m.session) != ChatTarget::SelfChat {
                    self.warn(format!(
                        "ring {:?}: member \"{m}\" has a canary chat configured; the ring \
                         canary replaces it (it goes to the next member's own number)",
                        r.name
                    ));
                }
            }
        }
        Ok(Config {
            daemon,
            providers,
            alertmanager,
            maintenance,
            rings,
            path: self.path.to_path_buf(),
            warnings: std::mem::take(&mut self.warnings),
        })
    }

    pub(super) fn daemon(&mut self, raw: RawDaemon) -> Result<DaemonConfig, String> {
        let d = DaemonConfig::default();
        let database = self
            .database(
                raw.database.as_deref(),
                raw.database_url_env.as_deref(),
                raw.database_url_file.as_deref(),
            )?
            .unwrap_or(d.database);
        let discovery_interval = raw.discovery_interval.unwrap_or(d.discovery_interval);
        positive("daemon.discovery_interval", discovery_interval)?;
        let retire_after_rounds = raw.retire_after_rounds.unwrap_or(d.retire_after_rounds);
        if retire_after_rounds == 0 {
            return Err("daemon.retire_after_rounds must be at least 1".to_string());
        }
        // Zero is allowed: retire after the rounds alone.
        let retire_after = raw.retire_after.unwrap_or(d.retire_after);
        let retention = raw.retention.unwrap_or(d.retention);
        positive("daemon.retention", retention)?;
        // Zero is meaningful here: abandon in-flight probes at once.
        let shutdown_grace = raw.shutdown_grace.unwrap_or(d.shutdown_grace);
        not_too_long("daemon.shutdown_grace", shutdown_grace)?;
        let admin_token = self.secret(
            &SecretKeys {
                name: "daemon.admin_token",
                env: raw.admin_token_env.as_deref(),
                file: raw.admin_token_file.as_deref(),
                inline: raw.admin_token.as_deref(),
            },
            "",
        )?;
        let listen = raw.listen.unwrap_or(d.listen);
        if let Some(token) = &admin_token {
            let chars = token.expose().chars().count();
            if chars < MIN_ADMIN_TOKEN_CHARS {
                self.warn(format!(
                    "daemon.admin_token is only {chars} characters: anyone who can reach \
                     daemon.listen can guess it; use at least {MIN_ADMIN_TOKEN_CHARS} random \
                     characters (openssl rand -hex 32)"
                ));
            }
            if !listen.ip().is_loopback() {
                self.warn(format!(
                    "daemon.listen {listen} is not a loopback address and the admin API is \
                     on: its bearer token travels in cleartext over plain HTTP; listen on \
                     127.0.0.1 and put a TLS proxy in front if it must be reached remotely"
                ));
            }
        }
        let replica = match raw.replica {
            Some(r) if !valid_name(&r) => {
                return Err(format!(
                    "daemon.replica {r:?} must be 1 to 64 characters from A-Z a-z 0-9 _ . -"
                ));
            }
            Some(r) => r,
            None => d.replica,
        };
        let lease_ttl = raw.lease_ttl.unwrap_or(d.lease_ttl);
        not_too_long("daemon.lease_ttl", lease_ttl)?;
        if lease_ttl < MIN_LEASE_TTL {
            return Err(format!(
                "daemon.lease_ttl must be at least {}s",
                MIN_LEASE_TTL.as_secs()
            ));
        }
        let worker_threads = raw.worker_threads.unwrap_or(d.worker_threads);
        if !(1..=super::MAX_WORKER_THREADS).contains(&worker_threads) {
            return Err(format!(
                "daemon.worker_threads must be 1 to {} (got {worker_threads})",
                super::MAX_WORKER_THREADS
            ));
        }
        Ok(DaemonConfig {
            database,
            replica,
            lease_ttl,
            listen,
            log_format: raw.log_format.unwrap_or(d.log_format),
            discovery_interval,
            retire_after_rounds,
            retire_after,
            retention,
            admin_token,
            shutdown_grace,
            webhook_listen: raw.webhook_listen,
            session_metrics: raw.session_metrics.unwrap_or(d.session_metrics),
            worker_threads,
        })
    }

    /// Resolves one secret; `scope` prefixes the inline warning
    /// (`provider "x": `) and is empty when `keys.name` already says where.
    pub(super) fn secret(
        &mut self,
        keys: &SecretKeys<'_>,
        scope: &str,
    ) -> Result<Option<Secret>, String> {
        let ctx = SecretContext {
            env: self.env,
            config_dir: self.config_dir,
            credentials_dir: self.credentials_dir,
        };
        let resolved = secret::resolve(keys, &ctx)?;
        if let Some(mode) = resolved.world_readable {
            let name = keys.name;
            self.warn(format!(
                "{scope}{name}_file is readable by every user (mode {mode:o}); \
                 chmod 600 it (or use systemd's LoadCredential=)"
            ));
        }
        if resolved.inline {
            let name = keys.name;
            self.warn(format!(
                "{scope}{name} is written inline in the config file; prefer {name}_env or \
                 {name}_file so the file can be shared and read without exposing it"
            ));
        }
        Ok(resolved.secret)
    }

    fn provider(
        &mut self,
        index: usize,
        raw: RawProvider,
        canary: &CanaryConfig,
        global_ack_timeout: Option<Duration>,
        policy: &PolicyConfig,
    ) -> Result<ProviderConfig, String> {
        let Some(name) = raw.name.clone() else {
            return Err(format!("[[provider]] #{index}: name is required"));
        };
        if !valid_name(&name) {
            return Err(format!(
                "[[provider]] #{index}: name {name:?} must be 1 to 64 characters from \
                 A-Z a-z 0-9 _ . - (it becomes a metric label and a URL path segment)"
            ));
        }
        let scope = format!("provider {name:?}: ");
        self.provider_body(name, raw, canary, global_ack_timeout, policy, &scope)
            .map_err(|message| format!("{scope}{message}"))
    }

    fn provider_body(
        &mut self,
        name: String,
        raw: RawProvider,
        global_canary: &CanaryConfig,
        global_ack_timeout: Option<Duration>,
        global_policy: &PolicyConfig,
        scope: &str,
    ) -> Result<ProviderConfig, String> {
        let Some(kind) = raw.kind else {
            return Err("kind is required (\"waha\" or \"green-api\")".to_string());
        };
        let Some(url_text) = raw.url.as_deref() else {
            return Err("url is required".to_string());
        };
        let url = base_url("url", url_text)?;

        // Keys of the other kind are errors, not ignored: a green-api token
        // on a waha provider means the kind or the table is wrong.
        let foreign: &[(&str, bool)] = match kind {
            ProviderKind::Waha => &[
                ("id_instance", raw.id_instance.is_some()),
                ("api_token_env", raw.api_token_env.is_some()),
                ("api_token_file", raw.api_token_file.is_some()),
                ("api_token", raw.api_token.is_some()),
                ("reboot_on_yellow_card", raw.reboot_on_yellow_card.is_some()),
                ("min_request_interval", raw.min_request_interval.is_some()),
                ("webhook_token_env", raw.webhook_token_env.is_some()),
                ("webhook_token_file", raw.webhook_token_file.is_some()),
                ("webhook_token", raw.webhook_token.is_some()),
            ],
            ProviderKind::GreenApi => &[
                ("api_key_env", raw.api_key_env.is_some()),
                ("api_key_file", raw.api_key_file.is_some()),
                ("api_key", raw.api_key.is_some()),
                ("webhook_hmac_key_env", raw.webhook_hmac_key_env.is_some()),
                ("webhook_hmac_key_file", raw.webhook_hmac_key_file.is_some()),
                ("webhook_hmac_key", raw.webhook_hmac_key.is_some()),
            ],
        };
        if let Some((key, _)) = foreign.iter().find(|(_, given)| *given) {
            let other = match kind {
                ProviderKind::Waha => ProviderKind::GreenApi,
                ProviderKind::GreenApi => ProviderKind::Waha,
            };
            return Err(format!(
                "{key} is not allowed for kind \"{kind}\" (it is a {other} key)"
            ));
        }

        let (api_key, id_instance, api_token, sessions) = match kind {
            ProviderKind::Waha => {
                if url.path.ends_with("/api") {
                    self.warn(format!(
                        "{scope}url ends in /api; the WAHA client adds /api/... itself, \
                         so requests would go to /api/api/..."
                    ));
                }
                let api_key = self.secret(
                    &SecretKeys {
                        name: "api_key",
                        env: raw.api_key_env.as_deref(),
                        file: raw.api_key_file.as_deref(),
                        inline: raw.api_key.as_deref(),
                    },
                    scope,
                )?;
                let sessions = match raw.sessions {
                    None => SessionSelector::All,
                    Some(list) => session_selector(list)?,
                };
                (api_key, None, None, sessions)
            }
            ProviderKind::GreenApi => {
                if raw.sessions.is_some() {
                    return Err(
                        "sessions is not allowed for kind \"green-api\": one instance \
                                is one session, named after id_instance"
                            .to_string(),
                    );
                }
                // The instance URL embeds id and token; a pasted method URL
                // would put the token into `url`, which is printed and logged.
                if url.path.to_ascii_lowercase().contains("/wainstance") {
                    return Err("url must be the instance's apiUrl (e.g. \
                                https://api.green-api.com) without /waInstance...; the \
                                id goes in id_instance and the token in api_token_env or \
                                api_token_file"
                        .to_string());
                }
                let Some(id) = raw.id_instance else {
                    return Err("id_instance is required for kind \"green-api\"".to_string());
                };
                if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("id_instance must be 1 to 20 digits, got {id:?}"));
                }
                let token = self.secret(
                    &SecretKeys {
                        name: "api_token",
                        env: raw.api_token_env.as_deref(),
                        file: raw.api_token_file.as_deref(),
                        inline: raw.api_token.as_deref(),
                    },
                    scope,
                )?;
                let Some(token) = token else {
                    return Err("api_token is required for kind \"green-api\" (set \
                                api_token_env or api_token_file)"
                        .to_string());
                };
                let sessions = SessionSelector::Named(vec![id.clone()]);
                (None, Some(id), Some(token), sessions)
            }
        };

        if !url.loopback && url.text.starts_with("http://") {
            let what = match kind {
                ProviderKind::Waha if api_key.is_some() => Some("api_key"),
                ProviderKind::GreenApi => Some("api_token"),
                ProviderKind::Waha => None,
            };
            if let Some(what) = what {
                self.warn(format!(
                    "{scope}url uses plain http:// to a host that is not loopback; \
                     {what} travels in cleartext"
                ));
            }
        }

        let webhook = self.webhook(
            kind,
            &RawWebhookKeys {
                hmac_key_env: raw.webhook_hmac_key_env.as_deref(),
                hmac_key_file: raw.webhook_hmac_key_file.as_ref(),
                hmac_key: raw.webhook_hmac_key.as_deref(),
                token_env: raw.webhook_token_env.as_deref(),
                token_file: raw.webhook_token_file.as_ref(),
                token: raw.webhook_token.as_deref(),
                insecure: raw.webhook_insecure,
                replay_window: raw.webhook_replay_window,
                body_limit: raw.webhook_body_limit,
                queue_size: raw.webhook_queue_size,
            },
            scope,
        )?;

        let session_overrides = session_overrides(
            raw.session_overrides,
            &sessions,
            kind,
            id_instance.as_deref(),
        )?;

        let explicit_ack_timeout = raw.canary.ack_timeout.or(global_ack_timeout);
        let mut canary = merge_canary(global_canary, raw.canary)?;
        if kind == ProviderKind::GreenApi {
            match explicit_ack_timeout {
                None => canary.ack_timeout = GREEN_API_DEFAULT_ACK_TIMEOUT,
                Some(d) if d <= GREEN_API_JOURNAL_LAG && canary.confirm == ConfirmMode::Ack => {
                    self.warn(format!(
                        "{scope}canary.ack_timeout is {}; Green-API's journal lags up to 2 \
                         minutes, so a healthy canary may be counted as stuck",
                        humantime::format_duration(d)
                    ));
                }
                Some(_) => {}
            }
        }
        if !canary.text.contains(NONCE_PLACEHOLDER) {
            self.warn(format!(
                "{scope}canary.text has no {NONCE_PLACEHOLDER}; every canary is the same \
                 message, which looks like spam and cannot be told apart from the last one"
            ));
        }
        let policy = merge_policy(global_policy, raw.policy)?;

        let max_concurrent_probes = raw
            .max_concurrent_probes
            .unwrap_or(DEFAULT_MAX_CONCURRENT_PROBES);
        if !(1..=MAX_CONCURRENT_PROBES_LIMIT).contains(&max_concurrent_probes) {
            return Err(format!(
                "max_concurrent_probes must be between 1 and {MAX_CONCURRENT_PROBES_LIMIT}, \
                 got {max_concurrent_probes}"
            ));
        }
        let connect_timeout = raw.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        positive("connect_timeout", connect_timeout)?;
        let min_request_interval = raw
            .min_request_interval
            .unwrap_or(DEFAULT_MIN_REQUEST_INTERVAL);
        positive("min_request_interval", min_request_interval)?;
        if kind == ProviderKind::GreenApi && policy.restart_poll_interval < min_request_interval {
            return Err(format!(
                "policy.restart_poll_interval ({}) must not be shorter than min_request_interval ({}):                  Green-API allows one state request per second",
                humantime::format_duration(policy.restart_poll_interval),
                humantime::format_duration(min_request_interval)
            ));
        }

        Ok(ProviderConfig {
            name,
            kind,
            url: url.text,
            api_key,
            id_instance,
            api_token,
            sessions,
            session_overrides,
            canary,
            policy,
            max_concurrent_probes,
            connect_timeout,
            reboot_on_yellow_card: raw.reboot_on_yellow_card.unwrap_or(false),
            min_request_interval,
            webhook,
        })
    }
}

fn session_selector(list: Vec<String>) -> Result<SessionSelector, String> {
    if list.is_empty() {
        return Err("sessions must not be empty; use [\"*\"] to watch every session".to_string());
    }
    if list.iter().any(|s| s == "*") {
        if list.len() == 1 {
            return Ok(SessionSelector::All);
        }
        return Err("sessions: \"*\" cannot be mixed with session names".to_string());
    }
    for (i, name) in list.iter().enumerate() {
        if !valid_name(name) {
            return Err(format!(
                "sessions: {name:?} is not a valid session name ({NAME_RULE})"
            ));
        }
        if list[..i].contains(name) {
            return Err(format!("sessions: {name:?} is listed twice"));
        }
    }
    Ok(SessionSelector::Named(list))
}

fn session_overrides(
    raw: Vec<RawSession>,
    selector: &SessionSelector,
    kind: ProviderKind,
    id_instance: Option<&str>,
) -> Result<Vec<SessionOverride>, String> {
    let mut out: Vec<SessionOverride> = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let Some(name) = s.name else {
            return Err(format!("[[provider.session]] #{}: name is required", i + 1));
        };
        if !valid_name(&name) {
            return Err(format!(
                "[[provider.session]] #{}: name {name:?} is not a valid session name ({NAME_RULE})",
                i + 1
            ));
        }
        let scope = format!("session {name:?}");
        if out.iter().any(|o| o.name == name) {
            return Err(format!("{scope}: [[provider.session]] is given twice"));
        }
        // An override that can never apply is a typo; say so instead of
        // silently probing with the defaults.
        if !selector.includes(&name) {
            return Err(match (kind, id_instance) {
                (ProviderKind::GreenApi, Some(id)) => format!(
                    "{scope}: a green-api provider has one session, named after \
                     id_instance ({id:?})"
                ),
                _ => format!("{scope}: not listed in sessions, so the override would never apply"),
            });
        }
        let chat = match s.chat {
            None => None,
            Some(text) => Some(
                ChatTarget::parse(&text)
                    .ok_or_else(|| format!("{scope}: {}", chat_error("chat", &text)))?,
            ),
        };
        if let Some(interval) = s.interval {
            positive("interval", interval).map_err(|e| format!("{scope}: {e}"))?;
        }
        out.push(SessionOverride {
            name,
            chat,
            interval: s.interval,
            enabled: s.enabled.unwrap_or(true),
        });
    }
    Ok(out)
}

pub(super) fn chat_error(key: &str, got: &str) -> String {
    format!("{key} must be \"self\" or a chat id such as \"5511999990001@c.us\", got {got:?}")
}

fn alertmanager(raw: RawAlertmanager) -> Result<AlertmanagerConfig, String> {
    let Some(url_text) = raw.url.as_deref() else {
        return Err(
            "alertmanager.url is required (remove [alertmanager] to turn direct push off)"
                .to_string(),
        );
    };
    let url = base_url("alertmanager.url", url_text)?;
    let resend_interval = raw.resend_interval.unwrap_or(DEFAULT_RESEND_INTERVAL);
    positive("alertmanager.resend_interval", resend_interval)?;
    Ok(AlertmanagerConfig {
        url: url.text,
        resend_interval,
    })
}

/// A checked base URL.
struct BaseUrl {
    /// Normalised, without trailing `/`.
    text: String,
    /// The path part, without trailing `/`.
    path: String,
    /// The host is `localhost` or a loopback address.
    loopback: bool,
}

/// Checks a base URL. Messages never echo the URL: a mistyped one may carry
/// a password or a token.
fn base_url(key: &str, text: &str) -> Result<BaseUrl, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{key} is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{key} must start with http:// or https:// (scheme {:?} is not supported)",
            url.scheme()
        ));
    }
    let host = url.host_str().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{key} must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{key} must not contain a user name or password: the URL is printed and logged"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{key} must not have a query (?...) or fragment (#...)"
        ));
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost") || bare.ends_with(".localhost"),
    };
    Ok(BaseUrl {
        text: url.as_str().trim_end_matches('/').to_string(),
        path: url.path().trim_end_matches('/').to_string(),
        loopback,
    })
}

pub(super) fn human(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// Durations where zero makes no sense (an interval, a timeout, a window).
pub(super) fn positive(key: &str, d: Duration) -> Result<(), String> {
    if d.is_zero() {
        return Err(format!("{key} must be greater than 0"));
    }
    not_too_long(key, d)
}

pub(super) fn not_too_long(key: &str, d: Duration) -> Result<(), String> {
    if d > MAX_DURATION {
        return Err(format!(
            "{key} must be at most {}, got {}",
            human(MAX_DURATION),
            human(d)
        ));
    }
    Ok(())
}

pub(super) fn not_above(small: (&str, Duration), large: (&str, Duration)) -> Result<(), String> {
    if small.1 > large.1 {
        return Err(format!(
            "{} ({}) must not be greater than {} ({})",
            small.0,
            human(small.1),
            large.0,
            human(large.1)
        ));
    }
    Ok(())
}

pub(super) fn at_least_one(key: &str, n: u32) -> Result<(), String> {
    if n < 1 {
        return Err(format!("{key} must be at least 1, got {n}"));
    }
    Ok(())
}
