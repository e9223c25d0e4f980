//! Table-driven tests of the machine: every state × every probe outcome, the
//! restart-path inputs, and whole scenarios (desync → restart → healed,
//! escalation, pauses) end to end.

use std::time::Duration;

use super::*;
use crate::outcome::{BlockKind, NotReadyKind, Outcome};
use crate::policy::{PolicyConfig, ProviderGuard};

const MIN: Duration = Duration::from_secs(60);

fn t(secs: i64) -> Timestamp {
    Timestamp(1_800_000_000_000 + secs * 1000)
}

fn ctx(now: Timestamp, cfg: &PolicyConfig) -> Ctx<'_> {
    Ctx {
        now,
        due: now,
        interval: 5 * MIN,
        policy: cfg,
        restart_on_yellow_card: false,
    }
}

/// A machine that is in `state` the way the daemon would have put it there.
fn machine_in(state: State, now: Timestamp) -> (Machine, ProviderGuard) {
    let mut m = Machine::new(now.minus(Duration::from_secs(3600)));
    let mut g = ProviderGuard::default();
    m.persisted.state = state;
    m.persisted.since = now.minus(Duration::from_secs(30));
    match state {
        State::Healthy => {
            m.persisted.healthy_since = Some(now.minus(MIN));
            m.persisted.last_success_at = Some(now.minus(MIN));
        }
        State::Suspect => {
            m.persisted.consecutive_failures = 1;
            m.persisted.streak_has_desync = true;
            m.persisted.first_failure_at = Some(now.minus(Duration::from_secs(15)));
        }
        State::Desynced => {
            m.persisted.consecutive_failures = 3;
            m.persisted.streak_has_desync = true;
            m.persisted.first_failure_at = Some(now.minus(MIN));
        }
        State::Restarting | State::Recovering => {
            m.persisted.consecutive_failures = 3;
            m.persisted.streak_has_desync = true;
            m.persisted.first_failure_at = Some(now.minus(MIN));
            m.persisted.restart_started_at = Some(now.minus(Duration::from_secs(10)));
            m.persisted.restart_history = vec![now.minus(Duration::from_secs(10))];
            m.persisted.next_restart_at = Some(now.plus(Duration::from_secs(20)));
            m.persisted.backoff_step = 1;
            g.in_flight = 1;
            g.recent_restarts
                .push_back(now.minus(Duration::from_secs(10)));
        }
        State::NotReady => {
            m.persisted.last_outcome = Some(Outcome::NotReady(NotReadyKind::Starting));
            m.persisted.not_ready_since = Some(now.minus(Duration::from_secs(10)));
        }
        State::Escalated => {
            m.persisted.consecutive_failures = 9;
            m.persisted.streak_has_desync = true;
            m.persisted.restart_history =
                vec![now.minus(10 * MIN), now.minus(8 * MIN), now.minus(5 * MIN)];
        }
        State::Paused => {
            m.persisted.paused_until = Some(now.plus(Duration::from_secs(3600)));
        }
        State::Unknown | State::NeedsPairing | State::Blocked | State::Unreachable => {}
    }
    (m, g)
}

/// The outcome columns of the table, in order.
fn columns() -> Vec<(&'static str, Outcome)> {
    use Outcome::*;
    vec![
        ("delivered", Delivered),
        ("desync", Desync),
        ("send_failed", SendFailed),
        ("stuck", Stuck),
        ("starting", NotReady(NotReadyKind::Starting)),
        ("stopped", NotReady(NotReadyKind::Stopped)),
        ("failed", NotReady(NotReadyKind::Failed)),
        ("sleeping", NotReady(NotReadyKind::Sleeping)),
        ("provisioning", NotReady(NotReadyKind::Provisioning)),
        ("unrecognised", NotReady(NotReadyKind::Unrecognised)),
        ("needs_pairing", NeedsPairing),
        ("banned", Blocked(BlockKind::Banned)),
        ("yellow_card", Blocked(BlockKind::YellowCard)),
        ("rate_limited", RateLimited { retry_after: None }),
        ("auth_rejected", AuthRejected),
        ("bad_request", BadRequest),
        ("unreachable", Unreachable),
        ("timeout", Timeout),
        ("session_missing", SessionMissing),
        ("quota_exceeded", QuotaExceeded),
        ("instance_expired", InstanceExpired),
        ("ack_error", AckError),
        ("unconfirmed", Unconfirmed),
        ("bad_canary_chat", BadCanaryChat),
        ("reachout_timelock", ReachoutTimelock),
        ("send_refused", SendRefused),
        ("inbound_missing", InboundMissing),
    ]
}

// Abbreviations for the table below.
const UN: State = State::Unknown;
const HE: State = State::Healthy;
const SU: State = State::Suspect;
const DE: State = State::Desynced;
const RS: State = State::Restarting;
const RC: State = State::Recovering;
const NR: State = State::NotReady;
const NP: State = State::NeedsPairing;
const BL: State = State::Blocked;
const UR: State = State::Unreachable;
const ES: State = State::Escalated;
const PA: State = State::Paused;

