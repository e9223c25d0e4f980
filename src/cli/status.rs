//! `wa-watchdog status`: one line per watched session from the database.

use std::collections::BTreeMap;

use serde_json::json;

use super::format::{self, WIDTH};
use super::{CliError, StatusArgs, database_path, open_store};
use crate::clock::{Clock, Timestamp};
use crate::machine::State;
use crate::store::SessionRecord;

pub(super) async fn run(args: StatusArgs) -> Result<(), CliError> {
    let path = database_path(&args.db)?;
    let store = open_store(&path).await?;
    let rows = store.list_sessions(false).await;
    // Several replicas on a shared store: who watches each session.
    let owners = store.lease_owners().await;
    store.close().await;
    let rows = rows.map_err(|e| CliError::Failed(format!("{}: {e}", path)))?;
    let owners = owners.map_err(|e| CliError::Failed(format!("{}: {e}", path)))?;
    let now = Clock::system().now();
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = session_json(r);
                if !owners.is_empty() {
                    v["owner"] = json!(owner_of(&owners, r));
                }
                v
            })
            .collect();
        let text = serde_json::to_string_pretty(&list)
            .map_err(|e| CliError::Failed(format!("cannot render JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", table_owned(&rows, &owners, now, &path.to_string()));
    }
    Ok(())
}

/// The replica holding `r`'s shard (`None`: nobody right now).
fn owner_of(owners: &[Option<String>], r: &SessionRecord) -> Option<String> {
    let shard = crate::lease::shard_of(&r.provider, &r.session) as usize;
    owners.get(shard).cloned().flatten()
}

/// One session as JSON: the shape of the HTTP API's `GET /api/v1/sessions`
/// plus `reason` and `paused_until`.
pub(super) fn session_json(r: &SessionRecord) -> serde_json::Value {
    let t = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339);
    json!({
        "provider": r.provider,
        "session": r.session,
        "state": r.machine.state,
        "since": r.machine.since.to_rfc3339(),
        "reason": r.machine.reason,
        "consecutive_failures": r.machine.consecutive_failures,
        "last_success": t(r.machine.last_success_at),
        "last_outcome": r.machine.last_outcome,
        "last_probe": t(r.machine.last_probe_at),
        "next_probe": t(r.next_probe_at),
        "paused_until": t(r.machine.paused_until),
    })
}

/// The table, at most [`WIDTH`] columns, and a summary line.
#[cfg(test)]
pub(super) fn table(rows: &[SessionRecord], now: Timestamp, database: &str) -> String {
    table_owned(rows, &[], now, database)
}

