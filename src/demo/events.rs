//! The demo's live output: every state change, remediation step, pushed
//! confirmation and ring canary miss as one line, and the faults' fate in
//! the report.

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::{DemoReport, clock_text, lock};
use crate::events::Event;
use crate::machine::State;

pub(super) async fn print(
    mut events: broadcast::Receiver<Event>,
    out: Arc<impl Fn(String) + Send + Sync + 'static>,
    report: Arc<Mutex<DemoReport>>,
) {
    // Confirmations by push are printed once per session (every WAHA canary
    // is confirmed that way while webhooks are on).
    let mut pushed_shown = std::collections::HashSet::new();
    let mut ring_shown = std::collections::HashSet::<String>::new();
    loop {
        let e = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                out(format!("(demo output skipped {n} events)"));
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match e {
            Event::Transition {
                at,
                session,
                from,
                to,
                reason,
                ..
            } => {
                {
                    let mut r = lock(&report);
                    if let Some(f) = r.faults.iter_mut().find(|f| f.session == session) {
                        if to == State::Restarting && f.remedied_at.is_none() {
                            f.remedied_at = Some(at);
                        }
                        if from == State::Recovering
                            && to == State::Healthy
                            && f.healed_at.is_none()
                        {
                            f.healed_at = Some(at);
                        }
                    }
                }
                if to == State::Recovering {
                    ring_shown.remove(&session);
                }
                let arrow = format!("{from} → {to}");
                out(format!(
                    "{}  {session:<10} {arrow:<26} {reason}",
                    clock_text(at)
                ));
            }
            Event::Remediation {
                at,
                provider,
                session,
                stage,
                detail,
            } => {
                let green = provider == "green-demo";
                let what = match (stage.as_str(), green) {
                    ("begin", false) => {
                        format!("restart requested (POST /api/sessions/{session}/restart)")
                    }
                    ("begin", true) => "reboot requested (GET .../reboot/<token>)".to_string(),
                    ("called", false) => {
                        "restart accepted by WAHA; waiting for WORKING".to_string()
                    }
                    ("called", true) => "reboot accepted; waiting for `authorized`".to_string(),
                    (other, _) => format!("remediation result: {other} {detail}"),
                };
                out(format!("{}  {session:<10} {what}", clock_text(at)));
            }
            Event::Probe {
                at,
                session,
                detail,
                ..
            } if detail.contains("by webhook") && pushed_shown.insert(session.clone()) => {
                out(format!(
                    "{}  {session:<10} canary confirmed by a push: {detail}",
                    clock_text(at)
                ));
            }
            // Ring canaries: every miss, and the first receipt per session
            // (and the one that verifies a restart).
            Event::Probe {
                at,
                session,
                action: crate::machine::Action::Ring,
                outcome,
                detail,
                ..
            } if outcome != crate::outcome::Outcome::Delivered
                || ring_shown.insert(session.clone()) =>
            {
                out(format!("{}  {session:<10} {detail}", clock_text(at)));
            }
            Event::SessionAdded { at, session, .. } => {
                out(format!(
                    "{}  {session:<10} watching; canaries start",
                    clock_text(at)
                ));
            }
            _ => {}
        }
    }
}
