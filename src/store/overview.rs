//! Fleet-wide reads for the status page: what the per-session history
//! queries would need one round trip per session for.

use crate::clock::Timestamp;

use super::{Store, StoreError, query_error};

/// How many remediations of one session ended (or stand) with one result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemediationCount {
    pub provider: String,
    pub session: String,
    /// The stored result (`healed`, `failed`, `dry_run`, an unfinished one's
    /// placeholder, ...).
    pub result: String,
    pub count: u64,
}

impl Store {
    /// Remediations started at or after `since`, counted per session and
    /// result (`dry_run` rows included: the page shows what would have been
    /// done), ordered by provider, session, result.
    pub async fn remediation_counts_since(
        &self,
        since: Timestamp,
    ) -> Result<Vec<RemediationCount>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = on_reader!(self, |r| sqlx::query_as(
            "SELECT provider, session, result, COUNT(*) FROM remediations \
             WHERE started_at >= $1 GROUP BY provider, session, result \
             ORDER BY provider, session, result",
        )
        .bind(since.as_millis())
        .fetch_all(r)
        .await)
        .map_err(query_error("remediation_counts_since"))?;
        Ok(rows
            .into_iter()
            .map(|(provider, session, result, count)| RemediationCount {
                provider,
                session,
                result,
                count: u64::try_from(count).unwrap_or(0),
            })
            .collect())
    }
}