/// Expected next state for every (state, outcome) pair, default policy.
/// Columns as in [`columns`]:
/// deliv desync sfail stuck | start stop fail sleep prov unrec | pair ban yellow |
/// rate auth bad | unreach timeout | missing quota expired |
/// ackerr unconf badchat timelock refused | inbound_missing (like stuck)
#[rustfmt::skip]
fn table() -> Vec<(State, [State; 27])> {
    vec![
        (UN, [HE, SU, SU, SU,  NR, NR, RS, NR, NR, NR,  NP, BL, BL,  UN, UN, UN,  UR, UR,  UN, UN, UN,  SU, UN, UN, UN, UN, SU]),
        (HE, [HE, SU, SU, SU,  NR, NR, RS, NR, NR, NR,  NP, BL, BL,  HE, HE, HE,  UR, UR,  HE, HE, HE,  SU, HE, HE, HE, HE, SU]),
        (SU, [HE, SU, SU, SU,  NR, NR, RS, NR, NR, NR,  NP, BL, BL,  SU, SU, SU,  UR, UR,  SU, SU, SU,  SU, SU, SU, SU, SU, SU]),
        (DE, [HE, RS, RS, RS,  NR, NR, RS, NR, NR, NR,  NP, BL, BL,  DE, DE, DE,  UR, UR,  DE, DE, DE,  RS, DE, DE, DE, DE, RS]),
        (RS, [RS, RS, RS, RS,  RS, RS, RS, RS, RS, RS,  RS, RS, RS,  RS, RS, RS,  RS, RS,  RS, RS, RS,  RS, RS, RS, RS, RS, RS]),
        (RC, [HE, DE, DE, DE,  RS, RS, RS, RS, RS, RS,  NP, BL, BL,  RC, UN, UN,  UR, UR,  UN, UN, UN,  DE, UN, UN, UN, UN, DE]),
        (NR, [HE, SU, SU, SU,  NR, NR, RS, NR, NR, NR,  NP, BL, BL,  NR, NR, NR,  UR, UR,  NR, NR, NR,  SU, NR, NR, NR, NR, SU]),
        (NP, [HE, SU, SU, SU,  NR, NR, RS, NR, NR, NR,  NP, BL, BL,  NP, NP, NP,  UR, UR,  NP, NP, NP,  SU, NP, NP, NP, NP, SU]),
        (BL, [HE, SU, SU, SU,  NR, NR, RS, NR, NR, NR,  NP, BL, BL,  BL, BL, BL,  UR, UR,  BL, BL, BL,  SU, BL, BL, BL, BL, SU]),
        (UR, [HE, SU, SU, SU,  NR, NR, RS, NR, NR, NR,  NP, BL, BL,  UR, UR, UR,  UR, UR,  UR, UR, UR,  SU, UR, UR, UR, UR, SU]),
        (ES, [HE, ES, ES, ES,  ES, ES, ES, ES, ES, ES,  NP, BL, BL,  ES, ES, ES,  UR, UR,  ES, ES, ES,  ES, ES, ES, ES, ES, ES]),
        (PA, [PA, PA, PA, PA,  PA, PA, PA, PA, PA, PA,  PA, PA, PA,  PA, PA, PA,  PA, PA,  PA, PA, PA,  PA, PA, PA, PA, PA, PA]),
    ]
}

#[test]
fn table_covers_every_state() {
    let states: Vec<State> = table().iter().map(|(s, _)| *s).collect();
    assert_eq!(states, State::ALL);
    assert_eq!(columns().len(), 27);
}

#[test]
fn every_state_and_outcome_pair_goes_where_the_table_says() {
    let cfg = PolicyConfig::default();
    let now = t(0);
    for (state, row) in table() {
        for ((name, outcome), expected) in columns().into_iter().zip(row) {
            let (mut m, mut g) = machine_in(state, now);
            let before = m.clone();
            let fx = m.step(Input::Probe(outcome), &mut g, &ctx(now, &cfg));
            let case = format!("{state} + {name}");
            assert_eq!(
                m.persisted.state, expected,
                "{case}: reason {:?}",
                m.persisted.reason
            );

            // Slot invariant: held exactly while restarting or recovering.
            assert_eq!(
                g.in_flight,
                u32::from(m.persisted.state.holds_restart_slot()),
                "{case}: slot count"
            );
            // Ignored inputs change nothing at all.
            if fx.ignored {
                assert_eq!(m, before, "{case}: ignored input changed the machine");
                assert!(
                    fx.transitions.is_empty() && fx.remediations.is_empty(),
                    "{case}"
                );
            } else {
                let next = fx.next.unwrap_or_else(|| panic!("{case}: no next step"));
                assert!(next.at >= now, "{case}: next step in the past");
                assert_eq!(m.persisted.last_outcome, Some(outcome), "{case}");
            }
            // The recorded transitions end where the machine is.
            if let Some(last) = fx.transitions.last() {
                assert_eq!(last.to, m.persisted.state, "{case}");
                assert_eq!(fx.transitions[0].from, state, "{case}");
                assert!(!last.reason.is_empty(), "{case}");
            } else {
                assert_eq!(
                    m.persisted.state, state,
                    "{case}: state changed without a transition"
                );
            }
            // A restart is begun if and only if the session enters restarting
            // from a state that did not already hold a slot.
            let begun = fx
                .remediations
                .iter()
                .any(|r| matches!(r, Remediation::Begin { .. }));
            let entered_restart =
                m.persisted.state == State::Restarting && !state.holds_restart_slot();
            assert_eq!(begun, entered_restart, "{case}: {:?}", fx.remediations);
            if begun {
                assert_eq!(fx.next.map(|s| s.action), Some(Action::Restart), "{case}");
            }
            // Restarts never follow outcomes a restart cannot fix.
            if matches!(
                outcome,
                Outcome::NeedsPairing
                    | Outcome::Blocked(_)
                    | Outcome::RateLimited { .. }
                    | Outcome::AuthRejected
                    | Outcome::BadRequest
                    | Outcome::Unreachable
                    | Outcome::Timeout
                    | Outcome::QuotaExceeded
                    | Outcome::InstanceExpired
                    | Outcome::Unconfirmed
                    | Outcome::BadCanaryChat
                    | Outcome::ReachoutTimelock
                    | Outcome::SendRefused
            ) {
                assert!(!begun, "{case}: restarted on {name}");
            }
        }
    }
}

