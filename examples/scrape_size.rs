//! How big is a scrape? Fills a [`Metrics`] with N sessions spread over P
//! providers in a realistic mix of states, as a daemon would after a while
//! (every provider has probed, restarted, recovered and seen webhooks), then
//! prints the number of series and the size of the text exposition.
//!
//! ```text
//! cargo run --release --example scrape_size -- [SESSIONS] [PROVIDERS] [--dump]
//! cargo run --release --example scrape_size -- 1000 4        # 4 WAHA servers
//! cargo run --release --example scrape_size -- 1000 1000     # 1,000 Green-API instances
//! cargo run --release --example scrape_size -- 1000 4 --dump | promtool check metrics
//! ```
//! SESSIONS defaults to 1000 and PROVIDERS to 4. A WAHA server holds many
//! sessions; a Green-API instance is one session and therefore one provider,
//! which is the expensive case (per-provider families dominate).
//! `--dump` prints the exposition itself instead of the summary.

use std::process::ExitCode;
use std::time::Duration;

use wa_watchdog::clock::Timestamp;
use wa_watchdog::machine::State;
use wa_watchdog::metrics::{Metrics, RestartResult};
use wa_watchdog::provider::Outcome;

/// States per 1,000 sessions in a fleet that mostly works.
const MIX: [(State, usize); 12] = [
    (State::Healthy, 900),
    (State::Suspect, 30),
    (State::Desynced, 10),
    (State::Restarting, 5),
    (State::Recovering, 5),
    (State::NotReady, 10),
    (State::NeedsPairing, 10),
    (State::Blocked, 5),
    (State::Unreachable, 10),
    (State::Escalated, 5),
    (State::Paused, 5),
    (State::Unknown, 5),
];

fn state_for(i: usize) -> State {
    let mut slot = i % 1000;
    for (state, share) in MIX {
        if slot < share {
            return state;
        }
        slot -= share;
    }
    State::Healthy
}

fn parse_args() -> Result<(usize, usize, bool), String> {
    let mut numbers = Vec::new();
    let mut dump = false;
    for arg in std::env::args().skip(1) {
        if arg == "--dump" {
            dump = true;
        } else {
            numbers.push(
                arg.parse::<usize>()
                    .map_err(|e| format!("`{arg}` is not a count: {e}"))?,
            );
        }
    }
    let sessions = numbers.first().copied().unwrap_or(1000);
    let providers = numbers.get(1).copied().unwrap_or(4).max(1);
    if numbers.len() > 2 {
        return Err("usage: scrape_size [SESSIONS] [PROVIDERS] [--dump]".into());
    }
    Ok((sessions, providers, dump))
}

fn main() -> ExitCode {
    let (sessions, providers, dump) = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("scrape_size: {e}");
            return ExitCode::from(2);
        }
    };
    let now = Timestamp(1_764_000_000_000);
    let m = Metrics::new();
    let provider_name = |p: usize| format!("provider-{p}");
    for p in 0..providers {
        let name = provider_name(p);
        m.set_provider(&name, true, false);
        m.set_restart_budget(&name, 10);
        // Every outcome family and both histograms get a series per provider.
        m.observe_probe(&name, &Outcome::Delivered, Duration::from_millis(350));
        m.observe_probe(&name, &Outcome::Desync, Duration::from_secs(2));
        m.restart_result(&name, RestartResult::Ok);
        m.desync_detected(&name);
        m.recovered(&name, Duration::from_secs(90));
        m.webhook_event(&name, "message.ack");
        m.webhook_event(&name, "session.status");
    }
    for i in 0..sessions {
        let state = state_for(i);
        let failures = match state {
            State::Suspect => 1,
            State::Desynced | State::Restarting | State::Recovering | State::Escalated => 3,
            _ => 0,
        };
        let last_success = (state != State::Unknown).then(|| now.minus(Duration::from_secs(60)));
        m.set_session(
            &provider_name(i % providers),
            &format!("session-{i:06}"),
            state,
            failures,
            last_success,
        );
    }
    m.scheduler_ticked(now);

    let text = match m.encode() {
        Ok(text) => text,
        Err(e) => {
            eprintln!("scrape_size: {e}");
            return ExitCode::FAILURE;
        }
    };
    if dump {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    let session_series = text.lines().filter(|l| l.contains("session=\"")).count();
    println!(
        "sessions={sessions} providers={providers} series={series} \
         (per-session series={session_series}, {:.2} per session) bytes={}",
        if sessions == 0 {
            0.0
        } else {
            session_series as f64 / sessions as f64
        },
        text.len()
    );
    ExitCode::SUCCESS
}
