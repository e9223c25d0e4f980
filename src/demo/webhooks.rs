//! The demo's webhooks: the WAHA simulator pushes `message.ack` for every
//! canary it acks, the first Green-API canary is confirmed by an
//! `outgoingMessageStatus` push before the first look at the queue, and a
//! pushed incoming `{{SWE003}}` (stale keys) later makes the instance need
//! pairing.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{DEMO_GREEN_ID, DEMO_HOOK_KEY, DEMO_HOOK_TOKEN, Shared, answer, clock_text};
use crate::sim::green_api::GreenSim;
use crate::sim::waha::WahaSim;
use crate::sim::webhooks::{HookAuth, HookSender, HookTarget};

/// Points the WAHA simulator's webhook at the daemon at `http` and starts
/// the task of the Green-API pushes (the SWE003 one after `swe003_after`).
pub(super) fn spawn<O: Fn(String) + Send + Sync + 'static>(
    tasks: &mut JoinSet<()>,
    swe003_after: Option<Duration>,
    waha_sim: &WahaSim,
    green_sim: &GreenSim,
    http: SocketAddr,
    shared: &Shared<O>,
) {
    let Shared { out, clock, .. } = shared;
    waha_sim.control().set_webhook(Some(HookTarget {
        events: vec!["message.ack".to_string()],
        ..HookTarget::new(
            format!("http://{}/webhooks/waha-demo", http),
            HookAuth::Hmac(DEMO_HOOK_KEY.to_string()),
        )
    }));
    let push = HookSender::new(
        format!("http://{}/webhooks/green-demo", http),
        HookAuth::Token(DEMO_HOOK_TOKEN.to_string()),
        clock.clone(),
    );
    let ctl = green_sim.control();
    let (out, clock) = (out.clone(), clock.clone());
    tasks.spawn(async move {
        let started = tokio::time::Instant::now();
        // The first canary: pushed as `sent` a moment after the simulator
        // queued it, before the watchdog's first look at the queue.
        let first = loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(m) = ctl
                .messages(DEMO_GREEN_ID)
                .ok()
                .and_then(|m| m.into_iter().next())
            {
                break m.id_message;
            }
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = push
            .green_outgoing_status(DEMO_GREEN_ID, &first, "sent")
            .await;
        out(format!(
            "{}  ── pushed: Green-API outgoingMessageStatus `sent` for canary {first} → {}",
            clock_text(clock.now()),
            answer(status)
        ));
        if let Some(after) = swe003_after {
            tokio::time::sleep(after.saturating_sub(started.elapsed())).await;
            let status = push
                .green_incoming_text(DEMO_GREEN_ID, "DEMO-SWE003", "{{SWE003}}")
                .await;
            out(format!(
                "{}  ── pushed: Green-API incomingMessageReceived {{{{SWE003}}}} (stale keys) → {}",
                clock_text(clock.now()),
                answer(status)
            ));
        }
    });
}