#[test]
fn restart_path_inputs_apply_only_while_restarting() {
    let cfg = PolicyConfig::default();
    let now = t(0);
    let inputs = [
        Input::RestartCalled(Ok(())),
        Input::RestartCalled(Err(CallFailed {
            outcome: Outcome::Unreachable,
            http_status: Some(500),
            detail: "500".into(),
        })),
        Input::Status(StatusRead::Working),
        Input::Status(StatusRead::Not(Outcome::NotReady(NotReadyKind::Starting))),
    ];
    for state in State::ALL {
        for input in &inputs {
            let (mut m, mut g) = machine_in(state, now);
            let before = m.clone();
            let fx = m.step(input.clone(), &mut g, &ctx(now, &cfg));
            if state == State::Restarting {
                assert!(!fx.ignored, "{state} {input:?}");
            } else {
                assert!(fx.ignored, "{state} {input:?}");
                assert_eq!(m, before, "{state} {input:?}");
            }
        }
    }
}

#[test]
fn restarting_follows_the_call_and_the_status_polls() {
    let cfg = PolicyConfig::default();
    let now = t(0);

    let (mut m, mut g) = machine_in(State::Restarting, now);
    let fx = m.step(Input::RestartCalled(Ok(())), &mut g, &ctx(now, &cfg));
    assert_eq!(fx.remediations, [Remediation::Called]);
    assert_eq!(
        fx.next,
        Some(Step {
            at: now.plus(cfg.restart_poll_interval),
            action: Action::PollStatus
        })
    );

    let fx = m.step(
        Input::Status(StatusRead::Not(Outcome::NotReady(NotReadyKind::Starting))),
        &mut g,
        &ctx(now, &cfg),
    );
    assert_eq!(m.persisted.state, State::Restarting);
    assert_eq!(fx.next.map(|s| s.action), Some(Action::PollStatus));

    let fx = m.step(Input::Status(StatusRead::Working), &mut g, &ctx(now, &cfg));
    assert_eq!(m.persisted.state, State::Recovering);
    assert_eq!(
        fx.next,
        Some(Step {
            at: now.plus(cfg.restart_poll_interval),
            action: Action::Verify
        })
    );
    assert_eq!(g.in_flight, 1);

    // A failed call goes back to desynced; the backoff from the attempt holds.
    let (mut m, mut g) = machine_in(State::Restarting, now);
    let fx = m.step(
        Input::RestartCalled(Err(CallFailed {
            outcome: Outcome::Unreachable,
            http_status: Some(500),
            detail: "HTTP 500".into(),
        })),
        &mut g,
        &ctx(now, &cfg),
    );
    assert_eq!(m.persisted.state, State::Desynced);
    assert_eq!(g.in_flight, 0);
    assert!(
        m.persisted.reason.contains("restart call failed: HTTP 500"),
        "{}",
        m.persisted.reason
    );
    assert!(
        m.persisted.reason.contains("backoff"),
        "{}",
        m.persisted.reason
    );
    assert!(matches!(
        fx.remediations.as_slice(),
        [Remediation::Finished {
            result: RemediationResult::Failed,
            ..
        }]
    ));

    // Pairing lost during the restart: needs a human, slot released.
    let (mut m, mut g) = machine_in(State::Restarting, now);
    m.step(
        Input::Status(StatusRead::Not(Outcome::NeedsPairing)),
        &mut g,
        &ctx(now, &cfg),
    );
    assert_eq!(m.persisted.state, State::NeedsPairing);
    assert_eq!(g.in_flight, 0);

    // Timeout while the provider cannot be read: back to desynced, backoff.
    let (mut m, mut g) = machine_in(State::Restarting, now);
    let late = now.plus(cfg.restart_timeout);
    let fx = m.step(
        Input::Status(StatusRead::Not(Outcome::Unreachable)),
        &mut g,
        &ctx(late, &cfg),
    );
    assert_eq!(m.persisted.state, State::Desynced);
    assert_eq!(g.in_flight, 0);
    assert!(matches!(
        fx.remediations.as_slice(),
        [Remediation::Finished {
            result: RemediationResult::Timeout,
            ..
        }]
    ));

    // Timeout still STARTING: a restart did not bring it up, another will
    // not either (no loop): escalated at once.
    let (mut m, mut g) = machine_in(State::Restarting, now);
    let fx = m.step(
        Input::Status(StatusRead::Not(Outcome::NotReady(NotReadyKind::Starting))),
        &mut g,
        &ctx(late, &cfg),
    );
    assert_eq!(m.persisted.state, State::Escalated);
    assert!(
        m.persisted.reason.contains("still STARTING"),
        "{}",
        m.persisted.reason
    );
    assert_eq!(g.in_flight, 0);
    assert!(matches!(
        fx.remediations.as_slice(),
        [Remediation::Finished {
            result: RemediationResult::Timeout,
            ..
        }]
    ));
}

/// Drives one session through probes; returns the machine and guard.
struct Run {
    m: Machine,
    g: ProviderGuard,
    cfg: PolicyConfig,
    now: Timestamp,
    log: Vec<Effects>,
}

impl Run {
    fn new(cfg: PolicyConfig) -> Self {
        let now = t(0);
        let mut run = Run {
            m: Machine::new(now),
            g: ProviderGuard::default(),
            cfg,
            now,
            log: Vec::new(),
        };
        run.feed(Input::Probe(Outcome::Delivered));
        assert_eq!(run.m.persisted.state, State::Healthy);
        run
    }

    fn at(&mut self, secs: i64) -> &mut Self {
        self.now = t(secs);
        self
    }

    fn feed(&mut self, input: Input) -> Effects {
        let c = Ctx {
            now: self.now,
            due: self.now,
            interval: Duration::from_secs(2),
            policy: &self.cfg,
            restart_on_yellow_card: false,
        };
        let fx = self.m.step(input, &mut self.g, &c);
        self.log.push(fx.clone());
        fx
    }

