//! `check-config` output: the resolved [`Config`] as TOML a human can read,
//! every key present, defaults filled in, each provider's merged canary and
//! policy spelled out.
//!
//! Must not: print a secret's value. Secrets appear as
//! `"<redacted: env WAHA_API_KEY>"` markers (through `Secret`'s `Display`,
//! which never shows the value). The output is valid TOML; read back, each
//! marker would be an inline secret, so it is for reading and diffing, not a
//! config to deploy.

use std::fmt::Display;
use std::time::Duration;

use super::{Config, ProviderConfig, ProviderKind, Secret, SessionSelector};
use crate::policy::PolicyConfig;

/// Renders `cfg` for `check-config`. Never contains a secret value.
pub fn render_redacted(cfg: &Config) -> String {
    let mut out = Out(String::new());
    out.line(format_args!(
        "# wa-watchdog configuration resolved from {}",
        cfg.path.display()
    ));
    out.line(
        "# defaults filled in, [canary] and [policy] merged into each provider, secrets redacted",
    );
    for warning in &cfg.warnings {
        out.line(format_args!("# warning: {}", one_line(warning)));
    }

    let d = &cfg.daemon;
    out.blank();
    out.line("[daemon]");
    out.kv("database", quote(&d.database.to_string()));
    out.kv("replica", quote(&d.replica));
    out.kv("lease_ttl", duration(d.lease_ttl));
    out.kv("listen", quote(&d.listen.to_string()));
    out.kv("log_format", quote(d.log_format.as_str()));
    out.kv("discovery_interval", duration(d.discovery_interval));
    out.kv("retire_after_rounds", d.retire_after_rounds);
    out.kv("retire_after", duration(d.retire_after));
    out.kv("retention", duration(d.retention));
    out.secret(
        "admin_token",
        d.admin_token.as_ref(),
        "none: POST /api/v1/... is off",
    );
    out.kv("shutdown_grace", duration(d.shutdown_grace));
    match d.webhook_listen {
        Some(addr) => out.kv("webhook_listen", quote(&addr.to_string())),
        None => out.line("# webhook_listen: none, POST /webhooks/... is served on listen"),
    }
    out.kv("session_metrics", d.session_metrics);
    out.kv("worker_threads", d.worker_threads);

    for p in &cfg.providers {
        provider(&mut out, p);
    }
    out.0
        .push_str(&super::maintenance::render(&cfg.maintenance, quote));
    out.0.push_str(&super::ring::render(&cfg.rings, quote));

    out.blank();
    match &cfg.alertmanager {
        Some(am) => {
            out.line("[alertmanager]");
            out.kv("url", quote(&am.url));
            out.kv("resend_interval", duration(am.resend_interval));
        }
        None => out.line("# [alertmanager]: absent, direct push is off"),
    }
    out.0
}

