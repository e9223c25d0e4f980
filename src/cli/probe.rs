//! `wa-watchdog probe SESSION`: one canary now, through the same client the
//! daemon uses, built from the config (so it needs the provider's
//! credentials, like the daemon). Records nothing: the database belongs to
//! the daemon. Exit 0 delivered, 1 anything else, 2 usage or config.

use rand::Rng;

use super::{CliError, ProbeArgs, Target};
use crate::config::{ChatTarget, Config, SessionSelector};
use crate::confirm;
use crate::provider::{Canary, Outcome, Provider};

pub(super) async fn run(args: ProbeArgs) -> Result<(), CliError> {
    let config = Config::load(&args.config).map_err(|e| CliError::Usage(e.to_string()))?;
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    // Plain names resolve against the sessions the config lists; a
    // discovering provider may have any session.
    let known: Vec<(String, String)> = config
        .providers
        .iter()
        .flat_map(|p| match &p.sessions {
            SessionSelector::Named(names) => names
                .iter()
                .map(|n| (p.name.clone(), n.clone()))
                .collect::<Vec<_>>(),
            SessionSelector::All => Vec::new(),
        })
        .collect();
    let discovering: Vec<String> = config
        .providers
        .iter()
        .filter(|p| matches!(p.sessions, SessionSelector::All))
        .map(|p| p.name.clone())
        .collect();
    let listed: Vec<String> = if known.iter().any(|(_, s)| s == &args.session) {
        Vec::new()
    } else {
        discovering
    };
    let target = Target::resolve(&args.session, args.provider.as_deref(), &known, &listed)?;
    let Some(pc) = config.provider(&target.provider) else {
        return Err(CliError::Usage(format!(
            "{}: no [[provider]] is named {:?}",
            config.path.display(),
            target.provider
        )));
    };
    if !pc.is_enabled(&target.session) {
        eprintln!(
            "note: the daemon does not watch {target} (not selected by the config); probing it anyway"
        );
    }
    let client = Provider::from_config(pc)
        .map_err(|e| CliError::Usage(format!("provider {:?}: {e}", pc.name)))?;
    let nonce = format!("{:08x}", rand::rng().random::<u32>());
    let text = pc.canary.render_text(&nonce);
    let chat = match pc.chat_for(&target.session) {
        ChatTarget::SelfChat => None,
        ChatTarget::Id(id) => Some(id),
    };
    let canary = Canary {
        chat: chat.as_deref(),
        text: &text,
        timeout: pc.canary.timeout,
        confirm: pc.canary.confirm,
    };
    let started = std::time::Instant::now();
    let clock = crate::clock::Clock::system();
    let sent_at = clock.now();
    let mut report = client.probe(&target.session, &canary).await;
    if let Some(id) = report.pending_ack.clone() {
        // Accepted is not delivered: wait for WhatsApp's evidence like the daemon.
        eprintln!("{target}: accepted as {id}; waiting for confirmation (up to ack_timeout)");
        let pending = confirm::Pending::new(id, sent_at, pc.canary.ack_timeout, report.http_status);
        let mut at = pending.first_look();
        report = loop {
            let wait = at.since(clock.now());
            tokio::time::sleep(wait).await;
            let evidence = client
                .look(
                    &target.session,
                    &pending.message_id,
                    chat.as_deref(),
                    pc.canary.timeout,
                )
                .await;
            let verdict = confirm::verdict(&pending, evidence, clock.now());
            match verdict.report(&pending) {
                Some(r) => break r,
                None => {
                    if let confirm::Verdict::LookAgainAt(next) = verdict {
                        at = next;
                    }
                }
            }
        };
    }
    let took = started.elapsed().as_millis();
    let status = report
        .http_status
        .map(|s| format!("HTTP {s}, "))
        .unwrap_or_default();
    let sent = if report.sent {
        "canary sent"
    } else {
        "no canary sent"
    };
    let detail = if report.detail.is_empty() {
        String::new()
    } else {
        format!(": {}", report.detail)
    };
    println!(
        "{target}: {} ({status}{took} ms, {sent}){detail}",
        report.outcome
    );
    if report.outcome == Outcome::Delivered {
        Ok(())
    } else {
        Err(CliError::ProbeFailed)
    }
}