    fn probe(&mut self, o: Outcome) -> Effects {
        self.feed(Input::Probe(o))
    }

    /// Restart call ok, status WORKING, verification with `verify`.
    fn restart_cycle(&mut self, verify: Outcome) -> Effects {
        assert_eq!(self.m.persisted.state, State::Restarting);
        self.feed(Input::RestartCalled(Ok(())));
        self.feed(Input::Status(StatusRead::Working));
        assert_eq!(self.m.persisted.state, State::Recovering);
        self.probe(verify)
    }
}

#[test]
fn a_confirmed_desync_is_restarted_verified_and_healed() {
    let mut r = Run::new(PolicyConfig::default());
    r.at(10).probe(Outcome::Desync);
    assert_eq!(r.m.persisted.state, State::Suspect);
    let fx = r.at(25).probe(Outcome::Desync);
    assert_eq!(
        fx.next.map(|s| s.at),
        Some(t(40)),
        "re-probe after confirm_interval"
    );
    assert_eq!(r.m.persisted.state, State::Suspect);
    let fx = r.at(40).probe(Outcome::Desync);
    assert!(fx.desync_confirmed);
    assert_eq!(r.m.persisted.state, State::Restarting);
    assert!(
        r.m.persisted.reason.contains("restart 1 of at most 3"),
        "{}",
        r.m.persisted.reason
    );
    assert!(matches!(
        fx.remediations.as_slice(),
        [Remediation::Begin { reason }] if reason.starts_with("desync confirmed (desync 3/3)")
    ));
    assert_eq!(
        fx.transitions.iter().map(|t| t.to).collect::<Vec<_>>(),
        [State::Desynced, State::Restarting]
    );
    assert!(fx.transitions[0].reason.starts_with("desync confirmed"));
    assert!(
        fx.transitions[1].reason.contains("restart 1 of at most 3"),
        "{}",
        fx.transitions[1].reason
    );
    assert!(matches!(
        fx.remediations.as_slice(),
        [Remediation::Begin { .. }]
    ));
    assert_eq!(r.g.in_flight, 1);

    r.at(45);
    let fx = r.restart_cycle(Outcome::Delivered);
    assert_eq!(r.m.persisted.state, State::Healthy);
    assert_eq!(fx.recovered_after, Some(Duration::from_secs(35)));
    assert!(matches!(
        fx.remediations.as_slice(),
        [Remediation::Finished {
            result: RemediationResult::Healed,
            ..
        }]
    ));
    assert_eq!(r.g.in_flight, 0);
    assert_eq!(r.m.persisted.consecutive_failures, 0);
    assert_eq!(r.m.persisted.restart_history, [t(40)]);
}

#[test]
fn send_failures_without_a_signature_need_five_confirmations() {
    let mut r = Run::new(PolicyConfig::default());
    for i in 1..=4 {
        r.at(i).probe(Outcome::SendFailed);
        assert_eq!(r.m.persisted.state, State::Suspect, "after {i}");
    }
    r.at(5).probe(Outcome::SendFailed);
    assert_eq!(r.m.persisted.state, State::Restarting);

    // A desync anywhere in the streak lowers the bar to three.
    let mut r = Run::new(PolicyConfig::default());
    r.at(1).probe(Outcome::SendFailed);
    r.at(2).probe(Outcome::SendFailed);
    r.at(3).probe(Outcome::Desync);
    assert_eq!(r.m.persisted.state, State::Restarting);
}

#[test]
fn single_blips_never_restart() {
    for blip in [
        Outcome::Desync,
        Outcome::SendFailed,
        Outcome::Timeout,
        Outcome::RateLimited { retry_after: None },
        Outcome::Unreachable,
    ] {
        let mut r = Run::new(PolicyConfig::default());
        r.at(1).probe(blip);
        r.at(2).probe(Outcome::Delivered);
        assert_eq!(r.m.persisted.state, State::Healthy, "{blip:?}");
        assert!(r.m.persisted.restart_history.is_empty(), "{blip:?}");
        assert!(
            r.log.iter().all(|fx| fx.remediations.is_empty()),
            "{blip:?}"
        );
    }
}

#[test]
fn failing_restarts_back_off_then_escalate_and_success_clears_it() {
    let mut r = Run::new(PolicyConfig::default());
    let mut restarts = Vec::new();
    let mut now = 0;
    // Keep failing; every probe is a desync; every restart fails to heal.
    for _ in 0..200 {
        now += 5;
        r.at(now);
        if r.m.persisted.state == State::Restarting {
            restarts.push(now);
            r.restart_cycle(Outcome::Desync);
        } else {
            r.probe(Outcome::Desync);
        }
        if r.m.persisted.state == State::Escalated {
            break;
        }
    }
    assert_eq!(
        r.m.persisted.state,
        State::Escalated,
        "reason: {}",
        r.m.persisted.reason
    );
    assert_eq!(restarts.len(), 3, "max_restarts attempts before escalation");
    // Backoff between attempts: 30 s, then 60 s (probe granularity 5 s).
    assert!(restarts[1] - restarts[0] >= 30, "{restarts:?}");
    assert!(restarts[2] - restarts[1] >= 60, "{restarts:?}");
    assert!(
        r.m.persisted.reason.contains("needs a human"),
        "{}",
        r.m.persisted.reason
    );
    assert_eq!(r.g.in_flight, 0);

    // Escalated keeps probing without restarting.
    let fx = r.at(now + 5).probe(Outcome::Desync);
    assert_eq!(r.m.persisted.state, State::Escalated);
    assert!(fx.remediations.is_empty());
    assert!(fx.next.is_some());

    r.at(now + 10).probe(Outcome::Delivered);
    assert_eq!(r.m.persisted.state, State::Healthy);
}

