//! `wa-watchdog history SESSION`: what happened to one session, as one
//! timeline, oldest first: probes with their outcomes, state changes with
//! their reasons, restarts with their results and durations. Enough to
//! answer "why was this session restarted at 03:12?". Delivered probes older
//! than the last few the store keeps in full show as counts per hour or day
//! (the store's rollups); failed probes are always shown one by one.

use serde_json::json;

use super::format::{self, WIDTH};
use super::{CliError, HistoryArgs, Target, database_path, open_store};
use crate::clock::{Clock, Timestamp};
use crate::store::{ProbeRecord, ProbeRollup, RemediationRecord, SessionRecord, TransitionRecord};

pub(super) async fn run(args: HistoryArgs) -> Result<(), CliError> {
    let path = database_path(&args.db)?;
    let store = open_store(&path).await?;
    let result = read(&store, &args).await;
    store.close().await;
    let (target, found) = result?;
    let History {
        session,
        transitions,
        remediations,
        probes,
        rollups,
    } = found;
    if args.json {
        let value = json!({
            "provider": target.provider,
            "session": target.session,
            "current": session.as_ref().map(super::status::session_json),
            "transitions": transitions.iter().map(|t| json!({
                "at": t.at.to_rfc3339(), "from": t.from_state, "to": t.to_state, "reason": t.reason,
            })).collect::<Vec<_>>(),
            "remediations": remediations.iter().map(|r| json!({
                "started_at": r.started_at.to_rfc3339(), "action": r.action, "reason": r.reason,
                "result": r.result, "detail": r.detail,
                "finished_at": r.finished_at.map(Timestamp::to_rfc3339),
                "duration_ms": r.duration_ms, "recovery_ms": r.recovery_ms,
            })).collect::<Vec<_>>(),
            "probes": probes.iter().map(|p| json!({
                "at": p.at.to_rfc3339(), "kind": p.kind, "outcome": p.outcome,
                "http_status": p.http_status, "latency_ms": p.latency_ms, "detail": p.detail,
            })).collect::<Vec<_>>(),
            "probe_rollups": rollups.iter().map(|r| json!({
                "start": r.start.to_rfc3339(), "span_seconds": r.span.as_secs(),
                "outcome": r.outcome, "probes": r.probes,
                "latency_mean_ms": r.latency_sum_ms / r.probes.max(1),
                "latency_max_ms": r.latency_max_ms,
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| CliError::Failed(format!("cannot render JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    let now = Clock::system().now();
    print!(
        "{}",
        render(
            &target,
            session.as_ref(),
            &transitions,
            &remediations,
            &probes,
            &rollups,
            now
        )
    );
    Ok(())
}

struct History {
    session: Option<SessionRecord>,
    transitions: Vec<TransitionRecord>,
    remediations: Vec<RemediationRecord>,
    probes: Vec<ProbeRecord>,
    rollups: Vec<ProbeRollup>,
}

async fn read(
    store: &crate::store::Store,
    args: &HistoryArgs,
) -> Result<(Target, History), CliError> {
    let failed = |e: crate::store::StoreError| CliError::Failed(e.to_string());
    let rows = store.list_sessions(true).await.map_err(failed)?;
    let known: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.provider.clone(), r.session.clone()))
        .collect();
    let mut providers: Vec<String> = known.iter().map(|(p, _)| p.clone()).collect();
    providers.dedup();
    let target = Target::resolve(&args.session, args.provider.as_deref(), &known, &providers)?;
    let session = rows
        .into_iter()
        .find(|r| r.provider == target.provider && r.session == target.session);
    if session.is_none() {
        return Err(CliError::Usage(format!(
            "the database has no session {target}"
        )));
    }
    let since = Some(args.since.at(Clock::system().now()));
    let (p, s) = (&target.provider, &target.session);
    let transitions = store
        .recent_transitions(p, s, since, args.limit)
        .await
        .map_err(failed)?;
    let remediations = store
        .recent_remediations(p, s, since, args.limit)
        .await
        .map_err(failed)?;
    let probes = store
        .recent_probes(p, s, since, args.limit)
        .await
        .map_err(failed)?;
    let rollups = store
        .probe_rollups(p, s, since, args.limit)
        .await
        .map_err(failed)?;
    Ok((
        target,
        History {
            session,
            transitions,
            remediations,
            probes,
            rollups,
        },
    ))
}

/// Column where the text of a timeline entry starts.
const TEXT_COLUMN: usize = 32;

fn render(
    target: &Target,
    session: Option<&SessionRecord>,
    transitions: &[TransitionRecord],
    remediations: &[RemediationRecord],
    probes: &[ProbeRecord],
    rollups: &[ProbeRollup],
    now: Timestamp,
) -> String {
    let mut out = String::new();
    if let Some(s) = session {
        let retired = s
            .retired_at
            .map(|t| format!(" (no longer watched since {})", format::time(t)))
            .unwrap_or_default();
        out.push_str(&format::wrap(
            &format!(
                "{target}: {} since {} ({} ago): {}{retired}",
                s.machine.state,
                format::time(s.machine.since),
                format::short(now.since(s.machine.since)),
                s.machine.reason
            ),
            4,
            WIDTH,
        ));
        out.push('\n');
        let last_ok = s
            .machine
            .last_success_at
            .map(format::time)
            .unwrap_or_else(|| "never".to_string());
        out.push_str(&format!(
            "    failures in a row {}, last success {last_ok}, restarts counting toward escalation {}\n",
            s.machine.consecutive_failures,
            s.machine.restart_history.len()
        ));
    }
    // (time, order within the same instant, kind, text). The store answers
    // newest first; walking its lists backwards keeps the order in which
    // things were recorded within one millisecond (the sort is stable).
    let mut entries: Vec<(Timestamp, u8, &str, String)> = Vec::new();
    for p in probes.iter().rev() {
        let status = p
            .http_status
            .map(|s| format!("HTTP {s}, "))
            .unwrap_or_default();
        let detail = if p.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", p.detail)
        };
        entries.push((
            p.at,
            0,
            "probe",
            format!(
                "{} {} ({status}{} ms){detail}",
                p.kind, p.outcome, p.latency_ms
            ),
        ));
    }
    for r in rollups.iter().rev() {
        let period = if r.span.as_secs() >= 24 * 3600 {
            "day"
        } else {
            "hour"
        };
        entries.push((
            r.start,
            0,
            "probes",
            format!(
                "{} {} in this {period} (mean {} ms, max {} ms)",
                r.probes,
                r.outcome,
                r.latency_sum_ms / r.probes.max(1),
                r.latency_max_ms
            ),
        ));
    }
    for t in transitions.iter().rev() {
        entries.push((
            t.at,
            1,
            "state",
            format!("{} -> {}: {}", t.from_state, t.to_state, t.reason),
        ));
    }
    for r in remediations.iter().rev() {
        let took = r
            .duration_ms
            .map(|ms| format!(" after {:.1}s", ms as f64 / 1000.0))
            .unwrap_or_default();
        let recovery = r
            .recovery_ms
            .map(|ms| {
                format!(
                    "; delivering again {:.1}s after the first failure",
                    ms as f64 / 1000.0
                )
            })
            .unwrap_or_default();
        let detail = if r.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.detail)
        };
        entries.push((
            r.started_at,
            2,
            "restart",
            format!(
                "{} {}{took}{detail}{recovery}; why: {}",
                r.action, r.result, r.reason
            ),
        ));
    }
    entries.sort_by_key(|(at, order, _, _)| (*at, *order));
    out.push('\n');
    if entries.is_empty() {
        out.push_str("no probes, state changes or restarts in this period (see --since)\n");
        return out;
    }
    for (at, _, kind, text) in entries {
        let head = format!("{}  {kind:<8}  ", format::time(at));
        out.push_str(&head);
        out.push_str(&format::wrap(&text, TEXT_COLUMN, WIDTH));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_is_ordered_wrapped_and_explains_a_restart() {
        let t = |s: i64| Timestamp::from_millis(1_800_000_000_000 + s * 1000);
        let target = Target {
            provider: "waha".into(),
            session: "s2".into(),
        };
        let probes = vec![ProbeRecord {
            provider: "waha".into(),
            session: "s2".into(),
            at: t(1),
            kind: "probe".into(),
            outcome: "desync".into(),
            http_status: Some(500),
            latency_ms: 12,
            detail: "server returned error 400 ".repeat(8),
        }];
        let transitions = vec![TransitionRecord {
            provider: "waha".into(),
            session: "s2".into(),
            at: t(1),
            from_state: "healthy".into(),
            to_state: "suspect".into(),
            reason: "canary failed (desync 1/3)".into(),
        }];
        let remediations = vec![RemediationRecord {
            id: 1,
            provider: "waha".into(),
            session: "s2".into(),
            started_at: t(3),
            action: "restart".into(),
            reason: "desync confirmed".into(),
            result: "healed".into(),
            detail: String::new(),
            finished_at: Some(t(7)),
            duration_ms: Some(4200),
            recovery_ms: Some(7100),
        }];
        let text = render(
            &target,
            None,
            &transitions,
            &remediations,
            &probes,
            &[],
            t(10),
        );
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert!(
            lines[0].starts_with("2027-01-15 08:00:01Z  probe     probe desync (HTTP 500, 12 ms)"),
            "{text}"
        );
        assert!(
            text.contains("state     healthy -> suspect: canary failed (desync 1/3)"),
            "{text}"
        );
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains("08:00:03Z restart restart healed after 4.2s; delivering again 7.1s after the first failure; why: desync confirmed"), "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "{line:?}");
        }
        let empty = render(&target, None, &[], &[], &[], &[], t(0));
        assert!(empty.contains("no probes"), "{empty}");
    }

    #[test]
    fn rolled_up_probes_show_as_counts_per_hour_or_day_in_time_order() {
        let t = |s: i64| Timestamp::from_millis(1_800_000_000_000 + s * 1000);
        let target = Target {
            provider: "waha".into(),
            session: "s1".into(),
        };
        let bucket = |start: i64, hours: u64, probes: u64| ProbeRollup {
            provider: "waha".into(),
            session: "s1".into(),
            start: t(start),
            span: std::time::Duration::from_secs(hours * 3600),
            outcome: "delivered".into(),
            probes,
            latency_sum_ms: probes * 120,
            latency_max_ms: 400,
        };
        // Newest first, as the store answers.
        let rollups = vec![bucket(86_400, 1, 12), bucket(0, 24, 288)];
        let text = render(&target, None, &[], &[], &[], &rollups, t(90_000));
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("probes  ")).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("288 delivered in this day (mean 120 ms, max 400 ms)"),
            "{text}"
        );
        assert!(lines[1].contains("12 delivered in this hour"), "{text}");
    }
}
