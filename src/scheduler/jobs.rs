//! The I/O of one scheduled step: a session's probe, verification canary,
//! status poll, confirmation look or restart call; a provider's session-list
//! read; or a retention prune. A job owns clones of what it needs (clients
//! are cheap handles) so it can run on its own task while the scheduler goes
//! on; it returns data, never errors. Each kind carries exactly what it
//! needs: a store job names no provider, a provider job always has a client.

use std::time::Duration;

use crate::clock::{Clock, Timestamp};
use crate::confirm::Evidence;
use crate::machine::{Action, StatusRead};
use crate::provider::{CallFailed, Canary, ProbeReport, Provider};
use crate::store::{Store, StoreError};

/// A job to run.
#[derive(Clone, Debug)]
pub enum Job {
    /// One step of one session.
    Session {
        key: JobKey,
        work: Work,
        client: Provider,
    },
    /// Read provider `provider`'s session list.
    Discovery {
        provider: usize,
        timeout: Duration,
        client: Provider,
    },
    /// Retention: delete records older than `before`, roll older probes up
    /// into buckets (`Store::roll_up_probes` at `now`).
    Prune { before: Timestamp, now: Timestamp },
    /// Read ring member `member`'s own number.
    RingNumber {
        ring: usize,
        member: usize,
        session: String,
        timeout: Duration,
        client: Provider,
    },
    /// Read ring member `receiver`'s chat with `from` for `nonce`.
    RingLook {
        ring: usize,
        receiver: usize,
        nonce: String,
        from: String,
        session: String,
        timeout: Duration,
        client: Provider,
    },
}

/// Who a job in flight belongs to (freed again if the job panics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Session { provider: usize, session: String },
    Discovery { provider: usize },
    Prune,
    Ring { ring: usize, member: usize },
}

impl Job {
    pub fn owner(&self) -> Owner {
        match self {
            Job::Session { key, .. } => Owner::Session {
                provider: key.provider,
                session: key.session.clone(),
            },
            Job::Discovery { provider, .. } => Owner::Discovery {
                provider: *provider,
            },
            Job::Prune { .. } => Owner::Prune,
            Job::RingNumber { ring, member, .. } => Owner::Ring {
                ring: *ring,
                member: *member,
            },
            Job::RingLook { ring, receiver, .. } => Owner::Ring {
                ring: *ring,
                member: *receiver,
            },
        }
    }
}

/// What a session job must do.
#[derive(Clone, Debug)]
pub enum Work {
    /// Probe or verification canary (`Action::Probe` / `Action::Verify`).
    Probe {
        chat: Option<String>,
        text: String,
        timeout: Duration,
        confirm: crate::config::ConfirmMode,
    },
    /// Status read while restarting.
    Status { timeout: Duration },
    /// One look at a sent canary (WAHA read-back, Green-API getMessage).
    ConfirmAck {
        message_id: String,
        /// The configured canary chat (None: the session's own).
        chat: Option<String>,
        timeout: Duration,
    },
    /// The provider's restart call.
    Restart { timeout: Duration },
}

/// What a session job found.
#[derive(Debug)]
pub enum Output {
    Probe(ProbeReport),
    Status(StatusRead, ProbeReport),
    /// One look at a sent canary, for the confirmation verdict.
    Ack(Evidence),
    Restart(Result<(), CallFailed>),
}

/// Which scheduled step a session job belongs to, so its result can be
/// matched against the session's current schedule (a stale result is not
/// applied).
#[derive(Clone, Debug)]
pub struct JobKey {
    pub provider: usize,
    pub session: String,
    pub seq: u64,
    pub action: Action,
    pub due: Timestamp,
}

/// A finished job.
#[derive(Debug)]
pub enum JobDone {
    Session {
        key: JobKey,
        started: Timestamp,
        finished: Timestamp,
        /// Real elapsed time of the I/O, for latency metrics.
        latency: Duration,
        output: Output,
    },
    Discovery {
        provider: usize,
        result: Result<Vec<String>, ProbeReport>,
    },
    Pruned {
        result: Result<u64, StoreError>,
    },
    RingNumber {
        ring: usize,
        member: usize,
        result: Result<String, String>,
    },
    RingLook {
        ring: usize,
        receiver: usize,
        nonce: String,
        result: Result<bool, String>,
    },
}

/// Runs one job to completion.
pub async fn run(job: Job, store: Store, clock: Clock) -> JobDone {
    match job {
        Job::Session { key, work, client } => {
            let started = clock.now();
            let real_start = tokio::time::Instant::now();
            let output = session_work(&client, &key.session, work).await;
            JobDone::Session {
                key,
                started,
                finished: clock.now(),
                latency: real_start.elapsed(),
                output,
            }
        }
        Job::Discovery {
            provider,
            timeout,
            client,
        } => JobDone::Discovery {
            provider,
            result: client.list_sessions(timeout).await,
        },
        Job::Prune { before, now } => JobDone::Pruned {
            result: async {
                let pruned = store.prune_history(before).await?;
                let rolled = store.roll_up_probes(now, before).await?;
                Ok(pruned + rolled.rolled + rolled.expired)
            }
            .await,
        },
        Job::RingNumber {
            ring,
            member,
            session,
            timeout,
            client,
        } => JobDone::RingNumber {
            ring,
            member,
            result: client.own_number(&session, timeout).await,
        },
        Job::RingLook {
            ring,
            receiver,
            nonce,
            from,
            session,
            timeout,
            client,
        } => {
            let result = client.ring_seen(&session, &from, &nonce, timeout).await;
            JobDone::RingLook {
                ring,
                receiver,
                nonce,
                result,
            }
        }
    }
}

async fn session_work(client: &Provider, session: &str, work: Work) -> Output {
    match work {
        Work::Probe {
            chat,
            text,
            timeout,
            confirm,
        } => {
            let canary = Canary {
                chat: chat.as_deref(),
                text: &text,
                timeout,
                confirm,
            };
            Output::Probe(client.probe(session, &canary).await)
        }
        Work::Status { timeout } => {
            let (read, report) = client.status(session, timeout).await;
            Output::Status(read, report)
        }
        Work::ConfirmAck {
            message_id,
            chat,
            timeout,
        } => Output::Ack(
            client
                .look(session, &message_id, chat.as_deref(), timeout)
                .await,
        ),
        Work::Restart { timeout } => Output::Restart(client.restart(session, timeout).await),
    }
}