#[test]
fn the_restart_history_is_forgotten_after_staying_healthy() {
    let mut r = Run::new(PolicyConfig::default());
    for i in 1..=3 {
        r.at(i).probe(Outcome::Desync);
    }
    r.restart_cycle(Outcome::Delivered);
    assert_eq!(r.m.persisted.restart_history.len(), 1);
    assert_eq!(r.m.persisted.backoff_step, 1);
    r.at(10 * 60).probe(Outcome::Delivered);
    assert_eq!(
        r.m.persisted.restart_history.len(),
        1,
        "not yet healthy_reset"
    );
    r.at(31 * 60).probe(Outcome::Delivered);
    assert!(r.m.persisted.restart_history.is_empty());
    assert_eq!(r.m.persisted.backoff_step, 0);
    assert_eq!(r.m.persisted.next_restart_at, None);
}

#[test]
fn provider_guards_make_a_desynced_session_wait_and_say_why() {
    let cfg = PolicyConfig::default();
    // Slot busy.
    let mut r = Run::new(cfg.clone());
    r.g.in_flight = 1; // another session of this provider is restarting
    for i in 1..=3 {
        r.at(i).probe(Outcome::Desync);
    }
    assert_eq!(r.m.persisted.state, State::Desynced);
    assert!(
        r.m.persisted.reason.contains("restart slot busy"),
        "{}",
        r.m.persisted.reason
    );
    let next = r.log.last().and_then(|fx| fx.next).expect("recheck");
    assert_eq!(
        next.at,
        t(3).plus(Duration::from_secs(2))
            .min(t(3).plus(cfg.confirm_interval))
    );
    // The slot frees up: the next failing probe restarts.
    r.g.in_flight = 0;
    r.at(20).probe(Outcome::Desync);
    assert_eq!(r.m.persisted.state, State::Restarting);

    // Outage.
    let mut r = Run::new(cfg.clone());
    r.g.in_outage = true;
    for i in 1..=3 {
        r.at(i).probe(Outcome::Desync);
    }
    assert_eq!(r.m.persisted.state, State::Desynced);
    assert!(
        r.m.persisted.reason.contains("provider outage"),
        "{}",
        r.m.persisted.reason
    );

    // Budget spent.
    let mut r = Run::new(PolicyConfig {
        restart_budget: 1,
        ..cfg.clone()
    });
    r.g.recent_restarts.push_back(t(0));
    for i in 1..=3 {
        r.at(i).probe(Outcome::Desync);
    }
    assert_eq!(r.m.persisted.state, State::Desynced);
    assert!(
        r.m.persisted.reason.contains("restart budget spent"),
        "{}",
        r.m.persisted.reason
    );
}

#[test]
fn dry_run_records_what_it_would_do_and_still_escalates() {
    let mut r = Run::new(PolicyConfig {
        dry_run: true,
        ..PolicyConfig::default()
    });
    let mut dry_runs = 0;
    for i in 1..400 {
        let fx = r.at(i * 5).probe(Outcome::Desync);
        dry_runs += fx
            .remediations
            .iter()
            .filter(|x| matches!(x, Remediation::DryRun { .. }))
            .count();
        assert_ne!(r.m.persisted.state, State::Restarting);
        assert_eq!(r.g.in_flight, 0);
        if r.m.persisted.state == State::Escalated {
            break;
        }
    }
    assert_eq!(dry_runs, 3);
    assert_eq!(r.m.persisted.state, State::Escalated);
}

#[test]
fn starting_is_restarted_only_after_the_grace_and_stopped_only_when_allowed() {
    let cfg = PolicyConfig::default();
    let starting = Outcome::NotReady(NotReadyKind::Starting);
    let mut r = Run::new(cfg.clone());
    let fx = r.at(10).probe(starting);
    assert_eq!(r.m.persisted.state, State::NotReady);
    // The next probe is no later than the end of the grace.
    assert!(fx.next.expect("next").at <= t(10).plus(cfg.starting_grace));
    r.at(10 + 179).probe(starting);
    assert_eq!(r.m.persisted.state, State::NotReady);
    let fx = r.at(10 + 180).probe(starting);
    assert_eq!(r.m.persisted.state, State::Restarting);
    assert!(
        matches!(fx.remediations.as_slice(), [Remediation::Begin { reason }] if reason.contains("beyond starting_grace")),
        "{:?}",
        fx.remediations
    );

    let stopped = Outcome::NotReady(NotReadyKind::Stopped);
    let mut r = Run::new(cfg.clone());
    for i in 1..100 {
        r.at(i * 60).probe(stopped);
        assert_eq!(r.m.persisted.state, State::NotReady);
    }
    let mut r = Run::new(PolicyConfig {
        restart_stopped: true,
        ..cfg
    });
    r.at(1).probe(stopped);
    assert_eq!(r.m.persisted.state, State::Restarting);
}

#[test]
fn needs_pairing_and_blocked_are_never_restarted() {
    for o in [
        Outcome::NeedsPairing,
        Outcome::Blocked(BlockKind::Banned),
        Outcome::Blocked(BlockKind::YellowCard),
        Outcome::AuthRejected,
    ] {
        let mut r = Run::new(PolicyConfig::default());
        for i in 1..500 {
            r.at(i * 60).probe(o);
        }
        assert!(
            r.log.iter().all(|fx| fx.remediations.is_empty()),
            "{o:?} led to a remediation"
        );
    }
}

