//! The demo's round-trip ring: the second WAHA member stops receiving
//! (WAHA issue #1931) at its time, and with webhooks on, what the ring's
//! numbers receive is pushed to the daemon as the providers would (WAHA
//! `message`, Green-API `incomingMessageReceived`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{DEMO_GREEN_ID, DEMO_GREEN_WID, DEMO_HOOK_KEY, DEMO_HOOK_TOKEN, RingDemo, Shared};
use super::{clock_text, record_fault, session_name};
use crate::sim::network::Network;
use crate::sim::waha::WahaSim;
use crate::sim::webhooks::{HookAuth, HookSender};

/// Starts the ring's tasks: its fault, and with `webhooks` the pushes of
/// what its members receive to the daemon at `http`.
pub(super) fn spawn<O: Fn(String) + Send + Sync + 'static>(
    tasks: &mut JoinSet<()>,
    r: &RingDemo,
    webhooks: bool,
    waha_sim: &WahaSim,
    http: SocketAddr,
    network: &Network,
    shared: &Shared<O>,
) {
    let Shared { out, report, clock } = shared;
    let ctl = waha_sim.control();
    let (a, b) = (session_name(r.members.0), session_name(r.members.1));
    if let Some(after) = r.inbound_dead_after {
        let (out, report, clock, ctl, b) = (
            out.clone(),
            report.clone(),
            clock.clone(),
            ctl.clone(),
            b.clone(),
        );
        tasks.spawn(async move {
            tokio::time::sleep(after).await;
            match ctl.set_inbound(&b, Some(crate::sim::network::InboundFault::Dead)) {
                Ok(()) => {
                    record_fault(&report, &b, "inbound dead", clock.now());
                    out(format!(
                        "{}  ── injected: messages to {b} no longer arrive; it still sends \
                         and its status stays WORKING",
                        clock_text(clock.now())
                    ));
                }
                Err(e) => out(format!("cannot stop {b}'s inbound: {e}")),
            }
        });
    }
    if webhooks {
        // The providers push what their numbers receive: WAHA `message`,
        // Green-API `incomingMessageReceived`.
        let waha_push = HookSender::new(
            format!("http://{}/webhooks/waha-demo", http),
            HookAuth::Hmac(DEMO_HOOK_KEY.to_string()),
            clock.clone(),
        );
        let green_push = HookSender::new(
            format!("http://{}/webhooks/green-demo", http),
            HookAuth::Token(DEMO_HOOK_TOKEN.to_string()),
            clock.clone(),
        );
        let (network, clock) = (network.clone(), clock.clone());
        tasks.spawn(async move {
            let mut members: Vec<(String, String)> = Vec::new();
            for s in [a, b] {
                if let Ok(n) = ctl.me_id(&s) {
                    members.push((s, n));
                }
            }
            members.push((DEMO_GREEN_ID.to_string(), DEMO_GREEN_WID.to_string()));
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                for (session, number) in &members {
                    for m in network.take_pushes(number, clock.now()) {
                        let _ = if session == DEMO_GREEN_ID {
                            green_push
                                .green_incoming_from(DEMO_GREEN_ID, &m.id, &m.from, &m.text)
                                .await
                        } else {
                            waha_push
                                .waha_message(session, &m.id, &m.from, &m.text)
                                .await
                        };
                    }
                }
            }
        });
    }
}