/// [`table`]; with `owners` (several replicas on a shared store), an OWNER
/// column naming the replica that watches each session (`-`: none right
/// now), the SESSION column 4 narrower so the line still fits.
pub(super) fn table_owned(
    rows: &[SessionRecord],
    owners: &[Option<String>],
    now: Timestamp,
    database: &str,
) -> String {
    let mut out = String::new();
    let owned = !owners.is_empty();
    let session_width = if owned { 16 } else { 20 };
    let line = |out: &mut String, cols: [&str; 7], owner: &str| {
        let owner = if owned {
            format!("{:<10}  ", format::cut(owner, 10))
        } else {
            String::new()
        };
        let text = format!(
            "{:<14}  {:<session_width$}  {owner}{:<13}  {:>8}  {:>9}  {:>5}  {:>10}",
            format::cut(cols[0], 14),
            format::cut(cols[1], session_width),
            cols[2],
            cols[3],
            cols[4],
            cols[5],
            cols[6]
        );
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(
        &mut out,
        [
            "PROVIDER",
            "SESSION",
            "STATE",
            "SINCE",
            "LAST OK",
            "FAILS",
            "NEXT PROBE",
        ],
        "OWNER",
    );
    let mut counts: BTreeMap<State, usize> = BTreeMap::new();
    for r in rows {
        if let Ok(state) = r.machine.state.parse::<State>() {
            *counts.entry(state).or_insert(0) += 1;
        }
        let since = format::short(now.since(r.machine.since));
        let last_ok = r
            .machine
            .last_success_at
            .map(|t| format::short(now.since(t)))
            .unwrap_or_else(|| "never".to_string());
        let next = match r.next_probe_at {
            Some(t) => format::until(now, t),
            None => "-".to_string(),
        };
        let fails = r.machine.consecutive_failures.to_string();
        let owner = owner_of(owners, r).unwrap_or_else(|| "-".to_string());
        line(
            &mut out,
            [
                &r.provider,
                &r.session,
                &r.machine.state,
                &since,
                &last_ok,
                &fails,
                &next,
            ],
            &owner,
        );
    }
    out.push('\n');
    let newest = rows.iter().map(|r| r.updated_at).max();
    let freshness = match newest {
        Some(t) => format!("; the daemon last wrote {}", format::ago(now, t)),
        None => String::new(),
    };
    let summary = format!(
        "{} sessions: {}{freshness}",
        rows.len(),
        crate::service::status_line(&counts)
    );
    out.push_str(&format::wrap(&summary, 0, WIDTH));
    out.push('\n');
    out.push_str(&format::wrap(&format!("database: {database}"), 0, WIDTH));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(provider: &str, session: &str, state: &str) -> SessionRecord {
        let t = Timestamp::from_millis(1_800_000_000_000);
        let mut rec = SessionRecord::new(provider, session, state, t);
        rec.machine.reason = "because".into();
        rec.machine.consecutive_failures = 2;
        rec.machine.last_success_at = Some(t);
        rec.machine.last_outcome = Some("delivered".into());
        rec.machine.last_probe_at = Some(t);
        rec.next_probe_at = Some(t.plus(std::time::Duration::from_secs(240)));
        rec
    }

    #[test]
    fn the_table_fits_100_columns_with_long_names_and_counts_states() {
        let now = Timestamp::from_millis(1_800_000_000_000 + 3_723_000);
        let rows = vec![
            row("waha-main", "sales", "healthy"),
            row(
                "a-very-long-provider-name-indeed",
                "an-even-longer-session-name-that-goes-on",
                "needs_pairing",
            ),
        ];
        let text = table(&rows, now, "/var/lib/wa-watchdog/wa-watchdog.db");
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "{line:?}");
            assert!(!line.contains('\u{1b}'));
        }
        assert!(text.starts_with("PROVIDER"), "{text}");
        assert!(text.contains("waha-main       sales"), "{text}");
        assert!(text.contains("1h02m"), "{text}");
        assert!(text.contains("due"), "{text}");
        assert!(
            text.contains(
                "2 sessions: 1 healthy, 1 needs a human; the daemon last wrote 1h02m ago"
            ),
            "{text}"
        );
        // On a shared store: an OWNER column, the lines still within WIDTH.
        let mut owners = vec![None; crate::lease::SHARDS as usize];
        let shard = crate::lease::shard_of("waha-main", "sales") as usize;
        owners[shard] = Some("replica-a-long-host-name".to_string());
        let owned = table_owned(&rows, &owners, now, "postgres://db:5432/wa");
        for line in owned.lines() {
            assert!(line.chars().count() <= WIDTH, "{line:?}");
        }
        assert!(
            owned.lines().next().is_some_and(|h| h.contains("OWNER")),
            "{owned}"
        );
        let sales = owned.lines().find(|l| l.contains("sales")).expect("row");
        assert!(sales.contains("replica-a"), "{sales}");
        assert!(!text.contains("OWNER"), "no column on one daemon");
        let json = session_json(&rows[0]);
        assert_eq!(json["state"], "healthy");
        assert_eq!(json["since"], "2027-01-15T08:00:00.000Z");
        assert_eq!(json["paused_until"], serde_json::Value::Null);
    }
}