#[test]
fn a_yellow_card_is_rebooted_only_when_configured() {
    let cfg = PolicyConfig::default();
    let (mut m, mut g) = machine_in(State::Healthy, t(0));
    let mut c = ctx(t(0), &cfg);
    c.restart_on_yellow_card = true;
    m.step(
        Input::Probe(Outcome::Blocked(BlockKind::YellowCard)),
        &mut g,
        &c,
    );
    assert_eq!(m.persisted.state, State::Restarting);
}

#[test]
fn pause_interrupts_a_restart_and_resume_probes_at_once() {
    let cfg = PolicyConfig::default();
    let now = t(0);
    let (mut m, mut g) = machine_in(State::Restarting, now);
    let until = now.plus(Duration::from_secs(7200));
    let fx = m.step(
        Input::Pause {
            until: Some(until),
            reason: "maintenance".into(),
        },
        &mut g,
        &ctx(now, &cfg),
    );
    assert_eq!(m.persisted.state, State::Paused);
    assert_eq!(g.in_flight, 0);
    assert_eq!(
        fx.next,
        Some(Step {
            at: until,
            action: Action::Resume
        })
    );
    assert!(matches!(
        fx.remediations.as_slice(),
        [Remediation::Finished {
            result: RemediationResult::Interrupted,
            ..
        }]
    ));
    assert_eq!(
        m.resume_step(now),
        Some(Step {
            at: until,
            action: Action::Resume
        })
    );

    let fx = m.step(Input::Resume, &mut g, &ctx(until, &cfg));
    assert_eq!(m.persisted.state, State::Unknown);
    assert_eq!(
        fx.next,
        Some(Step {
            at: until,
            action: Action::Probe
        })
    );

    // A pause without an expiry schedules nothing.
    let fx = m.step(
        Input::Pause {
            until: None,
            reason: "operator".into(),
        },
        &mut g,
        &ctx(until, &cfg),
    );
    assert_eq!(fx.next, None);
    assert!(!fx.ignored);

    let (mut m, mut g) = machine_in(State::Healthy, now);
    let fx = m.step(Input::Resume, &mut g, &ctx(now, &cfg));
    assert!(fx.ignored && fx.rejected.is_some());
}

#[test]
fn operator_restart_respects_only_the_concurrency_limit() {
    let cfg = PolicyConfig::default();
    let now = t(0);
    // Even escalated, in backoff and with the budget spent, an operator may restart.
    let (mut m, mut g) = machine_in(State::Escalated, now);
    m.persisted.next_restart_at = Some(now.plus(MIN));
    let fx = m.step(Input::OperatorRestart, &mut g, &ctx(now, &cfg));
    assert_eq!(m.persisted.state, State::Restarting);
    assert_eq!(m.persisted.reason, "operator");
    assert_eq!(g.in_flight, 1);
    assert_eq!(fx.next.map(|s| s.action), Some(Action::Restart));

    // A second session of the same provider must wait for the slot.
    let (mut other, _) = machine_in(State::Healthy, now);
    let fx = other.step(Input::OperatorRestart, &mut g, &ctx(now, &cfg));
    assert!(fx.ignored);
    assert!(
        fx.rejected
            .as_deref()
            .unwrap_or("")
            .contains("max_concurrent_restarts")
    );
    assert_eq!(other.persisted.state, State::Healthy);

    for state in [State::Paused, State::Restarting, State::Recovering] {
        let (mut m, mut g) = machine_in(state, now);
        let fx = m.step(Input::OperatorRestart, &mut g, &ctx(now, &cfg));
        assert!(fx.rejected.is_some(), "{state}");
        assert_eq!(m.persisted.state, state);
    }
}

#[test]
fn resume_step_follows_up_an_interrupted_restart_instead_of_repeating_it() {
    let now = t(100);
    for state in State::ALL {
        let (m, _) = machine_in(state, t(0));
        let step = m.resume_step(now).expect("step");
        let expected = match state {
            State::Restarting => Action::PollStatus,
            State::Recovering => Action::Verify,
            State::Paused => Action::Resume,
            _ => Action::Probe,
        };
        assert_eq!(step.action, expected, "{state}");
        assert_ne!(step.action, Action::Restart, "{state}");
    }
}

#[test]
fn periodic_probes_are_anchored_on_the_due_time() {
    let cfg = PolicyConfig::default();
    let (mut m, mut g) = machine_in(State::Healthy, t(0));
    let mut c = ctx(t(7), &cfg);
    c.due = t(0); // the probe was due at 0 and took 7 s
    let fx = m.step(Input::Probe(Outcome::Delivered), &mut g, &c);
    assert_eq!(fx.next.map(|s| s.at), Some(t(300)));

    // A probe slower than the interval is followed at once, not in the past.
    c.now = t(400);
    let fx = m.step(Input::Probe(Outcome::Delivered), &mut g, &c);
    assert_eq!(fx.next.map(|s| s.at), Some(t(400)));
}

#[test]
fn rate_limits_push_the_next_probe_out() {
    let cfg = PolicyConfig::default();
    let (mut m, mut g) = machine_in(State::Suspect, t(0));
    let fx = m.step(
        Input::Probe(Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(900)),
        }),
        &mut g,
        &ctx(t(0), &cfg),
    );
    assert_eq!(m.persisted.state, State::Suspect);
    assert_eq!(m.persisted.consecutive_failures, 1, "not a failure");
    assert_eq!(fx.next.map(|s| s.at), Some(t(900)));
}

#[test]
fn state_names_round_trip() {
    for s in State::ALL {
        assert_eq!(s.as_str().parse::<State>(), Ok(s));
    }
    assert!("nope".parse::<State>().is_err());
}

