//! The I/O of one scheduled step: a probe, a verification canary, a status
//! poll, a restart call, a session-list read or a retention prune. A job owns
//! clones of what it needs (clients are cheap handles) so it can run on its
//! own task while the scheduler goes on; it returns data, never errors.

use std::time::Duration;

use crate::clock::{Clock, Timestamp};
use crate::machine::{Action, StatusRead};
use crate::provider::{Canary, ProbeReport, Provider};
use crate::store::{Store, StoreError};

/// What a job must do.
#[derive(Clone, Debug)]
pub enum Work {
    /// Probe or verification canary (`Action::Probe` / `Action::Verify`).
    Probe {
        chat: Option<String>,
        text: String,
        timeout: Duration,
    },
    /// Status read while restarting.
    Status { timeout: Duration },
    /// Is a queued canary still in the provider's queue?
    ConfirmAck {
        message_id: String,
        timeout: Duration,
    },
    /// The provider's restart call.
    Restart { timeout: Duration },
    /// Read the provider's session list.
    Discover { timeout: Duration },
    /// Delete probe records older than `before`.
    Prune { before: Timestamp },
}

/// What a job found.
#[derive(Debug)]
pub enum Output {
    Probe(ProbeReport),
    Status(StatusRead, ProbeReport),
    /// One look at a queued canary, for the confirmation verdict.
    Ack(crate::confirm::Evidence),
    Restart(Result<(), crate::provider::CallFailed>),
    Discovered(Result<Vec<String>, ProbeReport>),
    Pruned(Result<u64, StoreError>),
}

/// Which scheduled step a job belongs to, so its result can be matched
/// against the session's current schedule (a stale result is not applied).
#[derive(Clone, Debug)]
pub struct JobKey {
    pub provider: usize,
    /// None for provider-wide jobs (discovery) and store jobs.
    pub session: Option<String>,
    pub seq: u64,
    pub action: Option<Action>,
    pub due: Timestamp,
}

#[derive(Debug)]
pub struct JobDone {
    pub key: JobKey,
    pub started: Timestamp,
    pub finished: Timestamp,
    /// Real elapsed time of the I/O, for latency metrics.
    pub latency: Duration,
    pub output: Output,
}

/// Runs one job to completion.
pub async fn run(
    key: JobKey,
    work: Work,
    provider: Option<Provider>,
    store: Store,
    clock: Clock,
) -> JobDone {
    let started = clock.now();
    let real_start = tokio::time::Instant::now();
    let session = key.session.clone().unwrap_or_default();
    let output = match (work, provider) {
        (
            Work::Probe {
                chat,
                text,
                timeout,
            },
            Some(p),
        ) => {
            let canary = Canary {
                chat: chat.as_deref(),
                text: &text,
                timeout,
            };
            Output::Probe(p.probe(&session, &canary).await)
        }
        (Work::Status { timeout }, Some(p)) => {
            let (read, report) = p.status(&session, timeout).await;
            Output::Status(read, report)
        }
        (
            Work::ConfirmAck {
                message_id,
                timeout,
            },
            Some(p),
        ) => Output::Ack(match p.still_queued(&message_id, timeout).await {
            Ok(still_queued) => crate::confirm::Evidence::QueueRead { still_queued },
            Err(report) => crate::confirm::Evidence::LookupFailed(report),
        }),
        (Work::Restart { timeout }, Some(p)) => Output::Restart(p.restart(&session, timeout).await),
        (Work::Discover { timeout }, Some(p)) => Output::Discovered(p.list_sessions(timeout).await),
        (Work::Prune { before }, _) => Output::Pruned(store.prune_probes(before).await),
        (work, None) => {
            // A provider job without a provider is a scheduler bug; report it
            // as data rather than bring the daemon down.
            let report = ProbeReport {
                outcome: crate::provider::Outcome::BadRequest,
                http_status: None,
                detail: format!("internal: {work:?} scheduled without a provider"),
                sent: false,
                pending_ack: None,
            };
            Output::Probe(report)
        }
    };
    JobDone {
        key,
        started,
        finished: clock.now(),
        latency: real_start.elapsed(),
        output,
    }
}
