//! The daemon's one writer: every write of the scheduler goes through one
//! task that commits what has queued up as one transaction (group commit).
//!
//! Why: at 100k sessions a probe every few milliseconds made two autocommit
//! transactions each (probe INSERT, session UPSERT), and each commit is a
//! WAL append, several file locks and a hand-off to sqlx's SQLite thread.
//! Committing whatever arrived within [`BATCH_LINGER`] (at most
//! [`BATCH_MAX`] writes) as one transaction turns that into one commit for
//! many writes.
//!
//! Durability promises, per kind of write:
//! - **Awaited** ([`Writer::write`]): the caller waits until the batch holding
//!   the write has committed. The restart intent uses it, so the intent is on
//!   disk before the restart call (a later batch cannot overtake it: the
//!   queue is FIFO, so everything submitted before it is committed with or
//!   before it).
//! - **Queued** ([`Writer::submit`]): probes, transitions, session saves,
//!   remediation results. The caller never waits; the write commits within
//!   [`BATCH_LINGER`] (100 ms), a state change within
//!   [`STATE_CHANGE_LINGER`] (20 ms). The crash window: a process killed
//!   (SIGKILL, OOM, panic) loses what is queued and not yet committed, at
//!   most the last `BATCH_LINGER` plus one commit of writes (about the
//!   last tenth of a second of history), never a restart intent. Restore copes: intent rows
//!   newer than their session's last save are counted (see `persist.rs`).
//!   SIGTERM loses nothing: [`Writer::close`] commits the queue first.
//!   Power loss can additionally lose the last commits (WAL with
//!   `synchronous=NORMAL`), never corrupt the file.
//!
//! Bounded, never blocking: the queue holds [`WRITE_QUEUE`] writes; when the
//! database has not kept up for that long (locked by another process, a
//! stalled disk) a queued write is dropped and counted as a failure instead
//! of stalling the scheduler, like a timed-out write before; each batch is
//! bounded by [`super::WRITE_TIMEOUT`] like any write, so failing writes show
//! in [`Store::write_status`] (`/readyz`, `wa_watchdog_store_write_failures_total`).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::write::{Applied, Write};
use super::{Store, StoreError, WRITE_TIMEOUT};

/// Writes the queue holds: at 100k sessions every 5 minutes (about 700 writes
/// a second) some 20 s of writes, enough to ride out a locked database
/// without loss; a few MiB at most.
pub const WRITE_QUEUE: usize = 16_384;

/// Most writes in one transaction: keeps one commit (and the write lock)
/// to milliseconds.
pub const BATCH_MAX: usize = 1024;

/// How long the writer waits for more writes after the first of a batch.
/// An awaited write or a flush ends the wait at once, so this delays only
/// writes nobody waits for (probes, transitions, session saves).
///
/// Why 100 ms and not a few: every commit is a transaction of several
/// statements, each a hand-off to sqlx's SQLite thread and back. At 100
/// probes a second a 5 ms linger committed about one probe per batch;
/// 100 ms commits about ten, and the daemon's CPU per probe fell by about
/// a fifth (README "Benchmarks", `scripts/bench-blackbox 2000 20s`:
/// 1,009 → 708-785 µs per probe on one thread). The price is the crash
/// window below.
pub const BATCH_LINGER: Duration = Duration::from_millis(100);

/// How long a batch holding a state change waits for more writes (from the
/// batch's first write): state changes are what an operator looks at next
/// (the status page, the API and `status` read the database), so they show
/// there a fiftieth of a second after the log line, not a tenth. Not at
/// once: a burst of them (every session's first probe after a fresh start,
/// a provider-wide outage) committed one transaction per change, ~11 % more
/// CPU per probe over the first 5 minutes at 100k sessions; so the burst
/// commits at most fifty batches a second.
pub const STATE_CHANGE_LINGER: Duration = Duration::from_millis(20);

/// How long [`Writer::write`] waits for its commit: its turn in the queue
/// (a batch ahead of it may take up to [`WRITE_TIMEOUT`]) and its own batch.
pub const AWAIT_TIMEOUT: Duration = Duration::from_secs(2 * WRITE_TIMEOUT.as_secs());

type Reply = oneshot::Sender<Result<Applied, StoreError>>;

enum Msg {
    Write { write: Write, reply: Option<Reply> },
    Flush(oneshot::Sender<()>),
}

/// Handle to the writer task (owned by the scheduler). Not `Clone`: one
/// owner closes it.
#[derive(Debug)]
pub struct Writer {
    tx: Option<mpsc::Sender<Msg>>,
    task: Option<JoinHandle<()>>,
    store: Store,
}

impl Writer {
    /// Starts the writer task on `store`.
    pub fn start(store: Store) -> Writer {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let task = tokio::spawn(run(store.clone(), rx));
        Writer {
            tx: Some(tx),
            task: Some(task),
            store,
        }
    }