#[test]
fn remediation_status_stored_form_round_trips() {
    let mut all = vec![
        RemediationStatus::Pending,
        RemediationStatus::Called,
        RemediationStatus::DryRun,
    ];
    all.extend(RemediationResult::ALL.map(RemediationStatus::Ended));
    for st in all {
        assert_eq!(st.as_str().parse::<RemediationStatus>(), Ok(st), "{st}");
    }
    let open: Vec<&str> = RemediationResult::ALL
        .map(RemediationStatus::Ended)
        .into_iter()
        .chain([
            RemediationStatus::Pending,
            RemediationStatus::Called,
            RemediationStatus::DryRun,
        ])
        .filter(|s| s.is_open())
        .map(RemediationStatus::as_str)
        .collect();
    assert_eq!(open, ["pending", "called"]);
    assert!(!RemediationStatus::DryRun.is_attempt());
    assert!(RemediationStatus::Pending.is_attempt());
    assert!("bogus".parse::<RemediationStatus>().is_err());
}

#[test]
fn a_pushed_pairing_signal_moves_every_active_state_to_needs_pairing_without_restarting() {
    let cfg = PolicyConfig::default();
    let now = t(0);
    for state in State::ALL {
        let (mut m, mut g) = machine_in(state, now);
        let restarts_before = m.persisted.restart_history.len();
        let fx = m.step(
            Input::NeedsPairing {
                reason: "webhook says SWE003".into(),
            },
            &mut g,
            &ctx(now, &cfg),
        );
        assert_eq!(
            m.persisted.restart_history.len(),
            restarts_before,
            "{state}"
        );
        assert!(
            !fx.remediations
                .iter()
                .any(|r| matches!(r, Remediation::Begin { .. })),
            "{state}: {fx:?}"
        );
        match state {
            State::Paused | State::NeedsPairing => {
                assert!(fx.ignored, "{state}");
                assert_eq!(m.persisted.state, state);
                assert!(fx.transitions.is_empty());
            }
            _ => {
                assert_eq!(m.persisted.state, State::NeedsPairing, "{state}");
                assert_eq!(fx.transitions.len(), 1, "{state}");
                assert_eq!(fx.transitions[0].reason, "webhook says SWE003");
                assert_eq!(g.in_flight, 0, "{state}: restart slot given back");
                let next = fx.next.expect("a next step");
                assert_eq!(next.action, Action::Probe, "{state}");
                assert!(next.at > now, "{state}");
            }
        }
    }
}

#[test]
fn only_a_missing_discovered_session_is_retired() {
    let missing = Input::Probe(Outcome::SessionMissing);
    assert!(missing.retires(true));
    assert!(!missing.retires(false), "a configured session stays");
    for other in [
        Input::Probe(Outcome::Delivered),
        Input::Probe(Outcome::Unreachable),
        Input::Status(StatusRead::Not(Outcome::SessionMissing)),
        Input::Resume,
    ] {
        assert!(!other.retires(true), "{other:?}");
    }
}

#[test]
fn an_inbound_streak_survives_delivered_canaries_and_is_healed_only_by_a_received_one() {
    let mut r = Run::new(PolicyConfig::default());
    let fx = r.at(10).probe(Outcome::InboundMissing);
    assert_eq!(r.m.persisted.state, State::Suspect);
    assert!(
        r.m.persisted
            .reason
            .contains("ring canary not received (inbound_missing 1/5)"),
        "{}",
        r.m.persisted.reason
    );
    // Its own canaries cannot confirm an inbound failure: no quick re-probe.
    assert_eq!(
        fx.next,
        Some(Step {
            at: t(12),
            action: Action::Probe
        })
    );
    // Its own canary is delivered: the send path works, the streak stays.
    let fx = r.at(12).probe(Outcome::Delivered);
    assert_eq!(r.m.persisted.state, State::Suspect);
    assert!(fx.transitions.is_empty());
    assert_eq!(r.m.persisted.consecutive_failures, 1);
    for i in 2..=4 {
        r.at(10 + i).probe(Outcome::InboundMissing);
        r.at(10 + i).probe(Outcome::Delivered);
        assert_eq!(r.m.persisted.state, State::Suspect, "after {i}");
    }
    let fx = r.at(20).probe(Outcome::InboundMissing);
    assert!(fx.desync_confirmed);
    assert_eq!(r.m.persisted.state, State::Restarting);
    assert!(matches!(
        fx.remediations.as_slice(),
        [Remediation::Begin { reason }] if reason.starts_with("send failures confirmed (inbound_missing 5/5)")
    ));
    // The verification canary is delivered: not yet healed.
    let fx = r.at(25).restart_cycle(Outcome::Delivered);
    assert_eq!(r.m.persisted.state, State::Recovering);
    assert!(fx.remediations.is_empty());
    assert_eq!(fx.next.map(|s| s.action), Some(Action::Verify));
    assert!(
        r.m.persisted
            .reason
            .contains("waiting for the next ring canary"),
        "{}",
        r.m.persisted.reason
    );
    assert_eq!(r.g.in_flight, 1);
    // The next ring canary reaches it: healed.
    let fx = r.at(30).feed(Input::Received);
    assert_eq!(r.m.persisted.state, State::Healthy);
    assert_eq!(fx.recovered_after, Some(Duration::from_secs(20)));
    assert!(matches!(
        fx.remediations.as_slice(),
        [Remediation::Finished {
            result: RemediationResult::Healed,
            ..
        }]
    ));
    assert_eq!(r.g.in_flight, 0);
    assert_eq!(
        (r.m.persisted.consecutive_failures, r.m.streak_has_inbound),
        (0, false)
    );
}

