//! The alerting assets (`contrib/prometheus`, `contrib/alertmanager`,
//! `docs/runbook.md`) and the metrics exposition, checked with the real tools
//! from Debian's Prometheus packages: `promtool` and `amtool` for the files,
//! `promtool check metrics` for [`Metrics::encode`], and a real Alertmanager
//! for the inhibit rules.
//!
//! A missing tool fails the test with install instructions, because a silent
//! skip would hide broken rules; set `WA_WATCHDOG_SKIP_PROMETHEUS_TOOLS=1` to
//! skip only the tool-based checks. The structural checks (every alert has its
//! labels, annotations, runbook section and a firing unit test) need no tools.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::free_port;
use crate::common::tools::tool;
use wa_watchdog::clock::Timestamp;
use wa_watchdog::machine::State;
use wa_watchdog::metrics::{Metrics, RestartResult};
use wa_watchdog::provider::Outcome;

const ALERTS: &str = "contrib/prometheus/alerts.yml";
const ALERTS_TEST: &str = "contrib/prometheus/alerts_test.yml";
const PROMETHEUS_CONFIG: &str = "contrib/prometheus/prometheus.yml";
const ALERTMANAGER_CONFIG: &str = "contrib/alertmanager/alertmanager.yml";
const RUNBOOK: &str = "docs/runbook.md";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Runs `program args` in the crate root, with `stdin` if given.
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes()).expect("writing stdin");
        // Dropping the pipe closes it, so the tool sees end of input.
    }
    child.wait_with_output().expect("waiting for tool")
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed:\n{}", show(out));
}

// ---------------------------------------------------------------------------
// A line-based reading of alerts.yml. The file's layout is ours, and these
// tests pin it; `promtool check rules` is the real parser, and the rule count
// it reports is compared with what this reader found.

#[derive(Debug, Default)]
struct Alert {
    name: String,
    expr: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').to_owned()
}

fn parse_alerts(text: &str) -> Vec<Alert> {
    let mut alerts: Vec<Alert> = Vec::new();
    // Which map the following `key: value` lines belong to.
    let mut section = "";
    // A folded (`>-`) value continues on more-indented lines.
    let mut folding: Option<(String, usize)> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some((key, key_indent)) = folding.clone() {
            if indent > key_indent {
                let alert = alerts.last_mut().expect("inside an alert");
                let map = if section == "annotations" {
                    &mut alert.annotations
                } else {
                    &mut alert.labels
                };
                let target = if key == "expr" {
                    &mut alert.expr
                } else {
                    map.entry(key).or_default()
                };
                if !target.is_empty() {
                    target.push(' ');
                }
                target.push_str(trimmed);
                continue;
            }
            folding = None;
        }
        if let Some(name) = trimmed.strip_prefix("- alert: ") {
            alerts.push(Alert {
                name: name.trim().to_owned(),
                ..Alert::default()
            });
            section = "";
            continue;
        }
        if trimmed.starts_with("- name: ") {
            section = "";
            continue;
        }
        let Some(alert) = alerts.last_mut() else {
            continue;
        };
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "labels" => section = "labels",
            "annotations" => section = "annotations",
            "expr" | "for" | "keep_firing_for" => {
                section = "";
                if key == "expr" {
                    if value == ">-" {
                        folding = Some(("expr".into(), indent));
                    } else {
                        alert.expr = value.to_owned();
                    }
                }
            }
            _ if section == "labels" => {
                alert.labels.insert(key.to_owned(), unquote(value));
            }
            _ if section == "annotations" => {
                if value == ">-" {
                    folding = Some((key.to_owned(), indent));
                } else {
                    alert.annotations.insert(key.to_owned(), unquote(value));
                }
            }
            _ => {}
        }
    }
    alerts
}

/// GitHub's heading anchors: lowercase, punctuation dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Runbook sections: anchor → body text.
fn runbook_sections() -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in read(RUNBOOK).lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            if let Some((anchor, body)) = current.take() {
                sections.insert(anchor, body);
            }
            current = Some((slug(heading), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((anchor, body)) = current {
        sections.insert(anchor, body);
    }
    sections
}

/// Alert names that `alerts_test.yml` expects to fire at least once.
fn alerts_tested_firing() -> BTreeSet<String> {
    let text = read(ALERTS_TEST);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut firing = BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix("alertname: ") {
            let next = lines[i + 1..]
                .iter()
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .copied()
                .unwrap_or("");
            if next == "exp_alerts:" {
                firing.insert(name.trim().to_owned());
            }
        }
    }
    firing
}

