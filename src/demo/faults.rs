//! The faults the demo injects into the simulators, each at its time: the
//! WAHA desync (every send fails while the status says WORKING, WAHA issue
//! #2084), sends accepted but never acked (WAHA issue #1721), and the
//! Green-API queue that stops draining.

use tokio::task::JoinSet;

use super::{DEMO_GREEN_ID, DemoOptions, Shared, clock_text, record_fault, session_name};
use crate::sim::green_api::{GreenSim, QueueMode};
use crate::sim::waha::{Fault, WahaSim};

/// Starts one task per fault `opts` asks for; the desync hits `victim`.
pub(super) fn spawn<O: Fn(String) + Send + Sync + 'static>(
    tasks: &mut JoinSet<()>,
    opts: &DemoOptions,
    waha_sim: &WahaSim,
    green_sim: &GreenSim,
    shared: &Shared<O>,
    victim: &str,
) {
    let Shared { out, report, clock } = shared;
    {
        let ctl = waha_sim.control();
        let (out, report, clock, victim) = (
            out.clone(),
            report.clone(),
            clock.clone(),
            victim.to_string(),
        );
        let after = opts.desync_after;
        tasks.spawn(async move {
            tokio::time::sleep(after).await;
            match ctl.inject(&victim, Fault::Desync) {
                Ok(()) => {
                    record_fault(&report, &victim, "desync", clock.now());
                    out(format!(
                        "{}  ── injected: {victim} now answers every send with HTTP 500 \"server returned \
                         error 400\"; its status stays WORKING",
                        clock_text(clock.now())
                    ));
                }
                Err(e) => out(format!("cannot inject the desync: {e}")),
            }
        });
    }
    if let Some((n, after)) = opts.never_acked {
        let ctl = waha_sim.control();
        let (out, report, clock) = (out.clone(), report.clone(), clock.clone());
        let session = session_name(n.clamp(1, opts.sessions.max(1)));
        tasks.spawn(async move {
            tokio::time::sleep(after).await;
            match ctl.inject(&session, Fault::AcceptedNeverAcked) {
                Ok(()) => {
                    record_fault(&report, &session, "accepted, never acked", clock.now());
                    out(format!(
                        "{}  ── injected: {session} answers every send with 201 and a message id, \
                         but the message's ack stays PENDING; its status stays WORKING",
                        clock_text(clock.now())
                    ));
                }
                Err(e) => out(format!("cannot inject the never-acked fault: {e}")),
            }
        });
    }
    if let Some(after) = opts.green_stuck_after {
        let ctl = green_sim.control();
        let (out, report, clock) = (out.clone(), report.clone(), clock.clone());
        tasks.spawn(async move {
            tokio::time::sleep(after).await;
            match ctl.set_queue_mode(DEMO_GREEN_ID, QueueMode::StuckUntilReboot) {
                Ok(()) => {
                    record_fault(&report, DEMO_GREEN_ID, "stuck queue", clock.now());
                    out(format!(
                        "{}  ── injected: {DEMO_GREEN_ID} accepts messages (200 + idMessage) but its \
                         queue no longer drains; its state stays `authorized`",
                        clock_text(clock.now())
                    ));
                }
                Err(e) => out(format!("cannot stop the Green-API queue: {e}")),
            }
        });
    }
}