    /// Queues `write` without waiting. Fails (and counts the failure) when
    /// the queue is full or the writer has stopped.
    pub fn submit(&self, write: Write) -> Result<(), StoreError> {
        let op = write.op();
        let result = match &self.tx {
            None => Err(StoreError::WriterClosed { op }),
            Some(tx) => tx
                .try_send(Msg::Write { write, reply: None })
                .map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => StoreError::QueueFull {
                        op,
                        queued: WRITE_QUEUE,
                    },
                    mpsc::error::TrySendError::Closed(_) => StoreError::WriterClosed { op },
                }),
        };
        if let Err(e) = &result {
            self.store.health.failed(op, e);
        }
        result
    }

    /// Queues `write` and waits until it is committed (at most
    /// [`AWAIT_TIMEOUT`]). A write whose wait timed out may still commit
    /// later: make it idempotent (intents carry their key).
    pub async fn write(&self, write: Write) -> Result<Applied, StoreError> {
        let op = write.op();
        let (reply, done) = oneshot::channel();
        let result = match &self.tx {
            None => Err(StoreError::WriterClosed { op }),
            Some(tx) => match tx.try_send(Msg::Write {
                write,
                reply: Some(reply),
            }) {
                Err(mpsc::error::TrySendError::Full(_)) => Err(StoreError::QueueFull {
                    op,
                    queued: WRITE_QUEUE,
                }),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(StoreError::WriterClosed { op }),
                Ok(()) => match tokio::time::timeout(AWAIT_TIMEOUT, done).await {
                    Ok(Ok(result)) => return result, // counted by the batch
                    Ok(Err(_)) => Err(StoreError::WriterClosed { op }),
                    Err(_) => Err(StoreError::WriteTimeout {
                        op,
                        after: AWAIT_TIMEOUT,
                    }),
                },
            },
        };
        if let Err(e) = &result {
            self.store.health.failed(op, e);
        }
        result
    }

    /// Waits until everything queued before this call is committed (or has
    /// failed). For readers in the same process that must see their own
    /// writes (tests on a manual clock, the scheduler before it reads a
    /// session back).
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        // Waits for room: a flush is rare and must come after what is queued.
        if tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Commits everything queued, then stops the task. Later writes fail with
    /// [`StoreError::WriterClosed`].
    pub async fn close(&mut self) {
        self.tx = None;
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the store writer failed");
        }
    }
}

/// The writer task: takes a batch off the queue, commits it, answers.
/// Ends when every sender is gone and the queue is empty.
async fn run(store: Store, mut rx: mpsc::Receiver<Msg>) {
    let mut batch: Vec<Write> = Vec::with_capacity(BATCH_MAX);
    let mut replies: Vec<(usize, Reply)> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let started = tokio::time::Instant::now();
        let mut due = take(first, &mut batch, &mut replies, &mut flushes);
        while batch.len() < BATCH_MAX {
            let next = match rx.try_recv() {
                Ok(msg) => Some(msg),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) if due == Due::Now => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(started + due.linger(), rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
            };
            match next {
                Some(msg) => due = due.max(take(msg, &mut batch, &mut replies, &mut flushes)),
                None => break,
            }
        }
        commit(&store, &batch, &mut replies).await;
        batch.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// How soon a batch commits, by the most pressing write it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Nobody waits: within [`BATCH_LINGER`].
    Linger,
    /// A state change: within [`STATE_CHANGE_LINGER`].
    Soon,
    /// Someone waits (an awaited write, a flush): at once.
    Now,
}

impl Due {
    /// How long the batch may wait for more, from its first write.
    fn linger(self) -> Duration {
        match self {
            Due::Linger => BATCH_LINGER,
            Due::Soon => STATE_CHANGE_LINGER,
            Due::Now => Duration::ZERO,
        }
    }
}

/// Adds `msg` to the batch being collected and says how soon it must
/// commit. The scheduler queues a step's writes (the transition, the
/// session save, its probe) before it yields, so on the default single
/// thread they all make the same batch.
fn take(
    msg: Msg,
    batch: &mut Vec<Write>,
    replies: &mut Vec<(usize, Reply)>,
    flushes: &mut Vec<oneshot::Sender<()>>,
) -> Due {
    match msg {
        Msg::Write { write, reply } => {
            let due = if reply.is_some() {
                Due::Now
            } else if matches!(write, Write::Transition(_)) {
                Due::Soon
            } else {
                Due::Linger
            };
            if let Some(reply) = reply {
                replies.push((batch.len(), reply));
            }
            batch.push(write);
            due
        }
        Msg::Flush(done) => {
            flushes.push(done);
            Due::Now
        }
    }
}