#[test]
fn every_alert_has_severity_summary_description_and_a_runbook_section() {
    let alerts = parse_alerts(&read(ALERTS));
    assert!(alerts.len() >= 10, "only {} alerts parsed", alerts.len());
    let sections = runbook_sections();
    let mut names = BTreeSet::new();
    for a in &alerts {
        let n = &a.name;
        assert!(names.insert(n.clone()), "{n} is defined twice");
        assert!(
            n.starts_with("WaWatchdog")
                && n.chars().all(|c| c.is_ascii_alphanumeric())
                && n["WaWatchdog".len()..].starts_with(|c: char| c.is_ascii_uppercase()),
            "{n}: alert names are CamelCase with the WaWatchdog prefix"
        );
        assert!(!a.expr.is_empty(), "{n} has no expr");
        let severity = a.labels.get("severity").map(String::as_str);
        assert!(
            matches!(severity, Some("page" | "ticket" | "info")),
            "{n}: severity {severity:?}"
        );
        let scope = a.labels.get("scope").map(String::as_str);
        assert!(
            matches!(scope, Some("watchdog" | "provider" | "session")),
            "{n}: scope {scope:?}"
        );
        for key in ["summary", "description", "runbook"] {
            assert!(
                a.annotations.get(key).is_some_and(|v| !v.is_empty()),
                "{n} has no {key} annotation: {a:?}"
            );
        }
        let description = &a.annotations["description"];
        if scope != Some("watchdog") {
            assert!(
                description.contains("{{ $labels.provider }}"),
                "{n}: {description}"
            );
        }
        if scope == Some("session") {
            assert!(
                description.contains("{{ $labels.session }}"),
                "{n}: {description}"
            );
        }
        let runbook = &a.annotations["runbook"];
        let anchor = runbook
            .strip_prefix("docs/runbook.md#")
            .unwrap_or_else(|| panic!("{n}: runbook {runbook:?} is not docs/runbook.md#..."));
        let body = sections
            .get(anchor)
            .unwrap_or_else(|| panic!("{n}: no section #{anchor} in {RUNBOOK}"));
        assert!(
            body.contains(&format!("`{n}`")),
            "{n}: section #{anchor} does not name the alert"
        );
        assert!(
            body.contains(&format!("severity {}", severity.unwrap_or_default())),
            "{n}: section #{anchor} states another severity"
        );
    }
    // Every alert section of the runbook belongs to an alert.
    let used: BTreeSet<&str> = alerts
        .iter()
        .filter_map(|a| a.annotations["runbook"].strip_prefix("docs/runbook.md#"))
        .collect();
    for anchor in sections.keys() {
        assert!(
            anchor == "before-you-start" || used.contains(anchor.as_str()),
            "runbook section #{anchor} belongs to no alert"
        );
    }
}

#[test]
fn only_conditions_that_need_a_person_now_page() {
    let alerts = parse_alerts(&read(ALERTS));
    let paging: BTreeSet<&str> = alerts
        .iter()
        .filter(|a| a.labels["severity"] == "page")
        .map(|a| a.name.as_str())
        .collect();
    // The needs-a-human states of the machine page...
    for state in State::ALL.into_iter().filter(|s| s.needs_human()) {
        let hit = alerts.iter().find(|a| {
            a.expr.contains(&format!(
                "wa_watchdog_session_state{{state=\"{}\"}}",
                state.as_str()
            ))
        });
        let hit = hit.unwrap_or_else(|| panic!("no alert for the {state} state"));
        assert_eq!(hit.labels["severity"], "page", "{}", hit.name);
    }
    // ...and states the watchdog is still working on do not.
    for name in [
        "WaWatchdogSessionDesynced",
        "WaWatchdogCanaryStale",
        "WaWatchdogRestartsFailing",
    ] {
        assert!(!paging.contains(name), "{name} must not page");
    }
}

#[test]
fn every_alert_has_a_unit_test_in_which_it_fires() {
    let alerts = parse_alerts(&read(ALERTS));
    let firing = alerts_tested_firing();
    for a in &alerts {
        assert!(
            firing.contains(&a.name),
            "{} never fires in {ALERTS_TEST}",
            a.name
        );
    }
    for name in &firing {
        assert!(
            alerts.iter().any(|a| &a.name == name),
            "{ALERTS_TEST} tests {name}, which {ALERTS} does not define"
        );
    }
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let out = run(&promtool, &["check", "rules", ALERTS], None);
    assert_ok(&out, "promtool check rules");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let n = parse_alerts(&read(ALERTS)).len();
    assert!(
        stdout.contains(&format!("SUCCESS: {n} rules found")),
        "this test's reader found {n} alerts; promtool says:\n{stdout}"
    );
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let out = run(&promtool, &["test", "rules", ALERTS_TEST], None);
    assert_ok(&out, "promtool test rules");
}

#[test]
fn prometheus_example_config_passes_promtool_check_config() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let out = run(&promtool, &["check", "config", PROMETHEUS_CONFIG], None);
    assert_ok(&out, "promtool check config");
}