#[test]
fn an_inbound_restart_not_verified_by_any_ring_canary_gives_its_slot_back() {
    let cfg = PolicyConfig {
        send_failure_confirmations: 1,
        ..PolicyConfig::default()
    };
    let mut r = Run::new(cfg);
    r.at(10).probe(Outcome::InboundMissing);
    assert_eq!(r.m.persisted.state, State::Restarting);
    r.at(15).restart_cycle(Outcome::Delivered);
    assert_eq!(r.m.persisted.state, State::Recovering);
    let fx = r.at(30).probe(Outcome::Delivered);
    assert_eq!(r.m.persisted.state, State::Unknown);
    assert!(matches!(
        fx.remediations.as_slice(),
        [Remediation::Finished {
            result: RemediationResult::NotHealed,
            ..
        }]
    ));
    assert_eq!(r.g.in_flight, 0);
    // The streak is kept: the next miss asks for a restart again.
    assert!(r.m.streak_has_inbound);
    r.at(35).probe(Outcome::InboundMissing);
    assert_eq!(
        r.m.persisted.state,
        State::Desynced,
        "{}",
        r.m.persisted.reason
    );
    assert!(
        r.m.persisted.reason.contains("restart waits: backoff"),
        "{}",
        r.m.persisted.reason
    );
    // A verification that misses the ring canary is a failed verification.
    let mut r = Run::new(PolicyConfig {
        send_failure_confirmations: 1,
        ..PolicyConfig::default()
    });
    r.at(10).probe(Outcome::InboundMissing);
    r.at(15).restart_cycle(Outcome::Delivered);
    let fx = r.at(20).probe(Outcome::InboundMissing);
    assert!(matches!(
        fx.remediations.first(),
        Some(Remediation::Finished {
            result: RemediationResult::NotHealed,
            ..
        })
    ));
    assert_eq!(r.m.persisted.state, State::Desynced);
}

#[test]
fn a_received_ring_canary_changes_nothing_unless_it_ends_an_inbound_streak() {
    // Healthy, no streak: ignored, the schedule stays.
    let mut r = Run::new(PolicyConfig::default());
    let before = r.m.clone();
    let fx = r.at(10).feed(Input::Received);
    assert!(fx.ignored && fx.next.is_none());
    assert_eq!(r.m, before);
    // A send streak: receiving proves nothing about sending.
    r.at(11).probe(Outcome::Desync);
    let before = r.m.clone();
    assert!(r.at(12).feed(Input::Received).ignored);
    assert_eq!(r.m, before);
    // An inbound streak below the threshold: back to healthy.
    let mut r = Run::new(PolicyConfig::default());
    r.at(10).probe(Outcome::InboundMissing);
    let fx = r.at(11).feed(Input::Received);
    assert!(!fx.ignored);
    assert_eq!(r.m.persisted.state, State::Healthy);
    assert_eq!(fx.transitions.len(), 1);
    assert_eq!(r.m.persisted.consecutive_failures, 0);
    // Paused or restarting: ignored.
    for state in [State::Paused, State::Restarting] {
        let (mut m, mut g) = machine_in(state, t(0));
        m.streak_has_inbound = true;
        let cfg = PolicyConfig::default();
        let before = m.clone();
        assert!(
            m.step(Input::Received, &mut g, &ctx(t(0), &cfg)).ignored,
            "{state}"
        );
        assert_eq!(m, before);
    }
    // Desynced by inbound misses, restart waiting: its delivered canary asks again.
    let (mut m, mut g) = machine_in(State::Desynced, t(0));
    m.persisted.streak_has_desync = false;
    m.streak_has_inbound = true;
    let cfg = PolicyConfig::default();
    let fx = m.step(Input::Probe(Outcome::Delivered), &mut g, &ctx(t(0), &cfg));
    assert_eq!(
        m.persisted.state,
        State::Restarting,
        "{}",
        m.persisted.reason
    );
    assert!(
        matches!(fx.remediations.as_slice(), [Remediation::Begin { reason }] if reason.contains("still not receiving"))
    );
}

#[test]
fn a_rejected_key_replaces_not_probed_yet_with_the_outcome() {
    let cfg = PolicyConfig::default();
    for o in [
        Outcome::AuthRejected,
        Outcome::QuotaExceeded,
        Outcome::InstanceExpired,
    ] {
        let (mut m, mut g) = (Machine::new(t(0)), ProviderGuard::default());
        assert_eq!(m.persisted.reason, "not probed yet");
        let fx = m.step(Input::Probe(o), &mut g, &ctx(t(5), &cfg));
        assert_eq!(m.persisted.state, State::Unknown, "{o:?}");
        assert_eq!(
            m.persisted.reason,
            format!("probe answered {}", o.as_str()),
            "{o:?}"
        );
        assert!(
            fx.remediations.is_empty() && fx.transitions.is_empty(),
            "{o:?}"
        );
    }
}

#[test]
fn a_restart_known_only_from_its_intent_row_counts_toward_backoff_and_escalation() {
    let cfg = PolicyConfig::default();
    let mut m = Machine::new(t(0));
    m.recall_restart(&cfg, t(100));
    assert_eq!(m.persisted.restart_history, vec![t(100)]);
    assert_eq!(
        m.persisted.next_restart_at,
        Some(t(100).plus(cfg.backoff_initial))
    );
    assert_eq!(m.persisted.backoff_step, 1);
    // The same row again (the saved record already had it): no change.
    let before = m.clone();
    m.recall_restart(&cfg, t(100));
    assert_eq!(m, before);
    m.recall_restart(&cfg, t(200));
    assert_eq!(m.persisted.restart_history, vec![t(100), t(200)]);
    assert_eq!(
        m.persisted.next_restart_at,
        Some(t(200).plus(2 * cfg.backoff_initial))
    );
    // A later deadline already saved is never shortened.
    let mut m = Machine::new(t(0));
    m.persisted.next_restart_at = Some(t(10_000));
    m.recall_restart(&cfg, t(100));
    assert_eq!(m.persisted.next_restart_at, Some(t(10_000)));
}