/// Commits one batch and answers the writes that wait for it.
async fn commit(store: &Store, batch: &[Write], replies: &mut Vec<(usize, Reply)>) {
    if batch.is_empty() {
        return;
    }
    match store.apply_batch(batch).await {
        Ok(applied) => {
            for (i, reply) in replies.drain(..) {
                let _ = reply.send(Ok(applied[i]));
            }
        }
        Err(e) if batch.len() > 1 && is_row_error(&e) => {
            // One bad row (a constraint the daemon should never violate)
            // must not take the rest of its batch down: each alone.
            tracing::warn!(writes = batch.len(), error = %e, "a write batch failed on one row; writing them one by one");
            let mut replies: std::collections::HashMap<usize, Reply> = replies.drain(..).collect();
            for (i, w) in batch.iter().enumerate() {
                let result = store
                    .apply_batch(std::slice::from_ref(w))
                    .await
                    .map(|a| a[0]);
                match (replies.remove(&i), result) {
                    (Some(reply), result) => {
                        let _ = reply.send(result);
                    }
                    (None, Err(e)) => tracing::error!(error = %e, "cannot record a write"),
                    (None, Ok(_)) => {}
                }
            }
        }
        Err(e) => {
            let mut ops = std::collections::BTreeMap::<&str, usize>::new();
            for w in batch {
                *ops.entry(w.op()).or_default() += 1;
            }
            tracing::error!(writes = batch.len(), ?ops, error = %e, "cannot record a batch of writes");
            for (i, reply) in replies.drain(..) {
                let _ = reply.send(Err(again(&e, batch[i].op())));
            }
        }
    }
}

/// A failure of one row rather than of the database (locked, full, gone).
fn is_row_error(e: &StoreError) -> bool {
    use sqlx::error::ErrorKind;
    match e {
        StoreError::Query {
            error: sqlx::Error::Database(d),
            ..
        } => matches!(
            d.kind(),
            ErrorKind::ForeignKeyViolation
                | ErrorKind::UniqueViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation
        ),
        StoreError::Query {
            error: sqlx::Error::Protocol(_),
            ..
        } => true,
        _ => false,
    }
}

/// The batch's error for one of its writes (errors are not `Clone`; a
/// timeout stays a timeout, so callers can tell it may commit late).
fn again(e: &StoreError, op: &'static str) -> StoreError {
    match e {
        StoreError::WriteTimeout { after, .. } => StoreError::WriteTimeout { op, after: *after },
        other => StoreError::Failed {
            op,
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::store::{ProbeRecord, SessionRecord, TransitionRecord};

    fn due(write: Write) -> Due {
        let (mut batch, mut replies, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
        let due = take(
            Msg::Write { write, reply: None },
            &mut batch,
            &mut replies,
            &mut flushes,
        );
        assert_eq!(batch.len(), 1);
        due
    }

    #[test]
    fn waited_writes_commit_at_once_state_changes_soon_probes_and_saves_linger() {
        let at = Timestamp(1_800_000_000_000);
        let change = due(Write::Transition(TransitionRecord {
            provider: "waha".into(),
            session: "s1".into(),
            at,
            from_state: "recovering".into(),
            to_state: "healthy".into(),
            reason: "verification canary delivered".into(),
        }));
        assert_eq!(change, Due::Soon);
        let probe = due(Write::Probe(ProbeRecord {
            provider: "waha".into(),
            session: "s1".into(),
            at,
            kind: "probe".into(),
            outcome: "delivered".into(),
            http_status: Some(201),
            latency_ms: 5,
            detail: String::new(),
        }));
        assert_eq!(probe, Due::Linger);
        let save = due(Write::Session(Box::new(SessionRecord::new(
            "waha", "s1", "healthy", at,
        ))));
        assert_eq!(save, Due::Linger);
        let (mut batch, mut replies, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
        let (reply, _wait) = oneshot::channel();
        let waited = take(
            Msg::Write {
                write: Write::Retire {
                    provider: "waha".into(),
                    session: "s1".into(),
                    at,
                },
                reply: Some(reply),
            },
            &mut batch,
            &mut replies,
            &mut flushes,
        );
        assert_eq!(waited, Due::Now);
        assert_eq!(replies.len(), 1);
        let (done, _wait) = oneshot::channel();
        let flush = take(Msg::Flush(done), &mut batch, &mut replies, &mut flushes);
        assert_eq!(flush, Due::Now);
        // A batch commits by its most pressing write, and waits no longer
        // than that write allows.
        assert_eq!(Due::Linger.max(Due::Soon).max(Due::Linger), Due::Soon);
        assert_eq!(Due::Soon.max(Due::Now), Due::Now);
        assert!(Due::Now.linger() < Due::Soon.linger());
        assert!(Due::Soon.linger() < Due::Linger.linger());
    }
}