#[test]
fn alertmanager_example_config_passes_amtool_and_routes_by_severity() {
    let Some(amtool) = tool("amtool") else {
        return;
    };
    let out = run(&amtool, &["check-config", ALERTMANAGER_CONFIG], None);
    assert_ok(&out, "amtool check-config");
    let config = format!("--config.file={ALERTMANAGER_CONFIG}");
    for (labels, receiver) in [
        (
            &["severity=page", "alertname=WaWatchdogSessionNeedsPairing"][..],
            "pager",
        ),
        (
            &["severity=ticket", "alertname=WaWatchdogCanaryStale"][..],
            "ticket",
        ),
        (&["severity=info"][..], "default"),
        (&["alertname=SomethingElse"][..], "default"),
    ] {
        let mut args = vec!["config", "routes", "test", config.as_str()];
        args.extend_from_slice(labels);
        let out = run(&amtool, &args, None);
        assert_ok(&out, "amtool config routes test");
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(got.trim(), receiver, "{labels:?}");
    }
}

/// A registry with every family, several providers and sessions in many states.
fn populated_metrics() -> Metrics {
    let m = Metrics::new();
    let now = Timestamp(1_764_000_000_000);
    for provider in ["waha-main", "green-1"] {
        m.set_provider(provider, true, false);
        m.set_restart_budget(provider, 10);
        for outcome in [Outcome::Delivered, Outcome::Desync, Outcome::Timeout] {
            m.observe_probe(provider, &outcome, Duration::from_millis(730));
        }
        m.restart_result(provider, RestartResult::Ok);
        m.restart_result(provider, RestartResult::Failed);
        m.desync_detected(provider);
        m.recovered(provider, Duration::from_secs(75));
        m.webhook_event(provider, "message.ack");
    }
    for (i, state) in State::ALL.into_iter().enumerate() {
        let last = (state != State::Unknown).then_some(now);
        m.set_session("waha-main", &format!("s{i}"), state, 2, last);
    }
    m.set_provider("green-1", false, true);
    m.reload_failed();
    m.alertmanager_push_failed();
    m.scheduler_ticked(now);
    m
}

#[test]
fn metrics_exposition_passes_promtool_check_metrics_without_warnings() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let text = populated_metrics().encode().expect("encode");
    let out = run(&promtool, &["check", "metrics"], Some(&text));
    assert_ok(&out, "promtool check metrics");
    // Lint findings are printed even when the exit status is 0 in some
    // versions: demand silence.
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics reported:\n{}",
        show(&out)
    );
}

// ---------------------------------------------------------------------------
// The inhibit rules, against a real Alertmanager on loopback.

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A minimal HTTP GET over loopback; the status line's code, if any.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split(' ').nth(1)?.parse().ok()
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn alertmanager_inhibits_session_alerts_during_a_provider_outage() {
    let (Some(alertmanager), Some(amtool)) = (tool("prometheus-alertmanager"), tool("amtool"))
    else {
        return;
    };
    let storage = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let child = Command::new(&alertmanager)
        .current_dir(root())
        .args([
            &format!("--config.file={ALERTMANAGER_CONFIG}"),
            &format!("--web.listen-address=127.0.0.1:{port}"),
            // Empty: no cluster listener at all (it would bind 0.0.0.0:9094).
            "--cluster.listen-address=",
            &format!("--storage.path={}", storage.path().display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus-alertmanager");
    let _running = Running(child);
    wait_for("alertmanager to be ready", Duration::from_secs(20), || {
        http_status(port, "/-/ready") == Some(200)
    });

    let url = format!("--alertmanager.url=http://127.0.0.1:{port}");
    let add = |labels: &[&str]| {
        let mut args = vec![url.as_str(), "alert", "add"];
        args.extend_from_slice(labels);
        assert_ok(&run(&amtool, &args, None), "amtool alert add");
    };
    add(&[
        "alertname=WaWatchdogProviderOutage",
        "severity=page",
        "scope=provider",
        "provider=waha-main",
    ]);
    add(&[
        "alertname=WaWatchdogCanaryStale",
        "severity=ticket",
        "scope=session",
        "provider=waha-main",
        "session=sales",
    ]);
    // Another provider's session is not affected by waha-main's outage.
    add(&[
        "alertname=WaWatchdogCanaryStale",
        "severity=ticket",
        "scope=session",
        "provider=green-1",
        "session=1101000001",
    ]);

    // (alertname, provider) of the alerts in one state.
    let query = |flag: &str| -> BTreeSet<(String, String)> {
        let out = run(
            &amtool,
            &[url.as_str(), "alert", "query", flag, "-o", "json"],
            None,
        );
        assert_ok(&out, "amtool alert query");
        let alerts: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).expect("amtool's JSON");
        alerts
            .iter()
            .map(|a| {
                let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_owned();
                (label("alertname"), label("provider"))
            })
            .collect()
    };
    let pair = |a: &str, p: &str| (a.to_owned(), p.to_owned());
    // The inhibitor picks up its sources asynchronously: give it a moment.
    wait_for(
        "the session alert to be inhibited",
        Duration::from_secs(10),
        || !query("--inhibited").is_empty(),
    );
    assert_eq!(
        query("--inhibited"),
        BTreeSet::from([pair("WaWatchdogCanaryStale", "waha-main")])
    );
    assert_eq!(
        query("--active"),
        BTreeSet::from([
            pair("WaWatchdogProviderOutage", "waha-main"),
            pair("WaWatchdogCanaryStale", "green-1"),
        ])
    );
}