fn provider(out: &mut Out, p: &ProviderConfig) {
    out.blank();
    out.line("[[provider]]");
    out.kv("name", quote(&p.name));
    out.kv("kind", quote(p.kind.as_str()));
    out.kv("url", quote(&p.url));
    match p.kind {
        ProviderKind::Waha => {
            out.secret("api_key", p.api_key.as_ref(), "none: no X-Api-Key is sent");
            let sessions = match &p.sessions {
                SessionSelector::All => "[\"*\"]".to_string(),
                SessionSelector::Named(names) => list(names),
            };
            out.kv("sessions", sessions);
        }
        ProviderKind::GreenApi => {
            if let Some(id) = &p.id_instance {
                out.kv("id_instance", quote(id));
            }
            out.secret("api_token", p.api_token.as_ref(), "none");
            out.line(format_args!(
                "# one session, named {}",
                quote(p.id_instance.as_deref().unwrap_or(""))
            ));
        }
    }
    out.kv("max_concurrent_probes", p.max_concurrent_probes);
    out.kv("connect_timeout", duration(p.connect_timeout));
    if p.kind == ProviderKind::GreenApi {
        out.kv("reboot_on_yellow_card", p.reboot_on_yellow_card);
        out.kv("min_request_interval", duration(p.min_request_interval));
    }
    let w = &p.webhook;
    let key = match p.kind {
        ProviderKind::Waha => "webhook_hmac_key",
        ProviderKind::GreenApi => "webhook_token",
    };
    match &w.auth {
        crate::config::WebhookAuth::Hmac(s) | crate::config::WebhookAuth::Token(s) => {
            out.secret(key, Some(s), "none")
        }
        crate::config::WebhookAuth::Insecure => out.kv("webhook_insecure", true),
        crate::config::WebhookAuth::Off => out.secret(
            key,
            None,
            "none: POST /webhooks/... is off for this provider",
        ),
    }
    out.kv("webhook_replay_window", duration(w.replay_window));
    out.kv("webhook_body_limit", w.body_limit);
    out.kv("webhook_queue_size", w.queue_size);

    let c = &p.canary;
    out.blank();
    out.line("[provider.canary]");
    out.kv("interval", duration(c.interval));
    out.kv("jitter", format_args!("{:?}", c.jitter));
    out.kv("timeout", duration(c.timeout));
    out.kv("ack_timeout", duration(c.ack_timeout));
    out.kv("confirm", quote(c.confirm.as_str()));
    out.kv("text", quote(&c.text));
    out.kv("chat", quote(c.chat.as_str()));

    out.blank();
    out.line("[provider.policy]");
    policy(out, &p.policy);

    for s in &p.session_overrides {
        out.blank();
        out.line("[[provider.session]]");
        out.kv("name", quote(&s.name));
        match &s.chat {
            Some(chat) => out.kv("chat", quote(chat.as_str())),
            None => out.line(format_args!(
                "# chat: inherited, {}",
                quote(p.canary.chat.as_str())
            )),
        }
        match s.interval {
            Some(i) => out.kv("interval", duration(i)),
            None => out.line(format_args!(
                "# interval: inherited, {}",
                duration(p.canary.interval)
            )),
        }
        out.kv("enabled", s.enabled);
    }
}

fn policy(out: &mut Out, p: &PolicyConfig) {
    out.kv("desync_signatures", list(&p.desync_signatures));
    out.kv("desync_confirmations", p.desync_confirmations);
    out.kv("send_failure_confirmations", p.send_failure_confirmations);
    out.kv("confirm_interval", duration(p.confirm_interval));
    out.kv("restart_timeout", duration(p.restart_timeout));
    out.kv("restart_poll_interval", duration(p.restart_poll_interval));
    out.kv("restart_call_timeout", duration(p.restart_call_timeout));
    out.kv("starting_grace", duration(p.starting_grace));
    out.kv("restart_stopped", p.restart_stopped);
    out.kv("max_restarts", p.max_restarts);
    out.kv("restart_window", duration(p.restart_window));
    out.kv("backoff_initial", duration(p.backoff_initial));
    out.kv("backoff_max", duration(p.backoff_max));
    out.kv("healthy_reset", duration(p.healthy_reset));
    out.kv("max_concurrent_restarts", p.max_concurrent_restarts);
    out.kv("restart_budget", p.restart_budget);
    out.kv("restart_budget_window", duration(p.restart_budget_window));
    out.kv("outage_fraction", format_args!("{:?}", p.outage_fraction));
    out.kv("outage_min_sessions", p.outage_min_sessions);
    out.kv("dry_run", p.dry_run);
}

/// A `String` being written; `fmt::Write` on a `String` cannot fail, so these
/// helpers do not return a `Result` to ignore.
struct Out(String);

impl Out {
    fn line(&mut self, text: impl Display) {
        self.0.push_str(&text.to_string());
        self.0.push('\n');
    }

    fn blank(&mut self) {
        self.0.push('\n');
    }

    fn kv(&mut self, key: &str, value: impl Display) {
        self.line(format_args!("{key} = {value}"));
    }

    /// A secret as its redaction marker, or a comment when there is none.
    fn secret(&mut self, key: &str, secret: Option<&Secret>, none: &str) {
        match secret {
            // `Secret`'s Display is the marker, never the value.
            Some(s) => self.kv(key, quote(&s.to_string())),
            None => self.line(format_args!("# {key}: {none}")),
        }
    }
}

/// A duration in the humantime form the config accepts back, quoted.
fn duration(d: Duration) -> String {
    quote(&humantime::format_duration(d).to_string())
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A TOML basic string.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Keeps a warning inside its comment line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}
