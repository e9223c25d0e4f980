//! Every write the daemon makes, as data ([`Write`]), and the one way to
//! commit them: [`Store::apply_batch`], a list of writes in one transaction.
//!
//! Why one entry point: a backend (SQLite here) implements the SQL of each
//! write once, and the batching ([`super::writer`]) stays the same for every
//! backend. The single-record methods (`insert_probe`, `save_session`, ...)
//! are batches of one.
//!
//! Statements are prepared once per connection and reused (sqlx keeps a
//! statement cache per connection for `sqlx::query`), so a batch of a
//! thousand probes parses its INSERT once.

use crate::clock::Timestamp;

use super::records::{cap_text, u64_to_i64};
use super::{
    NewRemediation, ProbeRecord, RemediationUpdate, SessionRecord, Store, StoreError,
    TransitionRecord,
};

/// One write of the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// [`Store::insert_probe`].
    Probe(ProbeRecord),
    /// [`Store::insert_transition`].
    Transition(TransitionRecord),
    /// [`Store::save_session`].
    Session(Box<SessionRecord>),
    /// [`Store::retire_session`].
    Retire {
        provider: String,
        session: String,
        at: Timestamp,
    },
    /// [`Store::begin_remediation`]: applied as [`Applied::Id`].
    BeginRemediation(NewRemediation),
    /// [`Store::update_remediation`]: [`Applied::Missing`] for an unknown id.
    UpdateRemediation { id: i64, update: RemediationUpdate },
}

impl Write {
    /// The store operation's name: in errors and in
    /// `wa_watchdog_store_write_failures_total{op}`.
    pub fn op(&self) -> &'static str {
        match self {
            Write::Probe(_) => "insert_probe",
            Write::Transition(_) => "insert_transition",
            Write::Session(_) => "save_session",
            Write::Retire { .. } => "retire_session",
            Write::BeginRemediation(_) => "begin_remediation",
            Write::UpdateRemediation { .. } => "update_remediation",
        }
    }
}

/// What one write of a committed batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written.
    Done,
    /// A remediation intent: its row id.
    Id(i64),
    /// An update of a remediation id that is not in the table (nothing
    /// written; the rest of the batch is not affected).
    Missing,
}

/// The SQL of one write on the transaction's connection `$conn` (either
/// backend: a macro so one text compiles for each), evaluating to its
/// [`Applied`]; `?` passes a database error to the enclosing block.
macro_rules! exec_write {
    ($conn:expr, $w:expr, $history:expr) => {
        match $w {
            Write::Probe(p) => {
                sqlx::query(
                    "INSERT INTO probes \
                 (provider, session, at, kind, outcome, http_status, latency_ms, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&p.provider)
                .bind(&p.session)
                .bind(p.at.as_millis())
                .bind(&p.kind)
                .bind(&p.outcome)
                .bind(p.http_status.map(i64::from))
                .bind(u64_to_i64(p.latency_ms))
                .bind(cap_text(&p.detail))
                .execute($conn)
                .await?;
                Applied::Done
            }
            Write::Transition(t) => {
                sqlx::query(
                    "INSERT INTO transitions (provider, session, at, from_state, to_state, reason) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&t.provider)
                .bind(&t.session)
                .bind(t.at.as_millis())
                .bind(&t.from_state)
                .bind(&t.to_state)
                .bind(cap_text(&t.reason))
                .execute($conn)
                .await?;
                Applied::Done
            }
            Write::Session(rec) => {
                let rec: &SessionRecord = rec;
                upsert!(rec, $history.clone().unwrap_or_default())
                    .execute($conn)
                    .await?;
                Applied::Done
            }
            Write::Retire {
                provider,
                session,
                at,
            } => {
                sqlx::query(
                    "UPDATE sessions SET retired_at = $3, updated_at = $3 \
                 WHERE provider = $1 AND session = $2 AND retired_at IS NULL",
                )
                .bind(provider)
                .bind(session)
                .bind(at.as_millis())
                .execute($conn)
                .await?;
                Applied::Done
            }
            Write::BeginRemediation(r) => {
                // Idempotent per `intent_key` (see `Store::begin_remediation`).
                let id: i64 = insert_intent!(r).fetch_one($conn).await?;
                Applied::Id(id)
            }
            Write::UpdateRemediation { id, update } => {
                let finished_at = update.finished_at.map(Timestamp::as_millis);
                let updated = sqlx::query(
                    "UPDATE remediations SET result = $2, detail = $3, \
                 finished_at = COALESCE($4, finished_at), \
                 duration_ms = CASE \
                     WHEN $4 IS NULL THEN duration_ms \
                     WHEN $4 >= started_at THEN $4 - started_at \
                     ELSE 0 END, \
                 recovery_ms = COALESCE($5, recovery_ms) \
                 WHERE id = $1",
                )
                .bind(id)
                .bind(&update.result)
                .bind(cap_text(&update.detail))
                .bind(finished_at)
                .bind(update.recovery_ms.map(u64_to_i64))
                .execute($conn)
                .await?
                .rows_affected();
                if updated == 0 {
                    Applied::Missing
                } else {
                    Applied::Done
                }
            }
        }
    };
}

impl Store {
    /// Commits `writes` in one transaction, in order, and says what each did.
    /// All or nothing: if any statement fails (or the whole does not finish
    /// within [`super::WRITE_TIMEOUT`]) nothing of the batch is written, and
    /// every write in it counts as a failure of its operation in
    /// [`Store::write_status`]. The same SQL on either backend.
    pub async fn apply_batch(&self, writes: &[Write]) -> Result<Vec<Applied>, StoreError> {
        let op = match writes {
            [one] => one.op(),
            _ => "write_batch",
        };
        self.check_writable(op)?;
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        // Serialised before the transaction: it cannot fail, but if it did
        // it would be this write's error, not the database's.
        let histories = writes
            .iter()
            .map(|w| match w {
                Write::Session(rec) => super::sessions::history_json(rec).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        on_writer!(self, |pool| super::timed_batch(
            &self.health,
            op,
            writes,
            async {
                let mut tx = pool.begin().await?;
                let mut applied = Vec::with_capacity(writes.len());
                for (w, history) in writes.iter().zip(&histories) {
                    applied.push(exec_write!(&mut *tx, w, history));
                }
                tx.commit().await?;
                Ok(applied)
            }
        )
        .await)
    }
}
